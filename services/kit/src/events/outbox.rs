//! Transactional outbox: an event is written in the same transaction as
//! the state change that causes it, and a relay publishes it afterwards
//! (marking it sent only once the broker confirmed). A crash between the two
//! at worst publishes twice, which consumers absorb.
//!
//! Two paths lead to the broker. The usual one: the writer hands the event
//! to its own relay the moment its transaction commits
//! ([`Outbox::committed`]); the row was written already leased to that
//! relay, so no other relay touches it, and it is marked sent in batches a
//! moment later. That costs the database one statement per batch instead of
//! two per event. The other path is the poll: rows nobody is publishing
//! (their writer died before handing them over, or the broker refused them)
//! are claimed with a lease and published from the table.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Row, Transaction};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::bus::EventBus;
use super::envelope::Envelope;
use crate::clock::now_millis;
use crate::db::{Backend, Database};

const BATCH: usize = 100;
/// How long a relay may take to publish a batch it claimed before another
/// relay may take it over (publishing it twice, which consumers absorb).
const LEASE: Duration = Duration::from_secs(10);
/// The lease a row is written with, for the writer's own relay.
const HANDOFF_LEASE: Duration = Duration::from_secs(5);
/// Events handed over but not yet published, at most; beyond that they wait
/// for the poll (memory stays bounded when the broker is away).
const HANDOFF_CAP: usize = 10_000;
/// How long a published event may stay unmarked, so marks go in batches.
const MARK_DELAY: Duration = Duration::from_millis(100);
const IDLE_POLL: Duration = Duration::from_millis(500);
const KEEP_PUBLISHED: Duration = Duration::from_secs(24 * 3600);

/// Where a service records events inside its transactions.
#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

struct Shared {
    wake: Notify,
    handed_over: Mutex<Vec<Envelope>>,
    lease: Duration,
}

impl Default for Outbox {
    fn default() -> Self {
        Self::with_handoff_lease(HANDOFF_LEASE)
    }
}

/// An event written in a transaction that has not committed yet.
#[must_use = "hand it to Outbox::committed once the transaction commits, or it waits for the poll"]
pub struct Recorded(Envelope);

/// An outbox row not written yet: see [`Outbox::unwritten`].
pub struct Unwritten {
    event: Envelope,
    body: String,
    created_at: i64,
    claimed_until: i64,
}

impl Unwritten {
    /// The `INSERT` of the row on its own, parameters `$1` to `$5`.
    pub const INSERT: &str = "INSERT INTO outbox_events \
         (id, routing_key, envelope, created_at, claimed_until) VALUES ($1, $2, $3, $4, $5)";

    /// The `INSERT` of the row, its five parameters numbered from `$first`.
    pub fn insert_sql(first: usize) -> String {
        let p: Vec<String> = (first..first + 5).map(|i| format!("${i}")).collect();
        format!(
            "INSERT INTO outbox_events (id, routing_key, envelope, created_at, claimed_until) \
             VALUES ({})",
            p.join(", ")
        )
    }

    /// The `INSERT` of the row once per row of `source` (a CTE of the same
    /// statement): none when the change it announces did not happen.
    pub fn insert_per_row_sql(first: usize, source: &str) -> String {
        let p: Vec<String> = (first..first + 5).map(|i| format!("${i}")).collect();
        format!(
            "INSERT INTO outbox_events (id, routing_key, envelope, created_at, claimed_until) \
             SELECT {} FROM {source}",
            p.join(", ")
        )
    }

    /// Bind the row's five values, in [`Unwritten::insert_sql`]'s order.
    pub fn bind<'q>(&self, query: Query<'q, Any, AnyArguments>) -> Query<'q, Any, AnyArguments> {
        query
            .bind(self.event.id.to_string())
            .bind(self.event.routing_key())
            .bind(self.body.as_str())
            .bind(self.created_at)
            .bind(self.claimed_until)
    }

    /// The statement that inserts the row ran in the transaction; once that
    /// commits, pass the result to [`Outbox::committed`].
    pub fn written(self) -> Recorded {
        Recorded(self.event)
    }
}

impl Outbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// An outbox whose rows are left to the poll `lease` after they were
    /// written if their relay has not published them by then.
    pub fn with_handoff_lease(lease: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                wake: Notify::new(),
                handed_over: Mutex::new(Vec::new()),
                lease,
            }),
        }
    }

    /// Record `event` in `tx`. Once `tx` commits, pass the result to
    /// [`Outbox::committed`].
    pub async fn record(
        &self,
        tx: &mut Transaction<'static, Any>,
        event: &Envelope,
    ) -> Result<Recorded, sqlx::Error> {
        let row = self.unwritten(event)?;
        row.bind(sqlx::query(Unwritten::INSERT))
            .execute(&mut **tx)
            .await?;
        Ok(row.written())
    }

    /// `event` as an outbox row for a statement of the caller's own to
    /// insert (on PostgreSQL a CTE of the write the event announces, one
    /// round trip fewer than [`Outbox::record`]).
    pub fn unwritten(&self, event: &Envelope) -> Result<Unwritten, sqlx::Error> {
        let body = serde_json::to_string(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let now = now_millis();
        Ok(Unwritten {
            event: event.clone(),
            body,
            created_at: now,
            claimed_until: now + self.shared.lease.as_millis() as i64,
        })
    }

    /// The transaction that recorded these events committed: publish them
    /// now. (Dropping a [`Recorded`] instead, as when the transaction rolled
    /// back, is harmless: a committed row is then published by the poll.)
    pub fn committed(&self, recorded: impl IntoIterator<Item = Recorded>) {
        let mut handed = false;
        {
            let mut queue = self
                .shared
                .handed_over
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for Recorded(event) in recorded {
                if queue.len() < HANDOFF_CAP {
                    queue.push(event);
                    handed = true;
                }
            }
        }
        if handed {
            self.shared.wake.notify_one();
        }
    }

    fn take_handed_over(&self) -> Vec<Envelope> {
        let mut queue = self
            .shared
            .handed_over
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let n = queue.len().min(BATCH);
        queue.drain(..n).collect()
    }
}

/// Publishes committed outbox rows.
pub struct OutboxRelay {
    db: Database,
    bus: EventBus,
    outbox: Outbox,
    /// Published from the hand-over, not yet marked: (id, when published).
    unmarked: Mutex<Unmarked>,
}

#[derive(Default)]
struct Unmarked {
    events: Vec<(String, i64)>,
    since: Option<Instant>,
}

impl OutboxRelay {
    pub fn new(db: Database, bus: EventBus, outbox: Outbox) -> Self {
        Self {
            db,
            bus,
            outbox,
            unmarked: Mutex::new(Unmarked::default()),
        }
    }

    fn unmarked(&self) -> std::sync::MutexGuard<'_, Unmarked> {
        self.unmarked.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        let mut last_cleanup = Instant::now();
        let mut next_poll = Instant::now();
        while !shutdown.is_cancelled() {
            let mut outcome = self.publish_handed_over().await.map(|_| ());
            if outcome.is_ok() && Instant::now() >= next_poll {
                outcome = self.relay_batch().await.map(|n| {
                    // A full batch: there is more waiting.
                    if n < BATCH {
                        next_poll = Instant::now() + IDLE_POLL;
                    }
                });
            }
            let flush_now = {
                let unmarked = self.unmarked();
                unmarked.events.len() >= BATCH
                    || unmarked
                        .since
                        .is_some_and(|since| since + MARK_DELAY <= Instant::now())
            };
            if flush_now {
                outcome = outcome.and(self.flush_marks().await.map(|_| ()));
            }
            if let Err(e) = outcome {
                failures += 1;
                let wait = Duration::from_millis(100 * 2u64.pow(failures.min(6)));
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "outbox relay failed");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
            failures = 0;
            if last_cleanup.elapsed() > Duration::from_secs(600) {
                last_cleanup = Instant::now();
                let cutoff = now_millis() - KEEP_PUBLISHED.as_millis() as i64;
                let _ = sqlx::query(
                    "DELETE FROM outbox_events WHERE published_at IS NOT NULL AND published_at < $1",
                )
                .bind(cutoff)
                .execute(self.db.pool())
                .await;
            }
            let marks_due = self.unmarked().since.map(|since| since + MARK_DELAY);
            let wake_at = marks_due.map_or(next_poll, |due| due.min(next_poll));
            tokio::select! {
                _ = self.outbox.shared.wake.notified() => {}
                _ = tokio::time::sleep_until(wake_at.into()) => {}
                _ = shutdown.cancelled() => {}
            }
        }
        // What was published is not sent again by whoever relays next.
        if let Err(e) = self.flush_marks().await {
            tracing::warn!(error = %e, "outbox relay could not mark its last events sent");
        }
    }

    /// Publish what writers handed over (a batch at most); they are marked
    /// sent by [`OutboxRelay::flush_marks`]. Returns how many were sent.
    pub async fn publish_handed_over(&self) -> Result<usize, String> {
        let events = self.outbox.take_handed_over();
        if events.is_empty() {
            return Ok(0);
        }
        let results = self.bus.publish_all(&events).await;
        let at = now_millis();
        let mut failure = None;
        let mut unsent = Vec::new();
        let mut sent = 0;
        {
            let mut unmarked = self.unmarked();
            for (event, result) in events.iter().zip(results) {
                match result {
                    Ok(()) => {
                        unmarked.events.push((event.id.to_string(), at));
                        unmarked.since.get_or_insert_with(Instant::now);
                        sent += 1;
                    }
                    Err(e) => {
                        failure.get_or_insert_with(|| e.to_string());
                        unsent.push(event.id.to_string());
                    }
                }
            }
        }
        // Leave the refused ones to the poll at once rather than when their
        // lease ends.
        self.set_where_id_in("claimed_until = $1", None, &unsent)
            .await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(sent),
        }
    }

    /// Mark what [`OutboxRelay::publish_handed_over`] published as sent, in
    /// one statement per batch. Returns how many rows were marked.
    pub async fn flush_marks(&self) -> Result<usize, String> {
        let mut marked = 0;
        loop {
            let batch: Vec<(String, i64)> = {
                let mut unmarked = self.unmarked();
                let n = unmarked.events.len().min(BATCH);
                unmarked.events.drain(..n).collect()
            };
            if batch.is_empty() {
                self.unmarked().since = None;
                return Ok(marked);
            }
            // Each row keeps the time it was published at.
            let cases: Vec<String> = (0..batch.len())
                .map(|i| format!("WHEN ${} THEN ${}", 2 * i + 1, 2 * i + 2))
                .collect();
            let ids: Vec<String> = (0..batch.len())
                .map(|i| format!("${}", 2 * i + 1))
                .collect();
            let sql = format!(
                "UPDATE outbox_events SET published_at = CASE id {} END WHERE id IN ({})",
                cases.join(" "),
                ids.join(", ")
            );
            // Only numbered placeholders are spliced in.
            let mut update = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, at) in &batch {
                update = update.bind(id.clone()).bind(*at);
            }
            if let Err(e) = update.execute(self.db.pool()).await {
                // Keep them for the next try.
                let mut unmarked = self.unmarked();
                let later = std::mem::take(&mut unmarked.events);
                unmarked.events = batch;
                unmarked.events.extend(later);
                return Err(e.to_string());
            }
            marked += batch.len();
        }
    }

    /// Publish one batch of the events nobody is publishing (claimed from
    /// the table) and mark them sent; returns how many were sent.
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
            .bind(BATCH as i64)
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
