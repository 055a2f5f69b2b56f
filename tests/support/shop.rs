//! A whole shop (identity behind the gateway) on random loopback ports,
//! built from the same code `emporium up` and `serve` run.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gateway::rate_limit::Allowance;
use kit::config::DatabaseUrl;
use kit::db::Database;
use kit::events::EventBus;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Backends;

pub struct ShopOptions {
    pub identity: identity::Settings,
    pub rate: Allowance,
    pub login_rate: Allowance,
    pub upstream_timeout: Duration,
    /// Extra upstreams and routes for gateway tests (`prefix=service:access`).
    pub extra_upstreams: BTreeMap<String, url::Url>,
    pub extra_routes: Vec<String>,
    /// Start every service (catalog, cart, orders, payments,
    /// notifications), not only identity and the gateway.
    pub full: bool,
    pub payment_timeout: Duration,
    pub smtp: Option<notifications::smtp::SmtpUrl>,
    /// How often the sandbox delivers a webhook twice.
    pub duplicate_webhooks: f64,
}

impl Default for ShopOptions {
    fn default() -> Self {
        Self {
            identity: identity::Settings::default(),
            rate: Allowance {
                per_second: 10_000.0,
                burst: 10_000,
            },
            login_rate: Allowance {
                per_second: 10_000.0,
                burst: 10_000,
            },
            upstream_timeout: Duration::from_secs(10),
            extra_upstreams: BTreeMap::new(),
            extra_routes: vec![],
            full: false,
            payment_timeout: Duration::from_secs(15 * 60),
            smtp: None,
            duplicate_webhooks: 0.2,
        }
    }
}

impl ShopOptions {
    /// Every service, with an admin account `admin@example.com` /
    /// [`ADMIN_PASSWORD`].
    pub fn full() -> Self {
        Self {
            full: true,
            identity: identity::Settings {
                admin: Some((ADMIN_EMAIL.into(), ADMIN_PASSWORD.into())),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin password 123";

/// Handles on the services of a full shop, for assertions behind the API.
pub struct Services {
    pub catalog: catalog::AppState,
    pub orders: orders::AppState,
    pub payments: payments::AppState,
    pub notifications: notifications::AppState,
}

pub struct Identity {
    pub url: url::Url,
    pub db: Database,
    pub db_url: DatabaseUrl,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Identity {
    /// Stop serving and wait until the port is free again.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.server.await;
        self.db.close().await;
    }
}

pub struct Shop {
    pub services: Option<Services>,
    pub gateway: url::Url,
    pub identity: Option<Identity>,
    pub bus: EventBus,
    pub keys_dir: PathBuf,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for Shop {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(i) = &self.identity {
            i.shutdown.cancel();
        }
    }
}

pub async fn listen() -> (TcpListener, url::Url) {
    let l = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind a loopback port");
    let url = url::Url::parse(&format!("http://{}", l.local_addr().unwrap())).unwrap();
    (l, url)
}

/// Start identity on `db` with the keys in `keys_dir`.
pub async fn start_identity(
    backends: &Backends,
    db_url: &DatabaseUrl,
    bus: &EventBus,
    keys_dir: &std::path::Path,
    settings: identity::Settings,
    listen_on: Option<SocketAddr>,
) -> Identity {
    let db = Database::connect(db_url).await.expect("identity database");
    let keys = identity::keys::KeyRing::load_or_generate(keys_dir).expect("identity keys");
    let service = identity::Identity::build(
        settings,
        keys,
        identity::Backends {
            db: db.clone(),
            cache: backends.cache().await,
            bus: bus.clone(),
        },
    )
    .await
    .expect("identity starts");
    let shutdown = CancellationToken::new();
    service.spawn_workers(shutdown.clone());
    let (listener, url) = match listen_on {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .expect("rebind identity's port");
            (l, url::Url::parse(&format!("http://{addr}")).unwrap())
        }
        None => listen().await,
    };
    let server = tokio::spawn(kit::http::serve(listener, service.router, shutdown.clone()));
    Identity {
        url,
        db,
        db_url: db_url.clone(),
        shutdown,
        server,
    }
}

impl Shop {
    pub async fn start(backends: &Backends, options: ShopOptions) -> Shop {
        let bus = backends.bus().await;
        let keys_dir = backends.dir.path().join("keys");
        let db_url = backends.database_url("identity").await;
        let identity = start_identity(
            backends,
            &db_url,
            &bus,
            &keys_dir,
            options.identity.clone(),
            None,
        )
        .await;
        let mut upstreams = options.extra_upstreams.clone();
        upstreams.insert("identity".into(), identity.url.clone());
        let shutdown = CancellationToken::new();
        let services = if options.full {
            Some(
                start_services(
                    backends,
                    &bus,
                    &identity,
                    &options,
                    &mut upstreams,
                    &shutdown,
                )
                .await,
            )
        } else {
            None
        };
        let mut routes = gateway::routes::DEFAULT_ROUTES.to_string();
        for r in &options.extra_routes {
            routes.push(',');
            routes.push_str(r);
        }
        let gateway = gateway::Gateway::build(
            gateway::Settings {
                routes: gateway::routes::RouteTable::parse(&routes).expect("routes"),
                upstreams,
                jwks_url: identity.url.join("/.well-known/jwks.json").unwrap(),
                jwt_issuer: "emporium-identity".into(),
                jwt_audience: "emporium".into(),
                rate: options.rate,
                login_rate: options.login_rate,
                shared_rate_limits: true,
                upstream_timeout: options.upstream_timeout,
                cors_allowed_origins: vec!["https://shop.example".into()],
                trust_forwarded_for: false,
                request_timeout: Duration::from_secs(30),
                body_limit_bytes: 1024 * 1024,
                edge_cache_bytes: 16 * 1024 * 1024,
            },
            &backends.cache().await,
        );
        gateway.spawn_workers(shutdown.clone());
        let (listener, gateway_url) = listen().await;
        tokio::spawn(kit::http::serve(listener, gateway.router, shutdown.clone()));
        Shop {
            services,
            gateway: gateway_url,
            identity: Some(identity),
            bus,
            keys_dir,
            http: reqwest::Client::new(),
            shutdown,
        }
    }

    pub fn identity(&self) -> &Identity {
        self.identity.as_ref().expect("identity is running")
    }

    /// Restart identity on the same port and database (after a key
    /// rotation, say).
    pub async fn restart_identity(&mut self, backends: &Backends, settings: identity::Settings) {
        let old = self.identity.take().expect("identity is running");
        let addr: SocketAddr = format!(
            "{}:{}",
            old.url.host_str().unwrap(),
            old.url.port().unwrap()
        )
        .parse()
        .unwrap();
        let db_url = old.db_url.clone();
        old.stop().await;
        self.identity = Some(
            start_identity(
                backends,
                &db_url,
                &self.bus,
                &self.keys_dir,
                settings,
                Some(addr),
            )
            .await,
        );
    }

    pub fn url(&self, path: &str) -> String {
        self.gateway.join(path).unwrap().to_string()
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub async fn register(&self, email: &str, password: &str) -> serde_json::Value {
        let res = self
            .post(
                "/api/v1/auth/register",
                serde_json::json!({"email": email, "password": password, "name": "Test User"}),
            )
            .await;
        assert_eq!(res.status(), 201, "register {email}");
        res.json().await.unwrap()
    }

    /// Sign in; returns (access token, refresh token).
    pub async fn login(&self, email: &str, password: &str) -> (String, String) {
        let res = self
            .post(
                "/api/v1/auth/login",
                serde_json::json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(res.status(), 200, "login {email}");
        let body: serde_json::Value = res.json().await.unwrap();
        (
            body["access_token"].as_str().unwrap().to_string(),
            body["refresh_token"].as_str().unwrap().to_string(),
        )
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }
}

/// Start catalog, cart, orders, payments and notifications on loopback,
/// each on its own database, all on the test's bus, and add them to the
/// gateway's upstreams.
async fn start_services(
    backends: &Backends,
    bus: &EventBus,
    identity: &Identity,
    options: &ShopOptions,
    upstreams: &mut BTreeMap<String, url::Url>,
    shutdown: &CancellationToken,
) -> Services {
    let verifier = std::sync::Arc::new(kit::auth::TokenVerifier::from_jwks_url(
        identity.url.join("/.well-known/jwks.json").unwrap(),
        "emporium-identity",
        "emporium",
    ));
    let mut serve = |name: &str, listener: TcpListener, url: url::Url, router: axum::Router| {
        tokio::spawn(kit::http::serve(listener, router, shutdown.clone()));
        upstreams.insert(name.to_string(), url);
    };

    let catalog = catalog::Catalog::build(
        catalog::Settings::default(),
        verifier.clone(),
        catalog::Backends {
            db: backends.database("catalog").await,
            cache: backends.cache().await,
            bus: bus.clone(),
        },
    )
    .await
    .expect("catalog starts");
    catalog
        .spawn_workers(shutdown.clone())
        .await
        .expect("catalog workers");
    let (listener, catalog_url) = listen().await;
    let catalog_state = catalog.state.clone();
    serve("catalog", listener, catalog_url.clone(), catalog.router);

    let store = match &backends.set {
        crate::BackendSet::Real { redis, .. } => {
            cart::StoreBackend::connect(&cart::StoreUrl::Redis(redis.clone()))
                .await
                .expect("cart store")
        }
        crate::BackendSet::Embedded => cart::StoreBackend::Sql(backends.database("cart").await),
    };
    let cart = cart::Cart::build(
        cart::Settings {
            key_prefix: backends.tag.clone(),
            ..Default::default()
        },
        verifier.clone(),
        store,
        catalog_url.clone(),
    )
    .await
    .expect("cart starts");
    cart.spawn_workers(shutdown.clone());
    cart.subscribe(bus, shutdown.clone())
        .await
        .expect("cart subscribes");
    let (listener, cart_url) = listen().await;
    serve("cart", listener, cart_url.clone(), cart.router);

    let orders = orders::Orders::build(
        orders::Settings {
            payment_timeout: options.payment_timeout,
            timeout_sweep_every: Duration::from_millis(200),
            ..Default::default()
        },
        verifier.clone(),
        orders::PeerUrls {
            cart: cart_url,
            catalog: catalog_url,
        },
        orders::Backends {
            db: backends.database("orders").await,
            bus: bus.clone(),
        },
    )
    .await
    .expect("orders starts");
    orders
        .spawn_workers(shutdown.clone())
        .await
        .expect("orders workers");
    let (listener, orders_url) = listen().await;
    let orders_state = orders.state.clone();
    serve("orders", listener, orders_url, orders.router);

    let (listener, payments_url) = listen().await;
    let payments = payments::Payments::build(
        payments::Settings {
            public_url: Some(payments_url.clone()),
            sandbox: payments::SandboxSettings {
                duplicate_probability: options.duplicate_webhooks,
                delay: Duration::from_millis(20),
            },
            ..Default::default()
        },
        verifier.clone(),
        payments::Backends {
            db: backends.database("payments").await,
            bus: bus.clone(),
        },
    )
    .await
    .expect("payments starts");
    payments
        .spawn_workers(shutdown.clone())
        .await
        .expect("payments workers");
    let payments_state = payments.state.clone();
    serve("payments", listener, payments_url, payments.router);

    let notifications = notifications::Notifications::build(
        notifications::Settings {
            smtp: options.smtp.clone(),
            ..Default::default()
        },
        verifier,
        notifications::Backends {
            db: backends.database("notifications").await,
            bus: bus.clone(),
        },
    )
    .await
    .expect("notifications starts");
    notifications
        .spawn_workers(shutdown.clone())
        .await
        .expect("notifications workers");
    let (listener, notifications_url) = listen().await;
    let notifications_state = notifications.state.clone();
    serve(
        "notifications",
        listener,
        notifications_url,
        notifications.router,
    );

    Services {
        catalog: catalog_state,
        orders: orders_state,
        payments: payments_state,
        notifications: notifications_state,
    }
}
