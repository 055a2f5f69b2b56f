//! Certificates and keys for the local control plane, made with `openssl`:
//! a CA, the API server's serving certificate for 127.0.0.1, and the
//! service-account signing key pair.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::cmd;

pub struct Pki {
    pub ca_cert: PathBuf,
    pub apiserver_cert: PathBuf,
    pub apiserver_key: PathBuf,
    pub service_account_key: PathBuf,
    pub service_account_public: PathBuf,
}

pub fn generate(dir: &Path) -> Result<Pki> {
    let path = |name: &str| dir.join(name);
    let openssl = || {
        let mut command = Command::new("openssl");
        command.current_dir(dir);
        command
    };
    let run = |command: &mut Command| quiet(command);
    run(openssl().args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3650",
        "-subj",
        "/CN=emporium-local-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    ]))?;
    run(openssl().args([
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "apiserver.key",
        "-out",
        "apiserver.csr",
        "-subj",
        "/CN=kube-apiserver",
    ]))?;
    fs::write(
        path("apiserver.ext"),
        "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n\
         extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
    )?;
    run(openssl().args([
        "x509",
        "-req",
        "-in",
        "apiserver.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "apiserver.crt",
        "-days",
        "3650",
        "-extfile",
        "apiserver.ext",
    ]))?;
    run(openssl().args(["genrsa", "-out", "sa.key", "2048"]))?;
    run(openssl().args(["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"]))?;
    Ok(Pki {
        ca_cert: path("ca.crt"),
        apiserver_cert: path("apiserver.crt"),
        apiserver_key: path("apiserver.key"),
        service_account_key: path("sa.key"),
        service_account_public: path("sa.pub"),
    })
}

/// Runs openssl without its progress dots; its output only on failure.
fn quiet(command: &mut Command) -> Result<()> {
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot run openssl (is it installed?)")?;
    if !output.status.success() {
        anyhow::bail!(
            "`{}` failed: {}",
            cmd::display(command),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// `bytes` random bytes from the kernel, as hex.
pub fn random_hex(bytes: usize) -> Result<String> {
    let mut buffer = vec![0u8; bytes];
    use std::io::Read;
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buffer))
        .context("cannot read /dev/urandom")?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}
