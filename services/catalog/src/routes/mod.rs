//! The catalog's HTTP surface. Each module exposes `router()`; this one
//! merges them and serves the OpenAPI document.

mod categories;
mod products;
mod reviews;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kit::openapi::BearerAuth;
use utoipa::OpenApi;

use crate::AppState;
use crate::cache::Cached;

pub use categories::CategoryView;
pub use products::{ProductPage, ProductView};
pub use reviews::{ReviewPage, ReviewView};

#[derive(OpenApi)]
#[openapi(
    info(title = "Emporium catalog", version = "1", description = "Categories, products, search and reviews."),
    paths(
        categories::tree, categories::show, categories::create, categories::replace, categories::delete,
        products::list, products::show, products::create, products::replace, products::retire,
        reviews::list, reviews::create,
    ),
    components(schemas(kit::problem::ProblemBody, kit::FieldError, crate::domain::Sort)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

/// Says whether a response came from the cache (`hit`, `miss`, `bypass`).
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// A JSON body that is already serialised (perhaps by an earlier request),
/// marked for the gateway to keep while its generation lasts.
fn cached_json(cached: Cached) -> Response {
    let mut res = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (X_CACHE, HeaderValue::from_static(cached.lookup.as_str())),
        ],
        cached.body,
    )
        .into_response();
    if let Some(v) = cached.validity.and_then(|v| v.header_value()) {
        res.headers_mut().insert(kit::edge_cache::HEADER, v);
    }
    res
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(categories::router())
        .merge(products::router())
        .merge(reviews::router())
        .route(
            "/openapi.json",
            get(|| async { axum::Json(kit::openapi::conventional(ApiDoc::openapi())) }),
        )
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_each_path_parameter_once() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for (path, method) in [
            ("/api/v1/products/{id}", "get"),
            ("/api/v1/products/{id}", "put"),
            ("/api/v1/products/{id}/reviews", "get"),
            ("/api/v1/categories/{id}", "delete"),
        ] {
            let params = doc["paths"][path][method]["parameters"].as_array().unwrap();
            let ids = params
                .iter()
                .filter(|p| p["name"] == "id" && p["in"] == "path")
                .count();
            assert_eq!(ids, 1, "{method} {path}");
        }
        let list = doc["paths"]["/api/v1/products"]["get"]["parameters"]
            .as_array()
            .unwrap();
        for name in [
            "q",
            "category",
            "min_price",
            "sort",
            "page_size",
            "cursor",
            "ids",
        ] {
            assert!(list.iter().any(|p| p["name"] == name), "{name} documented");
        }
    }
}
