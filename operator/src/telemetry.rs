//! Tracing, Prometheus metrics, the write counter on the API client, and the
//! operator's own `/healthz` and `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use http::{Method, Request};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The operator's metrics. Cheap to clone; a no-op until a recorder is installed.
#[derive(Clone, Default)]
pub struct Metrics;

impl Metrics {
    /// One reconcile of `kind`, and how long it took.
    pub fn reconciled(&self, kind: &str, took: Duration) {
        metrics::counter!("emporium_operator_reconciles_total", "kind" => kind.to_owned())
            .increment(1);
        metrics::histogram!("emporium_operator_reconcile_duration_seconds", "kind" => kind.to_owned())
            .record(took.as_secs_f64());
    }

    /// A failed reconcile of `kind`.
    pub fn failed(&self, kind: &str, error: &'static str) {
        metrics::counter!("emporium_operator_reconcile_errors_total", "kind" => kind.to_owned(), "error" => error)
            .increment(1);
    }
}

/// Counts every request of the client that changes something
/// (`emporium_operator_api_writes_total{verb,resource}`).
pub fn count_writes<B>(request: Request<B>) -> Request<B> {
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        let resource = resource_of(request.uri().path());
        metrics::counter!(
            "emporium_operator_api_writes_total",
            "verb" => method.as_str().to_owned(),
            "resource" => resource,
        )
        .increment(1);
    }
    request
}

/// `deployments`, `stores/status`, … from an API path.
pub fn resource_of(path: &str) -> String {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest: &[&str] = match segments.first() {
        Some(&"api") => segments.get(2..).unwrap_or_default(),
        Some(&"apis") => segments.get(3..).unwrap_or_default(),
        _ => &[],
    };
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    match rest {
        [resource, _, sub, ..] => format!("{resource}/{sub}"),
        [resource, ..] => (*resource).to_owned(),
        [] => "namespaces".to_owned(),
    }
}

/// Logs as JSON when `json`, else as text; `RUST_LOG` filters.
pub fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Installs the Prometheus recorder.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    Ok(PrometheusBuilder::new().install_recorder()?)
}

#[derive(Clone)]
struct Probe {
    prometheus: PrometheusHandle,
    leader: Arc<AtomicBool>,
}

/// `/healthz` (alive), `/readyz` (alive; says whether this replica leads) and `/metrics`.
pub async fn serve(
    listen: SocketAddr,
    prometheus: PrometheusHandle,
    leader: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(probe): State<Probe>| async move {
                if probe.leader.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready: leader\n")
                } else {
                    (StatusCode::OK, "ready: standby\n")
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(probe): State<Probe>| async move {
                let leader = i32::from(probe.leader.load(Ordering::Relaxed));
                format!(
                    "{}# TYPE emporium_operator_leader gauge\nemporium_operator_leader {leader}\n",
                    probe.prometheus.render()
                )
            }),
        )
        .with_state(Probe { prometheus, leader });
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "serving /healthz and /metrics");
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::resource_of;

    #[test]
    fn resources_are_named_from_paths() {
        assert_eq!(
            resource_of("/apis/apps/v1/namespaces/shop/deployments/web"),
            "deployments"
        );
        assert_eq!(
            resource_of("/apis/emporium.dev/v1alpha1/namespaces/shop/stores/a/status"),
            "stores/status"
        );
        assert_eq!(resource_of("/api/v1/namespaces/shop/secrets"), "secrets");
        assert_eq!(
            resource_of("/apis/coordination.k8s.io/v1/namespaces/x/leases/op"),
            "leases"
        );
        assert_eq!(resource_of("/api/v1/namespaces"), "namespaces");
    }
}
