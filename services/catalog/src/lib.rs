//! The catalog service: categories, products, listing and search, reviews,
//! and a cache in front of the public reads.

pub mod cache;
pub mod categories;
pub mod config;
pub mod demo;
pub mod domain;
pub mod error;
pub mod events;
pub mod products;
pub mod reviews;
pub mod routes;
pub mod stock;
pub mod storage;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use kit::auth::TokenVerifier;
use kit::cache::Cache;
use kit::db::Database;
use kit::events::{EventBus, Outbox, OutboxRelay};
use kit::health::ReadinessCheck;
use tokio_util::sync::CancellationToken;

/// How often the facet count rows appended by product writes are folded
/// together (PostgreSQL); between times a listing sums a few more rows.
const FACET_COMPACTION_INTERVAL: Duration = Duration::from_secs(30);

pub use cache::{CacheMode, CatalogCache};
pub use config::CatalogConfig;

/// The permission admin writes need (identity grants it to `admin`).
pub const MANAGE: &str = "catalog:manage";
/// The permission reviewing needs (identity grants it to `customer`).
pub const REVIEW: &str = "reviews:write";

/// Tunables of the catalog service, independent of where they came from.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Cache product pages and listings (`off` for benchmarking the database).
    pub cache: CacheMode,
    /// How long a cached response lives.
    pub cache_ttl: Duration,
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cache: CacheMode::On,
            cache_ttl: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            body_limit_bytes: 1024 * 1024,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub db: Database,
    pub outbox: Outbox,
    pub cache: CatalogCache,
    pub verifier: Arc<TokenVerifier>,
    pub settings: Arc<Settings>,
}

impl FromRef<AppState> for Arc<TokenVerifier> {
    fn from_ref(s: &AppState) -> Self {
        s.verifier.clone()
    }
}

/// The backends the catalog runs on.
pub struct Backends {
    pub db: Database,
    pub cache: Cache,
    pub bus: EventBus,
}

/// A built catalog service: its router and its background work.
pub struct Catalog {
    pub state: AppState,
    pub router: axum::Router,
    bus: EventBus,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] kit::db::DbError),
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("event bus: {0}")]
    Bus(String),
}

impl Catalog {
    /// Migrate and assemble the router. `verifier` checks access tokens
    /// against identity's JWKS.
    pub async fn build(
        settings: Settings,
        verifier: Arc<TokenVerifier>,
        backends: Backends,
    ) -> Result<Self, StartError> {
        let Backends { db, cache, bus } = backends;
        db.migrate(&storage::POSTGRES_MIGRATIONS, &storage::SQLITE_MIGRATIONS)
            .await?;
        kit::events::ensure_schema(&db).await?;
        let state = AppState {
            db: db.clone(),
            outbox: Outbox::new(),
            cache: CatalogCache::new(cache.scoped("catalog"), settings.cache, settings.cache_ttl),
            verifier,
            settings: Arc::new(settings),
        };
        state.cache.start_generation().await;
        let mut checks = vec![ReadinessCheck::database(&db), ReadinessCheck::events(&bus)];
        if state.cache.is_enabled() {
            checks.push(ReadinessCheck::cache(&cache));
        }
        let router = kit::http::with_standard_layers(
            routes::router(state.clone())
                .merge(kit::health::router(checks))
                .fallback(kit::http::not_found),
            "catalog",
            state.settings.request_timeout,
            state.settings.body_limit_bytes,
        );
        Ok(Self { state, router, bus })
    }

    /// Start the outbox relay and the saga consumers (stock reservation and
    /// release); they stop when `shutdown` is cancelled.
    pub async fn spawn_workers(
        &self,
        shutdown: CancellationToken,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, StartError> {
        let mut handles = stock::subscribe(&self.state, &self.bus, &shutdown)
            .await
            .map_err(StartError::Bus)?;
        let relay = OutboxRelay::new(
            self.state.db.clone(),
            self.bus.clone(),
            self.state.outbox.clone(),
        );
        handles.push(tokio::spawn(products::compact_facet_counts_every(
            self.state.db.clone(),
            FACET_COMPACTION_INTERVAL,
            shutdown.clone(),
        )));
        handles.push(tokio::spawn(relay.run(shutdown)));
        Ok(handles)
    }
}
