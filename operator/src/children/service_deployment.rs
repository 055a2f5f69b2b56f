//! A ServiceDeployment's children: ServiceAccount, Service, Deployment,
//! HorizontalPodAutoscaler, PodDisruptionBudget, NetworkPolicy, Ingress.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use serde_json::{Value, json};

use super::{
    image_version, owner_ref, resources_json, restricted_container_context, restricted_pod_context,
    typed,
};
use crate::crd::ServiceDeployment;
use crate::crd::service_deployment::{EnvVar, PortSpec};
use crate::error::{Error, Result};
use crate::labels::{self, LabelSet};

/// The uid services run as.
pub const SERVICE_UID: i64 = 65532;

/// Everything one ServiceDeployment wants.
#[derive(Clone, Debug)]
pub struct Children {
    pub service_account: ServiceAccount,
    pub service: Service,
    pub deployment: Deployment,
    pub autoscaler: Option<HorizontalPodAutoscaler>,
    pub disruption_budget: Option<PodDisruptionBudget>,
    pub network_policy: NetworkPolicy,
    pub ingress: Option<Ingress>,
}

/// The label set of a ServiceDeployment's children.
pub fn label_set(sd: &ServiceDeployment) -> Result<LabelSet> {
    Ok(LabelSet {
        store: sd.labels().get(labels::STORE).cloned().unwrap_or_default(),
        instance: sd.name_any(),
        component: sd.spec.component.to_string(),
        version: image_version(&sd.spec.image),
        owner_uid: sd
            .uid()
            .ok_or(Error::MissingField("ServiceDeployment", "metadata.uid"))?,
    })
}

/// The container ports: `http` on 8080 unless the spec lists its own.
pub fn ports(sd: &ServiceDeployment) -> Vec<PortSpec> {
    if sd.spec.ports.is_empty() {
        vec![PortSpec {
            name: "http".into(),
            container_port: 8080,
        }]
    } else {
        sd.spec.ports.clone()
    }
}

/// The Secrets whose content the pods read: (secret, Some(key)) for one key
/// of an env var, (secret, None) for a whole mounted Secret.
pub fn secrets_used(sd: &ServiceDeployment) -> Vec<(String, Option<String>)> {
    let mut used: Vec<(String, Option<String>)> = sd
        .spec
        .env
        .iter()
        .filter_map(|env| env.secret_key_ref.as_ref())
        .map(|r| (r.name.clone(), Some(r.key.clone())))
        .chain(
            sd.spec
                .secret_mounts
                .iter()
                .map(|m| (m.secret_name.clone(), None)),
        )
        .collect();
    used.sort();
    used.dedup();
    used
}

/// The ConfigMaps whose content the pods read, like [`secrets_used`].
pub fn config_maps_used(sd: &ServiceDeployment) -> Vec<(String, Option<String>)> {
    let mut used: Vec<(String, Option<String>)> = sd
        .spec
        .env
        .iter()
        .filter_map(|env| env.config_map_key_ref.as_ref())
        .map(|r| (r.name.clone(), Some(r.key.clone())))
        .chain(sd.spec.config_maps.iter().map(|name| (name.clone(), None)))
        .collect();
    used.sort();
    used.dedup();
    used
}

/// Builds every child; `checksum` digests the Secrets and ConfigMaps used.
pub fn build(sd: &ServiceDeployment, checksum: &str) -> Result<Children> {
    let set = label_set(sd)?;
    let name = sd.name_any();
    let namespace = sd.namespace().ok_or(Error::MissingField(
        "ServiceDeployment",
        "metadata.namespace",
    ))?;
    let owner = owner_ref(sd)?;
    let metadata = json!({
        "name": name,
        "namespace": namespace,
        "labels": set.labels(),
        "ownerReferences": [owner],
    });
    let selector = set.selector();
    let ports = ports(sd);
    let spec = &sd.spec;

    let service_account = typed(json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata,
        "automountServiceAccountToken": spec.automount_service_account_token,
    }))?;

    let service_ports: Vec<Value> = ports
        .iter()
        .map(|port| {
            let mut service_port = json!({
                "name": port.name,
                "port": port.container_port,
                "targetPort": port.name,
                "protocol": "TCP",
            });
            if let Some(node_port) = spec.service.node_port {
                service_port["nodePort"] = json!(node_port);
            }
            service_port
        })
        .collect();
    let service = typed(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": spec.service.type_.as_str(),
            "selector": selector,
            "ports": service_ports,
        },
    }))?;

    let deployment = typed(deployment_json(sd, &set, &metadata, &ports, checksum))?;

    let autoscaler = match &spec.autoscaling {
        Some(autoscaling) => Some(typed(json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": metadata,
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": autoscaling.min_replicas,
                "maxReplicas": autoscaling.max_replicas,
                "metrics": [{
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {
                        "type": "Utilization",
                        "averageUtilization": autoscaling.target_cpu_utilization_percentage,
                    }},
                }],
            },
        }))?),
        None => None,
    };

    let fewest = spec
        .autoscaling
        .as_ref()
        .map_or(spec.replicas, |a| a.min_replicas);
    let disruption_budget = if fewest >= 2 {
        Some(typed(json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": metadata,
            "spec": {"minAvailable": 1, "selector": {"matchLabels": selector}},
        }))?)
    } else {
        None
    };

    let policy_ports: Vec<Value> = ports
        .iter()
        .map(|port| json!({"protocol": "TCP", "port": port.container_port}))
        .collect();
    let ingress_rules = if spec.network.public {
        json!([{"ports": policy_ports}])
    } else if spec.network.allow_from.is_empty() {
        json!([])
    } else {
        let callers: Vec<&str> = spec.network.allow_from.iter().map(|c| c.as_str()).collect();
        json!([{
            "from": [{"podSelector": {
                "matchLabels": {labels::STORE: set.store, labels::TIER: "service"},
                "matchExpressions": [{"key": labels::COMPONENT, "operator": "In", "values": callers}],
            }}],
            "ports": policy_ports,
        }])
    };
    let network_policy = typed(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata,
        "spec": {
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress"],
            "ingress": ingress_rules,
        },
    }))?;

    let ingress = match &spec.ingress {
        Some(ingress) => {
            let mut manifest = json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": metadata,
                "spec": {"rules": [{
                    "host": ingress.host,
                    "http": {"paths": [{
                        "path": "/",
                        "pathType": "Prefix",
                        "backend": {"service": {"name": name, "port": {"name": ports[0].name}}},
                    }]},
                }]},
            });
            if let Some(class) = &ingress.class_name {
                manifest["spec"]["ingressClassName"] = json!(class);
            }
            Some(typed(manifest)?)
        }
        None => None,
    };

    Ok(Children {
        service_account,
        service,
        deployment,
        autoscaler,
        disruption_budget,
        network_policy,
        ingress,
    })
}

fn env_json(env: &EnvVar) -> Value {
    let mut out = json!({"name": env.name});
    if let Some(value) = &env.value {
        out["value"] = json!(value);
    }
    if let Some(r) = &env.secret_key_ref {
        out["valueFrom"] =
            json!({"secretKeyRef": {"name": r.name, "key": r.key, "optional": r.optional}});
    }
    if let Some(r) = &env.config_map_key_ref {
        out["valueFrom"] =
            json!({"configMapKeyRef": {"name": r.name, "key": r.key, "optional": r.optional}});
    }
    out
}

fn deployment_json(
    sd: &ServiceDeployment,
    set: &LabelSet,
    metadata: &Value,
    ports: &[PortSpec],
    checksum: &str,
) -> Value {
    let spec = &sd.spec;
    let component = spec.component.as_str();
    let args: Vec<String> = if spec.args.is_empty() {
        vec!["serve".into(), component.into()]
    } else {
        spec.args.clone()
    };
    let probe_port = ports[0].name.clone();
    let probe = |path: &str, failures: i32| {
        json!({
            "httpGet": {"path": path, "port": probe_port, "scheme": "HTTP"},
            "periodSeconds": spec.probes.period_seconds,
            "failureThreshold": failures,
            "timeoutSeconds": 2,
        })
    };
    let mut volumes = vec![json!({"name": "tmp", "emptyDir": {}})];
    let mut mounts = vec![json!({"name": "tmp", "mountPath": "/tmp"})];
    for (index, mount) in spec.secret_mounts.iter().enumerate() {
        let volume = format!("secret-{index}");
        volumes.push(json!({"name": volume, "secret": {"secretName": mount.secret_name, "defaultMode": 0o440}}));
        mounts.push(json!({"name": volume, "mountPath": mount.mount_path, "readOnly": true}));
    }
    let mut container = json!({
        "name": component,
        "image": spec.image,
        "args": args,
        "ports": ports.iter().map(|p| json!({"name": p.name, "containerPort": p.container_port, "protocol": "TCP"})).collect::<Vec<_>>(),
        "env": spec.env.iter().map(env_json).collect::<Vec<_>>(),
        "envFrom": spec.config_maps.iter().map(|name| json!({"configMapRef": {"name": name}})).collect::<Vec<_>>(),
        "resources": resources_json(spec.resources.as_ref()),
        "startupProbe": probe(&spec.probes.liveness_path, spec.probes.startup_failure_threshold),
        "livenessProbe": probe(&spec.probes.liveness_path, 3),
        "readinessProbe": probe(&spec.probes.readiness_path, 3),
        "securityContext": restricted_container_context(true),
        "volumeMounts": mounts,
    });
    if let Some(policy) = spec.image_pull_policy {
        container["imagePullPolicy"] = json!(policy.as_str());
    }
    let mut pod_labels = set.selector();
    pod_labels.insert(labels::STORE.into(), set.store.clone());
    pod_labels.insert(labels::TIER.into(), "service".into());
    let mut deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": set.selector()},
            "revisionHistoryLimit": 3,
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {labels::CONFIG_CHECKSUM: checksum},
                },
                "spec": {
                    "serviceAccountName": sd.name_any(),
                    "automountServiceAccountToken": spec.automount_service_account_token,
                    "securityContext": restricted_pod_context(SERVICE_UID),
                    "imagePullSecrets": spec.image_pull_secrets.iter().map(|name| json!({"name": name})).collect::<Vec<_>>(),
                    "topologySpreadConstraints": [{
                        "maxSkew": 1,
                        "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": set.selector()},
                    }],
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    });
    // With an autoscaler the HPA owns the replica count.
    if spec.autoscaling.is_none() {
        deployment["spec"]["replicas"] = json!(spec.replicas);
    }
    deployment
}
