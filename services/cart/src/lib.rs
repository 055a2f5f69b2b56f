//! The cart service: one cart per signed-in customer, guest carts by
//! `X-Cart-Id`, every line checked against the catalogue, kept in Redis (or
//! in SQL when embedded) and forgotten a week after its last change.

pub mod carts;
pub mod catalog;
pub mod config;
pub mod domain;
pub mod error;
pub mod routes;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use kit::auth::TokenVerifier;
use kit::db::Database;
use kit::events::{Envelope, EventBus, HandlerError, Subscription};
use kit::health::ReadinessCheck;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use catalog::CatalogClient;
pub use config::{CartConfig, StoreUrl};
use store::{CartStore, RedisCarts, Retention, SqlCarts, StoreError};

/// Tunables of the cart service, independent of where they came from.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a cart lives after its last change.
    pub cart_ttl: Duration,
    /// Longest wait for the catalogue.
    pub catalog_timeout: Duration,
    /// Currency of an empty cart's subtotal.
    pub currency: String,
    /// Prefix of the cart keys in Redis.
    pub key_prefix: String,
    /// Most different products one cart may hold (at most 100: a cart is
    /// checked in one batched catalogue call).
    pub max_lines: usize,
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cart_ttl: Duration::from_secs(7 * 24 * 3600),
            catalog_timeout: Duration::from_secs(2),
            currency: "USD".into(),
            key_prefix: "emporium".into(),
            max_lines: catalog::MAX_BATCH,
            request_timeout: Duration::from_secs(30),
            body_limit_bytes: 1024 * 1024,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: CartStore,
    pub catalog: CatalogClient,
    pub verifier: Arc<TokenVerifier>,
    pub settings: Arc<Settings>,
}

impl FromRef<AppState> for Arc<TokenVerifier> {
    fn from_ref(s: &AppState) -> Self {
        s.verifier.clone()
    }
}

/// A connected cart store, before the service is built on it.
pub enum StoreBackend {
    Redis(ConnectionManager),
    Sql(Database),
}

impl StoreBackend {
    /// Connect to the store `url` names.
    pub async fn connect(url: &StoreUrl) -> Result<Self, StartError> {
        match url {
            StoreUrl::Redis(url) => {
                let client = redis::Client::open(url.as_str())?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(2)))
                    .set_number_of_retries(1);
                Ok(StoreBackend::Redis(
                    ConnectionManager::new_with_config(client, config).await?,
                ))
            }
            StoreUrl::Sql(url) => Ok(StoreBackend::Sql(Database::connect(url).await?)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cart store (Redis): {0}")]
    Redis(#[from] redis::RedisError),
    #[error("cart store (database): {0}")]
    Db(#[from] kit::db::DbError),
    #[error("cart settings: {0}")]
    Settings(String),
}

/// A built cart service: its router and its background work.
pub struct Cart {
    pub state: AppState,
    pub router: axum::Router,
}

impl Cart {
    /// Open the store (migrating a SQL one) and assemble the router.
    pub async fn build(
        settings: Settings,
        verifier: Arc<TokenVerifier>,
        store: StoreBackend,
        catalog_url: url::Url,
    ) -> Result<Self, StartError> {
        if !(1..=catalog::MAX_BATCH).contains(&settings.max_lines) {
            return Err(StartError::Settings(format!(
                "max_lines must be between 1 and {}",
                catalog::MAX_BATCH
            )));
        }
        if !domain::money::is_currency_code(&settings.currency) {
            return Err(StartError::Settings(format!(
                "`{}` is not an ISO 4217 currency code",
                settings.currency
            )));
        }
        if settings.cart_ttl.is_zero() {
            return Err(StartError::Settings("the cart TTL must be positive".into()));
        }
        let retention = Retention {
            ttl: settings.cart_ttl,
            max_lines: settings.max_lines,
        };
        let store = match store {
            StoreBackend::Redis(conn) => {
                CartStore::Redis(RedisCarts::new(conn, &settings.key_prefix, retention))
            }
            StoreBackend::Sql(db) => CartStore::Sql(SqlCarts::open(db, retention).await?),
        };
        let state = AppState {
            catalog: CatalogClient::new(&catalog_url, settings.catalog_timeout),
            store: store.clone(),
            verifier,
            settings: Arc::new(settings),
        };
        let checks = vec![ReadinessCheck::new("store", move || {
            let store = store.clone();
            async move { store.ping().await }
        })];
        let router = kit::http::with_standard_layers(
            routes::router(state.clone())
                .merge(kit::health::router(checks))
                .fallback(kit::http::not_found),
            "cart",
            state.settings.request_timeout,
            state.settings.body_limit_bytes,
        );
        Ok(Self { state, router })
    }

    /// Start the purge of expired carts (SQL stores; Redis expires keys
    /// itself). It stops when `shutdown` is cancelled.
    pub fn spawn_workers(&self, shutdown: CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        if !self.state.store.needs_purging() {
            return Vec::new();
        }
        let store = self.state.store.clone();
        let every = store::sql::purge_interval(self.state.settings.cart_ttl);
        vec![tokio::spawn(purge_expired_carts(store, every, shutdown))]
    }

    /// Empty a customer's cart.
    pub async fn clear_for_user(&self, user_id: Uuid) -> Result<(), StoreError> {
        self.state.store.clear_for_user(user_id).await
    }

    /// Join the checkout saga: a placed order empties its customer's cart.
    pub async fn subscribe(
        &self,
        bus: &EventBus,
        shutdown: CancellationToken,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, StartError> {
        let store = self.state.store.clone();
        let handler = move |event: Envelope| {
            let store = store.clone();
            async move {
                let placed: OrderPlaced = event.payload_as().map_err(HandlerError::poison)?;
                match store.clear_for_order(placed.customer_id, &event).await {
                    Ok(true) => {
                        tracing::info!(customer_id = %placed.customer_id, "cart cleared after checkout");
                        Ok(())
                    }
                    Ok(false) => Ok(()),
                    Err(e) if e.is_unavailable() => Err(HandlerError::unavailable(e)),
                    Err(e) => Err(HandlerError::transient(e)),
                }
            }
        };
        let handle = bus
            .subscribe(Subscription::new("cart", "order.placed", handler), shutdown)
            .await
            .map_err(|e| StartError::Settings(format!("event bus: {e}")))?;
        Ok(vec![handle])
    }
}

/// The part of `order.placed` the cart reads.
#[derive(serde::Deserialize)]
struct OrderPlaced {
    customer_id: Uuid,
}

async fn purge_expired_carts(store: CartStore, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => match store.purge_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(carts = n, "expired carts purged"),
                Err(e) => tracing::warn!(error = %e, "cannot purge expired carts"),
            },
        }
    }
}
