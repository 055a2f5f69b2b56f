//! `cargo xtask`: Emporium's project tasks, written in Rust so they run the
//! same on every machine. `cargo xtask test` is the one command that runs the
//! whole test suite; `.ci/run` calls exactly that.

mod bench;
mod cluster;
mod cmd;
mod packaging;
mod provision;
mod test;
mod tools;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::provision::Backend;
use crate::test::Set;

const HELP: &str = "\
Emporium's project tasks.

USAGE:
    cargo xtask test [--no-lint] [--only embedded|real|operator|packaging] [--dry-run] [-- <runner args>...]
    cargo xtask services start
    cargo xtask services stop
    cargo xtask bench gateway
    cargo xtask bench catalog [--products N] [--seconds S] [--connections C]
    cargo xtask bench checkout [--customers N] [--seconds S] [--poll-ms MS] [--webhook-delay-ms MS]
    cargo xtask cluster up|down
    cargo xtask crds [--check]
    cargo xtask packaging [lua|chart|cluster]...
    cargo xtask kind-up [--dry-run]
    cargo xtask kind-down [--dry-run]
    cargo xtask bench operator

COMMANDS:
    test            Lint, provision PostgreSQL, Redis and RabbitMQ, then run the test
                    suite twice: EMPORIUM_TEST_BACKENDS=embedded over the workspace,
                    EMPORIUM_TEST_BACKENDS=real over emporium-tests. Uses cargo-nextest
                    when it is installed. Exits non-zero if anything fails.
        --no-lint       skip `cargo fmt --check` and `cargo clippy -D warnings`
        --only SET      run only the `embedded`, the `real`, the `operator` or the `packaging` set
                        (operator: `cluster up`, then the operator's e2e suite)
                        (packaging: `cargo xtask packaging`)
        --dry-run       provision, then print the commands instead of running them
        -- ARGS         passed to the test runner (e.g. `cargo xtask test -- identity`)

    services start  Provision the backends and print their URLs as `export` lines:
                        eval \"$(cargo xtask services start)\"
    services stop   Stop the backends that xtask started (and nothing else).

    cluster up      Build once (cached in ~/.cache/emporium/k8s/<version>) and start a real
                    control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
                    kube-scheduler, kwok (simulated nodes). Prints `export` lines for its
                    kubeconfig:  eval \"$(cargo xtask cluster up)\"
    cluster down    Stop it and remove its state (/tmp/emporium-cluster).
    crds            Regenerate crds/ from the operator's types (--check: fail on drift).
    packaging       Check what a Kubernetes user installs: the Argo CD health checks under
                    lua5.1 over their samples; helm lint and template of the chart (default
                    and full values); on the local control plane every manifest and the
                    rendered chart pass `kubectl apply --dry-run=server`, `helm install`
                    makes the operator Available, and the operator run with the chart's
                    ServiceAccount token makes the example Store Ready. Builds helm and
                    fetches Argo CD's Application CRD from Go modules (cached).
    kind-up         On a machine with Docker, kind, kubectl, helm and curl: a kind cluster
                    (kind-config.yaml), both images built and loaded, the chart installed,
                    the example shop applied and Ready, a smoke test through the gateway
                    on http://127.0.0.1:8080. --dry-run prints every command instead.
    kind-down       Delete that kind cluster.
    bench operator  50 Stores on the local control plane: time to all Ready, operator
                    peak RSS, reconciles per object, writes while idle.

    bench gateway   Release build; the same load direct to an upstream and through the
                    gateway (JWT check and rate limiter on); prints requests/s, p50/p99
                    and the ratio. Uses oha (installed with cargo if missing).
    bench catalog   Backends provisioned; a fresh database seeded with 100,000 products; the
                    catalog with its Redis cache and without, each behind a gateway (the
                    cached one keeps copies checked against the catalogue's generation); prints
                    requests/s and p50/p99 of get-by-id and searches for both, the ratio, and
                    the uncached search p99 at half of saturation.
    bench checkout  All seven services as processes on fresh databases, a private RabbitMQ
                    vhost and Redis db; N customers add to cart, order and poll until
                    confirmed. Prints confirmed orders/s, place->confirmed p50/p99 and
                    PostgreSQL commits/s, at saturation and at half of it.

BACKENDS:
    Each is used where its URL points if something answers there; otherwise xtask
    starts one from the installed Debian packages (installing them with apt when
    root), or with `docker compose` and docker-compose.yml. Servers it starts keep
    running between runs; their data, logs and sockets live in /tmp/emporium-xtask.

";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<ExitCode> {
    let root = workspace_root();
    std::env::set_current_dir(&root)
        .with_context(|| format!("cannot enter the workspace at {}", root.display()))?;
    let mut args = args.into_iter();
    match args.next().as_deref() {
        Some("-h" | "--help" | "help") => {
            print!("{}", help());
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprint!("{}", help());
            Ok(ExitCode::from(2))
        }
        Some("test") => test::run(&root, &test_options(args)?),
        Some("bench") => {
            bench::run(&root, &args.collect::<Vec<_>>())?;
            Ok(ExitCode::SUCCESS)
        }
        Some("cluster") => cluster::run(&args.collect::<Vec<_>>()).map(|()| ExitCode::SUCCESS),
        Some("crds") => {
            cluster::crds::run(&root, &args.collect::<Vec<_>>()).map(|()| ExitCode::SUCCESS)
        }
        Some("packaging") => {
            packaging::run(&root, &args.collect::<Vec<_>>()).map(|()| ExitCode::SUCCESS)
        }
        Some("kind-up") => {
            packaging::kind_up(&root, &args.collect::<Vec<_>>()).map(|()| ExitCode::SUCCESS)
        }
        Some("kind-down") => {
            packaging::kind_down(&args.collect::<Vec<_>>()).map(|()| ExitCode::SUCCESS)
        }
        Some("services") => match (args.next().as_deref(), args.next()) {
            (Some("start"), None) => {
                let urls = provision::provision(&root)?;
                for (var, url) in urls.env() {
                    println!("export {var}={}", cmd::quote(url));
                }
                Ok(ExitCode::SUCCESS)
            }
            (Some("stop"), None) => {
                provision::stop(&root)?;
                Ok(ExitCode::SUCCESS)
            }
            _ => bail!("usage: cargo xtask services start|stop"),
        },
        Some(other) => bail!("unknown command `{other}`; see `cargo xtask --help`"),
    }
}

fn test_options(mut args: impl Iterator<Item = String>) -> Result<test::Options> {
    let mut options = test::Options {
        lint: true,
        only: None,
        dry_run: false,
        runner_args: Vec::new(),
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--no-lint" => options.lint = false,
            "--dry-run" => options.dry_run = true,
            "--only" => {
                let set = args
                    .next()
                    .context("--only needs a value: embedded or real")?;
                options.only = Some(Set::parse(&set)?);
            }
            "--" => {
                options.runner_args = args.by_ref().collect();
            }
            "-h" | "--help" => {
                print!("{}", help());
                std::process::exit(0);
            }
            other => match other.strip_prefix("--only=") {
                Some(set) => options.only = Some(Set::parse(set)?),
                None => bail!(
                    "unknown argument `{other}` for `cargo xtask test` \
                     (test runner arguments go after `--`; see `cargo xtask --help`)"
                ),
            },
        }
    }
    Ok(options)
}

/// The workspace root: xtask's own crate sits right under it.
fn workspace_root() -> PathBuf {
    // `cargo run` sets CARGO_MANIFEST_DIR; the compile-time value covers
    // running the binary directly.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.clone(), PathBuf::from)
}

/// The help text, with the backends' variables and default URLs.
fn help() -> String {
    let mut help = HELP.to_owned();
    for backend in Backend::ALL {
        help += &format!(
            "    {:<28}  default {}\n",
            backend.env_var(),
            backend.default_url()
        );
    }
    help
}
