//! Orders' HTTP surface.

mod orders;

use axum::Router;
use axum::routing::get;
use kit::openapi::BearerAuth;
use utoipa::OpenApi;

use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Emporium orders",
        version = "1",
        description = "Checkout and the order lifecycle."
    ),
    paths(
        orders::place,
        orders::list,
        orders::get_one,
        orders::cancel,
        orders::set_status
    ),
    components(schemas(kit::problem::ProblemBody, kit::FieldError)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(orders::router())
        .route(
            "/openapi.json",
            get(|| async { axum::Json(kit::openapi::conventional(ApiDoc::openapi())) }),
        )
        .with_state(state)
}
