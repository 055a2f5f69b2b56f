//! The payments service, driven through its events and HTTP: charging on
//! `stock.reserved` through the sandbox (which settles only by signed
//! webhooks, sometimes delivered twice), declines, refunds on
//! `order.cancelled`, never charging a cancelled order, webhook signature
//! checks, who may list payments, and the `stripe` provider against
//! stripe-mock (Stripe's own API emulator).

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use emporium_tests::shop::{Shop, ShopOptions, listen};
use emporium_tests::{Backends, eventually};
use kit::auth::TokenVerifier;
use kit::db::Database;
use kit::events::{Envelope, EventBus, Subscription};
use payments::providers::signature;
use payments::providers::stripe::Stripe;
use payments::providers::{
    ChargeRequest, PaymentProvider, ProviderError, RefundOutcome, RefundRequest,
};
use payments::{ProviderKind, Secret, Settings};
use serde_json::{Value, json};
use sqlx::Row;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WEBHOOK_SECRET: &str = "whsec_emporium_tests";
const STRIPE_KEY: &str = "sk_test_emporium";

/// A payments service on a random loopback port, stopped when dropped.
struct Service {
    url: url::Url,
    db: Database,
    http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn sandbox(duplicate_probability: f64) -> Settings {
    let mut s = Settings {
        provider: ProviderKind::Sandbox,
        webhook_secret: Secret::new(WEBHOOK_SECRET),
        ..Settings::default()
    };
    s.sandbox.duplicate_probability = duplicate_probability;
    s.sandbox.delay = Duration::from_millis(20);
    s
}

/// A verifier that knows no key: for tests that never present a token.
fn no_tokens() -> Arc<TokenVerifier> {
    Arc::new(TokenVerifier::from_jwks(
        &jsonwebtoken::jwk::JwkSet { keys: vec![] },
        "emporium-identity",
        "emporium",
    ))
}

impl Service {
    /// Start on `bus`: the test publishes on the same one (in embedded mode
    /// each `Backends::bus()` is a separate in-process bus).
    async fn start(
        b: &Backends,
        bus: &EventBus,
        settings: Settings,
        verifier: Arc<TokenVerifier>,
    ) -> Service {
        Self::start_on(b.database("payments").await, bus, settings, verifier).await
    }

    /// Start on an existing database: payments started again.
    async fn start_on(
        db: Database,
        bus: &EventBus,
        settings: Settings,
        verifier: Arc<TokenVerifier>,
    ) -> Service {
        let (listener, url) = listen().await;
        let service = payments::Payments::build(
            settings,
            verifier,
            payments::Backends {
                db: db.clone(),
                bus: bus.clone(),
            },
        )
        .await
        .expect("payments starts");
        service.set_public_url(url.clone());
        let shutdown = CancellationToken::new();
        service
            .spawn_workers(shutdown.clone())
            .await
            .expect("payments subscribes");
        tokio::spawn(kit::http::serve(listener, service.router, shutdown.clone()));
        Service {
            url,
            db,
            http: reqwest::Client::new(),
            shutdown,
        }
    }

    async fn payment(&self, order_id: Uuid) -> Option<PaymentRow> {
        let row = sqlx::query(
            "SELECT status, provider, provider_payment_id, provider_refund_id, failure_reason, \
             payment_method, amount FROM payments WHERE order_id = $1",
        )
        .bind(order_id.to_string())
        .fetch_optional(self.db.pool())
        .await
        .unwrap()?;
        Some(PaymentRow {
            status: row.try_get("status").unwrap(),
            provider: row.try_get("provider").unwrap(),
            provider_payment_id: row.try_get("provider_payment_id").unwrap(),
            provider_refund_id: row.try_get("provider_refund_id").unwrap(),
            failure_reason: row.try_get("failure_reason").unwrap(),
            payment_method: row.try_get("payment_method").unwrap(),
            amount: row.try_get("amount").unwrap(),
        })
    }

    async fn status(&self, order_id: Uuid) -> Option<String> {
        self.payment(order_id).await.map(|p| p.status)
    }

    /// Events of `event_type` about `order_id` ever recorded in payments'
    /// outbox: every effect, whether or not relayed yet.
    async fn recorded(&self, event_type: &str, order_id: Uuid) -> i64 {
        sqlx::query(
            "SELECT COUNT(*) AS n FROM outbox_events WHERE routing_key = $1 AND envelope LIKE $2",
        )
        .bind(event_type)
        .bind(format!("%{order_id}%"))
        .fetch_one(self.db.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
    }

    /// Has payments claimed `event` in its inbox (handled it for good)?
    async fn handled(&self, event: &Envelope) -> bool {
        sqlx::query(
            "SELECT 1 AS one FROM processed_events WHERE consumer = 'payments' AND event_id = $1",
        )
        .bind(event.id.to_string())
        .fetch_optional(self.db.pool())
        .await
        .unwrap()
        .is_some()
    }

    /// Deliveries of each webhook event of `event_type` received so far.
    async fn webhook_deliveries(&self, event_type: &str) -> Vec<i64> {
        sqlx::query("SELECT deliveries FROM webhook_events WHERE event_type = $1")
            .bind(event_type)
            .fetch_all(self.db.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get("deliveries").unwrap())
            .collect()
    }

    async fn webhook_event_count(&self) -> i64 {
        sqlx::query("SELECT COUNT(*) AS n FROM webhook_events")
            .fetch_one(self.db.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap()
    }

    async fn post_webhook(
        &self,
        provider: &str,
        body: &str,
        signature: Option<String>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(
                self.url
                    .join(&format!("/api/v1/payments/webhooks/{provider}"))
                    .unwrap(),
            )
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(sig) = signature {
            req = req.header("stripe-signature", sig);
        }
        let res = req.send().await.expect("webhook request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn list(&self, query: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self
            .http
            .get(self.url.join(&format!("/api/v1/payments{query}")).unwrap());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.expect("list request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }
}

#[derive(Debug)]
struct PaymentRow {
    status: String,
    provider: String,
    provider_payment_id: Option<String>,
    provider_refund_id: Option<String>,
    failure_reason: Option<String>,
    payment_method: Option<String>,
    amount: i64,
}

/// Collects every `payment.*` event, as orders and notifications would
/// receive them.
struct Observer {
    seen: Arc<Mutex<Vec<Envelope>>>,
}

impl Observer {
    async fn start(bus: &EventBus, stop: &CancellationToken) -> Observer {
        let seen: Arc<Mutex<Vec<Envelope>>> = Arc::default();
        let sink = seen.clone();
        bus.subscribe(
            Subscription::new("observer", "payment.*", move |e: Envelope| {
                let sink = sink.clone();
                async move {
                    sink.lock().unwrap().push(e);
                    Ok(())
                }
            }),
            stop.clone(),
        )
        .await
        .expect("observe payment events");
        Observer { seen }
    }

    fn of(&self, event_type: &str, order_id: Uuid) -> Vec<Envelope> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.event_type == event_type && e.payload["order_id"] == order_id.to_string())
            .cloned()
            .collect()
    }

    async fn wait_for(&self, event_type: &str, order_id: Uuid) -> Envelope {
        eventually(30, &format!("{event_type} for {order_id}"), || async {
            self.of(event_type, order_id).into_iter().next()
        })
        .await
    }

    fn about(&self, order_id: Uuid) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.payload["order_id"] == order_id.to_string())
            .map(|e| e.event_type.clone())
            .collect()
    }
}

/// An order as orders and catalog would announce it.
struct Order {
    id: Uuid,
    customer_id: Uuid,
    email: String,
    total: i64,
    payment_method: String,
}

impl Order {
    fn new(payment_method: &str, total: i64) -> Order {
        Order::for_customer(Uuid::now_v7(), payment_method, total)
    }

    fn for_customer(customer_id: Uuid, payment_method: &str, total: i64) -> Order {
        Order {
            id: Uuid::now_v7(),
            customer_id,
            email: format!(
                "customer-{}@example.com",
                &customer_id.simple().to_string()[..8]
            ),
            total,
            payment_method: payment_method.into(),
        }
    }

    fn money(&self, amount: i64) -> Value {
        json!({"amount": amount, "currency": "USD"})
    }

    fn placed(&self) -> Envelope {
        let product = Uuid::now_v7();
        Envelope::new(
            "orders",
            "order.placed",
            json!({
                "order_id": self.id, "order_number": "EMP-0001", "customer_id": self.customer_id,
                "customer_email": self.email,
                "lines": [{"product_id": product, "name": "Mug", "unit_price": self.money(self.total),
                    "quantity": 1, "line_total": self.money(self.total)}],
                "subtotal": self.money(self.total), "shipping": self.money(0), "tax": self.money(0),
                "total": self.money(self.total), "payment_method": self.payment_method,
                "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"},
            }),
        )
        .unwrap()
    }

    fn reserved(&self) -> Envelope {
        Envelope::new(
            "catalog",
            "stock.reserved",
            json!({"order_id": self.id, "lines": [{"product_id": Uuid::now_v7(), "quantity": 1}]}),
        )
        .unwrap()
    }

    fn cancelled(&self, paid: bool) -> Envelope {
        Envelope::new(
            "orders",
            "order.cancelled",
            json!({
                "order_id": self.id, "order_number": "EMP-0001", "customer_id": self.customer_id,
                "customer_email": self.email, "reason": "customer_request", "paid": paid,
                "lines": [], "total": self.money(self.total),
            }),
        )
        .unwrap()
    }
}

async fn publish(bus: &EventBus, event: &Envelope) {
    bus.publish(event).await.expect("publish");
}

#[tokio::test]
async fn a_visa_payment_succeeds_once_despite_duplicate_deliveries() {
    let b = Backends::new();
    let bus = b.bus().await;
    let stop = CancellationToken::new();
    let observer = Observer::start(&bus, &stop).await;
    // Every sandbox webhook is delivered twice.
    let svc = Service::start(&b, &bus, sandbox(1.0), no_tokens()).await;

    let order = Order::new("pm_card_visa", 4200);
    publish(&bus, &order.placed()).await;
    let mut reserved = order.reserved();
    reserved.correlation_id = Some(format!("checkout-{}", order.id));
    // stock.reserved delivered twice at once, as after a broker redelivery.
    publish(&bus, &reserved).await;
    publish(&bus, &reserved).await;

    let succeeded = observer.wait_for("payment.succeeded", order.id).await;
    assert_eq!(succeeded.producer, "payments");
    assert_eq!(
        succeeded.payload["amount"],
        json!({"amount": 4200, "currency": "USD"})
    );
    let payment_id: Uuid = serde_json::from_value(succeeded.payload["payment_id"].clone()).unwrap();
    assert_eq!(payment_id.get_version_num(), 7);
    assert_eq!(
        succeeded.correlation_id, reserved.correlation_id,
        "the payment event keeps the correlation of what caused it"
    );

    // The sandbox's outcome came only by webhook, and came twice.
    let deliveries = eventually(30, "the duplicate webhook delivery", || async {
        let d = svc.webhook_deliveries("payment_intent.succeeded").await;
        (d.len() == 1 && d[0] >= 2).then_some(d)
    })
    .await;
    assert_eq!(deliveries, vec![2]);

    // A late redelivery of stock.reserved, after the charge settled.
    publish(&bus, &reserved).await;
    // Another order through the same queues and webhooks: once it is
    // settled, everything published before it has been handled.
    let later = Order::new("pm_card_visa", 100);
    publish(&bus, &later.placed()).await;
    publish(&bus, &later.reserved()).await;
    observer.wait_for("payment.succeeded", later.id).await;

    assert_eq!(svc.recorded("payment.succeeded", order.id).await, 1);
    assert_eq!(svc.recorded("payment.failed", order.id).await, 0);
    assert_eq!(observer.about(order.id), vec!["payment.succeeded"]);
    let row = svc.payment(order.id).await.unwrap();
    assert_eq!(row.status, "succeeded");
    assert_eq!(row.provider, "sandbox");
    assert_eq!(row.amount, 4200);
    assert!(
        row.provider_payment_id
            .as_deref()
            .unwrap()
            .starts_with("pi_"),
        "{row:?}"
    );
    assert_eq!(row.payment_method.as_deref(), Some("pm_card_visa"));
    stop.cancel();
}

#[tokio::test]
async fn declined_cards_fail_the_payment_with_the_reason() {
    let b = Backends::new();
    let bus = b.bus().await;
    let stop = CancellationToken::new();
    let observer = Observer::start(&bus, &stop).await;
    let svc = Service::start(&b, &bus, sandbox(0.2), no_tokens()).await;

    let cases = [
        ("pm_card_chargeDeclined", "card_declined"),
        (
            "pm_card_chargeDeclinedInsufficientFunds",
            "insufficient_funds",
        ),
        ("pm_card_doesNotExist", "invalid_payment_method"),
        // Card data where a token belongs: never stored, never sent.
        ("4242424242424242", "invalid_payment_method"),
    ];
    let orders: Vec<(Order, &str)> = cases
        .iter()
        .map(|(pm, reason)| (Order::new(pm, 1999), *reason))
        .collect();
    for (order, _) in &orders {
        publish(&bus, &order.placed()).await;
        publish(&bus, &order.reserved()).await;
    }
    for (order, reason) in &orders {
        let failed = observer.wait_for("payment.failed", order.id).await;
        assert_eq!(
            failed.payload["reason"], *reason,
            "{}",
            order.payment_method
        );
        let row = svc.payment(order.id).await.unwrap();
        assert_eq!(row.status, "failed");
        assert_eq!(row.failure_reason.as_deref(), Some(*reason));
        assert_eq!(svc.recorded("payment.succeeded", order.id).await, 0);
    }
    let card_number = svc.payment(orders[3].0.id).await.unwrap();
    assert_eq!(card_number.payment_method, None, "card data is not stored");
    assert_eq!(
        card_number.provider_payment_id, None,
        "nor sent to the provider"
    );
    stop.cancel();
}

#[tokio::test]
async fn a_stock_reservation_that_overtakes_its_order_is_charged_once_the_order_arrives() {
    let b = Backends::new();
    let bus = b.bus().await;
    let stop = CancellationToken::new();
    let observer = Observer::start(&bus, &stop).await;
    let svc = Service::start(&b, &bus, sandbox(0.2), no_tokens()).await;

    let order = Order::new("pm_card_visa", 500);
    let reserved = order.reserved();
    publish(&bus, &reserved).await;
    // Retried until order.placed is recorded, not dead-lettered.
    publish(&bus, &order.placed()).await;
    observer.wait_for("payment.succeeded", order.id).await;
    assert_eq!(svc.status(order.id).await.as_deref(), Some("succeeded"));
    assert!(svc.handled(&reserved).await);
    let dead = bus
        .dead_letters(&bus.topology().queue("payments", "stock.reserved"))
        .await
        .unwrap();
    assert!(dead.is_empty(), "{dead:?}");
    stop.cancel();
}

/// payments stops (a crash, a rollout) while the sandbox still holds the
/// outcomes of two charges; they die with it. The next payments process
/// asks the provider where those charges stand and settles them, under the
/// PaymentIntents already made: each charged once, and neither left
/// waiting for the order's payment timeout. The same goes for a refund
/// whose outcome dies with the process after that.
#[tokio::test]
async fn outcomes_that_died_with_their_process_are_settled_by_the_next_one() {
    let b = Backends::new();
    let bus = b.bus().await;
    let stop = CancellationToken::new();
    let observer = Observer::start(&bus, &stop).await;
    // The sandbox reports nothing for an hour; the recheck is what settles.
    let holding = |recheck_after: Duration| {
        let mut s = sandbox(0.0);
        s.sandbox.delay = Duration::from_secs(3600);
        s.recheck_after = recheck_after;
        s
    };
    let first = Service::start(&b, &bus, holding(Duration::from_secs(3600)), no_tokens()).await;

    let paid = Order::new("pm_card_visa", 1500);
    let declined = Order::new("pm_card_chargeDeclinedInsufficientFunds", 700);
    let mut charged = Vec::new();
    for order in [&paid, &declined] {
        publish(&bus, &order.placed()).await;
        publish(&bus, &order.reserved()).await;
        let pi = eventually(30, "the charge in flight", || async {
            first
                .payment(order.id)
                .await
                .filter(|p| p.status == "processing")
                .and_then(|p| p.provider_payment_id)
        })
        .await;
        charged.push(pi);
    }
    let db = first.db.clone();
    drop(first);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(observer.of("payment.succeeded", paid.id).is_empty());

    let second = Service::start_on(
        db.clone(),
        &bus,
        holding(Duration::from_secs(1)),
        no_tokens(),
    )
    .await;
    observer.wait_for("payment.succeeded", paid.id).await;
    let failed = observer.wait_for("payment.failed", declined.id).await;
    assert_eq!(failed.payload["reason"], "insufficient_funds");
    for (order, pi, status) in [
        (&paid, &charged[0], "succeeded"),
        (&declined, &charged[1], "failed"),
    ] {
        let row = second.payment(order.id).await.unwrap();
        assert_eq!(row.status, status);
        assert_eq!(
            row.provider_payment_id.as_ref(),
            Some(pi),
            "the same charge"
        );
    }
    assert_eq!(second.recorded("payment.succeeded", paid.id).await, 1);
    assert_eq!(second.recorded("payment.failed", declined.id).await, 1);

    // The paid order is cancelled: its refund is made by a process that
    // rechecks nothing, and its outcome dies with that process too.
    drop(second);
    let refunder = Service::start_on(
        db.clone(),
        &bus,
        holding(Duration::from_secs(3600)),
        no_tokens(),
    )
    .await;
    publish(&bus, &paid.cancelled(true)).await;
    let refund = eventually(30, "the refund in flight", || async {
        refunder
            .payment(paid.id)
            .await
            .filter(|p| p.status == "refunding")
            .and_then(|p| p.provider_refund_id)
    })
    .await;
    drop(refunder);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(observer.of("payment.refunded", paid.id).is_empty());
    let third = Service::start_on(db, &bus, holding(Duration::from_secs(1)), no_tokens()).await;
    observer.wait_for("payment.refunded", paid.id).await;
    let row = third.payment(paid.id).await.unwrap();
    assert_eq!(row.status, "refunded");
    assert_eq!(row.provider_refund_id, Some(refund), "the same refund");
    assert_eq!(third.recorded("payment.refunded", paid.id).await, 1);
    stop.cancel();
}

#[tokio::test]
async fn cancelling_a_paid_order_refunds_it_once() {
    let b = Backends::new();
    let bus = b.bus().await;
    let stop = CancellationToken::new();
    let observer = Observer::start(&bus, &stop).await;
    let svc = Service::start(&b, &bus, sandbox(1.0), no_tokens()).await;

    let order = Order::new("pm_card_visa", 2500);
    publish(&bus, &order.placed()).await;
    publish(&bus, &order.reserved()).await;
    let succeeded = observer.wait_for("payment.succeeded", order.id).await;

    let cancelled = order.cancelled(true);
    publish(&bus, &cancelled).await;
    publish(&bus, &cancelled).await;
    let refunded = observer.wait_for("payment.refunded", order.id).await;
    assert_eq!(
        refunded.payload["payment_id"],
        succeeded.payload["payment_id"]
    );
    assert_eq!(
        refunded.payload["amount"],
        json!({"amount": 2500, "currency": "USD"})
    );
    assert_eq!(refunded.payload["customer_email"], order.email);

    // The sandbox confirmed the refund by webhook, twice.
    eventually(30, "the duplicate refund webhook", || async {
        let d = svc.webhook_deliveries("charge.refunded").await;
        (d.len() == 1 && d[0] >= 2).then_some(())
    })
    .await;
    // A late redelivery; then another order cancelled through the same queue.
    publish(&bus, &cancelled).await;
    let other = Order::new("pm_card_visa", 100);
    publish(&bus, &other.placed()).await;
    eventually(30, "the other order recorded", || async {
        svc.payment(other.id).await.map(|_| ())
    })
    .await;
    let other_cancelled = other.cancelled(false);
    publish(&bus, &other_cancelled).await;
    eventually(30, "the other order cancelled", || async {
        (svc.status(other.id).await.as_deref() == Some("cancelled")).then_some(())
    })
    .await;

    assert_eq!(svc.recorded("payment.refunded", order.id).await, 1);
    assert_eq!(
        observer.about(order.id),
        vec!["payment.succeeded", "payment.refunded"]
    );
    let row = svc.payment(order.id).await.unwrap();
    assert_eq!(row.status, "refunded");
    assert!(
        row.provider_refund_id
            .as_deref()
            .unwrap()
            .starts_with("re_"),
        "{row:?}"
    );
    stop.cancel();
}

#[tokio::test]
async fn an_order_cancelled_before_its_charge_is_never_charged() {
    let b = Backends::new();
    let bus = b.bus().await;
    let stop = CancellationToken::new();
    let observer = Observer::start(&bus, &stop).await;
    let svc = Service::start(&b, &bus, sandbox(0.2), no_tokens()).await;

    // Recorded, cancelled, and only then its stock reservation arrives.
    let order = Order::new("pm_card_visa", 700);
    publish(&bus, &order.placed()).await;
    eventually(30, "the payment recorded", || async {
        (svc.status(order.id).await.as_deref() == Some("pending")).then_some(())
    })
    .await;
    publish(&bus, &order.cancelled(false)).await;
    eventually(30, "the payment cancelled", || async {
        (svc.status(order.id).await.as_deref() == Some("cancelled")).then_some(())
    })
    .await;
    let reserved = order.reserved();
    publish(&bus, &reserved).await;
    eventually(30, "the late stock.reserved handled", || async {
        svc.handled(&reserved).await.then_some(())
    })
    .await;

    // Cancelled before payments even heard of it (order.placed travels on
    // another queue), then placed and reserved.
    let early = Order::new("pm_card_visa", 800);
    let cancelled = early.cancelled(false);
    publish(&bus, &cancelled).await;
    eventually(30, "the early cancellation handled", || async {
        svc.handled(&cancelled).await.then_some(())
    })
    .await;
    let placed = early.placed();
    let early_reserved = early.reserved();
    publish(&bus, &placed).await;
    publish(&bus, &early_reserved).await;
    eventually(
        30,
        "the late order.placed and stock.reserved handled",
        || async {
            (svc.handled(&placed).await && svc.handled(&early_reserved).await).then_some(())
        },
    )
    .await;

    for id in [order.id, early.id] {
        let row = svc.payment(id).await.unwrap();
        assert_eq!(row.status, "cancelled", "{row:?}");
        assert_eq!(row.provider_payment_id, None, "never sent to the provider");
        for t in ["payment.succeeded", "payment.failed", "payment.refunded"] {
            assert_eq!(svc.recorded(t, id).await, 0, "{t}");
        }
        assert!(observer.about(id).is_empty());
    }
    assert_eq!(svc.webhook_event_count().await, 0, "nothing was charged");
    stop.cancel();
}

#[tokio::test]
async fn an_order_cancelled_while_its_charge_is_in_flight_is_refunded_once_it_succeeds() {
    let b = Backends::new();
    let bus = b.bus().await;
    let stop = CancellationToken::new();
    let observer = Observer::start(&bus, &stop).await;
    // The sandbox takes an hour to answer: this test delivers the
    // provider's webhooks itself, when it chooses.
    let mut settings = sandbox(0.0);
    settings.sandbox.delay = Duration::from_secs(3600);
    let svc = Service::start(&b, &bus, settings, no_tokens()).await;

    let order = Order::new("pm_card_visa", 1500);
    let reserved = order.reserved();
    publish(&bus, &order.placed()).await;
    publish(&bus, &reserved).await;
    eventually(30, "the charge in flight", || async {
        svc.handled(&reserved).await.then_some(())
    })
    .await;
    let row = svc.payment(order.id).await.unwrap();
    assert_eq!(row.status, "processing");
    let pi = row.provider_payment_id.unwrap();

    let cancelled = order.cancelled(false);
    publish(&bus, &cancelled).await;
    eventually(30, "the cancellation noted", || async {
        svc.handled(&cancelled).await.then_some(())
    })
    .await;
    assert_eq!(svc.status(order.id).await.as_deref(), Some("processing"));

    // The charge succeeds after all: it is refunded at once.
    let body =
        json!({"id": "evt_late_success", "object": "event", "type": "payment_intent.succeeded",
        "data": {"object": {"id": pi, "object": "payment_intent", "status": "succeeded",
            "amount": 1500, "currency": "usd", "metadata": {"order_id": order.id.to_string()}}}})
        .to_string();
    let sig = signature::sign(WEBHOOK_SECRET, now(), body.as_bytes());
    let (status, receipt) = svc.post_webhook("sandbox", &body, Some(sig)).await;
    assert_eq!(status, 200, "{receipt}");
    observer.wait_for("payment.succeeded", order.id).await;
    let row = svc.payment(order.id).await.unwrap();
    assert_eq!(row.status, "refunding", "{row:?}");
    let refund_id = row.provider_refund_id.unwrap();

    let body = json!({"id": "evt_refunded", "object": "event", "type": "charge.refunded",
        "data": {"object": {"id": "ch_late", "object": "charge", "payment_intent": pi, "refunded": true,
            "metadata": {"order_id": order.id.to_string()},
            "refunds": {"object": "list", "data": [{"id": refund_id, "object": "refund"}]}}}})
    .to_string();
    let sig = signature::sign(WEBHOOK_SECRET, now(), body.as_bytes());
    let (status, _) = svc.post_webhook("sandbox", &body, Some(sig)).await;
    assert_eq!(status, 200);
    let refunded = observer.wait_for("payment.refunded", order.id).await;
    assert_eq!(refunded.payload["customer_email"], order.email);
    assert_eq!(svc.status(order.id).await.as_deref(), Some("refunded"));
    assert_eq!(svc.recorded("payment.succeeded", order.id).await, 1);
    assert_eq!(svc.recorded("payment.refunded", order.id).await, 1);
    stop.cancel();
}

fn succeeded_event(event_id: &str, order_id: Uuid) -> String {
    json!({
        "id": event_id, "object": "event", "type": "payment_intent.succeeded", "livemode": false,
        "data": {"object": {"id": "pi_webhook_test", "object": "payment_intent", "amount": 4200,
            "currency": "usd", "status": "succeeded", "metadata": {"order_id": order_id.to_string()}}}
    })
    .to_string()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[tokio::test]
async fn webhooks_must_be_signed_fresh_and_are_applied_once() {
    let b = Backends::new();
    let bus = b.bus().await;
    let stop = CancellationToken::new();
    let observer = Observer::start(&bus, &stop).await;
    let svc = Service::start(&b, &bus, sandbox(0.0), no_tokens()).await;

    let order = Order::new("pm_card_visa", 4200);
    publish(&bus, &order.placed()).await;
    eventually(30, "the payment recorded", || async {
        svc.payment(order.id).await.map(|_| ())
    })
    .await;

    let body = succeeded_event("evt_test_1", order.id);
    let sign = |t: i64, body: &str| signature::sign(WEBHOOK_SECRET, t, body.as_bytes());

    let refused = [
        ("no signature", body.clone(), None),
        (
            "another secret",
            body.clone(),
            Some(signature::sign("whsec_other", now(), body.as_bytes())),
        ),
        (
            "tampered body",
            body.replace("4200", "1"),
            Some(sign(now(), &body)),
        ),
        ("stale", body.clone(), Some(sign(now() - 301, &body))),
        (
            "from the future",
            body.clone(),
            Some(sign(now() + 301, &body)),
        ),
        (
            "malformed header",
            body.clone(),
            Some("t=soon,v1=zz".to_string()),
        ),
        (
            "signed, but not an event",
            "{\"hello\": 1}".to_string(),
            Some(sign(now(), "{\"hello\": 1}")),
        ),
    ];
    for (case, body, sig) in refused {
        let (status, problem) = svc.post_webhook("sandbox", &body, sig).await;
        assert_eq!(status, 400, "{case}: {problem}");
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .starts_with("https://emporium.dev/problems/"),
            "{case}: {problem}"
        );
    }
    let (status, problem) = svc
        .post_webhook("paypal", &body, Some(sign(now(), &body)))
        .await;
    assert_eq!(status, 404, "unknown provider: {problem}");
    let (status, _) = svc
        .post_webhook("stripe", &body, Some(sign(now(), &body)))
        .await;
    assert_eq!(status, 404, "a provider this deployment does not use");
    // Nothing changed.
    assert_eq!(svc.status(order.id).await.as_deref(), Some("pending"));
    assert_eq!(svc.webhook_event_count().await, 0);
    assert_eq!(svc.recorded("payment.succeeded", order.id).await, 0);

    // Valid (one of several v1 signatures matches).
    let valid = format!("{},v1={}", sign(now(), &body), "ab".repeat(32));
    let (status, receipt) = svc.post_webhook("sandbox", &body, Some(valid)).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt, json!({"received": true, "duplicate": false}));
    observer.wait_for("payment.succeeded", order.id).await;
    let row = svc.payment(order.id).await.unwrap();
    assert_eq!(row.status, "succeeded");
    assert_eq!(row.provider_payment_id.as_deref(), Some("pi_webhook_test"));

    // The same event again, signed afresh: acknowledged, no second effect.
    let (status, receipt) = svc
        .post_webhook("sandbox", &body, Some(sign(now(), &body)))
        .await;
    assert_eq!(status, 200);
    assert_eq!(receipt, json!({"received": true, "duplicate": true}));
    assert_eq!(
        svc.webhook_deliveries("payment_intent.succeeded").await,
        vec![2]
    );
    // A second event saying the same: applied, but the payment is settled.
    let again = succeeded_event("evt_test_2", order.id);
    let (status, receipt) = svc
        .post_webhook("sandbox", &again, Some(sign(now(), &again)))
        .await;
    assert_eq!(status, 200);
    assert_eq!(receipt["duplicate"], false);
    assert_eq!(svc.recorded("payment.succeeded", order.id).await, 1);
    stop.cancel();
}

#[tokio::test]
async fn a_webhook_delivered_eight_times_at_once_is_applied_once() {
    let b = Backends::new();
    let bus = b.bus().await;
    let stop = CancellationToken::new();
    let observer = Observer::start(&bus, &stop).await;
    let svc = Service::start(&b, &bus, sandbox(0.0), no_tokens()).await;
    let order = Order::new("pm_card_visa", 4200);
    publish(&bus, &order.placed()).await;
    eventually(30, "the payment recorded", || async {
        svc.payment(order.id).await.map(|_| ())
    })
    .await;

    let body = succeeded_event("evt_raced", order.id);
    let deliveries = (0..8).map(|_| {
        let sig = signature::sign(WEBHOOK_SECRET, now(), body.as_bytes());
        svc.post_webhook("sandbox", &body, Some(sig))
    });
    let receipts = futures::future::join_all(deliveries).await;
    for (status, receipt) in &receipts {
        assert_eq!(*status, 200, "{receipt}");
    }
    let applied = receipts
        .iter()
        .filter(|(_, r)| r["duplicate"] == false)
        .count();
    assert_eq!(applied, 1, "{receipts:?}");
    observer.wait_for("payment.succeeded", order.id).await;
    assert_eq!(svc.payment(order.id).await.unwrap().status, "succeeded");
    assert_eq!(svc.recorded("payment.succeeded", order.id).await, 1);
    assert_eq!(
        svc.webhook_deliveries("payment_intent.succeeded").await,
        vec![8]
    );
    stop.cancel();
}

#[tokio::test]
async fn customers_see_their_own_payments_and_admins_see_all() {
    let b = Backends::new();
    let shop = Shop::start(
        &b,
        ShopOptions {
            identity: identity::Settings {
                admin: Some(("root@example.com".into(), "root password 123".into())),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await;
    let password = "correct horse battery";
    let alice = shop.register("alice@example.com", password).await;
    shop.register("bob@example.com", password).await;
    let (alice_token, _) = shop.login("alice@example.com", password).await;
    let (bob_token, _) = shop.login("bob@example.com", password).await;
    let (admin_token, _) = shop.login("root@example.com", "root password 123").await;
    let verifier = Arc::new(TokenVerifier::from_jwks_url(
        shop.identity().url.join("/.well-known/jwks.json").unwrap(),
        "emporium-identity",
        "emporium",
    ));
    let bus = b.bus().await;
    let stop = CancellationToken::new();
    let observer = Observer::start(&bus, &stop).await;
    let svc = Service::start(&b, &bus, sandbox(0.2), verifier).await;

    let alice_id: Uuid = serde_json::from_value(alice["id"].clone()).unwrap();
    let order = Order::for_customer(alice_id, "pm_card_visa", 3100);
    publish(&bus, &order.placed()).await;
    publish(&bus, &order.reserved()).await;
    observer.wait_for("payment.succeeded", order.id).await;

    let by_order = format!("?order_id={}", order.id);
    let (status, page) = svc.list(&by_order, Some(&alice_token)).await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    let p = &items[0];
    assert_eq!(p["order_id"], order.id.to_string());
    assert_eq!(p["status"], "succeeded");
    assert_eq!(p["amount"], json!({"amount": 3100, "currency": "USD"}));
    assert_eq!(p["provider"], "sandbox");
    assert!(
        p["provider_payment_id"]
            .as_str()
            .unwrap()
            .starts_with("pi_")
    );
    assert_eq!(p["failure_reason"], Value::Null);
    assert!(p["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(p["updated_at"].as_str().is_some());
    let mut keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "amount",
            "created_at",
            "failure_reason",
            "id",
            "order_id",
            "provider",
            "provider_payment_id",
            "status",
            "updated_at"
        ],
        "no payment method or card data is shown"
    );
    let (_, mine) = svc.list("", Some(&alice_token)).await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);

    // Another customer learns nothing: the same empty page as for no payment.
    let (status, page) = svc.list(&by_order, Some(&bob_token)).await;
    assert_eq!(status, 200);
    assert_eq!(page, json!({"items": [], "next_cursor": null}));
    let (_, page) = svc.list("", Some(&bob_token)).await;
    assert_eq!(page["items"], json!([]));

    // payments:read sees it.
    let (status, page) = svc.list(&by_order, Some(&admin_token)).await;
    assert_eq!(status, 200);
    assert_eq!(page["items"][0]["id"], p["id"]);

    let (status, _) = svc.list(&by_order, None).await;
    assert_eq!(status, 401);
    let (status, problem) = svc.list("?order_id=nope", Some(&alice_token)).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "order_id");
    let (status, _) = svc.list("?limit=0", Some(&alice_token)).await;
    assert_eq!(status, 422);

    // The operational endpoints and the API document.
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        let res = svc
            .http
            .get(svc.url.join(path).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
    }
    let doc: Value = svc
        .http
        .get(svc.url.join("/openapi.json").unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/v1/payments"].is_object());
    assert!(doc["paths"]["/api/v1/payments/webhooks/{provider}"].is_object());
    stop.cancel();
}

// ---------------------------------------------------------------------------
// The stripe provider against stripe-mock.

/// stripe-mock on loopback ports chosen by the system; killed when dropped.
struct StripeMock {
    child: std::process::Child,
    http: url::Url,
    https: url::Url,
}

impl StripeMock {
    fn start() -> StripeMock {
        let binary = std::env::var_os("EMPORIUM_TEST_STRIPE_MOCK")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                panic!(
                    "EMPORIUM_TEST_STRIPE_MOCK is not set: the stripe provider is tested against \
                     stripe-mock; `cargo xtask test` builds it and sets this variable to its path"
                )
            });
        let mut child = std::process::Command::new(&binary)
            .args(["-http-addr", "127.0.0.1:", "-https-addr", "127.0.0.1:"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run stripe-mock at {}: {e}", binary.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Report the two addresses, then keep draining its log.
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                for (prefix, scheme) in [
                    ("Listening for HTTP at address: ", "http"),
                    ("Listening for HTTPS at address: ", "https"),
                ] {
                    if let Some(addr) = line.strip_prefix(prefix) {
                        let _ = tx.send((scheme, addr.trim().to_string()));
                    }
                }
            }
        });
        let (mut http, mut https) = (None, None);
        while http.is_none() || https.is_none() {
            let (scheme, addr) = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("stripe-mock reports where it listens");
            let url = url::Url::parse(&format!("{scheme}://{addr}")).unwrap();
            match scheme {
                "http" => http = Some(url),
                _ => https = Some(url),
            }
        }
        StripeMock {
            child,
            http: http.unwrap(),
            https: https.unwrap(),
        }
    }
}

impl Drop for StripeMock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    headers: axum::http::HeaderMap,
    form: Vec<(String, String)>,
    status: u16,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A loopback hop in front of stripe-mock that records each request (so the
/// test sees the headers it was sent) and passes it on unchanged.
async fn recording_proxy(upstream: url::Url) -> (url::Url, Arc<Mutex<Vec<Recorded>>>) {
    let log: Arc<Mutex<Vec<Recorded>>> = Arc::default();
    let client = reqwest::Client::new();
    let sink = log.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (client, sink, upstream) = (client.clone(), sink.clone(), upstream.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let mut forward = client.request(
                parts.method.clone(),
                upstream.join(parts.uri.path()).unwrap(),
            );
            for (name, value) in &parts.headers {
                if name != "host" && name != "content-length" {
                    forward = forward.header(name, value);
                }
            }
            let res = forward.body(body.clone()).send().await.unwrap();
            let status = res.status();
            let answer = res.bytes().await.unwrap();
            sink.lock().unwrap().push(Recorded {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                headers: parts.headers.clone(),
                form: url::form_urlencoded::parse(&body).into_owned().collect(),
                status: status.as_u16(),
            });
            (
                status,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                answer,
            )
        }
    });
    let (listener, url) = listen().await;
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, log)
}

fn stripe(api_base: url::Url, key: &str) -> Stripe {
    Stripe::new(
        api_base,
        Secret::new(key),
        Secret::new(WEBHOOK_SECRET),
        Duration::from_secs(300),
        Duration::from_secs(20),
    )
    .unwrap()
}

#[tokio::test]
async fn the_stripe_provider_speaks_stripes_api() {
    let mock = StripeMock::start();
    let (proxy, log) = recording_proxy(mock.http.clone()).await;
    let provider = stripe(proxy.clone(), STRIPE_KEY);
    let order_id = Uuid::now_v7();

    let outcome = provider
        .charge(&ChargeRequest {
            order_id,
            amount: payments::domain::Money::parse(1234, "USD").unwrap(),
            payment_method: payments::domain::PaymentMethodToken::parse("pm_card_visa").unwrap(),
            idempotency_key: order_id.to_string(),
        })
        .await
        .expect("stripe-mock accepts the charge");
    // stripe-mock is stateless and answers with canned objects (v0.203.0:
    // status `requires_payment_method`), so only the shape is asserted.
    let pi = outcome
        .payment_id()
        .expect("a PaymentIntent id")
        .to_string();
    assert!(pi.starts_with("pi_"), "{outcome:?}");
    let charge = log.lock().unwrap()[0].clone();
    assert_eq!(charge.method, "POST");
    assert_eq!(charge.path, "/v1/payment_intents");
    assert_eq!(
        charge.status, 200,
        "stripe-mock validated the request against Stripe's OpenAPI"
    );
    let order = order_id.to_string();
    assert_eq!(charge.header("idempotency-key"), Some(order.as_str()));
    assert_eq!(
        charge.header("authorization"),
        Some("Bearer sk_test_emporium")
    );
    assert_eq!(
        charge.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(charge.field("amount"), Some("1234"));
    assert_eq!(charge.field("currency"), Some("usd"));
    assert_eq!(charge.field("confirm"), Some("true"));
    assert_eq!(charge.field("payment_method"), Some("pm_card_visa"));
    assert_eq!(charge.field("metadata[order_id]"), Some(order.as_str()));

    let refund = provider
        .refund(&RefundRequest {
            order_id,
            provider_payment_id: pi.clone(),
            amount: payments::domain::Money::parse(1234, "USD").unwrap(),
            idempotency_key: format!("refund-{order_id}"),
        })
        .await
        .expect("stripe-mock accepts the refund");
    match &refund {
        RefundOutcome::Refunded {
            refund_id: Some(id),
        }
        | RefundOutcome::Pending { refund_id: id } => assert!(id.starts_with("re_"), "{refund:?}"),
        other => panic!("{other:?}"),
    }
    let sent = log.lock().unwrap()[1].clone();
    assert_eq!(sent.path, "/v1/refunds");
    assert_eq!(sent.status, 200);
    assert_eq!(
        sent.header("idempotency-key"),
        Some(format!("refund-{order_id}").as_str())
    );
    assert_eq!(sent.field("payment_intent"), Some(pi.as_str()));

    // Asked where a charge stands: GET the PaymentIntent, read as a
    // confirm's answer is (stripe-mock's canned object names the id asked
    // for).
    let request = ChargeRequest {
        order_id,
        amount: payments::domain::Money::parse(1234, "USD").unwrap(),
        payment_method: payments::domain::PaymentMethodToken::parse("pm_card_visa").unwrap(),
        idempotency_key: order_id.to_string(),
    };
    let status = provider
        .charge_status(&request, &pi)
        .await
        .expect("stripe-mock answers for the PaymentIntent");
    assert_eq!(status.payment_id(), Some(pi.as_str()), "{status:?}");
    let asked = log.lock().unwrap()[2].clone();
    assert_eq!(asked.method, "GET");
    assert_eq!(asked.path, format!("/v1/payment_intents/{pi}"));
    assert_eq!(asked.status, 200);
    assert_eq!(
        asked.header("authorization"),
        Some("Bearer sk_test_emporium")
    );
    let odd = provider
        .charge_status(&request, "pi_1/../../v1/charges")
        .await;
    assert!(matches!(odd, Err(ProviderError::Rejected(_))), "{odd:?}");
    let refund_id = match &refund {
        RefundOutcome::Refunded {
            refund_id: Some(id),
        }
        | RefundOutcome::Pending { refund_id: id } => id.clone(),
        other => panic!("{other:?}"),
    };
    let refund_request = RefundRequest {
        order_id,
        provider_payment_id: pi.clone(),
        amount: payments::domain::Money::parse(1234, "USD").unwrap(),
        idempotency_key: format!("refund-{order_id}"),
    };
    provider
        .refund_status(&refund_request, &refund_id)
        .await
        .expect("stripe-mock answers for the refund");
    let asked = log.lock().unwrap()[3].clone();
    assert_eq!(asked.method, "GET");
    assert_eq!(asked.path, format!("/v1/refunds/{refund_id}"));
    assert_eq!(asked.status, 200);

    // A key Stripe refuses is worth retrying once fixed, never a decline.
    let refused = stripe(mock.http.clone(), "not-a-key")
        .charge(&ChargeRequest {
            order_id,
            amount: payments::domain::Money::parse(1, "USD").unwrap(),
            payment_method: payments::domain::PaymentMethodToken::parse("pm_card_visa").unwrap(),
            idempotency_key: order_id.to_string(),
        })
        .await;
    assert!(
        matches!(refused, Err(ProviderError::Unavailable(_))),
        "{refused:?}"
    );

    // Over HTTPS the certificate is checked against the public roots:
    // stripe-mock's self-signed one is refused.
    let tls = stripe(mock.https.clone(), STRIPE_KEY)
        .charge(&ChargeRequest {
            order_id,
            amount: payments::domain::Money::parse(1, "USD").unwrap(),
            payment_method: payments::domain::PaymentMethodToken::parse("pm_card_visa").unwrap(),
            idempotency_key: order_id.to_string(),
        })
        .await;
    match tls {
        Err(ProviderError::Unavailable(message)) => {
            assert!(message.to_lowercase().contains("certificate"), "{message}")
        }
        other => panic!("a self-signed certificate must be refused: {other:?}"),
    }
}

#[tokio::test]
async fn payments_charges_through_stripe_mock() {
    let mock = StripeMock::start();
    let (proxy, log) = recording_proxy(mock.http.clone()).await;
    let b = Backends::new();
    let bus = b.bus().await;
    let stop = CancellationToken::new();
    let observer = Observer::start(&bus, &stop).await;
    let svc = Service::start(
        &b,
        &bus,
        Settings {
            provider: ProviderKind::Stripe,
            stripe_secret_key: Some(Secret::new(STRIPE_KEY)),
            stripe_api_base: proxy,
            webhook_secret: Secret::new(WEBHOOK_SECRET),
            ..Settings::default()
        },
        no_tokens(),
    )
    .await;

    let order = Order::new("pm_card_visa", 990);
    publish(&bus, &order.placed()).await;
    publish(&bus, &order.reserved()).await;
    // stripe-mock's canned PaymentIntent settles the charge synchronously
    // (declined, as its fixture says `requires_payment_method`).
    let outcome = eventually(30, "a payment outcome", || async {
        let types = observer.about(order.id);
        types.into_iter().next()
    })
    .await;
    let row = svc.payment(order.id).await.unwrap();
    assert_eq!(row.provider, "stripe");
    assert_eq!(outcome, format!("payment.{}", row.status), "{row:?}");
    let pi = row
        .provider_payment_id
        .clone()
        .expect("the PaymentIntent id");
    assert!(pi.starts_with("pi_"), "{row:?}");
    let charges: Vec<Recorded> = log.lock().unwrap().clone();
    assert_eq!(charges.len(), 1, "one call to Stripe: {charges:?}");
    assert_eq!(
        charges[0].header("idempotency-key"),
        Some(order.id.to_string().as_str())
    );

    // Stripe's webhooks come to /webhooks/stripe, verified the same way.
    let body = json!({"id": "evt_stripe_1", "object": "event", "type": "customer.created",
        "data": {"object": {"id": "cus_1", "object": "customer"}}})
    .to_string();
    let sig = signature::sign(WEBHOOK_SECRET, now(), body.as_bytes());
    let (status, receipt) = svc.post_webhook("stripe", &body, Some(sig.clone())).await;
    assert_eq!(status, 200, "{receipt}");
    let (status, _) = svc.post_webhook("stripe", &body, None).await;
    assert_eq!(status, 400);
    let (status, _) = svc.post_webhook("sandbox", &body, Some(sig)).await;
    assert_eq!(status, 404, "the sandbox is not this deployment's provider");

    // A success reported later for the settled payment changes nothing.
    let late = json!({"id": "evt_stripe_2", "object": "event", "type": "payment_intent.succeeded",
        "data": {"object": {"id": pi, "object": "payment_intent", "status": "succeeded",
            "metadata": {"order_id": order.id.to_string()}}}})
    .to_string();
    let (status, _) = svc
        .post_webhook(
            "stripe",
            &late,
            Some(signature::sign(WEBHOOK_SECRET, now(), late.as_bytes())),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        svc.status(order.id).await.as_deref(),
        Some(row.status.as_str())
    );
    let total: i64 = svc.recorded("payment.succeeded", order.id).await
        + svc.recorded("payment.failed", order.id).await;
    assert_eq!(total, 1);
    stop.cancel();
}
