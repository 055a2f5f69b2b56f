//! The payments service: records what each order is to be charged, charges
//! it once stock is reserved, refunds it when the order is cancelled, and
//! learns outcomes from its provider's verified webhooks. It talks to the
//! rest of the shop only through events (services/EVENTS.md).

pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod lifecycle;
pub mod providers;
pub mod routes;
pub mod storage;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use kit::auth::TokenVerifier;
use kit::db::Database;
use kit::events::{
    Envelope, EventBus, HandlerError, Outbox, OutboxRelay, RetryPolicy, Subscription,
};
use kit::health::ReadinessCheck;
use tokio_util::sync::CancellationToken;
use url::Url;

pub use config::{PaymentsConfig, Secret};
pub use lifecycle::CONSUMER;
use providers::PaymentProvider;
pub use providers::ProviderKind;
pub use providers::sandbox::SandboxSettings;
use providers::sandbox::{Sandbox, WebhookTarget};
use providers::stripe::Stripe;

/// Tunables of the payments service, independent of where they came from.
#[derive(Debug, Clone)]
pub struct Settings {
    pub provider: ProviderKind,
    /// Verifies webhooks (Stripe's endpoint secret); the sandbox signs with it.
    pub webhook_secret: Secret,
    /// Largest distance between a webhook signature's time and now.
    pub webhook_tolerance: Duration,
    /// Stripe's secret API key (required with [`ProviderKind::Stripe`]).
    pub stripe_secret_key: Option<Secret>,
    pub stripe_api_base: Url,
    pub stripe_timeout: Duration,
    /// Where payments is reached; the sandbox posts its webhooks here. May
    /// also be given later with [`Payments::set_public_url`].
    pub public_url: Option<Url>,
    pub sandbox: SandboxSettings,
    /// Ask the provider about a charge or refund whose outcome has not
    /// arrived for this long.
    pub recheck_after: Duration,
    /// How each event subscription retries before dead-lettering; generous,
    /// since `stock.reserved` may wait for its `order.placed`.
    pub retry: RetryPolicy,
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            provider: ProviderKind::Sandbox,
            webhook_secret: Secret::new("whsec_emporium_sandbox"),
            webhook_tolerance: Duration::from_secs(300),
            stripe_secret_key: None,
            stripe_api_base: Url::parse(providers::stripe::DEFAULT_API_BASE)
                .expect("Stripe's API URL parses"),
            stripe_timeout: Duration::from_secs(20),
            public_url: None,
            sandbox: SandboxSettings::default(),
            recheck_after: Duration::from_secs(120),
            retry: RetryPolicy {
                max_attempts: 10,
                initial_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(10),
            },
            request_timeout: Duration::from_secs(30),
            body_limit_bytes: 1024 * 1024,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub db: Database,
    pub outbox: Outbox,
    pub provider: Arc<dyn PaymentProvider>,
    pub verifier: Arc<TokenVerifier>,
    pub settings: Arc<Settings>,
}

impl FromRef<AppState> for Arc<TokenVerifier> {
    fn from_ref(s: &AppState) -> Self {
        s.verifier.clone()
    }
}

/// The backends payments runs on.
pub struct Backends {
    pub db: Database,
    pub bus: EventBus,
}

/// A built payments service: its router and its background work.
pub struct Payments {
    pub state: AppState,
    pub router: axum::Router,
    bus: EventBus,
    webhook_target: WebhookTarget,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] kit::db::DbError),
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("payment provider: {0}")]
    Provider(String),
    #[error("event bus: {0}")]
    Bus(String),
}

impl Payments {
    /// Migrate, set up the provider, and assemble the router.
    pub async fn build(
        settings: Settings,
        verifier: Arc<TokenVerifier>,
        backends: Backends,
    ) -> Result<Self, StartError> {
        let Backends { db, bus } = backends;
        db.migrate(&storage::POSTGRES_MIGRATIONS, &storage::SQLITE_MIGRATIONS)
            .await?;
        kit::events::ensure_schema(&db).await?;
        let webhook_target = WebhookTarget::default();
        if let Some(url) = &settings.public_url {
            webhook_target.set(url.clone());
        }
        let provider: Arc<dyn PaymentProvider> = match settings.provider {
            ProviderKind::Sandbox => Arc::new(
                Sandbox::new(
                    settings.sandbox.clone(),
                    settings.webhook_secret.clone(),
                    settings.webhook_tolerance,
                    webhook_target.clone(),
                )
                .map_err(StartError::Provider)?,
            ),
            ProviderKind::Stripe => {
                let key = settings.stripe_secret_key.clone().ok_or_else(|| {
                    StartError::Provider("the stripe provider needs a secret key".into())
                })?;
                Arc::new(
                    Stripe::new(
                        settings.stripe_api_base.clone(),
                        key,
                        settings.webhook_secret.clone(),
                        settings.webhook_tolerance,
                        settings.stripe_timeout,
                    )
                    .map_err(StartError::Provider)?,
                )
            }
        };
        let state = AppState {
            db: db.clone(),
            outbox: Outbox::new(),
            provider,
            verifier,
            settings: Arc::new(settings),
        };
        let checks = vec![ReadinessCheck::database(&db), ReadinessCheck::events(&bus)];
        let router = kit::http::with_standard_layers(
            routes::router(state.clone())
                .merge(kit::health::router(checks))
                .fallback(kit::http::not_found),
            "payments",
            state.settings.request_timeout,
            state.settings.body_limit_bytes,
        );
        Ok(Self {
            state,
            router,
            bus,
            webhook_target,
        })
    }

    /// Tell the sandbox where payments is reached (its webhooks go to
    /// `{url}/api/v1/payments/webhooks/sandbox`), e.g. once a random port is
    /// bound. Call before [`Payments::spawn_workers`].
    pub fn set_public_url(&self, url: Url) {
        self.webhook_target.set(url);
    }

    /// Where the sandbox posts its webhooks, if known.
    pub fn public_url(&self) -> Option<Url> {
        self.webhook_target.get()
    }

    /// The event subscriptions of payments (consumer `payments`).
    pub fn subscriptions(&self) -> Vec<Subscription> {
        type Step = for<'a> fn(
            &'a AppState,
            &'a Envelope,
        )
            -> futures::future::BoxFuture<'a, error::Result<lifecycle::Applied>>;
        let steps: [(&str, Step); 3] = [
            (events::ORDER_PLACED, |s, e| {
                Box::pin(lifecycle::record_order(s, e))
            }),
            (events::STOCK_RESERVED, |s, e| {
                Box::pin(lifecycle::charge_order(s, e))
            }),
            (events::ORDER_CANCELLED, |s, e| {
                Box::pin(lifecycle::cancel_order(s, e))
            }),
        ];
        steps
            .into_iter()
            .map(|(event_type, step)| {
                let state = self.state.clone();
                Subscription::new(CONSUMER, event_type, move |event: Envelope| {
                    let state = state.clone();
                    async move {
                        step(&state, &event)
                            .await
                            .map(|_| ())
                            .map_err(HandlerError::from)
                    }
                })
                .with_retry(self.state.settings.retry)
            })
            .collect()
    }

    /// Start the outbox relay and consume `order.placed`, `stock.reserved`
    /// and `order.cancelled`; everything stops when `shutdown` is cancelled.
    pub async fn spawn_workers(
        &self,
        shutdown: CancellationToken,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, StartError> {
        if self.state.settings.provider == ProviderKind::Sandbox
            && self.webhook_target.get().is_none()
        {
            tracing::warn!(
                "the sandbox has no URL to post webhooks to; charges wait until set_public_url"
            );
        }
        let relay = OutboxRelay::new(
            self.state.db.clone(),
            self.bus.clone(),
            self.state.outbox.clone(),
        );
        let mut handles = vec![
            tokio::spawn(relay.run(shutdown.clone())),
            tokio::spawn(recheck_in_flight(self.state.clone(), shutdown.clone())),
        ];
        for subscription in self.subscriptions() {
            let handle = self
                .bus
                .subscribe(subscription, shutdown.clone())
                .await
                .map_err(|e| StartError::Bus(e.to_string()))?;
            handles.push(handle);
        }
        Ok(handles)
    }
}

/// Now and then, settle the charges and refunds whose outcome never
/// arrived by asking the provider (see [`lifecycle::recheck_in_flight`]).
async fn recheck_in_flight(state: AppState, shutdown: CancellationToken) {
    let after = state.settings.recheck_after;
    let every = (after / 4).max(Duration::from_millis(200));
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
        if let Err(e) = lifecycle::recheck_in_flight(&state, after).await {
            tracing::warn!(error = %e, "cannot recheck the charges and refunds in flight");
        }
    }
}
