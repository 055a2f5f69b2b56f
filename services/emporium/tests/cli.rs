//! The `emporium` binary as a person uses it: `up` serves the README's
//! walk-through and keeps its data across restarts; bad configuration stops
//! `serve` with a message naming the variable.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

mod books;

const BIN: &str = env!("CARGO_BIN_EXE_emporium");

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start `emporium up` and wait for its banner; returns the admin password.
fn up(data_dir: &std::path::Path, port: u16) -> (Running, String) {
    up_with(data_dir, port, &[])
}

fn up_with(data_dir: &std::path::Path, port: u16, env: &[(&str, &str)]) -> (Running, String) {
    let mut child = Command::new(BIN)
        .args(["up", "--port", &port.to_string(), "--data-dir"])
        .arg(data_dir)
        .env("EMPORIUM_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start emporium up");
    let stdout = child.stdout.take().unwrap();
    let mut password = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(rest) = line
            .trim()
            .strip_prefix("Demo admin: admin@emporium.local / ")
        {
            password = Some(rest.trim().to_string());
        }
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    (
        Running(child),
        password.expect("the banner names the demo admin"),
    )
}

#[tokio::test]
async fn up_serves_the_walkthrough_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let (running, admin_password) = up(dir.path(), port);

    let res = http
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"email": "ada@example.com", "password": "correct horse battery", "name": "Ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let login: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": "ada@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = login["access_token"].as_str().unwrap();
    let me: Value = http
        .get(format!("{base}/api/v1/users/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "ada@example.com");
    let refreshed: Value = http
        .post(format!("{base}/api/v1/auth/refresh"))
        .json(&json!({"refresh_token": login["refresh_token"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let res = http
        .post(format!("{base}/api/v1/auth/logout"))
        .json(&json!({"refresh_token": refreshed["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);

    // The demo admin can list users.
    let admin: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": "admin@emporium.local", "password": admin_password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let users = http
        .get(format!("{base}/api/v1/users"))
        .bearer_auth(admin["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(users.status(), 200);

    // Restart on the same data: the account, the admin and the old token survive.
    drop(running);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_running, admin_again) = up(dir.path(), port);
    assert_eq!(admin_again, admin_password);
    let res = http
        .get(format!("{base}/api/v1/users/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "the signing key is kept in the data directory"
    );
    let res = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": "ada@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

/// A shopper of the embedded shop: signed in, with the token to use.
async fn shopper(http: &reqwest::Client, base: &str, n: usize) -> String {
    let email = format!("shopper{n}@example.com");
    let res = http
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"email": email, "password": "correct horse battery", "name": "Shopper"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let login: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    login["access_token"]
        .as_str()
        .expect("signed in")
        .to_string()
}

/// `emporium up` killed (SIGKILL) the moment five orders were accepted, while
/// their events, charges and webhooks are in flight: after a restart each
/// order is confirmed, charged once, its stock taken once, and its customer
/// told once.
#[tokio::test]
async fn up_killed_mid_checkout_loses_no_order() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    // Charges whose webhook died with the process are asked about 1 s on.
    let env = [("EMPORIUM_PAYMENTS_RECHECK_AFTER_SECS", "1")];
    let (running, _) = up_with(dir.path(), port, &env);

    let products: Value = http
        .get(format!("{base}/api/v1/products?in_stock=true&page_size=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let product = products["items"][0].clone();
    let product_url = format!("{base}/api/v1/products/{}", product["id"].as_str().unwrap());
    let stock_before = product["stock"]
        .as_i64()
        .expect("the product shows its stock");
    assert!(stock_before >= 5, "{product}");

    // Five shoppers: the embedded gateway lets five sign-ins through at once.
    let mut tokens = Vec::new();
    for n in 0..5 {
        let token = shopper(&http, &base, n).await;
        let res = http
            .post(format!("{base}/api/v1/cart/items"))
            .bearer_auth(&token)
            .json(&json!({"product_id": product["id"], "quantity": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
        tokens.push(token);
    }
    // Every order has its key, so a request the kill cut off is sent again
    // after the restart, as a checkout page would.
    let keys: Vec<String> = tokens
        .iter()
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let place = |token: String, key: String| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let res = http
                .post(format!("{base}/api/v1/orders"))
                .bearer_auth(token)
                .header("Idempotency-Key", key)
                .json(&json!({
                    "shipping_address": {"name": "Shopper", "line1": "1 Analytical Way",
                        "city": "London", "postal_code": "N1 9GU", "country": "GB"},
                    "payment_method": "pm_card_visa"
                }))
                .send()
                .await
                .ok()?;
            let status = res.status().as_u16();
            let order: Value = res.json().await.ok()?;
            Some((status, order))
        }
    };
    let first_placed = std::sync::Arc::new(tokio::sync::Notify::new());
    let placing: Vec<_> = tokens
        .iter()
        .zip(&keys)
        .map(|(token, key)| {
            let placed = first_placed.clone();
            let request = place(token.clone(), key.clone());
            tokio::spawn(async move {
                let answer = request.await;
                if answer.is_some() {
                    placed.notify_one();
                }
                answer
            })
        })
        .collect();
    // SIGKILL as soon as one order is accepted: the others are on their
    // way, events and charges in flight; nothing is flushed or handed over.
    first_placed.notified().await;
    drop(running);
    let mut answers = Vec::new();
    for p in placing {
        answers.push(p.await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (_running, _) = up_with(dir.path(), port, &env);
    let mut orders = Vec::new();
    for ((answer, token), key) in answers.into_iter().zip(&tokens).zip(&keys) {
        let (status, order) = match answer {
            Some(answered) => answered,
            None => place(token.clone(), key.clone())
                .await
                .expect("the shop answers after its restart"),
        };
        // 200: placed before the kill, the answer lost with it.
        assert!(status == 201 || status == 200, "{status} {order}");
        orders.push(order["id"].as_str().unwrap().to_string());
    }
    let placed: Vec<(String, String)> = orders.into_iter().zip(tokens).collect();
    books::every_order_confirmed_charged_and_told_once(&http, &base, &placed).await;
    let product: Value = http
        .get(&product_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        product["stock"].as_i64(),
        Some(stock_before - 5),
        "{product}"
    );
}

fn serve_fails_with(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run emporium");
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn bad_configuration_names_the_variable() {
    let err = serve_fails_with(
        &["serve", "identity"],
        &[
            ("EMPORIUM_DATABASE_URL", "mysql://db/identity"),
            ("EMPORIUM_CACHE_URL", "memory://"),
            ("EMPORIUM_BUS_URL", "memory://"),
        ],
    );
    assert!(
        err.contains("EMPORIUM_DATABASE_URL") && err.contains("mysql"),
        "{err}"
    );

    let err = serve_fails_with(
        &["serve", "identity"],
        &[
            ("EMPORIUM_DATABASE_URL", "sqlite:///tmp/x.db"),
            ("EMPORIUM_CACHE_URL", "memory://"),
        ],
    );
    assert!(err.contains("EMPORIUM_BUS_URL"), "{err}");

    let err = serve_fails_with(
        &["serve", "identity"],
        &[
            ("EMPORIUM_DATABASE_URL", "sqlite:///tmp/x.db"),
            ("EMPORIUM_CACHE_URL", "memory://"),
            ("EMPORIUM_BUS_URL", "memory://"),
        ],
    );
    assert!(err.contains("EMPORIUM_JWT_SIGNING_KEY"), "{err}");

    let err = serve_fails_with(
        &["serve", "gateway"],
        &[("EMPORIUM_UPSTREAMS", "identity=ftp://x")],
    );
    assert!(err.contains("EMPORIUM_UPSTREAMS"), "{err}");

    let err = serve_fails_with(
        &["serve", "gateway"],
        &[
            ("EMPORIUM_UPSTREAMS", "identity=http://127.0.0.1:1"),
            ("EMPORIUM_LISTEN", "not-an-address"),
        ],
    );
    assert!(err.contains("EMPORIUM_LISTEN"), "{err}");

    // Zero is no timeout, lifetime or limit: it would fail every request,
    // expire every token at birth or cancel every order at once.
    let store = [
        ("EMPORIUM_DATABASE_URL", "sqlite:///tmp/x.db"),
        ("EMPORIUM_CACHE_URL", "memory://"),
        ("EMPORIUM_BUS_URL", "memory://"),
    ];
    for (service, variable) in [
        ("identity", "EMPORIUM_ACCESS_TOKEN_TTL_SECS"),
        ("identity", "EMPORIUM_LOGIN_MAX_FAILURES"),
        ("identity", "EMPORIUM_REQUEST_TIMEOUT_SECS"),
        ("identity", "EMPORIUM_BODY_LIMIT_BYTES"),
        ("orders", "EMPORIUM_PAYMENT_TIMEOUT_SECS"),
        ("payments", "EMPORIUM_STRIPE_WEBHOOK_TOLERANCE_SECS"),
        ("notifications", "EMPORIUM_SMTP_TIMEOUT_SECS"),
        ("gateway", "EMPORIUM_UPSTREAM_TIMEOUT_SECS"),
    ] {
        let mut env = store.to_vec();
        env.push(("EMPORIUM_UPSTREAMS", "identity=http://127.0.0.1:1"));
        env.push((variable, "0"));
        let err = serve_fails_with(&["serve", service], &env);
        assert!(err.contains(variable), "{service} with {variable}=0: {err}");
    }

    // A rate of zero, below zero or infinite is refused, not bent into
    // "one request every few hours" or "one a second".
    for (variable, value) in [
        ("EMPORIUM_RATE_LIMIT_PER_SECOND", "0"),
        ("EMPORIUM_RATE_LIMIT_PER_SECOND", "inf"),
        ("EMPORIUM_LOGIN_RATE_LIMIT_PER_MINUTE", "-3"),
        ("EMPORIUM_RATE_LIMIT_BURST", "0"),
        ("EMPORIUM_LOGIN_RATE_LIMIT_BURST", "lots"),
    ] {
        let err = serve_fails_with(
            &["serve", "gateway"],
            &[
                ("EMPORIUM_UPSTREAMS", "identity=http://127.0.0.1:1"),
                (variable, value),
            ],
        );
        assert!(
            err.contains(variable) && err.contains(&format!("`{value}`")),
            "{variable}={value}: {err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(BIN)
            .args(["up", "--port", &free_port().to_string(), "--data-dir"])
            .arg(dir.path())
            .env(variable, value)
            .output()
            .expect("run emporium up");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "up with {variable}={value}");
        assert!(err.contains(variable), "up with {variable}={value}: {err}");
    }
}

/// `up` limits clients as its environment says, like `serve gateway`.
#[tokio::test]
async fn up_takes_its_rate_limits_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_running, _) = up_with(
        dir.path(),
        port,
        &[
            ("EMPORIUM_RATE_LIMIT_PER_SECOND", "0.01"),
            ("EMPORIUM_RATE_LIMIT_BURST", "3"),
        ],
    );
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/v1/products?page_size=1");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(http.get(&url).send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
}

#[test]
fn help_lists_the_commands() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["up", "serve", "migrate", "keygen"] {
        assert!(text.contains(cmd), "{text}");
    }
}

/// `emporium dlq` against RabbitMQ in the real backend run, and against the
/// event file of `emporium up` in the embedded run (another process than the
/// consumer, as with a running shop).
#[tokio::test]
async fn dlq_lists_and_replays_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let bus_url = match std::env::var("EMPORIUM_TEST_BACKENDS").as_deref() {
        Ok("real") => std::env::var("EMPORIUM_TEST_AMQP_URL").expect(
            "EMPORIUM_TEST_BACKENDS=real needs EMPORIUM_TEST_AMQP_URL (cargo xtask test sets it)",
        ),
        _ => {
            let err = serve_fails_with(&["dlq", "list"], &[("EMPORIUM_BUS_URL", "memory://")]);
            assert!(
                err.contains("memory://") && err.contains("sqlite://"),
                "{err}"
            );
            format!("sqlite://{}", dir.path().join("bus.db").display())
        }
    };
    let exchange = format!("t{}.events", uuid::Uuid::now_v7().simple());
    let topology = kit::events::Topology {
        exchange: exchange.clone(),
        unused_queue_ttl: Some(Duration::from_secs(600)),
    };
    let bus = kit::events::EventBus::connect(
        &kit::config::parse_bus_url(&bus_url).unwrap(),
        topology.clone(),
    )
    .await
    .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    bus.subscribe(
        kit::events::Subscription::new(
            "catalog",
            "order.placed",
            move |_e: kit::events::Envelope| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Err(kit::events::HandlerError::poison("unreadable order"))
                }
            },
        ),
        stop.clone(),
    )
    .await
    .unwrap();
    let poison =
        kit::events::Envelope::new("test", "order.placed", json!({"nonsense": true})).unwrap();
    bus.publish(&poison).await.unwrap();
    let queue = topology.queue("catalog", "order.placed");
    for _ in 0..200 {
        if !bus.dead_letters(&queue).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let dlq = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["dlq", "--exchange", &exchange])
            .args(args)
            .env("EMPORIUM_BUS_URL", &bus_url)
            .output()
            .expect("run emporium dlq");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let listed = dlq(&["list"]);
    assert!(
        listed.contains("catalog.order.placed: 1 dead letter(s)"),
        "{listed}"
    );
    assert!(listed.contains(&poison.id.to_string()), "{listed}");
    let replayed = dlq(&["replay", "catalog.order.placed"]);
    assert!(replayed.contains("1 message(s)"), "{replayed}");
    // Back in its queue, handled (and refused) a second time, dead again.
    for _ in 0..200 {
        if seen.load(std::sync::atomic::Ordering::SeqCst) >= 2
            && !bus.dead_letters(&queue).await.unwrap().is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(bus.dead_letters(&queue).await.unwrap().len(), 1);
    let out = Command::new(BIN)
        .args(["dlq", "--exchange", &exchange, "replay", "nowhere.nothing"])
        .env("EMPORIUM_BUS_URL", &bus_url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown queue"));
    stop.cancel();
}
