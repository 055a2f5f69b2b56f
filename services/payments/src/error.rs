use axum::response::{IntoResponse, Response};
use http::StatusCode;
use kit::Problem;
use kit::events::HandlerError;

use crate::providers::{ProviderError, WebhookError};

/// Everything a payments request or event can fail with.
#[derive(Debug, thiserror::Error)]
pub enum PaymentsError {
    /// The state moved under us, or what this step needs has not arrived
    /// yet (a `stock.reserved` before its `order.placed`): try again.
    #[error("try again: {0}")]
    Retry(String),
    /// Can never be applied (an unreadable event).
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("no payment provider `{0}` here")]
    UnknownProvider(String),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Problem(#[from] Problem),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event encoding: {0}")]
    Event(#[from] serde_json::Error),
}

impl From<PaymentsError> for Problem {
    fn from(e: PaymentsError) -> Self {
        match e {
            PaymentsError::UnknownProvider(name) => Problem::new(
                StatusCode::NOT_FOUND,
                "unknown-payment-provider",
                "No such payment provider",
            )
            .detail(format!(
                "payments here does not take webhooks from `{name}`"
            )),
            PaymentsError::Webhook(WebhookError::Signature(s)) => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-webhook-signature",
                "The webhook signature does not verify",
            )
            .detail(s.to_string()),
            PaymentsError::Webhook(WebhookError::Malformed(m)) => Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed-webhook",
                "The webhook event cannot be read",
            )
            .detail(m),
            PaymentsError::Invalid(m) => Problem::bad_request(m),
            // The sender (Stripe, the sandbox) retries on anything but 2xx.
            PaymentsError::Retry(m) => Problem::unavailable(m).retry_after(1),
            PaymentsError::Provider(e) => Problem::unavailable(e.to_string()).retry_after(5),
            PaymentsError::Problem(p) => p,
            PaymentsError::Database(e) => Problem::database(&e),
            PaymentsError::Event(e) => Problem::internal(&e),
        }
    }
}

impl IntoResponse for PaymentsError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}

impl From<PaymentsError> for HandlerError {
    fn from(e: PaymentsError) -> Self {
        match e {
            PaymentsError::Database(e) => HandlerError::from(e),
            PaymentsError::Provider(ProviderError::Unavailable(_)) => HandlerError::unavailable(e),
            PaymentsError::Retry(_) => HandlerError::transient(e),
            PaymentsError::Invalid(_)
            | PaymentsError::UnknownProvider(_)
            | PaymentsError::Webhook(_)
            | PaymentsError::Provider(ProviderError::Rejected(_))
            | PaymentsError::Problem(_)
            | PaymentsError::Event(_) => HandlerError::poison(e),
        }
    }
}

pub type Result<T, E = PaymentsError> = std::result::Result<T, E>;
