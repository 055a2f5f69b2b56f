use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use kit::auth::AuthUser;
use kit::json::ApiQuery;
use kit::problem::ProblemBody;
use kit::{FieldError, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::error::Result;
use crate::storage::notifications::{self, NotificationRecord, Status};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/notifications", get(list))
}

/// One notification in the feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationView {
    pub id: Uuid,
    /// `welcome`, `order_confirmed`, `order_cancelled`, `order_shipped`,
    /// `order_delivered` or `payment_refunded`.
    pub kind: String,
    pub subject: String,
    /// `stored` (in-app only: no email is sent by this shop), `queued`,
    /// `sent` or `failed`.
    pub status: Status,
    pub created_at: String,
    /// When the SMTP server accepted the email.
    pub sent_at: Option<String>,
    pub body_text: String,
}

impl From<NotificationRecord> for NotificationView {
    fn from(n: NotificationRecord) -> Self {
        Self {
            id: n.id,
            kind: n.kind,
            subject: n.subject,
            status: n.status,
            created_at: kit::clock::rfc3339(n.created_at),
            sent_at: n.sent_at.map(kit::clock::rfc3339),
            body_text: n.body_text,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationPage {
    pub items: Vec<NotificationView>,
    /// Pass as `cursor` for the next (older) page; absent on the last.
    pub next_cursor: Option<Uuid>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<Uuid>,
}

/// The signed-in customer's notifications, newest first.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "notifications", security(("bearer" = [])), params(FeedQuery),
    responses((status = 200, body = NotificationPage), (status = 401, body = ProblemBody), (status = 422, body = ProblemBody)))]
#[tracing::instrument(skip_all, err(level = "info", Display))]
async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<FeedQuery>,
) -> Result<Json<NotificationPage>> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(Problem::validation(vec![FieldError::new(
            "limit",
            "must be between 1 and 100",
        )])
        .into());
    }
    let mut rows = notifications::feed_page(state.db.pool(), user.id, q.cursor, limit + 1).await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|n| n.id)
    } else {
        None
    };
    Ok(Json(NotificationPage {
        items: rows.into_iter().map(NotificationView::from).collect(),
        next_cursor,
    }))
}
