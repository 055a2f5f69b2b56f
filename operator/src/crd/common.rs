//! Types shared by the three custom resources: components, resources,
//! autoscaling and status conditions.

use std::fmt;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every Emporium resource.
pub const GROUP: &str = "emporium.dev";

/// One Emporium microservice; the single `emporium` image serves each of
/// them with `emporium serve <component>`.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    /// The public REST entry point; verifies tokens and routes to the services.
    Gateway,
    /// Accounts, sign-in, JWT issue and the JWKS.
    Identity,
    /// Products, categories and stock.
    Catalog,
    /// Shopping carts, kept in Redis.
    Cart,
    /// Checkout and the order lifecycle.
    Orders,
    /// Charges and refunds through the payment provider.
    Payments,
    /// E-mail and the in-app feed.
    Notifications,
}

impl Component {
    /// Every component, in the order the shop is listed in.
    pub const ALL: [Component; 7] = [
        Component::Gateway,
        Component::Identity,
        Component::Catalog,
        Component::Cart,
        Component::Orders,
        Component::Payments,
        Component::Notifications,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Component::Gateway => "gateway",
            Component::Identity => "identity",
            Component::Catalog => "catalog",
            Component::Cart => "cart",
            Component::Orders => "orders",
            Component::Payments => "payments",
            Component::Notifications => "notifications",
        }
    }

    /// Whether the component keeps its own PostgreSQL database (and so has a
    /// migration Job per version).
    pub fn has_database(self) -> bool {
        matches!(
            self,
            Component::Identity
                | Component::Catalog
                | Component::Orders
                | Component::Payments
                | Component::Notifications
        )
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When the kubelet pulls the image.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    /// Pull on every container start.
    Always,
    /// Pull only when the node lacks the image.
    IfNotPresent,
    /// Never pull; the image must already be on the node.
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// CPU and memory amounts in Kubernetes quantity notation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ResourceAmounts {
    /// CPU, in cores or millicores (`250m`, `1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?m?$"))]
    pub cpu: Option<String>,
    /// Memory, in bytes with an optional suffix (`128Mi`, `1Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(k|M|G|T|Ki|Mi|Gi|Ti)?$"))]
    pub memory: Option<String>,
}

/// Compute resources of one container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct Resources {
    /// What the scheduler reserves for the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceAmounts>,
    /// The most the container may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceAmounts>,
}

/// A HorizontalPodAutoscaler (autoscaling/v2) on CPU utilisation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must not exceed autoscaling.maxReplicas"))]
pub struct Autoscaling {
    /// The fewest replicas the autoscaler keeps.
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    /// The most replicas the autoscaler scales to.
    #[schemars(range(min = 1, max = 100))]
    pub max_replicas: i32,
    /// Average CPU utilisation, in percent of the request, that the autoscaler aims for.
    #[serde(
        default = "default_cpu_target",
        rename = "targetCPUUtilizationPercentage"
    )]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,
}

fn default_cpu_target() -> i32 {
    80
}

/// A plain environment variable.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct NameValue {
    /// The variable's name.
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub name: String,
    /// The variable's value.
    #[serde(default)]
    pub value: String,
}

/// A reference to a key of a Secret in the resource's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key inside the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
    /// Whether the pod may start without the Secret or key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// A reference to an object by name in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct LocalRef {
    /// The object's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Whether a condition holds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// The operator cannot tell yet.
    Unknown,
}

/// A standard Kubernetes status condition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition's name, such as `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Whether it holds: True, False or Unknown.
    pub status: ConditionStatus,
    /// A one-word, CamelCase cause of the latest transition.
    pub reason: String,
    /// A sentence for a person.
    #[serde(default)]
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
    /// The resource's `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    pub fn new(type_: &str, holds: bool, reason: &str, message: impl Into<String>) -> Condition {
        Condition {
            type_: type_.to_owned(),
            status: if holds {
                ConditionStatus::True
            } else {
                ConditionStatus::False
            },
            reason: reason.to_owned(),
            message: message.into(),
            last_transition_time: String::new(),
            observed_generation: None,
        }
    }

    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }
}

/// Finds a condition by type.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Gives freshly computed conditions their transition times: a condition
/// whose status did not change keeps the time it had, so re-computing an
/// unchanged state yields an identical status (and so no write).
pub fn carry_transition_times(
    new: &mut [Condition],
    old: &[Condition],
    generation: Option<i64>,
    now: &str,
) {
    for condition in new.iter_mut() {
        condition.observed_generation = generation;
        condition.last_transition_time = match self::condition(old, &condition.type_) {
            Some(previous) if previous.status == condition.status => {
                previous.last_transition_time.clone()
            }
            _ => now.to_owned(),
        };
    }
}
