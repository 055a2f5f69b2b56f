use std::time::Duration;

use kit::auth::TokenVerifier;
use kit::config::{BusUrl, DatabaseUrl, HttpArgs, TokenArgs, parse_bus_url, parse_database_url};
use kit::events::RetryPolicy;
use lettre::message::Mailbox;

use crate::Settings;
use crate::smtp::{SmtpUrl, parse_smtp_url};

fn parse_mailbox(s: &str) -> Result<Mailbox, String> {
    s.parse()
        .map_err(|e| format!("not an address like `Shop <shop@example.com>`: {e}"))
}

fn parse_attempts(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{s}` is not a whole number of at least 1")),
    }
}

/// `emporium serve notifications`: every setting from a flag or its variable.
#[derive(clap::Args, Debug, Clone)]
pub struct NotificationsConfig {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub tokens: TokenArgs,
    /// PostgreSQL (postgres://…) or SQLite (sqlite://…) URL of notifications' own database.
    #[arg(long, env = "EMPORIUM_DATABASE_URL", value_name = "EMPORIUM_DATABASE_URL", value_parser = parse_database_url, hide_env_values = true)]
    pub database_url: DatabaseUrl,
    /// RabbitMQ (amqp://…), a SQLite event file (sqlite://…, one process) or memory:// for domain events.
    #[arg(long, env = "EMPORIUM_BUS_URL", value_name = "EMPORIUM_BUS_URL", value_parser = parse_bus_url, hide_env_values = true)]
    pub bus_url: BusUrl,
    /// SMTP server for emails: smtp://user:pass@host:587 (STARTTLS required),
    /// smtp://host:25?tls=opportunistic, smtp://127.0.0.1:1025?tls=none (no TLS, local
    /// servers) or smtps://user:pass@host:465 (implicit TLS). Unset: notifications are
    /// kept for the in-app feed with status `stored` and no email is sent.
    #[arg(long, env = "EMPORIUM_SMTP_URL", value_name = "EMPORIUM_SMTP_URL", value_parser = parse_smtp_url, hide_env_values = true)]
    pub smtp_url: Option<SmtpUrl>,
    /// Sender of every email.
    #[arg(long, env = "EMPORIUM_MAIL_FROM", value_name = "EMPORIUM_MAIL_FROM", default_value = "Emporium <shop@emporium.local>", value_parser = parse_mailbox)]
    pub mail_from: Mailbox,
    /// The shop's name, as emails say it.
    #[arg(
        long,
        env = "EMPORIUM_SHOP_NAME",
        value_name = "EMPORIUM_SHOP_NAME",
        default_value = "Emporium"
    )]
    pub shop_name: String,
    /// Longest wait for the SMTP server on one command, in seconds.
    #[arg(long, env = "EMPORIUM_SMTP_TIMEOUT_SECS", value_name = "EMPORIUM_SMTP_TIMEOUT_SECS", default_value = "30", value_parser = kit::config::parse_positive_secs)]
    pub smtp_timeout: Duration,
    /// Delivery attempts per email before it is marked failed.
    #[arg(long, env = "EMPORIUM_MAIL_MAX_ATTEMPTS", value_name = "EMPORIUM_MAIL_MAX_ATTEMPTS", default_value = "8", value_parser = parse_attempts)]
    pub mail_max_attempts: u32,
    /// Wait before the second attempt, in seconds; doubled after each failure.
    #[arg(long, env = "EMPORIUM_MAIL_RETRY_BACKOFF_SECS", value_name = "EMPORIUM_MAIL_RETRY_BACKOFF_SECS", default_value = "30", value_parser = kit::config::parse_duration_secs)]
    pub mail_retry_backoff: Duration,
    /// Longest wait between two attempts, in seconds.
    #[arg(long, env = "EMPORIUM_MAIL_RETRY_MAX_BACKOFF_SECS", value_name = "EMPORIUM_MAIL_RETRY_MAX_BACKOFF_SECS", default_value = "3600", value_parser = kit::config::parse_duration_secs)]
    pub mail_retry_max_backoff: Duration,
}

impl NotificationsConfig {
    pub fn settings(&self) -> Settings {
        Settings {
            shop_name: self.shop_name.clone(),
            mail_from: self.mail_from.clone(),
            smtp: self.smtp_url.clone(),
            smtp_timeout: self.smtp_timeout,
            delivery: RetryPolicy {
                max_attempts: self.mail_max_attempts,
                initial_backoff: self.mail_retry_backoff,
                max_backoff: self.mail_retry_max_backoff.max(self.mail_retry_backoff),
            },
            request_timeout: self.http.request_timeout,
            body_limit_bytes: self.http.body_limit_bytes,
            ..Settings::default()
        }
    }

    /// Verifies access tokens with identity's JWKS.
    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier::from_jwks_url(
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
        config: NotificationsConfig,
    }

    #[test]
    fn defaults_and_smtp_url() {
        let cli = Cli::try_parse_from([
            "x",
            "--database-url",
            "sqlite://n.db",
            "--bus-url",
            "memory://",
            "--smtp-url",
            "smtp://mailer:hunter2@mail.example.com",
            "--mail-max-attempts",
            "3",
        ])
        .unwrap();
        let s = cli.config.settings();
        assert_eq!(s.shop_name, "Emporium");
        assert_eq!(s.mail_from.to_string(), "Emporium <shop@emporium.local>");
        assert_eq!(s.delivery.max_attempts, 3);
        assert_eq!(s.smtp.as_ref().unwrap().port, 587);
        assert!(!format!("{:?}", cli.config).contains("hunter2"));
        assert!(
            Cli::try_parse_from([
                "x",
                "--database-url",
                "sqlite://n.db",
                "--bus-url",
                "memory://",
                "--mail-max-attempts",
                "0"
            ])
            .is_err()
        );
    }
}
