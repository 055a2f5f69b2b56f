use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use kit::auth::AuthUser;
use kit::json::{ApiJson, ApiQuery};
use kit::problem::ProblemBody;
use kit::{FieldError, Problem};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::checkout::{self, PlaceOrder};
use crate::domain::{Money, OrderStatus, ShippingAddress};
use crate::error::{OrderError, Result};
use crate::lifecycle::{self, Applied, Change};
use crate::storage::orders::{self as store, HistoryEntry, ListFilter, OrderLine, OrderRecord};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orders", post(place).get(list))
        .route("/api/v1/orders/{id}", get(get_one))
        .route("/api/v1/orders/{id}/cancel", post(cancel))
        .route("/api/v1/orders/{id}/status", post(set_status))
}

const MANAGE: &str = "orders:manage";

#[derive(Serialize, ToSchema)]
pub struct HistoryView {
    status: OrderStatus,
    at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct OrderView {
    id: Uuid,
    number: String,
    status: OrderStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancel_reason: Option<String>,
    lines: Vec<OrderLine>,
    subtotal: Money,
    shipping: Money,
    tax: Money,
    total: Money,
    shipping_address: ShippingAddress,
    history: Vec<HistoryView>,
    created_at: String,
}

fn view(o: OrderRecord, history: Vec<HistoryEntry>) -> OrderView {
    OrderView {
        id: o.id,
        number: o.number,
        status: o.status,
        cancel_reason: o.cancel_reason,
        lines: o.lines,
        subtotal: Money::new(o.subtotal, &o.currency),
        shipping: Money::new(o.shipping, &o.currency),
        tax: Money::new(o.tax, &o.currency),
        total: Money::new(o.total, &o.currency),
        shipping_address: o.shipping_address,
        history: history
            .into_iter()
            .map(|h| HistoryView {
                status: h.status,
                at: kit::clock::rfc3339(h.at),
                reason: h.reason,
            })
            .collect(),
        created_at: kit::clock::rfc3339(o.created_at),
    }
}

/// `o` as the API shows it, with its history read afresh.
async fn load_view(state: &AppState, o: OrderRecord) -> Result<OrderView> {
    let history = store::history(state.db.pool(), o.id).await?;
    Ok(view(o, history))
}

fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' ').map(|(_, t)| t.trim()))
        .unwrap_or_default()
}

/// Place an order from the caller's cart.
#[utoipa::path(post, path = "/api/v1/orders", tag = "orders", security(("bearer" = [])), request_body = PlaceOrder,
    params(("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
        description = "Makes retries safe: the same key and body return the same order")),
    responses((status = 201, body = OrderView), (status = 200, body = OrderView, description = "A retry of an earlier request"),
        (status = 400, body = ProblemBody), (status = 409, body = ProblemBody), (status = 422, body = ProblemBody)))]
#[tracing::instrument(skip_all, err(level = "info", Display))]
async fn place(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    ApiJson(req): ApiJson<PlaceOrder>,
) -> Result<(StatusCode, Json<OrderView>)> {
    let key = checkout::check_idempotency_key(
        headers.get("idempotency-key").and_then(|v| v.to_str().ok()),
    )?;
    let (status, order) = checkout::place_order(&state, &user, bearer(&headers), key, req).await?;
    let view = if status == StatusCode::CREATED {
        // Just placed: its history is its one entry, no need to read it.
        let placed = HistoryEntry {
            status: order.status,
            reason: None,
            at: order.created_at,
        };
        view(order, vec![placed])
    } else {
        load_view(&state, order).await?
    };
    Ok((status, Json(view)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<Uuid>,
    /// Only orders in this status.
    status: Option<OrderStatus>,
    /// Only orders placed at or after this time (RFC 3339).
    from: Option<String>,
    /// Only orders placed before this time (RFC 3339).
    to: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct OrderPage {
    items: Vec<OrderView>,
    next_cursor: Option<Uuid>,
}

fn parse_time(field: &str, v: &Option<String>, errors: &mut Vec<FieldError>) -> Option<i64> {
    let raw = v.as_deref()?;
    match time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339) {
        Ok(t) => Some((t.unix_timestamp_nanos() / 1_000_000) as i64),
        Err(_) => {
            errors.push(FieldError::new(
                field,
                "must be an RFC 3339 time such as 2026-11-29T00:00:00Z",
            ));
            None
        }
    }
}

/// The caller's orders, newest first; admins see every customer's.
#[utoipa::path(get, path = "/api/v1/orders", tag = "orders", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = OrderPage), (status = 401, body = ProblemBody), (status = 422, body = ProblemBody)))]
async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<OrderPage>> {
    let mut errors = Vec::new();
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        errors.push(FieldError::new("limit", "must be between 1 and 100"));
    }
    let created_from = parse_time("from", &q.from, &mut errors);
    let created_to = parse_time("to", &q.to, &mut errors);
    if let (Some(from), Some(to)) = (created_from, created_to)
        && from >= to
    {
        errors.push(FieldError::new("to", "must be later than `from`"));
    }
    if !errors.is_empty() {
        return Err(OrderError::Validation(errors));
    }
    let filter = ListFilter {
        customer: (!user.has_permission(MANAGE)).then_some(user.id),
        status: q.status,
        created_from,
        created_to,
        before: q.cursor,
    };
    let mut rows = store::list(&state.db, &filter, limit + 1).await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|o| o.id)
    } else {
        None
    };
    let ids: Vec<Uuid> = rows.iter().map(|o| o.id).collect();
    let mut histories = store::histories(state.db.pool(), &ids).await?;
    let items = rows
        .into_iter()
        .map(|o| {
            let history = histories.remove(&o.id).unwrap_or_default();
            view(o, history)
        })
        .collect();
    Ok(Json(OrderPage { items, next_cursor }))
}

fn order_id(raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw).map_err(|_| OrderError::NotFound)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    /// While the order is `pending` or `awaiting_payment`, hold the answer
    /// until it is settled (confirmed or later, or cancelled), for at most
    /// this many seconds (0 to 10; default 0: answer at once). A checkout
    /// page asks once instead of polling.
    #[param(minimum = 0, maximum = 10)]
    wait: Option<u64>,
}

/// The longest a read may wait: well inside the gateway's upstream timeout.
const MAX_WAIT_SECS: u64 = 10;

/// One order: the caller's own (another customer's is a 404), or any for
/// admins; with `wait`, once it is settled.
#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders", security(("bearer" = [])), params(ReadQuery),
    responses((status = 200, body = OrderView), (status = 404, body = ProblemBody), (status = 422, body = ProblemBody)))]
async fn get_one(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ReadQuery>,
) -> Result<Json<OrderView>> {
    let wait = q.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(OrderError::Validation(vec![FieldError::new(
            "wait",
            format!("must be between 0 and {MAX_WAIT_SECS} seconds"),
        )]));
    }
    let id = order_id(&id)?;
    // Watch before reading, so a change in between is not missed.
    let mut watch = (wait > 0).then(|| state.status_watch.watch(id));
    let read = || async {
        store::by_id_with_history(state.db.pool(), id)
            .await?
            .filter(|(o, _)| o.customer_id == user.id || user.has_permission(MANAGE))
            .ok_or(OrderError::NotFound)
    };
    let mut found = read().await?;
    if let Some(watch) = watch.as_mut() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
        while !found.0.status.is_settled() && tokio::time::Instant::now() < deadline {
            let recheck = deadline.min(tokio::time::Instant::now() + state.settings.settle_recheck);
            let _ = tokio::time::timeout_at(recheck, watch.until(|s| s.is_settled())).await;
            found = read().await?;
        }
    }
    let (order, history) = found;
    Ok(Json(view(order, history)))
}

/// Cancel an order before it ships; a paid order is refunded.
#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel", tag = "orders", security(("bearer" = [])),
    responses((status = 200, body = OrderView), (status = 404, body = ProblemBody), (status = 409, body = ProblemBody)))]
#[tracing::instrument(skip_all, err(level = "info", Display))]
async fn cancel(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<OrderView>> {
    let owner = (!user.has_permission(MANAGE)).then_some(user.id);
    let outcome = lifecycle::apply(
        &state,
        Change {
            order_id: order_id(&id)?,
            next: OrderStatus::Cancelled,
            reason: Some(if owner.is_some() {
                "customer_request"
            } else {
                "cancelled_by_shop"
            }),
            cause: None,
            strict: true,
            owner,
        },
    )
    .await?;
    match outcome {
        Applied::Changed(order) => Ok(Json(load_view(&state, *order).await?)),
        _ => Err(OrderError::NotFound),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    /// `processing`, `shipped` or `delivered`.
    #[schema(value_type = String, pattern = "^(processing|shipped|delivered)$", example = "shipped")]
    status: OrderStatus,
}

/// Move an order along fulfilment (admin).
#[utoipa::path(post, path = "/api/v1/orders/{id}/status", tag = "orders", security(("bearer" = [])), request_body = StatusChange,
    responses((status = 200, body = OrderView), (status = 403, body = ProblemBody), (status = 404, body = ProblemBody), (status = 409, body = ProblemBody), (status = 422, body = ProblemBody)))]
#[tracing::instrument(skip_all, err(level = "info", Display))]
async fn set_status(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<StatusChange>,
) -> Result<Json<OrderView>> {
    user.require_permission(MANAGE)?;
    if !matches!(
        req.status,
        OrderStatus::Processing | OrderStatus::Shipped | OrderStatus::Delivered
    ) {
        return Err(Problem::validation(vec![FieldError::new(
            "status",
            "must be processing, shipped or delivered",
        )])
        .into());
    }
    let outcome = lifecycle::apply(
        &state,
        Change {
            order_id: order_id(&id)?,
            next: req.status,
            reason: Some("fulfilment"),
            cause: None,
            strict: true,
            owner: None,
        },
    )
    .await?;
    match outcome {
        Applied::Changed(order) => Ok(Json(load_view(&state, *order).await?)),
        _ => Err(OrderError::NotFound),
    }
}
