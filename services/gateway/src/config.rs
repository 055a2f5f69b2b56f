use std::collections::BTreeMap;
use std::time::Duration;

use kit::config::{CacheUrl, HttpArgs, TokenArgs, parse_cache_url};

use crate::rate_limit::Allowance;
use crate::routes::{DEFAULT_ROUTES, RouteTable};

fn parse_upstreams(s: &str) -> Result<BTreeMap<String, url::Url>, String> {
    let mut map = BTreeMap::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, url) = entry
            .split_once('=')
            .ok_or_else(|| format!("`{entry}`: expected service=http://host:port"))?;
        let url = url::Url::parse(url).map_err(|e| format!("`{entry}`: {e}"))?;
        if url.scheme() != "http" {
            return Err(format!("`{entry}`: only http:// upstreams are supported"));
        }
        map.insert(name.to_string(), url);
    }
    Ok(map)
}

fn parse_routes(s: &str) -> Result<RouteTable, String> {
    RouteTable::parse(s)
}

/// `emporium serve gateway`.
#[derive(clap::Args, Debug, Clone)]
pub struct GatewayConfig {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub tokens: TokenArgs,
    /// Where each service listens: `identity=http://identity:8080,catalog=http://catalog:8080,…`.
    #[arg(long, env = "EMPORIUM_UPSTREAMS", value_name = "EMPORIUM_UPSTREAMS", value_parser = parse_upstreams)]
    pub upstreams: BTreeMap<String, url::Url>,
    /// Route table: `prefix=service:access,…` (access: public, public-read, optional, protected).
    #[arg(long, env = "EMPORIUM_GATEWAY_ROUTES", value_name = "EMPORIUM_GATEWAY_ROUTES", default_value = DEFAULT_ROUTES, value_parser = parse_routes, hide_default_value = true)]
    pub routes: RouteTable,
    /// Redis (redis://…) to share rate limits between replicas, or memory://.
    #[arg(long, env = "EMPORIUM_CACHE_URL", value_name = "EMPORIUM_CACHE_URL", value_parser = parse_cache_url, default_value = "memory://", hide_env_values = true)]
    pub cache_url: CacheUrl,
    /// Share rate limits between gateway replicas through the Redis cache;
    /// `false`: each replica counts on its own (cheaper: no Redis call per request).
    #[arg(long, env = "EMPORIUM_RATE_LIMIT_SHARED", value_name = "EMPORIUM_RATE_LIMIT_SHARED", default_value_t = true, action = clap::ArgAction::Set)]
    pub rate_limit_shared: bool,
    #[command(flatten)]
    pub rate_limits: RateLimitArgs,
    /// Longest wait for an upstream's response headers, in seconds.
    #[arg(long, env = "EMPORIUM_UPSTREAM_TIMEOUT_SECS", value_name = "EMPORIUM_UPSTREAM_TIMEOUT_SECS", default_value = "15", value_parser = kit::config::parse_positive_secs)]
    pub upstream_timeout: Duration,
    /// Origins allowed by CORS, comma-separated (`*` for any); none by default.
    #[arg(
        long,
        env = "EMPORIUM_CORS_ALLOWED_ORIGINS",
        value_name = "EMPORIUM_CORS_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_allowed_origins: Vec<String>,
    /// Memory for copies of public reads that services vouch for, in MiB (0: off).
    /// Copies need a cache shared with the services: with memory:// they are off.
    #[arg(
        long,
        env = "EMPORIUM_GATEWAY_EDGE_CACHE_MB",
        value_name = "EMPORIUM_GATEWAY_EDGE_CACHE_MB",
        default_value_t = 64
    )]
    pub edge_cache_mb: u64,
    /// Take the client address from an incoming X-Forwarded-For (behind a trusted load balancer).
    #[arg(long, env = "EMPORIUM_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,
}

/// How much each client may ask, shared by `emporium serve gateway` and
/// `emporium up`.
#[derive(clap::Args, Debug, Clone)]
pub struct RateLimitArgs {
    /// Sustained requests per second allowed per client.
    #[arg(
        long,
        env = "EMPORIUM_RATE_LIMIT_PER_SECOND",
        value_name = "EMPORIUM_RATE_LIMIT_PER_SECOND",
        default_value = "50",
        value_parser = parse_rate
    )]
    pub rate_limit_per_second: f64,
    /// Requests a client may make at once.
    #[arg(
        long,
        env = "EMPORIUM_RATE_LIMIT_BURST",
        value_name = "EMPORIUM_RATE_LIMIT_BURST",
        default_value = "100",
        value_parser = parse_burst
    )]
    pub rate_limit_burst: u32,
    /// Sign-in attempts per minute allowed per client.
    #[arg(
        long,
        env = "EMPORIUM_LOGIN_RATE_LIMIT_PER_MINUTE",
        value_name = "EMPORIUM_LOGIN_RATE_LIMIT_PER_MINUTE",
        default_value = "10",
        value_parser = parse_rate
    )]
    pub login_rate_limit_per_minute: f64,
    /// Sign-in attempts a client may make at once.
    #[arg(
        long,
        env = "EMPORIUM_LOGIN_RATE_LIMIT_BURST",
        value_name = "EMPORIUM_LOGIN_RATE_LIMIT_BURST",
        default_value = "5",
        value_parser = parse_burst
    )]
    pub login_rate_limit_burst: u32,
}

impl RateLimitArgs {
    /// What every client may ask of the shop.
    pub fn general(&self) -> Allowance {
        Allowance {
            per_second: self.rate_limit_per_second,
            burst: self.rate_limit_burst,
        }
    }

    /// The stricter allowance for sign-in.
    pub fn sign_in(&self) -> Allowance {
        Allowance {
            per_second: self.login_rate_limit_per_minute / 60.0,
            burst: self.login_rate_limit_burst,
        }
    }
}

/// A rate: a finite number above zero. Zero, a negative or `inf` would
/// otherwise be bent silently into "one request every few hours" or "one a
/// second".
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "`{s}` is not a rate: give a number above 0 (fractions allowed)"
        )),
    }
}

/// A burst: a whole number of requests, at least 1.
pub fn parse_burst(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "`{s}` is not a burst: give a whole number of at least 1"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_finite_and_above_zero() {
        assert_eq!(parse_rate("50"), Ok(50.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        for bad in ["0", "-5", "inf", "NaN", "fast", ""] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_burst("1"), Ok(1));
        for bad in ["0", "-1", "1.5", "many"] {
            assert!(parse_burst(bad).is_err(), "{bad}");
        }
    }
}
