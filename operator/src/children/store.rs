//! A Store's children: a ServiceDeployment per component, the managed
//! backing stores (StatefulSet, Service, NetworkPolicy each), migration
//! Jobs, the settings ConfigMap and the Secrets it generates.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::service_deployment::SERVICE_UID;
use super::{
    owner_ref, resources_json, restricted_container_context, restricted_pod_context, typed,
};
use crate::crd::common::{Component, SecretKeyRef};
use crate::crd::payment_provider::{API_KEY, WEBHOOK_SECRET};
use crate::crd::service_deployment::{EnvVar, NetworkAccess, SecretMount, ServiceDeploymentSpec};
use crate::crd::store::{ManagedSpec, Store};
use crate::crd::{PaymentProvider, ServiceDeployment};
use crate::error::{Error, Result};
use crate::labels::{self, LabelSet};

/// A backing store the operator can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    Postgres,
    Redis,
    RabbitMq,
}

impl Backing {
    pub const ALL: [Backing; 3] = [Backing::Postgres, Backing::Redis, Backing::RabbitMq];

    pub fn name(self) -> &'static str {
        match self {
            Backing::Postgres => "postgres",
            Backing::Redis => "redis",
            Backing::RabbitMq => "rabbitmq",
        }
    }

    pub fn default_image(self) -> &'static str {
        match self {
            Backing::Postgres => "postgres:17.6-alpine",
            Backing::Redis => "redis:7.4-alpine",
            Backing::RabbitMq => "rabbitmq:3.13-alpine",
        }
    }

    pub fn port(self) -> i32 {
        match self {
            Backing::Postgres => 5432,
            Backing::Redis => 6379,
            Backing::RabbitMq => 5672,
        }
    }

    fn uid(self) -> i64 {
        match self {
            Backing::Postgres => 70,
            Backing::Redis => 999,
            Backing::RabbitMq => 100,
        }
    }

    fn data_path(self) -> &'static str {
        match self {
            Backing::Postgres => "/var/lib/postgresql/data",
            Backing::Redis => "/data",
            Backing::RabbitMq => "/var/lib/rabbitmq",
        }
    }

    /// The generated Secret holding this store's credentials and URL(s).
    pub fn secret_suffix(self) -> &'static str {
        match self {
            Backing::Postgres => "database",
            Backing::Redis => "cache",
            Backing::RabbitMq => "messaging",
        }
    }

    /// The Store's spec for this backing store, when the operator runs it.
    pub fn managed(self, store: &Store) -> Option<&ManagedSpec> {
        match self {
            Backing::Postgres => store.spec.database.managed.as_ref(),
            Backing::Redis => store.spec.cache.managed.as_ref(),
            Backing::RabbitMq => store.spec.messaging.managed.as_ref(),
        }
    }
}

/// `<store>-<suffix>`.
pub fn child_name(store: &Store, suffix: &str) -> String {
    format!("{}-{suffix}", store.name_any())
}

/// The common metadata of a Store's child.
fn metadata(store: &Store, name: &str, component: &str) -> Result<Value> {
    let set = label_set(store, name, component)?;
    Ok(json!({
        "name": name,
        "namespace": namespace(store)?,
        "labels": set.labels(),
        "ownerReferences": [owner_ref(store)?],
    }))
}

pub fn label_set(store: &Store, instance: &str, component: &str) -> Result<LabelSet> {
    Ok(LabelSet {
        store: store.name_any(),
        instance: instance.to_owned(),
        component: component.to_owned(),
        version: Some(store.spec.image.tag.clone()),
        owner_uid: store
            .uid()
            .ok_or(Error::MissingField("Store", "metadata.uid"))?,
    })
}

fn namespace(store: &Store) -> Result<String> {
    store
        .namespace()
        .ok_or(Error::MissingField("Store", "metadata.namespace"))
}

// ---------------------------------------------------------------- services

/// Where a service finds a URL: a key of a Secret.
fn url_ref(secret: String, key: &str) -> SecretKeyRef {
    SecretKeyRef {
        name: secret,
        key: key.to_owned(),
        optional: false,
    }
}

fn env_from_secret(name: &str, r: SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        secret_key_ref: Some(r),
        config_map_key_ref: None,
    }
}

/// The database URL of one service.
pub fn database_url(store: &Store, component: Component) -> SecretKeyRef {
    match &store.spec.database.external {
        Some(external) => url_ref(external.secret_name.clone(), component.as_str()),
        None => url_ref(child_name(store, "database"), &format!("{component}-url")),
    }
}

fn cache_url(store: &Store) -> SecretKeyRef {
    match &store.spec.cache.external {
        Some(external) => url_ref(external.secret_name.clone(), &external.key),
        None => url_ref(child_name(store, "cache"), "url"),
    }
}

fn bus_url(store: &Store) -> SecretKeyRef {
    match &store.spec.messaging.external {
        Some(external) => url_ref(external.secret_name.clone(), &external.key),
        None => url_ref(child_name(store, "messaging"), "url"),
    }
}

/// The in-cluster base URL of a component's Service.
pub fn service_url(store: &Store, component: Component) -> String {
    format!("http://{}:8080", child_name(store, component.as_str()))
}

/// The components whose pods may call `component`.
pub fn callers(component: Component) -> NetworkAccess {
    use Component::*;
    let allow_from = match component {
        Gateway => vec![],
        // Every service fetches the JWKS.
        Identity => vec![Gateway, Catalog, Cart, Orders, Payments, Notifications],
        Catalog => vec![Gateway, Cart, Orders],
        Cart => vec![Gateway, Orders],
        Orders | Payments | Notifications => vec![Gateway],
    };
    NetworkAccess {
        public: component == Gateway,
        allow_from,
    }
}

/// Mount path of the JWT signing key in identity's pods.
pub const JWT_MOUNT: &str = "/var/run/secrets/emporium/jwt";
/// Key of the signing key in the `<store>-jwt` Secret.
pub const JWT_KEY: &str = "signing-key.pem";

/// The ServiceDeployment spec of one component, running `image`.
pub fn service_deployment_spec(
    store: &Store,
    component: Component,
    image: &str,
    provider: Option<&PaymentProvider>,
) -> ServiceDeploymentSpec {
    use Component::*;
    let settings = store
        .spec
        .components
        .get(component)
        .cloned()
        .unwrap_or_default();
    let mut env = vec![
        EnvVar::value("EMPORIUM_LISTEN", "0.0.0.0:8080"),
        EnvVar::value("EMPORIUM_LOG_FORMAT", "json"),
    ];
    if component != Identity {
        env.push(EnvVar::value(
            "EMPORIUM_JWKS_URL",
            format!("{}/.well-known/jwks.json", service_url(store, Identity)),
        ));
    }
    if component.has_database() {
        env.push(env_from_secret(
            "EMPORIUM_DATABASE_URL",
            database_url(store, component),
        ));
    }
    if component != Gateway {
        env.push(env_from_secret("EMPORIUM_BUS_URL", bus_url(store)));
    }
    // Identity's sign-in counters, the catalog's response cache, and the
    // gateway's shared rate limits and generation checks.
    if matches!(component, Identity | Catalog | Gateway) {
        env.push(env_from_secret("EMPORIUM_CACHE_URL", cache_url(store)));
    }
    let mut secret_mounts = Vec::new();
    let mut config_maps = Vec::new();
    match component {
        Gateway => {
            let upstreams: Vec<String> = Component::ALL
                .iter()
                .filter(|c| **c != Gateway)
                .map(|c| format!("{c}={}", service_url(store, *c)))
                .collect();
            env.push(EnvVar::value("EMPORIUM_UPSTREAMS", upstreams.join(",")));
        }
        Identity => {
            env.push(EnvVar::value(
                "EMPORIUM_JWT_SIGNING_KEY_FILE",
                format!("{JWT_MOUNT}/{JWT_KEY}"),
            ));
            secret_mounts.push(SecretMount {
                secret_name: child_name(store, "jwt"),
                mount_path: JWT_MOUNT.into(),
            });
            if let Some(admin) = &store.spec.admin {
                env.push(EnvVar::value("EMPORIUM_ADMIN_EMAIL", admin.email.clone()));
                env.push(EnvVar::secret(
                    "EMPORIUM_ADMIN_PASSWORD",
                    &child_name(store, "admin"),
                    "password",
                ));
            }
        }
        Cart => {
            env.push(env_from_secret("EMPORIUM_CART_STORE_URL", cache_url(store)));
            env.push(EnvVar::value(
                "EMPORIUM_CATALOG_URL",
                service_url(store, Catalog),
            ));
            config_maps.push(child_name(store, "settings"));
        }
        Orders => {
            env.push(EnvVar::value("EMPORIUM_CART_URL", service_url(store, Cart)));
            env.push(EnvVar::value(
                "EMPORIUM_CATALOG_URL",
                service_url(store, Catalog),
            ));
            config_maps.push(child_name(store, "settings"));
        }
        Payments => {
            if let Some(provider) = provider {
                let secret = &provider.spec.secret_ref.name;
                env.push(EnvVar::value(
                    "EMPORIUM_PAYMENT_PROVIDER",
                    provider.spec.type_.as_str(),
                ));
                env.push(env_from_secret(
                    "EMPORIUM_STRIPE_SECRET_KEY",
                    SecretKeyRef {
                        name: secret.clone(),
                        key: API_KEY.into(),
                        optional: true,
                    },
                ));
                env.push(env_from_secret(
                    "EMPORIUM_STRIPE_WEBHOOK_SECRET",
                    url_ref(secret.clone(), WEBHOOK_SECRET),
                ));
            }
        }
        Notifications => {
            if let Some(smtp) = &store.spec.smtp {
                env.push(env_from_secret(
                    "EMPORIUM_SMTP_URL",
                    smtp.url_secret_ref.clone(),
                ));
                env.push(EnvVar::value("EMPORIUM_MAIL_FROM", smtp.from.clone()));
            }
        }
        Catalog => {}
    }
    env.extend(
        settings
            .env
            .iter()
            .map(|e| EnvVar::value(&e.name, e.value.clone())),
    );

    let gateway = &store.spec.gateway;
    ServiceDeploymentSpec {
        component,
        image: image.to_owned(),
        image_pull_policy: store.spec.image.pull_policy,
        image_pull_secrets: store.spec.image.pull_secrets.clone(),
        args: vec![],
        replicas: settings.replicas.unwrap_or(1),
        autoscaling: settings.autoscaling.clone(),
        resources: settings.resources.clone(),
        env,
        config_maps,
        secret_mounts,
        ports: vec![],
        probes: Default::default(),
        service: if component == Gateway {
            gateway.service.clone()
        } else {
            Default::default()
        },
        ingress: if component == Gateway {
            gateway.ingress.clone()
        } else {
            None
        },
        network: callers(component),
        automount_service_account_token: false,
    }
}

/// The ServiceDeployment object of one component.
pub fn service_deployment(store: &Store, spec: ServiceDeploymentSpec) -> Result<ServiceDeployment> {
    let name = child_name(store, spec.component.as_str());
    let mut sd = ServiceDeployment::new(&name, spec);
    let component = sd.spec.component.to_string();
    sd.metadata = typed::<ObjectMeta>(metadata(store, &name, &component)?)?;
    Ok(sd)
}

/// The shop settings every interested service loads as environment.
pub fn settings_config_map(store: &Store) -> Result<ConfigMap> {
    let shop = &store.spec.shop;
    let mut data = BTreeMap::from([
        // The cart prices an empty cart in it; orders take theirs from the
        // lines.
        ("EMPORIUM_SHOP_CURRENCY".to_owned(), shop.currency.clone()),
        (
            "EMPORIUM_TAX_RATE_BP".to_owned(),
            shop.tax_rate_basis_points.to_string(),
        ),
        (
            "EMPORIUM_SHIPPING_FEE".to_owned(),
            shop.shipping_fee.to_string(),
        ),
    ]);
    if let Some(free) = shop.free_shipping_from {
        data.insert("EMPORIUM_FREE_SHIPPING_FROM".into(), free.to_string());
    }
    let name = child_name(store, "settings");
    typed(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(store, &name, "settings")?,
        "data": data,
    }))
}

// ---------------------------------------------------------------- migrations

/// A short digest of an image reference: migration Jobs are per version.
pub fn image_digest(image: &str) -> String {
    let digest = Sha256::digest(image.as_bytes());
    digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

pub fn migration_job_name(store: &Store, component: Component, image: &str) -> String {
    child_name(
        store,
        &format!("migrate-{component}-{}", image_digest(image)),
    )
}

/// The Job that runs `emporium migrate <component>` for `image`.
pub fn migration_job(store: &Store, component: Component, image: &str) -> Result<Job> {
    let name = migration_job_name(store, component, image);
    let set = label_set(store, &name, "migration")?;
    let mut pod_labels = BTreeMap::from([
        (labels::STORE.to_owned(), store.name_any()),
        (labels::TIER.to_owned(), "migration".to_owned()),
        (labels::COMPONENT.to_owned(), component.to_string()),
    ]);
    pod_labels.insert(labels::MANAGED_BY.into(), labels::MANAGER.into());
    let url = database_url(store, component);
    let mut container = json!({
        "name": "migrate",
        "image": image,
        "args": ["migrate", component.as_str()],
        "env": [{"name": "EMPORIUM_DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": url.name, "key": url.key}}}],
        "securityContext": restricted_container_context(true),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    });
    if let Some(policy) = store.spec.image.pull_policy {
        container["imagePullPolicy"] = json!(policy.as_str());
    }
    let mut metadata = metadata(store, &name, "migration")?;
    metadata["labels"] = json!(set.labels());
    typed(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": 6,
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
                    "securityContext": restricted_pod_context(SERVICE_UID),
                    "imagePullSecrets": store.spec.image.pull_secrets.iter().map(|n| json!({"name": n})).collect::<Vec<_>>(),
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }))
}

// ---------------------------------------------------------------- backing stores

/// The managed backing store's objects.
pub struct BackingChildren {
    pub stateful_set: StatefulSet,
    pub service: Service,
    pub network_policy: NetworkPolicy,
    pub config_map: Option<ConfigMap>,
}

/// Creates one database and role per service on first start.
const POSTGRES_INIT: &str = r#"#!/bin/sh
set -eu
for service in $EMPORIUM_DATABASES; do
  password_var="PASSWORD_$(echo "$service" | tr a-z A-Z)"
  password=$(printenv "$password_var")
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" <<SQL
CREATE ROLE "$service" LOGIN PASSWORD '$password';
CREATE DATABASE "$service" OWNER "$service";
SQL
done
"#;

pub fn backing(store: &Store, backing: Backing, managed: &ManagedSpec) -> Result<BackingChildren> {
    let name = child_name(store, backing.name());
    let set = label_set(store, &name, backing.name())?;
    let meta = metadata(store, &name, backing.name())?;
    let secret = child_name(store, backing.secret_suffix());
    let selector = set.selector();
    let mut pod_labels = selector.clone();
    pod_labels.insert(labels::STORE.into(), store.name_any());
    pod_labels.insert(labels::TIER.into(), "backing".into());
    let image = managed
        .image
        .clone()
        .unwrap_or_else(|| backing.default_image().to_owned());
    let port = backing.port();

    let (env, args, probe, extra_mounts, extra_volumes, config_map) = match backing {
        Backing::Postgres => {
            let databases: Vec<&str> = Component::ALL
                .iter()
                .filter(|c| c.has_database())
                .map(|c| c.as_str())
                .collect();
            let mut env = vec![
                json!({"name": "POSTGRES_USER", "value": "postgres"}),
                json!({"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "postgres-password"}}}),
                json!({"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"}),
                json!({"name": "EMPORIUM_DATABASES", "value": databases.join(" ")}),
            ];
            for database in &databases {
                env.push(json!({
                    "name": format!("PASSWORD_{}", database.to_uppercase()),
                    "valueFrom": {"secretKeyRef": {"name": secret, "key": format!("{database}-password")}},
                }));
            }
            let init_name = child_name(store, "postgres-init");
            let config_map: ConfigMap = typed(json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": metadata(store, &init_name, "postgres")?,
                "data": {"10-databases.sh": POSTGRES_INIT},
            }))?;
            (
                env,
                json!([]),
                json!({"exec": {"command": ["pg_isready", "-U", "postgres"]}}),
                vec![
                    json!({"name": "init", "mountPath": "/docker-entrypoint-initdb.d", "readOnly": true}),
                    json!({"name": "run", "mountPath": "/var/run/postgresql"}),
                ],
                vec![
                    json!({"name": "init", "configMap": {"name": init_name}}),
                    json!({"name": "run", "emptyDir": {}}),
                ],
                Some(config_map),
            )
        }
        Backing::Redis => (
            vec![
                json!({"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}}),
            ],
            json!(["--requirepass", "$(REDIS_PASSWORD)", "--appendonly", "yes"]),
            json!({"exec": {"command": ["sh", "-c", "redis-cli -a \"$REDIS_PASSWORD\" --no-auth-warning ping"]}}),
            vec![],
            vec![],
            None,
        ),
        Backing::RabbitMq => (
            vec![
                json!({"name": "RABBITMQ_DEFAULT_USER", "valueFrom": {"secretKeyRef": {"name": secret, "key": "username"}}}),
                json!({"name": "RABBITMQ_DEFAULT_PASS", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}}),
            ],
            json!([]),
            json!({"exec": {"command": ["rabbitmq-diagnostics", "-q", "ping"]}}),
            vec![],
            vec![],
            None,
        ),
    };

    let mut mounts = vec![
        json!({"name": "data", "mountPath": backing.data_path()}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ];
    mounts.extend(extra_mounts);
    let mut volumes = vec![json!({"name": "tmp", "emptyDir": {}})];
    volumes.extend(extra_volumes);
    let mut readiness = probe;
    readiness["periodSeconds"] = json!(10);
    readiness["timeoutSeconds"] = json!(5);
    readiness["failureThreshold"] = json!(3);
    let mut stateful_spec = json!({
        "serviceName": name,
        "replicas": 1,
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {"labels": pod_labels},
            "spec": {
                "automountServiceAccountToken": false,
                "securityContext": restricted_pod_context(backing.uid()),
                "containers": [{
                    "name": backing.name(),
                    "image": image,
                    "args": args,
                    "env": env,
                    "ports": [{"name": backing.name(), "containerPort": port, "protocol": "TCP"}],
                    "resources": resources_json(managed.resources.as_ref()),
                    "readinessProbe": readiness,
                    "securityContext": restricted_container_context(false),
                    "volumeMounts": mounts,
                }],
                "volumes": volumes,
            },
        },
    });
    let storage = &managed.storage;
    if storage.ephemeral {
        if let Some(volumes) = stateful_spec["template"]["spec"]["volumes"].as_array_mut() {
            volumes.push(json!({"name": "data", "emptyDir": {}}));
        }
    } else {
        let mut claim = json!({
            "metadata": {"name": "data", "labels": set.selector()},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": storage.size}},
            },
        });
        if let Some(class) = &storage.storage_class_name {
            claim["spec"]["storageClassName"] = json!(class);
        }
        stateful_spec["volumeClaimTemplates"] = json!([claim]);
    }

    let stateful_set = typed(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta,
        "spec": stateful_spec,
    }))?;
    let service = typed(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "selector": selector,
            "ports": [{"name": backing.name(), "port": port, "targetPort": port, "protocol": "TCP"}],
        },
    }))?;
    let network_policy = typed(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta,
        "spec": {
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{"podSelector": {
                    "matchLabels": {labels::STORE: store.name_any()},
                    "matchExpressions": [{"key": labels::TIER, "operator": "In", "values": ["service", "migration"]}],
                }}],
                "ports": [{"protocol": "TCP", "port": port}],
            }],
        },
    }))?;
    Ok(BackingChildren {
        stateful_set,
        service,
        network_policy,
        config_map,
    })
}

// ---------------------------------------------------------------- generated secrets

/// A Secret the operator generates once and never overwrites.
pub struct GeneratedSecret {
    pub name: String,
    pub build: fn(&Store) -> Result<BTreeMap<String, String>>,
}

/// The Secrets this Store needs generated.
pub fn generated_secrets(store: &Store) -> Vec<GeneratedSecret> {
    let mut out = vec![GeneratedSecret {
        name: child_name(store, "jwt"),
        build: jwt_secret,
    }];
    if store.spec.database.managed.is_some() {
        out.push(GeneratedSecret {
            name: child_name(store, "database"),
            build: database_secret,
        });
    }
    if store.spec.cache.managed.is_some() {
        out.push(GeneratedSecret {
            name: child_name(store, "cache"),
            build: cache_secret,
        });
    }
    if store.spec.messaging.managed.is_some() {
        out.push(GeneratedSecret {
            name: child_name(store, "messaging"),
            build: messaging_secret,
        });
    }
    if store.spec.admin.is_some() {
        out.push(GeneratedSecret {
            name: child_name(store, "admin"),
            build: |_| Ok(BTreeMap::from([("password".to_owned(), password())])),
        });
    }
    out
}

/// The Secret object for generated data.
pub fn secret(store: &Store, name: &str, data: BTreeMap<String, String>) -> Result<Secret> {
    typed(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(store, name, "secret")?,
        "type": "Opaque",
        "stringData": data,
    }))
}

/// 32 URL-safe random characters.
pub fn password() -> String {
    let bytes: [u8; 24] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn host(store: &Store, backing: Backing) -> Result<String> {
    Ok(format!(
        "{}.{}.svc",
        child_name(store, backing.name()),
        namespace(store)?
    ))
}

fn database_secret(store: &Store) -> Result<BTreeMap<String, String>> {
    let host = host(store, Backing::Postgres)?;
    let mut data = BTreeMap::from([("postgres-password".to_owned(), password())]);
    for component in Component::ALL.iter().filter(|c| c.has_database()) {
        let password = password();
        data.insert(
            format!("{component}-url"),
            format!("postgres://{component}:{password}@{host}:5432/{component}"),
        );
        data.insert(format!("{component}-password"), password);
    }
    Ok(data)
}

fn cache_secret(store: &Store) -> Result<BTreeMap<String, String>> {
    let password = password();
    Ok(BTreeMap::from([
        (
            "url".to_owned(),
            format!("redis://:{password}@{}:6379", host(store, Backing::Redis)?),
        ),
        ("password".to_owned(), password),
    ]))
}

fn messaging_secret(store: &Store) -> Result<BTreeMap<String, String>> {
    let password = password();
    Ok(BTreeMap::from([
        (
            "url".to_owned(),
            format!(
                "amqp://emporium:{password}@{}:5672/%2f",
                host(store, Backing::RabbitMq)?
            ),
        ),
        ("username".to_owned(), "emporium".to_owned()),
        ("password".to_owned(), password),
    ]))
}

fn jwt_secret(_: &Store) -> Result<BTreeMap<String, String>> {
    use ed25519_dalek::SigningKey;
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let seed: [u8; 32] = rand::random();
    let key = SigningKey::from_bytes(&seed);
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| Error::KeyGeneration(e.to_string()))?;
    let public = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| Error::KeyGeneration(e.to_string()))?;
    Ok(BTreeMap::from([
        (JWT_KEY.to_owned(), private.to_string()),
        ("public-key.pem".to_owned(), public),
    ]))
}
