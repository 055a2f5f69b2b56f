//! `emporium serve <service>` and `emporium migrate <service>`: one service
//! against real backends, configured by flags or environment.

use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use kit::auth::TokenVerifier;
use kit::cache::Cache;
use kit::config::{BusUrl, DatabaseUrl};
use kit::db::Database;
use kit::events::{EventBus, Topology};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Subcommand)]
pub enum Service {
    /// Accounts, sign-in, tokens, roles, JWKS.
    Identity(Box<identity::IdentityConfig>),
    /// Products, categories, reviews, search, stock.
    Catalog(Box<catalog::CatalogConfig>),
    /// Shopping carts (signed-in and guest).
    Cart(Box<cart::CartConfig>),
    /// Checkout and the order lifecycle.
    Orders(Box<orders::OrdersConfig>),
    /// Charges and refunds through the payment provider; provider webhooks.
    Payments(Box<payments::PaymentsConfig>),
    /// Emails and the in-app feed.
    Notifications(Box<notifications::NotificationsConfig>),
    /// The single entry point: routing, edge auth, rate limits, API docs.
    Gateway(Box<gateway::GatewayConfig>),
}

impl Service {
    pub fn name(&self) -> &'static str {
        match self {
            Service::Identity(_) => "identity",
            Service::Catalog(_) => "catalog",
            Service::Cart(_) => "cart",
            Service::Orders(_) => "orders",
            Service::Payments(_) => "payments",
            Service::Notifications(_) => "notifications",
            Service::Gateway(_) => "gateway",
        }
    }
}

/// The database a `migrate` verb works on.
#[derive(clap::Args)]
pub struct MigrateArgs {
    /// PostgreSQL or SQLite URL of the service's database.
    #[arg(long, env = "EMPORIUM_DATABASE_URL", value_name = "EMPORIUM_DATABASE_URL", value_parser = kit::config::parse_database_url, hide_env_values = true)]
    database_url: DatabaseUrl,
}

#[derive(Subcommand)]
pub enum MigrateService {
    /// Migrate identity's database.
    Identity(MigrateArgs),
    /// Migrate catalog's database.
    Catalog(MigrateArgs),
    /// Migrate the cart's SQL store (only when carts are kept in SQL).
    Cart(MigrateArgs),
    /// Migrate orders' database.
    Orders(MigrateArgs),
    /// Migrate payments' database.
    Payments(MigrateArgs),
    /// Migrate notifications' database.
    Notifications(MigrateArgs),
}

pub async fn migrate(service: MigrateService) -> anyhow::Result<()> {
    let (name, args, postgres, sqlite) = match &service {
        MigrateService::Identity(a) => (
            "identity",
            a,
            &identity::storage::POSTGRES_MIGRATIONS,
            &identity::storage::SQLITE_MIGRATIONS,
        ),
        MigrateService::Catalog(a) => (
            "catalog",
            a,
            &catalog::storage::POSTGRES_MIGRATIONS,
            &catalog::storage::SQLITE_MIGRATIONS,
        ),
        MigrateService::Cart(a) => (
            "cart",
            a,
            &cart::store::sql::POSTGRES_MIGRATIONS,
            &cart::store::sql::SQLITE_MIGRATIONS,
        ),
        MigrateService::Orders(a) => (
            "orders",
            a,
            &orders::storage::POSTGRES_MIGRATIONS,
            &orders::storage::SQLITE_MIGRATIONS,
        ),
        MigrateService::Payments(a) => (
            "payments",
            a,
            &payments::storage::POSTGRES_MIGRATIONS,
            &payments::storage::SQLITE_MIGRATIONS,
        ),
        MigrateService::Notifications(a) => (
            "notifications",
            a,
            &notifications::storage::POSTGRES_MIGRATIONS,
            &notifications::storage::SQLITE_MIGRATIONS,
        ),
    };
    let db = Database::connect(&args.database_url)
        .await
        .context("EMPORIUM_DATABASE_URL")?;
    db.migrate(postgres, sqlite).await?;
    kit::events::ensure_schema(&db).await?;
    println!("{name}: migrations applied");
    Ok(())
}

async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("EMPORIUM_LISTEN: cannot listen on {addr}"))
}

async fn database(url: &DatabaseUrl) -> anyhow::Result<Database> {
    Database::connect(url)
        .await
        .context("EMPORIUM_DATABASE_URL")
}

async fn bus(url: &BusUrl) -> anyhow::Result<EventBus> {
    EventBus::connect(url, Topology::default())
        .await
        .context("EMPORIUM_BUS_URL")
}

fn verifier(tokens: &kit::config::TokenArgs) -> Arc<TokenVerifier> {
    Arc::new(TokenVerifier::from_jwks_url(
        tokens.jwks_url.clone(),
        &tokens.jwt_issuer,
        &tokens.jwt_audience,
    ))
}

pub async fn run(service: Service) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            kit::http::shutdown_signal().await;
            tracing::info!("shutting down");
            shutdown.cancel();
        });
    }
    let name = service.name();
    let (listen, router, workers): (_, axum::Router, Vec<JoinHandle<()>>) = match service {
        Service::Identity(config) => {
            let keys = config.key_ring().map_err(anyhow::Error::msg)?;
            let backends = identity::Backends {
                db: database(&config.database_url).await?,
                cache: Cache::connect(&config.cache_url, "emporium")
                    .await
                    .context("EMPORIUM_CACHE_URL")?,
                bus: bus(&config.bus_url).await?,
            };
            let service = identity::Identity::build(config.settings(), keys, backends).await?;
            let workers = service.spawn_workers(shutdown.clone());
            (config.http.listen, service.router, workers)
        }
        Service::Catalog(config) => {
            let backends = catalog::Backends {
                db: database(&config.database_url).await?,
                cache: Cache::connect(&config.cache_url, "emporium")
                    .await
                    .context("EMPORIUM_CACHE_URL")?,
                bus: bus(&config.bus_url).await?,
            };
            let service =
                catalog::Catalog::build(config.settings(), verifier(&config.tokens), backends)
                    .await?;
            let workers = service.spawn_workers(shutdown.clone()).await?;
            (config.http.listen, service.router, workers)
        }
        Service::Cart(config) => {
            let store = cart::StoreBackend::connect(&config.store_url)
                .await
                .context("EMPORIUM_CART_STORE_URL")?;
            let events = bus(&config.bus_url).await?;
            let service = cart::Cart::build(
                config.settings(),
                config.verifier(),
                store,
                config.catalog_url.clone(),
            )
            .await?;
            let mut workers = service.spawn_workers(shutdown.clone());
            workers.extend(service.subscribe(&events, shutdown.clone()).await?);
            (config.http.listen, service.router, workers)
        }
        Service::Orders(config) => {
            let backends = orders::Backends {
                db: database(&config.database_url).await?,
                bus: bus(&config.bus_url).await?,
            };
            let peers = orders::PeerUrls {
                cart: config.cart_url.clone(),
                catalog: config.catalog_url.clone(),
            };
            let service =
                orders::Orders::build(config.settings(), verifier(&config.tokens), peers, backends)
                    .await?;
            let workers = service.spawn_workers(shutdown.clone()).await?;
            (config.http.listen, service.router, workers)
        }
        Service::Payments(config) => {
            let settings = config.settings().map_err(anyhow::Error::msg)?;
            let backends = payments::Backends {
                db: database(&config.database_url).await?,
                bus: bus(&config.bus_url).await?,
            };
            let service =
                payments::Payments::build(settings, verifier(&config.tokens), backends).await?;
            let workers = service.spawn_workers(shutdown.clone()).await?;
            (config.http.listen, service.router, workers)
        }
        Service::Notifications(config) => {
            let backends = notifications::Backends {
                db: database(&config.database_url).await?,
                bus: bus(&config.bus_url).await?,
            };
            let service = notifications::Notifications::build(
                config.settings(),
                Arc::new(config.verifier()),
                backends,
            )
            .await?;
            let workers = service.spawn_workers(shutdown.clone()).await?;
            (config.http.listen, service.router, workers)
        }
        Service::Gateway(config) => {
            let cache = Cache::connect(&config.cache_url, "emporium")
                .await
                .context("EMPORIUM_CACHE_URL")?;
            let mut settings = gateway::Settings::from_config(&config);
            if !cache.is_redis() && settings.edge_cache_bytes > 0 {
                // A process-private cache never sees the services' generations.
                tracing::info!(
                    "edge cache off: it needs EMPORIUM_CACHE_URL=redis://… shared with the services"
                );
                settings.edge_cache_bytes = 0;
            }
            let gateway = gateway::Gateway::build(settings, &cache);
            let workers = gateway.spawn_workers(shutdown.clone());
            (config.http.listen, gateway.router, workers)
        }
    };
    let listener = bind(listen).await?;
    tracing::info!(service = name, addr = %listen, "listening");
    kit::http::serve(listener, router, shutdown).await?;
    futures_join(workers).await;
    Ok(())
}

pub async fn futures_join(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}
