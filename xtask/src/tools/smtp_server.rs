//! mailpit: a real SMTP server with an HTTP API for reading what it
//! received, used by the notifications tests (`EMPORIUM_TEST_MAILPIT`).
//!
//! Built once from its Go module with the machine's Go toolchain into
//! `$HOME/.cache/emporium/tools/mailpit-<version>/mailpit` (outside the
//! repository, so every checkout and CI run on the machine reuses it).
//! The first build takes about a minute on two cores.
//!
//! Self-contained (std + anyhow) so it can be wired in anywhere.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// The mailpit release the tests run.
pub const MAILPIT: &str = "v1.33.1";
const MODULE: &str = "github.com/axllent/mailpit";

/// `$HOME/.cache/emporium` (or `$EMPORIUM_CACHE_DIR`, or
/// `$XDG_CACHE_HOME/emporium`).
fn cache_base() -> PathBuf {
    std::env::var_os("EMPORIUM_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("emporium")))
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/emporium")
        })
}

/// Where the binary lives once built.
pub fn mailpit_path() -> PathBuf {
    cache_base()
        .join("tools")
        .join(format!("mailpit-{MAILPIT}"))
        .join("mailpit")
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn find_go() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("go"))
        .chain([PathBuf::from("/usr/local/go/bin/go")])
        .find(|p| is_executable(p))
}

/// The mailpit binary, built first if it is not cached yet.
pub fn ensure_mailpit() -> Result<PathBuf> {
    let binary = mailpit_path();
    if is_executable(&binary) {
        return Ok(binary);
    }
    let Some(go) = find_go() else {
        bail!("building mailpit needs the Go toolchain (`go` on PATH or /usr/local/go/bin/go)");
    };
    let dir = binary.parent().context("mailpit's cache directory")?;
    // Build into a scratch GOBIN and rename, so an interrupted build never
    // leaves a half-written binary that a later run would trust.
    let scratch = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    eprintln!(
        "==> mailpit: building {MODULE}@{MAILPIT} once into {} (about a minute; later runs reuse it)",
        dir.display()
    );
    let started = Instant::now();
    let status = Command::new(&go)
        .args(["install", "-trimpath", "-ldflags=-s -w"])
        .arg(format!("{MODULE}@{MAILPIT}"))
        .env("GOBIN", &scratch)
        .env("GOFLAGS", "-buildvcs=false")
        // Pure Go (its SQLite is modernc's): a static binary, no C compiler.
        .env("CGO_ENABLED", "0")
        // Never fetch another Go toolchain.
        .env("GOTOOLCHAIN", "local")
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("running {}", go.display()))?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&scratch);
        bail!("`go install {MODULE}@{MAILPIT}` failed ({status})");
    }
    let built = scratch.join("mailpit");
    if !is_executable(&built) {
        bail!("`go install` produced no {}", built.display());
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&scratch, dir)
        .with_context(|| format!("moving {} to {}", scratch.display(), dir.display()))?;
    eprintln!(
        "==> mailpit: built in {:.0} s: {}",
        started.elapsed().as_secs_f64(),
        binary.display()
    );
    Ok(binary)
}
