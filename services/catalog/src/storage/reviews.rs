use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};
use uuid::Uuid;

use super::{is_foreign_key_violation, uuid, violates_unique};

#[derive(Debug, Clone, PartialEq)]
pub struct ReviewRecord {
    pub id: Uuid,
    pub product_id: Uuid,
    pub user_id: Uuid,
    pub rating: i64,
    pub title: String,
    pub body: String,
    pub created_at: i64,
}

fn from_row(row: &AnyRow) -> Result<ReviewRecord, sqlx::Error> {
    Ok(ReviewRecord {
        id: uuid(row.try_get("id")?)?,
        product_id: uuid(row.try_get("product_id")?)?,
        user_id: uuid(row.try_get("user_id")?)?,
        rating: row.try_get("rating")?,
        title: row.try_get("title")?,
        body: row.try_get("body")?,
        created_at: row.try_get("created_at")?,
    })
}

pub enum InsertOutcome {
    Inserted,
    AlreadyReviewed,
    NoSuchProduct,
}

pub async fn insert(
    conn: &mut AnyConnection,
    r: &ReviewRecord,
) -> Result<InsertOutcome, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO reviews (id, product_id, user_id, rating, title, body, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(r.id.to_string())
    .bind(r.product_id.to_string())
    .bind(r.user_id.to_string())
    .bind(r.rating)
    .bind(&r.title)
    .bind(&r.body)
    .bind(r.created_at)
    .execute(&mut *conn)
    .await;
    match result {
        Ok(_) => Ok(InsertOutcome::Inserted),
        Err(e)
            if violates_unique(
                &e,
                "reviews_one_per_user",
                "reviews.product_id, reviews.user_id",
            ) =>
        {
            Ok(InsertOutcome::AlreadyReviewed)
        }
        Err(e) if is_foreign_key_violation(&e) => Ok(InsertOutcome::NoSuchProduct),
        Err(e) => Err(e),
    }
}

/// A page of a product's reviews, newest first, and how many there are.
pub async fn page<'e, E>(
    db: E,
    product_id: Uuid,
    limit: i64,
    offset: i64,
) -> Result<(Vec<ReviewRecord>, i64), sqlx::Error>
where
    E: Executor<'e, Database = Any> + Copy,
{
    let rows = sqlx::query(
        "SELECT id, product_id, user_id, rating, title, body, created_at FROM reviews \
         WHERE product_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
    )
    .bind(product_id.to_string())
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await?;
    let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM reviews WHERE product_id = $1")
        .bind(product_id.to_string())
        .fetch_one(db)
        .await?
        .try_get("n")?;
    Ok((rows.iter().map(from_row).collect::<Result<_, _>>()?, total))
}
