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
    pub async fn relay_batch(&self) -> Result<usize, String> {
        let mut tx = self.db.begin().await.map_err(|e| e.to_string())?;
        // Row locks let several replicas relay side by side without sending
        // the same row twice; SQLite has a single writer anyway.
        let select = match self.db.backend() {
            Backend::Postgres => {
                "SELECT id, envelope FROM outbox_events WHERE published_at IS NULL \
                 ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
            }
            Backend::Sqlite => {
                "SELECT id, envelope FROM outbox_events WHERE published_at IS NULL \
                 ORDER BY id LIMIT $1"
            }
        };
        let rows = sqlx::query(select)
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
        let mut sent = Vec::new();
        let mut ids = Vec::new();
        let mut events = Vec::new();
        for row in &rows {
            let id: String = row.try_get("id").map_err(|e| e.to_string())?;
            let body: String = row.try_get("envelope").map_err(|e| e.to_string())?;
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
        for (id, result) in ids.into_iter().zip(self.bus.publish_all(&events).await) {
            match result {
                Ok(()) => sent.push(id),
                // Left unsent for the next batch; consumers do not rely on
                // the order of events.
                Err(e) => {
                    failure.get_or_insert_with(|| e.to_string());
                }
            }
        }
        if !sent.is_empty() {
            let placeholders: Vec<String> = (2..sent.len() + 2).map(|i| format!("${i}")).collect();
            let sql = format!(
                "UPDATE outbox_events SET published_at = $1 WHERE id IN ({})",
                placeholders.join(", ")
            );
            // Only numbered placeholders are spliced in; the ids are bound.
            let mut update = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now_millis());
            for id in &sent {
                update = update.bind(id);
            }
            update.execute(&mut *tx).await.map_err(|e| e.to_string())?;
        }
        tx.commit().await.map_err(|e| e.to_string())?;
        match failure {
            Some(e) => Err(e),
            None => Ok(sent.len()),
        }
    }

    /// Events recorded but not yet published (for readiness and tests).
    pub async fn pending(db: &Database) -> Result<i64, sqlx::Error> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM outbox_events WHERE published_at IS NULL")
            .fetch_one(db.pool())
            .await?;
        row.try_get("n")
    }
}
