//! Builders: pure functions from a custom resource to the objects it wants.
//! They take no client, so unit tests check them directly.

pub mod service_deployment;
pub mod store;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::crd::common::Resources;
use crate::error::{Error, Result};

/// The controller owner reference to `owner`.
pub fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> Result<OwnerReference> {
    owner.controller_owner_ref(&()).ok_or(Error::MissingField(
        "owner",
        "metadata.name or metadata.uid",
    ))
}

/// Turns a JSON manifest into its typed object.
pub fn typed<K: DeserializeOwned>(manifest: Value) -> Result<K> {
    serde_json::from_value(manifest).map_err(Error::Serialize)
}

/// A container's `resources`.
pub fn resources_json(resources: Option<&Resources>) -> Value {
    let Some(resources) = resources else {
        return json!({});
    };
    let amounts = |amounts: &Option<crate::crd::common::ResourceAmounts>| {
        let mut out = serde_json::Map::new();
        if let Some(amounts) = amounts {
            if let Some(cpu) = &amounts.cpu {
                out.insert("cpu".into(), json!(cpu));
            }
            if let Some(memory) = &amounts.memory {
                out.insert("memory".into(), json!(memory));
            }
        }
        Value::Object(out)
    };
    json!({"requests": amounts(&resources.requests), "limits": amounts(&resources.limits)})
}

/// The restricted Pod Security container context.
pub fn restricted_container_context(read_only_root: bool) -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": read_only_root,
        "runAsNonRoot": true,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// The restricted Pod Security pod context for a user id.
pub fn restricted_pod_context(uid: i64) -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// The tag (or digest) part of an image reference, for the version label.
pub fn image_version(image: &str) -> Option<String> {
    let last = image.rsplit('/').next().unwrap_or(image);
    if let Some((_, digest)) = image.split_once('@') {
        return Some(digest.chars().take(20).collect());
    }
    last.split_once(':').map(|(_, tag)| tag.to_owned())
}
