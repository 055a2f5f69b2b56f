//! `emporium serve <service>` and `emporium migrate <service>`: one service
//! against real backends, configured by flags or environment.

use anyhow::Context;
use clap::Subcommand;
use kit::cache::Cache;
use kit::db::Database;
use kit::events::{EventBus, Topology};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Subcommand)]
pub enum Service {
    /// Accounts, sign-in, tokens, roles, JWKS.
    Identity(Box<identity::IdentityConfig>),
    /// The single entry point: routing, edge auth, rate limits, API docs.
    Gateway(Box<gateway::GatewayConfig>),
}

impl Service {
    pub fn name(&self) -> &'static str {
        match self {
            Service::Identity(_) => "identity",
            Service::Gateway(_) => "gateway",
        }
    }
}

#[derive(Subcommand)]
pub enum MigrateService {
    /// Migrate identity's database.
    Identity {
        /// PostgreSQL or SQLite URL of identity's database.
        #[arg(long, env = "EMPORIUM_DATABASE_URL", value_name = "EMPORIUM_DATABASE_URL", value_parser = kit::config::parse_database_url, hide_env_values = true)]
        database_url: kit::config::DatabaseUrl,
    },
}

pub async fn migrate(service: MigrateService) -> anyhow::Result<()> {
    match service {
        MigrateService::Identity { database_url } => {
            let db = Database::connect(&database_url)
                .await
                .context("EMPORIUM_DATABASE_URL")?;
            db.migrate(
                &identity::storage::POSTGRES_MIGRATIONS,
                &identity::storage::SQLITE_MIGRATIONS,
            )
            .await?;
            kit::events::ensure_schema(&db).await?;
            println!("identity: migrations applied");
            Ok(())
        }
    }
}

async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("EMPORIUM_LISTEN: cannot listen on {addr}"))
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
    match service {
        Service::Identity(config) => {
            let keys = config.key_ring().map_err(anyhow::Error::msg)?;
            let db = Database::connect(&config.database_url)
                .await
                .context("EMPORIUM_DATABASE_URL")?;
            let cache = Cache::connect(&config.cache_url, "emporium")
                .await
                .context("EMPORIUM_CACHE_URL")?;
            let bus = EventBus::connect(&config.bus_url, Topology::default())
                .await
                .context("EMPORIUM_BUS_URL")?;
            let service = identity::Identity::build(
                config.settings(),
                keys,
                identity::Backends { db, cache, bus },
            )
            .await?;
            let workers = service.spawn_workers(shutdown.clone());
            let listener = bind(config.http.listen).await?;
            tracing::info!(addr = %config.http.listen, "identity listening");
            kit::http::serve(listener, service.router, shutdown).await?;
            futures_join(workers).await;
        }
        Service::Gateway(config) => {
            let cache = Cache::connect(&config.cache_url, "emporium")
                .await
                .context("EMPORIUM_CACHE_URL")?;
            let gateway = gateway::Gateway::build(gateway::Settings::from_config(&config), &cache);
            let workers = gateway.spawn_workers(shutdown.clone());
            let listener = bind(config.http.listen).await?;
            tracing::info!(addr = %config.http.listen, "gateway listening");
            kit::http::serve(listener, gateway.router, shutdown).await?;
            futures_join(workers).await;
        }
    }
    Ok(())
}

pub async fn futures_join(handles: Vec<tokio::task::JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}
