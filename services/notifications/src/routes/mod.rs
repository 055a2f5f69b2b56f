//! Notifications' HTTP surface: the in-app feed and the OpenAPI document.

mod feed;

use axum::Router;
use axum::routing::get;
use kit::openapi::BearerAuth;
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

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(feed::router())
        .route(
            "/openapi.json",
            get(|| async { axum::Json(kit::openapi::conventional(ApiDoc::openapi())) }),
        )
        .with_state(state)
}
