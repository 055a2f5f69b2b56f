use axum::response::{IntoResponse, Response};
use kit::{FieldError, Problem};

use crate::clients::PeerError;
use crate::domain::OrderStatus;

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("invalid request")]
    Validation(Vec<FieldError>),
    #[error("the Idempotency-Key header is required")]
    MissingIdempotencyKey,
    #[error("invalid Idempotency-Key")]
    BadIdempotencyKey,
    #[error("idempotency key reused with a different request")]
    IdempotencyKeyReused,
    #[error("the cart is empty")]
    EmptyCart,
    #[error("a product in the cart is not available: {0}")]
    ProductUnavailable(String),
    #[error("order not found")]
    NotFound,
    #[error("an order cannot go from {from} to {to}")]
    IllegalTransition { from: OrderStatus, to: OrderStatus },
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error(transparent)]
    Problem(#[from] Problem),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event encoding: {0}")]
    Event(#[from] serde_json::Error),
}

impl From<OrderError> for Problem {
    fn from(e: OrderError) -> Self {
        use http::StatusCode;
        match e {
            OrderError::Validation(errors) => Problem::validation(errors),
            OrderError::MissingIdempotencyKey => Problem::new(
                StatusCode::BAD_REQUEST,
                "idempotency-key-missing",
                "The Idempotency-Key header is required",
            ),
            OrderError::BadIdempotencyKey => Problem::new(
                StatusCode::BAD_REQUEST,
                "idempotency-key-invalid",
                "The Idempotency-Key header must be 1 to 255 visible ASCII characters",
            ),
            OrderError::IdempotencyKeyReused => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "This Idempotency-Key was used for a different request",
            ),
            OrderError::EmptyCart => Problem::conflict("cart-empty", "The cart is empty"),
            OrderError::ProductUnavailable(detail) => Problem::conflict(
                "product-unavailable",
                "A product in the cart is not available",
            )
            .detail(detail),
            OrderError::NotFound => Problem::not_found("no such order"),
            OrderError::IllegalTransition { from, to } => {
                Problem::conflict("illegal-transition", "The order cannot make that change")
                    .detail(format!("an order cannot go from {from} to {to}"))
            }
            OrderError::Peer(e) => Problem::unavailable(e.to_string()),
            OrderError::Problem(p) => p,
            OrderError::Database(e) => Problem::database(&e),
            OrderError::Event(e) => Problem::internal(&e),
        }
    }
}

impl IntoResponse for OrderError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}

pub type Result<T, E = OrderError> = std::result::Result<T, E>;
