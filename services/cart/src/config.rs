use std::sync::Arc;
use std::time::Duration;

use kit::auth::TokenVerifier;
use kit::config::{
    CacheUrl, DatabaseUrl, HttpArgs, TokenArgs, parse_cache_url, parse_database_url,
};

use crate::Settings;

/// Where carts are kept: Redis in production, or a SQL database (the
/// SQLite file of `emporium up`, so carts survive a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Redis(String),
    Sql(DatabaseUrl),
}

pub fn parse_store_url(s: &str) -> Result<StoreUrl, String> {
    if let Ok(CacheUrl::Redis(url)) = parse_cache_url(s) {
        return Ok(StoreUrl::Redis(url));
    }
    parse_database_url(s).map(StoreUrl::Sql).map_err(|_| {
        "expected redis://…, postgres://… or sqlite://… (carts must outlive the process, so memory:// is not offered)"
            .to_string()
    })
}

fn parse_millis(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err(format!(
            "`{s}` is not a positive whole number of milliseconds"
        )),
    }
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    match kit::config::parse_duration_secs(s)? {
        d if d.is_zero() => Err("a cart must live at least one second".into()),
        d => Ok(d),
    }
}

fn parse_currency(s: &str) -> Result<String, String> {
    if crate::domain::money::is_currency_code(s) {
        Ok(s.to_string())
    } else {
        Err(format!("`{s}` is not an ISO 4217 code such as USD"))
    }
}

/// `emporium serve cart`: every setting from a flag or its variable.
#[derive(clap::Args, Debug, Clone)]
pub struct CartConfig {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub tokens: TokenArgs,
    /// Where carts are kept: redis://… (production), or postgres://… / sqlite://….
    #[arg(long, env = "EMPORIUM_CART_STORE_URL", value_name = "EMPORIUM_CART_STORE_URL", value_parser = parse_store_url, hide_env_values = true)]
    pub store_url: StoreUrl,
    /// Base URL of the catalogue service, e.g. http://catalog:8080.
    #[arg(
        long,
        env = "EMPORIUM_CATALOG_URL",
        value_name = "EMPORIUM_CATALOG_URL"
    )]
    pub catalog_url: url::Url,
    /// RabbitMQ (amqp://…) or memory://: the cart empties itself when an order is placed.
    #[arg(long, env = "EMPORIUM_BUS_URL", value_name = "EMPORIUM_BUS_URL", value_parser = kit::config::parse_bus_url, hide_env_values = true)]
    pub bus_url: kit::config::BusUrl,
    /// Longest wait for the catalogue, in milliseconds.
    #[arg(long, env = "EMPORIUM_CATALOG_TIMEOUT_MS", value_name = "EMPORIUM_CATALOG_TIMEOUT_MS", default_value = "2000", value_parser = parse_millis)]
    pub catalog_timeout: Duration,
    /// How long a cart lives after its last change, in seconds (7 days).
    #[arg(long, env = "EMPORIUM_CART_TTL_SECS", value_name = "EMPORIUM_CART_TTL_SECS", default_value = "604800", value_parser = parse_ttl)]
    pub cart_ttl: Duration,
    /// Most different products one cart may hold (1 to 100).
    #[arg(long, env = "EMPORIUM_CART_MAX_LINES", value_name = "EMPORIUM_CART_MAX_LINES", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub cart_max_lines: u16,
    /// Currency of an empty cart's subtotal (ISO 4217).
    #[arg(long, env = "EMPORIUM_SHOP_CURRENCY", value_name = "EMPORIUM_SHOP_CURRENCY", default_value = "USD", value_parser = parse_currency)]
    pub currency: String,
    /// Prefix of the cart keys in Redis (`<prefix>:cart:…`).
    #[arg(
        long,
        env = "EMPORIUM_CART_KEY_PREFIX",
        value_name = "EMPORIUM_CART_KEY_PREFIX",
        default_value = "emporium"
    )]
    pub key_prefix: String,
}

impl CartConfig {
    pub fn settings(&self) -> Settings {
        Settings {
            cart_ttl: self.cart_ttl,
            catalog_timeout: self.catalog_timeout,
            currency: self.currency.clone(),
            key_prefix: self.key_prefix.clone(),
            max_lines: usize::from(self.cart_max_lines),
            request_timeout: self.http.request_timeout,
            body_limit_bytes: self.http.body_limit_bytes,
        }
    }

    /// Verifies access tokens with identity's published keys.
    pub fn verifier(&self) -> Arc<TokenVerifier> {
        Arc::new(TokenVerifier::from_jwks_url(
            self.tokens.jwks_url.clone(),
            &self.tokens.jwt_issuer,
            &self.tokens.jwt_audience,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_url_by_scheme() {
        assert_eq!(
            parse_store_url("redis://127.0.0.1:6379").unwrap(),
            StoreUrl::Redis("redis://127.0.0.1:6379".into())
        );
        assert!(matches!(
            parse_store_url("sqlite://carts.db"),
            Ok(StoreUrl::Sql(DatabaseUrl::Sqlite(_)))
        ));
        assert!(matches!(
            parse_store_url("postgres://u@h/db"),
            Ok(StoreUrl::Sql(DatabaseUrl::Postgres(_)))
        ));
        assert!(parse_store_url("memory://").is_err());
        assert!(parse_store_url("nonsense").is_err());
    }

    #[test]
    fn durations_and_currency() {
        assert_eq!(parse_millis("2000").unwrap(), Duration::from_secs(2));
        assert!(parse_millis("0").is_err());
        assert!(parse_ttl("0").is_err());
        assert_eq!(parse_ttl("604800").unwrap(), Duration::from_secs(604_800));
        assert!(parse_currency("usd").is_err());
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        config: CartConfig,
    }

    #[test]
    fn defaults() {
        use clap::Parser;
        let cli = Cli::try_parse_from([
            "cart",
            "--store-url",
            "redis://127.0.0.1",
            "--catalog-url",
            "http://catalog:8080",
            "--bus-url",
            "amqp://rabbitmq:5672",
        ])
        .unwrap();
        let s = cli.config.settings();
        assert_eq!(s.cart_ttl, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(s.catalog_timeout, Duration::from_secs(2));
        assert_eq!(s.currency, "USD");
        assert_eq!(s.max_lines, 100);
    }
}
