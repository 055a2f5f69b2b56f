//! The event mechanisms on each backend set: outbox relay, idempotent
//! consumption, retries, dead-lettering and replay.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use emporium_tests::{Backends, eventually};
use kit::events::{Envelope, HandlerError, Outbox, OutboxRelay, RetryPolicy, Subscription, inbox};
use sqlx::Row;
use tokio_util::sync::CancellationToken;

async fn count(db: &kit::db::Database, sql: &'static str) -> i64 {
    sqlx::query(sql)
        .fetch_one(db.pool())
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

#[tokio::test]
async fn outbox_events_reach_an_idempotent_consumer_once() {
    let b = Backends::new();
    let db = b.database("events").await;
    kit::events::ensure_schema(&db).await.unwrap();
    sqlx::query("CREATE TABLE credits (id TEXT PRIMARY KEY, amount BIGINT NOT NULL)")
        .execute(db.pool())
        .await
        .unwrap();
    let bus = b.bus().await;
    let stop = CancellationToken::new();

    // Consumer: credits an account once per event, however often delivered.
    let handled = Arc::new(AtomicUsize::new(0));
    let consumer_db = db.clone();
    let calls = handled.clone();
    bus.subscribe(
        Subscription::new("ledger", "payment.received", move |event: Envelope| {
            let db = consumer_db.clone();
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let mut tx = db.begin().await?;
                if !inbox::first_delivery(&mut tx, "ledger", &event).await? {
                    return Ok(());
                }
                let amount = event.payload["amount"]
                    .as_i64()
                    .ok_or_else(|| HandlerError::poison("no amount"))?;
                sqlx::query("INSERT INTO credits (id, amount) VALUES ($1, $2)")
                    .bind(event.id.to_string())
                    .bind(amount)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }
        }),
        stop.clone(),
    )
    .await
    .unwrap();

    // Producer: three events recorded in committed transactions, one in a
    // rolled-back one (which must never be published). The first two are
    // handed to the relay on commit; the third is not, as when its writer
    // dies right after committing, so only the poll can publish it, once
    // the writer's lease on it has run out.
    let lease = Duration::from_millis(400);
    let outbox = Outbox::with_handoff_lease(lease);
    let written = std::time::Instant::now();
    for (n, amount) in [100, 250, 650].into_iter().enumerate() {
        let mut tx = db.begin().await.unwrap();
        let e = Envelope::new(
            "test",
            "payment.received",
            serde_json::json!({"amount": amount}),
        )
        .unwrap();
        let recorded = outbox.record(&mut tx, &e).await.unwrap();
        tx.commit().await.unwrap();
        if n < 2 {
            outbox.committed([recorded]);
        }
    }
    {
        let mut tx = db.begin().await.unwrap();
        let e = Envelope::new(
            "test",
            "payment.received",
            serde_json::json!({"amount": 999_999}),
        )
        .unwrap();
        let _rolled_back = outbox.record(&mut tx, &e).await.unwrap();
        tx.rollback().await.unwrap();
    }
    assert_eq!(OutboxRelay::pending(&db).await.unwrap(), 3);
    let relay = OutboxRelay::new(db.clone(), bus.clone(), outbox.clone());
    assert_eq!(relay.publish_handed_over().await.unwrap(), 2);
    assert_eq!(relay.publish_handed_over().await.unwrap(), 0);
    // Sent but not marked yet: marks go in batches.
    assert_eq!(OutboxRelay::pending(&db).await.unwrap(), 3);
    assert_eq!(relay.flush_marks().await.unwrap(), 2);
    assert_eq!(OutboxRelay::pending(&db).await.unwrap(), 1);
    if written.elapsed() < lease {
        assert_eq!(
            relay.relay_batch().await.unwrap(),
            0,
            "the poll took a row its writer still holds"
        );
    }
    tokio::time::sleep(lease.saturating_sub(written.elapsed()) + Duration::from_millis(50)).await;
    assert_eq!(relay.relay_batch().await.unwrap(), 1);
    assert_eq!(OutboxRelay::pending(&db).await.unwrap(), 0);

    eventually(15, "three credits", || async {
        (count(&db, "SELECT COUNT(*) FROM credits").await == 3).then_some(())
    })
    .await;

    // Redeliver the very same events (as after a crash before the relay
    // marked them sent): no second effect.
    let rows = sqlx::query("SELECT envelope FROM outbox_events")
        .fetch_all(db.pool())
        .await
        .unwrap();
    for row in rows {
        let e: Envelope = serde_json::from_str(&row.try_get::<String, _>(0).unwrap()).unwrap();
        bus.publish(&e).await.unwrap();
    }
    eventually(15, "six deliveries", || async {
        (handled.load(Ordering::SeqCst) >= 6).then_some(())
    })
    .await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM credits").await, 3);
    assert_eq!(
        count(&db, "SELECT CAST(SUM(amount) AS BIGINT) FROM credits").await,
        1000
    );
    stop.cancel();
}

#[tokio::test]
async fn relay_runs_in_the_background_publishes_on_commit_and_polls_for_the_rest() {
    let b = Backends::new();
    let db = b.database("relay").await;
    kit::events::ensure_schema(&db).await.unwrap();
    let bus = b.bus().await;
    let stop = CancellationToken::new();
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    bus.subscribe(
        Subscription::new("watcher", "user.registered", move |_e: Envelope| {
            let s = s.clone();
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }),
        stop.clone(),
    )
    .await
    .unwrap();
    let outbox = Outbox::with_handoff_lease(Duration::from_millis(300));
    tokio::spawn(OutboxRelay::new(db.clone(), bus.clone(), outbox.clone()).run(stop.clone()));
    for _ in 0..20 {
        let mut tx = db.begin().await.unwrap();
        let e = Envelope::new("test", "user.registered", serde_json::json!({})).unwrap();
        let recorded = outbox.record(&mut tx, &e).await.unwrap();
        tx.commit().await.unwrap();
        outbox.committed([recorded]);
    }
    eventually(15, "20 events", || async {
        (seen.load(Ordering::SeqCst) == 20).then_some(())
    })
    .await;
    // Marked sent a moment after they went out.
    eventually(15, "the outbox emptied", || async {
        (OutboxRelay::pending(&db).await.unwrap() == 0).then_some(())
    })
    .await;
    // One whose writer never handed it over is found by the poll.
    let mut tx = db.begin().await.unwrap();
    let e = Envelope::new("test", "user.registered", serde_json::json!({})).unwrap();
    let _never_handed_over = outbox.record(&mut tx, &e).await.unwrap();
    tx.commit().await.unwrap();
    eventually(15, "the 21st event", || async {
        (seen.load(Ordering::SeqCst) == 21 && OutboxRelay::pending(&db).await.unwrap() == 0)
            .then_some(())
    })
    .await;
    stop.cancel();
}

#[tokio::test]
async fn a_failing_handler_is_retried_then_dead_lettered_and_replayed() {
    let b = Backends::new();
    let bus = b.bus().await;
    let stop = CancellationToken::new();
    let attempts = Arc::new(AtomicUsize::new(0));
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (a, h) = (attempts.clone(), healthy.clone());
    bus.subscribe(
        Subscription::new("mailer", "order.confirmed", move |e: Envelope| {
            let (a, h) = (a.clone(), h.clone());
            async move {
                a.fetch_add(1, Ordering::SeqCst);
                if e.payload["poison"] == true {
                    return Err(HandlerError::poison("cannot parse"));
                }
                if h.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err(HandlerError::transient("smtp down"))
                }
            }
        })
        .with_retry(RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(50),
        }),
        stop.clone(),
    )
    .await
    .unwrap();

    let event = Envelope::new("test", "order.confirmed", serde_json::json!({"order": 1})).unwrap();
    bus.publish(&event).await.unwrap();
    let queue = bus.topology().queue("mailer", "order.confirmed");
    let dead = eventually(15, "a dead letter", || async {
        let d = bus.dead_letters(&queue).await.unwrap();
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].envelope.as_ref().unwrap().id, event.id);
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        3,
        "retried up to the limit"
    );

    // Peeking left it there; once the handler is healthy, replay delivers it.
    assert_eq!(bus.dead_letters(&queue).await.unwrap().len(), 1);
    healthy.store(true, Ordering::SeqCst);
    assert_eq!(bus.replay_dead_letters(&queue).await.unwrap(), 1);
    eventually(15, "the replayed delivery", || async {
        (attempts.load(Ordering::SeqCst) == 4).then_some(())
    })
    .await;
    assert!(bus.dead_letters(&queue).await.unwrap().is_empty());

    // A poison message goes to the dead-letter queue without retries.
    let poison = Envelope::new(
        "test",
        "order.confirmed",
        serde_json::json!({"poison": true}),
    )
    .unwrap();
    bus.publish(&poison).await.unwrap();
    eventually(15, "the poison message dead-lettered", || async {
        let d = bus.dead_letters(&queue).await.unwrap();
        (d.len() == 1).then_some(())
    })
    .await;
    assert_eq!(attempts.load(Ordering::SeqCst), 5);
    stop.cancel();
}
