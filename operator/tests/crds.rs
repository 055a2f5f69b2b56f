//! The committed CRDs are exactly what the types generate: change a type,
//! then run `cargo xtask crds` (or `cargo run -p operator -- crd > crds/emporium.dev.yaml`).

use std::path::Path;

#[test]
fn committed_crds_match_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/emporium.dev.yaml");
    let committed = std::fs::read_to_string(&path).expect("crds/emporium.dev.yaml");
    let generated = operator::crd::definitions_yaml().unwrap();
    assert!(
        committed == generated,
        "crds/emporium.dev.yaml has drifted from operator/src/crd: run `cargo xtask crds` and commit the result"
    );
}

#[test]
fn every_schema_field_has_a_description() {
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, property) in properties {
                let here = format!("{path}.{name}");
                let top_level =
                    path.is_empty() && matches!(name.as_str(), "apiVersion" | "kind" | "metadata");
                if property.get("description").is_none() && !top_level {
                    missing.push(here.clone());
                }
                walk(&here, property, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    for crd in operator::crd::definitions() {
        let schema = serde_json::to_value(
            &crd.spec.versions[0]
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema,
        )
        .unwrap();
        let mut missing = Vec::new();
        walk("", &schema, &mut missing);
        assert!(
            missing.is_empty(),
            "{}: fields without a description: {missing:?}",
            crd.spec.names.kind
        );
        let names = &crd.spec.names;
        assert_eq!(
            names.categories.as_deref(),
            Some(&["emporium".to_owned()][..])
        );
        assert_eq!(names.short_names.as_ref().map(Vec::len), Some(1));
    }
}

#[test]
fn the_schema_carries_the_cel_rules() {
    let yaml = operator::crd::definitions_yaml().unwrap();
    for rule in [
        "has(self.managed) != has(self.external)",
        "self.minReplicas <= self.maxReplicas",
        "self.type == 'NodePort' || !has(self.nodePort)",
    ] {
        assert!(yaml.contains(rule), "missing CEL rule {rule}");
    }
}
