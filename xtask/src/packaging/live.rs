//! The packaging checks on the local control plane (`cargo xtask cluster
//! up`: a real kube-apiserver, kwok simulating the nodes):
//!
//! 1. the CRDs of the chart, Argo CD's Application and the Prometheus
//!    Operator's ServiceMonitor are installed;
//! 2. every manifest under manifests/ (kustomizations rendered by kubectl)
//!    and the chart as rendered with the default and the full values pass
//!    `kubectl apply --dry-run=server`, and an invalid Store does not;
//! 3. `helm install` brings the operator's Deployment to Available;
//! 4. the chart's ServiceAccount may do what the operator needs and not
//!    more (`kubectl auth can-i`), and the operator binary, run out of
//!    cluster with a token of that ServiceAccount, reconciles the example
//!    Store to Ready without a single forbidden request;
//! 5. the same once `helm upgrade` limits the release to one namespace
//!    (`watchNamespaces`): rights there and nowhere else, the Store there
//!    Ready, and a Store in another namespace left alone.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::CHART;
// The release the install check makes, in its own namespace: its name keeps
// its cluster-wide objects (ClusterRoles) apart from anyone else's.
use super::chart::{FULL_VALUES_WATCHED, NAMESPACE as RELEASE_NAMESPACE, RELEASE, Rendered};
use crate::cmd::{self, step};

/// CRDs beyond Emporium's own that the manifests and the chart use.
pub struct ExtraCrds {
    pub argo_cd_application: PathBuf,
    pub service_monitor: PathBuf,
}

/// The chart's full name for that release (and so its ServiceAccount,
/// Deployment and Lease).
const FULLNAME: &str = "packaging-check-emporium-operator";
/// Where the out-of-cluster operator reconciles the example shop.
const SHOP_NAMESPACE: &str = "emporium-packaging-shop";
/// The namespace a namespace-scoped release watches, and one it does not.
const WATCHED_NAMESPACE: &str = "emporium-packaging-watched";
const UNWATCHED_NAMESPACE: &str = "emporium-packaging-unwatched";
/// How long the example Store may take to become Ready (two cores, kwok).
const STORE_READY: Duration = Duration::from_secs(300);

pub fn check(root: &Path, helm: &Path, crds: &ExtraCrds, rendered: &Rendered) -> Result<()> {
    let kubeconfig = crate::cluster::up()?;
    let kubectl = |args: &[&str]| {
        let mut command = Command::new("kubectl");
        command.arg("--kubeconfig").arg(&kubeconfig).args(args);
        command
    };

    // 1. CRDs.
    let chart_crds = root.join(CHART).join("crds/emporium.dev.yaml");
    for file in [
        &chart_crds,
        &crds.argo_cd_application,
        &crds.service_monitor,
    ] {
        cmd::run(kubectl(&["apply", "--server-side", "--force-conflicts", "-f"]).arg(file))?;
    }
    cmd::run(&mut kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/stores.emporium.dev",
        "crd/servicedeployments.emporium.dev",
        "crd/paymentproviders.emporium.dev",
        "crd/applications.argoproj.io",
        "crd/servicemonitors.monitoring.coreos.com",
    ]))?;
    // Namespaces the manifests name (a dry run cannot create them first).
    for namespace in ["argocd", "emporium-system", RELEASE_NAMESPACE]
        .into_iter()
        .chain(FULL_VALUES_WATCHED)
    {
        ensure_namespace(&kubectl, namespace)?;
    }

    // 2. Server-side dry runs.
    let started = Instant::now();
    let (objects, files) = dry_run_everything(root, rendered, &kubectl)?;
    step(
        "packaging",
        format!(
            "{objects} objects in {files} manifests passed `kubectl apply --dry-run=server` in {:.1}s",
            started.elapsed().as_secs_f64()
        ),
    );
    invalid_store_is_rejected(&kubectl)?;

    // 3. helm install.
    let started = Instant::now();
    install_chart(root, helm, &kubeconfig, &kubectl)?;
    step(
        "packaging",
        format!(
            "helm install: Deployment {FULLNAME} Available ({:.1}s)",
            started.elapsed().as_secs_f64()
        ),
    );

    // 4. RBAC, cluster-wide.
    rbac_is_least_privilege(&kubectl)?;
    let started = Instant::now();
    reconcile_as_service_account(root, &kubeconfig, &kubectl, SHOP_NAMESPACE, None)?;
    step(
        "packaging",
        format!(
            "the operator as system:serviceaccount:{RELEASE_NAMESPACE}:{FULLNAME} made the example Store Ready ({:.1}s)",
            started.elapsed().as_secs_f64()
        ),
    );

    // 5. RBAC and reconciling, one namespace only.
    for namespace in [WATCHED_NAMESPACE, UNWATCHED_NAMESPACE] {
        fresh_namespace(&kubectl, namespace)?;
    }
    cmd::run(
        helm_command(helm, &kubeconfig)
            .args(["upgrade", RELEASE])
            .arg(root.join(CHART))
            .args([
                "--namespace",
                RELEASE_NAMESPACE,
                "--reuse-values",
                "--set",
                &format!("watchNamespaces={{{WATCHED_NAMESPACE}}}"),
                "--wait",
                "--timeout",
                "3m",
            ]),
    )?;
    rbac_is_namespaced(&kubectl)?;
    let started = Instant::now();
    reconcile_as_service_account(
        root,
        &kubeconfig,
        &kubectl,
        WATCHED_NAMESPACE,
        Some(UNWATCHED_NAMESPACE),
    )?;
    step(
        "packaging",
        format!(
            "with watchNamespaces={WATCHED_NAMESPACE}, the operator made the Store there Ready and left the one in {UNWATCHED_NAMESPACE} alone ({:.1}s)",
            started.elapsed().as_secs_f64()
        ),
    );
    cleanup(helm, &kubeconfig, &kubectl);
    Ok(())
}

/// `name`, empty: deleted first if an earlier run left it.
fn fresh_namespace(kubectl: &impl Fn(&[&str]) -> Command, name: &str) -> Result<()> {
    if cmd::succeeds(&mut kubectl(&["get", "namespace", name])) {
        cmd::run(&mut kubectl(&[
            "delete",
            "namespace",
            name,
            "--wait=true",
            "--timeout=120s",
        ]))?;
    }
    cmd::run(&mut kubectl(&["create", "namespace", name]))
}

fn ensure_namespace(kubectl: &impl Fn(&[&str]) -> Command, name: &str) -> Result<()> {
    if !cmd::succeeds(&mut kubectl(&["get", "namespace", name])) {
        cmd::run(&mut kubectl(&["create", "namespace", name]))?;
    }
    Ok(())
}

/// Every YAML and JSON object under manifests/ and the rendered chart.
/// Returns (objects, files).
fn dry_run_everything(
    root: &Path,
    rendered: &Rendered,
    kubectl: &impl Fn(&[&str]) -> Command,
) -> Result<(usize, usize)> {
    let mut files = Vec::new();
    let mut kustomizations = Vec::new();
    collect(&root.join("manifests"), &mut files, &mut kustomizations)?;
    files.sort();
    kustomizations.sort();
    let mut failures = Vec::new();
    let mut objects = 0;
    let mut count = 0;
    let mut dry_run = |flag: &str, path: &Path| -> Result<()> {
        let shown = path
            .strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string();
        let mut command = kubectl(&["apply", "--dry-run=server", flag]);
        command.arg(path);
        super::echo(&command);
        let output = command.stdin(Stdio::null()).output()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        count += 1;
        if output.status.success() {
            let n = stdout
                .lines()
                .filter(|l| l.contains("(server dry run)"))
                .count();
            objects += n;
            eprintln!("    ok  {shown}: {n} objects");
        } else {
            failures.push(format!(
                "{shown}:\n{}{}",
                stdout,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(())
    };
    for file in &files {
        dry_run("-f", file)?;
    }
    for dir in &kustomizations {
        dry_run("-k", dir)?;
    }
    dry_run("-f", &rendered.default)?;
    dry_run("-f", &rendered.full)?;
    if !failures.is_empty() {
        bail!(
            "{} of {count} manifests fail `kubectl apply --dry-run=server`:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok((objects, count))
}

/// Manifests: `*.yaml`, `*.yml` and `*.json` files that hold Kubernetes
/// objects; a folder with a `kustomization.yaml` is also applied with `-k`.
fn collect(dir: &Path, files: &mut Vec<PathBuf>, kustomizations: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, files, kustomizations)?;
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        match name {
            "kustomization.yaml" | "kustomization.yml" => kustomizations.push(dir.to_path_buf()),
            // Argo CD's health-check expectations, not objects.
            "health_test.yaml" => {}
            _ if name.ends_with(".yaml") || name.ends_with(".yml") => files.push(path),
            _ if name.ends_with(".json") => files.push(path),
            _ => {}
        }
    }
    Ok(())
}

/// The dry runs validate against the CRDs' schemas: a Store with both a
/// managed and an external database must fail with the CEL rule's message.
fn invalid_store_is_rejected(kubectl: &impl Fn(&[&str]) -> Command) -> Result<()> {
    let store = r#"{
  "apiVersion": "emporium.dev/v1alpha1",
  "kind": "Store",
  "metadata": {"name": "invalid"},
  "spec": {
    "image": {"tag": "0.1.0"},
    "database": {"managed": {}, "external": {"secretName": "db"}},
    "cache": {"managed": {}},
    "messaging": {"managed": {}},
    "paymentProviderRef": {"name": "sandbox"}
  }
}"#;
    let mut command = kubectl(&["apply", "--dry-run=server", "-f", "-"]);
    super::echo(&command);
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("a piped stdin")
        .write_all(store.as_bytes())?;
    let output = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() || !stderr.contains("set exactly one of managed or external") {
        bail!(
            "a Store with a managed and an external database was not rejected by the dry run \
             with the CRD's message:\n{}{stderr}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
    step(
        "packaging",
        "an invalid Store fails the dry run with the CRD's CEL message",
    );
    Ok(())
}

fn helm_command(helm: &Path, kubeconfig: &Path) -> Command {
    let mut command = Command::new(helm);
    command.arg("--kubeconfig").arg(kubeconfig);
    command
}

/// `helm install` with two replicas (so the PodDisruptionBudget is made
/// too), then the Deployment must be Available with every replica ready.
fn install_chart(
    root: &Path,
    helm: &Path,
    kubeconfig: &Path,
    kubectl: &impl Fn(&[&str]) -> Command,
) -> Result<()> {
    // What an earlier run left.
    let _ = cmd::status(helm_command(helm, kubeconfig).args([
        "uninstall",
        RELEASE,
        "--namespace",
        RELEASE_NAMESPACE,
        "--ignore-not-found",
        "--wait",
    ]));
    cmd::run(
        helm_command(helm, kubeconfig)
            .args(["install", RELEASE])
            .arg(root.join(CHART))
            .args([
                "--namespace",
                RELEASE_NAMESPACE,
                "--create-namespace",
                "--set",
                "replicaCount=2",
                "--wait",
                "--timeout",
                "3m",
            ]),
    )?;
    let deployment = format!("deployment/{FULLNAME}");
    cmd::run(&mut kubectl(&[
        "wait",
        "-n",
        RELEASE_NAMESPACE,
        "--for=condition=Available",
        "--timeout=120s",
        &deployment,
    ]))?;
    let ready = cmd::capture(&mut kubectl(&[
        "get",
        "-n",
        RELEASE_NAMESPACE,
        &deployment,
        "-o",
        "jsonpath={.status.readyReplicas}/{.spec.replicas}",
    ]))?;
    if ready.trim() != "2/2" {
        bail!("{deployment} has {ready} replicas ready, expected 2/2");
    }
    for object in [
        format!("poddisruptionbudget/{FULLNAME}"),
        format!("service/{FULLNAME}-metrics"),
        format!("role/{FULLNAME}-leader-election"),
    ] {
        cmd::run(&mut kubectl(&["get", "-n", RELEASE_NAMESPACE, &object]))?;
    }
    Ok(())
}

/// What the chart's ServiceAccount may and may not do.
fn rbac_is_least_privilege(kubectl: &impl Fn(&[&str]) -> Command) -> Result<()> {
    let allowed: &[&[&str]] = &[
        &["watch", "stores.emporium.dev", "-A"],
        &["patch", "stores.emporium.dev", "--subresource=status", "-A"],
        &["patch", "servicedeployments.emporium.dev", "-A"],
        &["patch", "deployments.apps", "-A"],
        &["delete", "jobs.batch", "-A"],
        &["create", "secrets", "-A"],
        &["watch", "secrets", "-A"],
        &["create", "events.events.k8s.io", "-A"],
        &[
            "update",
            "leases.coordination.k8s.io",
            "-n",
            RELEASE_NAMESPACE,
        ],
    ];
    let denied: &[&[&str]] = &[
        &["update", "stores.emporium.dev", "-A"],
        &["delete", "stores.emporium.dev", "-A"],
        &["update", "secrets", "-A"],
        &["delete", "secrets", "-A"],
        &["create", "pods", "-A"],
        &["get", "nodes"],
        &["create", "clusterroles.rbac.authorization.k8s.io"],
        &["update", "leases.coordination.k8s.io", "-n", "default"],
        &["create", "customresourcedefinitions.apiextensions.k8s.io"],
    ];
    can_i(kubectl, allowed, denied)
}

/// With `watchNamespaces`, the same rights in the watched namespace and
/// none to the shops' objects anywhere else.
fn rbac_is_namespaced(kubectl: &impl Fn(&[&str]) -> Command) -> Result<()> {
    let w = WATCHED_NAMESPACE;
    let u = UNWATCHED_NAMESPACE;
    let allowed: &[&[&str]] = &[
        &["watch", "stores.emporium.dev", "-n", w],
        &[
            "patch",
            "stores.emporium.dev",
            "--subresource=status",
            "-n",
            w,
        ],
        &["patch", "deployments.apps", "-n", w],
        &["create", "secrets", "-n", w],
        &["watch", "secrets", "-n", w],
        &["create", "events.events.k8s.io", "-n", w],
        &[
            "update",
            "leases.coordination.k8s.io",
            "-n",
            RELEASE_NAMESPACE,
        ],
    ];
    let denied: &[&[&str]] = &[
        &["watch", "stores.emporium.dev", "-A"],
        &["watch", "stores.emporium.dev", "-n", u],
        &[
            "patch",
            "stores.emporium.dev",
            "--subresource=status",
            "-n",
            u,
        ],
        &["patch", "deployments.apps", "-n", u],
        &["create", "secrets", "-n", u],
        &["watch", "secrets", "-A"],
        &["update", "secrets", "-n", w],
        &["delete", "stores.emporium.dev", "-n", w],
    ];
    can_i(kubectl, allowed, denied)
}

/// `kubectl auth can-i` as the chart's ServiceAccount: yes to each of
/// `allowed`, no to each of `denied`.
fn can_i(
    kubectl: &impl Fn(&[&str]) -> Command,
    allowed: &[&[&str]],
    denied: &[&[&str]],
) -> Result<()> {
    let service_account = format!("system:serviceaccount:{RELEASE_NAMESPACE}:{FULLNAME}");
    let mut wrong = Vec::new();
    for (expected, cases) in [(true, allowed), (false, denied)] {
        for case in cases {
            let mut args = vec!["auth", "can-i", "--as", &service_account];
            args.extend_from_slice(case);
            let mut command = kubectl(&args);
            // `can-i` exits 1 for "no": read its answer.
            let output = command.stdin(Stdio::null()).output()?;
            let answer = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            if (answer == "yes") != expected {
                wrong.push(format!(
                    "{}: {answer}, expected {}",
                    case.join(" "),
                    if expected { "yes" } else { "no" }
                ));
            }
        }
    }
    if !wrong.is_empty() {
        bail!(
            "the chart's RBAC grants {service_account} the wrong rights:\n  {}",
            wrong.join("\n  ")
        );
    }
    step(
        "packaging",
        format!(
            "RBAC: {} allowed and {} denied requests as expected for {service_account}",
            allowed.len(),
            denied.len()
        ),
    );
    Ok(())
}

/// The operator, out of cluster, authenticated with a token of the chart's
/// ServiceAccount (a TokenRequest), holding the chart's Lease: the example
/// payment provider and Store in `shop` must become Ready, and the
/// operator's log must show no forbidden request. With `unwatched`, the
/// operator watches `shop` alone, and the same Store applied in `unwatched`
/// must get neither a status nor a child.
fn reconcile_as_service_account(
    root: &Path,
    kubeconfig: &Path,
    kubectl: &impl Fn(&[&str]) -> Command,
    shop: &str,
    unwatched: Option<&str>,
) -> Result<()> {
    let operator = build_operator(root)?;
    let dir = super::work_dir()?;

    let token = cmd::capture(&mut kubectl(&[
        "create",
        "token",
        FULLNAME,
        "-n",
        RELEASE_NAMESPACE,
        "--duration=1h",
    ]))?;
    let admin = fs::read_to_string(kubeconfig)?;
    let as_operator = with_token(&admin, token.trim())
        .context("the local control plane's kubeconfig has no `token:` line")?;
    let operator_kubeconfig = dir.join("operator.kubeconfig");
    fs::write(&operator_kubeconfig, as_operator)?;

    // A fresh shop namespace (unless the release binds its rights in it
    // already), with volumes for the managed backing stores' claims (kwok
    // has no volume provisioner).
    if unwatched.is_none() {
        fresh_namespace(kubectl, shop)?;
    }
    let volumes = dir.join("volumes.json");
    fs::write(&volumes, volumes_json(shop, "demo"))?;
    cmd::run(&mut kubectl(&[
        "delete",
        "persistentvolumes",
        "-l",
        &format!("emporium.dev/packaging={shop}"),
        "--ignore-not-found",
    ]))?;
    cmd::run(kubectl(&["create", "-f"]).arg(&volumes))?;

    let log_path = dir.join(format!("operator-as-service-account-{shop}.log"));
    let log = fs::File::create(&log_path)?;
    let mut command = Command::new(&operator);
    command
        .args(["run", "--exit-with-stdin"])
        .env("KUBECONFIG", &operator_kubeconfig)
        .env("POD_NAMESPACE", RELEASE_NAMESPACE)
        .env("POD_NAME", "packaging-check-out-of-cluster")
        .env("EMPORIUM_OPERATOR_LEASE", FULLNAME)
        .env(
            "EMPORIUM_OPERATOR_LISTEN",
            format!("127.0.0.1:{}", free_port()?),
        )
        .env("EMPORIUM_WATCH_NAMESPACES", unwatched.map_or("", |_| shop))
        .env("RUST_LOG", "info,kube=warn")
        .stdin(Stdio::piped())
        .stdout(log.try_clone()?)
        .stderr(log);
    super::echo(&command);
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {}", operator.display()))?;
    let mut running = Running { child };

    let examples = root.join("manifests/examples");
    for namespace in std::iter::once(shop).chain(unwatched) {
        for file in ["payment-provider-sandbox.yaml", "store.yaml"] {
            cmd::run(kubectl(&["apply", "-n", namespace, "-f"]).arg(examples.join(file)))?;
        }
    }
    let mut outcome = wait_ready(kubectl, &mut running, shop);
    if let (Ok(()), Some(other)) = (&outcome, unwatched) {
        outcome = left_alone(kubectl, other);
    }
    running.stop();
    let log = fs::read_to_string(&log_path).unwrap_or_default();
    // RBAC's refusals read `… is forbidden: User "system:serviceaccount:…"
    // cannot <verb> resource …` (other 403s, such as writes into a namespace
    // being deleted, are not about rights).
    let forbidden: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("is forbidden: User") && l.contains(" cannot "))
        .collect();
    match outcome {
        Err(error) => bail!(
            "{error:#}\nthe operator's log ({}) ends:\n{}",
            log_path.display(),
            tail(&log, 30)
        ),
        Ok(()) if !forbidden.is_empty() => bail!(
            "the operator reached Ready, but the API server refused it {} times; the first:\n{}",
            forbidden.len(),
            forbidden[0]
        ),
        Ok(()) => {}
    }
    Ok(())
}

/// A namespace the operator does not watch: its Store and PaymentProvider
/// have no status and nothing was made for them.
fn left_alone(kubectl: &impl Fn(&[&str]) -> Command, namespace: &str) -> Result<()> {
    let statuses = cmd::capture(&mut kubectl(&[
        "get",
        "-n",
        namespace,
        "store/demo",
        "paymentprovider/sandbox",
        "-o",
        "jsonpath={.items[*].status}",
    ]))?;
    let children = cmd::capture(&mut kubectl(&[
        "get",
        "-n",
        namespace,
        "servicedeployments,statefulsets,jobs,configmaps,services,secrets",
        "-l",
        "app.kubernetes.io/managed-by=emporium-operator",
        "-o",
        "name",
    ]))?;
    if !statuses.trim().is_empty() || !children.trim().is_empty() {
        bail!(
            "the operator, watching {WATCHED_NAMESPACE} only, touched {namespace}: statuses `{}`, children `{}`",
            statuses.trim(),
            children.trim().replace('\n', " ")
        );
    }
    Ok(())
}

/// Polls the Store in `namespace`, printing each new phase, until Ready.
fn wait_ready(
    kubectl: &impl Fn(&[&str]) -> Command,
    running: &mut Running,
    namespace: &str,
) -> Result<()> {
    let deadline = Instant::now() + STORE_READY;
    let mut last = String::new();
    loop {
        if let Some(status) = running.child.try_wait()? {
            bail!("the operator exited ({status})");
        }
        let mut get = kubectl(&[
            "get",
            "-n",
            namespace,
            "store/demo",
            "-o",
            r#"jsonpath={.status.phase}|{.status.conditions[?(@.type=="Ready")].status}|{.status.conditions[?(@.type=="Ready")].message}"#,
        ]);
        let now = get
            .stdin(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        if now != last {
            if !now.trim_matches('|').is_empty() {
                step("store", now.replace('|', "  "));
            }
            last.clone_from(&now);
        }
        if now.split('|').nth(1) == Some("True") {
            let provider = cmd::capture(&mut kubectl(&[
                "get",
                "-n",
                namespace,
                "paymentprovider/sandbox",
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
            ]))?;
            if provider.trim() != "True" {
                bail!("the Store is Ready but PaymentProvider sandbox is not ({provider})");
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "Store demo not Ready after {}s (last: {last})",
                STORE_READY.as_secs()
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Removes what the install and RBAC checks made (failures leave it for a look).
fn cleanup(helm: &Path, kubeconfig: &Path, kubectl: &impl Fn(&[&str]) -> Command) {
    for namespace in [SHOP_NAMESPACE, WATCHED_NAMESPACE, UNWATCHED_NAMESPACE] {
        let _ = cmd::status(&mut kubectl(&[
            "delete",
            "namespace",
            namespace,
            "--wait=false",
        ]));
        let _ = cmd::status(&mut kubectl(&[
            "delete",
            "persistentvolumes",
            "-l",
            &format!("emporium.dev/packaging={namespace}"),
            "--wait=false",
        ]));
    }
    let _ = cmd::status(helm_command(helm, kubeconfig).args([
        "uninstall",
        RELEASE,
        "--namespace",
        RELEASE_NAMESPACE,
        "--wait",
    ]));
}

/// The operator process; stopped (stdin closed, then killed) when dropped.
struct Running {
    child: Child,
}

impl Running {
    fn stop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `cargo build` of the operator binary; its path.
fn build_operator(root: &Path) -> Result<PathBuf> {
    cmd::run(Command::new("cargo").current_dir(root).args([
        "build",
        "-p",
        "operator",
        "--bin",
        "emporium-operator",
    ]))
    .context("the operator does not build")?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(target.join("debug/emporium-operator"))
}

/// The admin kubeconfig with its token replaced.
pub fn with_token(kubeconfig: &str, token: &str) -> Option<String> {
    let mut replaced = false;
    let text: String = kubeconfig
        .lines()
        .map(|line| match line.split_once("token:") {
            Some((indent, _)) if indent.trim().is_empty() => {
                replaced = true;
                format!("{indent}token: {token}\n")
            }
            _ => format!("{line}\n"),
        })
        .collect();
    replaced.then_some(text)
}

/// PersistentVolumes pre-bound to the claims the managed backing stores of
/// Store `store` make (`data-<store>-<backing>-0`).
pub fn volumes_json(namespace: &str, store: &str) -> String {
    let items: Vec<serde_json::Value> = ["postgres", "redis", "rabbitmq"]
        .iter()
        .map(|backing| {
            let name = format!("{namespace}-{store}-{backing}");
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": name, "labels": {"emporium.dev/packaging": namespace}},
                "spec": {
                    "capacity": {"storage": "10Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "hostPath": {"path": format!("/tmp/emporium-packaging-volumes/{name}")},
                    "claimRef": {"namespace": namespace, "name": format!("data-{store}-{backing}-0")},
                },
            })
        })
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": items,
    }))
    .expect("JSON")
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_name_is_the_charts_for_the_release() {
        // templates/_helpers.tpl: "<release>-<chart>" unless the release
        // name contains the chart's name.
        assert_eq!(FULLNAME, format!("{RELEASE}-emporium-operator"));
    }

    #[test]
    fn the_token_line_is_replaced() {
        let admin = "users:\n- name: admin\n  user:\n    token: abc\ncontexts: []\n";
        assert_eq!(
            with_token(admin, "xyz").unwrap(),
            "users:\n- name: admin\n  user:\n    token: xyz\ncontexts: []\n"
        );
        assert!(with_token("users: []\n", "xyz").is_none());
    }

    #[test]
    fn volumes_are_bound_to_the_backing_stores_claims() {
        let list: serde_json::Value = serde_json::from_str(&volumes_json("shop", "demo")).unwrap();
        let claims: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["spec"]["claimRef"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            claims,
            [
                "data-demo-postgres-0",
                "data-demo-redis-0",
                "data-demo-rabbitmq-0"
            ]
        );
    }
}
