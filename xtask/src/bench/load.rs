//! Driving load with `oha` and reading its JSON summary.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd;

#[derive(Debug, Clone, Copy)]
pub struct Figures {
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

pub fn ensure_oha() -> Result<()> {
    if cmd::succeeds(Command::new("oha").arg("--version")) {
        return Ok(());
    }
    cmd::step("bench", "installing oha (HTTP load generator) with cargo");
    cmd::run(Command::new("cargo").args(["install", "--locked", "oha"]))
}

/// Load `url` for `seconds` with `connections`; `rate` caps requests/s.
pub fn run(
    url: &str,
    headers: &[(&str, &str)],
    seconds: u32,
    connections: u32,
    rate: Option<f64>,
) -> Result<Figures> {
    let mut c = Command::new("oha");
    c.args(["--no-tui", "--output-format", "json", "-z"])
        .arg(format!("{seconds}s"))
        .args(["-c", &connections.to_string()]);
    if let Some(q) = rate {
        c.args(["-q", &format!("{q:.0}")]);
    }
    for (k, v) in headers {
        c.args(["-H", &format!("{k}: {v}")]);
    }
    c.arg(url);
    let out = cmd::capture(&mut c)?;
    let v: serde_json::Value = serde_json::from_str(&out).context("oha's JSON summary")?;
    let summary = &v["summary"];
    let pct = &v["latencyPercentiles"];
    let get = |x: &serde_json::Value, what: &str| {
        x.as_f64().with_context(|| format!("oha printed no {what}"))
    };
    let figures = Figures {
        requests_per_sec: get(&summary["requestsPerSec"], "requestsPerSec")?,
        p50_ms: get(&pct["p50"], "p50")? * 1000.0,
        p99_ms: get(&pct["p99"], "p99")? * 1000.0,
    };
    let non_200: u64 = v["statusCodeDistribution"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.as_str() != "200")
                .map(|(_, n)| n.as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    if non_200 > 0 {
        bail!(
            "{non_200} responses to {url} were not 200: {}",
            v["statusCodeDistribution"]
        );
    }
    Ok(figures)
}
