//! Notifications: events in, one stored notification per event, emails
//! delivered to a real SMTP server (mailpit) with retries, and the in-app
//! feed.
//!
//! The SMTP tests need mailpit: `EMPORIUM_TEST_MAILPIT` names its binary
//! (`cargo xtask test` builds it). Without it they fail; they never skip.

use std::sync::Arc;
use std::time::Duration;

use emporium_tests::mailpit::{Mailpit, free_port, smtp_url};
use emporium_tests::shop::{Shop, ShopOptions, listen};
use emporium_tests::{Backends, eventually};
use kit::auth::TokenVerifier;
use kit::db::Database;
use kit::events::{Envelope, EventBus, RetryPolicy};
use notifications::storage::notifications::{self as store, NotificationRecord, Status};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const PASSWORD: &str = "correct horse battery";

// -------------------------------------------------------------- service

/// A running notifications service; its workers stop when dropped.
struct Running {
    service: notifications::Notifications,
    db: Database,
    url: url::Url,
    shutdown: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Fast retries so the tests need not wait.
fn settings(
    smtp: Option<notifications::smtp::SmtpUrl>,
    max_attempts: u32,
) -> notifications::Settings {
    notifications::Settings {
        smtp,
        smtp_timeout: Duration::from_secs(5),
        delivery: RetryPolicy {
            max_attempts,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(300),
        },
        sender_poll: Duration::from_millis(50),
        ..notifications::Settings::default()
    }
}

fn no_keys() -> Arc<TokenVerifier> {
    Arc::new(TokenVerifier::from_jwks(
        &jsonwebtoken::jwk::JwkSet { keys: vec![] },
        "emporium-identity",
        "emporium",
    ))
}

async fn start(
    b: &Backends,
    bus: &EventBus,
    verifier: Arc<TokenVerifier>,
    settings: notifications::Settings,
) -> Running {
    let db = b.database("notifications").await;
    start_on(db, bus, verifier, settings).await
}

/// Start a replica on an existing database.
async fn start_on(
    db: Database,
    bus: &EventBus,
    verifier: Arc<TokenVerifier>,
    settings: notifications::Settings,
) -> Running {
    let service = notifications::Notifications::build(
        settings,
        verifier,
        notifications::Backends {
            db: db.clone(),
            bus: bus.clone(),
        },
    )
    .await
    .expect("notifications starts");
    let shutdown = CancellationToken::new();
    service
        .spawn_workers(shutdown.clone())
        .await
        .expect("notifications subscribes");
    let (listener, url) = listen().await;
    tokio::spawn(kit::http::serve(
        listener,
        service.router.clone(),
        shutdown.clone(),
    ));
    Running {
        service,
        db,
        url,
        shutdown,
    }
}

impl Running {
    async fn notification(&self, event: &Envelope) -> Option<NotificationRecord> {
        let mut found = store::for_event(self.db.pool(), event.id).await.unwrap();
        assert!(found.len() <= 1, "one notification per event");
        found.pop()
    }

    /// Wait until `event` has been turned into a notification.
    async fn stored(&self, event: &Envelope) -> NotificationRecord {
        eventually(
            30,
            &format!("a notification for {}", event.event_type),
            || async { self.notification(event).await },
        )
        .await
    }

    async fn wait_until(
        &self,
        event: &Envelope,
        what: &str,
        done: impl Fn(&NotificationRecord) -> bool,
    ) -> NotificationRecord {
        eventually(30, what, || async {
            self.notification(event).await.filter(|n| done(n))
        })
        .await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = reqwest::Client::new().get(self.url.join(path).unwrap());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request")
    }
}

// --------------------------------------------------------------- events

fn usd(amount: i64) -> Value {
    json!({"amount": amount, "currency": "USD"})
}

fn lines() -> Value {
    json!([
        {"product_id": Uuid::now_v7(), "name": "Mug <script>alert(1)</script>", "unit_price": usd(999), "quantity": 2, "line_total": usd(1998)},
        {"product_id": Uuid::now_v7(), "name": "Tea & Co. sampler", "unit_price": usd(123_456), "quantity": 1, "line_total": usd(123_456)}
    ])
}

fn event(event_type: &str, payload: Value) -> Envelope {
    Envelope::new("test", event_type, payload).unwrap()
}

fn user_registered(user_id: Uuid, email: &str, name: &str) -> Envelope {
    event(
        "user.registered",
        json!({"user_id": user_id, "email": email, "name": name}),
    )
}

/// `order.confirmed`, `order.shipped` or `order.delivered`; totals $1,254.54
/// + $5.01 shipping = $1,259.55.
fn order_event(
    event_type: &str,
    order_id: Uuid,
    number: &str,
    customer: Uuid,
    email: &str,
) -> Envelope {
    event(
        event_type,
        json!({
            "order_id": order_id, "order_number": number, "customer_id": customer,
            "customer_email": email, "lines": lines(),
            "subtotal": usd(125_454), "shipping": usd(501), "tax": usd(0), "total": usd(125_955)
        }),
    )
}

fn order_cancelled(order_id: Uuid, number: &str, customer: Uuid, email: &str) -> Envelope {
    event(
        "order.cancelled",
        json!({
            "order_id": order_id, "order_number": number, "customer_id": customer,
            "customer_email": email, "reason": "payment declined", "paid": true,
            "lines": lines(), "total": usd(1999)
        }),
    )
}

fn payment_refunded(order_id: Uuid, email: &str) -> Envelope {
    event(
        "payment.refunded",
        json!({"order_id": order_id, "payment_id": Uuid::now_v7(), "amount": usd(1999), "customer_email": email}),
    )
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn each_event_is_stored_once_and_mailed_once() {
    let mailpit = Mailpit::start().await;
    let b = Backends::new();
    let bus = b.bus().await;
    let svc = start(&b, &bus, no_keys(), settings(Some(mailpit.smtp_url()), 5)).await;

    let ada = Uuid::now_v7();
    let email = "ada@example.com";
    let (order, other) = (Uuid::now_v7(), Uuid::now_v7());
    let mut events = vec![
        user_registered(ada, email, "Ada"),
        order_event("order.confirmed", order, "EMP-1001", ada, email),
        order_event("order.shipped", order, "EMP-1001", ada, email),
        order_event("order.delivered", order, "EMP-1001", ada, email),
        order_cancelled(other, "EMP-1002", ada, email),
    ];
    // Every event is delivered twice.
    for e in &events {
        bus.publish(e).await.unwrap();
        bus.publish(e).await.unwrap();
    }
    // The refund names no customer: it is matched to the cancelled order's
    // notification, so let that one land first.
    svc.stored(&events[4]).await;
    let refund = payment_refunded(other, email);
    bus.publish(&refund).await.unwrap();
    bus.publish(&refund).await.unwrap();
    events.push(refund);

    let stats = svc.service.state.stats.clone();
    eventually(30, "every redelivery to be seen", || async {
        (stats.duplicates() == 6).then_some(())
    })
    .await;
    for e in &events {
        let n = svc
            .wait_until(e, &format!("{} sent", e.event_type), |n| {
                n.status == Status::Sent
            })
            .await;
        assert_eq!(n.user_id, Some(ada), "{}", e.event_type);
        assert_eq!(n.recipient, email);
        assert_eq!(n.attempts, 1);
        assert!(n.sent_at.is_some() && n.last_error.is_none());
    }
    assert_eq!(stats.delivered(), 12);
    assert_eq!(
        store::count_by_status(&svc.db, Status::Sent).await.unwrap(),
        6,
        "one notification per event, however often delivered"
    );

    let messages = mailpit.wait_for_messages(6).await;
    assert_eq!(messages.len(), 6, "one email per event");
    for m in &messages {
        assert_eq!(m["To"][0]["Address"], email);
        assert_eq!(m["From"]["Address"], "shop@emporium.local");
        assert_eq!(m["From"]["Name"], "Emporium");
    }

    let confirmed = mailpit
        .message_with_subject("Your Emporium order EMP-1001 is confirmed")
        .await;
    let (text, html) = (
        confirmed["Text"].as_str().unwrap(),
        confirmed["HTML"].as_str().unwrap(),
    );
    for part in [text, html] {
        assert!(part.contains("EMP-1001"), "{part}");
        assert!(part.contains("$9.99"), "{part}");
        assert!(part.contains("$19.98"), "{part}");
        assert!(part.contains("$1,234.56"), "{part}");
        assert!(part.contains("$5.01"), "{part}");
        assert!(part.contains("$1,259.55"), "{part}");
    }
    assert!(text.contains("2 x Mug <script>alert(1)</script> @ $9.99 = $19.98"));
    assert!(html.contains("Mug &lt;script&gt;alert(1)&lt;&#x2f;script&gt;"));
    assert!(!html.contains("<script>"), "HTML escapes product names");
    assert!(html.contains("Tea &amp; Co. sampler"));

    for subject in [
        "Welcome to Emporium, Ada",
        "Your Emporium order EMP-1001 has shipped",
        "Your Emporium order EMP-1001 was delivered",
        "Your Emporium order EMP-1002 was cancelled",
    ] {
        let m = mailpit.message_with_subject(subject).await;
        assert!(!m["Text"].as_str().unwrap().is_empty(), "{subject}");
        assert!(!m["HTML"].as_str().unwrap().is_empty(), "{subject}");
    }
    let refunded = mailpit
        .message_with_subject("Your Emporium refund of $19.99 for order EMP-1002")
        .await;
    assert!(refunded["Text"].as_str().unwrap().contains("$19.99"));
    assert!(refunded["HTML"].as_str().unwrap().contains("EMP-1002"));

    // A later redelivery still changes nothing.
    bus.publish(&events[1]).await.unwrap();
    eventually(30, "the late redelivery", || async {
        (stats.duplicates() == 7).then_some(())
    })
    .await;
    assert_eq!(
        store::for_event(svc.db.pool(), events[1].id)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn delivery_is_retried_until_the_smtp_server_answers() {
    let port = free_port();
    let b = Backends::new();
    let bus = b.bus().await;
    // Nothing listens on `port` yet.
    let svc = start(&b, &bus, no_keys(), settings(Some(smtp_url(port)), 1000)).await;
    let readyz = svc.get("/readyz", None).await;
    assert_eq!(readyz.status(), 503, "SMTP down: not ready");
    let body: Value = readyz.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["events"], "ok");
    assert_ne!(body["checks"]["smtp"], "ok");

    let customer = Uuid::now_v7();
    let e = order_event(
        "order.confirmed",
        Uuid::now_v7(),
        "EMP-3001",
        customer,
        "grace@example.com",
    );
    bus.publish(&e).await.unwrap();
    let pending = svc
        .wait_until(&e, "two failed attempts", |n| n.attempts >= 2)
        .await;
    assert_eq!(
        pending.status,
        Status::Queued,
        "still queued while retrying"
    );
    assert!(pending.sent_at.is_none());
    let error = pending.last_error.expect("the failure is recorded");
    assert!(!error.is_empty());

    let mailpit = Mailpit::start_with(port, &[]).await;
    let sent = svc
        .wait_until(&e, "sent once the server is up", |n| {
            n.status == Status::Sent
        })
        .await;
    assert!(sent.attempts > pending.attempts);
    assert!(sent.sent_at.is_some());
    let messages = mailpit.wait_for_messages(1).await;
    assert_eq!(messages.len(), 1, "sent exactly once");
    assert_eq!(messages[0]["To"][0]["Address"], "grace@example.com");
    assert_eq!(
        messages[0]["Subject"],
        "Your Emporium order EMP-3001 is confirmed"
    );
    let readyz = svc.get("/readyz", None).await;
    assert_eq!(readyz.status(), 200);
    let body: Value = readyz.json().await.unwrap();
    assert_eq!(body["checks"]["smtp"], "ok");
}

#[tokio::test]
async fn delivery_gives_up_after_the_last_attempt() {
    let b = Backends::new();
    let bus = b.bus().await;
    let svc = start(
        &b,
        &bus,
        no_keys(),
        settings(Some(smtp_url(free_port())), 3),
    )
    .await;
    let e = order_event(
        "order.shipped",
        Uuid::now_v7(),
        "EMP-4001",
        Uuid::now_v7(),
        "hedy@example.com",
    );
    bus.publish(&e).await.unwrap();
    let failed = svc
        .wait_until(&e, "failed after three attempts", |n| {
            n.status == Status::Failed
        })
        .await;
    assert_eq!(failed.attempts, 3);
    assert!(failed.sent_at.is_none());
    assert!(!failed.last_error.unwrap_or_default().is_empty());
    // Failed notifications are never claimed again.
    let mailer = svc.service.state.mailer.clone().unwrap();
    assert_eq!(
        notifications::sender::deliver_due(&svc.service.state, &mailer)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        svc.notification(&e).await.unwrap().attempts,
        3,
        "no attempt after giving up"
    );
}

#[tokio::test]
async fn a_recipient_the_server_refuses_fails_at_once() {
    let mailpit = Mailpit::start_with(
        free_port(),
        &["--smtp-allowed-recipients", r"@example\.com$"],
    )
    .await;
    let b = Backends::new();
    let bus = b.bus().await;
    let svc = start(&b, &bus, no_keys(), settings(Some(mailpit.smtp_url()), 5)).await;
    let refused = user_registered(Uuid::now_v7(), "someone@elsewhere.test", "Someone");
    let accepted = user_registered(Uuid::now_v7(), "ok@example.com", "Okay");
    bus.publish(&refused).await.unwrap();
    bus.publish(&accepted).await.unwrap();
    let n = svc
        .wait_until(&refused, "refused for good", |n| n.status == Status::Failed)
        .await;
    assert_eq!(n.attempts, 1, "a permanent refusal is not retried");
    assert!(n.last_error.unwrap().contains("permanent"));
    svc.wait_until(&accepted, "the other one sent", |n| {
        n.status == Status::Sent
    })
    .await;
    let messages = mailpit.wait_for_messages(1).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["To"][0]["Address"], "ok@example.com");
}

#[tokio::test]
async fn two_replicas_send_each_email_once() {
    let mailpit = Mailpit::start().await;
    let b = Backends::new();
    let bus = b.bus().await;
    let db_url = b.database_url("notifications").await;
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let db = Database::connect(&db_url).await.unwrap();
        replicas.push(start_on(db, &bus, no_keys(), settings(Some(mailpit.smtp_url()), 5)).await);
    }
    let events: Vec<Envelope> = (0..20)
        .map(|i| user_registered(Uuid::now_v7(), &format!("user{i}@example.com"), "Customer"))
        .collect();
    for e in &events {
        bus.publish(e).await.unwrap();
    }
    for e in &events {
        replicas[0]
            .wait_until(e, "sent", |n| n.status == Status::Sent)
            .await;
    }
    let messages = mailpit.wait_for_messages(20).await;
    let mut recipients: Vec<&str> = messages
        .iter()
        .map(|m| m["To"][0]["Address"].as_str().unwrap())
        .collect();
    recipients.sort();
    recipients.dedup();
    assert_eq!(messages.len(), 20, "every email sent once");
    assert_eq!(recipients.len(), 20);
    assert_eq!(
        store::count_by_status(&replicas[1].db, Status::Sent)
            .await
            .unwrap(),
        20
    );
}

#[tokio::test]
async fn an_unreadable_event_is_dead_lettered_without_a_notification() {
    let b = Backends::new();
    let bus = b.bus().await;
    let svc = start(&b, &bus, no_keys(), settings(None, 3)).await;
    let bad = event("order.confirmed", json!({"order_number": 7}));
    bus.publish(&bad).await.unwrap();
    let queue = bus.topology().queue("notifications", "order.confirmed");
    eventually(30, "the dead letter", || async {
        let d = bus.dead_letters(&queue).await.unwrap();
        d.iter()
            .any(|l| l.envelope.as_ref().map(|e| e.id) == Some(bad.id))
            .then_some(())
    })
    .await;
    assert!(svc.notification(&bad).await.is_none());
}

#[tokio::test]
async fn the_feed_shows_only_the_callers_notifications_newest_first() {
    let b = Backends::new();
    let shop = Shop::start(&b, ShopOptions::default()).await;
    let verifier = Arc::new(TokenVerifier::from_jwks_url(
        shop.identity().url.join("/.well-known/jwks.json").unwrap(),
        "emporium-identity",
        "emporium",
    ));
    // No SMTP: notifications are kept for the feed and say no email went out.
    let svc = start(&b, &shop.bus, verifier, settings(None, 3)).await;
    let readyz: Value = svc.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(readyz["status"], "ready");
    assert!(readyz["checks"].get("smtp").is_none());

    // Registering goes through identity, whose user.registered event
    // becomes each customer's welcome notification.
    let ada = shop.register("ada@example.com", PASSWORD).await;
    let bob = shop.register("bob@example.com", PASSWORD).await;
    let ada_id: Uuid = ada["id"].as_str().unwrap().parse().unwrap();
    let bob_id: Uuid = bob["id"].as_str().unwrap().parse().unwrap();
    let (ada_token, _) = shop.login("ada@example.com", PASSWORD).await;
    let (bob_token, _) = shop.login("bob@example.com", PASSWORD).await;

    let feed = |token: String, query: &'static str| {
        let svc = &svc;
        async move {
            let res = svc
                .get(&format!("/api/v1/notifications{query}"), Some(&token))
                .await;
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.unwrap()
        }
    };
    for token in [&ada_token, &bob_token] {
        eventually(30, "the welcome notification", || async {
            let page = feed(token.clone(), "").await;
            (page["items"].as_array().unwrap().len() == 1).then_some(())
        })
        .await;
    }

    // Three orders for Ada, one by one so their order is known; one for Bob.
    for number in ["EMP-2001", "EMP-2002", "EMP-2003"] {
        let e = order_event(
            "order.confirmed",
            Uuid::now_v7(),
            number,
            ada_id,
            "ada@example.com",
        );
        shop.bus.publish(&e).await.unwrap();
        svc.stored(&e).await;
    }
    let e = order_event(
        "order.confirmed",
        Uuid::now_v7(),
        "EMP-2004",
        bob_id,
        "bob@example.com",
    );
    shop.bus.publish(&e).await.unwrap();
    svc.stored(&e).await;

    let first = feed(ada_token.clone(), "?limit=2").await;
    let items = first["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[0]["subject"],
        "Your Emporium order EMP-2003 is confirmed"
    );
    assert_eq!(
        items[1]["subject"],
        "Your Emporium order EMP-2002 is confirmed"
    );
    assert_eq!(items[0]["kind"], "order_confirmed");
    assert_eq!(items[0]["status"], "stored", "no SMTP: stored, not sent");
    assert!(items[0]["sent_at"].is_null());
    assert!(items[0]["created_at"].as_str().unwrap().ends_with('Z'));
    let body = items[0]["body_text"].as_str().unwrap();
    assert!(
        body.contains("EMP-2003") && body.contains("$1,259.55"),
        "{body}"
    );
    assert!(items[0].get("body_html").is_none());
    let cursor = first["next_cursor"].as_str().expect("a second page");

    let second = feed(ada_token.clone(), "").await;
    assert_eq!(second["items"].as_array().unwrap().len(), 4);
    assert!(second["next_cursor"].is_null());
    let rest = {
        let res = svc
            .get(
                &format!("/api/v1/notifications?limit=2&cursor={cursor}"),
                Some(&ada_token),
            )
            .await;
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()
    };
    let items = rest["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[0]["subject"],
        "Your Emporium order EMP-2001 is confirmed"
    );
    assert_eq!(items[1]["kind"], "welcome");
    assert_eq!(items[1]["subject"], "Welcome to Emporium, Test User");
    assert!(rest["next_cursor"].is_null());

    let bobs = feed(bob_token.clone(), "").await;
    let subjects: Vec<&str> = bobs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        [
            "Your Emporium order EMP-2004 is confirmed",
            "Welcome to Emporium, Test User"
        ],
        "Bob sees only his own"
    );

    // Signed out, or with a bad token or page size: problems.
    for (res, status) in [
        (svc.get("/api/v1/notifications", None).await, 401),
        (
            svc.get("/api/v1/notifications", Some("not-a-token")).await,
            401,
        ),
        (
            svc.get("/api/v1/notifications?limit=0", Some(&ada_token))
                .await,
            422,
        ),
        (
            svc.get("/api/v1/notifications?limit=101", Some(&ada_token))
                .await,
            422,
        ),
        (
            svc.get("/api/v1/notifications?cursor=nope", Some(&ada_token))
                .await,
            422,
        ),
    ] {
        assert_eq!(res.status(), status);
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }

    let doc: Value = svc.get("/openapi.json", None).await.json().await.unwrap();
    assert!(doc["paths"]["/api/v1/notifications"]["get"].is_object());
}
