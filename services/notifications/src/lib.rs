//! The notifications service: consumes domain events (`user.registered`,
//! `order.confirmed`, `order.cancelled`, `order.shipped`,
//! `order.delivered`, `payment.refunded`), renders an email for each from
//! templates, stores it for the customer's in-app feed, and — when an SMTP
//! server is configured — delivers it with retries.

pub mod config;
pub mod consumer;
pub mod emails;
pub mod error;
pub mod events;
pub mod money;
pub mod routes;
pub mod sender;
pub mod smtp;
pub mod storage;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use kit::auth::TokenVerifier;
use kit::db::Database;
use kit::events::{EventBus, RetryPolicy};
use kit::health::ReadinessCheck;
use lettre::message::Mailbox;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use config::NotificationsConfig;
use consumer::ConsumerStats;
use emails::Templates;
use smtp::{Mailer, SmtpUrl};

/// Tunables of the notifications service, independent of where they came from.
#[derive(Debug, Clone)]
pub struct Settings {
    pub shop_name: String,
    pub mail_from: Mailbox,
    /// `None`: no email is sent; notifications are `stored` for the feed.
    pub smtp: Option<SmtpUrl>,
    pub smtp_timeout: Duration,
    /// Delivery attempts per email and the backoff between them.
    pub delivery: RetryPolicy,
    /// How often the sender looks for retries that came due.
    pub sender_poll: Duration,
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            shop_name: "Emporium".into(),
            mail_from: Mailbox::new(
                Some("Emporium".into()),
                lettre::Address::new("shop", "emporium.local")
                    .unwrap_or_else(|_| unreachable!("a valid literal address")),
            ),
            smtp: None,
            smtp_timeout: Duration::from_secs(30),
            delivery: RetryPolicy {
                max_attempts: 8,
                initial_backoff: Duration::from_secs(30),
                max_backoff: Duration::from_secs(3600),
            },
            sender_poll: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            body_limit_bytes: 1024 * 1024,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub db: Database,
    pub verifier: Arc<TokenVerifier>,
    pub templates: Templates,
    /// Present when SMTP is configured.
    pub mailer: Option<Mailer>,
    pub settings: Arc<Settings>,
    /// Wakes the sender when a notification is queued.
    pub sender_wake: Arc<Notify>,
    pub stats: Arc<ConsumerStats>,
}

impl FromRef<AppState> for Arc<TokenVerifier> {
    fn from_ref(s: &AppState) -> Self {
        s.verifier.clone()
    }
}

/// The backends notifications runs on.
pub struct Backends {
    pub db: Database,
    pub bus: EventBus,
}

/// A built notifications service: its router and its background work.
pub struct Notifications {
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
    #[error("email templates: {0:#}")]
    Templates(#[from] minijinja::Error),
    #[error(transparent)]
    Smtp(#[from] smtp::SetupError),
    #[error("events: {0}")]
    Bus(String),
}

impl Notifications {
    /// Migrate, compile the templates, set up SMTP and assemble the router.
    pub async fn build(
        settings: Settings,
        verifier: Arc<TokenVerifier>,
        backends: Backends,
    ) -> Result<Self, StartError> {
        let Backends { db, bus } = backends;
        db.migrate(&storage::POSTGRES_MIGRATIONS, &storage::SQLITE_MIGRATIONS)
            .await?;
        kit::events::ensure_schema(&db).await?;
        let templates = Templates::load()?;
        let mailer = settings
            .smtp
            .as_ref()
            .map(|url| Mailer::new(url, settings.mail_from.clone(), settings.smtp_timeout))
            .transpose()?;
        match &mailer {
            Some(m) => tracing::info!(server = %m.server(), "emails are delivered over SMTP"),
            None => tracing::info!(
                "EMPORIUM_SMTP_URL is not set: notifications are stored for the in-app feed and no email is sent"
            ),
        }
        let state = AppState {
            db: db.clone(),
            verifier,
            templates,
            mailer,
            settings: Arc::new(settings),
            sender_wake: Arc::new(Notify::new()),
            stats: Arc::default(),
        };
        let mut checks = vec![ReadinessCheck::database(&db), ReadinessCheck::events(&bus)];
        if let Some(mailer) = &state.mailer {
            let mailer = mailer.clone();
            checks.push(ReadinessCheck::new("smtp", move || {
                let mailer = mailer.clone();
                async move { mailer.check().await }
            }));
        }
        let router = kit::http::with_standard_layers(
            routes::router(state.clone())
                .merge(kit::health::router(checks))
                .fallback(kit::http::not_found),
            "notifications",
            state.settings.request_timeout,
            state.settings.body_limit_bytes,
        );
        Ok(Self { state, router, bus })
    }

    /// Subscribe to the six events and start the email sender (when SMTP is
    /// configured); everything stops when `shutdown` is cancelled. Queues
    /// are declared before this returns, so no event published afterwards
    /// is missed.
    pub async fn spawn_workers(
        &self,
        shutdown: CancellationToken,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, StartError> {
        let mut handles = consumer::subscribe_all(&self.state, &self.bus, &shutdown)
            .await
            .map_err(StartError::Bus)?;
        if let Some(mailer) = &self.state.mailer {
            handles.push(tokio::spawn(sender::run(
                self.state.clone(),
                mailer.clone(),
                shutdown,
            )));
        }
        Ok(handles)
    }
}
