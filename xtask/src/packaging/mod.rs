//! Packaging: the checks that the parts a Kubernetes user touches are right
//! (`cargo xtask packaging`, run by `cargo xtask test` as its `packaging`
//! set), and the kind cluster for users' own machines (`cargo xtask
//! kind-up|kind-down`).
//!
//! The checks, in order:
//! - `lua`: Argo CD's health checks (manifests/argocd/health/*/health.lua)
//!   under Debian's `lua5.1` over every sample object, against the expected
//!   health in each `health_test.yaml`;
//! - `chart`: the chart's CRDs equal `crds/`, `helm lint --strict` and
//!   `helm template` with the default and the full values, the Dockerfile
//!   names the binaries the workspace builds;
//! - `cluster`: on the local control plane (`cargo xtask cluster up`), with
//!   the CRDs, Argo CD's Application CRD and the ServiceMonitor CRD
//!   installed, every manifest under manifests/ and the rendered chart pass
//!   `kubectl apply --dry-run=server`; `helm install` brings the operator's
//!   Deployment to Available under kwok; the operator binary, run out of
//!   cluster with a token of the chart's ServiceAccount, reconciles the
//!   example Store to Ready.
//!
//! helm, Argo CD's CRD and the Prometheus Operator's CRD come from their Go
//! modules, cached beside the control plane in `~/.cache/emporium/`.

mod chart;
mod health;
mod kind;
mod live;
mod tools;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::cmd::step;

/// The chart, relative to the workspace root.
pub const CHART: &str = "charts/emporium-operator";

/// Which checks `cargo xtask packaging` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    Lua,
    Chart,
    Cluster,
}

impl Check {
    const ALL: [Check; 3] = [Check::Lua, Check::Chart, Check::Cluster];

    fn name(self) -> &'static str {
        match self {
            Check::Lua => "lua",
            Check::Chart => "chart",
            Check::Cluster => "cluster",
        }
    }
}

/// `cargo xtask packaging [lua|chart|cluster]...`: the named checks, or all.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut checks = Vec::new();
    for arg in args {
        match Check::ALL.iter().find(|c| c.name() == arg) {
            Some(check) => checks.push(*check),
            None => bail!("usage: cargo xtask packaging [lua|chart|cluster]..."),
        }
    }
    if checks.is_empty() {
        checks = Check::ALL.to_vec();
    }
    // The cluster checks dry-run the chart as the chart check rendered it.
    if checks.contains(&Check::Cluster) && !checks.contains(&Check::Chart) {
        checks.insert(0, Check::Chart);
    }

    let mut timings: Vec<(&str, Duration)> = Vec::new();
    let mut rendered = None;
    for check in Check::ALL.into_iter().filter(|c| checks.contains(c)) {
        let started = Instant::now();
        match check {
            Check::Lua => {
                let lua = tools::lua()?;
                let cases = health::check(root, &lua)?;
                step(
                    "packaging",
                    format!("lua: {cases} health-check samples give the expected health"),
                );
            }
            Check::Chart => {
                let helm = tools::helm()?;
                rendered = Some(chart::check(root, &helm)?);
            }
            Check::Cluster => {
                let helm = tools::helm()?;
                let crds = live::ExtraCrds {
                    argo_cd_application: tools::argo_cd_application_crd()?,
                    service_monitor: tools::service_monitor_crd()?,
                };
                let rendered = rendered
                    .as_ref()
                    .expect("the chart check runs before the cluster check");
                live::check(root, &helm, &crds, rendered)?;
            }
        }
        timings.push((check.name(), started.elapsed()));
    }
    for (name, took) in timings {
        step(
            "packaging",
            format!("{name}: passed in {:.1}s", took.as_secs_f64()),
        );
    }
    Ok(())
}

/// `cargo xtask kind-up [--dry-run]`.
pub fn kind_up(root: &Path, args: &[String]) -> Result<()> {
    kind::up(root, dry_run_flag(args, "kind-up")?)
}

/// `cargo xtask kind-down [--dry-run]`.
pub fn kind_down(args: &[String]) -> Result<()> {
    kind::down(dry_run_flag(args, "kind-down")?)
}

fn dry_run_flag(args: &[String], command: &str) -> Result<bool> {
    match args {
        [] => Ok(false),
        [flag] if flag == "--dry-run" => Ok(true),
        _ => bail!("usage: cargo xtask {command} [--dry-run]"),
    }
}

/// Echoes a command line the way `cmd::run` does, for commands whose
/// output is read here.
pub fn echo(command: &std::process::Command) {
    eprintln!("    $ {}", crate::cmd::display(command));
}

/// Where the checks keep what they render and log: `/tmp/emporium-packaging`
/// (or `EMPORIUM_PACKAGING_DIR`).
pub fn work_dir() -> Result<PathBuf> {
    let dir = std::env::var_os("EMPORIUM_PACKAGING_DIR")
        .map_or_else(|| PathBuf::from("/tmp/emporium-packaging"), PathBuf::from);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
