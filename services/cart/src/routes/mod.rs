//! The cart's HTTP surface and its OpenAPI document.

mod cart;

use axum::Router;
use axum::routing::get;
use kit::openapi::BearerAuth;
use utoipa::OpenApi;

pub use self::cart::{CartItemView, CartView, X_CART_ID};
use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Emporium cart", version = "1", description = "Guest and customer carts, checked against the catalogue."),
    paths(
        cart::get_cart, cart::clear_cart, cart::add_item, cart::set_quantity,
        cart::remove_item, cart::merge,
    ),
    components(schemas(kit::problem::ProblemBody, kit::FieldError)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(cart::router())
        .route(
            "/openapi.json",
            get(|| async { axum::Json(kit::openapi::conventional(ApiDoc::openapi())) }),
        )
        .with_state(state)
}
