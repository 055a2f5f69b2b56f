use std::time::Duration;

use kit::config::{
    BusUrl, DatabaseUrl, HttpArgs, TokenArgs, parse_bus_url, parse_database_url,
    parse_positive_secs,
};

use crate::Settings;
use crate::domain::PricingPolicy;

/// `emporium serve orders`.
#[derive(clap::Args, Debug, Clone)]
pub struct OrdersConfig {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub tokens: TokenArgs,
    /// PostgreSQL (postgres://…) or SQLite (sqlite://…) URL of orders' own database.
    #[arg(long, env = "EMPORIUM_DATABASE_URL", value_name = "EMPORIUM_DATABASE_URL", value_parser = parse_database_url, hide_env_values = true)]
    pub database_url: DatabaseUrl,
    /// RabbitMQ (amqp://…), a SQLite event file (sqlite://…, one process) or memory:// for domain events.
    #[arg(long, env = "EMPORIUM_BUS_URL", value_name = "EMPORIUM_BUS_URL", value_parser = parse_bus_url, hide_env_values = true)]
    pub bus_url: BusUrl,
    /// Base URL of the cart service.
    #[arg(
        long,
        env = "EMPORIUM_CART_URL",
        value_name = "EMPORIUM_CART_URL",
        default_value = "http://cart:8080"
    )]
    pub cart_url: url::Url,
    /// Base URL of the catalog service.
    #[arg(
        long,
        env = "EMPORIUM_CATALOG_URL",
        value_name = "EMPORIUM_CATALOG_URL",
        default_value = "http://catalog:8080"
    )]
    pub catalog_url: url::Url,
    /// Flat shipping fee in minor units.
    #[arg(long, env = "EMPORIUM_SHIPPING_FEE", value_name = "EMPORIUM_SHIPPING_FEE", default_value_t = 499, value_parser = clap::value_parser!(i64).range(0..))]
    pub shipping_fee: i64,
    /// Subtotal (minor units) from which shipping is free.
    #[arg(long, env = "EMPORIUM_FREE_SHIPPING_FROM", value_name = "EMPORIUM_FREE_SHIPPING_FROM", default_value_t = 5000, value_parser = clap::value_parser!(i64).range(0..))]
    pub free_shipping_from: i64,
    /// Tax rate in basis points (800 = 8 %).
    #[arg(long, env = "EMPORIUM_TAX_RATE_BP", value_name = "EMPORIUM_TAX_RATE_BP", default_value_t = 800, value_parser = clap::value_parser!(i64).range(0..=10_000))]
    pub tax_rate_bp: i64,
    /// Seconds an order may wait for a successful payment before it is cancelled.
    #[arg(long, env = "EMPORIUM_PAYMENT_TIMEOUT_SECS", value_name = "EMPORIUM_PAYMENT_TIMEOUT_SECS", default_value = "900", value_parser = parse_positive_secs)]
    pub payment_timeout: Duration,
}

impl OrdersConfig {
    pub fn settings(&self) -> Settings {
        Settings {
            pricing: PricingPolicy {
                shipping_fee: self.shipping_fee,
                free_shipping_from: self.free_shipping_from,
                tax_rate_bp: self.tax_rate_bp,
            },
            payment_timeout: self.payment_timeout,
            request_timeout: self.http.request_timeout,
            body_limit_bytes: self.http.body_limit_bytes,
            ..Settings::default()
        }
    }
}
