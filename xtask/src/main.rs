//! `cargo xtask`: Emporium's project tasks, written in Rust so they run the
//! same on every machine. `cargo xtask test` is the one command that runs the
//! whole test suite; `.ci/run` calls exactly that.

mod bench;
mod cluster;
mod cmd;
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
    cargo xtask test [--no-lint] [--only embedded|real|operator] [--dry-run] [-- <runner args>...]
    cargo xtask services start
    cargo xtask services stop
    cargo xtask bench gateway
    cargo xtask cluster up|down
    cargo xtask crds [--check]
    cargo xtask bench operator

COMMANDS:
    test            Lint, provision PostgreSQL, Redis and RabbitMQ, then run the test
                    suite twice: EMPORIUM_TEST_BACKENDS=embedded over the workspace,
                    EMPORIUM_TEST_BACKENDS=real over emporium-tests. Uses cargo-nextest
                    when it is installed. Exits non-zero if anything fails.
        --no-lint       skip `cargo fmt --check` and `cargo clippy -D warnings`
        --only SET      run only the `embedded`, the `real` or the `operator` set
                        (operator: `cluster up`, then the operator's e2e suite)
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
    bench operator  50 Stores on the local control plane: time to all Ready, operator
                    peak RSS, reconciles per object, writes while idle.

    bench gateway   Release build; the same load direct to an upstream and through the
                    gateway (JWT check and rate limiter on); prints requests/s, p50/p99
                    and the ratio. Uses oha (installed with cargo if missing).

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
