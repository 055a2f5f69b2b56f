//! Configuration pieces every service flattens into its clap struct, so a
//! Kubernetes Secret can arrive as an environment variable. Backend URLs are
//! parsed at start-up; a bad one stops the process with a message naming the
//! variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where a service keeps its rows: PostgreSQL in production, a SQLite file
/// embedded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Postgres(String),
    Sqlite(String),
}

impl DatabaseUrl {
    pub fn sqlite_file(path: &std::path::Path) -> Self {
        DatabaseUrl::Sqlite(format!("sqlite://{}", path.display()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            DatabaseUrl::Postgres(u) | DatabaseUrl::Sqlite(u) => u,
        }
    }
}

pub fn parse_database_url(s: &str) -> Result<DatabaseUrl, String> {
    match scheme(s) {
        Some("postgres" | "postgresql") => Ok(DatabaseUrl::Postgres(s.to_string())),
        Some("sqlite") => Ok(DatabaseUrl::Sqlite(s.to_string())),
        Some(other) => Err(format!(
            "unsupported scheme `{other}`; expected postgres:// or sqlite://"
        )),
        None => Err("not a URL; expected postgres://… or sqlite://…".into()),
    }
}

/// Where a service keeps short-lived data: Redis, or memory when embedded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheUrl {
    Redis(String),
    Memory,
}

pub fn parse_cache_url(s: &str) -> Result<CacheUrl, String> {
    match scheme(s) {
        Some("redis" | "rediss") => Ok(CacheUrl::Redis(s.to_string())),
        Some("memory") => Ok(CacheUrl::Memory),
        Some(other) => Err(format!(
            "unsupported scheme `{other}`; expected redis:// or memory://"
        )),
        None => Err("not a URL; expected redis://… or memory://".into()),
    }
}

/// How events travel: RabbitMQ; a SQLite file (`sqlite://path`), durable,
/// for embedded mode; or memory, gone with the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusUrl {
    Amqp(String),
    /// The path of the bus file.
    Sqlite(String),
    Memory,
}

impl BusUrl {
    pub fn sqlite_file(path: &std::path::Path) -> Self {
        BusUrl::Sqlite(path.display().to_string())
    }
}

pub fn parse_bus_url(s: &str) -> Result<BusUrl, String> {
    match scheme(s) {
        Some("amqp") => Ok(BusUrl::Amqp(s.to_string())),
        Some("sqlite") => match s.trim_start_matches("sqlite://") {
            "" => Err(
                "sqlite:// needs the path of the bus file, e.g. sqlite://.emporium/bus.db".into(),
            ),
            path => Ok(BusUrl::Sqlite(path.to_string())),
        },
        Some("memory") => Ok(BusUrl::Memory),
        Some(other) => Err(format!(
            "unsupported scheme `{other}`; expected amqp://, sqlite:// or memory://"
        )),
        None => Err("not a URL; expected amqp://…, sqlite://… or memory://".into()),
    }
}

fn scheme(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+')
    {
        return None;
    }
    Some(scheme)
}

pub fn parse_duration_secs(s: &str) -> Result<Duration, String> {
    s.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("`{s}` is not a whole number of seconds"))
}

/// A timeout, lifetime or window: zero would fail every request, expire
/// every token at birth or cancel every order at once, so it is refused.
pub fn parse_positive_secs(s: &str) -> Result<Duration, String> {
    match parse_duration_secs(s)? {
        d if d.is_zero() => Err(format!("`{s}` is not allowed: give at least 1 second")),
        d => Ok(d),
    }
}

/// Listening and request-handling settings.
#[derive(clap::Args, Debug, Clone)]
pub struct HttpArgs {
    /// Address and port to listen on.
    #[arg(
        long,
        env = "EMPORIUM_LISTEN",
        value_name = "EMPORIUM_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub listen: SocketAddr,
    /// Longest a request may take before it is answered with a problem.
    #[arg(long, env = "EMPORIUM_REQUEST_TIMEOUT_SECS", value_name = "EMPORIUM_REQUEST_TIMEOUT_SECS", default_value = "30", value_parser = parse_positive_secs)]
    pub request_timeout: Duration,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "EMPORIUM_BODY_LIMIT_BYTES", value_name = "EMPORIUM_BODY_LIMIT_BYTES", default_value_t = 1024 * 1024, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub body_limit_bytes: usize,
}

impl Default for HttpArgs {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            request_timeout: Duration::from_secs(30),
            body_limit_bytes: 1024 * 1024,
        }
    }
}

/// How a service verifies access tokens issued by identity.
#[derive(clap::Args, Debug, Clone)]
pub struct TokenArgs {
    /// URL of the identity service's JWKS document.
    #[arg(
        long,
        env = "EMPORIUM_JWKS_URL",
        value_name = "EMPORIUM_JWKS_URL",
        default_value = "http://identity:8080/.well-known/jwks.json"
    )]
    pub jwks_url: url::Url,
    /// Expected `iss` claim.
    #[arg(
        long,
        env = "EMPORIUM_JWT_ISSUER",
        value_name = "EMPORIUM_JWT_ISSUER",
        default_value = "emporium-identity"
    )]
    pub jwt_issuer: String,
    /// Expected `aud` claim.
    #[arg(
        long,
        env = "EMPORIUM_JWT_AUDIENCE",
        value_name = "EMPORIUM_JWT_AUDIENCE",
        default_value = "emporium"
    )]
    pub jwt_audience: String,
}

/// A directory for files a service keeps locally (embedded mode).
#[derive(clap::Args, Debug, Clone)]
pub struct DataDirArgs {
    /// Directory for local state (keys, SQLite files) when embedded.
    #[arg(
        long,
        env = "EMPORIUM_DATA_DIR",
        value_name = "EMPORIUM_DATA_DIR",
        default_value = ".emporium"
    )]
    pub data_dir: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_by_scheme() {
        assert!(matches!(
            parse_database_url("postgres://u:p@h/db"),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert!(matches!(
            parse_database_url("sqlite://x.db"),
            Ok(DatabaseUrl::Sqlite(_))
        ));
        let err = parse_database_url("mysql://h/db").unwrap_err();
        assert!(err.contains("mysql"), "{err}");
        assert!(parse_database_url("nonsense").is_err());
    }

    #[test]
    fn cache_and_bus_urls_by_scheme() {
        assert_eq!(parse_cache_url("memory://").unwrap(), CacheUrl::Memory);
        assert!(matches!(
            parse_cache_url("redis://127.0.0.1"),
            Ok(CacheUrl::Redis(_))
        ));
        assert!(parse_cache_url("memcached://x").is_err());
        assert_eq!(parse_bus_url("memory://").unwrap(), BusUrl::Memory);
        assert_eq!(
            parse_bus_url("sqlite:///var/lib/shop/bus.db").unwrap(),
            BusUrl::Sqlite("/var/lib/shop/bus.db".into())
        );
        assert!(parse_bus_url("sqlite://").unwrap_err().contains("path"));
        assert!(matches!(parse_bus_url("amqp://h"), Ok(BusUrl::Amqp(_))));
        assert!(parse_bus_url("kafka://h").is_err());
    }
}
