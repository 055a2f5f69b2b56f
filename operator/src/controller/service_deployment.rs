//! ServiceDeployment → Deployment, Service, HPA, PDB, ServiceAccount,
//! NetworkPolicy, Ingress; status from the Deployment.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Context, NOT_READY_RECHECK, RESYNC, now};
use crate::apply::{get_cached, sync_owned};
use crate::children::service_deployment::{self as build, Children};
use crate::crd::common::{Condition, carry_transition_times, condition};
use crate::crd::{ServiceDeployment, ServiceDeploymentStatus};
use crate::error::{Error, Result};
use crate::labels::MANAGER;

pub async fn reconcile(sd: Arc<ServiceDeployment>, ctx: Arc<Context>) -> Result<Action> {
    super::measured(sd.clone(), ctx.clone(), reconcile_inner(sd, ctx)).await
}

async fn reconcile_inner(sd: Arc<ServiceDeployment>, ctx: Arc<Context>) -> Result<Action> {
    if sd.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = sd.namespace().ok_or(Error::MissingField(
        "ServiceDeployment",
        "metadata.namespace",
    ))?;
    let uid = sd
        .uid()
        .ok_or(Error::MissingField("ServiceDeployment", "metadata.uid"))?;
    let client = &ctx.client;

    let checksum = config_checksum(client, &namespace, &sd).await?;
    let Children {
        service_account,
        service,
        deployment,
        autoscaler,
        disruption_budget,
        network_policy,
        ingress,
    } = build::build(&sd, &checksum)?;

    // The kinds are independent: apply them side by side.
    let (_, _, deployments, _, _, _, _) = tokio::try_join!(
        sync_owned::<ServiceAccount>(client, &namespace, &uid, vec![service_account]),
        sync_owned::<Service>(client, &namespace, &uid, vec![service]),
        sync_owned::<Deployment>(client, &namespace, &uid, vec![deployment]),
        sync_owned::<HorizontalPodAutoscaler>(
            client,
            &namespace,
            &uid,
            autoscaler.into_iter().collect()
        ),
        sync_owned::<PodDisruptionBudget>(
            client,
            &namespace,
            &uid,
            disruption_budget.into_iter().collect()
        ),
        sync_owned::<NetworkPolicy>(client, &namespace, &uid, vec![network_policy]),
        sync_owned::<Ingress>(client, &namespace, &uid, ingress.into_iter().collect()),
    )?;

    let deployment = deployments.get(&sd.name_any());
    let status = status_of(&sd, deployment);
    let ready = condition(&status.conditions, "Ready").is_some_and(Condition::is_true);
    let before = sd.status.clone().unwrap_or_default();
    if before != status {
        let was_ready = condition(&before.conditions, "Ready").is_some_and(Condition::is_true);
        patch_status(client, &namespace, &sd, &status).await?;
        if ready && !was_ready {
            ctx.event(
                sd.as_ref(),
                EventType::Normal,
                "RolledOut",
                "Rollout",
                format!(
                    "{} of {} pods ready on {}",
                    status.ready_replicas, status.desired_replicas, sd.spec.image
                ),
            )
            .await;
        }
    }
    Ok(if ready {
        Action::requeue(RESYNC)
    } else {
        Action::requeue(NOT_READY_RECHECK)
    })
}

/// A digest of exactly the Secret and ConfigMap data the pods read: one key
/// for an env var, the whole object for a mount or `envFrom`.
pub async fn config_checksum(
    client: &kube::Client,
    namespace: &str,
    sd: &ServiceDeployment,
) -> Result<String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut hasher = Sha256::new();
    for (name, key) in build::secrets_used(sd) {
        let data: BTreeMap<String, Vec<u8>> = get_cached(&secrets, &name)
            .await?
            .and_then(|s| s.data)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        digest_into(&mut hasher, "secret", &name, key.as_deref(), &data);
    }
    for (name, key) in build::config_maps_used(sd) {
        let data: BTreeMap<String, Vec<u8>> = get_cached(&config_maps, &name)
            .await?
            .and_then(|c| c.data)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        digest_into(&mut hasher, "configmap", &name, key.as_deref(), &data);
    }
    Ok(hasher
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn digest_into(
    hasher: &mut Sha256,
    kind: &str,
    name: &str,
    key: Option<&str>,
    data: &BTreeMap<String, Vec<u8>>,
) {
    hasher.update(format!("{kind}/{name}\0").as_bytes());
    let mut entry = |k: &str, v: Option<&Vec<u8>>| {
        hasher.update(k.as_bytes());
        hasher.update([0]);
        match v {
            Some(v) => {
                hasher.update((v.len() as u64).to_be_bytes());
                hasher.update(v);
            }
            None => hasher.update(b"<absent>"),
        }
    };
    match key {
        Some(key) => entry(key, data.get(key)),
        None => {
            for (k, v) in data {
                entry(k, Some(v));
            }
        }
    }
}

/// The status a Deployment's state gives.
pub fn status_of(
    sd: &ServiceDeployment,
    deployment: Option<&Deployment>,
) -> ServiceDeploymentStatus {
    let generation = sd.metadata.generation;
    let old = sd.status.clone().unwrap_or_default();
    let desired = deployment
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.replicas)
        .unwrap_or(sd.spec.replicas);
    let dstatus = deployment
        .and_then(|d| d.status.clone())
        .unwrap_or_default();
    let observed = deployment
        .and_then(|d| d.metadata.generation)
        .is_some_and(|g| dstatus.observed_generation.is_some_and(|o| o >= g));
    let ready_replicas = dstatus.ready_replicas.unwrap_or(0);
    let updated_replicas = dstatus.updated_replicas.unwrap_or(0);
    let total = dstatus.replicas.unwrap_or(0);
    let rolled_out = observed && updated_replicas >= desired && total == updated_replicas;
    let ready = rolled_out && ready_replicas >= desired;
    let stalled = dstatus
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Progressing" && c.status == "False");

    let mut conditions = vec![
        if ready {
            Condition::new(
                "Ready",
                true,
                "PodsReady",
                format!("{ready_replicas}/{desired} pods ready"),
            )
        } else if !rolled_out {
            Condition::new(
                "Ready",
                false,
                "RollingOut",
                format!("{updated_replicas}/{desired} pods updated"),
            )
        } else {
            Condition::new(
                "Ready",
                false,
                "PodsNotReady",
                format!("{ready_replicas}/{desired} pods ready"),
            )
        },
        Condition::new(
            "Progressing",
            !ready && stalled.is_none(),
            if ready { "RolledOut" } else { "RollingOut" },
            if ready {
                "the current pod template is rolled out"
            } else {
                "pods are being updated or started"
            },
        ),
        match &stalled {
            Some(c) => Condition::new(
                "Degraded",
                true,
                c.reason.as_deref().unwrap_or("ProgressDeadlineExceeded"),
                c.message.clone().unwrap_or_default(),
            ),
            None => Condition::new("Degraded", false, "AsExpected", "the rollout is not stuck"),
        },
    ];
    carry_transition_times(&mut conditions, &old.conditions, generation, &now());
    ServiceDeploymentStatus {
        ready_replicas,
        desired_replicas: desired,
        updated_replicas,
        conditions,
        observed_generation: generation,
    }
}

async fn patch_status(
    client: &kube::Client,
    namespace: &str,
    sd: &ServiceDeployment,
    status: &ServiceDeploymentStatus,
) -> Result<()> {
    let api: Api<ServiceDeployment> = Api::namespaced(client.clone(), namespace);
    let patch = json!({
        "apiVersion": "emporium.dev/v1alpha1",
        "kind": "ServiceDeployment",
        "status": status,
    });
    api.patch_status(
        &sd.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}
