//! The catalog service on each backend set: products, categories, search,
//! reviews, events and the response cache. Identity runs beside it (for
//! real tokens); the catalog is called directly, and through the gateway
//! where the gateway's kept copies are under test.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use emporium_tests::shop::{Shop, ShopOptions, listen};
use emporium_tests::{Backends, redis_stand_in};
use kit::auth::TokenVerifier;
use kit::cache::Cache;
use kit::config::CacheUrl;
use kit::events::{Envelope, Subscription};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "correct horse battery";
const ADMIN: &str = "admin@example.com";
const CUSTOMER: &str = "customer@example.com";

/// Identity (for tokens) and a catalog on its own port.
struct Catalog {
    shop: Shop,
    url: url::Url,
    http: reqwest::Client,
    state: catalog::AppState,
    admin: String,
    customer: String,
    stop: CancellationToken,
}

impl Drop for Catalog {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start(b: &Backends) -> Catalog {
    start_with(b, catalog::Settings::default(), None).await
}

async fn start_with(b: &Backends, settings: catalog::Settings, cache: Option<Cache>) -> Catalog {
    // The port first: the gateway routes to the catalog from the start.
    let (listener, url) = listen().await;
    let shop = Shop::start(
        b,
        ShopOptions {
            identity: identity::Settings {
                admin: Some((ADMIN.into(), PASSWORD.into())),
                ..Default::default()
            },
            extra_upstreams: [("catalog".to_string(), url.clone())].into(),
            ..Default::default()
        },
    )
    .await;
    let verifier = TokenVerifier::from_jwks_url(
        shop.identity().url.join("/.well-known/jwks.json").unwrap(),
        "emporium-identity",
        "emporium",
    );
    let cache = match cache {
        Some(c) => c,
        None => b.cache().await,
    };
    let service = catalog::Catalog::build(
        settings,
        Arc::new(verifier),
        catalog::Backends {
            db: b.database("catalog").await,
            cache,
            bus: shop.bus.clone(),
        },
    )
    .await
    .expect("catalog starts");
    let stop = CancellationToken::new();
    service
        .spawn_workers(stop.clone())
        .await
        .expect("catalog workers");
    let state = service.state.clone();
    tokio::spawn(kit::http::serve(listener, service.router, stop.clone()));
    let (admin, _) = shop.login(ADMIN, PASSWORD).await;
    shop.register(CUSTOMER, PASSWORD).await;
    let (customer, _) = shop.login(CUSTOMER, PASSWORD).await;
    Catalog {
        shop,
        url,
        http: reqwest::Client::new(),
        state,
        admin,
        customer,
        stop,
    }
}

struct Reply {
    status: u16,
    cache: Option<String>,
    /// What the catalog tells the gateway (must never reach a client).
    edge: Option<String>,
    content_type: String,
    body: Value,
}

impl Reply {
    /// Assert a problem document with `status`; return its body.
    fn problem(self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.content_type, "application/problem+json");
        self.body
    }

    fn ok(self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.body);
        self.body
    }

    /// The fields named in a 422 problem, in order.
    fn invalid_fields(self) -> Vec<String> {
        self.problem(422)["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap().to_string())
            .collect()
    }
}

impl Catalog {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        self.send_to(&self.url, method, path, token, body).await
    }

    async fn send_to(
        &self,
        base: &url::Url,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.http.request(method, base.join(path).unwrap());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let header = |name: &str| {
            res.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let cache = header("x-cache");
        let edge = header("x-emporium-edge-cache");
        let content_type = header("content-type").unwrap_or_default();
        let bytes = res.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Reply {
            status,
            cache,
            edge,
            content_type,
            body,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, None, None).await
    }

    /// A read through the shop's gateway.
    async fn get_via_gateway(&self, path: &str) -> Reply {
        self.send_to(&self.shop.gateway, reqwest::Method::GET, path, None, None)
            .await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(reqwest::Method::PUT, path, token, Some(body))
            .await
    }

    async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(reqwest::Method::DELETE, path, token, None).await
    }

    /// Create a category as admin; returns its id.
    async fn category(&self, name: &str, slug: &str, parent: Option<&str>) -> String {
        let body = self
            .post(
                "/api/v1/categories",
                Some(&self.admin),
                json!({"name": name, "slug": slug, "parent_id": parent}),
            )
            .await
            .ok(201);
        body["id"].as_str().unwrap().to_string()
    }

    /// Create a product as admin; returns it.
    async fn product(&self, body: Value) -> Value {
        self.post("/api/v1/products", Some(&self.admin), body)
            .await
            .ok(201)
    }

    /// List with a query string; returns the page.
    async fn list(&self, query: &str) -> Value {
        self.get(&format!("/api/v1/products?{query}")).await.ok(200)
    }

    async fn review(&self, token: &str, product: &str, rating: i64) -> Reply {
        self.post(
            &format!("/api/v1/products/{product}/reviews"),
            Some(token),
            json!({"rating": rating, "title": "My view", "body": "Worth it."}),
        )
        .await
    }

    /// Sign up another customer; returns their access token.
    async fn another_customer(&self, email: &str) -> String {
        self.shop.register(email, PASSWORD).await;
        self.shop.login(email, PASSWORD).await.0
    }
}

fn product(sku: &str, name: &str, cents: i64, category: &str) -> Value {
    json!({
        "sku": sku,
        "name": name,
        "description": "",
        "price": {"amount": cents, "currency": "USD"},
        "stock": 10,
        "category_id": category,
    })
}

fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn products_are_created_read_and_replaced() {
    let b = Backends::new();
    let c = start(&b).await;
    let electronics = c.category("Electronics", "electronics", None).await;

    let res = c
        .post(
            "/api/v1/products",
            Some(&c.admin),
            json!({
                "sku": "KB-100",
                "name": "  Mechanical Keyboard ",
                "description": "Clicky.",
                "price": {"amount": 8999, "currency": "usd"},
                "stock": 12,
                "category_id": electronics,
                "images": [
                    {"url": "https://img.example/kb-front.jpg", "alt": "Front"},
                    {"url": "https://img.example/kb-side.jpg", "alt": "Side"}
                ]
            }),
        )
        .await;
    let created = res.ok(201);
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    assert_eq!(created["sku"], "KB-100");
    assert_eq!(created["name"], "Mechanical Keyboard", "names are trimmed");
    assert_eq!(created["price"], json!({"amount": 8999, "currency": "USD"}));
    assert_eq!(created["stock"], 12);
    assert_eq!(created["category_id"], electronics.as_str());
    assert_eq!(created["is_active"], true);
    assert_eq!(created["rating"], json!({"average": 0.0, "count": 0}));
    assert_eq!(created["images"][0]["alt"], "Front");
    assert_eq!(
        created["images"][1]["url"],
        "https://img.example/kb-side.jpg"
    );
    assert!(
        time::OffsetDateTime::parse(
            created["created_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok()
    );

    let fetched = c.get(&format!("/api/v1/products/{id}")).await.ok(200);
    assert_eq!(fetched, created);

    // PUT replaces everything: the images and description are gone.
    let replaced = c
        .put(
            &format!("/api/v1/products/{id}"),
            Some(&c.admin),
            json!({
                "sku": "KB-101",
                "name": "Mechanical Keyboard v2",
                "price": {"amount": 9999, "currency": "EUR"},
                "stock": 0,
                "category_id": electronics,
            }),
        )
        .await
        .ok(200);
    assert_eq!(replaced["sku"], "KB-101");
    assert_eq!(
        replaced["price"],
        json!({"amount": 9999, "currency": "EUR"})
    );
    assert_eq!(replaced["images"], json!([]));
    assert_eq!(replaced["description"], "");
    assert_eq!(replaced["created_at"], created["created_at"]);
    let fetched = c.get(&format!("/api/v1/products/{id}")).await.ok(200);
    assert_eq!(fetched, replaced);

    let missing = uuid::Uuid::now_v7();
    c.put(
        &format!("/api/v1/products/{missing}"),
        Some(&c.admin),
        product("X-1", "Nothing", 100, &electronics),
    )
    .await
    .problem(404);
    c.get(&format!("/api/v1/products/{missing}"))
        .await
        .problem(404);
    c.get("/api/v1/products/not-a-uuid").await.problem(404);
}

#[tokio::test]
async fn invalid_products_are_refused_naming_every_field() {
    let b = Backends::new();
    let c = start(&b).await;
    let cat = c.category("Books", "books", None).await;
    c.product(product("BOOK-1", "A Book", 1500, &cat)).await;

    let fields = c
        .post(
            "/api/v1/products",
            Some(&c.admin),
            json!({
                "sku": "bad sku",
                "name": "",
                "price": {"amount": 0, "currency": "ZZZ"},
                "stock": -1,
                "category_id": uuid::Uuid::now_v7().to_string(),
                "images": [{"url": "ftp://nope", "alt": ""}]
            }),
        )
        .await
        .invalid_fields();
    assert_eq!(
        fields,
        [
            "sku",
            "name",
            "price.amount",
            "price.currency",
            "stock",
            "images[0].url",
            "category_id"
        ]
    );

    let fields = c
        .post(
            "/api/v1/products",
            Some(&c.admin),
            json!({
                "sku": "OK-1",
                "name": "Fine",
                "price": {"amount": -5, "currency": "USD"},
                "stock": 1,
                "category_id": "not-an-id",
            }),
        )
        .await
        .invalid_fields();
    assert_eq!(fields, ["price.amount", "category_id"]);

    // Server-owned fields are unknown fields.
    let mut with_rating = product("OK-2", "Fine", 100, &cat);
    with_rating["rating"] = json!({"average": 5, "count": 100});
    let body = c
        .post("/api/v1/products", Some(&c.admin), with_rating)
        .await
        .problem(422);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("rating")
    );

    // The SKU is unique.
    let body = c
        .post(
            "/api/v1/products",
            Some(&c.admin),
            product("BOOK-1", "Another Book", 900, &cat),
        )
        .await
        .problem(409);
    assert_eq!(body["type"], "https://emporium.dev/problems/sku-taken");
}

#[tokio::test]
async fn writes_need_the_catalog_permission() {
    let b = Backends::new();
    let c = start(&b).await;
    let cat = c.category("Toys", "toys", None).await;
    let toy = c.product(product("TOY-1", "Yo-yo", 500, &cat)).await;
    let toy_path = format!("/api/v1/products/{}", toy["id"].as_str().unwrap());
    let cat_path = format!("/api/v1/categories/{cat}");
    let new = product("TOY-2", "Kite", 900, &cat);
    let new_cat = json!({"name": "Games", "slug": "games"});

    for (token, status) in [(None, 401), (Some(c.customer.as_str()), 403)] {
        c.post("/api/v1/products", token, new.clone())
            .await
            .problem(status);
        c.put(&toy_path, token, new.clone()).await.problem(status);
        c.delete(&toy_path, token).await.problem(status);
        c.post("/api/v1/categories", token, new_cat.clone())
            .await
            .problem(status);
        c.put(&cat_path, token, new_cat.clone())
            .await
            .problem(status);
        c.delete(&cat_path, token).await.problem(status);
    }
    c.post("/api/v1/products", Some("not.a.token"), new.clone())
        .await
        .problem(401);
    let reviews = format!("{toy_path}/reviews");
    c.post(&reviews, None, json!({"rating": 5, "title": "Fun"}))
        .await
        .problem(401);

    // Nothing changed.
    let toy_now = c.get(&toy_path).await.ok(200);
    assert_eq!(toy_now, toy);
    assert_eq!(c.list("").await["total"], 1);
}

#[tokio::test]
async fn search_ranks_name_matches_first_and_matches_partial_words() {
    let b = Backends::new();
    let c = start(&b).await;
    let cat = c.category("Home", "home", None).await;
    let mut by_description = product("LMP-1", "Desk Light", 3000, &cat);
    by_description["description"] = json!("Warm light from quantum dot panels.");
    c.product(by_description).await;
    c.product(product("LMP-2", "Quantum Lamp", 4000, &cat))
        .await;
    c.product(product("MUG-1", "Plain Mug", 900, &cat)).await;
    let mut headphones = product("HP-1", "Wireless Headphones", 9900, &cat);
    headphones["description"] = json!("Over-ear, noise cancelling.");
    c.product(headphones).await;

    let page = c.list("q=quantum").await;
    assert_eq!(
        names(&page),
        ["Quantum Lamp", "Desk Light"],
        "name match first"
    );
    assert_eq!(page["total"], 2);
    assert_eq!(page["next_cursor"], Value::Null, "no cursor for relevance");

    assert_eq!(
        names(&c.list("q=quant").await),
        ["Quantum Lamp", "Desk Light"]
    );
    assert_eq!(names(&c.list("q=headph").await), ["Wireless Headphones"]);
    assert_eq!(
        names(&c.list("q=WIRELESS%20head").await),
        ["Wireless Headphones"]
    );
    assert_eq!(
        names(&c.list("q=lamp%20quantum").await),
        ["Quantum Lamp"],
        "every word must match"
    );
    assert_eq!(
        names(&c.list("q=cancelling").await),
        ["Wireless Headphones"],
        "descriptions are searched"
    );
    assert_eq!(
        names(&c.list("q=hp").await),
        ["Wireless Headphones"],
        "SKUs are searched"
    );
    assert_eq!(c.list("q=teapot").await["total"], 0);

    // Query syntax is just text.
    for q in [
        "quantum%20%26%20%7C%20!",
        "%22quantum%22*",
        "quantum:*",
        "(quantum)",
        "'%3B--",
    ] {
        let res = c.get(&format!("/api/v1/products?q={q}")).await;
        assert_eq!(res.status, 200, "q={q}: {}", res.body);
    }
    // Price order applies within the matches when asked for.
    assert_eq!(
        names(&c.list("q=quantum&sort=price_asc").await),
        ["Desk Light", "Quantum Lamp"]
    );
}

#[tokio::test]
async fn listings_filter_by_price_stock_rating_and_category_tree() {
    let b = Backends::new();
    let c = start(&b).await;
    let electronics = c.category("Electronics", "electronics", None).await;
    let audio = c.category("Audio", "audio", Some(&electronics)).await;
    let headphones = c.category("Headphones", "headphones", Some(&audio)).await;
    let books = c.category("Books", "books", None).await;

    let charger = c
        .product(product("EL-1", "Charger", 1000, &electronics))
        .await;
    let speaker = c.product(product("AU-1", "Speaker", 5000, &audio)).await;
    let mut sold_out = product("HP-1", "Earbuds", 2500, &headphones);
    sold_out["stock"] = json!(0);
    c.product(sold_out).await;
    c.product(product("BK-1", "Novel", 1200, &books)).await;

    // Category by slug or id, with everything below it.
    let mut found = names(&c.list("category=electronics&sort=price_asc").await);
    assert_eq!(found, ["Charger", "Earbuds", "Speaker"]);
    found = names(&c.list(&format!("category={audio}&sort=price_asc")).await);
    assert_eq!(found, ["Earbuds", "Speaker"]);
    assert_eq!(names(&c.list("category=headphones").await), ["Earbuds"]);
    assert_eq!(c.list("category=no-such-category").await["total"], 0);

    // Price bounds are inclusive, in minor units.
    assert_eq!(
        names(&c.list("min_price=1000&max_price=2500&sort=price_asc").await),
        ["Charger", "Novel", "Earbuds"]
    );
    assert_eq!(names(&c.list("min_price=2501").await), ["Speaker"]);
    assert_eq!(
        c.get("/api/v1/products?min_price=10&max_price=5")
            .await
            .invalid_fields(),
        ["max_price"]
    );
    assert_eq!(
        c.get("/api/v1/products?min_price=-1")
            .await
            .invalid_fields(),
        ["min_price"]
    );

    // Only what is in stock.
    assert_eq!(
        names(&c.list("in_stock=true&sort=price_asc").await),
        ["Charger", "Novel", "Speaker"]
    );

    // Rated products: speaker averages 4.5, charger 2, the rest unrated.
    let other = c.another_customer("other@example.com").await;
    let speaker_id = speaker["id"].as_str().unwrap();
    c.review(&c.customer, speaker_id, 5).await.ok(201);
    c.review(&other, speaker_id, 4).await.ok(201);
    c.review(&c.customer, charger["id"].as_str().unwrap(), 2)
        .await
        .ok(201);
    assert_eq!(names(&c.list("min_rating=4").await), ["Speaker"]);
    assert_eq!(names(&c.list("min_rating=4.5").await), ["Speaker"]);
    assert_eq!(c.list("min_rating=4.6").await["total"], 0);
    assert_eq!(
        names(&c.list("min_rating=2&sort=rating").await),
        ["Speaker", "Charger"]
    );
    assert_eq!(
        c.get("/api/v1/products?min_rating=6")
            .await
            .invalid_fields(),
        ["min_rating"]
    );
    assert_eq!(
        c.get("/api/v1/products?sort=cheapest")
            .await
            .invalid_fields(),
        ["sort"]
    );
    assert_eq!(c.get("/api/v1/products?colour=red").await.status, 422);

    // Sorts.
    assert_eq!(
        names(&c.list("sort=price_desc").await),
        ["Speaker", "Earbuds", "Novel", "Charger"]
    );
    assert_eq!(
        names(&c.list("sort=newest").await),
        ["Novel", "Earbuds", "Speaker", "Charger"]
    );

    // Facets describe the current query.
    let page = c.list("").await;
    assert_eq!(
        facets_shown(&page)["categories"],
        json!({"audio": 1, "books": 1, "electronics": 1, "headphones": 1})
    );
    let bands = page["facets"]["price"].as_array().unwrap();
    assert_eq!(bands[0], json!({"min": 0, "max": 1000, "count": 0}));
    assert_eq!(bands[1], json!({"min": 1000, "max": 2500, "count": 2}));
    assert_eq!(bands[2], json!({"min": 2500, "max": 5000, "count": 1}));
    assert_eq!(bands[3], json!({"min": 5000, "max": 10000, "count": 1}));
    assert_eq!(bands.last().unwrap()["max"], Value::Null);
    let banded: i64 = bands.iter().map(|b| b["count"].as_i64().unwrap()).sum();
    assert_eq!(banded, 4);

    let page = c.list("category=audio").await;
    let cats: Vec<&str> = page["facets"]["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["slug"].as_str().unwrap())
        .collect();
    assert_eq!(cats.len(), 2);
    assert!(cats.contains(&"audio") && cats.contains(&"headphones"));
    let banded: i64 = page["facets"]["price"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_i64().unwrap())
        .sum();
    assert_eq!(banded, 2);
}

#[tokio::test]
async fn pages_are_bounded_disjoint_and_cursors_walk_everything() {
    let b = Backends::new();
    let c = start(&b).await;
    let cat = c.category("Widgets", "widgets", None).await;
    for i in 0..25 {
        // Some prices repeat, so keyset ties are broken by id.
        c.product(product(
            &format!("W-{i}"),
            &format!("Widget {i}"),
            100 + (i % 7) * 10,
            &cat,
        ))
        .await;
    }

    assert_eq!(
        c.get("/api/v1/products?page_size=101")
            .await
            .invalid_fields(),
        ["page_size"]
    );
    assert_eq!(
        c.get("/api/v1/products?page_size=0").await.invalid_fields(),
        ["page_size"]
    );
    assert_eq!(
        c.get("/api/v1/products?page=0").await.invalid_fields(),
        ["page"]
    );
    assert_eq!(
        c.list("page_size=100").await["items"]
            .as_array()
            .unwrap()
            .len(),
        25
    );

    // Page numbers: disjoint pages that together hold everything.
    let mut seen = HashSet::new();
    for page in 1..=3 {
        let p = c
            .list(&format!("page={page}&page_size=10&sort=price_asc"))
            .await;
        assert_eq!(p["total"], 25);
        assert_eq!(p["page"], page);
        assert_eq!(p["page_size"], 10);
        for id in ids(&p) {
            assert!(seen.insert(id), "page {page} repeats an item");
        }
    }
    assert_eq!(seen.len(), 25);
    assert!(
        c.list("page=4&page_size=10").await["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Cursors walk the whole listing in order, for every keyset sort.
    for sort in ["price_asc", "price_desc", "newest", "rating"] {
        let mut walked = Vec::new();
        let mut prices = Vec::new();
        let mut page = c.list(&format!("sort={sort}&page_size=7")).await;
        loop {
            walked.extend(ids(&page));
            prices.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["price"]["amount"].as_i64().unwrap()),
            );
            let Some(cursor) = page["next_cursor"].as_str().map(str::to_string) else {
                break;
            };
            page = c
                .list(&format!("sort={sort}&page_size=7&cursor={cursor}"))
                .await;
            assert_eq!(page["page"], Value::Null);
            assert_eq!(page["total"], 25);
        }
        assert_eq!(walked.len(), 25, "{sort}");
        assert_eq!(
            walked.iter().collect::<HashSet<_>>().len(),
            25,
            "{sort} repeats"
        );
        let offset_order = {
            let all = c.list(&format!("sort={sort}&page_size=100")).await;
            ids(&all)
        };
        assert_eq!(walked, offset_order, "{sort}: cursor and page order agree");
        if sort == "price_asc" {
            assert!(prices.windows(2).all(|w| w[0] <= w[1]));
        }
        if sort == "price_desc" {
            assert!(prices.windows(2).all(|w| w[0] >= w[1]));
        }
    }

    let first = c.list("sort=price_asc&page_size=5").await;
    let cursor = first["next_cursor"].as_str().unwrap();
    assert_eq!(
        c.get(&format!("/api/v1/products?sort=price_desc&cursor={cursor}"))
            .await
            .invalid_fields(),
        ["cursor"],
        "a cursor belongs to its order"
    );
    assert_eq!(
        c.get(&format!(
            "/api/v1/products?q=widget&sort=relevance&cursor={cursor}"
        ))
        .await
        .invalid_fields(),
        ["cursor"]
    );
    assert_eq!(
        c.get("/api/v1/products?cursor=garbage")
            .await
            .invalid_fields(),
        ["cursor"]
    );
}

#[tokio::test]
async fn batch_lookup_returns_retired_products_for_carts() {
    let b = Backends::new();
    let c = start(&b).await;
    let cat = c.category("Tools", "tools", None).await;
    let hammer = c.product(product("T-1", "Hammer", 1500, &cat)).await;
    let saw = c.product(product("T-2", "Saw", 2500, &cat)).await;
    let drill = c.product(product("T-3", "Drill", 8500, &cat)).await;
    let id = |p: &Value| p["id"].as_str().unwrap().to_string();
    c.delete(&format!("/api/v1/products/{}", id(&saw)), Some(&c.admin))
        .await
        .ok(204);

    let unknown = uuid::Uuid::now_v7().to_string();
    let page = c
        .list(&format!(
            "ids={},{},{unknown},{}",
            id(&drill),
            id(&saw),
            id(&hammer)
        ))
        .await;
    assert_eq!(
        names(&page),
        ["Drill", "Saw", "Hammer"],
        "in the order asked"
    );
    assert_eq!(page["items"][1]["is_active"], false);
    assert_eq!(page["items"][0]["is_active"], true);
    assert_eq!(page["total"], 3);

    let too_many: Vec<String> = (0..101).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    assert_eq!(
        c.get(&format!("/api/v1/products?ids={}", too_many.join(",")))
            .await
            .invalid_fields(),
        ["ids"]
    );
    let hundred = too_many[..100].join(",");
    assert_eq!(c.list(&format!("ids={hundred}")).await["total"], 0);
    assert_eq!(
        c.get("/api/v1/products?ids=abc").await.invalid_fields(),
        ["ids"]
    );
}

#[tokio::test]
async fn retired_products_stay_readable_but_leave_listings() {
    let b = Backends::new();
    let c = start(&b).await;
    let cat = c.category("Garden", "garden", None).await;
    let rake = c.product(product("G-1", "Garden Rake", 2000, &cat)).await;
    c.product(product("G-2", "Garden Hose", 3000, &cat)).await;
    let path = format!("/api/v1/products/{}", rake["id"].as_str().unwrap());
    assert_eq!(c.list("q=rake").await["total"], 1);

    assert_eq!(c.delete(&path, Some(&c.admin)).await.status, 204);
    let retired = c.get(&path).await.ok(200);
    assert_eq!(retired["is_active"], false);
    assert_eq!(retired["price"], rake["price"]);
    assert_eq!(names(&c.list("").await), ["Garden Hose"]);
    assert_eq!(c.list("q=rake").await["total"], 0);
    assert_eq!(c.list("category=garden").await["total"], 1);
    assert_eq!(c.list("").await["facets"]["categories"][0]["count"], 1);

    // Retiring twice is harmless; retired products take no reviews.
    assert_eq!(c.delete(&path, Some(&c.admin)).await.status, 204);
    c.review(&c.customer, rake["id"].as_str().unwrap(), 4)
        .await
        .problem(404);
    let unknown = format!("/api/v1/products/{}", uuid::Uuid::now_v7());
    c.delete(&unknown, Some(&c.admin)).await.problem(404);

    // A PUT may list it again.
    let mut again = product("G-1", "Garden Rake", 2000, &cat);
    again["is_active"] = json!(true);
    c.put(&path, Some(&c.admin), again).await.ok(200);
    assert_eq!(c.list("q=rake").await["total"], 1);
}

#[tokio::test]
async fn reviews_are_one_per_customer_and_move_the_average() {
    let b = Backends::new();
    let c = start(&b).await;
    let cat = c.category("Kitchen", "kitchen", None).await;
    let kettle = c.product(product("K-1", "Kettle", 4900, &cat)).await;
    let id = kettle["id"].as_str().unwrap();
    let reviews = format!("/api/v1/products/{id}/reviews");

    for rating in [0, 6] {
        assert_eq!(
            c.review(&c.customer, id, rating).await.invalid_fields(),
            ["rating"]
        );
    }
    let fields = c
        .post(
            &reviews,
            Some(&c.customer),
            json!({"rating": 3, "title": " "}),
        )
        .await
        .invalid_fields();
    assert_eq!(fields, ["title"]);

    let first = c.review(&c.customer, id, 4).await.ok(201);
    assert_eq!(first["rating"], 4);
    assert_eq!(first["product_id"], id);
    let body = c.review(&c.customer, id, 5).await.problem(409);
    assert_eq!(
        body["type"],
        "https://emporium.dev/problems/already-reviewed"
    );

    let other = c.another_customer("second@example.com").await;
    c.review(&other, id, 5).await.ok(201);
    // The admin is a customer too.
    c.review(&c.admin, id, 2).await.ok(201);

    let product = c.get(&format!("/api/v1/products/{id}")).await.ok(200);
    assert_eq!(product["rating"], json!({"average": 3.67, "count": 3}));

    let page = c.get(&reviews).await.ok(200);
    assert_eq!(page["total"], 3);
    let ratings: Vec<i64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rating"].as_i64().unwrap())
        .collect();
    assert_eq!(ratings, [2, 5, 4], "newest first");
    let page = c
        .get(&format!("{reviews}?page=2&page_size=2"))
        .await
        .ok(200);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        c.get(&format!("{reviews}?page_size=101"))
            .await
            .invalid_fields(),
        ["page_size"]
    );

    let unknown = uuid::Uuid::now_v7().to_string();
    c.review(&c.customer, &unknown, 5).await.problem(404);
    c.get(&format!("/api/v1/products/{unknown}/reviews"))
        .await
        .problem(404);
}

#[tokio::test]
async fn categories_form_a_tree_with_guarded_edits() {
    let b = Backends::new();
    let c = start(&b).await;
    let electronics = c.category("Electronics", "electronics", None).await;
    let audio = c.category("Audio", "audio", Some(&electronics)).await;
    let headphones = c.category("Headphones", "headphones", Some(&audio)).await;
    let books = c.category("Books", "books", None).await;

    let tree = c.get("/api/v1/categories").await.ok(200);
    assert_eq!(tree[0]["slug"], "books");
    assert_eq!(tree[1]["slug"], "electronics");
    assert_eq!(tree[1]["children"][0]["slug"], "audio");
    assert_eq!(tree[1]["children"][0]["parent_id"], electronics.as_str());
    assert_eq!(
        tree[1]["children"][0]["children"][0]["id"],
        headphones.as_str()
    );
    let one = c.get("/api/v1/categories/audio").await.ok(200);
    assert_eq!(one["children"][0]["slug"], "headphones");
    c.get("/api/v1/categories/nothing-here").await.problem(404);

    // Validation, uniqueness, parents.
    let body = c
        .post(
            "/api/v1/categories",
            Some(&c.admin),
            json!({"name": "Again", "slug": "audio"}),
        )
        .await
        .problem(409);
    assert_eq!(body["type"], "https://emporium.dev/problems/slug-taken");
    assert_eq!(
        c.post(
            "/api/v1/categories",
            Some(&c.admin),
            json!({"name": "", "slug": "Bad Slug"})
        )
        .await
        .invalid_fields(),
        ["name", "slug"]
    );
    let nowhere = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        c.post(
            "/api/v1/categories",
            Some(&c.admin),
            json!({"name": "Orphan", "slug": "orphan", "parent_id": nowhere})
        )
        .await
        .invalid_fields(),
        ["parent_id"]
    );

    // No category may become its own ancestor.
    let path = format!("/api/v1/categories/{electronics}");
    for parent in [&headphones, &audio, &electronics] {
        assert_eq!(
            c.put(
                &path,
                Some(&c.admin),
                json!({"name": "Electronics", "slug": "electronics", "parent_id": parent})
            )
            .await
            .invalid_fields(),
            ["parent_id"]
        );
    }
    // Slug clash on update.
    c.put(
        &path,
        Some(&c.admin),
        json!({"name": "Electronics", "slug": "books"}),
    )
    .await
    .problem(409);
    // A legal move: audio under books, renamed.
    let moved = c
        .put(
            &format!("/api/v1/categories/{audio}"),
            Some(&c.admin),
            json!({"name": "Audiobooks", "slug": "audiobooks", "parent_id": books}),
        )
        .await
        .ok(200);
    assert_eq!(moved["parent_id"], books.as_str());
    let tree = c.get("/api/v1/categories").await.ok(200);
    assert_eq!(tree[0]["children"][0]["slug"], "audiobooks");
    assert_eq!(tree[0]["children"][0]["children"][0]["slug"], "headphones");
    assert_eq!(tree[1]["children"], json!([]));

    // Deleting: not with children, not with products (even retired ones).
    let body = c
        .delete(&format!("/api/v1/categories/{audio}"), Some(&c.admin))
        .await
        .problem(409);
    assert_eq!(
        body["type"],
        "https://emporium.dev/problems/category-in-use"
    );
    let p = c
        .product(product("HP-1", "Earbuds", 2500, &headphones))
        .await;
    c.delete(
        &format!("/api/v1/products/{}", p["id"].as_str().unwrap()),
        Some(&c.admin),
    )
    .await
    .ok(204);
    c.delete(&format!("/api/v1/categories/{headphones}"), Some(&c.admin))
        .await
        .problem(409);
    c.delete(&path, Some(&c.admin)).await.ok(204);
    c.get(&format!("/api/v1/categories/{electronics}"))
        .await
        .problem(404);
    c.delete(&path, Some(&c.admin)).await.problem(404);
    assert_eq!(
        c.get("/api/v1/categories")
            .await
            .ok(200)
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn product_changes_are_published_with_old_and_new_price() {
    let b = Backends::new();
    let c = start(&b).await;
    let stop = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<Envelope>();
    for event in ["product.created", "product.updated", "product.deleted"] {
        let tx = tx.clone();
        c.shop
            .bus
            .subscribe(
                Subscription::new("catalog-test", event, move |e: Envelope| {
                    let tx = tx.clone();
                    async move {
                        let _ = tx.send(e);
                        Ok(())
                    }
                }),
                stop.clone(),
            )
            .await
            .unwrap();
    }
    let cat = c.category("Bikes", "bikes", None).await;
    let bike = c.product(product("B-1", "Road Bike", 99_900, &cat)).await;
    let id = bike["id"].as_str().unwrap();
    c.put(
        &format!("/api/v1/products/{id}"),
        Some(&c.admin),
        product("B-1", "Road Bike", 89_900, &cat),
    )
    .await
    .ok(200);
    c.delete(&format!("/api/v1/products/{id}"), Some(&c.admin))
        .await
        .ok(204);

    let mut events = Vec::new();
    while events.len() < 3 {
        let e = tokio::time::timeout(Duration::from_secs(15), rx.recv())
            .await
            .expect("events arrive")
            .unwrap();
        events.push(e);
    }
    events.sort_by_key(|e| e.id);
    let kinds: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        kinds,
        ["product.created", "product.updated", "product.deleted"]
    );
    assert!(
        events
            .iter()
            .all(|e| e.producer == "catalog" && e.payload["product_id"] == id)
    );
    assert_eq!(
        events[0].payload["price"],
        json!({"amount": 99_900, "currency": "USD"})
    );
    assert_eq!(
        events[1].payload["old_price"],
        json!({"amount": 99_900, "currency": "USD"})
    );
    assert_eq!(
        events[1].payload["new_price"],
        json!({"amount": 89_900, "currency": "USD"})
    );
    assert_eq!(events[2].payload["sku"], "B-1");
    stop.cancel();
}

#[tokio::test]
async fn an_update_is_never_followed_by_a_stale_read() {
    let b = Backends::new();
    let c = start(&b).await;
    let cat = c.category("Cameras", "cameras", None).await;
    let cam = c
        .product(product("C-1", "Instant Camera", 7_900, &cat))
        .await;
    let id = cam["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/products/{id}");
    let reads = [
        path.clone(),
        "/api/v1/products".to_string(),
        "/api/v1/products?q=camera".to_string(),
        "/api/v1/products?category=cameras&sort=price_asc".to_string(),
        format!("/api/v1/products?ids={id}"),
    ];
    // Warm the cache: the second read of each is a hit.
    for read in &reads {
        c.get(read).await.ok(200);
        let again = c.get(read).await;
        assert_eq!(again.cache.as_deref(), Some("hit"), "{read}");
    }
    for (round, cents) in [6_900, 5_900, 12_000].into_iter().enumerate() {
        c.put(
            &path,
            Some(&c.admin),
            product("C-1", "Instant Camera", cents, &cat),
        )
        .await
        .ok(200);
        for read in &reads {
            let res = c.get(read).await;
            assert_ne!(
                res.cache.as_deref(),
                Some("hit"),
                "round {round}: {read} served from before the update"
            );
            let body = res.ok(200);
            let price = if read == &path {
                body["price"]["amount"].clone()
            } else {
                body["items"][0]["price"]["amount"].clone()
            };
            assert_eq!(price, cents, "round {round}: {read}");
        }
    }
    // Reviews change the rating shown, at once.
    c.review(&c.customer, &id, 5).await.ok(201);
    assert_eq!(c.get(&path).await.ok(200)["rating"]["count"], 1);
    assert_eq!(c.list("q=camera").await["items"][0]["rating"]["count"], 1);
    // So do category edits.
    c.category("Lenses", "lenses", Some(&cat)).await;
    let tree = c.get("/api/v1/categories").await.ok(200);
    assert_eq!(tree[0]["children"][0]["slug"], "lenses");
}

#[tokio::test]
async fn the_gateway_serves_its_copies_only_while_the_catalogue_is_unchanged() {
    let b = Backends::new();
    let c = start(&b).await;
    let cat = c.category("Clocks", "clocks", None).await;
    let clock = c.product(product("K-1", "Wall Clock", 4_500, &cat)).await;
    let id = clock["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/products/{id}");
    let search = "/api/v1/products?q=clock".to_string();
    let reads = [path.clone(), search.clone(), "/api/v1/categories".into()];
    let price = |read: &str, body: &Value| {
        if read == path {
            body["price"]["amount"].clone()
        } else {
            body["items"][0]["price"]["amount"].clone()
        }
    };

    // The catalog vouches for its public reads; the gateway keeps them and
    // never lets the catalog's word reach the client.
    assert!(c.get(&path).await.edge.is_some(), "the catalog vouches");
    for read in &reads {
        let first = c.get_via_gateway(read).await;
        assert_eq!(first.edge, None, "{read}");
        first.ok(200);
        let again = c.get_via_gateway(read).await;
        assert_eq!(again.cache.as_deref(), Some("hit"), "{read}");
        assert_eq!(again.edge, None, "{read}");
    }

    // An update through the gateway is never followed by a kept copy.
    c.send_to(
        &c.shop.gateway,
        reqwest::Method::PUT,
        &path,
        Some(&c.admin),
        Some(product("K-1", "Wall Clock", 3_900, &cat)),
    )
    .await
    .ok(200);
    for read in &reads[..2] {
        let res = c.get_via_gateway(read).await;
        assert_ne!(res.cache.as_deref(), Some("hit"), "{read}");
        assert_eq!(price(read, &res.ok(200)), 3_900, "{read}");
        // Kept again under the new generation.
        let again = c.get_via_gateway(read).await;
        assert_eq!(again.cache.as_deref(), Some("hit"), "{read}");
        assert_eq!(price(read, &again.ok(200)), 3_900, "{read}");
    }

    // With the catalog gone, kept copies still answer, which shows they
    // come from the gateway; a read it never kept cannot be answered.
    c.stop.cancel();
    let unknown = "/api/v1/products?q=nothing-kept";
    let mut gone = c.get_via_gateway(unknown).await;
    for _ in 0..100 {
        if gone.status >= 500 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        gone = c.get_via_gateway(unknown).await;
    }
    assert!(gone.status == 502 || gone.status == 504, "{}", gone.status);
    let kept = c.get_via_gateway(&path).await;
    assert_eq!(kept.cache.as_deref(), Some("hit"));
    assert_eq!(kept.ok(200)["price"]["amount"], 3_900);

    // A write elsewhere (another catalog replica) sets a new generation:
    // the gateway drops its copy instead of serving it.
    c.state.cache.invalidate_all().await;
    for read in &reads {
        let res = c.get_via_gateway(read).await;
        assert!(
            res.status == 502 || res.status == 504,
            "{read}: {}",
            res.status
        );
    }
}

#[tokio::test]
async fn with_the_cache_off_every_read_goes_to_the_database() {
    let b = Backends::new();
    let c = start_with(
        &b,
        catalog::Settings {
            cache: catalog::CacheMode::Off,
            ..Default::default()
        },
        None,
    )
    .await;
    let cat = c.category("Pens", "pens", None).await;
    let pen = c.product(product("P-1", "Fountain Pen", 3_500, &cat)).await;
    let path = format!("/api/v1/products/{}", pen["id"].as_str().unwrap());
    for _ in 0..2 {
        let res = c.get(&path).await;
        assert_eq!(res.cache.as_deref(), Some("bypass"));
        assert_eq!(res.ok(200)["name"], "Fountain Pen");
    }
}

#[tokio::test]
async fn requests_are_served_from_the_database_when_the_cache_is_down() {
    let b = Backends::new();
    // `Cache::connect` needs Redis to answer at start-up, so connect to a
    // stand-in and take it away before the catalog serves anything.
    let (url, redis) = redis_stand_in::start().await;
    let cache = Cache::connect(&CacheUrl::Redis(url), &b.tag)
        .await
        .expect("connects while the stand-in answers");
    redis.abort();
    let _ = redis.await;
    let c = start_with(&b, catalog::Settings::default(), Some(cache)).await;

    // Reads before any write: the cache lookup fails and is skipped.
    assert_eq!(c.get("/api/v1/categories").await.ok(200), json!([]));
    let empty = c.get("/api/v1/products").await;
    assert_eq!(empty.cache.as_deref(), Some("bypass"));
    assert_eq!(empty.ok(200)["total"], 0);

    // Writes succeed although the generation cannot be bumped.
    let cat = c.category("Lamps", "lamps", None).await;
    let lamp = c.product(product("L-1", "Floor Lamp", 8_000, &cat)).await;
    let path = format!("/api/v1/products/{}", lamp["id"].as_str().unwrap());
    c.put(
        &path,
        Some(&c.admin),
        product("L-1", "Floor Lamp", 7_000, &cat),
    )
    .await
    .ok(200);
    for _ in 0..2 {
        let res = c.get(&path).await;
        assert_eq!(res.cache.as_deref(), Some("bypass"));
        assert_eq!(res.ok(200)["price"]["amount"], 7_000);
        assert_eq!(c.list("q=lamp").await["items"][0]["price"]["amount"], 7_000);
    }
    let ready = c.get("/readyz").await;
    assert_eq!(ready.status, 503, "readiness reports the cache");
    assert_ne!(ready.body["checks"]["cache"], "ok");
    assert_eq!(ready.body["checks"]["database"], "ok");
}

#[tokio::test]
async fn demo_and_bulk_seeding() {
    let b = Backends::new();
    let c = start(&b).await;
    assert_eq!(catalog::demo::seed(&c.state).await.unwrap(), 20);
    assert_eq!(
        catalog::demo::seed(&c.state).await.unwrap(),
        0,
        "only into an empty catalogue"
    );
    let all = c.list("").await;
    assert_eq!(all["total"], 20);
    let tree = c.get("/api/v1/categories").await.ok(200);
    let electronics = tree
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["slug"] == "electronics")
        .unwrap();
    assert!(
        !electronics["children"].as_array().unwrap().is_empty(),
        "a subcategory"
    );
    assert!(
        c.list("category=electronics").await["total"]
            .as_i64()
            .unwrap()
            > c.list("category=audio").await["total"].as_i64().unwrap()
    );
    assert!(
        all["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["stock"].as_i64().unwrap() > 0)
    );
    assert_eq!(
        names(&c.list("q=headphones").await)[0],
        "Wireless Over-Ear Headphones"
    );

    assert_eq!(
        catalog::demo::seed_bulk(&c.state, 2_345).await.unwrap(),
        2_345
    );
    assert_eq!(
        c.list("").await["total"],
        2_365,
        "the listing sees the new products at once"
    );
    assert_eq!(c.list("category=bulk").await["total"], 2_345);
    let page = c.list("q=keyboard&sort=price_asc&page_size=50").await;
    assert!(page["total"].as_i64().unwrap() > 0);
    let mut walked = 0;
    let mut page = c
        .list("category=bulk-audio&sort=rating&page_size=100")
        .await;
    let expected = page["total"].as_i64().unwrap();
    loop {
        walked += page["items"].as_array().unwrap().len() as i64;
        let Some(cursor) = page["next_cursor"].as_str().map(str::to_string) else {
            break;
        };
        page = c
            .list(&format!(
                "category=bulk-audio&sort=rating&page_size=100&cursor={cursor}"
            ))
            .await;
    }
    assert_eq!(walked, expected);
}

#[tokio::test]
async fn serves_its_openapi_document_and_health() {
    let b = Backends::new();
    let c = start(&b).await;
    let doc = c.get("/openapi.json").await.ok(200);
    for path in [
        "/api/v1/products",
        "/api/v1/products/{id}",
        "/api/v1/products/{id}/reviews",
        "/api/v1/categories",
        "/api/v1/categories/{id}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    let ready = c.get("/readyz").await.ok(200);
    for check in ["database", "cache", "events"] {
        assert_eq!(ready["checks"][check], "ok");
    }
    assert_eq!(c.get("/healthz").await.status, 200);
    c.get("/api/v1/nowhere").await.problem(404);
}

/// The facets a page should show, counted from the items themselves (the
/// page must hold every match): per category slug, and per price band.
fn facets_counted_from_items(page: &Value, slugs: &[(String, String)]) -> Value {
    let items = page["items"].as_array().unwrap();
    assert_eq!(page["total"].as_u64().unwrap() as usize, items.len());
    let mut per_category = std::collections::BTreeMap::new();
    for item in items {
        let id = item["category_id"].as_str().unwrap();
        let slug = &slugs.iter().find(|(i, _)| i == id).unwrap().1;
        *per_category.entry(slug.clone()).or_insert(0i64) += 1;
    }
    let bands: Vec<Value> = page["facets"]["price"]
        .as_array()
        .unwrap()
        .iter()
        .map(|band| {
            let (lo, hi) = (band["min"].as_i64().unwrap(), band["max"].as_i64());
            let n = items
                .iter()
                .map(|i| i["price"]["amount"].as_i64().unwrap())
                .filter(|p| *p >= lo && hi.is_none_or(|hi| *p < hi))
                .count();
            json!({"min": lo, "max": hi, "count": n})
        })
        .collect();
    json!({"categories": per_category, "price": bands})
}

/// A page's facets: counts per category slug, and the price bands.
fn facets_shown(page: &Value) -> Value {
    let per_category: std::collections::BTreeMap<String, i64> = page["facets"]["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["slug"].as_str().unwrap().to_string(),
                f["count"].as_i64().unwrap(),
            )
        })
        .collect();
    json!({"categories": per_category, "price": page["facets"]["price"]})
}

#[tokio::test]
async fn browsing_facets_stay_exact_through_every_kind_of_change() {
    let b = Backends::new();
    let c = start(&b).await;
    let home = c.category("Home", "home", None).await;
    let kitchen = c.category("Kitchen", "kitchen", Some(&home)).await;
    let garden = c.category("Garden", "garden", None).await;
    let slugs = [
        (home.clone(), "home".to_string()),
        (kitchen.clone(), "kitchen".to_string()),
        (garden.clone(), "garden".to_string()),
    ];
    // Prices on both sides of band edges; some sold out.
    let mut made = Vec::new();
    for (i, cents) in [999, 1000, 2499, 2500, 9999, 10_000, 49_999, 50_000, 75_000]
        .into_iter()
        .enumerate()
    {
        let category = [&home, &kitchen, &garden][i % 3];
        let mut p = product(&format!("FC-{i}"), &format!("Thing {i}"), cents, category);
        p["stock"] = json!(if i % 4 == 0 { 0 } else { 5 });
        made.push(c.product(p).await);
    }
    // Listings the kept counts answer (no text, whole bands and stars),
    // and ones that must count live (text, cut bands, fractional stars).
    let queries = [
        "",
        "category=home",
        "category=kitchen&in_stock=true",
        "in_stock=true",
        "min_price=1000",
        "max_price=9999",
        "min_price=2500&max_price=49999&category=home",
        "min_rating=4",
        "min_rating=2&in_stock=true",
        "min_rating=0",
        "min_price=1001&max_price=50000",
        "min_rating=3.5",
        "q=thing",
    ];
    let check = |step: &'static str| {
        let c = &c;
        let slugs = &slugs;
        async move {
            for q in queries {
                let page = c.list(&format!("{q}&page_size=100")).await;
                assert_eq!(
                    facets_shown(&page),
                    facets_counted_from_items(&page, slugs),
                    "after {step}, `{q}`"
                );
            }
        }
    };
    check("creating").await;

    let id = |i: usize| made[i]["id"].as_str().unwrap().to_string();
    let replace = |i: usize, change: &dyn Fn(&mut Value)| {
        let mut body = made[i].clone();
        change(&mut body);
        let body = json!({
            "sku": body["sku"], "name": body["name"], "description": "",
            "price": body["price"], "stock": body["stock"],
            "category_id": body["category_id"],
        });
        let path = format!("/api/v1/products/{}", id(i));
        let c = &c;
        async move { c.put(&path, Some(&c.admin), body).await.ok(200) }
    };
    replace(1, &|p| p["price"]["amount"] = json!(30_000)).await;
    check("moving a price to another band").await;
    replace(2, &|p| p["stock"] = json!(0)).await;
    replace(0, &|p| p["stock"] = json!(3)).await;
    check("selling out and restocking").await;
    replace(3, &|p| p["category_id"] = json!(garden)).await;
    check("moving to another category").await;
    replace(5, &|p| p["stock"] = json!(4)).await;
    check("a change that moves nothing").await;
    c.delete(&format!("/api/v1/products/{}", id(4)), Some(&c.admin))
        .await
        .ok(204);
    check("retiring").await;
    let other = c.another_customer("facets@example.com").await;
    c.review(&c.customer, &id(6), 5).await.ok(201);
    c.review(&other, &id(6), 4).await.ok(201);
    c.review(&c.customer, &id(7), 2).await.ok(201);
    check("reviews").await;

    // Folding the appended rows together changes no count.
    let folded =
        catalog::storage::products::compact_facet_counts(c.state.db.pool(), c.state.db.backend())
            .await
            .unwrap();
    if c.state.db.backend() == kit::db::Backend::Postgres {
        assert!(folded > 0, "PostgreSQL appends rows to fold");
    }
    check("compacting").await;
    replace(8, &|p| p["price"]["amount"] = json!(500)).await;
    check("a change after compacting").await;
}

/// The catalogue's cache generation (what the gateway's kept copies are
/// vouched for by) starts once and changes only on demand, in Redis as in
/// memory.
#[tokio::test]
async fn a_cache_generation_starts_once_and_changes_on_demand() {
    let b = Backends::new();
    let cache = b
        .cache()
        .await
        .scoped(&format!("generation-{}", uuid::Uuid::now_v7().simple()));
    let key = "catalog:generation";
    assert_eq!(cache.generation(key).await.unwrap(), None);
    let first = cache
        .start_generation(key)
        .await
        .expect("start a generation");
    assert_eq!(cache.start_generation(key).await.unwrap(), first);
    assert_eq!(cache.generation(key).await.unwrap(), Some(first));
    let next = cache.new_generation(key).await.unwrap();
    assert_ne!(next, first);
    assert_eq!(cache.start_generation(key).await.unwrap(), next);
}
