use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use kit::auth::AuthUser;
use kit::json::{ApiJson, ApiQuery};
use kit::problem::ProblemBody;
use kit::{FieldError, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::domain::NewReview;
use crate::error::{CatalogError, Result};
use crate::storage::reviews::ReviewRecord;
use crate::{AppState, REVIEW, reviews};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/products/{id}/reviews", get(list).post(create))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewView {
    id: Uuid,
    product_id: Uuid,
    user_id: Uuid,
    rating: i64,
    title: String,
    body: String,
    created_at: String,
}

impl From<ReviewRecord> for ReviewView {
    fn from(r: ReviewRecord) -> Self {
        Self {
            id: r.id,
            product_id: r.product_id,
            user_id: r.user_id,
            rating: r.rating,
            title: r.title,
            body: r.body,
            created_at: kit::clock::rfc3339(r.created_at),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReviewListParams {
    /// Page number from 1.
    #[param(minimum = 1)]
    page: Option<u32>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    page_size: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewPage {
    items: Vec<ReviewView>,
    total: i64,
    page: u32,
    page_size: u32,
}

fn product_id(raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw).map_err(|_| CatalogError::ProductNotFound)
}

/// Review a product (signed-in customers, once per product).
#[utoipa::path(post, path = "/api/v1/products/{id}/reviews", tag = "reviews", params(("id" = String, Path, description = "Product id")), security(("bearer" = [])), request_body = NewReview,
    responses((status = 201, body = ReviewView), (status = 401, body = ProblemBody), (status = 403, body = ProblemBody),
        (status = 404, body = ProblemBody), (status = 409, body = ProblemBody), (status = 422, body = ProblemBody)))]
#[tracing::instrument(skip_all, err(level = "info", Display))]
async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<NewReview>,
) -> Result<(StatusCode, Json<ReviewView>)> {
    user.require_permission(REVIEW)?;
    let review = reviews::create(&state, &user, product_id(&id)?, &input).await?;
    Ok((StatusCode::CREATED, Json(review.into())))
}

/// A product's reviews, newest first.
#[utoipa::path(get, path = "/api/v1/products/{id}/reviews", tag = "reviews", params(("id" = String, Path, description = "Product id"), ReviewListParams),
    responses((status = 200, body = ReviewPage), (status = 404, body = ProblemBody), (status = 422, body = ProblemBody)))]
async fn list(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ReviewListParams>,
) -> Result<Json<ReviewPage>> {
    let page = q.page.unwrap_or(1);
    let page_size = q.page_size.unwrap_or(20);
    let mut errors = Vec::new();
    if page == 0 {
        errors.push(FieldError::new("page", "must be at least 1"));
    }
    if !(1..=100).contains(&page_size) {
        errors.push(FieldError::new("page_size", "must be between 1 and 100"));
    }
    if !errors.is_empty() {
        return Err(Problem::validation(errors).into());
    }
    let (items, total) = reviews::page(&state, product_id(&id)?, page, page_size).await?;
    Ok(Json(ReviewPage {
        items: items.into_iter().map(ReviewView::from).collect(),
        total,
        page,
        page_size,
    }))
}
