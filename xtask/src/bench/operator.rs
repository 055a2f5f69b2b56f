//! `cargo xtask bench operator`: 50 Stores (350 ServiceDeployments) applied
//! at once on the local control plane. Prints the time until every Store is
//! Ready, the operator's peak RSS, reconciles per object, and the writes the
//! operator makes during 60 s of idleness after convergence.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cluster;
use crate::cmd::{self, step};

const STORES: usize = 50;
const NAMESPACE: &str = "bench-operator";
const IDLE: Duration = Duration::from_secs(60);
const LIMIT: Duration = Duration::from_secs(600);

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    if !args.is_empty() {
        bail!("usage: cargo xtask bench operator");
    }
    let kubeconfig = cluster::up()?;
    step("bench", "building the operator (release)");
    cmd::run(Command::new("cargo").current_dir(root).args([
        "build",
        "--release",
        "-p",
        "operator",
    ]))?;
    let binary = root.join("target/release/emporium-operator");
    let kubectl = |args: &[&str]| -> Result<String> {
        cmd::capture(
            Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(args),
        )
    };

    kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        &root.join("crds/emporium.dev.yaml").display().to_string(),
    ])?;
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/stores.emporium.dev",
        "crd/servicedeployments.emporium.dev",
        "crd/paymentproviders.emporium.dev",
    ])?;
    step("bench", format!("fresh namespace {NAMESPACE}"));
    let _ = kubectl(&[
        "delete",
        "namespace",
        NAMESPACE,
        "--ignore-not-found",
        "--timeout=300s",
    ]);
    kubectl(&["create", "namespace", NAMESPACE])?;
    kubectl(&[
        "apply",
        "-n",
        NAMESPACE,
        "-f",
        &root
            .join("manifests/examples/payment-provider-sandbox.yaml")
            .display()
            .to_string(),
    ])?;

    let port = free_port()?;
    let log = std::env::temp_dir().join("emporium-bench-operator.log");
    let mut operator = Operator(
        Command::new(&binary)
            .args(["run", "--exit-with-stdin"])
            .env("KUBECONFIG", &kubeconfig)
            .env("EMPORIUM_OPERATOR_LISTEN", format!("127.0.0.1:{port}"))
            .env("POD_NAMESPACE", NAMESPACE)
            .env("POD_NAME", "bench")
            .env("EMPORIUM_OPERATOR_LEASE", "emporium-operator-bench")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(fs::File::create(&log)?)
            .stderr(fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?,
    );
    let pid = operator.0.id();
    cluster::wait_for("the operator to lead", Duration::from_secs(60), || {
        metrics(port).is_some_and(|m| m.contains("emporium_operator_leader 1"))
    })?;

    let manifests = std::env::temp_dir().join("emporium-bench-stores.yaml");
    fs::write(&manifests, stores_yaml())?;
    step(
        "bench",
        format!(
            "applying {STORES} Stores ({} ServiceDeployments)",
            STORES * 7
        ),
    );
    kubectl(&[
        "apply",
        "-n",
        NAMESPACE,
        "-f",
        &manifests.display().to_string(),
    ])?;
    let applied = Instant::now();
    let mut last_report = Instant::now();
    let ready_after = loop {
        let ready = ready_stores(&kubeconfig)?;
        if ready == STORES {
            break applied.elapsed();
        }
        if let Some(status) = operator.0.try_wait()? {
            bail!("the operator exited ({status}); see {}", log.display());
        }
        if applied.elapsed() > LIMIT {
            bail!(
                "only {ready}/{STORES} Stores Ready after {}s; see {}",
                LIMIT.as_secs(),
                log.display()
            );
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            step(
                "bench",
                format!(
                    "{ready}/{STORES} Ready after {:.0}s",
                    applied.elapsed().as_secs_f64()
                ),
            );
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    step(
        "bench",
        format!(
            "all {STORES} Stores Ready {:.1}s after the apply",
            ready_after.as_secs_f64()
        ),
    );
    let converged = metrics(port).unwrap_or_default();

    step("bench", format!("idle for {}s", IDLE.as_secs()));
    std::thread::sleep(IDLE);
    let idle = metrics(port).unwrap_or_default();
    let peak_rss_kib = peak_rss_kib(pid);

    let reconciles = by_label(&idle, "emporium_operator_reconciles_total", "kind");
    let objects = BTreeMap::from([
        ("Store", STORES),
        ("ServiceDeployment", STORES * 7),
        ("PaymentProvider", 1),
    ]);
    let writes_before = writes(&converged);
    let writes_after = writes(&idle);
    let idle_writes: BTreeMap<String, f64> = writes_after
        .iter()
        .filter_map(|(k, v)| {
            let delta = v - writes_before.get(k).copied().unwrap_or(0.0);
            (delta > 0.0).then(|| (k.clone(), delta))
        })
        .collect();
    let lease_writes: u64 = idle_writes
        .iter()
        .filter(|(k, _)| k.contains("leases"))
        .map(|(_, v)| *v as u64)
        .sum();
    let other_writes: u64 = idle_writes
        .iter()
        .filter(|(k, _)| !k.contains("leases"))
        .map(|(_, v)| *v as u64)
        .sum();

    println!();
    println!(
        "operator benchmark: {STORES} Stores, {} ServiceDeployments, on kube-apiserver {} + kwok",
        STORES * 7,
        cluster::build::KUBERNETES
    );
    println!(
        "  all Ready after the apply     {:>8.1} s",
        ready_after.as_secs_f64()
    );
    match peak_rss_kib {
        Some(kib) => println!(
            "  operator peak RSS (VmHWM)     {:>8.1} MiB",
            kib as f64 / 1024.0
        ),
        None => println!("  operator peak RSS             unknown"),
    }
    for (kind, count) in &objects {
        let done = reconciles.get(*kind).copied().unwrap_or(0.0);
        println!(
            "  reconciles per {kind:<18} {:>6.1}  ({done} for {count})",
            done / *count as f64
        );
    }
    println!(
        "  writes during {}s idle        {:>8}  (excluding {lease_writes} Lease renewals)",
        IDLE.as_secs(),
        other_writes
    );
    for (key, delta) in idle_writes.iter().filter(|(k, _)| !k.contains("leases")) {
        println!("      {key}: {delta}");
    }
    println!("  operator log: {}", log.display());

    drop(operator);
    step(
        "bench",
        format!("deleting namespace {NAMESPACE} (garbage collection runs in the background)"),
    );
    let _ = kubectl(&["delete", "namespace", NAMESPACE, "--wait=false"]);
    Ok(())
}

/// Kills the operator when the benchmark ends, however it ends.
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stores_yaml() -> String {
    let mut out = String::new();
    for index in 0..STORES {
        out.push_str(&format!(
            "---
apiVersion: emporium.dev/v1alpha1
kind: Store
metadata:
  name: shop-{index:02}
spec:
  image: {{tag: \"1.0.0\"}}
  components:
    gateway: {{replicas: 2}}
  database: {{managed: {{storage: {{ephemeral: true}}}}}}
  cache: {{managed: {{storage: {{ephemeral: true}}}}}}
  messaging: {{managed: {{storage: {{ephemeral: true}}}}}}
  paymentProviderRef: {{name: sandbox}}
"
        ));
    }
    out
}

/// How many Stores are Ready (asked quietly: this runs twice a second).
fn ready_stores(kubeconfig: &Path) -> Result<usize> {
    let output = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["get", "stores", "-n", NAMESPACE, "-o", "json"])
        .stdin(Stdio::null())
        .output()?;
    if !output.status.success() {
        bail!(
            "kubectl get stores failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let list: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    Ok(list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|store| {
                    store["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
                .count()
        })
        .unwrap_or(0))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn metrics(port: u16) -> Option<String> {
    use std::io::Write;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response.split_once("\r\n\r\n")?.1.to_owned())
}

/// `VmHWM`: the process's peak resident set, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Sums a counter by one label.
fn by_label(metrics: &str, name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let needle = format!("{label}=\"");
    for line in metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
    {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some(start) = labels.find(&needle) else {
            continue;
        };
        let rest = &labels[start + needle.len()..];
        let Some(end) = rest.find('"') else { continue };
        *out.entry(rest[..end].to_owned()).or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
    }
    out
}

/// The write counters, by their label set.
fn writes(metrics: &str) -> BTreeMap<String, f64> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("emporium_operator_api_writes_total"))
        .filter_map(|l| {
            let (labels, value) = l.rsplit_once(' ')?;
            Some((labels.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_summed_by_label() {
        let text = "# TYPE x counter\nx{kind=\"Store\"} 3\nx{kind=\"Store\",error=\"api\"} 2\nx{kind=\"PaymentProvider\"} 1\n";
        let sums = by_label(text, "x", "kind");
        assert_eq!(sums["Store"], 5.0);
        assert_eq!(sums["PaymentProvider"], 1.0);
    }
}
