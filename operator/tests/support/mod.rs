//! The e2e suite's harness: a client for the local control plane
//! (`cargo xtask cluster up`, kubeconfig in `EMPORIUM_E2E_KUBECONFIG`), the
//! CRDs installed once, one operator process shared by the tests, and a
//! namespace per test.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, PersistentVolume};
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;

pub const KUBECONFIG_ENV: &str = "EMPORIUM_E2E_KUBECONFIG";
/// How long anything may take to converge on this (two-core) machine.
pub const CONVERGE: Duration = Duration::from_secs(180);

pub fn kubeconfig() -> PathBuf {
    match std::env::var_os(KUBECONFIG_ENV) {
        Some(path) => PathBuf::from(path),
        None => panic!(
            "{KUBECONFIG_ENV} is not set: start the local control plane with \
             `eval \"$(cargo xtask cluster up)\"` (or run `cargo xtask test`)"
        ),
    }
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub async fn client() -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig()).expect("a readable kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig");
    Client::try_from(config).expect("a client")
}

/// `kubectl --kubeconfig … ARGS`, returning (success, stdout, stderr).
pub fn kubectl(args: &[&str]) -> (bool, String, String) {
    let output = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("kubectl on PATH");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

pub fn kubectl_ok(args: &[&str]) -> String {
    let (ok, out, err) = kubectl(args);
    assert!(ok, "kubectl {} failed:\n{out}\n{err}", args.join(" "));
    out
}

/// Installs the committed CRDs once and waits until they are served.
pub fn install_crds() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let file = root().join("crds/emporium.dev.yaml");
        kubectl_ok(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            file.to_str().unwrap(),
        ]);
        kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/stores.emporium.dev",
            "crd/servicedeployments.emporium.dev",
            "crd/paymentproviders.emporium.dev",
        ]);
    });
}

/// A running operator process; killed when dropped, and it exits by itself
/// when this test process goes (it watches its stdin).
pub struct Operator {
    child: Child,
    pub port: u16,
    pub identity: String,
    log: PathBuf,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The lease every operator of this test run competes for.
pub fn lease_name() -> String {
    format!("emporium-operator-e2e-{}", std::process::id())
}

/// The operator's namespace, ServiceAccount and least-privilege RBAC from
/// `manifests/examples/operator.yaml`, and a kubeconfig that acts as that
/// ServiceAccount: the suite's operators run with exactly those rights.
pub fn operator_kubeconfig() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let manifest = root().join("manifests/examples/operator.yaml");
        kubectl_ok(&["apply", "-f", manifest.to_str().unwrap()]);
        let token = kubectl_ok(&[
            "create",
            "token",
            "emporium-operator",
            "-n",
            OPERATOR_NAMESPACE,
            "--duration=4h",
        ]);
        let admin = std::fs::read_to_string(kubeconfig()).expect("the kubeconfig");
        let as_operator: String = admin
            .lines()
            .map(|line| match line.split_once("token:") {
                Some((indent, _)) => format!("{indent}token: {}\n", token.trim()),
                None => format!("{line}\n"),
            })
            .collect();
        let path = std::env::temp_dir().join(format!(
            "emporium-e2e-operator-{}.kubeconfig",
            std::process::id()
        ));
        std::fs::write(&path, as_operator).unwrap();
        path
    })
    .clone()
}

/// Where the operator's Lease lives (its Role allows no other namespace).
pub const OPERATOR_NAMESPACE: &str = "emporium-system";

pub fn start_operator(identity: &str) -> Operator {
    start_operator_on_lease(identity, &lease_name())
}

pub fn start_operator_on_lease(identity: &str, lease: &str) -> Operator {
    let port = free_port();
    let log = std::env::temp_dir().join(format!(
        "emporium-e2e-{identity}-{}.log",
        std::process::id()
    ));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_emporium-operator"))
        .args(["run", "--exit-with-stdin"])
        .env("KUBECONFIG", operator_kubeconfig())
        .env("EMPORIUM_OPERATOR_LISTEN", format!("127.0.0.1:{port}"))
        .env("POD_NAMESPACE", OPERATOR_NAMESPACE)
        .env("POD_NAME", identity)
        .env("EMPORIUM_OPERATOR_LEASE", lease)
        .env("RUST_LOG", "info,kube=warn")
        .stdin(Stdio::piped())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("the operator binary");
    Operator {
        child,
        port,
        identity: identity.to_owned(),
        log,
    }
}

impl Operator {
    /// The operator's `/metrics` text.
    pub fn metrics(&self) -> String {
        http_get(self.port, "/metrics").unwrap_or_default()
    }

    /// The sum of a counter over all its label sets.
    pub fn counter(&self, name: &str) -> f64 {
        sum_counter(&self.metrics(), name)
    }

    /// Writes to the API, by `verb resource`, leaving out the Lease
    /// renewals (leader election writes every few seconds by design).
    pub fn writes(&self) -> BTreeMap<String, f64> {
        self.metrics()
            .lines()
            .filter(|l| {
                l.starts_with("emporium_operator_api_writes_total{")
                    && !l.contains("resource=\"leases\"")
            })
            .filter_map(|l| {
                let (labels, value) = l.rsplit_once(' ')?;
                Some((
                    labels
                        .trim_start_matches("emporium_operator_api_writes_total")
                        .to_owned(),
                    value.parse().ok()?,
                ))
            })
            .collect()
    }

    /// The writes once none has happened for `quiet`: trailing watch
    /// events (a Deployment's status catching up after a rollback, say)
    /// still make real changes for a while after a resource reads Ready.
    pub async fn settled_writes(&self, quiet: Duration, limit: Duration) -> BTreeMap<String, f64> {
        let deadline = Instant::now() + limit;
        let mut last = self.writes();
        let mut since = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = self.writes();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return last;
            }
            assert!(
                Instant::now() < deadline,
                "the operator kept writing for {limit:?}: {last:?}"
            );
        }
    }

    /// Asks the operator to stop (SIGTERM), as Kubernetes does.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        // Not `wait`: it closes stdin first, and a closed stdin exits the
        // operator before its graceful shutdown has run.
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_leader(&self) -> bool {
        self.metrics().contains("emporium_operator_leader 1")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

pub fn sum_counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A minimal HTTP/1.0 GET on loopback.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    Some(body.to_owned())
}

/// The operator all tests share: started once, leader of the run's Lease.
pub fn shared_operator() -> &'static Operator {
    static OPERATOR: OnceLock<Operator> = OnceLock::new();
    OPERATOR.get_or_init(|| {
        install_crds();
        let operator = start_operator("e2e-leader");
        let deadline = Instant::now() + Duration::from_secs(60);
        while sum_counter(&operator.metrics(), "emporium_operator_leader") < 1.0 {
            assert!(
                Instant::now() < deadline,
                "the operator did not take the lease:\n{}",
                operator.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        operator
    })
}

/// Polls `check` until it returns Some, or fails after `limit` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A fresh namespace for one test, deleted when dropped.
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    pub async fn new(client: &Client, test: &str) -> TestNamespace {
        let name = format!("e2e-{test}-{}", std::process::id());
        let api: Api<Namespace> = Api::all(client.clone());
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        api.create(&PostParams::default(), &namespace)
            .await
            .expect("a namespace");
        TestNamespace { name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig())
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// kwok has no volume provisioner: PersistentVolumes pre-bound to the
/// claims a Store's managed backing stores will make.
pub async fn volumes_for(client: &Client, namespace: &str, store: &str) {
    let api: Api<PersistentVolume> = Api::all(client.clone());
    for backing in ["postgres", "redis", "rabbitmq"] {
        let name = format!("{namespace}-{store}-{backing}");
        let volume: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"emporium.dev/e2e": namespace}},
            "spec": {
                "capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": format!("/tmp/emporium-e2e-volumes/{name}")},
                "claimRef": {"namespace": namespace, "name": format!("data-{store}-{backing}-0")},
            },
        }))
        .unwrap();
        let _ = api.delete(&name, &DeleteParams::default()).await;
        api.create(&PostParams::default(), &volume)
            .await
            .expect("a PersistentVolume");
    }
}

pub async fn delete_volumes(client: &Client, namespace: &str) {
    let api: Api<PersistentVolume> = Api::all(client.clone());
    let _ = api
        .delete_collection(
            &DeleteParams::default(),
            &kube::api::ListParams::default().labels(&format!("emporium.dev/e2e={namespace}")),
        )
        .await;
}

/// Reads lines of a process's log until one contains `needle`.
pub fn log_contains(path: &Path, needle: &str) -> bool {
    std::fs::File::open(path)
        .map(|f| {
            BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .any(|l| l.contains(needle))
        })
        .unwrap_or(false)
}
