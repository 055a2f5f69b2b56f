//! Payment providers behind one trait: a charge, a refund, and the
//! verification and reading of the provider's webhooks.
//!
//! - [`sandbox::Sandbox`] behaves like Stripe in test mode, in process: it
//!   answers `processing` and reports the outcome later through a signed
//!   webhook, sometimes twice.
//! - [`stripe::Stripe`] talks to Stripe's REST API.

pub mod https;
pub mod sandbox;
pub mod signature;
pub mod stripe;
pub mod stripe_event;

use std::time::Duration;

use futures::future::BoxFuture;
use http::HeaderMap;
use uuid::Uuid;

use crate::domain::{Money, PaymentMethodToken};

/// Which provider a deployment charges through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProviderKind {
    Sandbox,
    Stripe,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Sandbox => "sandbox",
            ProviderKind::Stripe => "stripe",
        }
    }
}

/// Charge an order once: the provider's idempotency key is derived from the
/// order id, so a retried request never charges again.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    pub order_id: Uuid,
    pub amount: Money,
    pub payment_method: PaymentMethodToken,
    pub idempotency_key: String,
}

/// What the provider said to a charge, at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Succeeded {
        payment_id: String,
    },
    /// Accepted; the outcome arrives by webhook.
    Processing {
        payment_id: String,
    },
    Declined {
        payment_id: Option<String>,
        reason: String,
    },
}

impl ChargeOutcome {
    pub fn payment_id(&self) -> Option<&str> {
        match self {
            ChargeOutcome::Succeeded { payment_id } | ChargeOutcome::Processing { payment_id } => {
                Some(payment_id)
            }
            ChargeOutcome::Declined { payment_id, .. } => payment_id.as_deref(),
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            ChargeOutcome::Succeeded { .. } => "succeeded",
            ChargeOutcome::Processing { .. } => "processing",
            ChargeOutcome::Declined { .. } => "declined",
        }
    }
}

/// Refund a whole charge, once (idempotency key `refund-<order id>`).
#[derive(Debug, Clone)]
pub struct RefundRequest {
    pub order_id: Uuid,
    pub provider_payment_id: String,
    pub amount: Money,
    pub idempotency_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    Refunded {
        refund_id: Option<String>,
    },
    /// Accepted; the outcome arrives by webhook.
    Pending {
        refund_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Worth another try: the network, a 5xx, rate limiting, a request with
    /// the same idempotency key in flight, or credentials being fixed.
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
    /// Will not succeed however often it is tried.
    #[error("payment provider refused: {0}")]
    Rejected(String),
}

/// A verified webhook event, read into what payments acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEvent {
    pub id: String,
    pub event_type: String,
    pub kind: ProviderEventKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderEventKind {
    ChargeSucceeded {
        payment_id: String,
        order_id: Option<Uuid>,
    },
    ChargeFailed {
        payment_id: String,
        order_id: Option<Uuid>,
        reason: String,
    },
    Refunded {
        payment_id: Option<String>,
        order_id: Option<Uuid>,
        refund_id: Option<String>,
    },
    /// A type payments does not act on.
    Ignored,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Signature(#[from] signature::SignatureError),
    #[error("the event cannot be read: {0}")]
    Malformed(String),
}

/// A payment provider.
pub trait PaymentProvider: Send + Sync + 'static {
    /// The name in `/api/v1/payments/webhooks/{provider}` and on payments.
    fn name(&self) -> &'static str;

    fn charge<'a>(
        &'a self,
        request: &'a ChargeRequest,
    ) -> BoxFuture<'a, Result<ChargeOutcome, ProviderError>>;

    fn refund<'a>(
        &'a self,
        request: &'a RefundRequest,
    ) -> BoxFuture<'a, Result<RefundOutcome, ProviderError>>;

    /// Where the charge `payment_id`, made for `request`, stands now, asked
    /// of the provider itself: for a charge whose outcome never arrived
    /// (a webhook lost, or the process that awaited it gone).
    fn charge_status<'a>(
        &'a self,
        request: &'a ChargeRequest,
        payment_id: &'a str,
    ) -> BoxFuture<'a, Result<ChargeOutcome, ProviderError>>;

    /// Where the refund `refund_id`, made for `request`, stands now, asked
    /// of the provider itself (see [`PaymentProvider::charge_status`]).
    fn refund_status<'a>(
        &'a self,
        request: &'a RefundRequest,
        refund_id: &'a str,
    ) -> BoxFuture<'a, Result<RefundOutcome, ProviderError>>;

    /// Verify a webhook's signature over its raw body at `now` (Unix
    /// seconds) and read it.
    fn verify_webhook(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<ProviderEvent, WebhookError>;
}

/// Verify a Stripe-signed webhook and read the Stripe-shaped event: what
/// both the sandbox and Stripe deliver.
pub fn verify_stripe_webhook(
    secret: &str,
    tolerance: Duration,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<ProviderEvent, WebhookError> {
    let header = headers
        .get(signature::HEADER)
        .map(|v| v.to_str().map_err(|_| signature::SignatureError::Malformed))
        .transpose()?;
    signature::verify(secret, header, body, now, tolerance)?;
    stripe_event::read(body)
}
