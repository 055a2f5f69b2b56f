//! The orders service: checkout, the order lifecycle, and the saga steps
//! that move an order from placed to confirmed or cancelled.

pub mod checkout;
pub mod clients;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod lifecycle;
pub mod routes;
pub mod storage;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use kit::auth::TokenVerifier;
use kit::db::Database;
use kit::events::{EventBus, Outbox, OutboxRelay};
use kit::health::ReadinessCheck;
use kit::watch::Watchers;
use tokio_util::sync::CancellationToken;

pub use config::OrdersConfig;
use domain::PricingPolicy;

#[derive(Debug, Clone)]
pub struct Settings {
    pub pricing: PricingPolicy,
    /// How long an order may wait for a successful payment.
    pub payment_timeout: Duration,
    pub timeout_sweep_every: Duration,
    /// A read waiting for its order to settle looks at the database again
    /// this often even without a notice (notices are lost while the
    /// database connection that hears them reconnects).
    pub settle_recheck: Duration,
    pub peer_timeout: Duration,
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            pricing: PricingPolicy::default(),
            payment_timeout: Duration::from_secs(15 * 60),
            timeout_sweep_every: Duration::from_secs(5),
            settle_recheck: Duration::from_secs(1),
            peer_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            body_limit_bytes: 1024 * 1024,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub db: Database,
    pub outbox: Outbox,
    pub verifier: Arc<TokenVerifier>,
    pub peers: clients::Peers,
    pub settings: Arc<Settings>,
    /// Readers waiting for an order to settle (`GET /orders/{id}?wait=`).
    pub status_watch: Arc<Watchers<uuid::Uuid, domain::OrderStatus>>,
}

impl FromRef<AppState> for Arc<TokenVerifier> {
    fn from_ref(s: &AppState) -> Self {
        s.verifier.clone()
    }
}

pub struct Backends {
    pub db: Database,
    pub bus: EventBus,
}

/// Where orders finds the services it asks synchronously.
pub struct PeerUrls {
    pub cart: url::Url,
    pub catalog: url::Url,
}

pub struct Orders {
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

impl Orders {
    pub async fn build(
        settings: Settings,
        verifier: Arc<TokenVerifier>,
        peers: PeerUrls,
        backends: Backends,
    ) -> Result<Self, StartError> {
        let Backends { db, bus } = backends;
        db.migrate(&storage::POSTGRES_MIGRATIONS, &storage::SQLITE_MIGRATIONS)
            .await?;
        kit::events::ensure_schema(&db).await?;
        let state = AppState {
            db: db.clone(),
            outbox: Outbox::new(),
            verifier,
            peers: clients::Peers::new(peers.cart, peers.catalog, settings.peer_timeout),
            settings: Arc::new(settings),
            status_watch: Watchers::new(),
        };
        let checks = vec![ReadinessCheck::database(&db), ReadinessCheck::events(&bus)];
        let router = kit::http::with_standard_layers(
            routes::router(state.clone())
                .merge(kit::health::router(checks))
                .fallback(kit::http::not_found),
            "orders",
            state.settings.request_timeout,
            state.settings.body_limit_bytes,
        );
        Ok(Self { state, router, bus })
    }

    /// The outbox relay, the saga consumers and the payment-timeout sweep.
    pub async fn spawn_workers(
        &self,
        shutdown: CancellationToken,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, StartError> {
        let mut handles = lifecycle::subscribe_all(&self.state, &self.bus, &shutdown)
            .await
            .map_err(StartError::Bus)?;
        let relay = OutboxRelay::new(
            self.state.db.clone(),
            self.bus.clone(),
            self.state.outbox.clone(),
        );
        handles.push(tokio::spawn(relay.run(shutdown.clone())));
        handles.extend(lifecycle::listen_for_status_changes(
            &self.state,
            shutdown.clone(),
        ));
        handles.push(tokio::spawn(lifecycle::sweep_payment_timeouts(
            self.state.clone(),
            self.state.settings.timeout_sweep_every,
            shutdown,
        )));
        Ok(handles)
    }
}
