//! `emporium-operator`: `crd` prints the CustomResourceDefinitions; `run`
//! (the default) runs the controllers.

use std::net::SocketAddr;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "emporium-operator",
    about = "Emporium's Kubernetes operator",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML (what crds/ holds).
    Crd,
    /// Run the controllers (the default).
    Run(RunArgs),
}

#[derive(Parser)]
struct RunArgs {
    /// Where /healthz, /readyz and /metrics answer.
    #[arg(
        long,
        env = "EMPORIUM_OPERATOR_LISTEN",
        value_name = "EMPORIUM_OPERATOR_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    listen: SocketAddr,
    /// The namespace of the leader-election Lease (the operator's own).
    #[arg(
        long,
        env = "POD_NAMESPACE",
        value_name = "POD_NAMESPACE",
        default_value = "default"
    )]
    lease_namespace: String,
    /// The Lease's name.
    #[arg(
        long,
        env = "EMPORIUM_OPERATOR_LEASE",
        value_name = "EMPORIUM_OPERATOR_LEASE",
        default_value = "emporium-operator"
    )]
    lease_name: String,
    /// This replica's identity in the Lease (the pod's name).
    #[arg(long, env = "POD_NAME", value_name = "POD_NAME")]
    identity: Option<String>,
    /// Objects of one kind reconciled at once (in each watched namespace,
    /// when `EMPORIUM_WATCH_NAMESPACES` lists some).
    #[arg(
        long,
        env = "EMPORIUM_OPERATOR_CONCURRENCY",
        value_name = "EMPORIUM_OPERATOR_CONCURRENCY",
        default_value_t = 16,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    concurrency: u16,
    /// Namespaces whose Stores are reconciled, comma-separated; every
    /// namespace when empty. With a list, RoleBindings in those namespaces
    /// are all the rights the operator needs there.
    #[arg(
        long,
        env = "EMPORIUM_WATCH_NAMESPACES",
        value_name = "EMPORIUM_WATCH_NAMESPACES",
        default_value = "",
        value_parser = operator::run::Watched::parse
    )]
    watch_namespaces: operator::run::Watched,
    /// Log as JSON (as in a cluster) instead of text.
    #[arg(long, env = "EMPORIUM_OPERATOR_LOG_JSON")]
    log_json: bool,
    /// Exit when standard input closes: a supervising process (a test
    /// harness, a benchmark) that dies takes the operator with it.
    #[arg(long)]
    exit_with_stdin: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Crd) => {
            print!("{}", operator::crd::definitions_yaml()?);
            return Ok(());
        }
        Some(Command::Run(args)) => args,
        None => RunArgs::parse_from(["emporium-operator"]),
    };
    operator::telemetry::init_tracing(args.log_json);
    if args.exit_with_stdin {
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            tracing::info!("standard input closed: exiting");
            std::process::exit(0);
        });
    }
    let identity = args.identity.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(operator::run::run(operator::run::Settings {
        listen: args.listen,
        lease_namespace: args.lease_namespace,
        lease_name: args.lease_name,
        identity,
        concurrency: args.concurrency,
        watched: args.watch_namespaces,
    }))
}
