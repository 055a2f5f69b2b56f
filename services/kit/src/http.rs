//! HTTP bootstrap: the middleware every service wears and a server that
//! shuts down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::problem::Problem;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// What a request carries through the code that serves it: its id (the
/// correlation id of the events it causes) and its W3C trace context.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub request_id: Option<String>,
    pub traceparent: Option<String>,
}

tokio::task_local! {
    static CONTEXT: RequestContext;
}

impl RequestContext {
    /// The context of the request being served, if any.
    pub fn current() -> RequestContext {
        CONTEXT.try_with(Clone::clone).unwrap_or_default()
    }

    /// Run `fut` with `self` as the current context (event consumers use
    /// this so the events they cause keep the original correlation id).
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        CONTEXT.scope(self, fut).await
    }

    /// Headers to put on an outgoing call to another service.
    pub fn outgoing_headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = Vec::new();
        if let Some(v) = self
            .request_id
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.push((REQUEST_ID, v));
        }
        if let Some(v) = self
            .traceparent
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.push((TRACEPARENT, v));
        }
        headers
    }
}

#[derive(Clone, Copy, Default)]
struct MakeUuidV7;

impl MakeRequestId for MakeUuidV7 {
    fn make_request_id<B>(&mut self, _req: &http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&uuid::Uuid::now_v7().to_string())
            .ok()
            .map(RequestId::new)
    }
}

/// A valid W3C `traceparent`: version 00, non-zero ids.
pub fn is_valid_traceparent(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    parts.len() == 4
        && parts[0] == "00"
        && parts[1].len() == 32
        && parts[2].len() == 16
        && parts[3].len() == 2
        && parts[1..].iter().all(|p| {
            p.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        })
        && parts[1].chars().any(|c| c != '0')
        && parts[2].chars().any(|c| c != '0')
}

/// Start a new trace, or continue the caller's with a new span id.
pub fn child_traceparent(incoming: Option<&str>) -> String {
    let span_id = format!("{:016x}", rand::random::<u64>() | 1);
    match incoming.filter(|v| is_valid_traceparent(v)) {
        Some(parent) => {
            let parts: Vec<&str> = parent.split('-').collect();
            format!("00-{}-{}-{}", parts[1], span_id, parts[3])
        }
        None => format!("00-{:032x}-{}-01", rand::random::<u128>() | 1, span_id),
    }
}

async fn request_context(mut req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let incoming = req
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Keep a valid incoming trace id; otherwise this request starts a trace.
    let traceparent = match incoming {
        Some(tp) if is_valid_traceparent(&tp) => tp,
        _ => {
            let tp = child_traceparent(None);
            if let Ok(v) = HeaderValue::from_str(&tp) {
                req.headers_mut().insert(TRACEPARENT, v);
            }
            tp
        }
    };
    let ctx = RequestContext {
        request_id,
        traceparent: Some(traceparent.clone()),
    };
    let mut res = CONTEXT.scope(ctx, next.run(req)).await;
    if let Ok(v) = HeaderValue::from_str(&traceparent) {
        res.headers_mut().entry(TRACEPARENT).or_insert(v);
    }
    res
}

async fn record_metrics(service: &'static str, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().to_string();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    let labels = [
        ("service", service.to_string()),
        ("method", method),
        ("route", route),
        ("status", status),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    res
}

async fn enforce_timeout(timeout: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(res) => res,
        Err(_) => Problem::new(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "The request took too long",
        )
        .into_response(),
    }
}

/// Fallback for unknown routes: a 404 problem.
pub async fn not_found() -> Problem {
    Problem::not_found("no such route")
}

/// Wrap a service's routes in the standard middleware: request id (made or
/// propagated), trace context, a trace span naming the matched route,
/// metrics by route and status, a request timeout and a body-size limit.
pub fn with_standard_layers(
    router: Router,
    service: &'static str,
    request_timeout: Duration,
    body_limit_bytes: usize,
) -> Router {
    router
        .layer(DefaultBodyLimit::max(body_limit_bytes))
        .layer(middleware::from_fn(move |req, next| {
            enforce_timeout(request_timeout, req, next)
        }))
        .layer(middleware::from_fn(move |req, next| {
            record_metrics(service, req, next)
        }))
        .layer(middleware::from_fn(request_context))
        .layer(
            TraceLayer::new_for_http().make_span_with(move |req: &http::Request<_>| {
                let route = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map(|p| p.as_str())
                    .unwrap_or("unmatched");
                let request_id = req
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!(
                    "http",
                    service,
                    method = %req.method(),
                    route,
                    request_id,
                )
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeUuidV7))
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// Serve `app` on `listener` until `shutdown` is cancelled, then finish the
/// requests in flight.
///
/// Accepted connections get TCP_NODELAY: a response written in more than
/// one piece (the gateway streams what an upstream sends) otherwise waits
/// for the client's delayed ACK, about 40 ms on Linux.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::trace!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
        }
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_validation() {
        assert!(is_valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!is_valid_traceparent(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
        assert!(!is_valid_traceparent("garbage"));
    }

    #[test]
    fn child_keeps_the_trace_id() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let child = child_traceparent(Some(parent));
        assert!(is_valid_traceparent(&child));
        assert!(child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert_ne!(child, parent);
        assert!(is_valid_traceparent(&child_traceparent(None)));
    }
}
