//! The programs and files the packaging checks need, provisioned the way
//! the control plane is: helm built once from its Go module, Argo CD's
//! Application CRD and the Prometheus Operator's ServiceMonitor CRD taken
//! from their Go modules (through the Go module proxy), all cached under
//! `~/.cache/emporium/<tool>/<version>/`; Debian's `lua5.1` installed with
//! apt when missing (as root).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cmd::{self, step};

/// helm, built from `helm.sh/helm/v3`.
pub const HELM: &str = "v3.22.0";
/// Argo CD, whose module holds `manifests/crds/application-crd.yaml`
/// (v3.6 needs Go 1.27; v3.5 builds its module list with this machine's Go).
pub const ARGO_CD: &str = "v3.5.7";
/// The Prometheus Operator, whose module holds the ServiceMonitor CRD.
pub const PROMETHEUS_OPERATOR: &str = "v0.90.1";

/// `~/.cache/emporium` (or `EMPORIUM_CACHE_DIR`, `$XDG_CACHE_HOME/emporium`):
/// the directory the control plane's `k8s/<version>` lives in.
fn cache_base() -> PathBuf {
    let k8s = crate::cluster::build::cache_dir();
    k8s.parent()
        .and_then(Path::parent)
        .map_or_else(|| k8s.clone(), Path::to_path_buf)
}

fn go() -> Result<PathBuf> {
    cmd::find("go")
        .or_else(|| Some(PathBuf::from("/usr/local/go/bin/go")).filter(|p| cmd::is_executable(p)))
        .context(
            "helm and the CRDs come from Go modules: this needs the Go toolchain (`go` on PATH)",
        )
}

/// A `go` command that runs outside any module, with the machine's own
/// toolchain, and never touches the workspace.
fn go_command(go: &Path, dir: &Path) -> Command {
    let mut command = Command::new(go);
    command
        .current_dir(dir)
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0");
    command
}

/// Downloads `module@version` into the module cache; returns its directory
/// and its go.mod file.
fn download_module(module: &str, version: &str) -> Result<(PathBuf, PathBuf)> {
    let go = go()?;
    let scratch = cache_base().join("go-scratch");
    fs::create_dir_all(&scratch)?;
    let mut command = go_command(&go, &scratch);
    command.args(["mod", "download", "-json", &format!("{module}@{version}")]);
    super::echo(&command);
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", go.display()))?;
    // `go mod download -json` prints its JSON (with an "Error" field) even when it fails.
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "`go mod download {module}@{version}` printed no JSON: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )
    })?;
    if let Some(error) = info["Error"].as_str() {
        bail!("cannot download {module}@{version}: {error}");
    }
    let dir = info["Dir"]
        .as_str()
        .with_context(|| format!("`go mod download` gave no directory for {module}@{version}"))?;
    let go_mod = info["GoMod"].as_str().unwrap_or_default();
    Ok((PathBuf::from(dir), PathBuf::from(go_mod)))
}

/// helm, built once into `~/.cache/emporium/helm/<version>/bin/helm`.
pub fn helm() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("EMPORIUM_HELM") {
        return Ok(PathBuf::from(path));
    }
    let dir = cache_base().join("helm").join(HELM);
    let helm = dir.join("bin/helm");
    if cmd::is_executable(&helm) {
        return Ok(helm);
    }
    let go = go()?;
    step(
        "helm",
        format!(
            "building helm {HELM} once into {} (a few minutes on two cores)",
            helm.display()
        ),
    );
    let started = Instant::now();
    // helm's Makefile stamps the version and the Kubernetes version its
    // client libraries speak (what `helm template` assumes without a
    // cluster); take the latter from its go.mod, as the Makefile does.
    let (_, go_mod) = download_module("helm.sh/helm/v3", HELM)?;
    let go_mod =
        fs::read_to_string(&go_mod).with_context(|| format!("cannot read {}", go_mod.display()))?;
    let minor = client_go_minor(&go_mod).context("helm's go.mod names no k8s.io/client-go")?;
    let ldflags = format!(
        "-s -w -X helm.sh/helm/v3/internal/version.version={HELM} \
         -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
         -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor={minor} \
         -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
         -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor={minor}"
    );
    let gobin = dir.join("gobin");
    fs::create_dir_all(&gobin)?;
    fs::create_dir_all(dir.join("bin"))?;
    let mut command = match cmd::find("nice") {
        Some(nice) => {
            let mut c = Command::new(nice);
            c.args(["-n", "10"]).arg(&go);
            c
        }
        None => Command::new(&go),
    };
    command
        .current_dir(&dir)
        .env("GOBIN", &gobin)
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .args(["install", "-trimpath", &format!("-ldflags={ldflags}")])
        .arg(format!("helm.sh/helm/v3/cmd/helm@{HELM}"));
    cmd::run(&mut command)?;
    fs::rename(gobin.join("helm"), &helm)?;
    step(
        "helm",
        format!("built {} in {:.0?}", helm.display(), started.elapsed()),
    );
    Ok(helm)
}

/// `37` from `k8s.io/client-go v0.37.0` in a go.mod.
pub fn client_go_minor(go_mod: &str) -> Option<String> {
    go_mod.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        let first = words.next()?;
        let (module, version) = if first == "require" {
            (words.next()?, words.next()?)
        } else {
            (first, words.next()?)
        };
        if module != "k8s.io/client-go" {
            return None;
        }
        Some(
            version
                .trim_start_matches('v')
                .split('.')
                .nth(1)?
                .to_owned(),
        )
    })
}

/// A file out of a Go module, copied once into the cache.
fn file_from_module(
    tool: &str,
    module: &str,
    version: &str,
    path_in_module: &str,
    name: &str,
) -> Result<PathBuf> {
    let cached = cache_base().join(tool).join(version).join(name);
    if cached.exists() {
        return Ok(cached);
    }
    step(
        tool,
        format!("taking {path_in_module} from {module}@{version}"),
    );
    let (dir, _) = download_module(module, version)?;
    let source = dir.join(path_in_module);
    let text =
        fs::read_to_string(&source).with_context(|| format!("cannot read {}", source.display()))?;
    fs::create_dir_all(cached.parent().expect("a cache directory"))?;
    let partial = cached.with_extension("partial");
    fs::write(&partial, text)?;
    fs::rename(&partial, &cached)?;
    Ok(cached)
}

/// Argo CD's `Application` CRD.
pub fn argo_cd_application_crd() -> Result<PathBuf> {
    file_from_module(
        "argocd",
        "github.com/argoproj/argo-cd/v3",
        ARGO_CD,
        "manifests/crds/application-crd.yaml",
        "application-crd.yaml",
    )
}

/// The Prometheus Operator's `ServiceMonitor` CRD (the chart can render one).
pub fn service_monitor_crd() -> Result<PathBuf> {
    file_from_module(
        "prometheus-operator",
        "github.com/prometheus-operator/prometheus-operator",
        PROMETHEUS_OPERATOR,
        "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
        "servicemonitor-crd.yaml",
    )
}

/// Debian's `lua5.1`: Lua 5.1 is the dialect Argo CD's health checks are
/// written in (gopher-lua). Installed with apt when missing and root.
pub fn lua() -> Result<PathBuf> {
    if let Some(lua) = cmd::find("lua5.1") {
        return Ok(lua);
    }
    let debian = Path::new("/etc/debian_version").exists() && cmd::find("apt-get").is_some();
    if debian && is_root() {
        step("apt", "installing lua5.1 (Argo CD's Lua dialect)");
        cmd::run(Command::new("apt-get").arg("update"))?;
        cmd::run(
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "lua5.1"]),
        )?;
        if let Some(lua) = cmd::find("lua5.1") {
            return Ok(lua);
        }
    }
    bail!(
        "the Argo CD health checks run under Lua 5.1, and `lua5.1` is not installed: \
         `sudo apt-get install -y lua5.1` (xtask does it itself when root on Debian)"
    )
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_go_minor_comes_from_a_require_block_or_line() {
        let block = "module helm.sh/helm/v3\n\nrequire (\n\tgithub.com/x/y v1.0.0\n\tk8s.io/client-go v0.37.0\n)\n";
        assert_eq!(client_go_minor(block).as_deref(), Some("37"));
        let line = "module m\n\nrequire k8s.io/client-go v0.34.2\n";
        assert_eq!(client_go_minor(line).as_deref(), Some("34"));
        assert_eq!(client_go_minor("module m\n"), None);
    }
}
