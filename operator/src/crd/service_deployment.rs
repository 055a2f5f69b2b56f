//! `ServiceDeployment`: one Emporium microservice, turned into a Deployment,
//! Service, HorizontalPodAutoscaler, PodDisruptionBudget, ServiceAccount,
//! NetworkPolicy and optional Ingress.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Autoscaling, Component, Condition, PullPolicy, Resources, SecretKeyRef};
use super::store::{IngressSpec, ServiceExposure};

/// The desired state of one microservice.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "emporium.dev",
    version = "v1alpha1",
    kind = "ServiceDeployment",
    namespaced,
    status = "ServiceDeploymentStatus",
    shortname = "sd",
    category = "emporium",
    printcolumn(
        name = "Component",
        type_ = "string",
        json_path = ".spec.component",
        description = "The microservice"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether the service's pods are ready"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Pods ready to serve"
    ),
    printcolumn(
        name = "Image",
        type_ = "string",
        json_path = ".spec.image",
        priority = 1,
        description = "The container image"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDeploymentSpec {
    /// Which microservice this is.
    pub component: Component,
    /// The container image (`ghcr.io/emporium/emporium:1.2.0`).
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// When nodes pull the image: Always, IfNotPresent or Never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Names of docker-registry Secrets used to pull the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<String>,
    /// The container's arguments; `serve <component>` when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// How many pods run (ignored while autoscaling is set).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    /// Scale on CPU between a minimum and a maximum instead of a fixed count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// CPU and memory requests and limits of the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Environment variables of the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub env: Vec<EnvVar>,
    /// ConfigMaps whose every key becomes an environment variable; pods roll when one changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_maps: Vec<String>,
    /// Secrets mounted as read-only files; pods roll when one changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_mounts: Vec<SecretMount>,
    /// Container ports; one port named `http` on 8080 when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    /// Health-check endpoints and timings.
    #[serde(default)]
    pub probes: ProbeSpec,
    /// The Service in front of the pods.
    #[serde(default)]
    pub service: ServiceExposure,
    /// An Ingress routing a host name to the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,
    /// Who may open connections to the pods (a NetworkPolicy).
    #[serde(default)]
    pub network: NetworkAccess,
    /// Mount a token for the ServiceAccount (only for services that call the Kubernetes API).
    #[serde(default)]
    pub automount_service_account_token: bool,
}

fn default_replicas() -> i32 {
    1
}

/// An environment variable: exactly one of `value`, `secretKeyRef` or `configMapKeyRef`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.value) ? 1 : 0) + (has(self.secretKeyRef) ? 1 : 0) + (has(self.configMapKeyRef) ? 1 : 0) == 1").message("set exactly one of value, secretKeyRef or configMapKeyRef"))]
pub struct EnvVar {
    /// The variable's name.
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub name: String,
    /// A literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Take the value from a key of a Secret; pods roll when that Secret changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
    /// Take the value from a key of a ConfigMap; pods roll when that ConfigMap changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<SecretKeyRef>,
}

impl EnvVar {
    pub fn value(name: &str, value: impl Into<String>) -> EnvVar {
        EnvVar {
            name: name.to_owned(),
            value: Some(value.into()),
            secret_key_ref: None,
            config_map_key_ref: None,
        }
    }

    pub fn secret(name: &str, secret: &str, key: &str) -> EnvVar {
        EnvVar {
            name: name.to_owned(),
            value: None,
            secret_key_ref: Some(SecretKeyRef {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: false,
            }),
            config_map_key_ref: None,
        }
    }
}

/// A Secret mounted as files.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretMount {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// The directory the Secret's keys appear in, one file each.
    #[schemars(regex(pattern = r"^/"))]
    pub mount_path: String,
}

/// One container port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortSpec {
    /// The port's name (`http`).
    #[schemars(regex(pattern = r"^[a-z]([-a-z0-9]{0,13}[a-z0-9])?$"))]
    pub name: String,
    /// The port number the container listens on.
    #[schemars(range(min = 1, max = 65535))]
    pub container_port: i32,
}

/// Health checks: startup and liveness on `livenessPath`, readiness on `readinessPath`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeSpec {
    /// The liveness (and startup) endpoint.
    #[serde(default = "default_liveness")]
    pub liveness_path: String,
    /// The readiness endpoint; it checks the service's dependencies.
    #[serde(default = "default_readiness")]
    pub readiness_path: String,
    /// Seconds between two checks.
    #[serde(default = "default_period")]
    #[schemars(range(min = 1, max = 300))]
    pub period_seconds: i32,
    /// Failed startup checks tolerated before the container is restarted.
    #[serde(default = "default_startup_failures")]
    #[schemars(range(min = 1, max = 1000))]
    pub startup_failure_threshold: i32,
}

impl Default for ProbeSpec {
    fn default() -> Self {
        ProbeSpec {
            liveness_path: default_liveness(),
            readiness_path: default_readiness(),
            period_seconds: default_period(),
            startup_failure_threshold: default_startup_failures(),
        }
    }
}

fn default_liveness() -> String {
    "/healthz".into()
}
fn default_readiness() -> String {
    "/readyz".into()
}
fn default_period() -> i32 {
    10
}
fn default_startup_failures() -> i32 {
    30
}

/// Who may connect to the service's pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkAccess {
    /// Anyone may connect (the gateway).
    #[serde(default)]
    pub public: bool,
    /// Components of the same Store whose pods may connect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_from: Vec<Component>,
}

/// What the operator last saw of the service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDeploymentStatus {
    /// Pods ready to serve.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Pods wanted.
    #[serde(default)]
    pub desired_replicas: i32,
    /// Pods running the current pod template.
    #[serde(default)]
    pub updated_replicas: i32,
    /// Ready, Progressing and Degraded.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
