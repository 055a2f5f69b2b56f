//! The `emporium` binary as a person uses it: `up` serves the README's
//! walk-through and keeps its data across restarts; bad configuration stops
//! `serve` with a message naming the variable.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

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
    let mut child = Command::new(BIN)
        .args(["up", "--port", &port.to_string(), "--data-dir"])
        .arg(data_dir)
        .env("EMPORIUM_LOG", "warn")
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
}

#[test]
fn help_lists_the_commands() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["up", "serve", "migrate", "keygen"] {
        assert!(text.contains(cmd), "{text}");
    }
}

/// `emporium dlq` against RabbitMQ in the real backend run; in the embedded
/// run, the refusal to work on the in-process bus.
#[tokio::test]
async fn dlq_lists_and_replays_dead_letters() {
    let amqp = match std::env::var("EMPORIUM_TEST_BACKENDS").as_deref() {
        Ok("real") => std::env::var("EMPORIUM_TEST_AMQP_URL").expect(
            "EMPORIUM_TEST_BACKENDS=real needs EMPORIUM_TEST_AMQP_URL (cargo xtask test sets it)",
        ),
        _ => {
            let err = serve_fails_with(&["dlq", "list"], &[("EMPORIUM_BUS_URL", "memory://")]);
            assert!(
                err.contains("memory://") && err.contains("amqp://"),
                "{err}"
            );
            return;
        }
    };
    let exchange = format!("t{}.events", uuid::Uuid::now_v7().simple());
    let topology = kit::events::Topology {
        exchange: exchange.clone(),
        unused_queue_ttl: Some(Duration::from_secs(600)),
    };
    let bus =
        kit::events::EventBus::connect(&kit::config::BusUrl::Amqp(amqp.clone()), topology.clone())
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
            .env("EMPORIUM_BUS_URL", &amqp)
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
        .env("EMPORIUM_BUS_URL", &amqp)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown queue"));
    stop.cancel();
}
