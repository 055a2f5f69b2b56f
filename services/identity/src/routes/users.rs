use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use kit::auth::AuthUser;
use kit::json::{ApiJson, ApiQuery};
use kit::problem::ProblemBody;
use kit::{FieldError, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::accounts;
use crate::domain::Role;
use crate::error::{IdentityError, Result};
use crate::storage::users::{self, UserRecord};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/users/me", get(me))
        .route("/api/v1/users/me/password", post(change_password))
        .route("/api/v1/users", get(list))
        .route("/api/v1/users/{id}/roles", put(set_roles))
}

#[derive(Serialize, ToSchema)]
pub struct UserView {
    id: Uuid,
    email: String,
    name: String,
    roles: Vec<Role>,
    created_at: String,
}

impl From<UserRecord> for UserView {
    fn from(u: UserRecord) -> Self {
        Self {
            id: u.id,
            email: u.email,
            name: u.name,
            roles: u.roles,
            created_at: kit::clock::rfc3339(u.created_at),
        }
    }
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = ProblemBody)))]
async fn me(State(state): State<AppState>, user: AuthUser) -> Result<Json<UserView>> {
    let record = users::by_id(state.db.pool(), user.id)
        .await?
        .ok_or(IdentityError::UserNotFound)?;
    Ok(Json(record.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    current_password: String,
    /// 10 to 256 characters.
    #[schema(min_length = 10, max_length = 256)]
    new_password: String,
}

/// Change the signed-in user's password; every refresh token is revoked.
#[utoipa::path(post, path = "/api/v1/users/me/password", tag = "users", security(("bearer" = [])), request_body = ChangePasswordRequest,
    responses((status = 204), (status = 401, body = ProblemBody), (status = 422, body = ProblemBody)))]
#[tracing::instrument(skip_all, err(level = "info", Display))]
async fn change_password(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(req): ApiJson<ChangePasswordRequest>,
) -> Result<StatusCode> {
    accounts::change_password(&state, user.id, &req.current_password, &req.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct UserPage {
    items: Vec<UserView>,
    next_cursor: Option<Uuid>,
}

/// Every user, oldest first (admin).
#[utoipa::path(get, path = "/api/v1/users", tag = "users", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = UserPage), (status = 403, body = ProblemBody), (status = 422, body = ProblemBody)))]
async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<UserPage>> {
    user.require_permission("users:read")?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(Problem::validation(vec![FieldError::new(
            "limit",
            "must be between 1 and 100",
        )])
        .into());
    }
    let mut rows = users::page(state.db.pool(), q.cursor, limit + 1).await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|u| u.id)
    } else {
        None
    };
    Ok(Json(UserPage {
        items: rows.into_iter().map(UserView::from).collect(),
        next_cursor,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolesRequest {
    roles: Vec<String>,
}

/// Replace a user's roles (admin).
#[utoipa::path(put, path = "/api/v1/users/{id}/roles", tag = "users", security(("bearer" = [])), request_body = RolesRequest,
    responses((status = 200, body = UserView), (status = 403, body = ProblemBody), (status = 404, body = ProblemBody), (status = 422, body = ProblemBody)))]
#[tracing::instrument(skip_all, err(level = "info", Display))]
async fn set_roles(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RolesRequest>,
) -> Result<Json<UserView>> {
    user.require_permission("users:manage")?;
    let id = Uuid::parse_str(&id).map_err(|_| IdentityError::UserNotFound)?;
    Ok(Json(
        accounts::set_roles(&state, id, &req.roles).await?.into(),
    ))
}
