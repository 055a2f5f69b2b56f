//! The durable bus of embedded mode (`emporium up`): RabbitMQ's topic
//! routing, retries and dead-lettering over one SQLite file, so events a
//! process accepted survive it being stopped or killed, as they survive a
//! broker restart. A published event becomes one row per bound queue in the
//! same transaction; a consumer deletes the row once handled, so anything
//! not handled when the process died is delivered again at the next start
//! (consumers are idempotent by event id). Queues are rows too, kept across
//! restarts like durable queues, so an event published before its consumer
//! subscribed in this process still reaches it.
//!
//! Consumers in this process are woken at once; the file is also polled
//! every second, which is how a replay made by `emporium dlq` in another
//! process is picked up. Each queue is consumed by one task per process, in
//! order; two processes consuming the same queue would deliver twice, which
//! consumers absorb.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Row;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::bus::{BusError, DeadLetter, Disposition, Subscription, Topology, handle_with_retries};
use super::envelope::{Envelope, topic_matches};
use crate::clock::now_millis;
use crate::config::DatabaseUrl;
use crate::db::Database;

/// How often an idle consumer looks at the file for rows another process
/// added (a replay).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Rows a consumer reads at a time.
const BATCH: i64 = 64;
/// How long a consumer waits before reading again after the file failed it.
const FAILED_READ_PAUSE: Duration = Duration::from_millis(500);

const SCHEMA: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS bus_queues (name TEXT PRIMARY KEY, pattern TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS bus_messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
     queue TEXT NOT NULL, envelope TEXT NOT NULL, published_at INTEGER NOT NULL, \
     dead_reason TEXT)",
    "CREATE INDEX IF NOT EXISTS bus_messages_by_queue ON bus_messages (queue, seq)",
];

#[derive(Clone)]
pub struct SqliteBus {
    topology: Topology,
    db: Database,
    /// Wakes this process's consumer of a queue when a row is added to it.
    wake: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

fn broker(e: impl std::fmt::Display) -> BusError {
    BusError::Broker(format!("event file: {e}"))
}

impl SqliteBus {
    /// Open (or create) the bus file at `path`.
    pub async fn open(path: &Path, topology: Topology) -> Result<Self, BusError> {
        let db = Database::connect(&DatabaseUrl::sqlite_file(path))
            .await
            .map_err(|e| broker(format!("cannot open {}: {e}", path.display())))?;
        for statement in SCHEMA {
            sqlx::query(statement)
                .execute(db.pool())
                .await
                .map_err(broker)?;
        }
        Ok(Self {
            topology,
            db,
            wake: Arc::default(),
        })
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    fn waker(&self, queue: &str) -> Arc<Notify> {
        let mut wake = self.wake.lock().unwrap_or_else(|p| p.into_inner());
        wake.entry(queue.to_owned()).or_default().clone()
    }

    fn wake(&self, queues: &[String]) {
        let wake = self.wake.lock().unwrap_or_else(|p| p.into_inner());
        for queue in queues {
            if let Some(notify) = wake.get(queue) {
                notify.notify_one();
            }
        }
    }

    pub async fn publish(&self, event: &Envelope) -> Result<(), BusError> {
        self.publish_all(std::slice::from_ref(event))
            .await
            .pop()
            .unwrap_or(Ok(()))
    }

    /// Route every event to its queues in one transaction: all are kept, or
    /// none (and the outbox sends them again).
    pub async fn publish_all(&self, events: &[Envelope]) -> Vec<Result<(), BusError>> {
        match self.route(events).await {
            Ok(queues) => {
                self.wake(&queues);
                events.iter().map(|_| Ok(())).collect()
            }
            Err(e) => events.iter().map(|_| Err(broker(&e))).collect(),
        }
    }

    /// The queues that received something.
    async fn route(&self, events: &[Envelope]) -> Result<Vec<String>, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let bound: Vec<(String, String)> = sqlx::query("SELECT name, pattern FROM bus_queues")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| Ok((row.try_get("name")?, row.try_get("pattern")?)))
            .collect::<Result<_, sqlx::Error>>()?;
        let now = now_millis();
        let mut reached = Vec::new();
        for event in events {
            let body =
                serde_json::to_string(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            for (queue, _) in bound
                .iter()
                .filter(|(_, pattern)| topic_matches(pattern, event.routing_key()))
            {
                sqlx::query(
                    "INSERT INTO bus_messages (queue, envelope, published_at) VALUES ($1, $2, $3)",
                )
                .bind(queue)
                .bind(&body)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if !reached.contains(queue) {
                    reached.push(queue.clone());
                }
            }
        }
        tx.commit().await?;
        Ok(reached)
    }

    /// Declare the subscription's queue (kept in the file) and consume it
    /// until `shutdown`.
    pub async fn subscribe(
        &self,
        sub: Subscription,
        shutdown: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, BusError> {
        let queue = self.topology.queue(&sub.consumer, &sub.event_type);
        sqlx::query(
            "INSERT INTO bus_queues (name, pattern) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET pattern = excluded.pattern",
        )
        .bind(&queue)
        .bind(&sub.event_type)
        .execute(self.db.pool())
        .await
        .map_err(broker)?;
        let bus = self.clone();
        let wake = self.waker(&queue);
        Ok(tokio::spawn(async move {
            bus.consume(&queue, &sub, &wake, &shutdown).await;
        }))
    }

    async fn consume(
        &self,
        queue: &str,
        sub: &Subscription,
        wake: &Notify,
        shutdown: &CancellationToken,
    ) {
        // Every row up to here was handled (deleted) or dead-lettered;
        // replays come back as new rows after it.
        let mut after = 0_i64;
        loop {
            let rows = match self.waiting(queue, after).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(%queue, error = %e, "cannot read the event file; trying again");
                    tokio::select! {
                        _ = tokio::time::sleep(FAILED_READ_PAUSE) => continue,
                        _ = shutdown.cancelled() => return,
                    }
                }
            };
            if rows.is_empty() {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    _ = shutdown.cancelled() => return,
                }
                continue;
            }
            for (seq, body) in rows {
                if shutdown.is_cancelled() {
                    return;
                }
                let disposition = match serde_json::from_str::<Envelope>(&body) {
                    Ok(event) => handle_with_retries(sub, &event, shutdown).await,
                    Err(e) => Disposition::DeadLetter(format!("not an event envelope: {e}")),
                };
                let settled = match disposition {
                    // Stays in the file, for the next start.
                    Disposition::Requeue => return,
                    Disposition::Ack => self.settle(seq, None).await,
                    Disposition::DeadLetter(reason) => {
                        tracing::warn!(%queue, %reason, "event dead-lettered");
                        self.settle(seq, Some(&reason)).await
                    }
                };
                if let Err(e) = settled {
                    // Handled but not marked: read again (and absorbed by
                    // the consumer's idempotency) once the file answers.
                    tracing::warn!(%queue, error = %e, "cannot mark an event handled; it will be delivered again");
                    break;
                }
                after = seq;
            }
        }
    }

    async fn waiting(&self, queue: &str, after: i64) -> Result<Vec<(i64, String)>, sqlx::Error> {
        sqlx::query(
            "SELECT seq, envelope FROM bus_messages \
             WHERE queue = $1 AND seq > $2 AND dead_reason IS NULL ORDER BY seq LIMIT $3",
        )
        .bind(queue)
        .bind(after)
        .bind(BATCH)
        .fetch_all(self.db.pool())
        .await?
        .iter()
        .map(|row| Ok((row.try_get("seq")?, row.try_get("envelope")?)))
        .collect()
    }

    /// Handled: delete the row; dead: keep it, with why.
    async fn settle(&self, seq: i64, dead_reason: Option<&str>) -> Result<(), sqlx::Error> {
        let query = match dead_reason {
            None => sqlx::query("DELETE FROM bus_messages WHERE seq = $1").bind(seq),
            Some(reason) => sqlx::query("UPDATE bus_messages SET dead_reason = $2 WHERE seq = $1")
                .bind(seq)
                .bind(reason.to_owned()),
        };
        query.execute(self.db.pool()).await?;
        Ok(())
    }

    pub async fn dead_letters(&self, queue: &str) -> Result<Vec<DeadLetter>, BusError> {
        let rows = sqlx::query(
            "SELECT envelope, dead_reason FROM bus_messages \
             WHERE queue = $1 AND dead_reason IS NOT NULL ORDER BY seq",
        )
        .bind(queue)
        .fetch_all(self.db.pool())
        .await
        .map_err(broker)?;
        rows.iter()
            .map(|row| {
                let body: String = row.try_get("envelope").map_err(broker)?;
                Ok(DeadLetter {
                    queue: queue.to_owned(),
                    envelope: serde_json::from_str(&body).ok(),
                    raw: body.into_bytes(),
                    reason: row.try_get("dead_reason").map_err(broker)?,
                })
            })
            .collect()
    }

    /// Put a queue's dead letters back at its end, as RabbitMQ's replay
    /// through the queue's binding does.
    pub async fn replay_dead_letters(&self, queue: &str) -> Result<usize, BusError> {
        let replayed = async {
            let mut tx = self.db.begin().await?;
            let moved = sqlx::query(
                "INSERT INTO bus_messages (queue, envelope, published_at) \
                 SELECT queue, envelope, $2 FROM bus_messages \
                 WHERE queue = $1 AND dead_reason IS NOT NULL ORDER BY seq",
            )
            .bind(queue)
            .bind(now_millis())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query("DELETE FROM bus_messages WHERE queue = $1 AND dead_reason IS NOT NULL")
                .bind(queue)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(moved)
        }
        .await
        .map_err(broker)?;
        self.wake(&[queue.to_owned()]);
        Ok(usize::try_from(replayed).unwrap_or(usize::MAX))
    }

    pub async fn ping(&self) -> Result<(), String> {
        self.db.ping().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::events::{HandlerError, RetryPolicy};

    fn counting(seen: Arc<AtomicUsize>, fail: bool) -> Subscription {
        Subscription::new("catalog", "order.placed", move |_e: Envelope| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                if fail {
                    Err(HandlerError::poison("unreadable order"))
                } else {
                    Ok(())
                }
            }
        })
        .with_retry(RetryPolicy {
            max_attempts: 1,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
        })
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..400 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    fn placed() -> Envelope {
        Envelope::new("orders", "order.placed", serde_json::json!({"n": 1})).unwrap()
    }

    #[tokio::test]
    async fn events_not_handled_before_a_stop_are_delivered_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus.db");
        let bus = SqliteBus::open(&path, Topology::default()).await.unwrap();
        let stop = CancellationToken::new();
        let seen = Arc::new(AtomicUsize::new(0));
        bus.subscribe(counting(seen.clone(), false), stop.clone())
            .await
            .unwrap();
        bus.publish(&placed()).await.unwrap();
        until("the first delivery", || seen.load(Ordering::SeqCst) == 1).await;
        stop.cancel();
        // Published while nobody consumes: kept for the declared queue;
        // an event nobody subscribed to is not.
        bus.publish_all(&[placed(), placed()]).await;
        bus.publish(&Envelope::new("orders", "order.shipped", serde_json::json!({})).unwrap())
            .await
            .unwrap();
        drop(bus);

        let reopened = SqliteBus::open(&path, Topology::default()).await.unwrap();
        let again = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        reopened
            .subscribe(counting(again.clone(), false), stop.clone())
            .await
            .unwrap();
        until("the two kept events", || again.load(Ordering::SeqCst) == 2).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(again.load(Ordering::SeqCst), 2, "each delivered once");
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM bus_messages")
            .fetch_one(reopened.db.pool())
            .await
            .unwrap();
        assert_eq!(left, 0, "handled rows are deleted");
        stop.cancel();
    }

    #[tokio::test]
    async fn dead_letters_are_kept_and_replayed_from_another_handle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus.db");
        let bus = SqliteBus::open(&path, Topology::default()).await.unwrap();
        let stop = CancellationToken::new();
        let seen = Arc::new(AtomicUsize::new(0));
        bus.subscribe(counting(seen.clone(), true), stop.clone())
            .await
            .unwrap();
        let poison = placed();
        bus.publish(&poison).await.unwrap();
        let queue = Topology::default().queue("catalog", "order.placed");
        until("the dead letter", || seen.load(Ordering::SeqCst) == 1).await;
        let mut letters = Vec::new();
        for _ in 0..100 {
            letters = bus.dead_letters(&queue).await.unwrap();
            if !letters.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].envelope.as_ref().unwrap().id, poison.id);
        assert!(
            letters[0].reason.contains("unreadable order"),
            "{letters:?}"
        );

        // As `emporium dlq replay` does it: another process, the same file.
        let other = SqliteBus::open(&path, Topology::default()).await.unwrap();
        assert_eq!(other.replay_dead_letters(&queue).await.unwrap(), 1);
        assert!(other.dead_letters(&queue).await.unwrap().is_empty());
        // The consumer finds it on its next look at the file, refuses it
        // again, and it is dead again.
        until("the replayed delivery", || seen.load(Ordering::SeqCst) == 2).await;
        let mut dead_again = false;
        for _ in 0..100 {
            if bus.dead_letters(&queue).await.unwrap().len() == 1 {
                dead_again = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(dead_again, "the replayed event is dead-lettered again");
        stop.cancel();
    }
}
