//! The identity service: accounts, sign-in, tokens, roles and the JWKS.

pub mod accounts;
pub mod config;
pub mod domain;
pub mod error;
pub mod keys;
pub mod routes;
pub mod storage;
pub mod throttle;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use kit::auth::TokenVerifier;
use kit::cache::Cache;
use kit::db::Database;
use kit::events::{EventBus, Outbox, OutboxRelay};
use kit::health::ReadinessCheck;
use tokio_util::sync::CancellationToken;

pub use config::IdentityConfig;
use domain::PasswordHasher;
use keys::KeyRing;
use throttle::LoginThrottle;

/// Tunables of the identity service, independent of where they came from.
#[derive(Debug, Clone)]
pub struct Settings {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub login_window: Duration,
    pub max_failures_per_account: u32,
    pub max_failures_per_client: u32,
    pub admin: Option<(String, String)>,
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            issuer: "emporium-identity".into(),
            audience: "emporium".into(),
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(7 * 24 * 3600),
            login_window: Duration::from_secs(15 * 60),
            max_failures_per_account: 5,
            max_failures_per_client: 20,
            admin: None,
            request_timeout: Duration::from_secs(30),
            body_limit_bytes: 1024 * 1024,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub db: Database,
    pub outbox: Outbox,
    pub keys: Arc<KeyRing>,
    pub verifier: Arc<TokenVerifier>,
    pub hasher: PasswordHasher,
    pub throttle: LoginThrottle,
    pub settings: Arc<Settings>,
}

impl FromRef<AppState> for Arc<TokenVerifier> {
    fn from_ref(s: &AppState) -> Self {
        s.verifier.clone()
    }
}

/// The backends identity runs on.
pub struct Backends {
    pub db: Database,
    pub cache: Cache,
    pub bus: EventBus,
}

/// A built identity service: its router and its background work.
pub struct Identity {
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
    #[error("first admin: {0}")]
    Admin(String),
}

impl Identity {
    /// Migrate, make sure the first admin exists, and assemble the router.
    pub async fn build(
        settings: Settings,
        keys: KeyRing,
        backends: Backends,
    ) -> Result<Self, StartError> {
        let Backends { db, cache, bus } = backends;
        db.migrate(&storage::POSTGRES_MIGRATIONS, &storage::SQLITE_MIGRATIONS)
            .await?;
        kit::events::ensure_schema(&db).await?;
        let verifier = TokenVerifier::from_jwks(&keys.jwks(), &settings.issuer, &settings.audience);
        let throttle = LoginThrottle::new(
            cache.scoped("identity"),
            settings.login_window,
            settings.max_failures_per_account,
            settings.max_failures_per_client,
        );
        let hashing_slots = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let state = AppState {
            db: db.clone(),
            outbox: Outbox::new(),
            keys: Arc::new(keys),
            verifier: Arc::new(verifier),
            hasher: PasswordHasher::new(hashing_slots),
            throttle,
            settings: Arc::new(settings),
        };
        if let Some((email, password)) = &state.settings.admin {
            accounts::ensure_admin(&state, email, password)
                .await
                .map_err(|e| match e {
                    error::IdentityError::Validation(errs) => StartError::Admin(
                        errs.iter()
                            .map(|e| format!("{}: {}", e.field, e.message))
                            .collect::<Vec<_>>()
                            .join("; "),
                    ),
                    other => StartError::Admin(other.to_string()),
                })?;
        }
        let checks = vec![
            ReadinessCheck::database(&db),
            ReadinessCheck::events(&bus),
            ReadinessCheck::cache(&cache),
        ];
        let router = kit::http::with_standard_layers(
            routes::router(state.clone())
                .merge(kit::health::router(checks))
                .fallback(kit::http::not_found),
            "identity",
            state.settings.request_timeout,
            state.settings.body_limit_bytes,
        );
        Ok(Self { state, router, bus })
    }

    /// Start the outbox relay; it stops when `shutdown` is cancelled.
    pub fn spawn_workers(&self, shutdown: CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        let relay = OutboxRelay::new(
            self.state.db.clone(),
            self.bus.clone(),
            self.state.outbox.clone(),
        );
        vec![tokio::spawn(relay.run(shutdown))]
    }
}
