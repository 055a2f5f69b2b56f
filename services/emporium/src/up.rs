//! `emporium up`: the whole shop in one process, on embedded backends under
//! a data directory, with a demo admin and a demo catalogue. Each service
//! still listens on its own loopback port behind the gateway, exactly as in
//! a cluster, and their events wait in a SQLite file (`bus.db`) until handled,
//! as they would in RabbitMQ's durable queues.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use kit::cache::Cache;
use kit::config::DatabaseUrl;
use kit::db::Database;
use kit::events::EventBus;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::serve::futures_join;

#[derive(clap::Args)]
pub struct UpArgs {
    /// Directory for the shop's data (SQLite files, keys, demo credentials).
    #[arg(
        long,
        env = "EMPORIUM_DATA_DIR",
        value_name = "EMPORIUM_DATA_DIR",
        default_value = ".emporium"
    )]
    data_dir: PathBuf,
    /// Port of the gateway.
    #[arg(
        long,
        env = "EMPORIUM_PORT",
        value_name = "EMPORIUM_PORT",
        default_value_t = 8080
    )]
    port: u16,
    /// Address the gateway listens on.
    #[arg(
        long,
        env = "EMPORIUM_HOST",
        value_name = "EMPORIUM_HOST",
        default_value = "127.0.0.1"
    )]
    host: IpAddr,
    /// Send emails through this SMTP server (e.g. smtp://127.0.0.1:1025?tls=none);
    /// without it notifications are kept for the in-app feed only.
    #[arg(long, env = "EMPORIUM_SMTP_URL", value_name = "EMPORIUM_SMTP_URL", value_parser = notifications::smtp::parse_smtp_url)]
    smtp_url: Option<notifications::smtp::SmtpUrl>,
    /// Seconds an order may wait for its payment before it is cancelled.
    #[arg(long, env = "EMPORIUM_PAYMENT_TIMEOUT_SECS", value_name = "EMPORIUM_PAYMENT_TIMEOUT_SECS", default_value = "900", value_parser = kit::config::parse_positive_secs)]
    payment_timeout: Duration,
    /// Seconds after which a charge or refund whose outcome (the sandbox's
    /// webhook) never arrived, say because the shop stopped, is asked about.
    #[arg(long, env = "EMPORIUM_PAYMENTS_RECHECK_AFTER_SECS", value_name = "EMPORIUM_PAYMENTS_RECHECK_AFTER_SECS", default_value = "120", value_parser = payments::config::parse_positive_secs)]
    payments_recheck_after: Duration,
    #[command(flatten)]
    rate_limits: gateway::config::RateLimitArgs,
}

const ADMIN_EMAIL: &str = "admin@emporium.local";

/// The demo admin's password: made once, kept in the data directory.
fn demo_admin_password(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("admin-password");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_string();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    let bytes: [u8; 12] = rand::random();
    let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    std::fs::write(&path, &password).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(password)
}

async fn loopback() -> anyhow::Result<(TcpListener, url::Url)> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let url = url::Url::parse(&format!("http://{}", listener.local_addr()?))?;
    Ok((listener, url))
}

async fn sqlite(data_dir: &Path, name: &str) -> anyhow::Result<Database> {
    let path = data_dir.join(format!("{name}.db"));
    Database::connect(&DatabaseUrl::sqlite_file(&path))
        .await
        .with_context(|| format!("cannot open {}", path.display()))
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let dir = args.data_dir.as_path();
    let shutdown = CancellationToken::new();
    // Events wait in a file, so a stop or a crash loses none of them.
    let bus = EventBus::connect(
        &kit::config::BusUrl::sqlite_file(&dir.join("bus.db")),
        kit::events::Topology::default(),
    )
    .await
    .with_context(|| format!("cannot open the event file in {}", dir.display()))?;
    let cache = Cache::memory("emporium");
    let mut servers = Vec::new();
    let mut workers = Vec::new();
    let mut upstreams = BTreeMap::new();
    let mut serve = |name: &str, listener: TcpListener, url: url::Url, router: axum::Router| {
        servers.push(tokio::spawn(kit::http::serve(
            listener,
            router,
            shutdown.clone(),
        )));
        upstreams.insert(name.to_string(), url);
    };

    // identity
    let password = demo_admin_password(dir)?;
    let keys = identity::keys::KeyRing::load_or_generate(&dir.join("identity").join("keys"))?;
    let identity = identity::Identity::build(
        identity::Settings {
            admin: Some((ADMIN_EMAIL.to_string(), password.clone())),
            ..Default::default()
        },
        keys,
        identity::Backends {
            db: sqlite(dir, "identity").await?,
            cache: cache.clone(),
            bus: bus.clone(),
        },
    )
    .await?;
    // Every service verifies tokens with identity's keys, in process.
    let verifier = identity.state.verifier.clone();
    workers.extend(identity.spawn_workers(shutdown.clone()));
    let (listener, identity_url) = loopback().await?;
    serve("identity", listener, identity_url.clone(), identity.router);

    // catalog, with a demo catalogue on first start
    let catalog = catalog::Catalog::build(
        catalog::Settings::default(),
        verifier.clone(),
        catalog::Backends {
            db: sqlite(dir, "catalog").await?,
            cache: cache.clone(),
            bus: bus.clone(),
        },
    )
    .await?;
    catalog::demo::seed(&catalog.state)
        .await
        .context("seeding the demo catalogue")?;
    workers.extend(catalog.spawn_workers(shutdown.clone()).await?);
    let (listener, catalog_url) = loopback().await?;
    serve("catalog", listener, catalog_url.clone(), catalog.router);

    // cart
    let cart = cart::Cart::build(
        cart::Settings::default(),
        verifier.clone(),
        cart::StoreBackend::Sql(sqlite(dir, "cart").await?),
        catalog_url.clone(),
    )
    .await?;
    workers.extend(cart.spawn_workers(shutdown.clone()));
    workers.extend(cart.subscribe(&bus, shutdown.clone()).await?);
    let (listener, cart_url) = loopback().await?;
    serve("cart", listener, cart_url.clone(), cart.router);

    // orders
    let orders = orders::Orders::build(
        orders::Settings {
            payment_timeout: args.payment_timeout,
            ..Default::default()
        },
        verifier.clone(),
        orders::PeerUrls {
            cart: cart_url,
            catalog: catalog_url,
        },
        orders::Backends {
            db: sqlite(dir, "orders").await?,
            bus: bus.clone(),
        },
    )
    .await?;
    workers.extend(orders.spawn_workers(shutdown.clone()).await?);
    let (listener, orders_url) = loopback().await?;
    serve("orders", listener, orders_url, orders.router);

    // payments: the sandbox provider posts its signed webhooks back to it
    let (payments_listener, payments_url) = loopback().await?;
    let payments = payments::Payments::build(
        payments::Settings {
            public_url: Some(payments_url.clone()),
            recheck_after: args.payments_recheck_after,
            ..Default::default()
        },
        verifier.clone(),
        payments::Backends {
            db: sqlite(dir, "payments").await?,
            bus: bus.clone(),
        },
    )
    .await?;
    workers.extend(payments.spawn_workers(shutdown.clone()).await?);
    serve("payments", payments_listener, payments_url, payments.router);

    // notifications
    let emails = args.smtp_url.is_some();
    let notifications = notifications::Notifications::build(
        notifications::Settings {
            smtp: args.smtp_url.clone(),
            ..Default::default()
        },
        verifier.clone(),
        notifications::Backends {
            db: sqlite(dir, "notifications").await?,
            bus: bus.clone(),
        },
    )
    .await?;
    workers.extend(notifications.spawn_workers(shutdown.clone()).await?);
    let (listener, notifications_url) = loopback().await?;
    serve(
        "notifications",
        listener,
        notifications_url,
        notifications.router,
    );

    // gateway
    let addr = SocketAddr::new(args.host, args.port);
    let gateway = gateway::Gateway::build(
        gateway::Settings {
            routes: gateway::routes::RouteTable::parse(gateway::routes::DEFAULT_ROUTES)
                .map_err(anyhow::Error::msg)?,
            jwks_url: identity_url.join("/.well-known/jwks.json")?,
            upstreams,
            jwt_issuer: "emporium-identity".into(),
            jwt_audience: "emporium".into(),
            rate: args.rate_limits.general(),
            login_rate: args.rate_limits.sign_in(),
            shared_rate_limits: true,
            upstream_timeout: Duration::from_secs(15),
            cors_allowed_origins: vec![],
            trust_forwarded_for: false,
            request_timeout: Duration::from_secs(30),
            body_limit_bytes: 1024 * 1024,
            edge_cache_bytes: 64 * 1024 * 1024,
        },
        &cache,
    );
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} (is another shop running? try --port)")
    })?;
    workers.extend(gateway.spawn_workers(shutdown.clone()));
    servers.push(tokio::spawn(kit::http::serve(
        listener,
        gateway.router,
        shutdown.clone(),
    )));

    println!("Emporium is up.");
    println!("  Shop API:   http://{addr}/api/v1/…");
    println!("  API docs:   http://{addr}/api/docs");
    println!("  Demo admin: {ADMIN_EMAIL} / {password}");
    println!("  Payments:   sandbox (test cards pm_card_visa, pm_card_chargeDeclined, …)");
    if emails {
        println!("  Emails:     sent through the SMTP server given");
    } else {
        println!(
            "  Emails:     kept in the in-app feed (GET /api/v1/notifications); --smtp-url sends them"
        );
    }
    println!(
        "  Data:       {} (delete it to start afresh)",
        dir.display()
    );
    println!("Press Ctrl-C to stop.");

    kit::http::shutdown_signal().await;
    println!("Stopping…");
    shutdown.cancel();
    for s in servers {
        let _ = s.await;
    }
    futures_join(workers).await;
    Ok(())
}
