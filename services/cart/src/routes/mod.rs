//! The cart's HTTP surface and its OpenAPI document.

mod cart;

use axum::Router;
use axum::routing::get;
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

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(cart::router())
        .route(
            "/openapi.json",
            get(|| async { axum::Json(ApiDoc::openapi()) }),
        )
        .with_state(state)
}
