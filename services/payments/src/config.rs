use std::time::Duration;

use kit::config::{BusUrl, DatabaseUrl, HttpArgs, TokenArgs, parse_bus_url, parse_database_url};
use url::Url;

use crate::Settings;
use crate::providers::ProviderKind;
use crate::providers::sandbox::SandboxSettings;

/// A secret from configuration: never printed, logged or serialized.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

fn parse_probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("`{s}` is not a probability between 0 and 1")),
    }
}

pub use kit::config::parse_positive_secs;

fn parse_millis(s: &str) -> Result<Duration, String> {
    s.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| format!("`{s}` is not a whole number of milliseconds"))
}

/// `emporium serve payments`: every setting from a flag or its variable.
#[derive(clap::Args, Debug, Clone)]
pub struct PaymentsConfig {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub tokens: TokenArgs,
    /// PostgreSQL (postgres://…) or SQLite (sqlite://…) URL of payments' own database.
    #[arg(long, env = "EMPORIUM_DATABASE_URL", value_name = "EMPORIUM_DATABASE_URL", value_parser = parse_database_url, hide_env_values = true)]
    pub database_url: DatabaseUrl,
    /// RabbitMQ (amqp://…), a SQLite event file (sqlite://…, one process) or memory:// for domain events.
    #[arg(long, env = "EMPORIUM_BUS_URL", value_name = "EMPORIUM_BUS_URL", value_parser = parse_bus_url, hide_env_values = true)]
    pub bus_url: BusUrl,
    /// Who charges the cards: the Stripe-like `sandbox`, or `stripe`.
    #[arg(
        long,
        env = "EMPORIUM_PAYMENT_PROVIDER",
        value_name = "EMPORIUM_PAYMENT_PROVIDER",
        value_enum,
        default_value = "sandbox"
    )]
    pub payment_provider: ProviderKind,
    /// Stripe secret API key (sk_…); required with the `stripe` provider.
    #[arg(
        long,
        env = "EMPORIUM_STRIPE_SECRET_KEY",
        value_name = "EMPORIUM_STRIPE_SECRET_KEY",
        hide_env_values = true
    )]
    pub stripe_secret_key: Option<String>,
    /// Webhook signing secret (whsec_…): Stripe's endpoint secret, and what the sandbox signs with.
    #[arg(
        long,
        env = "EMPORIUM_STRIPE_WEBHOOK_SECRET",
        value_name = "EMPORIUM_STRIPE_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub stripe_webhook_secret: String,
    /// Base URL of Stripe's API (a stripe-mock, say, in tests).
    #[arg(
        long,
        env = "EMPORIUM_STRIPE_API_BASE",
        value_name = "EMPORIUM_STRIPE_API_BASE",
        default_value = crate::providers::stripe::DEFAULT_API_BASE
    )]
    pub stripe_api_base: Url,
    /// Longest a webhook's signature may be older (or newer) than now, in seconds.
    #[arg(long, env = "EMPORIUM_STRIPE_WEBHOOK_TOLERANCE_SECS", value_name = "EMPORIUM_STRIPE_WEBHOOK_TOLERANCE_SECS", default_value = "300", value_parser = parse_positive_secs)]
    pub stripe_webhook_tolerance: Duration,
    /// Longest a call to Stripe may take, in seconds.
    #[arg(long, env = "EMPORIUM_STRIPE_TIMEOUT_SECS", value_name = "EMPORIUM_STRIPE_TIMEOUT_SECS", default_value = "20", value_parser = parse_positive_secs)]
    pub stripe_timeout: Duration,
    /// URL at which this payments service is reached; the sandbox posts its webhooks to it.
    /// Defaults to the listen address (0.0.0.0 read as 127.0.0.1).
    #[arg(long, env = "EMPORIUM_PUBLIC_URL", value_name = "EMPORIUM_PUBLIC_URL")]
    pub public_url: Option<Url>,
    /// Chance (0 to 1) that the sandbox delivers a webhook event twice, as Stripe sometimes does.
    #[arg(long, env = "EMPORIUM_SANDBOX_DUPLICATE_WEBHOOK_PROBABILITY", value_name = "EMPORIUM_SANDBOX_DUPLICATE_WEBHOOK_PROBABILITY", default_value = "0.2", value_parser = parse_probability)]
    pub sandbox_duplicate_webhook_probability: f64,
    /// Ask the provider where a charge or refund stands when its outcome (webhook) has not arrived for this many seconds.
    #[arg(long, env = "EMPORIUM_PAYMENTS_RECHECK_AFTER_SECS", value_name = "EMPORIUM_PAYMENTS_RECHECK_AFTER_SECS", default_value = "120", value_parser = parse_positive_secs)]
    pub payments_recheck_after: Duration,
    /// How long after a charge or refund the sandbox reports its outcome, in milliseconds.
    #[arg(long, env = "EMPORIUM_SANDBOX_WEBHOOK_DELAY_MS", value_name = "EMPORIUM_SANDBOX_WEBHOOK_DELAY_MS", default_value = "150", value_parser = parse_millis)]
    pub sandbox_webhook_delay: Duration,
}

impl PaymentsConfig {
    pub fn settings(&self) -> Result<Settings, String> {
        if self.stripe_webhook_secret.trim().is_empty() {
            return Err("EMPORIUM_STRIPE_WEBHOOK_SECRET must not be empty".into());
        }
        let stripe_secret_key = self.stripe_secret_key.clone().map(Secret::new);
        if self.payment_provider == ProviderKind::Stripe && stripe_secret_key.is_none() {
            return Err(
                "EMPORIUM_STRIPE_SECRET_KEY must be set when EMPORIUM_PAYMENT_PROVIDER=stripe"
                    .into(),
            );
        }
        let public_url = match &self.public_url {
            Some(u) => u.clone(),
            None => {
                let mut addr = self.http.listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                Url::parse(&format!("http://{addr}"))
                    .map_err(|e| format!("EMPORIUM_LISTEN: {e}"))?
            }
        };
        Ok(Settings {
            provider: self.payment_provider,
            webhook_secret: Secret::new(self.stripe_webhook_secret.clone()),
            webhook_tolerance: self.stripe_webhook_tolerance,
            stripe_secret_key,
            stripe_api_base: self.stripe_api_base.clone(),
            stripe_timeout: self.stripe_timeout,
            public_url: Some(public_url),
            sandbox: SandboxSettings {
                duplicate_probability: self.sandbox_duplicate_webhook_probability,
                delay: self.sandbox_webhook_delay,
            },
            recheck_after: self.payments_recheck_after,
            request_timeout: self.http.request_timeout,
            body_limit_bytes: self.http.body_limit_bytes,
            ..Settings::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: PaymentsConfig,
    }

    fn parse(args: &[&str]) -> Result<Settings, String> {
        let mut argv = vec![
            "payments",
            "--database-url",
            "sqlite://p.db",
            "--bus-url",
            "memory://",
            "--stripe-webhook-secret",
            "whsec_x",
        ];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .config
            .settings()
    }

    #[test]
    fn sandbox_by_default_posting_to_its_own_address() {
        let s = parse(&["--listen", "0.0.0.0:8085"]).unwrap();
        assert_eq!(s.provider, ProviderKind::Sandbox);
        assert_eq!(s.public_url.unwrap().as_str(), "http://127.0.0.1:8085/");
        assert_eq!(s.sandbox.duplicate_probability, 0.2);
        assert_eq!(s.webhook_tolerance, Duration::from_secs(300));
        assert_eq!(s.recheck_after, Duration::from_secs(120));
    }

    #[test]
    fn the_recheck_delay_is_a_positive_number_of_seconds() {
        let err = parse(&["--payments-recheck-after", "0"]).unwrap_err();
        assert!(err.contains("at least 1 second"), "{err}");
        assert!(parse(&["--payments-recheck-after", "soon"]).is_err());
        let s = parse(&["--payments-recheck-after", "30"]).unwrap();
        assert_eq!(s.recheck_after, Duration::from_secs(30));
    }

    #[test]
    fn stripe_needs_its_secret_key() {
        let err = parse(&["--payment-provider", "stripe"]).unwrap_err();
        assert!(err.contains("EMPORIUM_STRIPE_SECRET_KEY"), "{err}");
        let s = parse(&[
            "--payment-provider",
            "stripe",
            "--stripe-secret-key",
            "sk_test_x",
        ])
        .unwrap();
        assert_eq!(s.provider, ProviderKind::Stripe);
        assert_eq!(s.stripe_api_base.as_str(), "https://api.stripe.com/");
        assert!(
            !format!("{s:?}").contains("sk_test_x"),
            "secrets stay out of Debug"
        );
    }

    #[test]
    fn probabilities_are_checked() {
        assert!(parse(&["--sandbox-duplicate-webhook-probability", "1.5"]).is_err());
        let s = parse(&["--sandbox-duplicate-webhook-probability", "1"]).unwrap();
        assert_eq!(s.sandbox.duplicate_probability, 1.0);
    }
}
