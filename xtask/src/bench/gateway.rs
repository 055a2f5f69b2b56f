//! `cargo xtask bench gateway`: the same load against an upstream endpoint
//! (identity's `GET /api/v1/users/me`, which verifies the bearer token and
//! reads the user) directly and through the gateway, where the token is
//! also checked at the edge and the rate limiter is on (limit set high).

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::load::{self, Figures};
use super::processes::{build_emporium, free_port, http, start, wait_ready};
use crate::cmd;

const SECONDS: u32 = 10;
const CONNECTIONS: u32 = 50;
const ROUNDS: usize = 3;

/// The middle run: by throughput at saturation, by p99 at a fixed rate.
fn median(mut runs: Vec<Figures>, rate: Option<f64>) -> Figures {
    match rate {
        None => runs.sort_by(|a, b| a.requests_per_sec.total_cmp(&b.requests_per_sec)),
        Some(_) => runs.sort_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms)),
    }
    runs.swap_remove(runs.len() / 2)
}

pub fn run(root: &Path, _args: &[String]) -> Result<()> {
    load::ensure_oha()?;
    let bin = build_emporium(root)?;
    let work = std::env::temp_dir().join(format!("emporium-bench-gateway-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let key = cmd::capture(std::process::Command::new(&bin).arg("keygen"))?;
    let key_file = work.join("signing.pem");
    std::fs::write(&key_file, key)?;

    let identity_port = free_port()?;
    let gateway_port = free_port()?;
    let mut identity = start(
        "identity",
        &bin,
        &["serve", "identity"],
        &[
            ("EMPORIUM_LISTEN", format!("127.0.0.1:{identity_port}")),
            (
                "EMPORIUM_DATABASE_URL",
                format!("sqlite://{}", work.join("identity.db").display()),
            ),
            ("EMPORIUM_CACHE_URL", "memory://".into()),
            ("EMPORIUM_BUS_URL", "memory://".into()),
            (
                "EMPORIUM_JWT_SIGNING_KEY_FILE",
                key_file.display().to_string(),
            ),
        ],
        &work.join("identity.log"),
    )?;
    wait_ready(&mut identity, identity_port)?;
    // The JWKS route is made protected so every request through the
    // gateway pays for token verification.
    let mut gateway = start(
        "gateway",
        &bin,
        &["serve", "gateway"],
        &[
            ("EMPORIUM_LISTEN", format!("127.0.0.1:{gateway_port}")),
            (
                "EMPORIUM_UPSTREAMS",
                format!("identity=http://127.0.0.1:{identity_port}"),
            ),
            (
                "EMPORIUM_JWKS_URL",
                format!("http://127.0.0.1:{identity_port}/.well-known/jwks.json"),
            ),
            (
                "EMPORIUM_GATEWAY_ROUTES",
                "/api/v1/auth=identity:public,/.well-known/jwks.json=identity:public,/api/v1/users=identity:protected".into(),
            ),
            ("EMPORIUM_RATE_LIMIT_PER_SECOND", "100000000".into()),
            ("EMPORIUM_RATE_LIMIT_BURST", "100000000".into()),
            ("EMPORIUM_LOGIN_RATE_LIMIT_BURST", "1000".into()),
        ],
        &work.join("gateway.log"),
    )?;
    wait_ready(&mut gateway, gateway_port)?;

    let body = r#"{"email":"bench@example.com","password":"benchmark password","name":"Bench"}"#;
    let (status, _) = http(
        gateway_port,
        "POST",
        "/api/v1/auth/register",
        &[],
        Some(body),
    )?;
    if status != 201 {
        bail!("registering the bench user answered {status}");
    }
    let (status, tokens) = http(
        gateway_port,
        "POST",
        "/api/v1/auth/login",
        &[],
        Some(r#"{"email":"bench@example.com","password":"benchmark password"}"#),
    )?;
    if status != 200 {
        bail!("signing in answered {status}");
    }
    let tokens: serde_json::Value = serde_json::from_str(&tokens).context("login response")?;
    let bearer = format!(
        "Bearer {}",
        tokens["access_token"].as_str().context("no access token")?
    );
    let auth = [("authorization", bearer.as_str())];

    let direct_url = format!("http://127.0.0.1:{identity_port}/api/v1/users/me");
    let gateway_url = format!("http://127.0.0.1:{gateway_port}/api/v1/users/me");
    let (status, _) = http(gateway_port, "GET", "/api/v1/users/me", &[], None)?;
    if status != 401 {
        bail!("the benchmarked route must demand a token (got {status} without one)");
    }

    cmd::step(
        "bench",
        format!(
            "warm-up, then {ROUNDS} rounds of {SECONDS} s at saturation with {CONNECTIONS} connections, \
             direct and through the gateway in turn"
        ),
    );
    load::run(&direct_url, &auth, 2, CONNECTIONS, None)?;
    load::run(&gateway_url, &auth, 2, CONNECTIONS, None)?;
    // Alternating rounds, each side's median kept: on two shared cores a
    // single run's figures swing with whatever else the machine does.
    let rounds = |rate: Option<f64>| -> Result<(Figures, Figures)> {
        let (mut direct, mut through) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            direct.push(load::run(&direct_url, &auth, SECONDS, CONNECTIONS, rate)?);
            through.push(load::run(&gateway_url, &auth, SECONDS, CONNECTIONS, rate)?);
        }
        Ok((median(direct, rate), median(through, rate)))
    };
    let (direct, through) = rounds(None)?;
    // Both paths at one offered rate, half of what the slower one (the
    // gateway's) sustains: the latency it adds, not queueing near its limit.
    let half = direct.requests_per_sec.min(through.requests_per_sec) / 2.0;
    cmd::step(
        "bench",
        format!(
            "{ROUNDS} rounds of {SECONDS} s each at half of the gateway's saturation ({half:.0} requests/s)"
        ),
    );
    let (direct_half, through_half) = rounds(Some(half))?;
    drop(gateway);
    drop(identity);
    let _ = std::fs::remove_dir_all(&work);

    let row = |name: &str, f: &Figures| {
        println!(
            "  {name:<34} {:>10.0} req/s   p50 {:>7.3} ms   p99 {:>7.3} ms",
            f.requests_per_sec, f.p50_ms, f.p99_ms
        )
    };
    println!();
    println!(
        "gateway benchmark (GET /api/v1/users/me with a bearer token; through the gateway the token is also checked at the edge and the rate limiter is on, limit high)"
    );
    println!(
        "saturation, {CONNECTIONS} connections, {SECONDS} s (median of {ROUNDS} alternating rounds):"
    );
    row("direct to identity", &direct);
    row("through the gateway", &through);
    println!(
        "at half of the gateway's saturation ({half:.0} req/s offered to both; median p99 of {ROUNDS} rounds):"
    );
    row("direct to identity", &direct_half);
    row("through the gateway", &through_half);
    let ratio = through.requests_per_sec / direct.requests_per_sec;
    let added = through_half.p99_ms - direct_half.p99_ms;
    println!();
    println!(
        "throughput ratio (gateway / direct): {:.1}%   target >= 70%",
        ratio * 100.0
    );
    println!("p99 added at half saturation:        {added:.3} ms   target <= 1 ms");
    println!(
        "(load generator and servers share this machine's {} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    Ok(())
}
