//! Notifications' HTTP surface: the in-app feed and the OpenAPI document.

mod feed;

use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;

use crate::AppState;

pub use feed::{NotificationPage, NotificationView};

#[derive(OpenApi)]
#[openapi(
    info(title = "Emporium notifications", version = "1", description = "The signed-in customer's notifications: every email the shop wrote them, and whether it was sent."),
    paths(feed::list),
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
        .merge(feed::router())
        .route(
            "/openapi.json",
            get(|| async { axum::Json(ApiDoc::openapi()) }),
        )
        .with_state(state)
}
