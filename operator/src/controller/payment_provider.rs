//! PaymentProvider: checks that its Secret holds the keys the provider needs.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;

use super::{Context, RESYNC, now};
use crate::crd::common::{Condition, carry_transition_times, condition};
use crate::crd::{PaymentProvider, PaymentProviderStatus};
use crate::error::{Error, Result};
use crate::labels::MANAGER;

pub async fn reconcile(provider: Arc<PaymentProvider>, ctx: Arc<Context>) -> Result<Action> {
    super::measured(
        provider.clone(),
        ctx.clone(),
        reconcile_inner(provider, ctx),
    )
    .await
}

async fn reconcile_inner(provider: Arc<PaymentProvider>, ctx: Arc<Context>) -> Result<Action> {
    if provider.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = provider
        .namespace()
        .ok_or(Error::MissingField("PaymentProvider", "metadata.namespace"))?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let secret = secrets.get_opt(&provider.spec.secret_ref.name).await?;
    let status = status_of(&provider, secret.as_ref());
    let before = provider.status.clone().unwrap_or_default();
    if status != before {
        let api: Api<PaymentProvider> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = json!({
            "apiVersion": "emporium.dev/v1alpha1",
            "kind": "PaymentProvider",
            "status": status,
        });
        api.patch_status(
            &provider.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        let ready = condition(&status.conditions, "Ready");
        let was_ready = condition(&before.conditions, "Ready").map(Condition::is_true);
        match ready {
            Some(c) if !c.is_true() && was_ready != Some(false) => {
                ctx.event(
                    provider.as_ref(),
                    EventType::Warning,
                    &c.reason,
                    "CheckSecret",
                    c.message.clone(),
                )
                .await;
            }
            Some(c) if c.is_true() && was_ready != Some(true) => {
                ctx.event(
                    provider.as_ref(),
                    EventType::Normal,
                    "CredentialsComplete",
                    "CheckSecret",
                    c.message.clone(),
                )
                .await;
            }
            _ => {}
        }
    }
    Ok(Action::requeue(RESYNC))
}

/// Ready when the Secret exists and holds every key the provider type needs.
pub fn status_of(provider: &PaymentProvider, secret: Option<&Secret>) -> PaymentProviderStatus {
    let name = &provider.spec.secret_ref.name;
    let kind = provider.spec.type_.as_str();
    let ready = match secret {
        None => Condition::new(
            "Ready",
            false,
            "SecretNotFound",
            format!("Secret {name} does not exist"),
        ),
        Some(secret) => {
            let data = secret.data.clone().unwrap_or_default();
            let missing: Vec<&str> = provider
                .spec
                .type_
                .required_keys()
                .iter()
                .copied()
                .filter(|key| data.get(*key).is_none_or(|v| v.0.is_empty()))
                .collect();
            if missing.is_empty() {
                Condition::new(
                    "Ready",
                    true,
                    "SecretComplete",
                    format!("Secret {name} has every key {kind} needs"),
                )
            } else {
                Condition::new(
                    "Ready",
                    false,
                    "SecretKeyMissing",
                    format!(
                        "Secret {name} lacks the key(s) {} that {kind} needs",
                        missing.join(", ")
                    ),
                )
            }
        }
    };
    let old = provider.status.clone().unwrap_or_default();
    let mut conditions = vec![ready];
    carry_transition_times(
        &mut conditions,
        &old.conditions,
        provider.metadata.generation,
        &now(),
    );
    PaymentProviderStatus {
        conditions,
        observed_generation: provider.metadata.generation,
    }
}
