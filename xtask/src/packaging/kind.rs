//! `cargo xtask kind-up` / `kind-down`: Emporium on a kind cluster on your
//! own machine (needs Docker, kind, kubectl, helm and curl).
//!
//! kind-up: create the cluster from kind-config.yaml, build both images
//! from the Dockerfile, `kind load` them, `helm install` the operator's
//! chart, apply the sandbox PaymentProvider and a Store that runs the
//! images just built with its gateway on a NodePort, wait for the Store to
//! be Ready, then walk through the shop from the host: sign in as the
//! shop's admin, add a product, register a customer, list the products,
//! fill the cart, place an order and see it confirmed.
//!
//! `--dry-run` prints every command instead of running it (values that an
//! earlier command would print appear as `$NAME`).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::cmd::{self, step};

pub const CLUSTER: &str = "emporium";
const CONTEXT: &str = "kind-emporium";
const SERVICES_IMAGE: &str = "ghcr.io/emporium/emporium";
const OPERATOR_IMAGE: &str = "ghcr.io/emporium/emporium-operator";
/// The tag kind-up builds and loads.
const TAG: &str = "dev";
const OPERATOR_NAMESPACE: &str = "emporium-system";
const SHOP_NAMESPACE: &str = "shop";
/// kind-config.yaml maps this host port to the gateway's NodePort 30080.
const GATEWAY: &str = "http://127.0.0.1:8080";
const STORE_READY: Duration = Duration::from_secs(900);

const TOOLS: [(&str, &str); 5] = [
    (
        "docker",
        "Docker Engine or Docker Desktop: https://docs.docker.com/get-docker/",
    ),
    (
        "kind",
        "kind: https://kind.sigs.k8s.io/docs/user/quick-start/#installation",
    ),
    (
        "kubectl",
        "kubectl: https://kubernetes.io/docs/tasks/tools/",
    ),
    ("helm", "helm 3: https://helm.sh/docs/intro/install/"),
    ("curl", "curl, from your system's packages"),
];

/// Runs commands, or prints them.
struct Plan {
    dry_run: bool,
}

impl Plan {
    fn run(&self, command: &mut Command) -> Result<()> {
        if self.dry_run {
            println!("{}", cmd::display(command));
            Ok(())
        } else {
            cmd::run(command)
        }
    }

    /// Runs a command with `input` on its stdin.
    fn run_with_input(&self, command: &mut Command, input: &str) -> Result<()> {
        if self.dry_run {
            println!("{} <<'EOF'\n{input}\nEOF", cmd::display(command));
            return Ok(());
        }
        eprintln!("    $ {}", cmd::display(command));
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(std::io::stderr())
            .spawn()
            .with_context(|| format!("cannot run `{}`", cmd::display(command)))?;
        child
            .stdin
            .take()
            .expect("a piped stdin")
            .write_all(input.as_bytes())?;
        let status = child.wait()?;
        if !status.success() {
            bail!("`{}` failed ({status})", cmd::display(command));
        }
        Ok(())
    }

    /// A command's output; `$NAME` when only printing.
    fn capture(&self, name: &str, command: &mut Command) -> Result<String> {
        if self.dry_run {
            println!("{name}=$({})", shell_line(command));
            return Ok(format!("${name}"));
        }
        Ok(cmd::capture(command)?.trim().to_owned())
    }

    fn say(&self, message: &str) {
        if self.dry_run {
            println!("# {message}");
        } else {
            step("kind-up", message);
        }
    }
}

fn missing_tools() -> Vec<(&'static str, &'static str)> {
    TOOLS
        .iter()
        .copied()
        .filter(|(tool, _)| cmd::find(tool).is_none())
        .collect()
}

fn require_tools(dry_run: bool, needed: &[&str]) -> Result<()> {
    let missing: Vec<(&str, &str)> = missing_tools()
        .into_iter()
        .filter(|(tool, _)| needed.contains(tool))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = missing
        .iter()
        .map(|(tool, how)| format!("  - `{tool}`: {how}"))
        .collect();
    if dry_run {
        eprintln!(
            "note: a real run needs what this machine lacks:\n{}",
            list.join("\n")
        );
        return Ok(());
    }
    bail!(
        "kind-up needs {} on PATH, and this machine lacks:\n{}\n\
         (`cargo xtask kind-up --dry-run` prints every command without running any)",
        needed.join(", "),
        list.join("\n")
    )
}

fn kubectl() -> Command {
    let mut command = Command::new("kubectl");
    command.args(["--context", CONTEXT]);
    command
}

pub fn up(root: &Path, dry_run: bool) -> Result<()> {
    require_tools(dry_run, &TOOLS.map(|(tool, _)| tool))?;
    if !dry_run && !cmd::succeeds(Command::new("docker").arg("info")) {
        bail!(
            "`docker` is installed but no Docker engine answers (`docker info` fails): start Docker first"
        );
    }
    let plan = Plan { dry_run };
    let started = Instant::now();

    plan.say("the kind cluster (kind-config.yaml)");
    let exists = !dry_run
        && cmd::capture(Command::new("kind").args(["get", "clusters"]))
            .is_ok_and(|out| out.lines().any(|l| l.trim() == CLUSTER));
    if exists {
        step("kind-up", format!("cluster {CLUSTER} exists; reusing it"));
    } else {
        plan.run(
            Command::new("kind")
                .args(["create", "cluster", "--name", CLUSTER, "--config"])
                .arg(root.join("kind-config.yaml"))
                .args(["--wait", "2m"]),
        )?;
    }

    plan.say("both images, from the one Dockerfile (the build stage is shared)");
    for (target, image) in [("emporium", SERVICES_IMAGE), ("operator", OPERATOR_IMAGE)] {
        plan.run(
            Command::new("docker")
                .args([
                    "build",
                    "--target",
                    target,
                    "--tag",
                    &format!("{image}:{TAG}"),
                ])
                .arg(root),
        )?;
    }
    plan.run(Command::new("kind").args([
        "load",
        "docker-image",
        "--name",
        CLUSTER,
        &format!("{SERVICES_IMAGE}:{TAG}"),
        &format!("{OPERATOR_IMAGE}:{TAG}"),
    ]))?;

    plan.say("the operator, its CRDs and RBAC with Helm");
    plan.run(
        Command::new("helm")
            .args(["upgrade", "--install", "emporium-operator"])
            .arg(root.join(super::CHART))
            .args([
                "--kube-context",
                CONTEXT,
                "--namespace",
                OPERATOR_NAMESPACE,
                "--create-namespace",
                "--set",
                &format!("image.tag={TAG}"),
                "--set",
                "image.pullPolicy=Never",
                "--wait",
                "--timeout",
                "5m",
            ]),
    )?;
    plan.run(kubectl().args([
        "label",
        "namespace",
        OPERATOR_NAMESPACE,
        "pod-security.kubernetes.io/enforce=restricted",
        "--overwrite",
    ]))?;

    plan.say("a shop: the sandbox PaymentProvider and a Store on the images just built");
    let shop_exists =
        !dry_run && cmd::succeeds(kubectl().args(["get", "namespace", SHOP_NAMESPACE]));
    if !shop_exists {
        plan.run(kubectl().args(["create", "namespace", SHOP_NAMESPACE]))?;
    }
    plan.run(
        kubectl()
            .args(["apply", "-n", SHOP_NAMESPACE, "-f"])
            .arg(root.join("manifests/examples/payment-provider-sandbox.yaml")),
    )?;
    let store = serde_json::to_string_pretty(&kind_store()).expect("JSON");
    plan.run_with_input(
        kubectl().args(["apply", "-n", SHOP_NAMESPACE, "-f", "-"]),
        &store,
    )?;

    plan.say("wait until the Store is Ready");
    if dry_run {
        plan.run(kubectl().args([
            "wait",
            "-n",
            SHOP_NAMESPACE,
            "--for=condition=Ready",
            "store/demo",
            &format!("--timeout={}s", STORE_READY.as_secs()),
        ]))?;
    } else {
        wait_ready()?;
    }

    plan.say(&format!("smoke test through the gateway at {GATEWAY}"));
    smoke_test(&plan)?;

    if !dry_run {
        step(
            "kind-up",
            format!(
                "done in {:.0?}: the shop answers at {GATEWAY}; its admin is admin@example.test, \
                 password: kubectl --context {CONTEXT} -n {SHOP_NAMESPACE} get secret demo-admin \
                 -o go-template='{{{{.data.password | base64decode}}}}'",
                started.elapsed()
            ),
        );
    }
    Ok(())
}

pub fn down(dry_run: bool) -> Result<()> {
    require_tools(dry_run, &["kind"])?;
    Plan { dry_run }.run(Command::new("kind").args(["delete", "cluster", "--name", CLUSTER]))
}

/// The example Store (manifests/examples/store.yaml), on the images kind-up
/// built and loaded, with its gateway on the NodePort kind-config.yaml maps
/// to the host and no Ingress (kind has no Ingress controller).
pub fn kind_store() -> Value {
    json!({
        "apiVersion": "emporium.dev/v1alpha1",
        "kind": "Store",
        "metadata": {"name": "demo"},
        "spec": {
            "image": {"registry": SERVICES_IMAGE, "tag": TAG, "pullPolicy": "Never"},
            "gateway": {"service": {"type": "NodePort", "nodePort": 30080}},
            "database": {"managed": {"storage": {"size": "1Gi"}}},
            "cache": {"managed": {"storage": {"size": "1Gi"}}},
            "messaging": {"managed": {"storage": {"size": "1Gi"}}},
            "paymentProviderRef": {"name": "sandbox"},
            "admin": {"email": "admin@example.test"},
            "shop": {
                "currency": "EUR",
                "taxRateBasisPoints": 2000,
                "shippingFee": 499,
                "freeShippingFrom": 5000
            }
        }
    })
}

/// Polls the Store, printing its phase and each component's readiness when
/// they change, until it is Ready.
fn wait_ready() -> Result<()> {
    let deadline = Instant::now() + STORE_READY;
    let mut last = String::new();
    loop {
        let now = cmd::capture(kubectl().args([
            "get",
            "-n",
            SHOP_NAMESPACE,
            "store/demo",
            "-o",
            r#"jsonpath={.status.phase} {.status.conditions[?(@.type=="Ready")].status}: {.status.conditions[?(@.type=="Ready")].message} [{range .status.components[*]}{.component}={.readyReplicas}/{.desiredReplicas} {end}]"#,
        ]))
        .unwrap_or_default();
        let now = now.trim().to_owned();
        if now != last {
            step("store", &now);
            last.clone_from(&now);
        }
        if now.split_whitespace().nth(1) == Some("True:") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "Store demo not Ready after {}s; look at `kubectl --context {CONTEXT} -n {SHOP_NAMESPACE} get store,sd,pods,jobs`",
                STORE_READY.as_secs()
            );
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// One request through the gateway with curl: (status code, JSON body).
fn request(
    plan: &Plan,
    name: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra_header: Option<String>,
    body: Option<&Value>,
) -> Result<(u16, Value)> {
    let mut command = Command::new("curl");
    command.args(["-sS", "--max-time", "30", "-X", method]);
    command.arg(format!("{GATEWAY}{path}"));
    if let Some(token) = token {
        command.args(["-H", &format!("authorization: Bearer {token}")]);
    }
    if let Some(header) = extra_header {
        command.args(["-H", &header]);
    }
    if let Some(body) = body {
        command.args([
            "-H",
            "content-type: application/json",
            "-d",
            &body.to_string(),
        ]);
    }
    if plan.dry_run {
        println!("{name}=$({})", shell_line(&command));
        return Ok((0, Value::Null));
    }
    command.args(["-w", "\n%{http_code}"]);
    let output = cmd::capture(&mut command)?;
    let (body, code) = output.rsplit_once('\n').unwrap_or(("", output.as_str()));
    let code: u16 = code.trim().parse().unwrap_or(0);
    let json = serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()));
    Ok((code, json))
}

/// `json[field]` as a string; `$NAME_FIELD` when only printing (with the
/// line that sets it).
fn field(plan: &Plan, name: &str, json: &Value, field: &str) -> Result<String> {
    if plan.dry_run {
        let variable = format!("{name}_{}", field.to_uppercase());
        println!("{variable}=$({})", json_field(name, field));
        return Ok(format!("${variable}"));
    }
    json[field]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{name}: no `{field}` in {json}"))
}

fn expect(plan: &Plan, what: &str, (code, body): &(u16, Value), wanted: &[u16]) -> Result<()> {
    if plan.dry_run || wanted.contains(code) {
        if !plan.dry_run {
            step("smoke", format!("{what}: {code}"));
        }
        return Ok(());
    }
    bail!("{what}: HTTP {code}, expected {wanted:?}: {body}")
}

/// Register, sign in, list products, fill the cart, place an order and see
/// it confirmed. A fresh cluster's catalogue is empty, so the shop's admin
/// adds a category and a product first.
fn smoke_test(plan: &Plan) -> Result<()> {
    let unique = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();

    let password = plan.capture(
        "ADMIN_PASSWORD",
        kubectl().args([
            "get",
            "-n",
            SHOP_NAMESPACE,
            "secret/demo-admin",
            "-o",
            "go-template={{.data.password | base64decode}}",
        ]),
    )?;
    let admin = request(
        plan,
        "ADMIN",
        "POST",
        "/api/v1/auth/login",
        None,
        None,
        Some(&json!({"email": "admin@example.test", "password": password})),
    )?;
    expect(plan, "the admin signs in", &admin, &[200])?;
    let admin_token = field(plan, "ADMIN", &admin.1, "access_token")?;

    let category = request(
        plan,
        "CATEGORY",
        "POST",
        "/api/v1/categories",
        Some(&admin_token),
        None,
        Some(&json!({"name": "Smoke test", "slug": format!("smoke-test-{unique}")})),
    )?;
    expect(plan, "the admin adds a category", &category, &[200, 201])?;
    let category_id = field(plan, "CATEGORY", &category.1, "id")?;
    let product = request(
        plan,
        "PRODUCT",
        "POST",
        "/api/v1/products",
        Some(&admin_token),
        None,
        Some(&json!({
            "sku": format!("SMOKE-{unique}"),
            "name": "Smoke test mug",
            "price": {"amount": 1299, "currency": "EUR"},
            "stock": 10,
            "category_id": category_id,
        })),
    )?;
    expect(plan, "the admin adds a product", &product, &[200, 201])?;
    let product_id = field(plan, "PRODUCT", &product.1, "id")?;

    let email = format!("smoke-{unique}@example.test");
    let customer_password = "correct horse battery staple";
    let registered = request(
        plan,
        "REGISTERED",
        "POST",
        "/api/v1/auth/register",
        None,
        None,
        Some(&json!({"email": email, "password": customer_password, "name": "Smoke Test"})),
    )?;
    expect(plan, "a customer registers", &registered, &[200, 201])?;
    let login = request(
        plan,
        "CUSTOMER",
        "POST",
        "/api/v1/auth/login",
        None,
        None,
        Some(&json!({"email": email, "password": customer_password})),
    )?;
    expect(plan, "the customer signs in", &login, &[200])?;
    let token = field(plan, "CUSTOMER", &login.1, "access_token")?;

    let products = request(
        plan,
        "PRODUCTS",
        "GET",
        "/api/v1/products?page_size=20",
        None,
        None,
        None,
    )?;
    expect(plan, "the products are listed", &products, &[200])?;
    let one = request(
        plan,
        "ONE",
        "GET",
        &format!("/api/v1/products/{product_id}"),
        None,
        None,
        None,
    )?;
    expect(plan, "the new product is there", &one, &[200])?;

    let cart = request(
        plan,
        "CART",
        "POST",
        "/api/v1/cart/items",
        Some(&token),
        None,
        Some(&json!({"product_id": product_id, "quantity": 2})),
    )?;
    expect(plan, "two mugs go into the cart", &cart, &[200, 201])?;
    let order = request(
        plan,
        "ORDER",
        "POST",
        "/api/v1/orders",
        Some(&token),
        Some(format!("Idempotency-Key: smoke-{unique}")),
        Some(&json!({
            "shipping_address": {
                "name": "Ada Lovelace",
                "line1": "1 Analytical Way",
                "city": "London",
                "postal_code": "N1 9GU",
                "country": "GB"
            },
            "payment_method": "pm_card_visa"
        })),
    )?;
    expect(plan, "the order is placed", &order, &[200, 201])?;
    let order_id = field(plan, "ORDER", &order.1, "id")?;

    // The saga: stock reserved, payment charged, order confirmed.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let state = request(
            plan,
            "STATE",
            "GET",
            &format!("/api/v1/orders/{order_id}"),
            Some(&token),
            None,
            None,
        )?;
        if plan.dry_run {
            println!(
                "until [ \"$({})\" = confirmed ]; do sleep 2; STATE=$({}); done",
                json_field("STATE", "status"),
                shell_line(&order_status_command(&order_id, &token))
            );
            return Ok(());
        }
        let status = state.1["status"].as_str().unwrap_or_default().to_owned();
        match status.as_str() {
            "confirmed" => {
                step("smoke", format!("order {order_id} confirmed"));
                return Ok(());
            }
            "cancelled" => bail!("order {order_id} was cancelled: {}", state.1),
            _ if Instant::now() > deadline => {
                bail!("order {order_id} not confirmed after 120s: {}", state.1)
            }
            _ => std::thread::sleep(Duration::from_secs(2)),
        }
    }
}

/// The curl that `request` runs to read an order (for the printed loop).
fn order_status_command(order_id: &str, token: &str) -> Command {
    let mut command = Command::new("curl");
    command
        .args(["-sS", "--max-time", "30", "-X", "GET"])
        .arg(format!("{GATEWAY}/api/v1/orders/{order_id}"))
        .args(["-H", &format!("authorization: Bearer {token}")]);
    command
}

/// A shell command printing `field` of the JSON in `$name`.
fn json_field(name: &str, field: &str) -> String {
    format!(
        "printf '%s' \"${name}\" | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"{field}\"])'"
    )
}

/// A command line for a shell script: words holding a `$NAME` placeholder
/// in double quotes (so the shell expands it), the others as `cmd` quotes them.
fn shell_line(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|word| {
            let word = word.to_string_lossy();
            if word.contains('$') {
                let escaped = word
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('`', "\\`");
                format!("\"{escaped}\"")
            } else {
                cmd::quote(&word)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_stay_expandable_in_printed_commands() {
        let mut command = Command::new("curl");
        command.args(["-d", r#"{"password":"$ADMIN_PASSWORD"}"#, "plain word", "x"]);
        assert_eq!(
            shell_line(&command),
            r#"curl -d "{\"password\":\"$ADMIN_PASSWORD\"}" 'plain word' x"#
        );
    }

    #[test]
    fn the_kind_store_runs_the_loaded_images_on_the_mapped_node_port() {
        let store = kind_store();
        assert_eq!(store["spec"]["image"]["tag"], TAG);
        assert_eq!(store["spec"]["image"]["pullPolicy"], "Never");
        assert_eq!(store["spec"]["gateway"]["service"]["nodePort"], 30080);
        let config = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../kind-config.yaml"),
        )
        .unwrap();
        assert!(config.contains("containerPort: 30080"));
        assert!(config.contains("hostPort: 8080"));
    }
}
