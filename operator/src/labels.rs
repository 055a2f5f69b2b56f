//! The labels and annotations every child carries.

use std::collections::BTreeMap;

/// The single field manager of every server-side apply.
pub const MANAGER: &str = "emporium-operator";

pub const NAME: &str = "app.kubernetes.io/name";
pub const INSTANCE: &str = "app.kubernetes.io/instance";
pub const COMPONENT: &str = "app.kubernetes.io/component";
pub const PART_OF: &str = "app.kubernetes.io/part-of";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const VERSION: &str = "app.kubernetes.io/version";
/// The Store a child belongs to (empty for a ServiceDeployment made by hand).
pub const STORE: &str = "emporium.dev/store";
/// The uid of the object whose reconciler applied the child: how the
/// reconciler finds its children again, and its orphans.
pub const OWNER_UID: &str = "emporium.dev/owner-uid";
/// `service`, `backing` or `migration`: what NetworkPolicies select on.
pub const TIER: &str = "emporium.dev/tier";

/// Pod-template annotation: a digest of every Secret and ConfigMap the pod
/// reads, so that changing one rolls exactly the pods that use it.
pub const CONFIG_CHECKSUM: &str = "emporium.dev/config-checksum";

/// Selector of everything this operator manages.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY}={MANAGER}")
}

/// Selector of the children of one owner.
pub fn owned_by(uid: &str) -> String {
    format!("{MANAGED_BY}={MANAGER},{OWNER_UID}={uid}")
}

/// The common label set of a child.
#[derive(Clone, Debug)]
pub struct LabelSet {
    pub store: String,
    pub instance: String,
    pub component: String,
    pub version: Option<String>,
    pub owner_uid: String,
}

impl LabelSet {
    /// The labels of the child object.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector();
        labels.insert(PART_OF.into(), "emporium".into());
        labels.insert(MANAGED_BY.into(), MANAGER.into());
        labels.insert(STORE.into(), self.store.clone());
        labels.insert(OWNER_UID.into(), self.owner_uid.clone());
        if let Some(version) = &self.version {
            labels.insert(VERSION.into(), label_value(version));
        }
        labels
    }

    /// The stable subset that selects pods (never changes for a child).
    pub fn selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (NAME.into(), format!("emporium-{}", self.component)),
            (INSTANCE.into(), self.instance.clone()),
            (COMPONENT.into(), self.component.clone()),
        ])
    }
}

/// A string made fit for a label value (63 characters, alphanumerics at the ends).
pub fn label_value(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_trimmed_and_cleaned() {
        assert_eq!(label_value("1.2.0"), "1.2.0");
        assert_eq!(label_value("-sha256:abc-"), "sha256-abc");
        assert_eq!(label_value(&"a".repeat(80)).len(), 63);
    }
}
