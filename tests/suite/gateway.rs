//! The gateway against real upstreams: identity, plus small HTTP servers
//! standing in for services that are slow, down or that echo what they
//! receive.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use emporium_tests::Backends;
use emporium_tests::shop::{Shop, ShopOptions, listen};
use gateway::rate_limit::Allowance;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "correct horse battery";

/// An upstream that echoes the headers it received and counts calls.
async fn echo_upstream(delay: Duration) -> (url::Url, Arc<AtomicUsize>, CancellationToken) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new().fallback(get(move |headers: HeaderMap| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            let seen: BTreeMap<String, String> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect();
            axum::Json(json!({"headers": seen}))
        }
    }));
    let (listener, url) = listen().await;
    let stop = CancellationToken::new();
    tokio::spawn(kit::http::serve(listener, app, stop.clone()));
    (url, hits, stop)
}

fn with_echo(url: url::Url) -> ShopOptions {
    ShopOptions {
        extra_upstreams: BTreeMap::from([("echo".to_string(), url)]),
        extra_routes: vec![
            "/api/v1/echo-private=echo:protected".into(),
            "/api/v1/echo=echo:public".into(),
        ],
        ..Default::default()
    }
}

#[tokio::test]
async fn routes_to_identity_and_rejects_bad_tokens_at_the_edge() {
    let b = Backends::new();
    let (echo, hits, _stop) = echo_upstream(Duration::ZERO).await;
    let shop = Shop::start(&b, with_echo(echo)).await;

    // Missing and invalid tokens never reach the upstream.
    let res = shop
        .http
        .get(shop.url("/api/v1/echo-private/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    let res = shop
        .get_with_token("/api/v1/echo-private/x", "abc.def.ghi")
        .await;
    assert_eq!(res.status(), 401);
    let res = shop
        .http
        .get(shop.url("/api/v1/echo-private/x"))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    // A valid token passes, and the upstream sees it.
    shop.register("ada@example.com", PASSWORD).await;
    let (token, _) = shop.login("ada@example.com", PASSWORD).await;
    let res = shop
        .get_with_token("/api/v1/echo-private/x?y=1", &token)
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["headers"]["authorization"], format!("Bearer {token}"));
    assert_eq!(body["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Unknown paths are a 404 problem, not a proxy attempt.
    let res = shop.http.get(shop.url("/nowhere")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn propagates_request_id_and_trace_context() {
    let b = Backends::new();
    let (echo, _hits, _stop) = echo_upstream(Duration::ZERO).await;
    let shop = Shop::start(&b, with_echo(echo)).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let res = shop
        .http
        .get(shop.url("/api/v1/echo/hello"))
        .header("x-request-id", "req-12345")
        .header("traceparent", traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "req-12345");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["headers"]["x-request-id"], "req-12345");
    assert_eq!(body["headers"]["traceparent"], traceparent);

    // Without one, the gateway makes a request id and starts a trace.
    let res = shop
        .http
        .get(shop.url("/api/v1/echo/hello"))
        .send()
        .await
        .unwrap();
    let made = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["headers"]["x-request-id"], made.as_str());
    assert!(uuid::Uuid::parse_str(&made).is_ok());
    assert!(kit::http::is_valid_traceparent(
        body["headers"]["traceparent"].as_str().unwrap()
    ));
}

#[tokio::test]
async fn slow_upstream_is_a_504_and_a_down_one_a_502() {
    let b = Backends::new();
    let (slow, _hits, _stop) = echo_upstream(Duration::from_secs(3)).await;
    // A port that was just free: nothing listens there.
    let dead = {
        let (l, url) = listen().await;
        drop(l);
        url
    };
    let mut options = with_echo(slow);
    options.upstream_timeout = Duration::from_millis(500);
    options.extra_upstreams.insert("dead".into(), dead);
    options.extra_routes.push("/api/v1/dead=dead:public".into());
    options
        .extra_routes
        .push("/api/v1/undeployed=nobody:public".into());
    let shop = Shop::start(&b, options).await;

    let res = shop
        .http
        .get(shop.url("/api/v1/echo/slow"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 504);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["type"],
        "https://emporium.dev/problems/upstream-timeout"
    );

    let res = shop
        .http
        .get(shop.url("/api/v1/dead/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
    assert_eq!(res.headers()["content-type"], "application/problem+json");

    let res = shop
        .http
        .get(shop.url("/api/v1/undeployed"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);

    // Readiness reports the dead upstream.
    let res = shop.http.get(shop.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["checks"]["identity"], "ok");
    assert!(
        body["checks"]["dead"]
            .as_str()
            .unwrap()
            .starts_with("unreachable")
    );
}

#[tokio::test]
async fn rate_limits_a_burst_with_429_and_headers() {
    let b = Backends::new();
    let (echo, hits, _stop) = echo_upstream(Duration::ZERO).await;
    let mut options = with_echo(echo);
    options.rate = Allowance {
        per_second: 0.5,
        burst: 5,
    };
    let shop = Shop::start(&b, options).await;
    for i in 0..5 {
        let res = shop
            .http
            .get(shop.url("/api/v1/echo/x"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "request {i} is within the burst");
        assert_eq!(res.headers()["ratelimit-limit"], "5");
        assert_eq!(
            res.headers()["ratelimit-remaining"].to_str().unwrap(),
            (4 - i).to_string()
        );
    }
    let res = shop
        .http
        .get(shop.url("/api/v1/echo/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(res.headers()["ratelimit-remaining"], "0");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        5,
        "the refused request never reached the upstream"
    );
}

#[tokio::test]
async fn login_has_a_stricter_limit() {
    let b = Backends::new();
    let options = ShopOptions {
        login_rate: Allowance {
            per_second: 1.0 / 60.0,
            burst: 2,
        },
        ..Default::default()
    };
    let shop = Shop::start(&b, options).await;
    shop.register("ada@example.com", PASSWORD).await;
    shop.login("ada@example.com", PASSWORD).await;
    shop.login("ada@example.com", PASSWORD).await;
    let res = shop
        .post(
            "/api/v1/auth/login",
            json!({"email": "ada@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), 429);
    // Other routes are on the general allowance.
    assert_eq!(
        shop.http
            .get(shop.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn replicas_share_the_rate_limit_through_redis() {
    let b = Backends::new();
    let (echo, _hits, _stop) = echo_upstream(Duration::ZERO).await;
    let mut options = with_echo(echo.clone());
    options.rate = Allowance {
        per_second: 0.1,
        burst: 4,
    };
    let first = Shop::start(&b, options).await;
    let mut options = with_echo(echo);
    options.rate = Allowance {
        per_second: 0.1,
        burst: 4,
    };
    let second = Shop::start(&b, options).await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let shop = if i % 2 == 0 { &first } else { &second };
        statuses.push(
            shop.http
                .get(shop.url("/api/v1/echo/x"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    if b.set.is_real() {
        // One allowance across both replicas.
        assert_eq!(statuses, vec![200, 200, 200, 200, 429, 429]);
    } else {
        // In memory each replica keeps its own allowance (3 each here).
        assert_eq!(statuses, vec![200; 6]);
    }
}

#[tokio::test]
async fn cors_preflight_from_an_allowed_origin() {
    let b = Backends::new();
    let shop = Shop::start(&b, ShopOptions::default()).await;
    let res = shop
        .http
        .request(reqwest::Method::OPTIONS, shop.url("/api/v1/auth/login"))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    let res = shop
        .http
        .request(reqwest::Method::OPTIONS, shop.url("/api/v1/auth/login"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
}

/// The shop's merged OpenAPI document, as the gateway serves it.
async fn merged_docs(shop: &Shop) -> Value {
    shop.http
        .get(shop.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn serves_merged_api_docs_and_metrics() {
    let b = Backends::new();
    let shop = Shop::start(&b, ShopOptions::default()).await;
    let doc = merged_docs(&shop).await;
    assert!(doc["paths"]["/api/v1/auth/login"].is_object());
    assert!(doc["components"]["schemas"]["ProblemBody"].is_object());
    let page = shop.http.get(shop.url("/api/docs/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("swagger"));
    shop.http
        .get(shop.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    let metrics = shop
        .http
        .get(shop.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    assert!(metrics.contains("service=\"gateway\""));
}

/// The merged document lists every status a client can get, errors as
/// problems: checked over the whole document, then against real answers
/// of the shop to requests a client gets wrong.
#[tokio::test]
async fn the_merged_docs_list_the_statuses_the_shop_answers() {
    let b = Backends::new();
    let shop = Shop::start(&b, ShopOptions::full()).await;
    let doc = merged_docs(&shop).await;
    for path in [
        "/api/v1/auth/login",
        "/api/v1/products",
        "/api/v1/cart",
        "/api/v1/orders",
        "/api/v1/payments",
        "/api/v1/notifications",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            operations += 1;
            let responses = op["responses"].as_object().unwrap();
            let mut expected = vec!["429", "502", "504"];
            if op.get("requestBody").is_some() {
                expected.extend(["400", "413", "415", "422"]);
            }
            let takes_token = op["security"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r.get("bearer").is_some()));
            if takes_token {
                expected.push("401");
            }
            for status in expected {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} documents {status}"
                );
            }
            for (status, response) in responses {
                if status.as_str() < "400" {
                    continue;
                }
                if let Some(content) = response["content"].as_object() {
                    assert_eq!(
                        content.keys().collect::<Vec<_>>(),
                        ["application/problem+json"],
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    assert!(operations >= 30, "{operations} operations");
    // Every order operation needs a token, and says so.
    for (path, method) in [
        ("/api/v1/orders", "post"),
        ("/api/v1/orders", "get"),
        ("/api/v1/orders/{id}", "get"),
        ("/api/v1/orders/{id}/cancel", "post"),
        ("/api/v1/orders/{id}/status", "post"),
    ] {
        assert_eq!(
            doc["paths"][path][method]["security"],
            json!([{"bearer": []}]),
            "{method} {path}"
        );
    }

    // The limits the checkout enforces are written where clients read them.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["PlaceOrder"]["properties"]["payment_method"]["pattern"],
        "^pm_[A-Za-z0-9_]+$"
    );
    assert_eq!(
        schemas["AddItemRequest"]["properties"]["quantity"]["minimum"],
        1
    );
    assert_eq!(
        schemas["AddItemRequest"]["properties"]["quantity"]["maximum"],
        99
    );
    let key = doc["paths"]["/api/v1/orders"]["post"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .unwrap();
    assert_eq!(key["required"], true);
    assert_eq!(key["schema"]["maxLength"], 255);

    shop.register("docs@example.com", PASSWORD).await;
    let (token, _) = shop.login("docs@example.com", PASSWORD).await;
    let id = "01a24e52-1ca3-7778-8451-389954181482";
    let cases: Vec<(&str, &str, reqwest::RequestBuilder, u16)> = vec![
        (
            "/api/v1/orders",
            "post",
            shop.http
                .post(shop.url("/api/v1/orders"))
                .bearer_auth(&token)
                .header("idempotency-key", "docs-1")
                .header("content-type", "text/plain")
                .body("an order, please"),
            415,
        ),
        (
            "/api/v1/orders",
            "post",
            shop.http
                .post(shop.url("/api/v1/orders"))
                .bearer_auth(&token)
                .header("idempotency-key", "docs-2")
                .header("content-type", "application/json")
                .body("{\"shipping_address\": "),
            400,
        ),
        (
            "/api/v1/orders",
            "get",
            shop.http.get(shop.url("/api/v1/orders")),
            401,
        ),
        (
            "/api/v1/orders/{id}",
            "get",
            shop.http
                .get(shop.url(&format!("/api/v1/orders/{id}")))
                .bearer_auth("not.a.token"),
            401,
        ),
        (
            "/api/v1/auth/login",
            "post",
            shop.http
                .post(shop.url("/api/v1/auth/login"))
                .json(&json!([null, null])),
            422,
        ),
        (
            "/api/v1/users",
            "get",
            shop.http.get(shop.url("/api/v1/users")).bearer_auth(&token),
            403,
        ),
        (
            "/api/v1/users/me/password",
            "post",
            shop.http
                .post(shop.url("/api/v1/users/me/password"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body("{\"current_password\": \"cut sh"),
            400,
        ),
        (
            "/api/v1/products/{id}/reviews",
            "post",
            shop.http
                .post(shop.url(&format!("/api/v1/products/{id}/reviews")))
                .bearer_auth(&token)
                .body("five stars"),
            415,
        ),
    ];
    for (path, method, request, status) in cases {
        let res = request.send().await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{method} {path}");
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{method} {path}"
        );
        assert!(
            doc["paths"][path][method]["responses"][status.to_string()].is_object(),
            "{method} {path} answered {status}, which its documentation lists"
        );
    }
}

/// A kept copy is served only while the shared cache confirms its
/// generation; once the cache stops answering, the gateway asks the service
/// (`serve` gives nothing back) instead of failing or trusting the copy.
#[tokio::test]
async fn kept_copies_are_not_served_when_the_shared_cache_stops_answering() {
    use emporium_tests::redis_stand_in;
    use gateway::edge_cache::EdgeCache;
    use kit::edge_cache::Validity;

    let (url, redis) = redis_stand_in::start().await;
    let shared = kit::cache::Cache::connect(&kit::config::CacheUrl::Redis(url), "shop")
        .await
        .expect("connects while the stand-in answers");
    let edge = EdgeCache::new(shared.clone(), 1024 * 1024);
    let validity = Validity {
        generation_key: shared.key("catalog:generation"),
        generation: redis_stand_in::GENERATION,
        max_age: Duration::from_secs(60),
    };
    let upstream = axum::response::IntoResponse::into_response("{\"price\":1}");
    edge.keep("/api/v1/products/1".into(), validity, upstream)
        .await;
    let copy = edge
        .serve("/api/v1/products/1")
        .await
        .expect("served while the cache vouches for it");
    assert_eq!(copy.status(), 200);

    redis.abort();
    let _ = redis.await;
    assert!(
        edge.serve("/api/v1/products/1").await.is_none(),
        "with the cache gone the request must go to the service"
    );
}
