use std::time::Duration;

use kit::config::{
    BusUrl, CacheUrl, DatabaseUrl, HttpArgs, TokenArgs, parse_bus_url, parse_cache_url,
    parse_database_url,
};

use crate::{CacheMode, Settings};

/// `emporium serve catalog`: every setting from a flag or its variable.
#[derive(clap::Args, Debug, Clone)]
pub struct CatalogConfig {
    #[command(flatten)]
    pub http: HttpArgs,
    /// PostgreSQL (postgres://…) or SQLite (sqlite://…) URL of the catalog's own database.
    #[arg(long, env = "EMPORIUM_DATABASE_URL", value_name = "EMPORIUM_DATABASE_URL", value_parser = parse_database_url, hide_env_values = true)]
    pub database_url: DatabaseUrl,
    /// Redis (redis://…) or memory:// for cached product pages and listings.
    #[arg(long, env = "EMPORIUM_CACHE_URL", value_name = "EMPORIUM_CACHE_URL", value_parser = parse_cache_url, hide_env_values = true)]
    pub cache_url: CacheUrl,
    /// RabbitMQ (amqp://…), a SQLite event file (sqlite://…, one process) or memory:// for domain events.
    #[arg(long, env = "EMPORIUM_BUS_URL", value_name = "EMPORIUM_BUS_URL", value_parser = parse_bus_url, hide_env_values = true)]
    pub bus_url: BusUrl,
    #[command(flatten)]
    pub tokens: TokenArgs,
    /// Cache product pages and listings (`off` to measure the database alone).
    #[arg(
        long = "catalog-cache",
        env = "EMPORIUM_CATALOG_CACHE",
        value_name = "EMPORIUM_CATALOG_CACHE",
        value_enum,
        default_value = "on"
    )]
    pub cache: CacheMode,
    /// Lifetime of a cached response, in seconds.
    #[arg(long = "catalog-cache-ttl", env = "EMPORIUM_CATALOG_CACHE_TTL_SECS", value_name = "EMPORIUM_CATALOG_CACHE_TTL_SECS", default_value = "60", value_parser = kit::config::parse_duration_secs)]
    pub cache_ttl: Duration,
}

impl CatalogConfig {
    pub fn settings(&self) -> Settings {
        Settings {
            cache: self.cache,
            cache_ttl: self.cache_ttl,
            request_timeout: self.http.request_timeout,
            body_limit_bytes: self.http.body_limit_bytes,
        }
    }

    /// The verifier for access tokens, from the JWKS settings.
    pub fn token_verifier(&self) -> kit::auth::TokenVerifier {
        kit::auth::TokenVerifier::from_jwks_url(
            self.tokens.jwks_url.clone(),
            &self.tokens.jwt_issuer,
            &self.tokens.jwt_audience,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        catalog: CatalogConfig,
    }

    #[test]
    fn parses_flags_with_defaults() {
        let cli = Cli::try_parse_from([
            "catalog",
            "--database-url",
            "sqlite://catalog.db",
            "--cache-url",
            "memory://",
            "--bus-url",
            "memory://",
        ])
        .unwrap();
        let s = cli.catalog.settings();
        assert_eq!(s.cache, CacheMode::On);
        assert_eq!(s.cache_ttl, Duration::from_secs(60));
        let cli = Cli::try_parse_from([
            "catalog",
            "--database-url",
            "sqlite://catalog.db",
            "--cache-url",
            "memory://",
            "--bus-url",
            "memory://",
            "--catalog-cache",
            "off",
        ])
        .unwrap();
        assert_eq!(cli.catalog.settings().cache, CacheMode::Off);
    }
}
