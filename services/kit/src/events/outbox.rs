//! Transactional outbox: an event is written in the same transaction as
//! the state change that causes it, and a relay publishes it afterwards
//! (marking it sent only once the broker confirmed). A crash between the two
//! at worst publishes twice, which consumers absorb.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Any, Row, Transaction};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::bus::EventBus;
use super::envelope::Envelope;
use crate::clock::now_millis;
use crate::db::{Backend, Database};

const BATCH: i64 = 100;
/// How long a relay may take to publish a batch it claimed before another
/// relay may take it over (publishing it twice, which consumers absorb).
const LEASE: Duration = Duration::from_secs(10);
const IDLE_POLL: Duration = Duration::from_millis(500);
const KEEP_PUBLISHED: Duration = Duration::from_secs(24 * 3600);

/// Where a service records events inside its transactions.
#[derive(Clone, Default)]
pub struct Outbox {
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record `event` in `tx`; it is published once `tx` commits.
    pub async fn record(
        &self,
        tx: &mut Transaction<'static, Any>,
        event: &Envelope,
    ) -> Result<(), sqlx::Error> {
        let body = serde_json::to_string(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        sqlx::query(
            "INSERT INTO outbox_events (id, routing_key, envelope, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(event.id.to_string())
        .bind(event.routing_key())
        .bind(body)
        .bind(now_millis())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Tell the relay a transaction with events just committed, so it does
    /// not wait for its next poll.
    pub fn notify_committed(&self) {
        self.wake.notify_one();
    }
}

/// Publishes committed outbox rows in order.
pub struct OutboxRelay {
    db: Database,
    bus: EventBus,
    outbox: Outbox,
}

impl OutboxRelay {
    pub fn new(db: Database, bus: EventBus, outbox: Outbox) -> Self {
        Self { db, bus, outbox }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        let mut last_cleanup = std::time::Instant::now();
        while !shutdown.is_cancelled() {
            match self.relay_batch().await {
                Ok(n) if n as i64 == BATCH => {
                    failures = 0;
                    continue;
                }
                Ok(_) => {
                    failures = 0;
                    tokio::select! {
                        _ = self.outbox.wake.notified() => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
                Err(e) => {
                    failures += 1;
                    let wait = Duration::from_millis(100 * 2u64.pow(failures.min(6)));
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "outbox relay failed");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
            }
            if last_cleanup.elapsed() > Duration::from_secs(600) {
                last_cleanup = std::time::Instant::now();
                let cutoff = now_millis() - KEEP_PUBLISHED.as_millis() as i64;
                let _ = sqlx::query(
                    "DELETE FROM outbox_events WHERE published_at IS NOT NULL AND published_at < $1",
                )
                .bind(cutoff)
                .execute(self.db.pool())
                .await;
            }
        }
    }

    /// Publish one batch of unsent events; returns how many were sent.
    ///
    /// The batch is claimed with a lease in one statement, so several
    /// replicas relay side by side without sending a row twice, and no
    /// transaction stays open while the broker confirms. A relay that dies
    /// holding a lease leaves its rows to the others once it runs out.
    pub async fn relay_batch(&self) -> Result<usize, String> {
        let now = now_millis();
        // SQLite has a single writer: nothing to skip.
        let claim = match self.db.backend() {
            Backend::Postgres => {
                "UPDATE outbox_events SET claimed_until = $1 WHERE id IN (\
                 SELECT id FROM outbox_events WHERE published_at IS NULL \
                 AND (claimed_until IS NULL OR claimed_until < $2) \
                 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING id, envelope"
            }
            Backend::Sqlite => {
                "UPDATE outbox_events SET claimed_until = $1 WHERE id IN (\
                 SELECT id FROM outbox_events WHERE published_at IS NULL \
                 AND (claimed_until IS NULL OR claimed_until < $2) \
                 ORDER BY id LIMIT $3) RETURNING id, envelope"
            }
        };
        let mut rows: Vec<(String, String)> = sqlx::query(claim)
            .bind(now + LEASE.as_millis() as i64)
            .bind(now)
            .bind(BATCH)
            .fetch_all(self.db.pool())
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("envelope")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| e.to_string())?;
        // RETURNING keeps no order; publish in the order recorded.
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut sent = Vec::new();
        let mut ids = Vec::new();
        let mut events = Vec::new();
        for (id, body) in rows {
            match serde_json::from_str::<Envelope>(&body) {
                Ok(event) => {
                    ids.push(id);
                    events.push(event);
                }
                Err(e) => {
                    tracing::error!(%id, error = %e, "outbox row is not an envelope; skipping it");
                    sent.push(id);
                }
            }
        }
        let mut failure = None;
        let mut unsent = Vec::new();
        for (id, result) in ids.into_iter().zip(self.bus.publish_all(&events).await) {
            match result {
                Ok(()) => sent.push(id),
                // Consumers do not rely on the order of events.
                Err(e) => {
                    failure.get_or_insert_with(|| e.to_string());
                    unsent.push(id);
                }
            }
        }
        self.set_where_id_in("published_at = $1", Some(now_millis()), &sent)
            .await?;
        // Give the failed ones back at once rather than when the lease ends.
        self.set_where_id_in("claimed_until = $1", None, &unsent)
            .await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(sent.len()),
        }
    }

    /// `UPDATE outbox_events SET {assignment} WHERE id IN (ids)`, with
    /// `$1` bound to `value`.
    async fn set_where_id_in(
        &self,
        assignment: &'static str,
        value: Option<i64>,
        ids: &[String],
    ) -> Result<(), String> {
        if ids.is_empty() {
            return Ok(());
        }
        let placeholders: Vec<String> = (2..ids.len() + 2).map(|i| format!("${i}")).collect();
        let sql = format!(
            "UPDATE outbox_events SET {assignment} WHERE id IN ({})",
            placeholders.join(", ")
        );
        // Only a fixed assignment and numbered placeholders are spliced in.
        let mut update = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(value);
        for id in ids {
            update = update.bind(id);
        }
        update
            .execute(self.db.pool())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Events recorded but not yet published (for readiness and tests).
    pub async fn pending(db: &Database) -> Result<i64, sqlx::Error> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM outbox_events WHERE published_at IS NULL")
            .fetch_one(db.pool())
            .await?;
        row.try_get("n")
    }
}
