//! Building the control plane once, from upstream Go modules, into
//! `$HOME/.cache/emporium/k8s/<version>/bin` (outside the repository, so
//! every checkout and CI run on the machine reuses it).
//!
//! `k8s.io/kubernetes` lists its staging modules (`k8s.io/api`, …) at
//! v0.0.0 with `replace` lines pointing into its own tree, which a module
//! that requires it cannot see; our small go.mod replaces each of them with
//! its published `v0.Y.Z`. etcd and kwok build from plain go.mods.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cmd::{self, step};

/// The Kubernetes release the control plane runs.
pub const KUBERNETES: &str = "v1.34.4";
/// Its staging modules' published version.
const STAGING: &str = "v0.34.4";
/// The etcd release Kubernetes 1.34 is tested with.
pub const ETCD: &str = "v3.6.4";
/// kwok: simulated nodes and pod lifecycles.
pub const KWOK: &str = "v0.8.0";

/// The control-plane programs, by name.
pub const PROGRAMS: [&str; 5] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
];

/// `$HOME/.cache/emporium/k8s/<version>`.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("EMPORIUM_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("emporium")))
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/emporium")
        });
    base.join("k8s").join(KUBERNETES)
}

pub fn bin_dir() -> PathBuf {
    cache_dir().join("bin")
}

/// The stage definitions kwok runs (copied from its module at build time).
pub fn stages_file() -> PathBuf {
    cache_dir().join("kwok-stages.yaml")
}

/// Builds whatever is missing; returns the bin directory.
pub fn ensure() -> Result<PathBuf> {
    let bin = bin_dir();
    let missing: Vec<&str> = PROGRAMS
        .iter()
        .copied()
        .filter(|p| !cmd::is_executable(&bin.join(p)))
        .collect();
    if missing.is_empty() && stages_file().exists() {
        return Ok(bin);
    }
    let Some(go) = cmd::find("go")
        .or_else(|| Some(PathBuf::from("/usr/local/go/bin/go")).filter(|p| cmd::is_executable(p)))
    else {
        bail!("building the control plane needs the Go toolchain (`go` on PATH)");
    };
    fs::create_dir_all(&bin)?;
    if !missing.is_empty() {
        step(
            "cluster",
            format!(
                "building {} once into {} (many minutes on two cores; later runs reuse it)",
                missing.join(", "),
                bin.display()
            ),
        );
    }
    let started = Instant::now();
    let src = cache_dir().join("src");
    if missing.contains(&"etcd") {
        let dir = module(
            &src,
            "etcd",
            &format!(
                "module emporium.local/etcd-build\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 {ETCD}\n"
            ),
        )?;
        go_build(
            &go,
            &dir,
            "-s -w",
            &bin.join("etcd"),
            "go.etcd.io/etcd/server/v3",
        )?;
    }
    if missing.contains(&"kwok") || !stages_file().exists() {
        let dir = module(
            &src,
            "kwok",
            &format!(
                "module emporium.local/kwok-build\n\ngo 1.24\n\nrequire sigs.k8s.io/kwok {KWOK}\n"
            ),
        )?;
        if missing.contains(&"kwok") {
            go_build(
                &go,
                &dir,
                "-s -w",
                &bin.join("kwok"),
                "sigs.k8s.io/kwok/cmd/kwok",
            )?;
        }
        write_stages(&go, &dir)?;
    }
    let kube: Vec<&str> = missing
        .iter()
        .copied()
        .filter(|p| p.starts_with("kube-"))
        .collect();
    if !kube.is_empty() {
        let dir = src.join("kubernetes");
        fs::create_dir_all(&dir)?;
        // Learn the staging modules from Kubernetes' own go.mod.
        cmd::run(
            Command::new(&go)
                .current_dir(&dir)
                .env("GOFLAGS", "-mod=mod")
                .args([
                    "mod",
                    "download",
                    &format!("k8s.io/kubernetes@{KUBERNETES}"),
                ]),
        )?;
        let modcache = cmd::capture(Command::new(&go).args(["env", "GOMODCACHE"]))?;
        let upstream = Path::new(modcache.trim()).join(format!(
            "cache/download/k8s.io/kubernetes/@v/{KUBERNETES}.mod"
        ));
        let upstream = fs::read_to_string(&upstream)
            .with_context(|| format!("cannot read {}", upstream.display()))?;
        fs::write(dir.join("go.mod"), kubernetes_go_mod(&upstream))?;
        let minor = KUBERNETES
            .trim_start_matches('v')
            .split('.')
            .nth(1)
            .unwrap_or("0");
        let ldflags = format!(
            "-s -w -X k8s.io/component-base/version.gitVersion={KUBERNETES} -X k8s.io/component-base/version.gitMajor=1 \
             -X k8s.io/component-base/version.gitMinor={minor} -X k8s.io/client-go/pkg/version.gitVersion={KUBERNETES}"
        );
        for program in kube {
            go_build(
                &go,
                &dir,
                &ldflags,
                &bin.join(program),
                &format!("k8s.io/kubernetes/cmd/{program}"),
            )?;
        }
    }
    step(
        "cluster",
        format!("control plane built in {:.0?}", started.elapsed()),
    );
    Ok(bin)
}

/// Our go.mod for Kubernetes: require it, replace each staging module.
pub fn kubernetes_go_mod(upstream: &str) -> String {
    let mut out = format!(
        "module emporium.local/kubernetes-build\n\ngo 1.24.0\n\nrequire k8s.io/kubernetes {KUBERNETES}\n\nreplace (\n"
    );
    let mut in_replace = false;
    for line in upstream.lines() {
        let line = line.trim();
        if line.starts_with("replace (") {
            in_replace = true;
            continue;
        }
        if in_replace && line == ")" {
            in_replace = false;
            continue;
        }
        if in_replace
            && let Some((module, target)) = line.split_once("=>")
            && target.trim().starts_with("./staging/")
        {
            let module = module.trim();
            out.push_str(&format!("\t{module} => {module} {STAGING}\n"));
        }
    }
    out.push_str(")\n");
    out
}

fn module(src: &Path, name: &str, go_mod: &str) -> Result<PathBuf> {
    let dir = src.join(name);
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("go.mod"), go_mod)?;
    Ok(dir)
}

fn go_build(go: &Path, dir: &Path, ldflags: &str, out: &Path, package: &str) -> Result<()> {
    let started = Instant::now();
    step("cluster", format!("go build {package}"));
    let tmp = out.with_extension("partial");
    let mut command = if let Some(nice) = cmd::find("nice") {
        let mut c = Command::new(nice);
        c.args(["-n", "10"]).arg(go);
        c
    } else {
        Command::new(go)
    };
    command
        .current_dir(dir)
        .env("GOFLAGS", "-mod=mod")
        .env("CGO_ENABLED", "0")
        .env("GOTOOLCHAIN", "local")
        .args(["build", "-trimpath", &format!("-ldflags={ldflags}"), "-o"])
        .arg(&tmp)
        .arg(package);
    cmd::run(&mut command)?;
    fs::rename(&tmp, out)?;
    step(
        "cluster",
        format!("built {} in {:.0?}", out.display(), started.elapsed()),
    );
    Ok(())
}

/// kwok's stock "fast" stages: nodes become Ready and keep a lease; pods
/// become Ready, Job pods complete, deleted pods go.
fn write_stages(go: &Path, dir: &Path) -> Result<()> {
    let module_dir = cmd::capture(
        Command::new(go)
            .current_dir(dir)
            .env("GOFLAGS", "-mod=mod")
            .args(["list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/kwok"]),
    )?;
    let stages = Path::new(module_dir.trim()).join("kustomize/stage");
    let mut out = String::new();
    for file in [
        "node/fast/node-initialize.yaml",
        "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
        "pod/fast/pod-ready.yaml",
        "pod/fast/pod-complete.yaml",
        "pod/fast/pod-delete.yaml",
    ] {
        let path = stages.join(file);
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        out.push_str("---\n");
        out.push_str(&text);
        if !text.ends_with('\n') {
            out.push('\n');
        }
    }
    fs::write(stages_file(), out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_modules_are_replaced_with_published_versions() {
        let upstream = "module k8s.io/kubernetes\n\nrequire (\n\tk8s.io/api v0.0.0\n)\n\nreplace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\tk8s.io/client-go => ./staging/src/k8s.io/client-go\n)\n";
        let go_mod = kubernetes_go_mod(upstream);
        assert!(go_mod.contains(&format!("require k8s.io/kubernetes {KUBERNETES}")));
        assert!(go_mod.contains(&format!("\tk8s.io/api => k8s.io/api {STAGING}\n")));
        assert!(go_mod.contains(&format!(
            "\tk8s.io/client-go => k8s.io/client-go {STAGING}\n"
        )));
    }
}
