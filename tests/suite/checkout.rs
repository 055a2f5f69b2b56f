//! The checkout saga end to end, through the gateway over HTTP, with every
//! service of the shop on the test's backends: a confirmed order and its
//! email, a declined card, a shortage, the race for the last units,
//! idempotent placing, cancelling with refunds, fulfilment transitions, the
//! payment timeout, privacy between customers, a RabbitMQ restart in the
//! middle of 200 checkouts, a PostgreSQL crash in the middle of 100, and a
//! poison message in the dead-letter queue.
//!
//! The email test needs mailpit (`EMPORIUM_TEST_MAILPIT`); the broker
//! restart needs `rabbitmqctl` on the real set, the database crash the
//! PostgreSQL `cargo xtask test` runs. Nothing is skipped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use emporium_tests::mailpit::Mailpit;
use emporium_tests::shop::{ADMIN_EMAIL, ADMIN_PASSWORD, Shop, ShopOptions, listen};
use emporium_tests::{BackendSet, Backends, eventually};
use futures::StreamExt;
use futures::future::join_all;
use kit::events::{Envelope, EventBus};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Row;
use tokio::sync::{RwLock, RwLockReadGuard};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const PASSWORD: &str = "correct horse battery";
/// Seconds one order may take to settle: generous, machines are busy.
const SETTLE: u64 = 90;

// ------------------------------------------------------------------ HTTP

struct Reply {
    status: u16,
    body: Value,
}

impl Reply {
    /// The body, after checking the status.
    fn expect(self, status: u16, what: &str) -> Value {
        assert_eq!(self.status, status, "{what}: {}", self.body);
        self.body
    }
}

async fn call(
    shop: &Shop,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    call_with_key(shop, method, path, token, body, None).await
}

async fn call_with_key(
    shop: &Shop,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    idempotency_key: Option<&str>,
) -> Reply {
    let mut req = shop.http.request(method, shop.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(k) = idempotency_key {
        req = req.header("Idempotency-Key", k);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let res = req.send().await.expect("request through the gateway");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply { status, body }
}

async fn get(shop: &Shop, path: &str, token: &str) -> Reply {
    call(shop, Method::GET, path, Some(token), None).await
}

async fn post(shop: &Shop, path: &str, token: &str, body: Value) -> Reply {
    call(shop, Method::POST, path, Some(token), Some(&body)).await
}

// ------------------------------------------------------------- accounts

struct Customer {
    email: String,
    token: String,
}

/// Register and sign in a new customer.
async fn customer(shop: &Shop, name: &str) -> Customer {
    let email = format!("{name}-{}@example.com", Uuid::now_v7().simple());
    shop.register(&email, PASSWORD).await;
    let (token, _) = shop.login(&email, PASSWORD).await;
    Customer { email, token }
}

/// `n` customers, two signing up at a time: password hashing is slow on
/// purpose, and a crowd of sign-ups would queue past the gateway's timeout.
async fn customers(shop: &Shop, name: &str, n: usize) -> Vec<Customer> {
    let names: Vec<String> = (0..n).map(|i| format!("{name}{i}")).collect();
    futures::stream::iter(names.iter().map(|n| customer(shop, n)))
        .buffered(2)
        .collect()
        .await
}

// ------------------------------------------------------------ catalogue

/// The admin's view of the catalogue: one category to file products under.
struct Catalogue<'a> {
    shop: &'a Shop,
    admin: String,
    category: String,
    skus: AtomicUsize,
}

impl<'a> Catalogue<'a> {
    async fn open(shop: &'a Shop) -> Catalogue<'a> {
        let (admin, _) = shop.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        let category = post(
            shop,
            "/api/v1/categories",
            &admin,
            json!({"name": "Kitchen", "slug": "kitchen"}),
        )
        .await
        .expect(201, "create a category");
        Catalogue {
            shop,
            admin,
            category: category["id"].as_str().unwrap().to_string(),
            skus: AtomicUsize::new(0),
        }
    }

    fn product_body(&self, sku: &str, name: &str, price: i64, stock: i64) -> Value {
        json!({
            "sku": sku,
            "name": name,
            "description": "Made for the checkout tests.",
            "price": {"amount": price, "currency": "USD"},
            "stock": stock,
            "category_id": self.category,
            "images": [],
            "is_active": true,
        })
    }

    /// Create a product through the admin API; returns its id.
    async fn product(&self, name: &str, price: i64, stock: i64) -> Uuid {
        let sku = format!("E2E-{}", self.skus.fetch_add(1, Ordering::SeqCst));
        let body = self.product_body(&sku, name, price, stock);
        let created = post(self.shop, "/api/v1/products", &self.admin, body)
            .await
            .expect(201, "create a product");
        created["id"].as_str().unwrap().parse().unwrap()
    }

    /// Units on hand, as the public API shows them.
    async fn stock(&self, id: Uuid) -> i64 {
        let p = call(
            self.shop,
            Method::GET,
            &format!("/api/v1/products/{id}"),
            None,
            None,
        )
        .await
        .expect(200, "read a product");
        p["stock"].as_i64().unwrap()
    }

    async fn wait_for_stock(&self, id: Uuid, expected: i64, what: &str) {
        eventually(SETTLE, what, || async {
            (self.stock(id).await == expected).then_some(())
        })
        .await;
    }

    /// The admin replaces the product with a new stock figure.
    async fn set_stock(&self, id: Uuid, stock: i64) {
        let path = format!("/api/v1/products/{id}");
        let p = call(self.shop, Method::GET, &path, None, None)
            .await
            .expect(200, "read a product");
        let body = self.product_body(
            p["sku"].as_str().unwrap(),
            p["name"].as_str().unwrap(),
            p["price"]["amount"].as_i64().unwrap(),
            stock,
        );
        call(
            self.shop,
            Method::PUT,
            &path,
            Some(&self.admin),
            Some(&body),
        )
        .await
        .expect(200, "change the stock");
    }
}

// ----------------------------------------------------------------- cart

async fn add_to_cart(shop: &Shop, token: &str, product: Uuid, quantity: i64) {
    post(
        shop,
        "/api/v1/cart/items",
        token,
        json!({"product_id": product, "quantity": quantity}),
    )
    .await
    .expect(200, "add to the cart");
}

async fn cart_items(shop: &Shop, token: &str) -> Vec<Value> {
    let cart = get(shop, "/api/v1/cart", token)
        .await
        .expect(200, "read the cart");
    cart["items"].as_array().unwrap().clone()
}

/// Wait until the cart consumed the last `order.placed` and emptied.
async fn wait_for_empty_cart(shop: &Shop, token: &str, secs: u64) {
    eventually(secs, "the cart to be emptied", || async {
        cart_items(shop, token).await.is_empty().then_some(())
    })
    .await;
}

// --------------------------------------------------------------- orders

fn order_request(payment_method: &str) -> Value {
    json!({
        "shipping_address": {
            "name": "Ada Lovelace",
            "line1": "12 St James's Square",
            "city": "London",
            "postal_code": "SW1Y 4LB",
            "country": "GB",
        },
        "payment_method": payment_method,
    })
}

async fn place_order(shop: &Shop, token: &str, key: Option<&str>, body: &Value) -> Reply {
    call_with_key(
        shop,
        Method::POST,
        "/api/v1/orders",
        Some(token),
        Some(body),
        key,
    )
    .await
}

/// Place the cart as an order (a fresh Idempotency-Key): 201, `pending`.
async fn checkout(shop: &Shop, token: &str, payment_method: &str) -> Value {
    let key = Uuid::now_v7().to_string();
    let order = place_order(shop, token, Some(&key), &order_request(payment_method))
        .await
        .expect(201, "place an order");
    assert_eq!(order["status"], "pending", "{order}");
    order
}

fn id_of(order: &Value) -> Uuid {
    order["id"].as_str().unwrap().parse().unwrap()
}

async fn order(shop: &Shop, token: &str, id: Uuid) -> Value {
    get(shop, &format!("/api/v1/orders/{id}"), token)
        .await
        .expect(200, "read an order")
}

/// Wait until the order reaches `status` (or, failing fast, a final
/// status that is not it).
async fn wait_for_status(shop: &Shop, token: &str, id: Uuid, status: &str) -> Value {
    let seen = eventually(
        SETTLE,
        &format!("order {id} to become {status}"),
        || async {
            let o = order(shop, token, id).await;
            let now = o["status"].as_str().unwrap();
            (now == status || now == "cancelled" || now == "delivered").then_some(o)
        },
    )
    .await;
    assert_eq!(seen["status"], status, "{seen:#}");
    seen
}

/// Wait until the saga is done with the order: `confirmed` or `cancelled`.
async fn settled(shop: &Shop, token: &str, id: Uuid) -> Value {
    eventually(SETTLE, &format!("order {id} to settle"), || async {
        let o = order(shop, token, id).await;
        matches!(o["status"].as_str(), Some("confirmed" | "cancelled")).then_some(o)
    })
    .await
}

fn history(order: &Value) -> Vec<&str> {
    order["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect()
}

fn usd(amount: i64) -> Value {
    json!({"amount": amount, "currency": "USD"})
}

/// Every order the caller may see (admins: all), walking the pages.
async fn all_orders(shop: &Shop, token: &str) -> Vec<Value> {
    let mut orders = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/orders?limit=100&cursor={c}"),
            None => "/api/v1/orders?limit=100".to_string(),
        };
        let page = get(shop, &path, token).await.expect(200, "list orders");
        orders.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return orders,
        }
    }
}

async fn payment_status(shop: &Shop, token: &str, order: Uuid) -> Option<String> {
    let page = get(shop, &format!("/api/v1/payments?order_id={order}"), token)
        .await
        .expect(200, "list the order's payments");
    let items = page["items"].as_array().unwrap();
    assert!(items.len() <= 1, "one payment per order: {page}");
    items
        .first()
        .map(|p| p["status"].as_str().unwrap().to_string())
}

async fn wait_for_payment(shop: &Shop, token: &str, order: Uuid, status: &str) {
    eventually(
        SETTLE,
        &format!("the payment of {order} to be {status}"),
        || async {
            (payment_status(shop, token, order).await.as_deref() == Some(status)).then_some(())
        },
    )
    .await;
}

/// Wait for a notification of `kind` in the customer's in-app feed whose
/// subject mentions `about`.
async fn wait_for_notification(shop: &Shop, token: &str, kind: &str, about: &str) -> Value {
    eventually(SETTLE, &format!("a {kind} notification"), || async {
        let feed = get(shop, "/api/v1/notifications", token)
            .await
            .expect(200, "read the feed");
        feed["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["kind"] == kind && n["subject"].as_str().unwrap().contains(about))
            .cloned()
    })
    .await
}

// --------------------------------------------------------------- broker

/// The checkout tests all use the one RabbitMQ that the restart test stops:
/// they hold it shared, the restart test exclusively, so they never meet.
static BROKER: RwLock<()> = RwLock::const_new(());

async fn broker_shared(b: &Backends) -> Option<RwLockReadGuard<'static, ()>> {
    match b.set {
        BackendSet::Real { .. } => Some(BROKER.read().await),
        BackendSet::Embedded => None,
    }
}

/// Run `rabbitmqctl`, giving up (and killing it) after `secs` seconds.
fn rabbitmqctl(args: &[&str], secs: u64) -> Option<String> {
    let mut child = std::process::Command::new("rabbitmqctl")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut out).map(|_| out)
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return reader.join().ok()?.ok(),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// More durable queues than RabbitMQ can recover quickly on restart: on
/// this machine (1024 open files) recovering 3,510 stalled the broker's
/// boot for good, taking it away from everyone.
const MOST_QUEUES_TO_RESTART_WITH: usize = 2000;

/// RabbitMQ's application stopped; started again by [`BrokerOutage::end`],
/// or when dropped (a failing test never leaves the broker down).
struct BrokerOutage {
    stopped: bool,
}

impl BrokerOutage {
    async fn begin() -> BrokerOutage {
        let queues = tokio::task::spawn_blocking(|| {
            rabbitmqctl(
                &["list_queues", "--quiet", "--no-table-headers", "name"],
                120,
            )
        })
        .await
        .unwrap()
        .expect("rabbitmqctl list_queues")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
        assert!(
            queues <= MOST_QUEUES_TO_RESTART_WITH,
            "the broker holds {queues} queues, left by earlier test runs: restarting it now \
             could stall its boot for everyone; delete the leftover `t…events.*` queues first"
        );
        let outage = BrokerOutage { stopped: true };
        let stopped = tokio::task::spawn_blocking(|| rabbitmqctl(&["stop_app"], 120))
            .await
            .unwrap();
        assert!(stopped.is_some(), "rabbitmqctl stop_app failed");
        outage
    }

    /// Start the application and wait for it, two minutes at most.
    fn restart() -> bool {
        rabbitmqctl(&["start_app"], 120).is_some() && rabbitmqctl(&["await_startup"], 120).is_some()
    }

    async fn end(mut self) {
        let started = tokio::task::spawn_blocking(Self::restart).await.unwrap();
        self.stopped = false;
        assert!(
            started,
            "RabbitMQ did not come back within two minutes; see /var/log/rabbitmq/"
        );
    }
}

impl Drop for BrokerOutage {
    fn drop(&mut self) {
        if self.stopped {
            let _ = Self::restart();
        }
    }
}

// ------------------------------------------------- a shop with no payments

/// Stops the services it guards when dropped.
struct Running(CancellationToken);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Catalog, cart and orders behind the gateway, and no payments service
/// at all: nobody ever charges an order, as when the provider never
/// answers, so every order waits for its payment until `payment_timeout`.
async fn shop_without_payments(b: &Backends, payment_timeout: Duration) -> (Shop, Running) {
    let (shop, running, _) = shop_without_payments_with(
        b,
        orders::Settings {
            payment_timeout,
            timeout_sweep_every: Duration::from_millis(200),
            ..Default::default()
        },
    )
    .await;
    (shop, running)
}

/// Where a second orders replica finds what the first one uses.
struct OrdersPeers {
    db: kit::config::DatabaseUrl,
    cart: url::Url,
    catalog: url::Url,
    verifier: Arc<kit::auth::TokenVerifier>,
}

async fn shop_without_payments_with(
    b: &Backends,
    orders_settings: orders::Settings,
) -> (Shop, Running, OrdersPeers) {
    let (catalog_listener, catalog_url) = listen().await;
    let (cart_listener, cart_url) = listen().await;
    let (orders_listener, orders_url) = listen().await;
    let shop = Shop::start(
        b,
        ShopOptions {
            full: false,
            extra_upstreams: BTreeMap::from([
                ("catalog".to_string(), catalog_url.clone()),
                ("cart".to_string(), cart_url.clone()),
                ("orders".to_string(), orders_url),
            ]),
            ..ShopOptions::full()
        },
    )
    .await;
    let verifier = Arc::new(kit::auth::TokenVerifier::from_jwks_url(
        shop.identity().url.join("/.well-known/jwks.json").unwrap(),
        "emporium-identity",
        "emporium",
    ));
    let shutdown = CancellationToken::new();

    let catalog = catalog::Catalog::build(
        catalog::Settings::default(),
        verifier.clone(),
        catalog::Backends {
            db: b.database("catalog").await,
            cache: b.cache().await,
            bus: shop.bus.clone(),
        },
    )
    .await
    .expect("catalog starts");
    catalog
        .spawn_workers(shutdown.clone())
        .await
        .expect("catalog workers");
    tokio::spawn(kit::http::serve(
        catalog_listener,
        catalog.router,
        shutdown.clone(),
    ));

    let store = match &b.set {
        BackendSet::Real { redis, .. } => {
            cart::StoreBackend::connect(&cart::StoreUrl::Redis(redis.clone()))
                .await
                .expect("cart store")
        }
        BackendSet::Embedded => cart::StoreBackend::Sql(b.database("cart").await),
    };
    let cart = cart::Cart::build(
        cart::Settings {
            key_prefix: b.tag.clone(),
            ..Default::default()
        },
        verifier.clone(),
        store,
        catalog_url.clone(),
    )
    .await
    .expect("cart starts");
    cart.spawn_workers(shutdown.clone());
    cart.subscribe(&shop.bus, shutdown.clone())
        .await
        .expect("cart subscribes");
    tokio::spawn(kit::http::serve(
        cart_listener,
        cart.router,
        shutdown.clone(),
    ));

    let orders_db = b.database_url("orders").await;
    let peers = OrdersPeers {
        db: orders_db.clone(),
        cart: cart_url.clone(),
        catalog: catalog_url.clone(),
        verifier: verifier.clone(),
    };
    let orders = orders::Orders::build(
        orders_settings,
        verifier,
        orders::PeerUrls {
            cart: cart_url,
            catalog: catalog_url,
        },
        orders::Backends {
            db: kit::db::Database::connect(&orders_db)
                .await
                .expect("connect to the orders database"),
            bus: shop.bus.clone(),
        },
    )
    .await
    .expect("orders starts");
    orders
        .spawn_workers(shutdown.clone())
        .await
        .expect("orders workers");
    tokio::spawn(kit::http::serve(
        orders_listener,
        orders.router,
        shutdown.clone(),
    ));
    (shop, Running(shutdown), peers)
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn a_paid_order_is_confirmed_emailed_and_in_the_feed() {
    let b = Backends::new();
    let _broker = broker_shared(&b).await;
    let mailpit = Mailpit::start().await;
    let shop = Shop::start(
        &b,
        ShopOptions {
            smtp: Some(mailpit.smtp_url()),
            ..ShopOptions::full()
        },
    )
    .await;
    let cat = Catalogue::open(&shop).await;
    let mug = cat.product("Enamel mug", 1999, 10).await;
    let ada = customer(&shop, "ada").await;
    add_to_cart(&shop, &ada.token, mug, 2).await;

    let placed = checkout(&shop, &ada.token, "pm_card_visa").await;
    let number = placed["number"].as_str().unwrap().to_string();
    let (prefix, tail) = number.split_at("ORD-YYYYMMDD-".len());
    assert!(
        prefix.starts_with("ORD-") && prefix[4..12].bytes().all(|c| c.is_ascii_digit()),
        "{number}"
    );
    assert!(
        tail.len() == 8
            && tail
                .bytes()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()),
        "{number}"
    );
    assert_eq!(
        placed["lines"],
        json!([{"product_id": mug, "name": "Enamel mug", "unit_price": usd(1999),
                "quantity": 2, "line_total": usd(3998)}])
    );
    // Below the free-shipping threshold: flat 4.99; tax 8 % of 39.98 is
    // 3.1984, rounded half up to 3.20.
    assert_eq!(placed["subtotal"], usd(3998));
    assert_eq!(placed["shipping"], usd(499));
    assert_eq!(placed["tax"], usd(320));
    assert_eq!(placed["total"], usd(3998 + 499 + 320));
    assert_eq!(placed["shipping_address"]["country"], "GB");

    let id = id_of(&placed);
    let confirmed = wait_for_status(&shop, &ada.token, id, "confirmed").await;
    assert_eq!(
        history(&confirmed),
        ["pending", "awaiting_payment", "confirmed"]
    );
    for field in ["subtotal", "shipping", "tax", "total", "lines", "number"] {
        assert_eq!(confirmed[field], placed[field], "{field}");
    }

    wait_for_empty_cart(&shop, &ada.token, SETTLE).await;
    cat.wait_for_stock(mug, 8, "the stock to drop by the two mugs sold")
        .await;
    wait_for_payment(&shop, &ada.token, id, "succeeded").await;

    let subject = format!("Your Emporium order {number} is confirmed");
    eventually(
        SETTLE,
        "the confirmation email at the SMTP server",
        || async {
            mailpit
                .messages()
                .await
                .iter()
                .any(|m| m["Subject"] == subject.as_str())
                .then_some(())
        },
    )
    .await;
    let email = mailpit.message_with_subject(&subject).await;
    assert_eq!(email["To"][0]["Address"], ada.email.as_str());
    let text = email["Text"].as_str().unwrap();
    assert!(text.contains(&number), "{text}");
    assert!(text.contains("Enamel mug"), "{text}");
    assert!(text.contains("$48.17"), "{text}");

    let note = wait_for_notification(&shop, &ada.token, "order_confirmed", &number).await;
    assert_eq!(note["subject"], subject.as_str());

    let mine = all_orders(&shop, &ada.token).await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["id"], placed["id"]);
}

#[tokio::test]
async fn a_declined_card_cancels_the_order_and_gives_the_stock_back() {
    let b = Backends::new();
    let _broker = broker_shared(&b).await;
    let shop = Shop::start(&b, ShopOptions::full()).await;
    let cat = Catalogue::open(&shop).await;
    let kettle = cat.product("Kettle", 3500, 7).await;
    let bob = customer(&shop, "bob").await;
    add_to_cart(&shop, &bob.token, kettle, 3).await;

    let id = id_of(&checkout(&shop, &bob.token, "pm_card_chargeDeclined").await);
    let cancelled = wait_for_status(&shop, &bob.token, id, "cancelled").await;
    let reason = cancelled["cancel_reason"].as_str().unwrap();
    assert!(reason.contains("payment"), "{reason}");
    // The stock was reserved before the charge was tried, then released.
    assert_eq!(
        history(&cancelled),
        ["pending", "awaiting_payment", "cancelled"]
    );
    assert_eq!(cancelled["history"][2]["reason"], reason);

    cat.wait_for_stock(kettle, 7, "the reserved kettles to come back")
        .await;
    wait_for_empty_cart(&shop, &bob.token, SETTLE).await;
    wait_for_payment(&shop, &bob.token, id, "failed").await;
    wait_for_notification(
        &shop,
        &bob.token,
        "order_cancelled",
        cancelled["number"].as_str().unwrap(),
    )
    .await;
}

#[tokio::test]
async fn an_order_for_more_than_the_stock_is_cancelled_out_of_stock() {
    let b = Backends::new();
    let _broker = broker_shared(&b).await;
    let shop = Shop::start(&b, ShopOptions::full()).await;
    let cat = Catalogue::open(&shop).await;
    let teapot = cat.product("Teapot", 2400, 5).await;
    let cy = customer(&shop, "cy").await;
    add_to_cart(&shop, &cy.token, teapot, 3).await;
    // Someone else bought them meanwhile: the cart holds more than is left.
    cat.set_stock(teapot, 2).await;
    assert_eq!(cat.stock(teapot).await, 2);

    let id = id_of(&checkout(&shop, &cy.token, "pm_card_visa").await);
    let cancelled = wait_for_status(&shop, &cy.token, id, "cancelled").await;
    assert_eq!(cancelled["cancel_reason"], "out_of_stock");
    assert_eq!(history(&cancelled), ["pending", "cancelled"]);
    assert_eq!(cancelled["history"][1]["reason"], "out_of_stock");

    // Never charged, and the stock never moved.
    wait_for_payment(&shop, &cy.token, id, "cancelled").await;
    assert_eq!(cat.stock(teapot).await, 2);
    wait_for_empty_cart(&shop, &cy.token, SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_customers_race_for_the_last_five_units() {
    let b = Backends::new();
    let _broker = broker_shared(&b).await;
    let shop = Shop::start(&b, ShopOptions::full()).await;
    let cat = Catalogue::open(&shop).await;
    let lamp = cat.product("Desk lamp", 4500, 5).await;
    let buyers = customers(&shop, "racer", 20).await;
    join_all(buyers.iter().map(|c| add_to_cart(&shop, &c.token, lamp, 1))).await;

    let placed = join_all(
        buyers
            .iter()
            .map(|c| checkout(&shop, &c.token, "pm_card_visa")),
    )
    .await;
    let outcomes = join_all(
        buyers
            .iter()
            .zip(&placed)
            .map(|(c, o)| settled(&shop, &c.token, id_of(o))),
    )
    .await;

    let confirmed = outcomes
        .iter()
        .filter(|o| o["status"] == "confirmed")
        .count();
    let cancelled: Vec<&Value> = outcomes
        .iter()
        .filter(|o| o["status"] == "cancelled")
        .collect();
    assert_eq!(confirmed, 5, "exactly the five units are sold");
    assert_eq!(cancelled.len(), 15);
    for o in cancelled {
        assert_eq!(o["cancel_reason"], "out_of_stock", "{o}");
    }
    cat.wait_for_stock(lamp, 0, "the stock to reach zero").await;
    // And it stays there: nothing reserved twice, nothing given back.
    assert_eq!(cat.stock(lamp).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_places_one_order_however_often_it_is_sent() {
    let b = Backends::new();
    let _broker = broker_shared(&b).await;
    let shop = Shop::start(&b, ShopOptions::full()).await;
    let cat = Catalogue::open(&shop).await;
    let plate = cat.product("Plate", 1200, 100).await;

    // The same key and body twice: one order, the retry answered 200.
    let dee = customer(&shop, "dee").await;
    add_to_cart(&shop, &dee.token, plate, 1).await;
    let body = order_request("pm_card_visa");
    let first = place_order(&shop, &dee.token, Some("retry-1"), &body)
        .await
        .expect(201, "first attempt");
    let again = place_order(&shop, &dee.token, Some("retry-1"), &body)
        .await
        .expect(200, "the retry");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["number"], first["number"]);

    // The same key for something else is refused; no key at all too.
    let other = order_request("pm_card_mastercard");
    let reused = place_order(&shop, &dee.token, Some("retry-1"), &other)
        .await
        .expect(422, "the key reused for another request");
    assert!(
        reused["type"]
            .as_str()
            .unwrap()
            .contains("idempotency-key-reused")
    );
    place_order(&shop, &dee.token, None, &body)
        .await
        .expect(400, "no Idempotency-Key");
    assert_eq!(all_orders(&shop, &dee.token).await.len(), 1);

    // Fifty requests at once with one key: one order, every answer names it.
    let eve = customer(&shop, "eve").await;
    add_to_cart(&shop, &eve.token, plate, 2).await;
    let answers =
        join_all((0..50).map(|_| place_order(&shop, &eve.token, Some("burst-1"), &body))).await;
    let mut ids = HashSet::new();
    let mut created = 0;
    for a in &answers {
        assert!(matches!(a.status, 200 | 201), "{} {}", a.status, a.body);
        created += usize::from(a.status == 201);
        ids.insert(a.body["id"].as_str().unwrap().to_string());
    }
    assert_eq!(created, 1, "one request created the order");
    assert_eq!(ids.len(), 1, "every answer is the same order");
    let eves = all_orders(&shop, &eve.token).await;
    assert_eq!(eves.len(), 1);
    assert!(ids.contains(eves[0]["id"].as_str().unwrap()));
    let settled_order = settled(&shop, &eve.token, id_of(&eves[0])).await;
    assert_eq!(settled_order["status"], "confirmed");
    assert_eq!(settled_order["lines"][0]["quantity"], 2);

    // Nothing to order.
    let fay = customer(&shop, "fay").await;
    place_order(&shop, &fay.token, Some("empty-1"), &body)
        .await
        .expect(409, "an empty cart");
    assert!(all_orders(&shop, &fay.token).await.is_empty());

    // A bad address names its fields, changes nothing and does not use up
    // the key; a country written in small letters is the same country.
    let gus = customer(&shop, "gus").await;
    add_to_cart(&shop, &gus.token, plate, 1).await;
    let mut bad = order_request("pm_card_visa");
    bad["shipping_address"]["city"] = json!("  ");
    bad["shipping_address"]["country"] = json!("XX");
    let refused = place_order(&shop, &gus.token, Some("address-1"), &bad)
        .await
        .expect(422, "a bad address");
    let fields: Vec<&str> = refused["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["shipping_address.city", "shipping_address.country"]
    );
    assert!(all_orders(&shop, &gus.token).await.is_empty());
    assert_eq!(cart_items(&shop, &gus.token).await.len(), 1);
    let mut casual = order_request("pm_card_visa");
    casual["shipping_address"]["country"] = json!(" gb ");
    casual["shipping_address"]["name"] = json!(" Ada Lovelace ");
    let placed = place_order(&shop, &gus.token, Some("address-1"), &casual)
        .await
        .expect(201, "the address put right, with the same key");
    assert_eq!(
        placed["shipping_address"],
        order_request("")["shipping_address"]
    );
}

#[tokio::test]
async fn cancelling_a_paid_order_refunds_it_and_shipped_orders_stay_shipped() {
    let b = Backends::new();
    let _broker = broker_shared(&b).await;
    let shop = Shop::start(&b, ShopOptions::full()).await;
    let cat = Catalogue::open(&shop).await;
    let pan = cat.product("Cast-iron pan", 2999, 10).await;
    let gus = customer(&shop, "gus").await;

    add_to_cart(&shop, &gus.token, pan, 2).await;
    let placed = checkout(&shop, &gus.token, "pm_card_visa").await;
    // From 50.00 shipping is free; tax 8 % of 59.98 is 4.7984 → 4.80.
    assert_eq!(placed["subtotal"], usd(5998));
    assert_eq!(placed["shipping"], usd(0));
    assert_eq!(placed["tax"], usd(480));
    assert_eq!(placed["total"], usd(6478));
    let paid = id_of(&placed);
    wait_for_status(&shop, &gus.token, paid, "confirmed").await;
    wait_for_payment(&shop, &gus.token, paid, "succeeded").await;
    cat.wait_for_stock(pan, 8, "two pans reserved").await;

    // Fulfilment is the shop's, and only along the status machine.
    let status = |s: &str| json!({ "status": s });
    let by_customer = post(
        &shop,
        &format!("/api/v1/orders/{paid}/status"),
        &gus.token,
        status("processing"),
    )
    .await;
    assert_eq!(by_customer.status, 403, "{}", by_customer.body);
    let skipped = post(
        &shop,
        &format!("/api/v1/orders/{paid}/status"),
        &cat.admin,
        status("delivered"),
    )
    .await
    .expect(409, "confirmed → delivered");
    assert!(
        skipped["type"]
            .as_str()
            .unwrap()
            .contains("illegal-transition")
    );
    assert_eq!(order(&shop, &gus.token, paid).await["status"], "confirmed");

    // The customer changes their mind: refunded, stock back.
    let cancelled = post(
        &shop,
        &format!("/api/v1/orders/{paid}/cancel"),
        &gus.token,
        json!({}),
    )
    .await
    .expect(200, "cancel a paid order");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["cancel_reason"], "customer_request");
    wait_for_payment(&shop, &gus.token, paid, "refunded").await;
    cat.wait_for_stock(pan, 10, "the cancelled order's pans to come back")
        .await;
    wait_for_notification(
        &shop,
        &gus.token,
        "payment_refunded",
        placed["number"].as_str().unwrap(),
    )
    .await;

    // Once shipped, an order can no longer be cancelled.
    wait_for_empty_cart(&shop, &gus.token, SETTLE).await;
    add_to_cart(&shop, &gus.token, pan, 1).await;
    let shipped = id_of(&checkout(&shop, &gus.token, "pm_card_visa").await);
    wait_for_status(&shop, &gus.token, shipped, "confirmed").await;
    for next in ["processing", "shipped"] {
        let o = post(
            &shop,
            &format!("/api/v1/orders/{shipped}/status"),
            &cat.admin,
            status(next),
        )
        .await
        .expect(200, next);
        assert_eq!(o["status"], next);
    }
    post(
        &shop,
        &format!("/api/v1/orders/{shipped}/cancel"),
        &gus.token,
        json!({}),
    )
    .await
    .expect(409, "cancel a shipped order");
    let after = order(&shop, &gus.token, shipped).await;
    assert_eq!(after["status"], "shipped");
    assert_eq!(
        history(&after),
        [
            "pending",
            "awaiting_payment",
            "confirmed",
            "processing",
            "shipped"
        ]
    );
    assert_eq!(
        payment_status(&shop, &gus.token, shipped).await.as_deref(),
        Some("succeeded")
    );
    assert_eq!(cat.stock(pan).await, 9);
}

#[tokio::test]
async fn an_order_never_paid_is_cancelled_when_its_time_is_up() {
    let b = Backends::new();
    let _broker = broker_shared(&b).await;
    // No payments service: the stock is reserved, then nothing charges it.
    let (shop, _services) = shop_without_payments(&b, Duration::from_secs(1)).await;
    let cat = Catalogue::open(&shop).await;
    let jar = cat.product("Storage jar", 800, 6).await;
    let hal = customer(&shop, "hal").await;
    add_to_cart(&shop, &hal.token, jar, 4).await;

    let id = id_of(&checkout(&shop, &hal.token, "pm_card_visa").await);
    let cancelled = wait_for_status(&shop, &hal.token, id, "cancelled").await;
    assert_eq!(cancelled["cancel_reason"], "payment_timeout");
    assert_eq!(
        history(&cancelled),
        ["pending", "awaiting_payment", "cancelled"]
    );
    assert_eq!(cancelled["history"][2]["reason"], "payment_timeout");
    cat.wait_for_stock(jar, 6, "the reserved jars to be released")
        .await;
    wait_for_empty_cart(&shop, &hal.token, SETTLE).await;
}

/// Saga events delivered again (the same event id, as after a broker
/// redelivery) or sent again under a new id change nothing a second time:
/// catalog reserves once per order and orders records each change once.
#[tokio::test]
async fn saga_events_delivered_again_change_nothing() {
    let b = Backends::new();
    let _broker = broker_shared(&b).await;
    let (shop, _services) = shop_without_payments(&b, Duration::from_secs(600)).await;
    let cat = Catalogue::open(&shop).await;
    let mug = cat.product("Redelivered mug", 900, 10).await;
    let ida = customer(&shop, "ida").await;
    add_to_cart(&shop, &ida.token, mug, 1).await;
    let id = id_of(&checkout(&shop, &ida.token, "pm_card_visa").await);
    wait_for_status(&shop, &ida.token, id, "awaiting_payment").await;
    cat.wait_for_stock(mug, 9, "the first order's reservation")
        .await;

    // Another order's order.placed three times, then once more under a
    // new event id: two units reserved, once.
    let placed = |order_id: Uuid, quantity: i64| {
        Envelope::new(
            "orders",
            "order.placed",
            json!({"order_id": order_id, "customer_id": Uuid::now_v7(),
                   "lines": [{"product_id": mug, "quantity": quantity}]}),
        )
        .unwrap()
    };
    let other = Uuid::now_v7();
    let first = placed(other, 2);
    for _ in 0..3 {
        shop.bus.publish(&first).await.expect("publish");
    }
    shop.bus.publish(&placed(other, 2)).await.expect("publish");

    // The first order's reservation announced again, twice under one id,
    // and one for an order orders never had: nothing moves.
    let reserved = |order_id: Uuid| {
        Envelope::new(
            "catalog",
            "stock.reserved",
            json!({"order_id": order_id, "lines": [{"product_id": mug, "quantity": 1}]}),
        )
        .unwrap()
    };
    let again = reserved(id);
    shop.bus.publish(&again).await.expect("publish");
    shop.bus.publish(&again).await.expect("publish");
    shop.bus
        .publish(&reserved(Uuid::now_v7()))
        .await
        .expect("publish");

    // The first order's payment, twice.
    let paid = Envelope::new(
        "payments",
        "payment.succeeded",
        json!({"order_id": id, "payment_id": Uuid::now_v7(), "amount": usd(900)}),
    )
    .unwrap();
    shop.bus.publish(&paid).await.expect("publish");
    shop.bus.publish(&paid).await.expect("publish");

    // A last order through the same queue: once its unit is reserved,
    // everything published before it has been handled.
    shop.bus
        .publish(&placed(Uuid::now_v7(), 1))
        .await
        .expect("publish");
    cat.wait_for_stock(mug, 6, "10 - 1 - 2 (once) - 1").await;
    let confirmed = wait_for_status(&shop, &ida.token, id, "confirmed").await;
    assert_eq!(
        history(&confirmed),
        ["pending", "awaiting_payment", "confirmed"]
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(cat.stock(mug).await, 6, "a copy reserved stock again");
}

/// A read of an order with `?wait=10` at `url` (through the gateway or
/// straight to one orders replica): what it answered and how long it took.
fn wait_for_settlement(
    http: &reqwest::Client,
    url: String,
    token: &str,
) -> tokio::task::JoinHandle<(Value, Duration)> {
    let request = http.get(url).bearer_auth(token);
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let res = request.send().await.expect("a waiting read");
        assert_eq!(res.status(), 200, "a waiting read");
        let body: Value = res.json().await.expect("an order");
        (body, started.elapsed())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_read_answers_as_soon_as_the_order_settles() {
    let b = Backends::new();
    let _broker = broker_shared(&b).await;
    // No payments service, so orders stay unpaid until cancelled. Waiting
    // reads look at the database again only after a minute: only the
    // change itself can end a 10 s wait early.
    let settings = || orders::Settings {
        payment_timeout: Duration::from_secs(600),
        settle_recheck: Duration::from_secs(60),
        ..Default::default()
    };
    let (shop, _services, peers) = shop_without_payments_with(&b, settings()).await;
    let cat = Catalogue::open(&shop).await;
    let mug = cat.product("Waiting mug", 900, 10).await;
    let ida = customer(&shop, "ida").await;
    add_to_cart(&shop, &ida.token, mug, 1).await;
    let id = id_of(&checkout(&shop, &ida.token, "pm_card_visa").await);
    wait_for_status(&shop, &ida.token, id, "awaiting_payment").await;

    for bad in ["11", "-1", "soon"] {
        let refused = get(
            &shop,
            &format!("/api/v1/orders/{id}?wait={bad}"),
            &ida.token,
        )
        .await;
        assert!(
            matches!(refused.status, 400 | 422) && refused.body.to_string().contains("wait"),
            "wait={bad}: {} {}",
            refused.status,
            refused.body
        );
    }

    // Still unpaid when the wait is over: the answer says so.
    let started = std::time::Instant::now();
    let unsettled = get(&shop, &format!("/api/v1/orders/{id}?wait=1"), &ida.token)
        .await
        .expect(200, "a read waiting one second");
    assert_eq!(unsettled["status"], "awaiting_payment");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "answered before its wait was over"
    );

    // Cancelled while a read waits: the read answers with the change.
    let waiting = wait_for_settlement(
        &shop.http,
        shop.url(&format!("/api/v1/orders/{id}?wait=10")),
        &ida.token,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    post(
        &shop,
        &format!("/api/v1/orders/{id}/cancel"),
        &ida.token,
        json!({}),
    )
    .await
    .expect(200, "cancel");
    let (seen, took) = waiting.await.unwrap();
    assert_eq!(seen["status"], "cancelled", "{seen:#}");
    assert!(
        took < Duration::from_secs(9),
        "the read waited out its 10 s instead of answering at the change ({took:?})"
    );

    // A read waiting on another replica hears of the change through the
    // database. SQLite is one process's database: replicas need PostgreSQL.
    if let BackendSet::Real { .. } = &b.set {
        let shutdown = CancellationToken::new();
        let _stop = Running(shutdown.clone());
        let second = orders::Orders::build(
            settings(),
            peers.verifier.clone(),
            orders::PeerUrls {
                cart: peers.cart.clone(),
                catalog: peers.catalog.clone(),
            },
            orders::Backends {
                db: kit::db::Database::connect(&peers.db)
                    .await
                    .expect("the second replica connects"),
                bus: shop.bus.clone(),
            },
        )
        .await
        .expect("a second orders replica starts");
        second
            .spawn_workers(shutdown.clone())
            .await
            .expect("the second replica's workers");
        let (listener, second_url) = listen().await;
        tokio::spawn(kit::http::serve(listener, second.router, shutdown.clone()));

        add_to_cart(&shop, &ida.token, mug, 1).await;
        let other = id_of(&checkout(&shop, &ida.token, "pm_card_visa").await);
        wait_for_status(&shop, &ida.token, other, "awaiting_payment").await;
        let waiting = wait_for_settlement(
            &shop.http,
            format!("{second_url}api/v1/orders/{other}?wait=10"),
            &ida.token,
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Through the gateway, to the first replica.
        post(
            &shop,
            &format!("/api/v1/orders/{other}/cancel"),
            &ida.token,
            json!({}),
        )
        .await
        .expect(200, "cancel on the first replica");
        let (seen, took) = waiting.await.unwrap();
        assert_eq!(seen["status"], "cancelled", "{seen:#}");
        assert!(
            took < Duration::from_secs(9),
            "the second replica's read was not told of the change ({took:?})"
        );
    }
}

#[tokio::test]
async fn customers_see_only_their_own_orders() {
    let b = Backends::new();
    let _broker = broker_shared(&b).await;
    let shop = Shop::start(&b, ShopOptions::full()).await;
    let cat = Catalogue::open(&shop).await;
    let bowl = cat.product("Bowl", 900, 10).await;
    let ivy = customer(&shop, "ivy").await;
    let jon = customer(&shop, "jon").await;
    add_to_cart(&shop, &ivy.token, bowl, 1).await;
    let ivys = id_of(&checkout(&shop, &ivy.token, "pm_card_visa").await);
    let before = wait_for_status(&shop, &ivy.token, ivys, "confirmed").await;

    let peek = get(&shop, &format!("/api/v1/orders/{ivys}"), &jon.token).await;
    assert_eq!(peek.status, 404, "{}", peek.body);
    let cancel = post(
        &shop,
        &format!("/api/v1/orders/{ivys}/cancel"),
        &jon.token,
        json!({}),
    )
    .await;
    assert_eq!(cancel.status, 404, "{}", cancel.body);
    let nowhere = Uuid::now_v7();
    assert_eq!(
        get(&shop, &format!("/api/v1/orders/{nowhere}"), &ivy.token)
            .await
            .status,
        404
    );
    assert!(all_orders(&shop, &jon.token).await.is_empty());

    let mine = all_orders(&shop, &ivy.token).await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["id"], before["id"]);
    // Untouched by the other customer's attempt, and the shop sees it.
    assert_eq!(order(&shop, &ivy.token, ivys).await["status"], "confirmed");
    assert_eq!(order(&shop, &cat.admin, ivys).await["id"], before["id"]);
}

#[tokio::test]
async fn orders_are_listed_newest_first_by_status_and_date() {
    let b = Backends::new();
    let _broker = broker_shared(&b).await;
    let shop = Shop::start(&b, ShopOptions::full()).await;
    let cat = Catalogue::open(&shop).await;
    let cup = cat.product("Cup", 700, 50).await;
    let kim = customer(&shop, "kim").await;
    let lou = customer(&shop, "lou").await;

    // Three orders one after another: kim's paid, lou's declined, kim's paid.
    let mut placed = Vec::new();
    for (who, card) in [
        (&kim, "pm_card_visa"),
        (&lou, "pm_card_chargeDeclined"),
        (&kim, "pm_card_visa"),
    ] {
        add_to_cart(&shop, &who.token, cup, 1).await;
        let order = checkout(&shop, &who.token, card).await;
        placed.push(settled(&shop, &who.token, id_of(&order)).await);
        wait_for_empty_cart(&shop, &who.token, SETTLE).await;
    }
    let id = |i: usize| placed[i]["id"].as_str().unwrap().to_owned();
    let (a, b, c) = (id(0), id(1), id(2));
    assert_eq!(placed[1]["status"], "cancelled");
    let listed = |path: String, token: &str| {
        let token = token.to_owned();
        let shop = &shop;
        async move {
            let page = get(shop, &path, &token).await.expect(200, "list orders");
            let ids: Vec<String> = page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_str().unwrap().to_owned())
                .collect();
            (ids, page["next_cursor"].as_str().map(str::to_owned))
        }
    };

    // The shop sees every customer's orders, newest first, page by page.
    let (first, cursor) = listed("/api/v1/orders?limit=2".into(), &cat.admin).await;
    assert_eq!(first, [c.as_str(), b.as_str()]);
    let cursor = cursor.expect("a second page");
    let (second, end) = listed(
        format!("/api/v1/orders?limit=2&cursor={cursor}"),
        &cat.admin,
    )
    .await;
    assert_eq!(second, [a.as_str()]);
    assert_eq!(end, None);

    // By status, and by when they were placed (`from` inclusive, `to` not).
    let by = |query: &str| listed(format!("/api/v1/orders?{query}"), &cat.admin);
    assert_eq!(by("status=cancelled").await.0, [b.as_str()]);
    assert_eq!(by("status=confirmed").await.0, [c.as_str(), a.as_str()]);
    let at = |i: usize| placed[i]["created_at"].as_str().unwrap().to_owned();
    assert_eq!(
        by(&format!("from={}", at(1))).await.0,
        [c.as_str(), b.as_str()]
    );
    assert_eq!(by(&format!("to={}", at(1))).await.0, [a.as_str()]);
    assert_eq!(
        by(&format!("from={}&to={}&status=confirmed", at(0), at(2)))
            .await
            .0,
        [a.as_str()]
    );

    // A customer's list is theirs alone, with the same filters.
    let (kims, _) = listed("/api/v1/orders?limit=1".into(), &kim.token).await;
    assert_eq!(kims, [c.as_str()]);
    assert_eq!(
        listed("/api/v1/orders?status=confirmed".into(), &kim.token)
            .await
            .0,
        [c.as_str(), a.as_str()]
    );
    assert!(
        listed("/api/v1/orders?status=confirmed".into(), &lou.token)
            .await
            .0
            .is_empty()
    );

    // Filters that make no sense are refused, naming the parameter.
    for (query, field) in [
        ("status=lost", "status"),
        ("from=yesterday", "from"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("cursor=not-an-order", "cursor"),
    ] {
        let refused = get(&shop, &format!("/api/v1/orders?{query}"), &cat.admin)
            .await
            .expect(422, query);
        assert_eq!(refused["errors"][0]["field"], field, "{query}: {refused}");
    }
    let backwards = get(
        &shop,
        &format!("/api/v1/orders?from={}&to={}", at(2), at(0)),
        &cat.admin,
    )
    .await
    .expect(422, "`to` before `from`");
    assert_eq!(backwards["errors"][0]["field"], "to", "{backwards}");
}

/// The card of the `i`th order of a long run, and the status it decides:
/// every tenth is declined.
fn card_for(i: usize) -> (&'static str, &'static str) {
    if i % 10 == 9 {
        ("pm_card_chargeDeclined", "cancelled")
    } else {
        ("pm_card_visa", "confirmed")
    }
}

/// One customer's part of a long run: take the next order number while
/// any are left, wait for the previous order to leave the cart, fill it,
/// place the order (retrying with the same key if need be). Returns each
/// order with the status its card decides.
async fn buy_in_turn(
    shop: &Shop,
    c: &Customer,
    product: Uuid,
    orders: usize,
    next: &AtomicUsize,
    placed: &AtomicUsize,
) -> Vec<(Uuid, &'static str)> {
    let mut mine = Vec::new();
    loop {
        let i = next.fetch_add(1, Ordering::SeqCst);
        if i >= orders {
            return mine;
        }
        wait_for_empty_cart(shop, &c.token, 240).await;
        add_to_cart(shop, &c.token, product, 1).await;
        let (card, outcome) = card_for(i);
        let key = format!("bulk-{i}");
        let body = order_request(card);
        let mut attempt = 0;
        let order = loop {
            let reply = place_order(shop, &c.token, Some(&key), &body).await;
            if matches!(reply.status, 200 | 201) {
                break reply.body;
            }
            attempt += 1;
            assert!(
                attempt < 5,
                "place order {i}: {} {}",
                reply.status,
                reply.body
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        placed.fetch_add(1, Ordering::SeqCst);
        mine.push((id_of(&order), outcome));
    }
}

/// After a run of checkouts: every order in `expected` (and no other)
/// reaches the status its card decides, each has one payment, no order is
/// charged twice, and the stock of `product` (`stock` at the start) went
/// down by exactly what the confirmed orders bought.
async fn check_the_books(
    shop: &Shop,
    cat: &Catalogue<'_>,
    product: Uuid,
    stock: i64,
    expected: &HashMap<Uuid, &str>,
) {
    let total = expected.len();
    let admin = cat.admin.clone();
    let orders = eventually(300, &format!("all {total} orders to settle"), || async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let all = all_orders(shop, &admin).await;
        let done = all.len() == total
            && all
                .iter()
                .all(|o| matches!(o["status"].as_str(), Some("confirmed" | "cancelled")));
        done.then_some(all)
    })
    .await;
    let mut confirmed = 0;
    let mut sold = 0;
    for o in &orders {
        let id = id_of(o);
        let want = expected
            .get(&id)
            .unwrap_or_else(|| panic!("unknown order {o}"));
        assert_eq!(o["status"], *want, "{o:#}");
        if *want == "confirmed" {
            confirmed += 1;
            sold += o["lines"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["quantity"].as_i64().unwrap())
                .sum::<i64>();
        }
    }
    assert_eq!(confirmed, total - total / 10);

    // Behind the API: one payment per order, each succeeded one charged once.
    let payments = shop.services.as_ref().unwrap().payments.db.clone();
    let rows = sqlx::query("SELECT order_id, status, provider_payment_id FROM payments")
        .fetch_all(payments.pool())
        .await
        .unwrap();
    let mut per_order: HashMap<Uuid, String> = HashMap::new();
    let mut provider_ids = HashSet::new();
    for r in &rows {
        let order: String = r.try_get("order_id").unwrap();
        let status: String = r.try_get("status").unwrap();
        if let Some(pi) = r
            .try_get::<Option<String>, _>("provider_payment_id")
            .unwrap()
        {
            assert!(provider_ids.insert(pi), "one provider charge per payment");
        }
        assert!(
            per_order.insert(order.parse().unwrap(), status).is_none(),
            "two payments for order {order}"
        );
    }
    assert_eq!(per_order.len(), total, "a payment for every order");
    for (id, want) in expected {
        let paid = if *want == "confirmed" {
            "succeeded"
        } else {
            "failed"
        };
        assert_eq!(per_order[id], paid, "the payment of {id}");
    }
    let succeeded =
        sqlx::query("SELECT envelope FROM outbox_events WHERE routing_key = 'payment.succeeded'")
            .fetch_all(payments.pool())
            .await
            .unwrap();
    let mut charged = HashSet::new();
    for r in &succeeded {
        let e: Envelope =
            serde_json::from_str(&r.try_get::<String, _>("envelope").unwrap()).unwrap();
        let order = e.payload["order_id"].as_str().unwrap().to_string();
        assert!(
            charged.insert(order.clone()),
            "order {order} succeeded twice"
        );
    }
    assert_eq!(charged.len(), confirmed);
    cat.wait_for_stock(product, stock - sold, "the stock to match the sales")
        .await;

    // Every customer is told how their order ended, once.
    let notifications = shop.services.as_ref().unwrap().notifications.db.clone();
    let told = eventually(SETTLE, "a notification for every settled order", || async {
        let rows = sqlx::query(
            "SELECT order_id, kind FROM notifications \
             WHERE kind IN ('order_confirmed', 'order_cancelled')",
        )
        .fetch_all(notifications.pool())
        .await
        .unwrap();
        (rows.len() >= total).then_some(rows)
    })
    .await;
    let mut kinds: HashMap<Uuid, String> = HashMap::new();
    for r in &told {
        let order: String = r.try_get("order_id").unwrap();
        let kind: String = r.try_get("kind").unwrap();
        assert!(
            kinds.insert(order.parse().unwrap(), kind).is_none(),
            "order {order} was notified twice"
        );
    }
    for (id, want) in expected {
        assert_eq!(kinds.get(id).map(|k| &k[6..]), Some(*want), "{id}");
    }

    // And nothing on the way was given up.
    let topology = shop.bus.topology().clone();
    for (consumer, event) in [
        ("catalog", "order.placed"),
        ("catalog", "order.cancelled"),
        ("cart", "order.placed"),
        ("orders", "stock.reserved"),
        ("orders", "stock.rejected"),
        ("orders", "payment.succeeded"),
        ("orders", "payment.failed"),
        ("payments", "order.placed"),
        ("payments", "stock.reserved"),
        ("payments", "order.cancelled"),
        ("notifications", "order.confirmed"),
        ("notifications", "order.cancelled"),
    ] {
        let queue = topology.queue(consumer, event);
        let dead = shop.bus.dead_letters(&queue).await.expect("peek a DLQ");
        assert!(dead.is_empty(), "{queue} gave up {} events", dead.len());
    }
}

/// 200 checkouts, ten customers each placing one order at a time. On the
/// real set RabbitMQ is stopped after the first 60 orders and started again
/// a few seconds later; the embedded set has no broker to stop, so there
/// the same load runs through the in-process bus and the same accounting
/// is checked. Either way every order ends confirmed or cancelled as its
/// card decides, none is lost, and none is charged twice.
// It stops the broker every other real-backend test shares, so it never runs
// beside them: `cargo xtask test` runs it on its own (`--ignored`) after the
// rest of each set, embedded and real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stops the shared broker; cargo xtask test runs it alone after the rest"]
async fn two_hundred_checkouts_survive_a_broker_restart() {
    const ORDERS: usize = 200;
    const BUYERS: usize = 10;
    const STOCK: i64 = 1000;
    let b = Backends::new();
    let _exclusive = match b.set {
        BackendSet::Real { .. } => Some(BROKER.write().await),
        BackendSet::Embedded => None,
    };
    let shop = Shop::start(&b, ShopOptions::full()).await;
    let cat = Catalogue::open(&shop).await;
    let towel = cat.product("Tea towel", 1000, STOCK).await;
    let buyers = customers(&shop, "bulk", BUYERS).await;
    // Ten more, whose orders are placed while the broker is down.
    let latecomers = customers(&shop, "late", BUYERS).await;
    for c in &latecomers {
        add_to_cart(&shop, &c.token, towel, 1).await;
    }

    let next = AtomicUsize::new(0);
    let placed = AtomicUsize::new(0);
    let runs = join_all(
        buyers
            .iter()
            .map(|c| buy_in_turn(&shop, c, towel, ORDERS - BUYERS, &next, &placed)),
    );
    let outage = async {
        eventually(240, "60 orders placed", || async {
            (placed.load(Ordering::SeqCst) >= 60).then_some(())
        })
        .await;
        let down = match b.set {
            BackendSet::Real { .. } => Some(BrokerOutage::begin().await),
            BackendSet::Embedded => None,
        };
        let shop = &shop;
        let late = join_all(latecomers.iter().enumerate().map(|(n, c)| async move {
            let (card, outcome) = card_for(ORDERS - BUYERS + n);
            (id_of(&checkout(shop, &c.token, card).await), outcome)
        }))
        .await;
        if let Some(down) = down {
            // Nothing can move them while RabbitMQ is down: their
            // order.placed waits in the orders outbox.
            tokio::time::sleep(Duration::from_secs(3)).await;
            for ((id, _), c) in late.iter().zip(&latecomers) {
                assert_eq!(order(shop, &c.token, *id).await["status"], "pending");
            }
            down.end().await;
        }
        late
    };
    let everything = async { tokio::join!(runs, outage) };
    let (runs, late) = tokio::time::timeout(Duration::from_secs(300), everything)
        .await
        .expect("200 checkouts within five minutes");
    let expected: HashMap<Uuid, &str> = runs.into_iter().flatten().chain(late).collect();
    assert_eq!(expected.len(), ORDERS, "200 different orders were placed");

    check_the_books(&shop, &cat, towel, STOCK, &expected).await;
}

// --------------------------------------------------------- the database

/// How to crash and restart the PostgreSQL every service uses: shell
/// commands `cargo xtask test` gives for the cluster it runs.
struct DatabaseCrash {
    start: String,
    down: bool,
}

impl DatabaseCrash {
    fn run(what: &str, command: &str) -> bool {
        std::process::Command::new("sh")
            .args(["-c", command])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("{what}: cannot run `{command}`: {e}"))
            .success()
    }

    /// Kill PostgreSQL at once: no checkpoint, no goodbye to its clients.
    async fn begin() -> DatabaseCrash {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!(
                    "{name} is not set: this test crashes and restarts PostgreSQL, and knows how \
                     only for the cluster `cargo xtask test` starts (run it that way)"
                )
            })
        };
        let (crash, start) = (
            var("EMPORIUM_TEST_POSTGRES_CRASH"),
            var("EMPORIUM_TEST_POSTGRES_START"),
        );
        let outage = DatabaseCrash { start, down: true };
        let crashed = tokio::task::spawn_blocking(move || Self::run("crash PostgreSQL", &crash))
            .await
            .unwrap();
        assert!(crashed, "PostgreSQL did not stop");
        outage
    }

    async fn end(mut self) {
        let start = self.start.clone();
        let started = tokio::task::spawn_blocking(move || Self::run("start PostgreSQL", &start))
            .await
            .unwrap();
        self.down = false;
        assert!(started, "PostgreSQL did not start again");
    }
}

impl Drop for DatabaseCrash {
    fn drop(&mut self) {
        if self.down {
            Self::run("start PostgreSQL", &self.start);
        }
    }
}

/// Send a request again while the shop cannot answer it (a 5xx: something
/// behind the gateway is down), for three minutes at most. Anything else but
/// success fails the test at once.
async fn despite_outage<F, Fut>(what: &str, mut send: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let reply = send().await;
        match reply.status {
            200..=299 => return reply.body,
            500..=599 if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            status => panic!("{what}: {status} {}", reply.body),
        }
    }
}

/// [`buy_in_turn`] for a shop whose database may be down: each step is
/// sent again until it succeeds, and an order is placed again with the
/// same Idempotency-Key until the shop answers it.
async fn buy_despite_outages(
    shop: &Shop,
    c: &Customer,
    product: Uuid,
    orders: usize,
    next: &AtomicUsize,
    placed: &AtomicUsize,
) -> Vec<(Uuid, &'static str)> {
    let mut mine = Vec::new();
    loop {
        let i = next.fetch_add(1, Ordering::SeqCst);
        if i >= orders {
            return mine;
        }
        eventually(240, "the cart to be emptied", || async {
            let cart =
                despite_outage("read the cart", || get(shop, "/api/v1/cart", &c.token)).await;
            cart["items"].as_array().unwrap().is_empty().then_some(())
        })
        .await;
        let line = json!({"product_id": product, "quantity": 1});
        despite_outage("add to the cart", || {
            post(shop, "/api/v1/cart/items", &c.token, line.clone())
        })
        .await;
        let (card, outcome) = card_for(i);
        let key = format!("crash-{i}");
        let body = order_request(card);
        let order = despite_outage("place an order", || {
            place_order(shop, &c.token, Some(&key), &body)
        })
        .await;
        placed.fetch_add(1, Ordering::SeqCst);
        mine.push((id_of(&order), outcome));
    }
}

/// 100 checkouts, ten customers each placing one order at a time. On the
/// real set PostgreSQL, which every service's database lives in, is killed
/// (`pg_ctl -m immediate`: no checkpoint, every connection cut mid-way)
/// after the first 30 orders and started again a minute later, while
/// customers keep shopping; the embedded set has no server to crash, so
/// there the same load runs and the same books are checked. Either way
/// every order ends as its card decides, none is lost, and none is charged
/// twice.
// It crashes the database every other real-backend test shares, so it never
// runs beside them: `cargo xtask test` runs it on its own (`--ignored`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "crashes the shared PostgreSQL; cargo xtask test runs it alone after the rest"]
async fn a_hundred_checkouts_survive_a_database_crash() {
    const ORDERS: usize = 100;
    const BUYERS: usize = 10;
    const STOCK: i64 = 1000;
    const OUTAGE: Duration = Duration::from_secs(60);
    let b = Backends::new();
    let _exclusive = match b.set {
        BackendSet::Real { .. } => Some(BROKER.write().await),
        BackendSet::Embedded => None,
    };
    let shop = Shop::start(&b, ShopOptions::full()).await;
    let cat = Catalogue::open(&shop).await;
    let towel = cat.product("Tea towel", 1000, STOCK).await;
    let buyers = customers(&shop, "crash", BUYERS).await;

    let next = AtomicUsize::new(0);
    let placed = AtomicUsize::new(0);
    let runs = join_all(
        buyers
            .iter()
            .map(|c| buy_despite_outages(&shop, c, towel, ORDERS, &next, &placed)),
    );
    let crash = async {
        eventually(240, "30 orders placed", || async {
            (placed.load(Ordering::SeqCst) >= 30).then_some(())
        })
        .await;
        if matches!(b.set, BackendSet::Real { .. }) {
            let down = DatabaseCrash::begin().await;
            // Customers keep coming while it is down. Longer than a pool
            // waits for a connection (10 s) times a consumer's attempts:
            // handlers must wait the outage out, not give their events up.
            tokio::time::sleep(OUTAGE).await;
            down.end().await;
        }
    };
    let everything = async { tokio::join!(runs, crash) };
    let (runs, ()) = tokio::time::timeout(Duration::from_secs(300), everything)
        .await
        .expect("100 checkouts within five minutes");
    let expected: HashMap<Uuid, &str> = runs.into_iter().flatten().collect();
    assert_eq!(expected.len(), ORDERS, "100 different orders were placed");
    check_the_books(&shop, &cat, towel, STOCK, &expected).await;
}

/// Wait until `queue`'s dead-letter queue holds exactly one message, and
/// return the id of its event.
async fn sole_dead_letter(bus: &EventBus, queue: &str) -> Uuid {
    let letters = eventually(SETTLE, &format!("one message in {queue}.dlq"), || async {
        let letters = bus.dead_letters(queue).await.expect("peek the DLQ");
        (letters.len() == 1).then_some(letters)
    })
    .await;
    assert!(!letters[0].reason.is_empty());
    letters[0]
        .envelope
        .as_ref()
        .map(|e| e.id)
        .expect("the dead letter is an envelope")
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_and_replayed() {
    let b = Backends::new();
    let _broker = broker_shared(&b).await;
    let shop = Shop::start(&b, ShopOptions::full()).await;
    let topology = shop.bus.topology().clone();
    let catalog_queue = topology.queue("catalog", "order.placed");
    let cart_queue = topology.queue("cart", "order.placed");

    let poison = Envelope::new(
        "checkout-test",
        "order.placed",
        json!({"order_id": "not an order", "lines": "nor lines"}),
    )
    .unwrap();
    shop.bus.publish(&poison).await.expect("publish the poison");

    assert_eq!(sole_dead_letter(&shop.bus, &catalog_queue).await, poison.id);
    assert_eq!(sole_dead_letter(&shop.bus, &cart_queue).await, poison.id);

    // Replayed to the catalog's queue only; still poison, so back it comes.
    let replayed = shop
        .bus
        .replay_dead_letters(&catalog_queue)
        .await
        .expect("replay");
    assert_eq!(replayed, 1);
    assert_eq!(sole_dead_letter(&shop.bus, &catalog_queue).await, poison.id);
    assert_eq!(sole_dead_letter(&shop.bus, &cart_queue).await, poison.id);

    // The queues still flow: a real order goes through.
    let cat = Catalogue::open(&shop).await;
    let cup = cat.product("Cup", 700, 3).await;
    let kim = customer(&shop, "kim").await;
    add_to_cart(&shop, &kim.token, cup, 1).await;
    let id = id_of(&checkout(&shop, &kim.token, "pm_card_visa").await);
    wait_for_status(&shop, &kim.token, id, "confirmed").await;
    cat.wait_for_stock(cup, 2, "the cup sold").await;
}
