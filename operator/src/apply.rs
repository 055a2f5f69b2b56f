//! Children, applied the way every reconciler here applies them: list what
//! the owner already has (by the owner-uid label), server-side apply each
//! desired child whose live copy differs, delete the children the owner no
//! longer wants. A reconcile with nothing to change only reads.

use std::collections::BTreeMap;
use std::fmt::Debug;

use kube::api::{Api, DeleteParams, GetParams, ListParams, Patch, PatchParams};
use kube::core::NamespaceResourceScope;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::labels::{self, MANAGER};

/// A kind of child: namespaced, with a static type.
pub trait Child:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<K> Child for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// The children of one owner, by name.
pub async fn list_owned<K: Child>(api: &Api<K>, owner_uid: &str) -> Result<BTreeMap<String, K>> {
    // Served from the API server's watch cache: a reconcile is triggered by
    // that cache's own watch events, so it is never older than what
    // triggered us, and it spares etcd a quorum read per kind per reconcile.
    let list = api
        .list(
            &ListParams::default()
                .labels(&labels::owned_by(owner_uid))
                .match_any(),
        )
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|child| {
            child
                .owner_references()
                .iter()
                .any(|owner| owner.uid == owner_uid)
        })
        .map(|child| (child.name_any(), child))
        .collect())
}

/// One object from the API server's watch cache; `None` when absent.
pub async fn get_cached<K: Child>(api: &Api<K>, name: &str) -> Result<Option<K>> {
    match api.get_with(name, &GetParams::any()).await {
        Ok(object) => Ok(Some(object)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Lists the owner's children of one kind, then [`sync`]s them.
pub async fn sync_owned<K: Child>(
    client: &kube::Client,
    namespace: &str,
    owner_uid: &str,
    desired: Vec<K>,
) -> Result<BTreeMap<String, K>> {
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let live = list_owned(&api, owner_uid).await?;
    sync(&api, live, desired).await
}

/// Applies `desired` over `live` (from [`list_owned`]) and deletes the live
/// children not desired. Returns the children as they are afterwards.
pub async fn sync<K: Child>(
    api: &Api<K>,
    mut live: BTreeMap<String, K>,
    desired: Vec<K>,
) -> Result<BTreeMap<String, K>> {
    let mut now = BTreeMap::new();
    for child in desired {
        let name = child.name_any();
        let current = live.remove(&name);
        let child = match current {
            Some(current) if up_to_date(&child, &current)? => current,
            _ => apply(api, &child).await?,
        };
        now.insert(name, child);
    }
    for (name, orphan) in live {
        if orphan.meta().deletion_timestamp.is_none() {
            tracing::info!(kind = K::kind(&()).as_ref(), %name, "deleting a child no longer wanted");
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
    Ok(now)
}

/// Server-side applies one object with the operator's field manager.
pub async fn apply<K: Child>(api: &Api<K>, child: &K) -> Result<K> {
    let name = child.name_any();
    tracing::debug!(kind = K::kind(&()).as_ref(), %name, "applying");
    Ok(api
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(child),
        )
        .await?)
}

/// Whether the live object already holds every field the desired one sets.
pub fn up_to_date<K: Serialize>(desired: &K, live: &K) -> Result<bool> {
    let desired = serde_json::to_value(desired).map_err(Error::Serialize)?;
    let live = serde_json::to_value(live).map_err(Error::Serialize)?;
    Ok(is_subset(&desired, &live))
}

/// `desired` ⊆ `live`: every field set in `desired` has the same value in
/// `live`; lists must match element by element. Empty, false and zero
/// values match an absent field (the API server omits them).
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(want), Value::Object(have)) => {
            want.iter().all(|(key, value)| match have.get(key) {
                Some(found) => is_subset(value, found),
                None => is_empty(value),
            })
        }
        (Value::Array(want), Value::Array(have)) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| is_subset(w, h))
        }
        (Value::Number(want), Value::Number(have)) => want.as_f64() == have.as_f64(),
        (want, Value::Null) => is_empty(want),
        (want, have) => want == have,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_defaults_do_not_count_as_drift() {
        let desired = json!({"spec": {"replicas": 2, "template": {"args": [], "x": false}}});
        let live = json!({"spec": {"replicas": 2, "revisionHistoryLimit": 10, "template": {}}, "status": {}});
        assert!(is_subset(&desired, &live));
    }

    #[test]
    fn a_changed_field_is_drift() {
        let desired = json!({"spec": {"replicas": 2}});
        assert!(!is_subset(&desired, &json!({"spec": {"replicas": 3}})));
        assert!(!is_subset(&desired, &json!({"spec": {}})));
        let list = json!({"env": [{"name": "A", "value": "1"}]});
        assert!(!is_subset(
            &list,
            &json!({"env": [{"name": "A", "value": "1"}, {"name": "B"}]})
        ));
    }
}
