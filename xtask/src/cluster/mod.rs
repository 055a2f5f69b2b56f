//! `cargo xtask cluster up|down`: a real Kubernetes control plane on
//! loopback — etcd, kube-apiserver, kube-controller-manager, kube-scheduler
//! built from upstream Go modules, and kwok simulating the nodes (pods get
//! scheduled, become Ready, Job pods complete; no container runs).
//!
//! `up` prints `export` lines (`eval "$(cargo xtask cluster up)"`): the
//! kubeconfig in `EMPORIUM_E2E_KUBECONFIG` (what the operator's e2e suite
//! reads) and `KUBECONFIG`. State, logs and certificates live in
//! `/tmp/emporium-cluster` (or `EMPORIUM_CLUSTER_DIR`); the built programs
//! in `$HOME/.cache/emporium/k8s/<version>/bin`.

pub mod build;
pub mod crds;
mod pki;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cmd::{self, step};

/// The variable the e2e suite and the benchmark read the kubeconfig from.
pub const KUBECONFIG_ENV: &str = "EMPORIUM_E2E_KUBECONFIG";

const ETCD_CLIENT: u16 = 23790;
const ETCD_PEER: u16 = 23800;
const APISERVER: u16 = 26443;
const KWOK_PORT: u16 = 26080;
/// Simulated nodes, and how many pods each takes.
const NODES: usize = 3;
const PODS_PER_NODE: usize = 400;

pub fn state_dir() -> PathBuf {
    std::env::var_os("EMPORIUM_CLUSTER_DIR")
        .map_or_else(|| PathBuf::from("/tmp/emporium-cluster"), PathBuf::from)
}

pub fn kubeconfig() -> PathBuf {
    state_dir().join("kubeconfig")
}

pub fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("up") => {
            let kubeconfig = up()?;
            let path = kubeconfig.display().to_string();
            println!("export {KUBECONFIG_ENV}={}", cmd::quote(&path));
            println!("export KUBECONFIG={}", cmd::quote(&path));
            Ok(())
        }
        Some("down") => down(),
        _ => bail!("usage: cargo xtask cluster up|down"),
    }
}

/// Starts the control plane unless it already answers; returns the kubeconfig.
pub fn up() -> Result<PathBuf> {
    // One `up` at a time on the machine (the e2e suite, the packaging
    // checks and the benchmark all call it): two racing would start two
    // control planes on the same ports and each stop the other's.
    let _lock = Lock::acquire()?;
    let bin = build::ensure()?;
    let dir = state_dir();
    if running(&dir) {
        step(
            "cluster",
            format!("already running; kubeconfig {}", kubeconfig().display()),
        );
        return Ok(kubeconfig());
    }
    // Whatever is left of an earlier run goes: every run starts empty.
    stop_processes(&dir)?;
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    for sub in ["pki", "logs", "pids", "etcd"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    let started = Instant::now();
    let pki = pki::generate(&dir.join("pki"))?;
    let token = pki::random_hex(16)?;
    fs::write(
        dir.join("tokens.csv"),
        format!("{token},admin,admin,system:masters\n"),
    )?;
    let kubeconfig = kubeconfig();
    fs::write(&kubeconfig, kubeconfig_yaml(&pki.ca_cert, &token))?;

    let etcd_url = format!("http://127.0.0.1:{ETCD_CLIENT}");
    spawn(
        &dir,
        &bin,
        "etcd",
        &[
            "--name=emporium",
            &format!("--data-dir={}", dir.join("etcd").display()),
            &format!("--listen-client-urls={etcd_url}"),
            &format!("--advertise-client-urls={etcd_url}"),
            &format!("--listen-peer-urls=http://127.0.0.1:{ETCD_PEER}"),
            &format!("--initial-advertise-peer-urls=http://127.0.0.1:{ETCD_PEER}"),
            &format!("--initial-cluster=emporium=http://127.0.0.1:{ETCD_PEER}"),
            "--unsafe-no-fsync",
            "--quota-backend-bytes=4294967296",
            "--log-level=warn",
        ],
    )?;
    let p = |path: &Path| path.display().to_string();
    spawn(
        &dir,
        &bin,
        "kube-apiserver",
        &[
            &format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1",
            &format!("--secure-port={APISERVER}"),
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
            &format!("--tls-cert-file={}", p(&pki.apiserver_cert)),
            &format!("--tls-private-key-file={}", p(&pki.apiserver_key)),
            &format!("--client-ca-file={}", p(&pki.ca_cert)),
            &format!("--token-auth-file={}", p(&dir.join("tokens.csv"))),
            "--authorization-mode=Node,RBAC",
            &format!(
                "--service-account-key-file={}",
                p(&pki.service_account_public)
            ),
            &format!(
                "--service-account-signing-key-file={}",
                p(&pki.service_account_key)
            ),
            "--service-account-issuer=https://kubernetes.default.svc",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--enable-priority-and-fairness=false",
            "--max-requests-inflight=1000",
            "--max-mutating-requests-inflight=500",
            "--profiling=false",
            "--v=1",
        ],
    )?;
    wait_for("the API server", Duration::from_secs(120), || {
        cmd::succeeds(kubectl(&kubeconfig).args(["get", "--raw", "/readyz"]))
    })?;
    spawn(
        &dir,
        &bin,
        "kube-controller-manager",
        &[
            &format!("--kubeconfig={}", p(&kubeconfig)),
            "--leader-elect=false",
            "--secure-port=0",
            "--controllers=*,-nodeipam,-service-lb-controller,-cloud-node-lifecycle,-persistentvolume-expander",
            &format!(
                "--service-account-private-key-file={}",
                p(&pki.service_account_key)
            ),
            &format!("--root-ca-file={}", p(&pki.ca_cert)),
            "--kube-api-qps=400",
            "--kube-api-burst=800",
            "--concurrent-deployment-syncs=20",
            "--concurrent-replicaset-syncs=20",
            "--concurrent-statefulset-syncs=20",
            "--concurrent-job-syncs=20",
            "--concurrent-gc-syncs=40",
            "--v=1",
        ],
    )?;
    spawn(
        &dir,
        &bin,
        "kube-scheduler",
        &[
            &format!("--kubeconfig={}", p(&kubeconfig)),
            "--leader-elect=false",
            "--secure-port=0",
            "--kube-api-qps=400",
            "--kube-api-burst=800",
            "--v=1",
        ],
    )?;
    spawn(
        &dir,
        &bin,
        "kwok",
        &[
            &format!("--kubeconfig={}", p(&kubeconfig)),
            &format!("--config={}", p(&build::stages_file())),
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--cidr=10.0.0.1/16",
            "--node-ip=10.0.0.1",
            &format!("--server-address=127.0.0.1:{KWOK_PORT}"),
            "--node-lease-duration-seconds=40",
        ],
    )?;

    let nodes = dir.join("nodes.yaml");
    fs::write(&nodes, nodes_yaml())?;
    cmd::run(kubectl(&kubeconfig).args(["apply", "-f"]).arg(&nodes))?;
    wait_for("the simulated nodes", Duration::from_secs(60), || {
        cmd::succeeds(kubectl(&kubeconfig).args([
            "wait",
            "--for=condition=Ready",
            "node",
            "--all",
            "--timeout=5s",
        ]))
    })?;
    wait_for(
        "the default ServiceAccount",
        Duration::from_secs(60),
        || {
            cmd::succeeds(kubectl(&kubeconfig).args([
                "get",
                "serviceaccount",
                "default",
                "-n",
                "default",
            ]))
        },
    )?;
    step(
        "cluster",
        format!(
            "up in {:.1}s; kubeconfig {}; logs in {}",
            started.elapsed().as_secs_f64(),
            kubeconfig.display(),
            dir.join("logs").display()
        ),
    );
    Ok(kubeconfig)
}

/// Stops what `up` started and removes its state.
pub fn down() -> Result<()> {
    let _lock = Lock::acquire()?;
    let dir = state_dir();
    stop_processes(&dir)?;
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    step("cluster", "down");
    Ok(())
}

pub fn kubectl(kubeconfig: &Path) -> Command {
    let mut command = Command::new("kubectl");
    command.arg("--kubeconfig").arg(kubeconfig);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

fn running(_dir: &Path) -> bool {
    build::PROGRAMS.iter().all(|p| !ours(p).is_empty())
        && cmd::succeeds(kubectl(&kubeconfig()).args(["get", "--raw", "/readyz"]))
}

/// The running processes of `program` that `up` started: the program from
/// our bin directory, with arguments that name our state directory.
fn ours(program: &str) -> Vec<u32> {
    let binary = build::bin_dir().join(program);
    let binary = binary.to_string_lossy();
    let state = state_dir();
    let state = state.to_string_lossy();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let mut args = cmdline.split(|b| *b == 0).map(String::from_utf8_lossy);
            args.next().is_some_and(|first| first == binary)
                && args.any(|arg| arg.contains(&*state))
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn spawn(dir: &Path, bin: &Path, program: &str, args: &[&str]) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let log = fs::File::create(dir.join("logs").join(format!("{program}.log")))?;
    let child = Command::new(bin.join(program))
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.join(program).display()))?;
    fs::write(
        dir.join("pids").join(format!("{program}.pid")),
        child.id().to_string(),
    )?;
    step("cluster", format!("started {program} (pid {})", child.id()));
    Ok(())
}

/// Stops, in reverse order, every process `up` started (found by its
/// command line, so a stale or overwritten pid file cannot mislead it).
fn stop_processes(_dir: &Path) -> Result<()> {
    for program in build::PROGRAMS.iter().rev() {
        for pid in ours(program) {
            step("cluster", format!("stopping {program} (pid {pid})"));
            let _ = Command::new("kill").arg(pid.to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if alive(pid) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
    Ok(())
}

/// An exclusive lock file beside the state directory, holding the pid of
/// the xtask that holds it; a lock whose process is gone is taken over.
struct Lock(PathBuf);

impl Lock {
    fn acquire() -> Result<Lock> {
        use std::io::Write;
        let path = state_dir().with_extension("lock");
        let deadline = Instant::now() + Duration::from_secs(45 * 60);
        let mut told = false;
        loop {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    write!(file, "{}", std::process::id())?;
                    return Ok(Lock(path));
                }
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = fs::read_to_string(&path)
                        .ok()
                        .and_then(|t| t.trim().parse::<u32>().ok());
                    match holder {
                        Some(pid) if alive(pid) => {
                            if !told {
                                step(
                                    "cluster",
                                    format!(
                                        "waiting for another `cargo xtask cluster` (pid {pid})"
                                    ),
                                );
                                told = true;
                            }
                            if Instant::now() > deadline {
                                bail!("{} is still held by pid {pid}", path.display());
                            }
                            std::thread::sleep(Duration::from_millis(500));
                        }
                        // Gone, or not written yet: give a writer a moment, then take over.
                        _ => {
                            std::thread::sleep(Duration::from_millis(200));
                            let again = fs::read_to_string(&path)
                                .ok()
                                .and_then(|t| t.trim().parse::<u32>().ok());
                            if again.is_none_or(|pid| !alive(pid)) {
                                let _ = fs::remove_file(&path);
                            }
                        }
                    }
                }
                Err(error) => {
                    return Err(error).with_context(|| format!("cannot create {}", path.display()));
                }
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

pub fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{what} not ready after {}s; see the logs in {}",
                limit.as_secs(),
                state_dir().join("logs").display()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn kubeconfig_yaml(ca: &Path, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: emporium-local
  cluster:
    server: https://127.0.0.1:{APISERVER}
    certificate-authority: {}
users:
- name: admin
  user:
    token: {token}
contexts:
- name: emporium-local
  context:
    cluster: emporium-local
    user: admin
    namespace: default
current-context: emporium-local
",
        ca.display()
    )
}

fn nodes_yaml() -> String {
    let mut out = String::new();
    for index in 0..NODES {
        out.push_str(&format!(
            "---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-{index}
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: \"0\"
  labels:
    type: kwok
    kubernetes.io/arch: amd64
    kubernetes.io/os: linux
    kubernetes.io/hostname: kwok-node-{index}
    kubernetes.io/role: agent
    topology.kubernetes.io/zone: zone-{index}
status:
  allocatable:
    cpu: \"64\"
    memory: 256Gi
    pods: \"{PODS_PER_NODE}\"
    ephemeral-storage: 1Ti
  capacity:
    cpu: \"64\"
    memory: 256Gi
    pods: \"{PODS_PER_NODE}\"
    ephemeral-storage: 1Ti
"
        ));
    }
    out
}
