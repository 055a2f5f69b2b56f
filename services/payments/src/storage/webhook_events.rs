//! Webhook events already applied, by provider and event id.

use sqlx::{Any, Executor, Row};

/// The claim as SQL, binding provider, event id, event type and the time.
pub const CLAIM: &str = "INSERT INTO webhook_events \
     (provider, event_id, event_type, received_at, deliveries) \
     VALUES ($1, $2, $3, $4, 1) ON CONFLICT (provider, event_id) DO NOTHING";

/// Claim `event_id` in the transaction that applies it. `false` means an
/// earlier delivery applied it: change nothing.
pub async fn claim<'e>(
    db: impl Executor<'e, Database = Any>,
    provider: &str,
    event_id: &str,
    event_type: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(CLAIM)
        .bind(provider)
        .bind(event_id)
        .bind(event_type)
        .bind(now)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Count another delivery of an event already applied.
pub async fn record_redelivery<'e>(
    db: impl Executor<'e, Database = Any>,
    provider: &str,
    event_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_events SET deliveries = deliveries + 1 WHERE provider = $1 AND event_id = $2",
    )
    .bind(provider)
    .bind(event_id)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn seen<'e>(
    db: impl Executor<'e, Database = Any>,
    provider: &str,
    event_id: &str,
) -> Result<bool, sqlx::Error> {
    let row =
        sqlx::query("SELECT deliveries FROM webhook_events WHERE provider = $1 AND event_id = $2")
            .bind(provider)
            .bind(event_id)
            .fetch_optional(db)
            .await?;
    Ok(row
        .map(|r| r.try_get::<i64, _>("deliveries"))
        .transpose()?
        .is_some())
}
