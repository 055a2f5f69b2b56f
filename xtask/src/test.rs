//! `cargo xtask test`: lint, provision the backends, then run the suite
//! twice, once on the embedded adapters and once on the real ones; then the
//! operator's e2e suite on the local control plane (`cargo xtask cluster up`).

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::cmd::{self, step};
use crate::provision::{self, Backend, Urls};

/// Which adapters the suite runs against (`EMPORIUM_TEST_BACKENDS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Set {
    /// SQLite, in-process bus and cache: the whole workspace.
    Embedded,
    /// PostgreSQL, Redis and RabbitMQ: the end-to-end and behaviour suites.
    Real,
    /// The operator's e2e suite on the local control plane (`cargo xtask cluster up`).
    Operator,
    /// What a Kubernetes user installs: `cargo xtask packaging` (Argo CD health
    /// checks, the Helm chart, every manifest on the local control plane).
    Packaging,
}

impl Set {
    pub fn name(self) -> &'static str {
        match self {
            Set::Embedded => "embedded",
            Set::Real => "real",
            Set::Operator => "operator",
            Set::Packaging => "packaging",
        }
    }

    pub fn parse(text: &str) -> Result<Set> {
        match text {
            "embedded" => Ok(Set::Embedded),
            "real" => Ok(Set::Real),
            "operator" => Ok(Set::Operator),
            "packaging" => Ok(Set::Packaging),
            other => bail!(
                "unknown test set `{other}`: expected `embedded`, `real`, `operator` or `packaging`"
            ),
        }
    }

    /// What the set tests: the real backends only matter to the crate whose
    /// suites talk to them.
    fn packages(self) -> &'static [&'static str] {
        match self {
            Set::Embedded => &["--workspace"],
            Set::Real => &["-p", "emporium-tests", "-p", "emporium"],
            Set::Operator => &["-p", "operator", "--test", "e2e"],
            Set::Packaging => &[],
        }
    }
}

pub struct Options {
    /// Run `cargo fmt --check` and `cargo clippy` first.
    pub lint: bool,
    /// Run only this set (both when `None`).
    pub only: Option<Set>,
    /// Provision, then print the commands instead of running them.
    pub dry_run: bool,
    /// Passed to the test runner after `--` (filters, `--nocapture`, ...).
    pub runner_args: Vec<String>,
}

pub fn run(root: &Path, options: &Options) -> Result<ExitCode> {
    if options.lint {
        lint(options.dry_run)?;
    }

    let sets = match options.only {
        Some(set) => vec![set],
        None => vec![Set::Embedded, Set::Real, Set::Operator, Set::Packaging],
    };
    let urls = if sets.contains(&Set::Real) {
        let urls = provision::provision(root)?;
        drop_leftover_databases(&urls.postgres, options.dry_run)?;
        Some(urls)
    } else {
        None
    };

    let mut tools =
        if !options.dry_run && sets.iter().any(|s| matches!(s, Set::Embedded | Set::Real)) {
            crate::tools::test_env()?
        } else {
            Vec::new()
        };
    // The test that crashes PostgreSQL under load needs to know how.
    if let Some((crash, start)) = urls
        .as_ref()
        .and_then(|u| provision::postgres_crash_commands(&u.postgres))
    {
        tools.push(("EMPORIUM_TEST_POSTGRES_CRASH", crash));
        tools.push(("EMPORIUM_TEST_POSTGRES_START", start));
    }
    let nextest = cmd::succeeds(cargo().args(["nextest", "--version"]));
    let mut outcomes = Vec::new();
    for set in sets {
        let commands = commands_for(set, urls.as_ref(), &tools, nextest, &options.runner_args);
        if options.dry_run {
            step(set.name(), "would run:");
            for command in &commands {
                println!("{}", cmd::display(command));
            }
            continue;
        }
        step(
            set.name(),
            format!("running the suite on the {} backends", set.name()),
        );
        let started = Instant::now();
        let mut failure = None;
        if set == Set::Operator
            && let Err(error) = crate::cluster::up()
        {
            outcomes.push((
                set,
                started.elapsed(),
                Some(format!("`cargo xtask cluster up` failed: {error:#}")),
            ));
            continue;
        }
        for mut command in commands {
            let status = cmd::status(&mut command)?;
            if !status.success() && failure.is_none() {
                failure = Some(format!(
                    "`{}` failed ({status})",
                    cmd::display_argv(&command)
                ));
            }
        }
        outcomes.push((set, started.elapsed(), failure));
    }

    let mut failed = false;
    for (set, took, failure) in &outcomes {
        match failure {
            None => step(
                "summary",
                format!("{}: passed in {}", set.name(), human(*took)),
            ),
            Some(why) => {
                failed = true;
                step(
                    "summary",
                    format!("{}: FAILED in {}: {why}", set.name(), human(*took)),
                );
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn lint(dry_run: bool) -> Result<()> {
    if dry_run {
        step("lint", "would run:");
    } else {
        step("lint", "cargo fmt --check and cargo clippy -D warnings");
    }
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    for mut command in [fmt, clippy] {
        if dry_run {
            println!("{}", cmd::display(&command));
        } else if !cmd::status(&mut command)?.success() {
            bail!(
                "`{}` failed; fix what it reports (or skip linting with --no-lint)",
                cmd::display(&command)
            );
        }
    }
    Ok(())
}

/// The commands that run one set. nextest runs the tests when it is
/// installed; it skips doctests, so `cargo test --doc` runs those, in the
/// embedded set only: doctests touch no backend, and when `emporium-tests`
/// holds only tests/, `cargo test -p emporium-tests --doc` fails with "no
/// library targets found".
fn commands_for(
    set: Set,
    urls: Option<&Urls>,
    tools: &[(&str, String)],
    nextest: bool,
    runner_args: &[String],
) -> Vec<Command> {
    let runner_for = |packages: &[&str], subcommand: &[&str], extra: &[&str]| {
        let mut command = cargo();
        command.env("EMPORIUM_TEST_BACKENDS", set.name());
        command.envs(tools.iter().map(|(k, v)| (*k, v.as_str())));
        if set == Set::Operator {
            command.env(crate::cluster::KUBECONFIG_ENV, crate::cluster::kubeconfig());
        }
        match (set, urls) {
            (Set::Real, Some(urls)) => {
                command.envs(urls.env());
            }
            // Embedded means embedded, whatever the caller's shell exports.
            _ => {
                for backend in Backend::ALL {
                    command.env_remove(backend.env_var());
                }
            }
        }
        command.args(subcommand).args(packages).args(extra);
        if !runner_args.is_empty() {
            command.arg("--").args(runner_args);
        }
        command
    };
    let runner =
        |subcommand: &[&str], extra: &[&str]| runner_for(set.packages(), subcommand, extra);
    // Tests that stop a backend every other test shares (the broker restart)
    // are #[ignore]d and run here, alone, after the rest of the set.
    let alone = || {
        let mut command = runner_for(&["-p", "emporium-tests", "--test", "suite"], &["test"], &[]);
        if runner_args.is_empty() {
            command.arg("--");
        }
        command.args(["--ignored", "--test-threads=1"]);
        command
    };
    match (nextest, set) {
        // Its own task, not a test runner: runner arguments do not apply.
        (_, Set::Packaging) => {
            let mut packaging = cargo();
            packaging.args(["xtask", "packaging"]);
            vec![packaging]
        }
        (true, Set::Embedded) => vec![
            runner(&["nextest", "run"], &[]),
            runner(&["test"], &["--doc"]),
            alone(),
        ],
        (true, Set::Real) => vec![runner(&["nextest", "run"], &[]), alone()],
        // The e2e tests are #[ignore]d elsewhere and share one operator: one at a time.
        (true, Set::Operator) => vec![runner(
            &["nextest", "run"],
            &["--run-ignored", "only", "--test-threads", "1"],
        )],
        (false, Set::Operator) => {
            let mut command = runner(&["test"], &[]);
            if runner_args.is_empty() {
                command.arg("--");
            }
            command.args(["--ignored", "--test-threads=1"]);
            vec![command]
        }
        (false, Set::Embedded | Set::Real) => vec![runner(&["test"], &[]), alone()],
    }
}

/// Tests create databases named `emporium_test_*` and drop them when they
/// finish; a crashed or interrupted run leaves some behind.
fn drop_leftover_databases(url: &str, dry_run: bool) -> Result<()> {
    let Some(mut list) = provision::psql(url) else {
        step(
            "postgres",
            "psql is not installed; not dropping leftover test databases",
        );
        return Ok(());
    };
    let names = cmd::capture(list.args([
        "-Atc",
        r"select datname from pg_database where datname like 'emporium\_test\_%'",
    ]))?;
    let names: Vec<&str> = names.lines().filter(|name| !name.is_empty()).collect();
    if names.is_empty() {
        step("postgres", "no leftover test databases");
        return Ok(());
    }
    if dry_run {
        step(
            "postgres",
            format!(
                "would drop {} leftover test databases: {}",
                names.len(),
                names.join(", ")
            ),
        );
        return Ok(());
    }
    step(
        "postgres",
        format!("dropping {} leftover test databases", names.len()),
    );
    // One psql, one -c per database: DROP DATABASE cannot share a transaction.
    let Some(mut drop) = provision::psql(url) else {
        return Ok(());
    };
    for name in names {
        let name = name.replace('"', "\"\"");
        drop.arg("-c")
            .arg(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
    }
    cmd::run(&mut drop)
}

/// `cargo`, the same one that runs xtask.
fn cargo() -> Command {
    // Prefer the name on PATH (through rustup it honours the toolchain file,
    // and it reads well in the echoed command lines).
    match cmd::find("cargo") {
        Some(_) => Command::new("cargo"),
        None => Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())),
    }
}

fn human(took: Duration) -> String {
    let secs = took.as_secs();
    if secs >= 60 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else {
        format!("{:.1}s", took.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls() -> Urls {
        Urls {
            postgres: "postgres://pg".into(),
            redis: "redis://r".into(),
            amqp: "amqp://a".into(),
        }
    }

    fn lines(commands: &[Command]) -> Vec<String> {
        commands.iter().map(cmd::display).collect()
    }

    #[test]
    fn embedded_runs_the_workspace_without_urls() {
        let commands = commands_for(Set::Embedded, Some(&urls()), &[], false, &[]);
        assert_eq!(
            lines(&commands),
            [
                "EMPORIUM_TEST_BACKENDS=embedded cargo test --workspace",
                "EMPORIUM_TEST_BACKENDS=embedded cargo test -p emporium-tests --test suite -- \
                 --ignored --test-threads=1"
            ]
        );
    }

    #[test]
    fn real_passes_the_urls_and_runner_args() {
        let commands = commands_for(Set::Real, Some(&urls()), &[], false, &["identity".into()]);
        assert_eq!(
            lines(&commands),
            [
                "EMPORIUM_TEST_AMQP_URL=amqp://a EMPORIUM_TEST_BACKENDS=real \
              EMPORIUM_TEST_POSTGRES_URL=postgres://pg EMPORIUM_TEST_REDIS_URL=redis://r \
              cargo test -p emporium-tests -p emporium -- identity",
                "EMPORIUM_TEST_AMQP_URL=amqp://a EMPORIUM_TEST_BACKENDS=real \
              EMPORIUM_TEST_POSTGRES_URL=postgres://pg EMPORIUM_TEST_REDIS_URL=redis://r \
              cargo test -p emporium-tests --test suite -- identity --ignored --test-threads=1"
            ]
        );
    }

    #[test]
    fn operator_set_runs_the_ignored_e2e_suite_one_at_a_time_on_the_local_cluster() {
        let kubeconfig = crate::cluster::kubeconfig().display().to_string();
        let commands = commands_for(Set::Operator, None, &[], false, &[]);
        assert_eq!(
            lines(&commands),
            [format!(
                "EMPORIUM_E2E_KUBECONFIG={kubeconfig} EMPORIUM_TEST_BACKENDS=operator \
                 cargo test -p operator --test e2e -- --ignored --test-threads=1"
            )]
        );
        let commands = commands_for(Set::Operator, None, &[], true, &[]);
        assert!(lines(&commands)[0].ends_with(
            "cargo nextest run -p operator --test e2e --run-ignored only --test-threads 1"
        ));
    }

    #[test]
    fn packaging_set_runs_the_packaging_checks() {
        for nextest in [false, true] {
            let commands = commands_for(Set::Packaging, None, &[], nextest, &["x".into()]);
            assert_eq!(lines(&commands), ["cargo xtask packaging"]);
        }
        assert_eq!(Set::parse("packaging").unwrap(), Set::Packaging);
    }

    #[test]
    fn nextest_runs_doctests_with_the_embedded_set() {
        let real = commands_for(Set::Real, Some(&urls()), &[], true, &[]);
        assert_eq!(
            real.len(),
            2,
            "the suite, then the tests that must run alone"
        );
        let commands = commands_for(Set::Embedded, None, &[], true, &[]);
        assert_eq!(
            lines(&commands),
            [
                "EMPORIUM_TEST_BACKENDS=embedded cargo nextest run --workspace",
                "EMPORIUM_TEST_BACKENDS=embedded cargo test --workspace --doc",
                "EMPORIUM_TEST_BACKENDS=embedded cargo test -p emporium-tests --test suite -- \
                 --ignored --test-threads=1",
            ]
        );
    }
}
