//! `Store`: one whole shop. The operator turns it into a ServiceDeployment
//! per component, the managed backing stores, migration Jobs, the shop's
//! settings and its generated Secrets.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    Autoscaling, Component, Condition, LocalRef, NameValue, PullPolicy, Resources,
};

/// The desired state of a shop.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "emporium.dev",
    version = "v1alpha1",
    kind = "Store",
    namespaced,
    status = "StoreStatus",
    shortname = "st",
    category = "emporium",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether every part of the shop is ready"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Where the shop is in its life"
    ),
    printcolumn(
        name = "Gateway",
        type_ = "string",
        json_path = ".status.gatewayUrl",
        description = "The URL customers reach the shop at"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct StoreSpec {
    /// The container image every component runs (`emporium serve <component>`).
    pub image: ImageSpec,
    /// Per-component replicas, resources, autoscaling and extra environment.
    #[serde(default)]
    pub components: Components,
    /// How the gateway is exposed outside the cluster.
    #[serde(default)]
    pub gateway: GatewayExposure,
    /// The PostgreSQL server: each service gets its own database on it.
    pub database: DatabaseSpec,
    /// The Redis server (catalog cache, carts).
    pub cache: EndpointSpec,
    /// The RabbitMQ broker that carries domain events.
    pub messaging: EndpointSpec,
    /// The PaymentProvider (in this namespace) the payments service charges through.
    pub payment_provider_ref: LocalRef,
    /// Outgoing mail for the notifications service; without it mail is not sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpSpec>,
    /// The shop's first administrator; a password is generated into the Secret `<store>-admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminSpec>,
    /// Currency, tax and shipping settings of the shop.
    #[serde(default)]
    pub shop: ShopSettings,
    /// Stop reconciling: while true the operator changes nothing of this shop.
    #[serde(default)]
    pub suspend: bool,
}

/// The Emporium container image.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// The image repository, registry host included (`ghcr.io/emporium/emporium`).
    #[serde(default = "default_registry")]
    #[schemars(length(min = 1, max = 255))]
    pub registry: String,
    /// The image tag; changing it runs each service's migrations, then rolls the service.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"))]
    pub tag: String,
    /// When nodes pull the image: Always, IfNotPresent or Never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
    /// Names of docker-registry Secrets used to pull the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pull_secrets: Vec<String>,
}

fn default_registry() -> String {
    "ghcr.io/emporium/emporium".into()
}

impl ImageSpec {
    /// `registry:tag`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.registry, self.tag)
    }
}

/// Settings of each component; a component left out gets one replica.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct Components {
    /// The public REST gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<ComponentSpec>,
    /// The identity service (accounts, tokens, JWKS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ComponentSpec>,
    /// The catalog service (products, stock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<ComponentSpec>,
    /// The cart service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cart: Option<ComponentSpec>,
    /// The orders service (checkout, order lifecycle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders: Option<ComponentSpec>,
    /// The payments service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payments: Option<ComponentSpec>,
    /// The notifications service (e-mail, in-app feed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<ComponentSpec>,
}

impl Components {
    pub fn get(&self, component: Component) -> Option<&ComponentSpec> {
        match component {
            Component::Gateway => self.gateway.as_ref(),
            Component::Identity => self.identity.as_ref(),
            Component::Catalog => self.catalog.as_ref(),
            Component::Cart => self.cart.as_ref(),
            Component::Orders => self.orders.as_ref(),
            Component::Payments => self.payments.as_ref(),
            Component::Notifications => self.notifications.as_ref(),
        }
    }
}

/// Settings of one component.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSpec {
    /// How many pods run (ignored while autoscaling is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: Option<i32>,
    /// CPU and memory requests and limits of the service's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Scale on CPU between a minimum and a maximum instead of a fixed count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// Extra environment variables, added after the ones the operator sets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<NameValue>,
}

/// How the gateway's Service is published.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// Reachable inside the cluster only.
    #[default]
    ClusterIP,
    /// Also on a port of every node.
    NodePort,
    /// Through the cloud's load balancer.
    LoadBalancer,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// The Service in front of a component.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type == 'NodePort' || !has(self.nodePort)").message("nodePort may only be set when type is NodePort"))]
pub struct ServiceExposure {
    /// ClusterIP, NodePort or LoadBalancer.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// The node port to use with type NodePort (30000-32767); chosen by Kubernetes when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30000, max = 32767))]
    pub node_port: Option<i32>,
}

/// An Ingress for the gateway.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// The host name the Ingress routes to the gateway.
    #[schemars(regex(
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
    ))]
    pub host: String,
    /// The IngressClass to use; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
}

/// How customers reach the gateway.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct GatewayExposure {
    /// The gateway's Service.
    #[serde(default)]
    pub service: ServiceExposure,
    /// An optional Ingress with a host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,
}

/// Storage of a managed backing store.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of the PersistentVolumeClaim (`1Gi`).
    #[serde(default = "default_storage_size")]
    #[schemars(regex(pattern = r"^[0-9]+(Mi|Gi|Ti)$"))]
    pub size: String,
    /// StorageClass of the claim; the cluster's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Keep the data in an emptyDir instead of a PersistentVolumeClaim: lost when the pod goes (for tests and demos).
    #[serde(default)]
    pub ephemeral: bool,
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            size: default_storage_size(),
            storage_class_name: None,
            ephemeral: false,
        }
    }
}

fn default_storage_size() -> String {
    "1Gi".into()
}

/// A backing store the operator runs as a StatefulSet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedSpec {
    /// The server's image; a pinned upstream image when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Where the server keeps its data.
    #[serde(default)]
    pub storage: StorageSpec,
    /// CPU and memory of the server's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
}

/// A PostgreSQL server run elsewhere.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalDatabase {
    /// A Secret holding one `postgres://` URL per service, under the keys
    /// `identity`, `catalog`, `orders`, `payments` and `notifications`.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// The PostgreSQL server: exactly one of `managed` or `external`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.managed) != has(self.external)").message("set exactly one of managed or external"))]
pub struct DatabaseSpec {
    /// The operator runs PostgreSQL as a StatefulSet and creates a database per service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedSpec>,
    /// Use an existing PostgreSQL server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalDatabase>,
}

/// A server run elsewhere, reached by a URL kept in a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalEndpoint {
    /// The Secret holding the URL (`redis://…` or `amqp://…`).
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// The key of the URL inside the Secret.
    #[serde(default = "default_url_key")]
    pub key: String,
}

fn default_url_key() -> String {
    "url".into()
}

/// Redis or RabbitMQ: exactly one of `managed` or `external`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.managed) != has(self.external)").message("set exactly one of managed or external"))]
pub struct EndpointSpec {
    /// The operator runs the server as a StatefulSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedSpec>,
    /// Use an existing server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalEndpoint>,
}

/// Outgoing mail.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SmtpSpec {
    /// The Secret and key holding the `smtp://` or `smtps://` URL, credentials included.
    pub url_secret_ref: super::common::SecretKeyRef,
    /// The sender address of every mail.
    #[schemars(regex(pattern = r"^[^@\s]+@[^@\s]+$"))]
    pub from: String,
}

/// The shop's first administrator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct AdminSpec {
    /// The administrator's e-mail address (their sign-in name).
    #[schemars(regex(pattern = r"^[^@\s]+@[^@\s]+$"))]
    pub email: String,
}

/// Money and tax settings; amounts are integers in the currency's minor unit.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShopSettings {
    /// ISO 4217 code of the shop's currency (`EUR`).
    #[serde(default = "default_currency")]
    #[schemars(regex(pattern = r"^[A-Z]{3}$"))]
    pub currency: String,
    /// Tax rate in basis points (2000 = 20 %).
    #[serde(default)]
    #[schemars(range(min = 0, max = 10000))]
    pub tax_rate_basis_points: i32,
    /// Shipping fee per order, in minor units.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub shipping_fee: i64,
    /// Order subtotal, in minor units, from which shipping is free; never free when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub free_shipping_from: Option<i64>,
}

impl Default for ShopSettings {
    fn default() -> Self {
        ShopSettings {
            currency: default_currency(),
            tax_rate_basis_points: 0,
            shipping_fee: 0,
            free_shipping_from: None,
        }
    }
}

fn default_currency() -> String {
    "EUR".into()
}

/// Where the shop is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum StorePhase {
    /// Backing stores or the payment provider are not ready yet.
    Pending,
    /// Migration Jobs of a new version are running.
    Migrating,
    /// Components are rolling out.
    Progressing,
    /// Every component is ready.
    Ready,
    /// Something failed and needs a person.
    Degraded,
    /// `spec.suspend` is set; the operator changes nothing.
    Suspended,
}

/// Readiness of one component.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// The component.
    pub component: Component,
    /// Pods ready to serve.
    pub ready_replicas: i32,
    /// Pods wanted.
    pub desired_replicas: i32,
    /// The image the component runs.
    #[serde(default)]
    pub image: String,
}

/// What the operator last saw of the shop.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreStatus {
    /// Pending, Migrating, Progressing, Ready, Degraded or Suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<StorePhase>,
    /// Ready, Progressing, Degraded, DatabaseReady, CacheReady, MessagingReady and PaymentProviderReady.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Ready and desired replicas of each component.
    #[serde(default)]
    pub components: Vec<ComponentStatus>,
    /// The URL the gateway answers at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_url: Option<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
