use axum::response::{IntoResponse, Response};
use http::StatusCode;
use kit::{FieldError, Problem};

use crate::catalog::CatalogError;
use crate::domain::MAX_QUANTITY;
use crate::store::StoreError;

/// Everything a cart request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CartError {
    #[error("invalid request")]
    Validation(Vec<FieldError>),
    #[error("the X-Cart-Id header is not a cart id")]
    InvalidCartId,
    #[error("the X-Cart-Id header is required")]
    MissingCartId,
    #[error("no such product")]
    ProductNotFound,
    #[error("the product is not in the cart")]
    NotInCart,
    #[error("only {available} in stock, {in_cart} already in the cart")]
    NotEnoughStock { available: i64, in_cart: i64 },
    #[error("the line would hold more than {MAX_QUANTITY}")]
    QuantityCap { in_cart: i64 },
    #[error("the cart holds as many products as it may")]
    CartFull,
    #[error("the product is priced in {product}, the cart in {cart}")]
    CurrencyMismatch { cart: String, product: String },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Problem(#[from] Problem),
}

impl From<CartError> for Problem {
    fn from(e: CartError) -> Self {
        let detail = e.to_string();
        match e {
            CartError::Validation(errors) => Problem::validation(errors),
            CartError::InvalidCartId | CartError::MissingCartId => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid-cart-id", "Bad cart id")
                    .detail(detail)
            }
            CartError::ProductNotFound => Problem::new(
                StatusCode::NOT_FOUND,
                "product-not-found",
                "No such product for sale",
            )
            .detail("the product does not exist or is not for sale"),
            CartError::NotInCart => {
                Problem::new(StatusCode::NOT_FOUND, "not-in-cart", "Not in the cart").detail(detail)
            }
            CartError::NotEnoughStock { .. } => {
                Problem::conflict("insufficient-stock", "Not enough in stock").detail(detail)
            }
            CartError::QuantityCap { in_cart } => Problem::validation(vec![FieldError::new(
                "quantity",
                format!("a line holds at most {MAX_QUANTITY}; {in_cart} already in the cart"),
            )]),
            CartError::CartFull => {
                Problem::conflict("cart-full", "The cart is full").detail(detail)
            }
            CartError::CurrencyMismatch { .. } => {
                Problem::conflict("currency-mismatch", "Another currency").detail(detail)
            }
            // Logged where the call failed (`CatalogClient::products`).
            CartError::Catalog(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "catalog-unavailable",
                "The catalogue cannot be reached",
            )
            .detail("the cart was not changed; try again shortly")
            .retry_after(1),
            CartError::Store(e) if e.is_unavailable() => {
                tracing::error!(error = %e, "cart store unavailable");
                Problem::unavailable("carts cannot be reached right now").retry_after(1)
            }
            CartError::Store(e) => Problem::internal(&e),
            CartError::Problem(p) => p,
        }
    }
}

impl IntoResponse for CartError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}

pub type Result<T, E = CartError> = std::result::Result<T, E>;
