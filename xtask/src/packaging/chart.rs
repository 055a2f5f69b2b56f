//! The chart on its own: CRDs in sync with `crds/`, `helm lint --strict`
//! and `helm template` with the default and the full values (what each
//! renders is kept for the cluster checks), and the Dockerfile's agreement
//! with the workspace (it cannot be built here: no Docker engine).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::CHART;
use crate::cmd::{self, step};

/// The release name and namespace the chart is rendered and installed
/// with: its own, so that neither collides with an operator installed on
/// the same control plane otherwise (the e2e suite applies
/// manifests/examples/operator.yaml as `emporium-operator` in
/// `emporium-system`).
pub const RELEASE: &str = "packaging-check";
pub const NAMESPACE: &str = "emporium-packaging";
/// The namespaces ci/full-values.yaml has the operator watch (the cluster
/// checks create them: RoleBindings go into them).
pub const FULL_VALUES_WATCHED: [&str; 2] = ["emporium-shop-eu", "emporium-shop-us"];

/// The chart rendered with each set of values.
pub struct Rendered {
    pub default: PathBuf,
    pub full: PathBuf,
}

pub fn check(root: &Path, helm: &Path) -> Result<Rendered> {
    crds_in_sync(root)?;
    app_version_matches(root)?;
    dockerfile_matches(root)?;

    let chart = root.join(CHART);
    let full_values = chart.join("ci/full-values.yaml");
    let kube_version = crate::cluster::build::KUBERNETES;
    let dir = super::work_dir()?;
    let mut rendered = Vec::new();
    for (name, values) in [("default", None), ("full", Some(&full_values))] {
        let with_values = |command: &mut Command| {
            if let Some(values) = values {
                command.arg("--values").arg(values);
            }
        };
        let mut lint = Command::new(helm);
        lint.args(["lint", "--strict", "--kube-version", kube_version])
            .arg(&chart);
        with_values(&mut lint);
        cmd::run(&mut lint).with_context(|| format!("helm lint with the {name} values"))?;

        let mut template = Command::new(helm);
        template.args(["template", RELEASE]).arg(&chart).args([
            "--namespace",
            NAMESPACE,
            "--kube-version",
            kube_version,
        ]);
        with_values(&mut template);
        let yaml = cmd::capture(&mut template)
            .with_context(|| format!("helm template with the {name} values"))?;
        let path = dir.join(format!("chart-{name}.yaml"));
        fs::write(&path, &yaml)?;
        step(
            "chart",
            format!(
                "{name} values render {} objects: {}",
                kinds(&yaml).len(),
                kinds(&yaml).join(", ")
            ),
        );
        rendered.push((name, yaml, path));
    }

    // The optional objects appear exactly when their values ask for them.
    let has = |yaml: &str, kind: &str| kinds(yaml).iter().any(|k| k == kind);
    let (default, full) = (&rendered[0].1, &rendered[1].1);
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    ] {
        if !has(default, kind) {
            bail!("the chart with default values renders no {kind}");
        }
    }
    for kind in ["PodDisruptionBudget", "ServiceMonitor"] {
        if has(default, kind) {
            bail!(
                "the chart with default values renders a {kind} (one replica, no Prometheus Operator assumed)"
            );
        }
        if !has(full, kind) {
            bail!("the chart with ci/full-values.yaml renders no {kind}");
        }
    }
    // Cluster-wide by default; with watchNamespaces, a RoleBinding in each
    // of them (beside the leader election's) instead of the ClusterRoleBinding.
    let count = |yaml: &str, kind: &str| kinds(yaml).iter().filter(|k| *k == kind).count();
    if default.contains("EMPORIUM_WATCH_NAMESPACES") {
        bail!("the chart with default values limits the operator to some namespaces");
    }
    let watched = FULL_VALUES_WATCHED.join(",");
    if has(full, "ClusterRoleBinding")
        || count(full, "RoleBinding") != 1 + FULL_VALUES_WATCHED.len()
        || !full.contains(&format!("value: \"{watched}\""))
        || FULL_VALUES_WATCHED
            .iter()
            .any(|ns| !full.contains(&format!("namespace: {ns}\n")))
    {
        bail!(
            "with ci/full-values.yaml the chart should bind the operator's ClusterRole in {watched} \
             only (a RoleBinding each, no ClusterRoleBinding) and pass EMPORIUM_WATCH_NAMESPACES={watched}"
        );
    }
    if !default.contains("- --log-json") {
        bail!("the default values should log JSON (`--log-json`)");
    }
    Ok(Rendered {
        default: rendered[0].2.clone(),
        full: rendered[1].2.clone(),
    })
}

/// The `kind:` of every top-level object in a multi-document YAML stream.
pub fn kinds(yaml: &str) -> Vec<String> {
    yaml.lines()
        .filter_map(|line| line.strip_prefix("kind: "))
        .map(|kind| kind.trim().to_owned())
        .collect()
}

/// The chart ships the CRDs Helm installs; they are the generated ones.
fn crds_in_sync(root: &Path) -> Result<()> {
    let generated = root.join(crate::cluster::crds::FILE);
    let shipped = root.join(CHART).join("crds/emporium.dev.yaml");
    let a = fs::read(&generated).with_context(|| format!("cannot read {}", generated.display()))?;
    let b = fs::read(&shipped).with_context(|| format!("cannot read {}", shipped.display()))?;
    if a != b {
        bail!(
            "{CHART}/crds/emporium.dev.yaml differs from {}: copy it over \
             (`cp {} {CHART}/crds/`)",
            crate::cluster::crds::FILE,
            crate::cluster::crds::FILE
        );
    }
    step(
        "chart",
        format!("{CHART}/crds/ equals {}", crate::cluster::crds::FILE),
    );
    Ok(())
}

/// The chart's appVersion (its default image tag) is the workspace's version.
fn app_version_matches(root: &Path) -> Result<()> {
    let cargo = fs::read_to_string(root.join("Cargo.toml"))?;
    let workspace = value_after(&cargo, "[workspace.package]", "version = ")
        .context("Cargo.toml has no [workspace.package] version")?;
    let chart = fs::read_to_string(root.join(CHART).join("Chart.yaml"))?;
    let app_version = chart
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .context("Chart.yaml has no appVersion")?;
    if workspace != app_version {
        bail!("Chart.yaml's appVersion {app_version} is not the workspace's version {workspace}");
    }
    Ok(())
}

/// The first `key` line after `section`, unquoted.
fn value_after(text: &str, section: &str, key: &str) -> Option<String> {
    let after = &text[text.find(section)? + section.len()..];
    after
        .lines()
        .take_while(|l| !l.starts_with('[') || l.is_empty())
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().trim_matches('"').to_owned())
}

/// No Docker engine runs here, so the image is not built; what can be
/// checked is that the Dockerfile builds what the workspace has, with a
/// toolchain at least as new as the workspace asks, into the two final
/// stages kind-up and the chart use.
fn dockerfile_matches(root: &Path) -> Result<()> {
    let dockerfile =
        fs::read_to_string(root.join("Dockerfile")).context("cannot read Dockerfile")?;
    for needle in [
        "cargo build --release --locked",
        "--bin emporium ",
        "--bin emporium-operator",
        " AS emporium\n",
        " AS operator\n",
        "USER 65532:65532",
    ] {
        if !dockerfile.contains(needle) {
            bail!("the Dockerfile lacks `{}`", needle.trim());
        }
    }
    let operator = fs::read_to_string(root.join("operator/Cargo.toml"))?;
    if !operator.contains("name = \"emporium-operator\"") {
        bail!(
            "operator/Cargo.toml no longer names its binary emporium-operator; update the Dockerfile"
        );
    }
    let cargo = fs::read_to_string(root.join("Cargo.toml"))?;
    let wanted = value_after(&cargo, "[workspace.package]", "rust-version = ")
        .context("Cargo.toml has no rust-version")?;
    let pinned = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("ARG RUST_VERSION="))
        .context("the Dockerfile has no `ARG RUST_VERSION=`")?;
    if version_tuple(pinned) < version_tuple(&wanted) {
        bail!(
            "the Dockerfile's RUST_VERSION {pinned} is older than the workspace's rust-version {wanted}"
        );
    }
    let ignore =
        fs::read_to_string(root.join(".dockerignore")).context("cannot read .dockerignore")?;
    for needed in [
        "services",
        "operator",
        "xtask",
        "tests",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        if ignore
            .lines()
            .any(|l| l.trim().trim_start_matches('/').trim_end_matches('/') == needed)
        {
            bail!(".dockerignore leaves out {needed}, which the build needs");
        }
    }
    step(
        "chart",
        format!(
            "Dockerfile builds emporium and emporium-operator with Rust {pinned} (not built: no Docker engine here)"
        ),
    );
    Ok(())
}

fn version_tuple(version: &str) -> Vec<u32> {
    version
        .trim()
        .split('.')
        .map(|part| part.parse().unwrap_or(0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_read_from_top_level_lines() {
        let yaml = "---\nkind: ServiceAccount\nmetadata:\n  kind: nested\n---\nkind: Deployment\n";
        assert_eq!(kinds(yaml), ["ServiceAccount", "Deployment"]);
    }

    #[test]
    fn workspace_keys_are_read_from_their_section() {
        let toml = "[workspace]\nmembers = []\n\n[workspace.package]\nversion = \"0.1.0\"\nrust-version = \"1.89\"\n\n[other]\nversion = \"9\"\n";
        assert_eq!(
            value_after(toml, "[workspace.package]", "version = ").as_deref(),
            Some("0.1.0")
        );
        assert_eq!(
            value_after(toml, "[workspace.package]", "rust-version = ").as_deref(),
            Some("1.89")
        );
        assert!(version_tuple("1.95") > version_tuple("1.89"));
    }
}
