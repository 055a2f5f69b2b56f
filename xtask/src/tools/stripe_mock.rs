//! stripe-mock, Stripe's own emulator of its REST API (it validates every
//! request against Stripe's OpenAPI document and answers with canned
//! objects), built from its Go module with the machine's Go toolchain and
//! cached outside the repository, keyed by version. The payments tests find
//! it through `EMPORIUM_TEST_STRIPE_MOCK`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The stripe-mock release the tests are written against (its canned
/// PaymentIntent answers `requires_payment_method`, its refund `succeeded`).
pub const STRIPE_MOCK_VERSION: &str = "v0.203.0";
const MODULE: &str = "github.com/stripe/stripe-mock";

/// `$EMPORIUM_TOOLS_DIR`, else `$XDG_CACHE_HOME/emporium/tools`, else
/// `$HOME/.cache/emporium/tools`.
fn tools_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("EMPORIUM_TOOLS_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let cache = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(
            std::env::var_os("HOME").context("neither EMPORIUM_TOOLS_DIR nor HOME is set")?,
        )
        .join(".cache"),
    };
    Ok(cache.join("emporium").join("tools"))
}

/// The path of the stripe-mock binary, building it the first time (about
/// half a minute: `go install` fetches the module through the Go module
/// proxy and compiles it).
pub fn ensure_stripe_mock() -> Result<PathBuf> {
    let dir = tools_dir()?.join(format!("stripe-mock-{STRIPE_MOCK_VERSION}"));
    let binary = dir.join("stripe-mock");
    if binary.is_file() {
        return Ok(binary);
    }
    let go = std::env::var_os("GO")
        .map(PathBuf::from)
        .unwrap_or_else(|| "go".into());
    let found = Command::new(&go)
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        bail!(
            "building stripe-mock needs the Go toolchain (`go` on PATH, or $GO); \
             install Go, or put a stripe-mock {STRIPE_MOCK_VERSION} binary at {}",
            binary.display()
        );
    }
    // Build into a scratch directory and move the result in place, so an
    // interrupted build never leaves a half-written binary behind.
    let scratch = dir.with_file_name(format!(
        "stripe-mock-{STRIPE_MOCK_VERSION}.building-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("cannot create {}", scratch.display()))?;
    eprintln!("==> stripe-mock: building {MODULE}@{STRIPE_MOCK_VERSION} with Go (once)");
    let status = Command::new(&go)
        .args(["install", &format!("{MODULE}@{STRIPE_MOCK_VERSION}")])
        .env("GOBIN", &scratch)
        .env("CGO_ENABLED", "0")
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .context("cannot run `go install`")?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&scratch);
        bail!("`go install {MODULE}@{STRIPE_MOCK_VERSION}` failed ({status})");
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::rename(scratch.join("stripe-mock"), &binary)
        .with_context(|| format!("cannot move the built stripe-mock to {}", binary.display()))?;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(binary)
}
