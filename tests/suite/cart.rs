//! The cart service against the real catalogue and identity: guest and
//! customer carts, merging, checks against the catalogue, failures of the
//! catalogue, expiry, and concurrent changes. The cart store is Redis on the
//! real backend set and a SQLite file on the embedded one; one test also
//! runs the SQL store on the set's database (PostgreSQL when real).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::response::IntoResponse;
use emporium_tests::Backends;
use emporium_tests::shop::{Shop, ShopOptions, listen};
use kit::auth::TokenVerifier;
use kit::config::CacheUrl;
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use sqlx::Row;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const ADMIN_EMAIL: &str = "admin@example.com";
const PASSWORD: &str = "correct horse battery";
const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;

fn now_ms() -> i64 {
    kit::clock::now_millis()
}

/// The real catalogue service, on its own port and database.
struct CatalogService {
    url: url::Url,
    admin: String,
    category_id: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    skus: std::sync::atomic::AtomicUsize,
}

impl CatalogService {
    async fn start(b: &Backends, shop: &Shop, verifier: Arc<TokenVerifier>, admin: &str) -> Self {
        let service = catalog::Catalog::build(
            catalog::Settings::default(),
            verifier,
            catalog::Backends {
                db: b.database("catalog").await,
                cache: b.cache().await,
                bus: shop.bus.clone(),
            },
        )
        .await
        .expect("catalog starts");
        let shutdown = CancellationToken::new();
        service
            .spawn_workers(shutdown.clone())
            .await
            .expect("catalog workers");
        let (listener, url) = listen().await;
        let server = tokio::spawn(kit::http::serve(listener, service.router, shutdown.clone()));
        let http = reqwest::Client::new();
        let res = http
            .post(url.join("/api/v1/categories").unwrap())
            .bearer_auth(admin)
            .json(&json!({"name": "Kitchen", "slug": "kitchen"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "create a category");
        let category: Value = res.json().await.unwrap();
        Self {
            url,
            admin: admin.to_string(),
            category_id: category["id"].as_str().unwrap().to_string(),
            http,
            shutdown,
            server: Some(server),
            skus: Default::default(),
        }
    }

    /// Create a product through the admin API; returns its id.
    async fn product(&self, name: &str, amount: i64, stock: i64) -> Uuid {
        self.product_with(name, amount, stock, true).await
    }

    async fn product_with(&self, name: &str, amount: i64, stock: i64, is_active: bool) -> Uuid {
        let n = self.skus.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let res = self
            .http
            .post(self.url.join("/api/v1/products").unwrap())
            .bearer_auth(&self.admin)
            .json(&json!({
                "sku": format!("CART-{n}"),
                "name": name,
                "description": "",
                "price": {"amount": amount, "currency": "USD"},
                "stock": stock,
                "category_id": self.category_id,
                "images": [],
                "is_active": is_active,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "create product {name}");
        let body: Value = res.json().await.unwrap();
        body["id"].as_str().unwrap().parse().unwrap()
    }

    /// Replace some of a product's fields through the admin API.
    async fn update(&self, id: Uuid, changes: Value) {
        let url = self.url.join(&format!("/api/v1/products/{id}")).unwrap();
        let current: Value = self
            .http
            .get(url.clone())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut body = json!({});
        for field in [
            "sku",
            "name",
            "description",
            "price",
            "stock",
            "category_id",
            "images",
            "is_active",
        ] {
            body[field] = changes
                .get(field)
                .cloned()
                .unwrap_or_else(|| current[field].clone());
        }
        let res = self
            .http
            .put(url)
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "update product {id}");
    }

    /// Stop serving and wait until the port refuses connections.
    async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for CatalogService {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Which store a cart service keeps its carts in.
#[derive(Clone)]
enum Store {
    /// Redis on the real set, a SQLite file on the embedded one.
    ForTheSet,
    /// The SQL store on the set's database (PostgreSQL or SQLite).
    Sql,
}

/// A running cart service.
struct CartService {
    url: url::Url,
    state: cart::AppState,
    http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for CartService {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// One answer of the cart service.
#[derive(Debug)]
struct Reply {
    status: u16,
    cart_id: Option<String>,
    body: Value,
}

impl Reply {
    /// The cart's lines as (product id, quantity).
    fn lines(&self) -> Vec<(Uuid, i64)> {
        self.body["items"]
            .as_array()
            .unwrap_or_else(|| panic!("a cart: {:?}", self.body))
            .iter()
            .map(|i| {
                (
                    i["product_id"].as_str().unwrap().parse().unwrap(),
                    i["quantity"].as_i64().unwrap(),
                )
            })
            .collect()
    }

    /// The lines in product-id order, for carts whose lines came from two
    /// carts (lines keep the time they were first added, wherever).
    fn sorted_lines(&self) -> Vec<(Uuid, i64)> {
        let mut lines = self.lines();
        lines.sort();
        lines
    }

    fn item(&self, product: Uuid) -> &Value {
        self.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["product_id"] == product.to_string())
            .unwrap_or_else(|| panic!("{product} is in the cart: {:?}", self.body))
    }

    fn ok(self) -> Self {
        assert_eq!(self.status, 200, "{:?}", self.body);
        self
    }

    /// Assert a problem of `status` and `kind` (the slug of its `type`).
    fn problem(&self, status: u16, kind: &str) {
        assert_eq!(self.status, status, "{:?}", self.body);
        assert_eq!(
            self.body["type"],
            format!("https://emporium.dev/problems/{kind}"),
            "{:?}",
            self.body
        );
    }
}

async fn send(request: RequestBuilder) -> Reply {
    let res = request.send().await.expect("the cart answers");
    let status = res.status().as_u16();
    let cart_id = res
        .headers()
        .get("x-cart-id")
        .map(|v| v.to_str().unwrap().to_string());
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = res.json().await.unwrap_or(Value::Null);
    if status >= 400 {
        assert_eq!(
            content_type, "application/problem+json",
            "an error is a problem document: {status} {body}"
        );
    } else {
        assert_eq!(content_type, "application/json");
    }
    Reply {
        status,
        cart_id,
        body,
    }
}

/// Who makes a request.
#[derive(Clone, Copy)]
enum As<'a> {
    Customer(&'a str),
    Guest(Option<&'a str>),
}

impl CartService {
    async fn start(
        b: &Backends,
        verifier: Arc<TokenVerifier>,
        catalog: &url::Url,
        settings: cart::Settings,
        store: cart::StoreUrl,
    ) -> Self {
        let backend = cart::StoreBackend::connect(&store)
            .await
            .expect("connect to the cart store");
        let service = cart::Cart::build(
            cart::Settings {
                key_prefix: b.tag.clone(),
                ..settings
            },
            verifier,
            backend,
            catalog.clone(),
        )
        .await
        .expect("cart starts");
        let shutdown = CancellationToken::new();
        service.spawn_workers(shutdown.clone());
        let (listener, url) = listen().await;
        let state = service.state.clone();
        tokio::spawn(kit::http::serve(listener, service.router, shutdown.clone()));
        Self {
            url,
            state,
            http: reqwest::Client::new(),
            shutdown,
        }
    }

    fn request(&self, method: Method, path: &str, who: As) -> RequestBuilder {
        let r = self.http.request(method, self.url.join(path).unwrap());
        match who {
            As::Customer(token) => r.bearer_auth(token),
            As::Guest(Some(id)) => r.header("x-cart-id", id),
            As::Guest(None) => r,
        }
    }

    async fn get(&self, who: As<'_>) -> Reply {
        send(self.request(Method::GET, "/api/v1/cart", who)).await
    }

    async fn add(&self, who: As<'_>, product: Uuid, quantity: i64) -> Reply {
        send(
            self.request(Method::POST, "/api/v1/cart/items", who)
                .json(&json!({"product_id": product, "quantity": quantity})),
        )
        .await
    }

    async fn set(&self, who: As<'_>, product: Uuid, quantity: i64) -> Reply {
        send(
            self.request(Method::PUT, &format!("/api/v1/cart/items/{product}"), who)
                .json(&json!({"quantity": quantity})),
        )
        .await
    }

    async fn remove(&self, who: As<'_>, product: Uuid) -> Reply {
        send(self.request(
            Method::DELETE,
            &format!("/api/v1/cart/items/{product}"),
            who,
        ))
        .await
    }

    async fn clear(&self, who: As<'_>) -> Reply {
        send(self.request(Method::DELETE, "/api/v1/cart", who)).await
    }

    async fn merge(&self, token: Option<&str>, guest_cart: Option<&str>) -> Reply {
        let mut r = self.http.post(self.url.join("/api/v1/cart/merge").unwrap());
        if let Some(token) = token {
            r = r.bearer_auth(token);
        }
        if let Some(id) = guest_cart {
            r = r.header("x-cart-id", id);
        }
        send(r).await
    }

    /// When the cart with this id expires (ms since the epoch), read from
    /// the store itself: the Redis key's expiry, or the `expires_at` column.
    async fn stored_expiry(&self, b: &Backends, owner: cart::domain::CartOwner) -> Option<i64> {
        match &self.state.store {
            cart::store::CartStore::Redis(redis) => {
                let CacheUrl::Redis(url) = b.cache_url() else {
                    panic!("a Redis store on the real set")
                };
                let mut conn = redis::Client::open(url.as_str())
                    .unwrap()
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap();
                let key = redis.key(owner);
                let ttl_secs: i64 = redis::cmd("TTL")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                let at: i64 = redis::cmd("PEXPIRETIME")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                match at {
                    -2 => None,
                    -1 => panic!("{key} has no expiry"),
                    at => {
                        assert!(ttl_secs > 0, "TTL of {key}: {ttl_secs}");
                        Some(at)
                    }
                }
            }
            cart::store::CartStore::Sql(sql) => {
                sqlx::query("SELECT expires_at FROM carts WHERE cart_key = $1")
                    .bind(owner.storage_key())
                    .fetch_optional(sql.database().pool())
                    .await
                    .unwrap()
                    .map(|row| row.try_get::<i64, _>("expires_at").unwrap())
            }
        }
    }
}

/// Identity (with an admin and two customers), the real catalogue, and a
/// cart service in front of it.
struct World {
    cart: CartService,
    catalog: CatalogService,
    _shop: Shop,
    verifier: Arc<TokenVerifier>,
    store: cart::StoreUrl,
    ada: String,
    bob: String,
    b: Backends,
}

async fn store_url(b: &Backends, store: Store) -> cart::StoreUrl {
    match (store, b.cache_url()) {
        (Store::ForTheSet, CacheUrl::Redis(url)) => cart::StoreUrl::Redis(url),
        _ => cart::StoreUrl::Sql(b.database_url("cart").await),
    }
}

async fn world() -> World {
    world_with(cart::Settings::default(), Store::ForTheSet).await
}

async fn world_with(settings: cart::Settings, store: Store) -> World {
    let b = Backends::new();
    let shop = Shop::start(
        &b,
        ShopOptions {
            identity: identity::Settings {
                admin: Some((ADMIN_EMAIL.into(), PASSWORD.into())),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await;
    let (admin, _) = shop.login(ADMIN_EMAIL, PASSWORD).await;
    shop.register("ada@example.com", PASSWORD).await;
    shop.register("bob@example.com", PASSWORD).await;
    let (ada, _) = shop.login("ada@example.com", PASSWORD).await;
    let (bob, _) = shop.login("bob@example.com", PASSWORD).await;
    let verifier = Arc::new(TokenVerifier::from_jwks_url(
        shop.identity().url.join("/.well-known/jwks.json").unwrap(),
        "emporium-identity",
        "emporium",
    ));
    let catalog = CatalogService::start(&b, &shop, verifier.clone(), &admin).await;
    let store = store_url(&b, store).await;
    let cart =
        CartService::start(&b, verifier.clone(), &catalog.url, settings, store.clone()).await;
    World {
        cart,
        catalog,
        _shop: shop,
        verifier,
        store,
        ada,
        bob,
        b,
    }
}

impl World {
    /// Another cart service on the same store, with other settings or
    /// another catalogue address.
    async fn another_cart(&self, settings: cart::Settings, catalog: &url::Url) -> CartService {
        CartService::start(
            &self.b,
            self.verifier.clone(),
            catalog,
            settings,
            self.store.clone(),
        )
        .await
    }
}

fn sorted(mut lines: Vec<(Uuid, i64)>) -> Vec<(Uuid, i64)> {
    lines.sort();
    lines
}

fn user_id(token: &str) -> Uuid {
    use base64::Engine;
    let claims = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    claims["sub"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_customer_adds_updates_removes_and_clears() {
    let w = world().await;
    let ada = As::Customer(&w.ada);
    let mug = w.catalog.product("Mug", 1250, 10).await;
    let tea = w.catalog.product("Tea", 499, 50).await;

    let empty = w.cart.get(ada).await.ok();
    assert_eq!(empty.body["items"], json!([]));
    assert_eq!(
        empty.body["subtotal"],
        json!({"amount": 0, "currency": "USD"})
    );
    assert_eq!(empty.body["item_count"], 0);
    assert_eq!(empty.body["id"], user_id(&w.ada).to_string());
    assert_eq!(empty.cart_id, None, "a customer's cart needs no X-Cart-Id");

    let r = w.cart.add(ada, mug, 2).await.ok();
    assert_eq!(
        r.body["items"],
        json!([{
            "product_id": mug,
            "name": "Mug",
            "unit_price": {"amount": 1250, "currency": "USD"},
            "quantity": 2,
            "line_total": {"amount": 2500, "currency": "USD"},
            "price_changed": false,
            "out_of_stock": false,
        }])
    );
    assert_eq!(r.body["revalidated"], true);

    let r = w.cart.add(ada, mug, 1).await.ok();
    assert_eq!(r.lines(), vec![(mug, 3)], "adding again adds up");
    let r = w.cart.add(ada, tea, 4).await.ok();
    assert_eq!(
        r.lines(),
        vec![(mug, 3), (tea, 4)],
        "lines in the order added"
    );
    assert_eq!(
        r.body["subtotal"],
        json!({"amount": 3 * 1250 + 4 * 499, "currency": "USD"})
    );
    assert_eq!(r.body["item_count"], 7);

    let r = w.cart.set(ada, mug, 5).await.ok();
    assert_eq!(r.lines(), vec![(mug, 5), (tea, 4)]);
    assert_eq!(r.item(mug)["line_total"]["amount"], 5 * 1250);
    let r = w.cart.set(ada, mug, 1).await.ok();
    assert_eq!(r.lines(), vec![(mug, 1), (tea, 4)]);
    w.cart
        .set(ada, mug, 11)
        .await
        .problem(409, "insufficient-stock");
    let other = w.catalog.product("Spoon", 100, 10).await;
    w.cart.set(ada, other, 1).await.problem(404, "not-in-cart");
    assert_eq!(w.cart.get(ada).await.lines(), vec![(mug, 1), (tea, 4)]);

    let r = w.cart.remove(ada, tea).await.ok();
    assert_eq!(r.lines(), vec![(mug, 1)]);
    let r = w.cart.remove(ada, tea).await.ok();
    assert_eq!(r.lines(), vec![(mug, 1)], "removing again changes nothing");

    let r = w.cart.clear(ada).await.ok();
    assert_eq!(r.lines(), vec![]);
    assert_eq!(r.body["subtotal"], json!({"amount": 0, "currency": "USD"}));
    assert_eq!(w.cart.get(ada).await.lines(), vec![]);
}

#[tokio::test]
async fn a_guest_cart_travels_in_x_cart_id_and_merges_into_the_customers() {
    let w = world().await;
    let mug = w.catalog.product("Mug", 1250, 500).await;
    let tea = w.catalog.product("Tea", 499, 500).await;

    let first = w.cart.add(As::Guest(None), mug, 60).await.ok();
    let guest = first.cart_id.clone().expect("a new guest cart id");
    assert_eq!(first.body["id"], guest.as_str());
    assert_eq!(Uuid::parse_str(&guest).unwrap().get_version_num(), 7);
    let r = w.cart.add(As::Guest(Some(&guest)), tea, 1).await.ok();
    assert_eq!(r.cart_id.as_deref(), Some(guest.as_str()));
    let r = w.cart.get(As::Guest(Some(&guest))).await.ok();
    assert_eq!(r.lines(), vec![(mug, 60), (tea, 1)]);
    assert_eq!(r.cart_id.as_deref(), Some(guest.as_str()));

    w.cart
        .get(As::Guest(Some("not-a-cart")))
        .await
        .problem(400, "invalid-cart-id");
    w.cart
        .add(As::Guest(Some("12345")), mug, 1)
        .await
        .problem(400, "invalid-cart-id");
    let unknown = Uuid::now_v7().to_string();
    let r = w.cart.get(As::Guest(Some(&unknown))).await.ok();
    assert_eq!(r.lines(), vec![], "an unknown guest cart is empty");
    assert_eq!(r.body["id"], unknown.as_str());
    let r = w.cart.get(As::Guest(None)).await.ok();
    assert!(r.cart_id.is_some(), "a guest without a cart is given an id");

    w.cart.add(As::Customer(&w.ada), mug, 50).await.ok();
    w.cart
        .merge(None, Some(&guest))
        .await
        .problem(401, "unauthorized");
    w.cart
        .merge(Some(&w.ada), None)
        .await
        .problem(400, "invalid-cart-id");
    w.cart
        .merge(Some(&w.ada), Some("nope"))
        .await
        .problem(400, "invalid-cart-id");

    let merged = w.cart.merge(Some(&w.ada), Some(&guest)).await.ok();
    assert_eq!(
        merged.sorted_lines(),
        sorted(vec![(mug, 99), (tea, 1)]),
        "quantities add up, capped at 99"
    );
    assert_eq!(merged.body["id"], user_id(&w.ada).to_string());
    assert_eq!(merged.cart_id, None);
    assert_eq!(
        merged.item(mug)["unit_price"]["amount"],
        1250,
        "the customer's line keeps its price"
    );
    assert_eq!(
        w.cart.get(As::Customer(&w.ada)).await.sorted_lines(),
        sorted(vec![(mug, 99), (tea, 1)])
    );
    assert_eq!(
        w.cart.get(As::Guest(Some(&guest))).await.lines(),
        vec![],
        "the guest cart is gone"
    );
    let again = w.cart.merge(Some(&w.ada), Some(&guest)).await.ok();
    assert_eq!(
        again.sorted_lines(),
        sorted(vec![(mug, 99), (tea, 1)]),
        "merging again changes nothing"
    );
}

#[tokio::test]
async fn refused_additions_leave_the_cart_untouched() {
    let w = world().await;
    let ada = As::Customer(&w.ada);
    let mug = w.catalog.product("Mug", 1000, 5).await;
    let bulk = w.catalog.product("Bulk rice", 200, 500).await;
    let withdrawn = w.catalog.product_with("Old lamp", 3000, 10, false).await;
    w.cart.add(ada, mug, 3).await.ok();
    w.cart.add(ada, bulk, 98).await.ok();
    let before = w.cart.get(ada).await.ok();
    let expiry = w
        .cart
        .stored_expiry(&w.b, cart::domain::CartOwner::Customer(user_id(&w.ada)))
        .await;

    w.cart
        .add(ada, Uuid::now_v7(), 1)
        .await
        .problem(404, "product-not-found");
    w.cart
        .add(ada, withdrawn, 1)
        .await
        .problem(404, "product-not-found");
    w.cart
        .add(ada, mug, 3)
        .await
        .problem(409, "insufficient-stock");
    w.cart.add(ada, bulk, 2).await.problem(422, "validation");
    for quantity in [0, 100, -1] {
        let r = w.cart.add(ada, mug, quantity).await;
        r.problem(422, "validation");
        assert_eq!(r.body["errors"][0]["field"], "quantity");
        w.cart
            .set(ada, mug, quantity)
            .await
            .problem(422, "validation");
    }

    let post = |body: &'static str, content_type: &'static str| {
        w.cart
            .request(Method::POST, "/api/v1/cart/items", ada)
            .header("content-type", content_type)
            .body(body)
    };
    send(post("{\"product_id\": ", "application/json"))
        .await
        .problem(400, "malformed-body");
    let r = send(post(
        r#"{"product_id": "0192f0a0-0000-7000-8000-000000000000", "quantity": 1, "price": 1}"#,
        "application/json",
    ))
    .await;
    r.problem(422, "validation");
    assert!(
        r.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("price")
    );
    let r = send(post(
        r#"{"product_id": "mug", "quantity": 1}"#,
        "application/json",
    ))
    .await;
    r.problem(422, "validation");
    assert_eq!(r.body["errors"][0]["field"], "product_id");
    send(post(
        r#"{"product_id": "0192f0a0-0000-7000-8000-000000000000"}"#,
        "application/json",
    ))
    .await
    .problem(422, "validation");
    send(post(
        r#"{"product_id": "0192f0a0-0000-7000-8000-000000000000", "quantity": 1.5}"#,
        "application/json",
    ))
    .await
    .problem(422, "validation");
    send(post("quantity=1", "text/plain"))
        .await
        .problem(415, "unsupported-media-type");

    let after = w.cart.get(ada).await.ok();
    assert_eq!(after.body, before.body);
    assert_eq!(
        w.cart
            .stored_expiry(&w.b, cart::domain::CartOwner::Customer(user_id(&w.ada)))
            .await,
        expiry,
        "a refused change does not even touch the expiry"
    );
}

#[tokio::test]
async fn an_unreachable_or_slow_catalogue_is_503_and_the_cart_stays_as_it_was() {
    let mut w = world().await;
    let ada = As::Customer(&w.ada);
    let mug = w.catalog.product("Mug", 1250, 10).await;
    let tea = w.catalog.product("Tea", 499, 10).await;
    w.cart.add(ada, mug, 2).await.ok();
    let guest = w
        .cart
        .add(As::Guest(None), mug, 1)
        .await
        .ok()
        .cart_id
        .unwrap();

    // A catalogue that accepts connections but never answers.
    let (silent, silent_url) = listen().await;
    let slow = w
        .another_cart(
            cart::Settings {
                catalog_timeout: Duration::from_millis(300),
                ..Default::default()
            },
            &silent_url,
        )
        .await;
    slow.add(ada, tea, 1)
        .await
        .problem(503, "catalog-unavailable");
    slow.add(ada, mug, 1)
        .await
        .problem(503, "catalog-unavailable");
    let r = slow.get(ada).await.ok();
    assert_eq!(r.lines(), vec![(mug, 2)]);
    assert_eq!(r.body["revalidated"], false);
    drop(silent);

    // The catalogue stops: its port refuses connections.
    w.catalog.stop().await;
    w.cart
        .add(ada, tea, 1)
        .await
        .problem(503, "catalog-unavailable");
    w.cart
        .add(ada, mug, 1)
        .await
        .problem(503, "catalog-unavailable");
    w.cart
        .add(As::Guest(Some(&guest)), mug, 1)
        .await
        .problem(503, "catalog-unavailable");
    w.cart
        .set(ada, mug, 3)
        .await
        .problem(503, "catalog-unavailable");
    let r = w.cart.get(ada).await.ok();
    assert_eq!(r.lines(), vec![(mug, 2)], "the cart is unchanged");
    assert_eq!(r.body["revalidated"], false);
    assert_eq!(r.item(mug)["unit_price"]["amount"], 1250);
    assert_eq!(r.body["subtotal"]["amount"], 2500);
    assert_eq!(
        w.cart.get(As::Guest(Some(&guest))).await.ok().lines(),
        vec![(mug, 1)]
    );

    // Lowering a quantity or removing a line needs no catalogue.
    let r = w.cart.set(ada, mug, 1).await.ok();
    assert_eq!(r.lines(), vec![(mug, 1)]);
    assert_eq!(r.body["revalidated"], false);
}

#[tokio::test]
async fn get_flags_changed_prices_and_shortages_but_keeps_the_price_seen() {
    let w = world().await;
    let ada = As::Customer(&w.ada);
    let mug = w.catalog.product("Mug", 1250, 10).await;
    let tea = w.catalog.product("Tea", 499, 10).await;
    let lamp = w.catalog.product("Lamp", 3000, 5).await;
    w.cart.add(ada, mug, 2).await.ok();
    w.cart.add(ada, tea, 3).await.ok();
    w.cart.add(ada, lamp, 1).await.ok();

    w.catalog
        .update(
            mug,
            json!({"name": "Big mug", "price": {"amount": 1500, "currency": "USD"}}),
        )
        .await;
    w.catalog.update(tea, json!({"stock": 2})).await;
    w.catalog.update(lamp, json!({"is_active": false})).await;

    let r = w.cart.get(ada).await.ok();
    assert_eq!(r.body["revalidated"], true);
    let flags = |r: &Reply, p: Uuid| {
        (
            r.item(p)["price_changed"].as_bool().unwrap(),
            r.item(p)["out_of_stock"].as_bool().unwrap(),
        )
    };
    assert_eq!(flags(&r, mug), (true, false));
    assert_eq!(flags(&r, tea), (false, true));
    assert_eq!(flags(&r, lamp), (false, true));
    assert_eq!(
        r.item(mug)["unit_price"],
        json!({"amount": 1250, "currency": "USD"})
    );
    assert_eq!(r.item(mug)["name"], "Mug", "the name seen when added");
    assert_eq!(r.item(mug)["line_total"]["amount"], 2500);
    assert_eq!(
        r.body["subtotal"],
        json!({"amount": 2 * 1250 + 3 * 499 + 3000, "currency": "USD"})
    );
    assert_eq!(r.body["item_count"], 6);

    // Unchecked (`?check=false`, for callers that ask the catalogue
    // themselves): the lines as kept, nothing flagged, and it says so.
    let kept = send(w.cart.request(Method::GET, "/api/v1/cart?check=false", ada))
        .await
        .ok();
    assert_eq!(kept.body["revalidated"], false);
    for p in [mug, tea, lamp] {
        assert_eq!(flags(&kept, p), (false, false));
    }
    assert_eq!(kept.body["subtotal"], r.body["subtotal"]);
    send(w.cart.request(Method::GET, "/api/v1/cart?check=maybe", ada))
        .await
        .problem(422, "validation");

    // More of a line keeps the price it was first added at.
    let r = w.cart.add(ada, mug, 1).await.ok();
    assert_eq!(r.item(mug)["unit_price"]["amount"], 1250);
    assert_eq!(r.item(mug)["quantity"], 3);
    assert_eq!(flags(&r, mug), (true, false));

    // Lowering to what is in stock clears the shortage; raising is refused.
    let r = w.cart.set(ada, tea, 2).await.ok();
    assert_eq!(flags(&r, tea), (false, false));
    w.cart
        .set(ada, tea, 3)
        .await
        .problem(409, "insufficient-stock");
    w.cart
        .set(ada, lamp, 2)
        .await
        .problem(404, "product-not-found");
    w.cart
        .add(ada, lamp, 1)
        .await
        .problem(404, "product-not-found");
}

#[tokio::test]
async fn carts_live_a_week_after_their_last_change_and_then_read_empty() {
    let w = world().await;
    let mug = w.catalog.product("Mug", 1250, 10).await;
    assert_eq!(
        matches!(w.cart.state.store, cart::store::CartStore::Redis(_)),
        w.b.set.is_real(),
        "Redis on the real set, SQL embedded"
    );
    let ada = cart::domain::CartOwner::Customer(user_id(&w.ada));

    assert_eq!(w.cart.stored_expiry(&w.b, ada).await, None);
    let before = now_ms();
    w.cart.add(As::Customer(&w.ada), mug, 1).await.ok();
    let first = w.cart.stored_expiry(&w.b, ada).await.expect("an expiry");
    assert!(
        first >= before + WEEK_MS - 1000 && first <= now_ms() + WEEK_MS + 1000,
        "expires a week from now: {} ms ahead",
        first - before
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    w.cart.set(As::Customer(&w.ada), mug, 2).await.ok();
    let second = w.cart.stored_expiry(&w.b, ada).await.unwrap();
    assert!(second > first, "every change pushes the expiry back");

    // A cart service whose carts live one second.
    let brief = w
        .another_cart(
            cart::Settings {
                cart_ttl: Duration::from_secs(1),
                ..Default::default()
            },
            &w.catalog.url,
        )
        .await;
    let bob = As::Customer(&w.bob);
    brief.add(bob, mug, 2).await.ok();
    let guest = brief
        .add(As::Guest(None), mug, 1)
        .await
        .ok()
        .cart_id
        .unwrap();
    assert_eq!(brief.get(bob).await.lines(), vec![(mug, 2)]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(brief.get(bob).await.ok().lines(), vec![], "expired");
    assert_eq!(
        brief.get(As::Guest(Some(&guest))).await.ok().lines(),
        vec![],
        "expired"
    );
    let r = brief.add(bob, mug, 1).await.ok();
    assert_eq!(r.lines(), vec![(mug, 1)], "an expired cart starts afresh");

    if let cart::store::CartStore::Sql(_) = &brief.state.store {
        brief.state.store.purge_expired().await.unwrap();
        assert_eq!(
            brief
                .stored_expiry(&w.b, cart::domain::CartOwner::Guest(guest.parse().unwrap()))
                .await,
            None,
            "expired carts are purged"
        );
    }
}

#[tokio::test]
async fn customers_cannot_see_or_change_each_others_carts() {
    let w = world().await;
    let mug = w.catalog.product("Mug", 1250, 10).await;
    w.cart.add(As::Customer(&w.ada), mug, 2).await.ok();

    let bobs = w.cart.get(As::Customer(&w.bob)).await.ok();
    assert_eq!(bobs.lines(), vec![]);
    assert_ne!(bobs.body["id"], user_id(&w.ada).to_string());
    w.cart
        .set(As::Customer(&w.bob), mug, 1)
        .await
        .problem(404, "not-in-cart");
    w.cart.remove(As::Customer(&w.bob), mug).await.ok();
    w.cart.clear(As::Customer(&w.bob)).await.ok();

    let adas_id = user_id(&w.ada).to_string();
    assert_eq!(
        w.cart.get(As::Guest(Some(&adas_id))).await.ok().lines(),
        vec![],
        "a customer's cart is not a guest cart"
    );
    let r = w.cart.merge(Some(&w.bob), Some(&adas_id)).await.ok();
    assert_eq!(r.lines(), vec![], "nor can it be merged away");
    send(
        w.cart
            .request(Method::GET, "/api/v1/cart", As::Customer("not-a-token")),
    )
    .await
    .problem(401, "unauthorized");

    assert_eq!(
        w.cart.get(As::Customer(&w.ada)).await.lines(),
        vec![(mug, 2)]
    );
}

/// Twenty requests at once on one cart: none is lost, and the stock limit
/// holds across them.
async fn concurrent_additions(w: &World) {
    let ada = As::Customer(&w.ada);
    let mug = w.catalog.product("Mug", 1250, 500).await;
    let tea = w.catalog.product("Tea", 499, 10).await;
    let replies = futures::future::join_all((0..20).map(|_| w.cart.add(ada, mug, 1))).await;
    assert!(replies.iter().all(|r| r.status == 200), "{replies:?}");
    assert_eq!(w.cart.get(ada).await.lines(), vec![(mug, 20)]);

    let replies = futures::future::join_all((0..15).map(|_| w.cart.add(ada, tea, 1))).await;
    let added = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(added, 10, "as many as in stock");
    for r in replies.iter().filter(|r| r.status != 200) {
        r.problem(409, "insufficient-stock");
    }
    assert_eq!(w.cart.get(ada).await.lines(), vec![(mug, 20), (tea, 10)]);
}

async fn merging_and_capping(w: &World) {
    let mug = w.catalog.product("Mug", 1250, 500).await;
    let tea = w.catalog.product("Tea", 499, 500).await;
    let guest = w
        .cart
        .add(As::Guest(None), mug, 70)
        .await
        .ok()
        .cart_id
        .unwrap();
    w.cart.add(As::Guest(Some(&guest)), tea, 3).await.ok();
    w.cart.add(As::Customer(&w.bob), mug, 40).await.ok();
    w.cart
        .add(As::Customer(&w.bob), mug, 60)
        .await
        .problem(422, "validation");
    let r = w.cart.merge(Some(&w.bob), Some(&guest)).await.ok();
    assert_eq!(r.sorted_lines(), sorted(vec![(mug, 99), (tea, 3)]));
    assert_eq!(w.cart.get(As::Guest(Some(&guest))).await.lines(), vec![]);
}

#[tokio::test]
async fn concurrent_additions_are_never_lost() {
    let w = world().await;
    concurrent_additions(&w).await;
}

#[tokio::test]
async fn the_sql_store_keeps_the_same_rules() {
    let w = world_with(cart::Settings::default(), Store::Sql).await;
    assert!(matches!(w.cart.state.store, cart::store::CartStore::Sql(_)));
    concurrent_additions(&w).await;
    merging_and_capping(&w).await;
    let owner = cart::domain::CartOwner::Customer(user_id(&w.ada));
    let expiry = w.cart.stored_expiry(&w.b, owner).await.unwrap();
    assert!((expiry - now_ms() - WEEK_MS).abs() < 60_000);
}

/// Requests the spy saw: path and query, and headers.
type Seen = Arc<Mutex<Vec<(String, HashMap<String, String>)>>>;

/// A recording proxy in front of the catalogue.
async fn spy_on(catalog: &url::Url) -> (url::Url, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let upstream = catalog.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let record = record.clone();
        let upstream = upstream.clone();
        async move {
            let path = req
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default();
            let headers = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
                .collect();
            record.lock().unwrap().push((path.clone(), headers));
            let res = reqwest::get(upstream.join(&path).unwrap()).await.unwrap();
            let status = axum::http::StatusCode::from_u16(res.status().as_u16()).unwrap();
            (
                status,
                [("content-type", "application/json")],
                res.bytes().await.unwrap(),
            )
                .into_response()
        }
    });
    let (listener, url) = listen().await;
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test]
async fn one_batched_catalogue_call_carries_the_request_id_and_trace() {
    let w = world().await;
    let ada = As::Customer(&w.ada);
    let products = [
        w.catalog.product("Mug", 1250, 10).await,
        w.catalog.product("Tea", 499, 10).await,
        w.catalog.product("Lamp", 3000, 10).await,
    ];
    for p in products {
        w.cart.add(ada, p, 1).await.ok();
    }
    let (spy_url, seen) = spy_on(&w.catalog.url).await;
    let spied = w.another_cart(cart::Settings::default(), &spy_url).await;

    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = send(
        spied
            .request(Method::GET, "/api/v1/cart", ada)
            .header("x-request-id", "cart-test-1")
            .header("traceparent", traceparent),
    )
    .await
    .ok();
    assert_eq!(r.body["revalidated"], true);
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "one call for the whole cart: {calls:?}");
    let (path, headers) = &calls[0];
    assert!(path.starts_with("/api/v1/products?ids="), "{path}");
    for p in products {
        assert!(path.contains(&p.to_string()), "{path} asks about {p}");
    }
    assert_eq!(headers["x-request-id"], "cart-test-1");
    assert!(
        headers["traceparent"].starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "the trace continues: {}",
        headers["traceparent"]
    );

    seen.lock().unwrap().clear();
    let mug = products[0];
    spied.add(ada, mug, 1).await.ok();
    assert_eq!(seen.lock().unwrap().len(), 1, "adding asks once too");
}

#[tokio::test]
async fn serves_its_openapi_document_and_health() {
    let w = world().await;
    let doc: Value = reqwest::get(w.cart.url.join("/openapi.json").unwrap())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/cart",
        "/api/v1/cart/items",
        "/api/v1/cart/items/{product_id}",
        "/api/v1/cart/merge",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is documented");
    }
    let ready = reqwest::get(w.cart.url.join("/readyz").unwrap())
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["store"], "ok");
    let missing = send(w.cart.http.get(w.cart.url.join("/api/v1/carts").unwrap())).await;
    missing.problem(404, "not-found");
}
