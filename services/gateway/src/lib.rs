//! The gateway: the shop's single entry point. It routes by path prefix,
//! checks tokens at the edge, limits request rates per client, and serves
//! the merged API documentation.

pub mod config;
pub mod docs;
pub mod edge_cache;
pub mod proxy;
pub mod rate_limit;
pub mod routes;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kit::auth::TokenVerifier;
use kit::cache::Cache;
use kit::health::ReadinessCheck;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use config::GatewayConfig;
use rate_limit::{Allowance, ClientRateLimiter};
use routes::RouteTable;

/// Everything the gateway needs, however it was configured.
pub struct Settings {
    pub routes: RouteTable,
    pub upstreams: BTreeMap<String, url::Url>,
    pub jwks_url: url::Url,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub rate: Allowance,
    pub login_rate: Allowance,
    /// Count rate limits in the Redis cache, shared by every replica
    /// (with a `memory://` cache each replica counts on its own anyway).
    pub shared_rate_limits: bool,
    pub upstream_timeout: Duration,
    pub cors_allowed_origins: Vec<String>,
    pub trust_forwarded_for: bool,
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
    /// Memory for kept copies of public reads ([`edge_cache`]); 0 turns
    /// them off. The cache given to [`Gateway::build`] must be the one the
    /// services set their generations in.
    pub edge_cache_bytes: u64,
}

impl Settings {
    pub fn from_config(c: &GatewayConfig) -> Self {
        Self {
            routes: c.routes.clone(),
            upstreams: c.upstreams.clone(),
            jwks_url: c.tokens.jwks_url.clone(),
            jwt_issuer: c.tokens.jwt_issuer.clone(),
            jwt_audience: c.tokens.jwt_audience.clone(),
            rate: c.rate_limits.general(),
            login_rate: c.rate_limits.sign_in(),
            shared_rate_limits: c.rate_limit_shared,
            upstream_timeout: c.upstream_timeout,
            cors_allowed_origins: c.cors_allowed_origins.clone(),
            trust_forwarded_for: c.trust_forwarded_for,
            request_timeout: c.http.request_timeout,
            body_limit_bytes: c.http.body_limit_bytes,
            edge_cache_bytes: c.edge_cache_mb * 1024 * 1024,
        }
    }
}

pub struct Gateway {
    pub router: Router,
    limiters: Vec<ClientRateLimiter>,
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods(tower_http::cors::Any)
            .allow_headers(tower_http::cors::Any)
            .expose_headers([
                http::HeaderName::from_static("x-request-id"),
                http::HeaderName::from_static("x-cart-id"),
                http::HeaderName::from_static("ratelimit-limit"),
                http::HeaderName::from_static("ratelimit-remaining"),
                http::HeaderName::from_static("ratelimit-reset"),
                http::header::RETRY_AFTER,
            ])
            .max_age(Duration::from_secs(600)),
    )
}

impl Gateway {
    pub fn build(settings: Settings, cache: &Cache) -> Self {
        let (limiter, login_limiter) = match cache.redis().filter(|_| settings.shared_rate_limits) {
            Some(conn) => (
                ClientRateLimiter::redis(settings.rate, conn.clone(), &cache.key("gateway:rate")),
                ClientRateLimiter::redis(
                    settings.login_rate,
                    conn,
                    &cache.key("gateway:login-rate"),
                ),
            ),
            None => (
                ClientRateLimiter::memory(settings.rate),
                ClientRateLimiter::memory(settings.login_rate),
            ),
        };
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector);
        let verifier = Arc::new(TokenVerifier::from_jwks_url(
            settings.jwks_url.clone(),
            &settings.jwt_issuer,
            &settings.jwt_audience,
        ));
        let docs = Arc::new(docs::MergedDocs::new(
            settings
                .upstreams
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ));
        let checks: Vec<ReadinessCheck> = settings
            .upstreams
            .iter()
            .map(|(name, base)| {
                let url = base.join("/readyz").ok();
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(2))
                    .build()
                    .unwrap_or_default();
                ReadinessCheck::new(name.clone(), move || {
                    let url = url.clone();
                    let http = http.clone();
                    async move {
                        let url = url.ok_or("bad upstream URL")?;
                        match http.get(url).send().await {
                            Ok(r) if r.status().is_success() => Ok(()),
                            Ok(r) => Err(format!("not ready ({})", r.status())),
                            Err(e) => Err(format!("unreachable: {e}")),
                        }
                    }
                })
            })
            .collect();
        let proxy = Arc::new(proxy::Proxy {
            routes: settings.routes,
            upstreams: settings.upstreams,
            client,
            verifier,
            limiter: limiter.clone(),
            login_limiter: login_limiter.clone(),
            upstream_timeout: settings.upstream_timeout,
            trust_forwarded_for: settings.trust_forwarded_for,
            edge_cache: (settings.edge_cache_bytes > 0)
                .then(|| edge_cache::EdgeCache::new(cache.clone(), settings.edge_cache_bytes)),
        });
        let api = Router::new()
            .route("/api/openapi.json", get(docs::openapi))
            .with_state(docs)
            .merge(
                utoipa_swagger_ui::SwaggerUi::new("/api/docs")
                    .config(utoipa_swagger_ui::Config::from("/api/openapi.json")),
            )
            .merge(kit::health::router(checks))
            .fallback_service(axum::routing::any(proxy::forward).with_state(proxy));
        let mut router = kit::http::with_standard_layers(
            api,
            "gateway",
            settings.request_timeout,
            settings.body_limit_bytes,
        )
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            settings.body_limit_bytes,
        ));
        if let Some(cors) = cors(&settings.cors_allowed_origins) {
            router = router.layer(cors);
        }
        Self {
            router,
            limiters: vec![limiter, login_limiter],
        }
    }

    /// Periodically forget idle clients of the in-memory limiters.
    pub fn spawn_workers(&self, shutdown: CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        let limiters = self.limiters.clone();
        vec![tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = tick.tick() => limiters.iter().for_each(|l| l.forget_idle()),
                    _ = shutdown.cancelled() => break,
                }
            }
        })]
    }
}
