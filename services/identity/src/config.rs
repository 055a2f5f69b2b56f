use std::path::PathBuf;
use std::time::Duration;

use kit::config::{
    BusUrl, CacheUrl, DatabaseUrl, HttpArgs, parse_bus_url, parse_cache_url, parse_database_url,
};

use crate::Settings;
use crate::keys::{KeyError, KeyRing};

/// `emporium serve identity`: every setting from a flag or its variable.
#[derive(clap::Args, Debug, Clone)]
pub struct IdentityConfig {
    #[command(flatten)]
    pub http: HttpArgs,
    /// PostgreSQL (postgres://…) or SQLite (sqlite://…) URL of identity's own database.
    #[arg(long, env = "EMPORIUM_DATABASE_URL", value_name = "EMPORIUM_DATABASE_URL", value_parser = parse_database_url, hide_env_values = true)]
    pub database_url: DatabaseUrl,
    /// Redis (redis://…) or memory:// for sign-in throttling counters.
    #[arg(long, env = "EMPORIUM_CACHE_URL", value_name = "EMPORIUM_CACHE_URL", value_parser = parse_cache_url, hide_env_values = true)]
    pub cache_url: CacheUrl,
    /// RabbitMQ (amqp://…), a SQLite event file (sqlite://…, one process) or memory:// for domain events.
    #[arg(long, env = "EMPORIUM_BUS_URL", value_name = "EMPORIUM_BUS_URL", value_parser = parse_bus_url, hide_env_values = true)]
    pub bus_url: BusUrl,
    /// PKCS#8 PEM file of the Ed25519 key that signs access tokens.
    #[arg(
        long,
        env = "EMPORIUM_JWT_SIGNING_KEY_FILE",
        value_name = "EMPORIUM_JWT_SIGNING_KEY_FILE"
    )]
    pub jwt_signing_key_file: Option<PathBuf>,
    /// The signing key's PEM itself (instead of a file).
    #[arg(
        long,
        env = "EMPORIUM_JWT_SIGNING_KEY",
        value_name = "EMPORIUM_JWT_SIGNING_KEY",
        hide_env_values = true
    )]
    pub jwt_signing_key: Option<String>,
    /// PEM files (private or public) of retired keys still published in the JWKS, comma-separated.
    #[arg(
        long,
        env = "EMPORIUM_JWT_PREVIOUS_KEY_FILES",
        value_name = "EMPORIUM_JWT_PREVIOUS_KEY_FILES",
        value_delimiter = ','
    )]
    pub jwt_previous_key_files: Vec<PathBuf>,
    /// `iss` claim of issued tokens.
    #[arg(
        long,
        env = "EMPORIUM_JWT_ISSUER",
        value_name = "EMPORIUM_JWT_ISSUER",
        default_value = "emporium-identity"
    )]
    pub jwt_issuer: String,
    /// `aud` claim of issued tokens.
    #[arg(
        long,
        env = "EMPORIUM_JWT_AUDIENCE",
        value_name = "EMPORIUM_JWT_AUDIENCE",
        default_value = "emporium"
    )]
    pub jwt_audience: String,
    /// Lifetime of access tokens, in seconds.
    #[arg(long, env = "EMPORIUM_ACCESS_TOKEN_TTL_SECS", value_name = "EMPORIUM_ACCESS_TOKEN_TTL_SECS", default_value = "900", value_parser = kit::config::parse_positive_secs)]
    pub access_token_ttl: Duration,
    /// Lifetime of refresh tokens, in seconds.
    #[arg(long, env = "EMPORIUM_REFRESH_TOKEN_TTL_SECS", value_name = "EMPORIUM_REFRESH_TOKEN_TTL_SECS", default_value = "604800", value_parser = kit::config::parse_positive_secs)]
    pub refresh_token_ttl: Duration,
    /// Failed sign-ins per account allowed within the window.
    #[arg(
        long,
        env = "EMPORIUM_LOGIN_MAX_FAILURES",
        value_name = "EMPORIUM_LOGIN_MAX_FAILURES",
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub login_max_failures: u32,
    /// Failed sign-ins per client address allowed within the window.
    #[arg(
        long,
        env = "EMPORIUM_LOGIN_MAX_FAILURES_PER_CLIENT",
        value_name = "EMPORIUM_LOGIN_MAX_FAILURES_PER_CLIENT",
        default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub login_max_failures_per_client: u32,
    /// Length of the sign-in throttling window, in seconds.
    #[arg(long, env = "EMPORIUM_LOGIN_WINDOW_SECS", value_name = "EMPORIUM_LOGIN_WINDOW_SECS", default_value = "900", value_parser = kit::config::parse_positive_secs)]
    pub login_window: Duration,
    /// Email of the first admin, created at start-up if missing.
    #[arg(
        long,
        env = "EMPORIUM_ADMIN_EMAIL",
        value_name = "EMPORIUM_ADMIN_EMAIL",
        requires = "admin_password"
    )]
    pub admin_email: Option<String>,
    /// Password of the first admin (used only when the account is created).
    #[arg(
        long,
        env = "EMPORIUM_ADMIN_PASSWORD",
        value_name = "EMPORIUM_ADMIN_PASSWORD",
        hide_env_values = true,
        requires = "admin_email"
    )]
    pub admin_password: Option<String>,
}

impl IdentityConfig {
    pub fn settings(&self) -> Settings {
        Settings {
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            access_ttl: self.access_token_ttl,
            refresh_ttl: self.refresh_token_ttl,
            login_window: self.login_window,
            max_failures_per_account: self.login_max_failures,
            max_failures_per_client: self.login_max_failures_per_client,
            admin: self.admin_email.clone().zip(self.admin_password.clone()),
            request_timeout: self.http.request_timeout,
            body_limit_bytes: self.http.body_limit_bytes,
        }
    }

    pub fn key_ring(&self) -> Result<KeyRing, String> {
        let previous: Vec<(String, String)> = self
            .jwt_previous_key_files
            .iter()
            .map(|p| {
                std::fs::read_to_string(p)
                    .map(|pem| (p.display().to_string(), pem))
                    .map_err(|e| {
                        format!(
                            "EMPORIUM_JWT_PREVIOUS_KEY_FILES: cannot read {}: {e}",
                            p.display()
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        let current = match (&self.jwt_signing_key, &self.jwt_signing_key_file) {
            (Some(pem), _) => pem.clone(),
            (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "EMPORIUM_JWT_SIGNING_KEY_FILE: cannot read {}: {e}",
                    path.display()
                )
            })?,
            (None, None) => {
                return Err(
                    "EMPORIUM_JWT_SIGNING_KEY or EMPORIUM_JWT_SIGNING_KEY_FILE must be set \
                            (an Ed25519 PKCS#8 PEM; `emporium keygen` makes one)"
                        .into(),
                );
            }
        };
        KeyRing::from_pem(&current, &previous).map_err(|e: KeyError| match e {
            KeyError::Invalid { source_name } if source_name == "current signing key" => {
                "EMPORIUM_JWT_SIGNING_KEY(_FILE): not an Ed25519 PKCS#8 PEM private key".to_string()
            }
            other => format!("EMPORIUM_JWT_PREVIOUS_KEY_FILES: {other}"),
        })
    }
}
