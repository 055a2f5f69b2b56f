//! Identity's HTTP surface. Each module exposes `router()`; this one merges
//! them and serves the OpenAPI document.

mod auth;
mod jwks;
mod users;

use axum::Router;
use axum::routing::get;
use kit::openapi::BearerAuth;
use utoipa::OpenApi;

use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Emporium identity", version = "1", description = "Accounts, sign-in, tokens and roles."),
    paths(
        auth::register, auth::login, auth::refresh, auth::logout,
        users::me, users::change_password, users::list, users::set_roles,
        jwks::jwks,
    ),
    components(schemas(kit::problem::ProblemBody, kit::FieldError)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(auth::router())
        .merge(users::router())
        .merge(jwks::router())
        .route(
            "/openapi.json",
            get(|| async { axum::Json(kit::openapi::conventional(ApiDoc::openapi())) }),
        )
        .with_state(state)
}
