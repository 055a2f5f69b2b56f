use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};
use uuid::Uuid;

use super::{is_foreign_key_violation, uuid, violates_unique};

#[derive(Debug, Clone, PartialEq)]
pub struct CategoryRecord {
    pub id: Uuid,
    pub parent_id: Option<Uuid>,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, parent_id, name, slug, description, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<CategoryRecord, sqlx::Error> {
    Ok(CategoryRecord {
        id: uuid(row.try_get("id")?)?,
        parent_id: row
            .try_get::<Option<String>, _>("parent_id")?
            .map(uuid)
            .transpose()?,
        name: row.try_get("name")?,
        slug: row.try_get("slug")?,
        description: row.try_get("description")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Every category, by name (the tree is small; it is assembled in memory).
pub async fn all<'e>(
    db: impl Executor<'e, Database = Any>,
) -> Result<Vec<CategoryRecord>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM categories ORDER BY name, id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(db).await?;
    rows.iter().map(from_row).collect()
}

pub async fn by_id<'e>(
    db: impl Executor<'e, Database = Any>,
    id: Uuid,
) -> Result<Option<CategoryRecord>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM categories WHERE id = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(db)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

pub async fn exists<'e>(
    db: impl Executor<'e, Database = Any>,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("SELECT 1 AS one FROM categories WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(db)
        .await?
        .is_some())
}

pub enum WriteOutcome {
    Written,
    SlugTaken,
    ParentMissing,
}

fn outcome(result: Result<u64, sqlx::Error>) -> Result<Option<WriteOutcome>, sqlx::Error> {
    match result {
        Ok(0) => Ok(None),
        Ok(_) => Ok(Some(WriteOutcome::Written)),
        Err(e) if violates_unique(&e, "categories_slug_key", "categories.slug") => {
            Ok(Some(WriteOutcome::SlugTaken))
        }
        Err(e) if is_foreign_key_violation(&e) => Ok(Some(WriteOutcome::ParentMissing)),
        Err(e) => Err(e),
    }
}

pub async fn insert<'e>(
    db: impl Executor<'e, Database = Any>,
    c: &CategoryRecord,
) -> Result<WriteOutcome, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO categories (id, parent_id, name, slug, description, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(c.id.to_string())
    .bind(c.parent_id.map(|p| p.to_string()))
    .bind(&c.name)
    .bind(&c.slug)
    .bind(&c.description)
    .bind(c.created_at)
    .bind(c.updated_at)
    .execute(db)
    .await
    .map(|r| r.rows_affected());
    Ok(outcome(result)?.unwrap_or(WriteOutcome::Written))
}

/// Replace a category's fields; `None` if there is no such category.
pub async fn update<'e>(
    db: impl Executor<'e, Database = Any>,
    c: &CategoryRecord,
) -> Result<Option<WriteOutcome>, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE categories SET parent_id = $1, name = $2, slug = $3, description = $4, updated_at = $5 \
         WHERE id = $6",
    )
    .bind(c.parent_id.map(|p| p.to_string()))
    .bind(&c.name)
    .bind(&c.slug)
    .bind(&c.description)
    .bind(c.updated_at)
    .bind(c.id.to_string())
    .execute(db)
    .await
    .map(|r| r.rows_affected());
    outcome(result)
}

/// Is `candidate` the category `root` or one of its descendants? Walks up
/// from `candidate`, so the cost is the depth of the tree.
pub async fn is_in_subtree(
    conn: &mut AnyConnection,
    root: Uuid,
    candidate: Uuid,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query(
        "WITH RECURSIVE ancestry (id, parent_id) AS ( \
             SELECT id, parent_id FROM categories WHERE id = $1 \
             UNION \
             SELECT c.id, c.parent_id FROM categories c JOIN ancestry a ON c.id = a.parent_id \
         ) \
         SELECT COUNT(*) AS n FROM ancestry WHERE id = $2",
    )
    .bind(candidate.to_string())
    .bind(root.to_string())
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.try_get::<i64, _>("n")? > 0)
}

/// How many subcategories and products (active or not) a category holds.
pub async fn usage(conn: &mut AnyConnection, id: Uuid) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM categories WHERE parent_id = $1) AS children, \
                (SELECT COUNT(*) FROM products WHERE category_id = $2) AS products",
    )
    .bind(id.to_string())
    .bind(id.to_string())
    .fetch_one(&mut *conn)
    .await?;
    Ok((row.try_get("children")?, row.try_get("products")?))
}

pub enum DeleteOutcome {
    Deleted,
    NotFound,
    /// Something still refers to the category (a row added since the
    /// usage check).
    InUse,
}

pub async fn delete(conn: &mut AnyConnection, id: Uuid) -> Result<DeleteOutcome, sqlx::Error> {
    match sqlx::query("DELETE FROM categories WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut *conn)
        .await
    {
        Ok(r) if r.rows_affected() == 0 => Ok(DeleteOutcome::NotFound),
        Ok(_) => Ok(DeleteOutcome::Deleted),
        Err(e) if is_foreign_key_violation(&e) => Ok(DeleteOutcome::InUse),
        Err(e) => Err(e),
    }
}
