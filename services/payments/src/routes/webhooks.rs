use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use http::HeaderMap;
use kit::problem::ProblemBody;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{PaymentsError, Result};
use crate::lifecycle::{self, Applied};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/payments/webhooks/{provider}", post(receive))
}

#[derive(Serialize, ToSchema)]
pub struct WebhookReceipt {
    received: bool,
    /// `true` when this event was delivered and applied before.
    duplicate: bool,
}

/// An event from the payment provider, signed Stripe's way
/// (`Stripe-Signature`). Anything unsigned, tampered with or stale is
/// refused and changes nothing; an event delivered again is acknowledged
/// and changes nothing.
#[utoipa::path(post, path = "/api/v1/payments/webhooks/{provider}", tag = "webhooks",
    params(("provider" = String, Path, description = "`sandbox` or `stripe`: the provider this deployment uses"),
        ("Stripe-Signature" = String, Header, description = "`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"{t}.{body}\">`; checked within 300 s")),
    request_body(content = String, content_type = "application/json", description = "The provider's event, exactly as signed"),
    responses((status = 200, body = WebhookReceipt), (status = 400, body = ProblemBody), (status = 404, body = ProblemBody),
        (status = 503, body = ProblemBody, description = "Not applied now; the provider retries")))]
#[tracing::instrument(skip_all, fields(provider = %provider), err(level = "info", Display))]
async fn receive(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookReceipt>> {
    if provider != state.provider.name() {
        return Err(PaymentsError::UnknownProvider(provider));
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let event = state.provider.verify_webhook(&headers, &body, now)?;
    let applied = lifecycle::apply_provider_event(&state, state.provider.name(), &event).await?;
    tracing::info!(event_id = %event.id, event_type = %event.event_type, ?applied, "webhook received");
    Ok(Json(WebhookReceipt {
        received: true,
        duplicate: applied == Applied::Duplicate,
    }))
}
