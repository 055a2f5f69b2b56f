//! The shop as a cluster runs it: seven `emporium serve` processes, here on
//! the backends of the run (PostgreSQL, Redis and RabbitMQ in the real set;
//! SQLite files and the SQLite event file in the embedded one). Processes
//! are killed with SIGKILL in the middle of checkouts and started again:
//! nothing they held in memory (events handed to their relay, deliveries
//! being handled, webhooks the sandbox was about to send) may cost an order.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod books;

const BIN: &str = env!("CARGO_BIN_EXE_emporium");
const SERVICES: [&str; 7] = [
    "identity",
    "catalog",
    "cart",
    "orders",
    "payments",
    "notifications",
    "gateway",
];
const ADMIN_EMAIL: &str = "admin@example.com";
const ADMIN_PASSWORD: &str = "an admin password";
const CUSTOMERS: usize = 12;
const STOCK: i64 = 1000;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where the shop keeps its data in this run.
struct Backends {
    databases: HashMap<&'static str, String>,
    cart_store: String,
    cache: String,
    bus: String,
    _vhost: Option<Vhost>,
}

impl Backends {
    async fn new(dir: &Path) -> Backends {
        let tag = format!("t{}", uuid::Uuid::now_v7().simple());
        let sqlite = |name: &str| format!("sqlite://{}", dir.join(format!("{name}.db")).display());
        match std::env::var("EMPORIUM_TEST_BACKENDS").as_deref() {
            Ok("real") => {
                let var = |name: &str| {
                    std::env::var(name).unwrap_or_else(|_| {
                        panic!(
                            "EMPORIUM_TEST_BACKENDS=real needs {name} (cargo xtask test sets it)"
                        )
                    })
                };
                let postgres = var("EMPORIUM_TEST_POSTGRES_URL");
                let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&postgres)
                    .await
                    .expect("EMPORIUM_TEST_POSTGRES_URL reachable");
                let mut databases = HashMap::new();
                for service in ["identity", "catalog", "orders", "payments", "notifications"] {
                    // `emporium_test_*`: dropped by xtask before the next run.
                    let name = format!("emporium_test_{tag}_{service}");
                    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                        .execute(&mut admin)
                        .await
                        .unwrap();
                    let mut url = url::Url::parse(&postgres).unwrap();
                    url.set_path(&name);
                    databases.insert(service, url.to_string());
                }
                let vhost = Vhost::create(&var("EMPORIUM_TEST_AMQP_URL"), &tag);
                Backends {
                    databases,
                    cart_store: var("EMPORIUM_TEST_REDIS_URL"),
                    cache: var("EMPORIUM_TEST_REDIS_URL"),
                    bus: vhost.url.clone(),
                    _vhost: Some(vhost),
                }
            }
            _ => Backends {
                databases: ["identity", "catalog", "orders", "payments", "notifications"]
                    .into_iter()
                    .map(|s| (s, sqlite(s)))
                    .collect(),
                cart_store: sqlite("cart"),
                cache: "memory://".into(),
                bus: sqlite("bus"),
                _vhost: None,
            },
        }
    }
}

/// A RabbitMQ vhost of the test's own: the services always use the exchange
/// `emporium.events`, so they must not share one with anything else.
struct Vhost {
    name: String,
    url: String,
}

fn rabbitmqctl(args: &[&str]) -> bool {
    Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Vhost {
    fn create(amqp: &str, tag: &str) -> Vhost {
        let name = format!("emporium-test-{tag}");
        assert!(
            rabbitmqctl(&["add_vhost", &name]),
            "rabbitmqctl add_vhost failed (the real set runs where its broker runs)"
        );
        let mut url = url::Url::parse(amqp).expect("EMPORIUM_TEST_AMQP_URL is a URL");
        let user = url.username().to_owned();
        assert!(rabbitmqctl(&[
            "set_permissions",
            "-p",
            &name,
            &user,
            ".*",
            ".*",
            ".*"
        ]));
        url.set_path(&format!("/{name}"));
        Vhost {
            url: url.to_string(),
            name,
        }
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        rabbitmqctl(&["delete_vhost", &self.name]);
    }
}

/// One service's process, started again with the same settings after a kill.
struct Service {
    name: &'static str,
    port: u16,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Service {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(BIN)
            .args(["serve", self.name])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("EMPORIUM_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start emporium serve");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown, nothing flushed.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn ready(&mut self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let url = format!("http://127.0.0.1:{}/readyz", self.port);
            if let Ok(res) = http.get(&url).send().await
                && res.status() == 200
            {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "{} exited ({status}):\n{}",
                    self.name,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} never became ready",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

struct Shop {
    services: Vec<Service>,
    gateway: String,
    http: reqwest::Client,
}

impl Shop {
    async fn start(dir: &Path, backends: &Backends) -> Shop {
        let key = Command::new(BIN).arg("keygen").output().unwrap().stdout;
        let key_file = dir.join("signing.pem");
        std::fs::write(&key_file, key).unwrap();
        let ports: HashMap<&str, u16> = SERVICES.iter().map(|s| (*s, free_port())).collect();
        let local = |s: &str| format!("http://127.0.0.1:{}", ports[s]);
        let db = |s: &str| {
            (
                "EMPORIUM_DATABASE_URL".to_string(),
                backends.databases[s].clone(),
            )
        };
        let var = |k: &str, v: String| (k.to_string(), v);
        let mut services = Vec::new();
        for name in SERVICES {
            let mut env = vec![
                var("EMPORIUM_LISTEN", format!("127.0.0.1:{}", ports[name])),
                var("EMPORIUM_BUS_URL", backends.bus.clone()),
                var(
                    "EMPORIUM_JWKS_URL",
                    format!("{}/.well-known/jwks.json", local("identity")),
                ),
            ];
            env.extend(match name {
                "identity" => vec![
                    db(name),
                    var("EMPORIUM_CACHE_URL", backends.cache.clone()),
                    var(
                        "EMPORIUM_JWT_SIGNING_KEY_FILE",
                        key_file.display().to_string(),
                    ),
                    var("EMPORIUM_ADMIN_EMAIL", ADMIN_EMAIL.into()),
                    var("EMPORIUM_ADMIN_PASSWORD", ADMIN_PASSWORD.into()),
                ],
                "catalog" => vec![db(name), var("EMPORIUM_CACHE_URL", backends.cache.clone())],
                "cart" => vec![
                    var("EMPORIUM_CART_STORE_URL", backends.cart_store.clone()),
                    var("EMPORIUM_CATALOG_URL", local("catalog")),
                    var(
                        "EMPORIUM_CART_KEY_PREFIX",
                        format!("emporium-test-{}", ports["cart"]),
                    ),
                ],
                "orders" => vec![
                    db(name),
                    var("EMPORIUM_CART_URL", local("cart")),
                    var("EMPORIUM_CATALOG_URL", local("catalog")),
                ],
                "payments" => vec![
                    db(name),
                    var("EMPORIUM_PAYMENT_PROVIDER", "sandbox".into()),
                    var("EMPORIUM_STRIPE_WEBHOOK_SECRET", "whsec_test".into()),
                    var("EMPORIUM_PUBLIC_URL", local("payments")),
                    // Outcomes whose webhook died with the process are
                    // asked about a second on.
                    var("EMPORIUM_PAYMENTS_RECHECK_AFTER_SECS", "1".into()),
                ],
                "notifications" => vec![db(name)],
                _ => vec![
                    var(
                        "EMPORIUM_UPSTREAMS",
                        SERVICES[..6]
                            .iter()
                            .map(|s| format!("{s}={}", local(s)))
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                    var("EMPORIUM_LOGIN_RATE_LIMIT_PER_MINUTE", "100000".into()),
                    var("EMPORIUM_LOGIN_RATE_LIMIT_BURST", "100000".into()),
                ],
            });
            services.push(Service {
                name,
                port: ports[name],
                env,
                log: dir.join(format!("{name}.log")),
                child: None,
            });
        }
        let mut shop = Shop {
            services,
            gateway: local("gateway"),
            http: reqwest::Client::new(),
        };
        // Identity first: the others read its keys.
        shop.services[0].start();
        shop.services[0].ready(&shop.http).await;
        for service in &mut shop.services[1..] {
            service.start();
        }
        shop.ready().await;
        shop
    }

    async fn ready(&mut self) {
        for service in &mut self.services {
            service.ready(&self.http).await;
        }
    }

    fn service(&mut self, name: &str) -> &mut Service {
        self.services.iter_mut().find(|s| s.name == name).unwrap()
    }

    /// The tail of every log, to read when something failed.
    fn logs(&self) -> String {
        let mut all = String::new();
        for s in &self.services {
            let text = std::fs::read_to_string(&s.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            all.push_str(&format!("--- {} ---\n", s.name));
            for line in tail.into_iter().rev() {
                all.push_str(line);
                all.push('\n');
            }
        }
        all
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        for s in &mut self.services {
            s.kill();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// A request sent until the shop answers it with something other than a
/// 5xx (a killed service behind the gateway), for up to a minute.
async fn until_answered(
    http: &reqwest::Client,
    make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(res) = make(http).send().await {
            let status = res.status().as_u16();
            if status < 500 {
                return (status, res.json().await.unwrap_or(Value::Null));
            }
        }

        assert!(Instant::now() < deadline, "no answer for a minute");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sign_in(http: &reqwest::Client, base: &str, email: &str, password: &str) -> String {
    let (status, tokens) = until_answered(http, |h| {
        h.post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"email": email, "password": password}))
    })
    .await;
    assert_eq!(status, 200, "{tokens}");
    tokens["access_token"].as_str().unwrap().to_owned()
}

/// A customer who fills the cart and checks out with a test card, sending
/// each request again while a service is down (the same Idempotency-Key
/// for the order).
async fn checkout(
    http: reqwest::Client,
    base: String,
    n: usize,
    product: String,
) -> (String, String) {
    let email = format!("customer{n}@example.com");
    let password = "correct horse battery";
    let (status, body) = until_answered(&http, |h| {
        h.post(format!("{base}/api/v1/auth/register"))
            .json(&json!({"email": email, "password": password, "name": "Customer"}))
    })
    .await;
    assert!(status == 201 || status == 409, "{status} {body}");
    let token = sign_in(&http, &base, &email, password).await;
    let (status, cart) = until_answered(&http, |h| {
        h.post(format!("{base}/api/v1/cart/items"))
            .bearer_auth(&token)
            .json(&json!({"product_id": product, "quantity": 1}))
    })
    .await;
    assert_eq!(status, 200, "{cart}");
    // An add the kill answered with a 5xx may have been kept: one unit, however
    // often it was sent.
    let (status, cart) = until_answered(&http, |h| {
        h.put(format!("{base}/api/v1/cart/items/{product}"))
            .bearer_auth(&token)
            .json(&json!({"quantity": 1}))
    })
    .await;
    assert_eq!(status, 200, "{cart}");
    let key = uuid::Uuid::now_v7().to_string();
    let (status, order) = until_answered(&http, |h| {
        h.post(format!("{base}/api/v1/orders"))
            .bearer_auth(&token)
            .header("Idempotency-Key", &key)
            .json(&json!({
                "shipping_address": {"name": "Customer", "line1": "1 Analytical Way",
                    "city": "London", "postal_code": "N1 9GU", "country": "GB"},
                "payment_method": "pm_card_visa"
            }))
    })
    .await;
    // 200: placed by a request whose answer the kill cut off.
    assert!(status == 201 || status == 200, "{status} {order}");
    (order["id"].as_str().unwrap().to_owned(), token)
}

#[tokio::test]
async fn services_killed_mid_checkout_lose_no_order_and_charge_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let backends = Backends::new(dir.path()).await;
    let mut shop = Shop::start(dir.path(), &backends).await;
    let http = shop.http.clone();
    let base = shop.gateway.clone();

    let admin = sign_in(&http, &base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let category: Value = http
        .post(format!("{base}/api/v1/categories"))
        .bearer_auth(&admin)
        .json(&json!({"name": "Kitchen", "slug": "kitchen", "description": "Pots and pans."}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let res = http
        .post(format!("{base}/api/v1/products"))
        .bearer_auth(&admin)
        .json(&json!({
            "sku": "POT-1", "name": "Cast Iron Pot", "description": "Heavy.",
            "price": {"amount": 4_500, "currency": "USD"}, "stock": STOCK,
            "category_id": category["id"], "images": [], "is_active": true,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let product: Value = res.json().await.unwrap();
    let product_id = product["id"].as_str().unwrap().to_owned();

    // Customers arrive one every 150 ms; two rounds of kills land among them.
    let customers: Vec<_> = (0..CUSTOMERS)
        .map(|n| {
            let (http, base, product) = (http.clone(), base.clone(), product_id.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(150 * n as u64)).await;
                checkout(http, base, n, product).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for name in ["orders", "catalog"] {
        shop.service(name).kill();
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    for name in ["orders", "catalog"] {
        shop.service(name).start();
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    for name in ["payments", "cart", "notifications"] {
        shop.service(name).kill();
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    for name in ["payments", "cart", "notifications"] {
        shop.service(name).start();
    }
    shop.ready().await;
    let mut placed = Vec::new();
    for customer in customers {
        placed.push(customer.await.expect("a customer gave up"));
    }

    books::every_order_confirmed_charged_and_told_once(&http, &base, &placed).await;
    let product: Value = http
        .get(format!("{base}/api/v1/products/{product_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        product["stock"].as_i64(),
        Some(STOCK - CUSTOMERS as i64),
        "each order took its unit once: {product}"
    );
    let out = Command::new(BIN)
        .args(["dlq", "list"])
        .env("EMPORIUM_BUS_URL", &backends.bus)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(listed.contains("no dead letters"), "{listed}");
}
