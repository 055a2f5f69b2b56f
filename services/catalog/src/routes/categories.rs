use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use kit::auth::AuthUser;
use kit::json::ApiJson;
use kit::problem::ProblemBody;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::cached_json;
use crate::categories::{self, CategoryNode};
use crate::domain::NewCategory;
use crate::error::{CatalogError, Result};
use crate::storage::categories::CategoryRecord;
use crate::{AppState, MANAGE};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/categories", get(tree).post(create))
        .route(
            "/api/v1/categories/{id}",
            get(show).put(replace).delete(delete),
        )
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryView {
    id: Uuid,
    name: String,
    slug: String,
    description: String,
    parent_id: Option<Uuid>,
    /// Subcategories, by name.
    #[schema(no_recursion)]
    children: Vec<CategoryView>,
}

impl From<CategoryNode> for CategoryView {
    fn from(n: CategoryNode) -> Self {
        let mut view = CategoryView::from(n.category);
        view.children = n.children.into_iter().map(CategoryView::from).collect();
        view
    }
}

impl From<CategoryRecord> for CategoryView {
    fn from(c: CategoryRecord) -> Self {
        Self {
            id: c.id,
            name: c.name,
            slug: c.slug,
            description: c.description,
            parent_id: c.parent_id,
            children: Vec::new(),
        }
    }
}

fn category_id(raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw).map_err(|_| CatalogError::CategoryNotFound)
}

/// The category tree: top-level categories, each with its subcategories.
#[utoipa::path(get, path = "/api/v1/categories", tag = "categories",
    responses((status = 200, body = Vec<CategoryView>)))]
async fn tree(State(state): State<AppState>) -> Result<Response> {
    let cached = state
        .cache
        .get_or_load("categories", || async {
            let forest = categories::tree(&state).await?;
            let views: Vec<CategoryView> = forest.into_iter().map(CategoryView::from).collect();
            Ok::<_, CatalogError>(serde_json::to_vec(&views)?)
        })
        .await?;
    Ok(cached_json(cached))
}

/// One category, by id or slug, with its subcategories.
#[utoipa::path(get, path = "/api/v1/categories/{id}", tag = "categories", params(("id" = String, Path, description = "Category id or slug")),
    responses((status = 200, body = CategoryView), (status = 404, body = ProblemBody)))]
async fn show(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<CategoryView>> {
    Ok(Json(categories::get(&state, &key).await?.into()))
}

/// Create a category (admin).
#[utoipa::path(post, path = "/api/v1/categories", tag = "categories", security(("bearer" = [])), request_body = NewCategory,
    responses((status = 201, body = CategoryView), (status = 401, body = ProblemBody), (status = 403, body = ProblemBody),
        (status = 409, body = ProblemBody), (status = 422, body = ProblemBody)))]
#[tracing::instrument(skip_all, err(level = "info", Display))]
async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(input): ApiJson<NewCategory>,
) -> Result<(StatusCode, Json<CategoryView>)> {
    user.require_permission(MANAGE)?;
    let category = categories::create(&state, &input).await?;
    Ok((StatusCode::CREATED, Json(category.into())))
}

/// Replace a category (admin); moving it under one of its own
/// descendants is refused.
#[utoipa::path(put, path = "/api/v1/categories/{id}", tag = "categories", params(("id" = String, Path, description = "Category id")), security(("bearer" = [])), request_body = NewCategory,
    responses((status = 200, body = CategoryView), (status = 401, body = ProblemBody), (status = 403, body = ProblemBody),
        (status = 404, body = ProblemBody), (status = 409, body = ProblemBody), (status = 422, body = ProblemBody)))]
#[tracing::instrument(skip_all, err(level = "info", Display))]
async fn replace(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<NewCategory>,
) -> Result<Json<CategoryView>> {
    user.require_permission(MANAGE)?;
    let id = category_id(&id)?;
    Ok(Json(categories::replace(&state, id, &input).await?.into()))
}

/// Delete an empty category (admin): one with products or subcategories
/// is a 409.
#[utoipa::path(delete, path = "/api/v1/categories/{id}", tag = "categories", params(("id" = String, Path, description = "Category id")), security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ProblemBody), (status = 403, body = ProblemBody),
        (status = 404, body = ProblemBody), (status = 409, body = ProblemBody)))]
#[tracing::instrument(skip_all, err(level = "info", Display))]
async fn delete(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    user.require_permission(MANAGE)?;
    categories::delete(&state, category_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
