//! `PaymentProvider`: the payment service's provider and its credentials.
//! Its controller checks that the Secret holds the keys the provider needs.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, LocalRef};

/// A payment provider the payments service charges through.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "emporium.dev",
    version = "v1alpha1",
    kind = "PaymentProvider",
    namespaced,
    status = "PaymentProviderStatus",
    shortname = "pp",
    category = "emporium",
    printcolumn(
        name = "Type",
        type_ = "string",
        json_path = ".spec.type",
        description = "sandbox or stripe"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether the credentials are complete"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#,
        description = "Why it is or is not ready"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PaymentProviderSpec {
    /// The provider: `sandbox` (simulated charges) or `stripe`.
    #[serde(rename = "type")]
    pub type_: ProviderType,
    /// The Secret with the credentials: `webhook-secret` always, `api-key` for stripe.
    pub secret_ref: LocalRef,
    /// ISO 4217 code of the currency charged (`EUR`).
    #[schemars(regex(pattern = r"^[A-Z]{3}$"))]
    pub currency: String,
}

/// Which payment provider.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderType {
    /// Simulated charges; no money moves.
    Sandbox,
    /// Stripe's API.
    Stripe,
}

/// Key of the provider's API key in the Secret.
pub const API_KEY: &str = "api-key";
/// Key of the webhook signing secret in the Secret.
pub const WEBHOOK_SECRET: &str = "webhook-secret";

impl ProviderType {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderType::Sandbox => "sandbox",
            ProviderType::Stripe => "stripe",
        }
    }

    /// The Secret keys this provider cannot work without.
    pub fn required_keys(self) -> &'static [&'static str] {
        match self {
            ProviderType::Sandbox => &[WEBHOOK_SECRET],
            ProviderType::Stripe => &[API_KEY, WEBHOOK_SECRET],
        }
    }
}

/// What the operator last saw of the provider.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentProviderStatus {
    /// Ready: the Secret exists and holds every key the provider needs.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
