//! Payments' HTTP surface. Each module exposes `router()`; this one merges
//! them and serves the OpenAPI document.

mod payments;
mod webhooks;

use axum::Router;
use axum::routing::get;
use kit::openapi::BearerAuth;
use utoipa::OpenApi;

use crate::AppState;

pub use payments::{PaymentPage, PaymentView};

#[derive(OpenApi)]
#[openapi(
    info(title = "Emporium payments", version = "1", description = "Payments of orders, and the payment provider's webhooks."),
    paths(payments::list, webhooks::receive),
    components(schemas(kit::problem::ProblemBody, kit::FieldError)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(payments::router())
        .merge(webhooks::router())
        .route(
            "/openapi.json",
            get(|| async { axum::Json(kit::openapi::conventional(ApiDoc::openapi())) }),
        )
        .with_state(state)
}
