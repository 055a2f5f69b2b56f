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
use crate::domain::{Money, PaymentStatus};
use crate::error::Result;
use crate::storage::payments::{self, Filter, PaymentRecord};

/// Who may read every payment.
pub const READ_ALL: &str = "payments:read";

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/payments", get(list))
}

/// A payment as clients see it: never card data, only provider ids.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PaymentView {
    pub id: Uuid,
    pub order_id: Uuid,
    pub status: PaymentStatus,
    pub amount: Money,
    pub provider: String,
    pub provider_payment_id: Option<String>,
    pub failure_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<PaymentRecord> for PaymentView {
    fn from(p: PaymentRecord) -> Self {
        Self {
            id: p.id,
            order_id: p.order_id,
            status: p.status,
            amount: p.amount,
            provider: p.provider,
            provider_payment_id: p.provider_payment_id,
            failure_reason: p.failure_reason,
            created_at: kit::clock::rfc3339(p.created_at),
            updated_at: kit::clock::rfc3339(p.updated_at),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only the payment of this order.
    order_id: Option<Uuid>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<Uuid>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PaymentPage {
    pub items: Vec<PaymentView>,
    pub next_cursor: Option<Uuid>,
}

/// Payments, oldest first: the caller's own, or everyone's with the
/// `payments:read` permission. Another customer's payment is simply not
/// listed (an empty page), so its existence is not revealed.
#[utoipa::path(get, path = "/api/v1/payments", tag = "payments", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = PaymentPage), (status = 401, body = ProblemBody), (status = 422, body = ProblemBody)))]
async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<PaymentPage>> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(Problem::validation(vec![FieldError::new(
            "limit",
            "must be between 1 and 100",
        )])
        .into());
    }
    let filter = Filter {
        customer_id: (!user.has_permission(READ_ALL)).then_some(user.id),
        order_id: q.order_id,
    };
    let mut rows = payments::page(state.db.pool(), &filter, q.cursor, limit + 1).await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|p| p.id)
    } else {
        None
    };
    Ok(Json(PaymentPage {
        items: rows.into_iter().map(PaymentView::from).collect(),
        next_cursor,
    }))
}
