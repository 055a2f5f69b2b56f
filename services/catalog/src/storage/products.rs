use std::collections::HashMap;

use kit::db::Backend;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};
use uuid::Uuid;

use super::sql::Sql;
use super::{is_foreign_key_violation, uuid, violates_unique};
use crate::domain::search::{ProductQuery, Sort};
use crate::domain::{Image, Money};

#[derive(Debug, Clone, PartialEq)]
pub struct ProductRecord {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price: Money,
    pub stock: i64,
    pub category_id: Uuid,
    pub is_active: bool,
    pub rating_sum: i64,
    pub rating_count: i64,
    /// Average rating times 100, truncated (kept by the database).
    pub rating_avg_x100: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub images: Vec<Image>,
}

impl ProductRecord {
    /// The average rating to two decimals, 0 without reviews.
    pub fn average_rating(&self) -> f64 {
        if self.rating_count == 0 {
            0.0
        } else {
            (self.rating_sum as f64 / self.rating_count as f64 * 100.0).round() / 100.0
        }
    }

    /// The value this product sorts by under `sort` (for keyset cursors).
    pub fn sort_key(&self, sort: Sort) -> i64 {
        match sort {
            Sort::PriceAsc | Sort::PriceDesc => self.price.amount,
            Sort::Rating => self.rating_avg_x100,
            Sort::Newest | Sort::Relevance => self.created_at,
        }
    }
}

const COLUMNS: &str = "p.id, p.sku, p.name, p.description, p.price_amount, p.price_currency, \
    p.stock, p.category_id, p.is_active, p.rating_sum, p.rating_count, p.rating_avg_x100, \
    p.created_at, p.updated_at";

fn from_row(row: &AnyRow) -> Result<ProductRecord, sqlx::Error> {
    // PostgreSQL has a boolean; SQLite an integer 0/1.
    let is_active = match row.try_get::<bool, _>("is_active") {
        Ok(b) => b,
        Err(_) => row.try_get::<i64, _>("is_active")? != 0,
    };
    Ok(ProductRecord {
        id: uuid(row.try_get("id")?)?,
        sku: row.try_get("sku")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        price: Money {
            amount: row.try_get("price_amount")?,
            currency: row.try_get("price_currency")?,
        },
        stock: row.try_get("stock")?,
        category_id: uuid(row.try_get("category_id")?)?,
        is_active,
        rating_sum: row.try_get("rating_sum")?,
        rating_count: row.try_get("rating_count")?,
        rating_avg_x100: row.try_get("rating_avg_x100")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        images: Vec::new(),
    })
}

pub enum WriteOutcome {
    Written,
    NotFound,
    SkuTaken,
    CategoryMissing,
}

fn outcome(result: Result<u64, sqlx::Error>) -> Result<WriteOutcome, sqlx::Error> {
    match result {
        Ok(0) => Ok(WriteOutcome::NotFound),
        Ok(_) => Ok(WriteOutcome::Written),
        Err(e) if violates_unique(&e, "products_sku_key", "products.sku") => {
            Ok(WriteOutcome::SkuTaken)
        }
        Err(e) if is_foreign_key_violation(&e) => Ok(WriteOutcome::CategoryMissing),
        Err(e) => Err(e),
    }
}

/// Insert a product and its images.
pub async fn insert(
    conn: &mut AnyConnection,
    p: &ProductRecord,
) -> Result<WriteOutcome, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO products (id, sku, name, description, price_amount, price_currency, stock, \
         category_id, is_active, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(p.id.to_string())
    .bind(&p.sku)
    .bind(&p.name)
    .bind(&p.description)
    .bind(p.price.amount)
    .bind(&p.price.currency)
    .bind(p.stock)
    .bind(p.category_id.to_string())
    .bind(p.is_active)
    .bind(p.created_at)
    .bind(p.updated_at)
    .execute(&mut *conn)
    .await
    .map(|r| r.rows_affected());
    let outcome = outcome(result)?;
    if matches!(outcome, WriteOutcome::Written) {
        insert_images(conn, p.id, &p.images).await?;
    }
    Ok(outcome)
}

/// Replace every admin-owned field of a product and its images.
pub async fn update(
    conn: &mut AnyConnection,
    p: &ProductRecord,
) -> Result<WriteOutcome, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE products SET sku = $1, name = $2, description = $3, price_amount = $4, \
         price_currency = $5, stock = $6, category_id = $7, is_active = $8, updated_at = $9 \
         WHERE id = $10",
    )
    .bind(&p.sku)
    .bind(&p.name)
    .bind(&p.description)
    .bind(p.price.amount)
    .bind(&p.price.currency)
    .bind(p.stock)
    .bind(p.category_id.to_string())
    .bind(p.is_active)
    .bind(p.updated_at)
    .bind(p.id.to_string())
    .execute(&mut *conn)
    .await
    .map(|r| r.rows_affected());
    let outcome = outcome(result)?;
    if matches!(outcome, WriteOutcome::Written) {
        sqlx::query("DELETE FROM product_images WHERE product_id = $1")
            .bind(p.id.to_string())
            .execute(&mut *conn)
            .await?;
        insert_images(conn, p.id, &p.images).await?;
    }
    Ok(outcome)
}

async fn insert_images(
    conn: &mut AnyConnection,
    id: Uuid,
    images: &[Image],
) -> Result<(), sqlx::Error> {
    if images.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new("INSERT INTO product_images (product_id, ordinal, url, alt) VALUES ");
    for (i, image) in images.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.push("(")
            .bind(id)
            .push(", ")
            .bind(i as i64)
            .push(", ")
            .bind(image.url.as_str())
            .push(", ")
            .bind(image.alt.as_str())
            .push(")");
    }
    sql.query().execute(&mut *conn).await?;
    Ok(())
}

/// Take a product out of listings. `false` if it was not active (or does
/// not exist).
pub async fn deactivate(conn: &mut AnyConnection, id: Uuid, now: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE products SET is_active = FALSE, updated_at = $1 WHERE id = $2 AND is_active = TRUE",
    )
    .bind(now)
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Read a product inside a write transaction, locking its row on
/// PostgreSQL (SQLite's writer already holds the database).
pub async fn for_update(
    conn: &mut AnyConnection,
    backend: Backend,
    id: Uuid,
) -> Result<Option<ProductRecord>, sqlx::Error> {
    let sql = match backend {
        Backend::Postgres => format!("SELECT {COLUMNS} FROM products p WHERE p.id = $1 FOR UPDATE"),
        Backend::Sqlite => format!("SELECT {COLUMNS} FROM products p WHERE p.id = $1"),
    };
    let Some(mut product) = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()?
    else {
        return Ok(None);
    };
    product.images = images_of(&mut *conn, &[id])
        .await?
        .remove(&id)
        .unwrap_or_default();
    Ok(Some(product))
}

/// Products by id, active or not, in no particular order.
pub async fn by_ids(
    conn: &mut AnyConnection,
    ids: &[Uuid],
) -> Result<Vec<ProductRecord>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // Products and their images in one round trip: a product page read
    // is the catalogue's hottest query, and most of its cost is the trip.
    let mut sql = Sql::new("SELECT ");
    sql.push(COLUMNS)
        .push(
            ", i.url AS image_url, i.alt AS image_alt FROM products p \
             LEFT JOIN product_images i ON i.product_id = p.id WHERE p.id IN ",
        )
        .bind_list(ids.iter().copied())
        .push(" ORDER BY p.id, i.ordinal");
    let mut products: Vec<ProductRecord> = Vec::with_capacity(ids.len());
    for row in sql.query().fetch_all(&mut *conn).await? {
        let id = uuid(row.try_get("id")?)?;
        if products.last().is_none_or(|p| p.id != id) {
            products.push(from_row(&row)?);
        }
        if let Some(url) = row.try_get::<Option<String>, _>("image_url")? {
            let alt = row.try_get::<Option<String>, _>("image_alt")?;
            if let Some(product) = products.last_mut() {
                product.images.push(Image {
                    url,
                    alt: alt.unwrap_or_default(),
                });
            }
        }
    }
    Ok(products)
}

async fn images_of<'e>(
    db: impl Executor<'e, Database = Any>,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<Image>>, sqlx::Error> {
    let mut by_product: HashMap<Uuid, Vec<Image>> = HashMap::new();
    if ids.is_empty() {
        return Ok(by_product);
    }
    let mut sql =
        Sql::new("SELECT product_id, ordinal, url, alt FROM product_images WHERE product_id IN ");
    sql.bind_list(ids.iter().copied())
        .push(" ORDER BY product_id, ordinal");
    for row in sql.query().fetch_all(db).await? {
        by_product
            .entry(uuid(row.try_get("product_id")?)?)
            .or_default()
            .push(Image {
                url: row.try_get("url")?,
                alt: row.try_get("alt")?,
            });
    }
    Ok(by_product)
}

async fn attach_images(
    conn: &mut AnyConnection,
    products: &mut [ProductRecord],
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = products.iter().map(|p| p.id).collect();
    let mut images = images_of(&mut *conn, &ids).await?;
    for p in products.iter_mut() {
        p.images = images.remove(&p.id).unwrap_or_default();
    }
    Ok(())
}

/// Add one review's rating to a listed product. `false` if the product is
/// not listed.
pub async fn add_rating(
    conn: &mut AnyConnection,
    id: Uuid,
    rating: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE products SET rating_sum = rating_sum + $1, rating_count = rating_count + 1 \
         WHERE id = $2 AND is_active = TRUE",
    )
    .bind(rating)
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Does a product with this id exist (listed or not)?
pub async fn exists<'e>(
    db: impl Executor<'e, Database = Any>,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("SELECT 1 AS one FROM products WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(db)
        .await?
        .is_some())
}

/// Is there any product at all?
pub async fn any<'e>(db: impl Executor<'e, Database = Any>) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("SELECT 1 AS one FROM products LIMIT 1")
        .fetch_optional(db)
        .await?
        .is_some())
}

/// Insert many products in one statement (bulk seeding). Ratings are taken
/// as given; images are not stored.
pub async fn insert_many(
    conn: &mut AnyConnection,
    products: &[ProductRecord],
) -> Result<(), sqlx::Error> {
    if products.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new(
        "INSERT INTO products (id, sku, name, description, price_amount, price_currency, stock, \
         category_id, is_active, rating_sum, rating_count, created_at, updated_at) VALUES ",
    );
    for (i, p) in products.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.push("(")
            .bind(p.id)
            .push(", ")
            .bind(p.sku.as_str())
            .push(", ")
            .bind(p.name.as_str())
            .push(", ")
            .bind(p.description.as_str())
            .push(", ")
            .bind(p.price.amount)
            .push(", ")
            .bind(p.price.currency.as_str())
            .push(", ")
            .bind(p.stock)
            .push(", ")
            .bind(p.category_id)
            .push(", ")
            .bind(p.is_active)
            .push(", ")
            .bind(p.rating_sum)
            .push(", ")
            .bind(p.rating_count)
            .push(", ")
            .bind(p.created_at)
            .push(", ")
            .bind(p.updated_at)
            .push(")");
    }
    sql.query().execute(&mut *conn).await?;
    Ok(())
}

// ---------------------------------------------------------------- search

/// Lower bounds of the price bands facets count in (minor units); the last
/// band is open-ended.
pub const PRICE_BANDS: &[i64] = &[0, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000];

#[derive(Debug, Clone, PartialEq)]
pub struct CategoryCount {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PriceBandCount {
    pub min: i64,
    pub max: Option<i64>,
    pub count: i64,
}

#[derive(Debug, Clone)]
pub struct SearchPage {
    pub items: Vec<ProductRecord>,
    pub total: i64,
    /// More rows follow this page.
    pub more: bool,
    pub categories: Vec<CategoryCount>,
    pub price_bands: Vec<PriceBandCount>,
}

/// The tsquery text for PostgreSQL: every word as a prefix, all required.
fn postgres_tsquery(terms: &[String]) -> String {
    terms
        .iter()
        .map(|t| format!("{t}:*"))
        .collect::<Vec<_>>()
        .join(" & ")
}

/// The FTS5 query text for SQLite: every word quoted, as a prefix, all
/// required.
fn fts5_query(terms: &[String]) -> String {
    terms
        .iter()
        .map(|t| format!("\"{}\"*", t.replace('"', "")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `[WITH subtree] <head> FROM products p WHERE <filters>` for a listing
/// query, where `head` writes the select list (and anything that wraps
/// it); callers add grouping, order and limits.
fn filtered(q: &ProductQuery, backend: Backend, head: impl FnOnce(&mut Sql)) -> Sql {
    let mut sql = with_subtree(q);
    head(&mut sql);
    sql.push(" FROM products p");
    let text = !q.terms.is_empty();
    match backend {
        // Parsed once, in FROM: as an expression with a bound parameter it
        // is parsed again for every matching row once PostgreSQL switches
        // the prepared statement to a generic plan (3x slower ranking).
        Backend::Postgres if text => sql
            .push(", to_tsquery('english', ")
            .bind(postgres_tsquery(&q.terms))
            .push(") AS tsq"),
        Backend::Sqlite if text => sql.push(" JOIN products_fts ON products_fts.rowid = p.doc_id"),
        _ => &mut sql,
    };
    sql.push(" WHERE p.is_active = TRUE");
    if text {
        match backend {
            Backend::Postgres => sql.push(" AND p.search @@ tsq"),
            Backend::Sqlite => sql
                .push(" AND products_fts MATCH ")
                .bind(fts5_query(&q.terms)),
        };
    }
    if q.category.is_some() {
        sql.push(" AND p.category_id IN (SELECT id FROM subtree)");
    }
    if let Some(lo) = q.min_price {
        sql.push(" AND p.price_amount >= ").bind(lo);
    }
    if let Some(hi) = q.max_price {
        sql.push(" AND p.price_amount <= ").bind(hi);
    }
    if q.in_stock {
        sql.push(" AND p.stock > 0");
    }
    if let Some(r) = q.min_rating {
        sql.push(" AND p.rating_count > 0 AND p.rating_sum >= p.rating_count * ")
            .bind(r);
    }
    sql
}

/// `WITH RECURSIVE subtree` when the query names a category: the category
/// (by id or slug) and all below it.
fn with_subtree(q: &ProductQuery) -> Sql {
    let mut sql = Sql::default();
    if let Some(category) = &q.category {
        sql.push("WITH RECURSIVE subtree (id) AS (SELECT id FROM categories WHERE id = ")
            .bind(category.as_str())
            .push(" OR slug = ")
            .bind(category.as_str())
            .push(" UNION SELECT c.id FROM categories c JOIN subtree s ON c.parent_id = s.id) ");
    }
    sql
}

fn items_sql(q: &ProductQuery, backend: Backend) -> Sql {
    let mut sql = filtered(q, backend, |s| {
        s.push("SELECT ").push(COLUMNS);
        if backend == Backend::Postgres && !q.terms.is_empty() {
            s.push(", ts_rank(p.search, tsq) AS rank");
        }
    });
    after_cursor(q, &mut sql, |s, column| {
        s.push(column);
    });
    sql.push(" ORDER BY ");
    order_by(q, backend, &mut sql, |s, column| {
        s.push(column);
    });
    page_bounds(q, &mut sql);
    sql
}

/// The column a sort orders by (for relevance, the text rank).
fn sort_column(sort: Sort) -> &'static str {
    match sort {
        Sort::PriceAsc | Sort::PriceDesc => "p.price_amount",
        Sort::Rating => "p.rating_avg_x100",
        Sort::Newest | Sort::Relevance => "p.created_at",
    }
}

/// ` AND (key, id) > (cursor)` for a keyset page; `column` writes a column
/// as the statement names it.
fn after_cursor(q: &ProductQuery, sql: &mut Sql, column: impl Fn(&mut Sql, &'static str)) {
    let Some(c) = &q.cursor else { return };
    let after = match q.sort {
        Sort::PriceAsc => " > ",
        Sort::PriceDesc | Sort::Rating | Sort::Newest | Sort::Relevance => " < ",
    };
    sql.push(" AND (");
    column(sql, sort_column(q.sort));
    sql.push(", ");
    column(sql, "p.id");
    sql.push(")")
        .push(after)
        .push("(")
        .bind(c.key)
        .push(", ")
        .bind(c.id)
        .push(")");
}

/// The listing order, ties broken by id; `column` as in [`after_cursor`]
/// (the PostgreSQL text rank is the column `rank`).
fn order_by(
    q: &ProductQuery,
    backend: Backend,
    sql: &mut Sql,
    column: impl Fn(&mut Sql, &'static str),
) {
    let (key, direction, id) = match q.sort {
        Sort::Relevance if !q.terms.is_empty() => match backend {
            Backend::Postgres => ("rank", " DESC, ", " ASC"),
            // bm25 is better when lower; weights follow the columns
            // (name, sku, description).
            Backend::Sqlite => {
                sql.push("bm25(products_fts, 10.0, 4.0, 1.0) ASC, ");
                column(sql, "p.id");
                sql.push(" ASC");
                return;
            }
        },
        Sort::PriceAsc => (sort_column(q.sort), " ASC, ", " ASC"),
        _ => (sort_column(q.sort), " DESC, ", " DESC"),
    };
    column(sql, key);
    sql.push(direction);
    column(sql, "p.id");
    sql.push(id);
}

/// One more row than a page (to tell whether more follow), and the offset
/// of a numbered page.
fn page_bounds(q: &ProductQuery, sql: &mut Sql) {
    sql.push(" LIMIT ").bind(i64::from(q.page_size) + 1);
    if q.cursor.is_none() && q.offset() > 0 {
        sql.push(" OFFSET ").bind(q.offset());
    }
}

/// Column names of the price band counts, one per entry of `PRICE_BANDS`.
const BAND_COLUMNS: &[&str] = &[
    "band_0", "band_1", "band_2", "band_3", "band_4", "band_5", "band_6",
];

/// `, COUNT(…) AS band_i` for every price band, over `price`.
fn count_bands(sql: &mut Sql, price: &'static str) {
    for (i, (lo, column)) in PRICE_BANDS.iter().zip(BAND_COLUMNS).enumerate() {
        sql.push(", COUNT(CASE WHEN ")
            .push(price)
            .push(" >= ")
            .bind(*lo);
        if let Some(hi) = PRICE_BANDS.get(i + 1) {
            sql.push(" AND ").push(price).push(" < ").bind(*hi);
        }
        sql.push(" THEN 1 END) AS ").push(column);
    }
}

/// Facets in one pass: per category, the matching products and how many
/// fall in each price band (summed over categories for the price facet
/// and the total). Aggregates first and names the few categories after.
fn facets_sql(q: &ProductQuery, backend: Backend) -> Sql {
    let mut sql = filtered(q, backend, |s| {
        s.push("SELECT c.id AS id, c.name AS name, c.slug AS slug, f.n AS n");
        for column in BAND_COLUMNS {
            s.push(", f.").push(column).push(" AS ").push(column);
        }
        s.push(" FROM (SELECT p.category_id AS category_id, COUNT(*) AS n");
        count_bands(s, "p.price_amount");
    });
    sql.push(
        " GROUP BY p.category_id) f JOIN categories c ON c.id = f.category_id \
         ORDER BY f.n DESC, c.name ASC",
    );
    sql
}

/// What the kept facet counts can answer: a query without text whose price
/// filter takes whole bands and whose rating filter whole stars. Returns
/// the first and last band and the lowest whole-star rating.
fn counted_facets(q: &ProductQuery) -> Option<(usize, usize, Option<i64>)> {
    if !q.terms.is_empty() {
        return None;
    }
    let first = match q.min_price {
        None => 0,
        Some(lo) => PRICE_BANDS.iter().position(|b| *b == lo)?,
    };
    let last = match q.max_price {
        None => PRICE_BANDS.len() - 1,
        // An inclusive bound one below the next band's start.
        Some(hi) => {
            let next = hi.checked_add(1)?;
            PRICE_BANDS
                .iter()
                .position(|b| *b == next)?
                .checked_sub(1)?
        }
    };
    let stars = match q.min_rating {
        None => None,
        Some(r) if r.fract() == 0.0 => Some(r as i64),
        Some(_) => return None,
    };
    (first <= last).then_some((first, last, stars))
}

/// The same rows as [`facets_sql`], from the counts the triggers keep in
/// `product_facet_counts` (see migration 0003) instead of from every
/// matching product.
fn counted_facets_sql(q: &ProductQuery, first: usize, last: usize, stars: Option<i64>) -> Sql {
    let mut sql = with_subtree(q);
    sql.push("SELECT c.id AS id, c.name AS name, c.slug AS slug, f.n AS n");
    for column in BAND_COLUMNS {
        sql.push(", f.").push(column).push(" AS ").push(column);
    }
    sql.push(" FROM (SELECT category_id, CAST(SUM(products) AS BIGINT) AS n");
    for (band, column) in BAND_COLUMNS.iter().enumerate() {
        sql.push(", CAST(SUM(CASE WHEN price_band = ")
            .bind(band as i64)
            .push(" THEN products ELSE 0 END) AS BIGINT) AS ")
            .push(column);
    }
    sql.push(" FROM product_facet_counts WHERE price_band BETWEEN ")
        .bind(first as i64)
        .push(" AND ")
        .bind(last as i64);
    if q.in_stock {
        sql.push(" AND in_stock = TRUE");
    }
    if let Some(stars) = stars {
        sql.push(" AND rating_floor >= ").bind(stars);
    }
    if q.category.is_some() {
        sql.push(" AND category_id IN (SELECT id FROM subtree)");
    }
    sql.push(
        " GROUP BY category_id HAVING SUM(products) > 0) f \
         JOIN categories c ON c.id = f.category_id ORDER BY f.n DESC, c.name ASC",
    );
    sql
}

/// Fold the appended +n/-n facet count rows into one row per key (a
/// PostgreSQL chore; SQLite updates its counts in place). One statement,
/// so readers see the counts before or after, never half-way; rows written
/// meanwhile are left for the next time.
pub async fn compact_facet_counts(
    pool: &sqlx::AnyPool,
    backend: Backend,
) -> Result<u64, sqlx::Error> {
    if backend != Backend::Postgres {
        return Ok(0);
    }
    let done = sqlx::query(
        "WITH gone AS (DELETE FROM product_facet_counts RETURNING *) \
         INSERT INTO product_facet_counts \
         SELECT category_id, price_band, in_stock, rating_floor, SUM(products)::BIGINT \
         FROM gone GROUP BY 1, 2, 3, 4 HAVING SUM(products) <> 0",
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// A PostgreSQL text search in one statement: the matches are found (and
/// ranked) once, then both the page and the facets are read from them,
/// where two statements would each fetch every match from the heap. Rows
/// with `part` 0 are the page in order, rows with `part` 1 the facets
/// (columns `cat_*`, `n`, `band_*`), in order.
fn text_search_sql(q: &ProductQuery) -> Sql {
    // A CTE's columns are named bare.
    let bare = |s: &mut Sql, column: &'static str| {
        s.push(column.strip_prefix("p.").unwrap_or(column));
    };
    let mut sql = filtered(q, Backend::Postgres, |s| {
        s.push(if q.category.is_some() { ", " } else { "WITH " })
            .push(
                "matches AS MATERIALIZED (SELECT p.id AS id, p.category_id AS category_id, \
                   p.price_amount AS price_amount",
            );
        match q.sort {
            Sort::Relevance => {
                s.push(", ts_rank(p.search, tsq) AS rank");
            }
            Sort::PriceAsc | Sort::PriceDesc => {}
            Sort::Rating | Sort::Newest => {
                s.push(", ").push(sort_column(q.sort));
            }
        }
    });
    sql.push("), top AS (SELECT id, ");
    match q.sort {
        Sort::Relevance => sql.push("rank"),
        other => sql.push(sort_column(other).strip_prefix("p.").unwrap_or_default()),
    };
    sql.push(" AS sort_key FROM matches WHERE TRUE");
    after_cursor(q, &mut sql, bare);
    sql.push(" ORDER BY ");
    order_by(q, Backend::Postgres, &mut sql, bare);
    page_bounds(q, &mut sql);
    sql.push("), page AS (SELECT id, ROW_NUMBER() OVER (ORDER BY ");
    order_by(q, Backend::Postgres, &mut sql, |s, column| {
        s.push(match column {
            "p.id" => "id",
            _ => "sort_key",
        });
    });
    sql.push(") AS ord FROM top), counted AS (SELECT category_id, COUNT(*) AS n");
    count_bands(&mut sql, "price_amount");
    sql.push(" FROM matches GROUP BY category_id) SELECT 0 AS part, page.ord AS ord, ")
        .push(COLUMNS)
        .push(", NULL::text AS cat_id, NULL::text AS cat_name, NULL::text AS cat_slug, NULL::bigint AS n");
    for column in BAND_COLUMNS {
        sql.push(", NULL::bigint AS ").push(column);
    }
    sql.push(
        " FROM page JOIN products p ON p.id = page.id UNION ALL \
         SELECT 1, ROW_NUMBER() OVER (ORDER BY f.n DESC, c.name ASC), \
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
         c.id, c.name, c.slug, f.n",
    );
    for column in BAND_COLUMNS {
        sql.push(", f.").push(column);
    }
    sql.push(" FROM counted f JOIN categories c ON c.id = f.category_id ORDER BY part, ord");
    sql
}

/// One page of a listing, with its total and facets.
pub async fn search(
    pool: &sqlx::AnyPool,
    backend: Backend,
    q: &ProductQuery,
) -> Result<SearchPage, sqlx::Error> {
    let (rows, facets, names) = if backend == Backend::Postgres && !q.terms.is_empty() {
        let rows = text_search_sql(q).query().fetch_all(pool).await?;
        let (facets, items): (Vec<_>, Vec<_>) = rows
            .into_iter()
            .map(|row| Ok::<_, sqlx::Error>((row.try_get::<i32, _>("part")? == 1, row)))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .partition(|(facet, _)| *facet);
        let rows = items.into_iter().map(|(_, row)| row).collect::<Vec<_>>();
        let facets = facets.into_iter().map(|(_, row)| row).collect::<Vec<_>>();
        (rows, facets, ["cat_id", "cat_name", "cat_slug"])
    } else {
        let items = items_sql(q, backend);
        let facets = match counted_facets(q) {
            Some((first, last, stars)) => counted_facets_sql(q, first, last, stars),
            None => facets_sql(q, backend),
        };
        let (rows, facets) = futures::try_join!(
            items.query().fetch_all(pool),
            facets.query().fetch_all(pool),
        )?;
        (rows, facets, ["id", "name", "slug"])
    };
    let mut items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    let more = items.len() > q.page_size as usize;
    items.truncate(q.page_size as usize);
    let mut conn = pool.acquire().await?;
    attach_images(&mut conn, &mut items).await?;
    let mut total = 0;
    let mut price_bands: Vec<PriceBandCount> = PRICE_BANDS
        .iter()
        .enumerate()
        .map(|(i, lo)| PriceBandCount {
            min: *lo,
            max: PRICE_BANDS.get(i + 1).copied(),
            count: 0,
        })
        .collect();
    let [id, name, slug] = names;
    let mut categories = Vec::with_capacity(facets.len());
    for row in &facets {
        let count: i64 = row.try_get("n")?;
        total += count;
        for (band, column) in price_bands.iter_mut().zip(BAND_COLUMNS) {
            band.count += row.try_get::<i64, _>(*column)?;
        }
        categories.push(CategoryCount {
            id: uuid(row.try_get(id)?)?,
            name: row.try_get(name)?,
            slug: row.try_get(slug)?,
            count,
        });
    }
    Ok(SearchPage {
        items,
        total,
        more,
        categories,
        price_bands,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::search::ListParams;

    fn query(p: ListParams) -> ProductQuery {
        ProductQuery::parse(&p).unwrap()
    }

    #[test]
    fn user_text_never_reaches_the_sql() {
        let q = query(ListParams {
            q: Some("lamp'); DROP TABLE products; --".into()),
            category: Some("x' OR 1=1 --".into()),
            min_price: Some(5),
            ..Default::default()
        });
        for backend in [Backend::Postgres, Backend::Sqlite] {
            for sql in [
                items_sql(&q, backend),
                facets_sql(&q, backend),
                text_search_sql(&q),
            ] {
                assert!(!sql.text().contains("DROP"), "{}", sql.text());
                assert!(!sql.text().contains("1=1"), "{}", sql.text());
            }
        }
    }

    #[test]
    fn one_column_per_price_band() {
        assert_eq!(BAND_COLUMNS.len(), PRICE_BANDS.len());
        assert!(PRICE_BANDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn kept_facet_counts_answer_only_whole_bands_and_stars_without_text() {
        let counted = |p: ListParams| counted_facets(&query(p));
        assert_eq!(counted(ListParams::default()), Some((0, 6, None)));
        let whole = ListParams {
            min_price: Some(1_000),
            max_price: Some(24_999),
            min_rating: Some(4.0),
            in_stock: Some(true),
            category: Some("audio".into()),
            ..Default::default()
        };
        assert_eq!(counted(whole.clone()), Some((1, 4, Some(4))));
        for cut in [
            ListParams {
                min_price: Some(1_001),
                ..whole.clone()
            },
            ListParams {
                max_price: Some(25_000),
                ..whole.clone()
            },
            ListParams {
                min_rating: Some(3.5),
                ..whole.clone()
            },
            ListParams {
                q: Some("lamp".into()),
                ..whole.clone()
            },
        ] {
            assert_eq!(counted(cut), None);
        }
    }

    #[test]
    fn a_text_search_finds_its_matches_once() {
        for sort in [Sort::Relevance, Sort::PriceAsc, Sort::Newest, Sort::Rating] {
            let q = query(ListParams {
                q: Some("wire".into()),
                category: Some("audio".into()),
                sort: Some(sort),
                page: Some(2),
                ..Default::default()
            });
            let sql = text_search_sql(&q);
            let text = sql.text();
            assert!(text.starts_with("WITH RECURSIVE subtree"), "{text}");
            assert_eq!(text.matches("@@ tsq").count(), 1, "{text}");
            assert_eq!(text.matches("to_tsquery").count(), 1, "{text}");
            assert!(text.contains(" OFFSET "), "{text}");
            assert_eq!(text.contains("ts_rank"), sort == Sort::Relevance, "{text}");
        }
    }

    #[test]
    fn text_queries_are_prefix_conjunctions() {
        let terms = vec!["wire".to_string(), "head".to_string()];
        assert_eq!(postgres_tsquery(&terms), "wire:* & head:*");
        assert_eq!(fts5_query(&terms), "\"wire\"* \"head\"*");
    }

    #[test]
    fn keyset_pages_start_after_the_cursor() {
        let q = query(ListParams {
            sort: Some(Sort::PriceDesc),
            cursor: Some(
                crate::domain::Cursor {
                    sort: Sort::PriceDesc,
                    key: 500,
                    id: Uuid::nil(),
                }
                .encode(),
            ),
            ..Default::default()
        });
        let sql = items_sql(&q, Backend::Postgres);
        assert!(
            sql.text().contains("AND (p.price_amount, p.id) < ($1, $2)"),
            "{}",
            sql.text()
        );
        assert!(!sql.text().contains("OFFSET"));
    }
}
