//! `/healthz` (the process is alive), `/readyz` (its dependencies answer)
//! and `/metrics` (Prometheus text).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;

type CheckFn = dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync;

/// One dependency that must answer for the service to be ready.
#[derive(Clone)]
pub struct ReadinessCheck {
    name: String,
    check: Arc<CheckFn>,
}

impl ReadinessCheck {
    pub fn new<F, Fut>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name: name.into(),
            check: Arc::new(move || Box::pin(f())),
        }
    }
}

impl ReadinessCheck {
    /// The service's own database answers.
    pub fn database(db: &crate::db::Database) -> Self {
        let db = db.clone();
        Self::new("database", move || {
            let db = db.clone();
            async move { db.ping().await }
        })
    }

    /// The event bus accepts publishes.
    pub fn events(bus: &crate::events::EventBus) -> Self {
        let bus = bus.clone();
        Self::new("events", move || {
            let bus = bus.clone();
            async move { bus.ping().await }
        })
    }

    /// The cache answers.
    pub fn cache(cache: &crate::cache::Cache) -> Self {
        let cache = cache.clone();
        Self::new("cache", move || {
            let cache = cache.clone();
            async move { cache.ping().await }
        })
    }
}

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ],
                )
                .ok()?
                .install_recorder()
                .ok()
        })
        .as_ref()
}

/// Routes for the three operational endpoints.
pub fn router(checks: Vec<ReadinessCheck>) -> Router {
    prometheus();
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Arc::new(checks))
}

async fn readyz(State(checks): State<Arc<Vec<ReadinessCheck>>>) -> Response {
    let results = futures::future::join_all(checks.iter().map(|c| async move {
        let outcome = tokio::time::timeout(Duration::from_secs(3), (c.check)())
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        (c.name.clone(), outcome)
    }))
    .await;
    let ready = results.iter().all(|(_, r)| r.is_ok());
    let detail: serde_json::Map<String, serde_json::Value> = results
        .into_iter()
        .map(|(name, r)| {
            let v = match r {
                Ok(()) => json!("ok"),
                Err(e) => json!(e),
            };
            (name, v)
        })
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({"status": if ready {"ready"} else {"not_ready"}, "checks": detail})),
    )
        .into_response()
}

async fn metrics_text() -> Response {
    match prometheus() {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[tokio::test]
    async fn readyz_reports_a_failing_dependency() {
        let app = router(vec![
            ReadinessCheck::new("database", || async { Ok(()) }),
            ReadinessCheck::new("broker", || async { Err("connection refused".to_string()) }),
        ]);
        let res = app
            .oneshot(http::Request::get("/readyz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["checks"]["database"], "ok");
        assert_eq!(v["checks"]["broker"], "connection refused");
    }
}
