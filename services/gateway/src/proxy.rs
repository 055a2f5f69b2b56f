//! Forwarding: check the caller at the edge, spend their rate allowance,
//! then stream the request to its upstream and the response back.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use kit::Problem;
use kit::auth::TokenVerifier;

use crate::edge_cache::{self, EdgeCache};
use crate::rate_limit::{ClientRateLimiter, Decision};
use crate::routes::{Access, RouteTable};

pub type HttpClient = Client<HttpConnector, Body>;

pub struct Proxy {
    pub routes: RouteTable,
    pub upstreams: std::collections::BTreeMap<String, url::Url>,
    pub client: HttpClient,
    pub verifier: Arc<TokenVerifier>,
    pub limiter: ClientRateLimiter,
    pub login_limiter: ClientRateLimiter,
    pub upstream_timeout: std::time::Duration,
    pub trust_forwarded_for: bool,
    /// Kept copies of public reads; `None` when off.
    pub edge_cache: Option<EdgeCache>,
}

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for h in HOP_BY_HOP.iter().chain(named.iter()) {
        headers.remove(h);
    }
}

fn client_ip(req: &Request, trust_forwarded_for: bool) -> String {
    if trust_forwarded_for
        && let Some(first) = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    {
        return first.to_string();
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn rate_headers(res: &mut Response, d: &Decision) {
    let h = res.headers_mut();
    h.insert("ratelimit-limit", HeaderValue::from(d.limit));
    h.insert("ratelimit-remaining", HeaderValue::from(d.remaining));
    h.insert("ratelimit-reset", HeaderValue::from(d.reset_secs));
}

fn needs_token(access: Access, method: &Method) -> Option<bool> {
    // Some(true): required; Some(false): checked if present; None: ignored.
    match access {
        Access::Public => None,
        Access::Optional => Some(false),
        Access::Protected => Some(true),
        Access::PublicRead => {
            if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
                None
            } else {
                Some(true)
            }
        }
    }
}

pub async fn forward(State(proxy): State<Arc<Proxy>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let Some(route) = proxy.routes.find(&path).cloned() else {
        return Problem::not_found("no such route").into_response();
    };

    // Rate limit before any work on the caller's behalf.
    let client = client_ip(&req, proxy.trust_forwarded_for);
    let is_login = req.method() == Method::POST && path == "/api/v1/auth/login";
    let limiter = if is_login {
        &proxy.login_limiter
    } else {
        &proxy.limiter
    };
    let decision = limiter.check(&client).await;
    if !decision.allowed {
        metrics::counter!("gateway_rate_limited_total", "route" => route.prefix.clone())
            .increment(1);
        let mut res = Problem::too_many_requests(decision.retry_after_secs).into_response();
        rate_headers(&mut res, &decision);
        return res;
    }

    // Verify the token at the edge; the service verifies again.
    let req = match needs_token(route.access, req.method()) {
        Some(required) => {
            let (parts, body) = req.into_parts();
            match kit::auth::authenticate(&proxy.verifier, &parts).await {
                Ok(Some(_)) => {}
                Ok(None) if !required => {}
                Ok(None) => {
                    let mut res =
                        Problem::unauthorized("a bearer token is required").into_response();
                    res.headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    rate_headers(&mut res, &decision);
                    return res;
                }
                Err(problem) => {
                    let mut res = problem.into_response();
                    res.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer error=\"invalid_token\""),
                    );
                    rate_headers(&mut res, &decision);
                    return res;
                }
            }
            Request::from_parts(parts, body)
        }
        None => req,
    };

    // Public reads may be answered from a copy the service vouched for.
    let edge = proxy.edge_cache.as_ref().zip(
        (*req.method() == Method::GET && needs_token(route.access, req.method()).is_none())
            .then(|| req.uri().path_and_query().map(|p| p.as_str().to_owned()))
            .flatten(),
    );
    if let Some((cache, key)) = &edge
        && let Some(mut res) = cache.serve(key).await
    {
        rate_headers(&mut res, &decision);
        return res;
    }
    let mut res = send(&proxy, &route.service, req, &client).await;
    let validity = edge_cache::take_validity(&mut res);
    if let (Some((cache, key)), Some(validity)) = (edge, validity) {
        res = cache.keep(key, validity, res).await;
    }
    rate_headers(&mut res, &decision);
    res
}

async fn send(proxy: &Proxy, service: &str, req: Request, client: &str) -> Response {
    let Some(base) = proxy.upstreams.get(service) else {
        return Problem::unavailable(format!("the {service} service is not deployed"))
            .into_response();
    };
    let (mut parts, body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let uri: Uri =
        match format!("{}{}", base.as_str().trim_end_matches('/'), path_and_query).parse() {
            Ok(u) => u,
            Err(_) => return Problem::bad_request("malformed request target").into_response(),
        };
    let original_host = parts.headers.get(header::HOST).cloned();
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::HOST);
    let forwarded_for = match parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(prev) if proxy.trust_forwarded_for => format!("{prev}, {client}"),
        _ => client.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        parts.headers.insert("x-forwarded-for", v);
    }
    if let Some(host) = original_host {
        parts.headers.insert("x-forwarded-host", host);
    }
    parts
        .headers
        .entry("x-forwarded-proto")
        .or_insert(HeaderValue::from_static("http"));
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    let upstream_req = Request::from_parts(parts, body);

    let started = std::time::Instant::now();
    let outcome =
        tokio::time::timeout(proxy.upstream_timeout, proxy.client.request(upstream_req)).await;
    metrics::histogram!("gateway_upstream_duration_seconds", "service" => service.to_string())
        .record(started.elapsed().as_secs_f64());
    match outcome {
        Err(_) => {
            metrics::counter!("gateway_upstream_errors_total", "service" => service.to_string(), "kind" => "timeout").increment(1);
            Problem::new(
                http::StatusCode::GATEWAY_TIMEOUT,
                "upstream-timeout",
                "The service did not answer in time",
            )
            .detail(format!(
                "{service} did not answer within {:?}",
                proxy.upstream_timeout
            ))
            .into_response()
        }
        Ok(Err(e)) => {
            metrics::counter!("gateway_upstream_errors_total", "service" => service.to_string(), "kind" => "unreachable").increment(1);
            tracing::warn!(%service, error = %e, "upstream unreachable");
            Problem::new(
                http::StatusCode::BAD_GATEWAY,
                "upstream-unavailable",
                "The service is unavailable",
            )
            .detail(format!("{service} cannot be reached"))
            .into_response()
        }
        Ok(Ok(res)) => {
            let (mut parts, body) = res.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
    }
}
