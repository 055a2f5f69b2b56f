//! The consumer side of exactly-once effect: a handler records the event id
//! in the same transaction as its effects; a redelivered event finds its id
//! already there and changes nothing.

use sqlx::{Any, Transaction};

use super::envelope::Envelope;
use crate::clock::now_millis;

/// The claim as SQL, binding consumer, event id and the time; it inserts a
/// row only on the first delivery. Services on PostgreSQL may make it
/// (with `RETURNING`) a CTE of the statement that applies the event, so
/// claim and effect take one round trip.
pub const CLAIM: &str = "INSERT INTO processed_events (consumer, event_id, processed_at) \
     VALUES ($1, $2, $3) ON CONFLICT (consumer, event_id) DO NOTHING";

/// One PostgreSQL statement that runs `claim` (an `INSERT … ON CONFLICT DO
/// NOTHING`, such as [`CLAIM`]) and `locked` (a `SELECT … FOR UPDATE`). It
/// answers one row: `claimed` (false on a redelivery) and the locked row's
/// columns, all NULL when there is no such row.
pub fn claim_then_lock(claim: &str, locked: &str) -> String {
    format!(
        "WITH claim AS ({claim} RETURNING 1), locked AS ({locked}) \
         SELECT EXISTS (SELECT 1 FROM claim) AS claimed, locked.* \
         FROM (SELECT 1) AS one LEFT JOIN locked ON TRUE"
    )
}

/// Claim `event` for `consumer` inside `tx`. `false` means it was already
/// handled: commit nothing else and acknowledge.
pub async fn first_delivery(
    tx: &mut Transaction<'static, Any>,
    consumer: &str,
    event: &Envelope,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(CLAIM)
        .bind(consumer)
        .bind(event.id.to_string())
        .bind(now_millis())
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}
