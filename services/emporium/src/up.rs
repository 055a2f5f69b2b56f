//! `emporium up`: the whole shop in one process, on embedded backends under
//! a data directory, with a demo admin. Each service still listens on its
//! own loopback port behind the gateway, exactly as in a cluster.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use kit::cache::Cache;
use kit::config::DatabaseUrl;
use kit::db::Database;
use kit::events::EventBus;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::serve::futures_join;

#[derive(clap::Args)]
pub struct UpArgs {
    /// Directory for the shop's data (SQLite files, keys, demo credentials).
    #[arg(long, env = "EMPORIUM_DATA_DIR", default_value = ".emporium")]
    data_dir: PathBuf,
    /// Port of the gateway.
    #[arg(long, env = "EMPORIUM_PORT", default_value_t = 8080)]
    port: u16,
    /// Address the gateway listens on.
    #[arg(long, env = "EMPORIUM_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
}

const ADMIN_EMAIL: &str = "admin@emporium.local";

/// The demo admin's password: made once, kept in the data directory.
fn demo_admin_password(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("admin-password");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_string();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    let bytes: [u8; 12] = rand::random();
    let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    std::fs::write(&path, &password).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(password)
}

async fn loopback() -> anyhow::Result<(TcpListener, url::Url)> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let url = url::Url::parse(&format!("http://{}", listener.local_addr()?))?;
    Ok((listener, url))
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let shutdown = CancellationToken::new();
    let bus = EventBus::memory();
    let cache = Cache::memory("emporium");
    let mut servers = Vec::new();
    let mut workers = Vec::new();
    let mut upstreams = BTreeMap::new();

    // identity
    let password = demo_admin_password(&args.data_dir)?;
    let keys =
        identity::keys::KeyRing::load_or_generate(&args.data_dir.join("identity").join("keys"))?;
    let db = Database::connect(&DatabaseUrl::sqlite_file(
        &args.data_dir.join("identity.db"),
    ))
    .await?;
    let identity = identity::Identity::build(
        identity::Settings {
            admin: Some((ADMIN_EMAIL.to_string(), password.clone())),
            ..Default::default()
        },
        keys,
        identity::Backends {
            db,
            cache: cache.clone(),
            bus: bus.clone(),
        },
    )
    .await?;
    let (listener, identity_url) = loopback().await?;
    workers.extend(identity.spawn_workers(shutdown.clone()));
    servers.push(tokio::spawn(kit::http::serve(
        listener,
        identity.router,
        shutdown.clone(),
    )));
    upstreams.insert("identity".to_string(), identity_url.clone());

    // gateway
    let addr = SocketAddr::new(args.host, args.port);
    let gateway = gateway::Gateway::build(
        gateway::Settings {
            routes: gateway::routes::RouteTable::parse(gateway::routes::DEFAULT_ROUTES)
                .map_err(anyhow::Error::msg)?,
            jwks_url: identity_url.join("/.well-known/jwks.json")?,
            upstreams,
            jwt_issuer: "emporium-identity".into(),
            jwt_audience: "emporium".into(),
            rate: gateway::rate_limit::Allowance {
                per_second: 50.0,
                burst: 100,
            },
            login_rate: gateway::rate_limit::Allowance {
                per_second: 10.0 / 60.0,
                burst: 5,
            },
            upstream_timeout: Duration::from_secs(15),
            cors_allowed_origins: vec![],
            trust_forwarded_for: false,
            request_timeout: Duration::from_secs(30),
            body_limit_bytes: 1024 * 1024,
        },
        &cache,
    );
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} (is another shop running? try --port)")
    })?;
    workers.extend(gateway.spawn_workers(shutdown.clone()));
    servers.push(tokio::spawn(kit::http::serve(
        listener,
        gateway.router,
        shutdown.clone(),
    )));

    let summary = json!({
        "gateway": format!("http://{addr}"),
        "docs": format!("http://{addr}/api/docs"),
        "admin": {"email": ADMIN_EMAIL, "password": password},
        "data_dir": args.data_dir.display().to_string(),
    });
    println!("Emporium is up.");
    println!("  Shop API:   http://{addr}/api/v1/…");
    println!("  API docs:   http://{addr}/api/docs");
    println!("  Demo admin: {ADMIN_EMAIL} / {password}");
    println!(
        "  Data:       {} (delete it to start afresh)",
        args.data_dir.display()
    );
    println!("Press Ctrl-C to stop.");
    tracing::debug!(%summary, "up");

    kit::http::shutdown_signal().await;
    println!("Stopping…");
    shutdown.cancel();
    for s in servers {
        let _ = s.await;
    }
    futures_join(workers).await;
    Ok(())
}
