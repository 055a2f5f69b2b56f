//! Payments' tables. Portable SQL through sqlx's `Any` driver.

pub mod payments;
pub mod webhook_events;

use sqlx::{Any, Executor};
use uuid::Uuid;

pub static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
pub static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Has `consumer` already handled event `event_id`? A cheap look before a
/// provider call; the claim that counts is `kit::events::inbox::first_delivery`
/// in the transaction of the effect.
pub async fn already_handled<'e>(
    db: impl Executor<'e, Database = Any>,
    consumer: &str,
    event_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let row =
        sqlx::query("SELECT 1 AS one FROM processed_events WHERE consumer = $1 AND event_id = $2")
            .bind(consumer)
            .bind(event_id.to_string())
            .fetch_optional(db)
            .await?;
    Ok(row.is_some())
}

fn uuid(s: String) -> Result<Uuid, sqlx::Error> {
    Uuid::parse_str(&s).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}
