//! `emporium`: one binary for every service of the shop.

mod dlq;
mod serve;
mod up;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

// The services allocate per request (JSON, rows, headers); glibc's malloc
// spent about a tenth of the gateway's CPU under load, mimalloc far less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "emporium",
    version,
    about = "Emporium, an e-commerce backend.",
    long_about = "Emporium, an e-commerce backend.\n\n\
        `emporium up` runs the whole shop in one process on embedded defaults (SQLite files, \
        events kept in a SQLite file, an in-process cache) — the quickest way to see it work.\n\
        `emporium serve <service>` runs one service against real backends (PostgreSQL, Redis, \
        RabbitMQ), configured by flags or EMPORIUM_* variables: what a container runs."
)]
struct Cli {
    #[command(flatten)]
    telemetry: kit::telemetry::TelemetryArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every service in one process with embedded backends and a demo admin.
    Up(up::UpArgs),
    /// Run one service against real backends.
    Serve {
        #[command(subcommand)]
        service: serve::Service,
    },
    /// Apply one service's database migrations and exit.
    Migrate {
        #[command(subcommand)]
        service: serve::MigrateService,
    },
    /// Show or replay the messages consumers gave up on (RabbitMQ dead-letter queues).
    Dlq(dlq::DlqArgs),
    /// Fill a catalogue with generated products (benchmarks, demos of scale).
    SeedCatalog {
        /// PostgreSQL or SQLite URL of the catalog's database.
        #[arg(long, env = "EMPORIUM_DATABASE_URL", value_name = "EMPORIUM_DATABASE_URL", value_parser = kit::config::parse_database_url, hide_env_values = true)]
        database_url: kit::config::DatabaseUrl,
        /// How many products to add.
        #[arg(long, default_value_t = 100_000)]
        products: usize,
    },
    /// Print a new Ed25519 PKCS#8 PEM key for signing access tokens.
    Keygen,
    /// Embedded mode: retire the signing key and make a new one (old tokens stay valid).
    RotateKey {
        /// Data directory of `emporium up`.
        #[arg(
            long,
            env = "EMPORIUM_DATA_DIR",
            value_name = "EMPORIUM_DATA_DIR",
            default_value = ".emporium"
        )]
        data_dir: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Keygen => {
                print!("{}", identity::keys::generate_pem());
                Ok(())
            }
            Command::RotateKey { data_dir } => {
                let ring = identity::keys::KeyRing::rotate(&data_dir.join("identity").join("keys"))
                    .map_err(|e| anyhow::anyhow!(e))?;
                println!(
                    "New signing key {}; restart `emporium up` to use it. Tokens signed before stay valid until they expire.",
                    ring.current_kid()
                );
                Ok(())
            }
            Command::Up(args) => {
                let _telemetry = kit::telemetry::init("emporium", &cli.telemetry).map_err(anyhow::Error::msg)?;
                up::run(args).await
            }
            Command::Serve { service } => {
                let _telemetry =
                    kit::telemetry::init(service.name(), &cli.telemetry).map_err(anyhow::Error::msg)?;
                serve::run(service).await
            }
            Command::Dlq(args) => dlq::run(args).await,
            Command::SeedCatalog { database_url, products } => {
                let db = kit::db::Database::connect(&database_url).await?;
                let catalog = catalog::Catalog::build(
                    catalog::Settings::default(),
                    std::sync::Arc::new(kit::auth::TokenVerifier::from_jwks(
                        &Default::default(),
                        "emporium-identity",
                        "emporium",
                    )),
                    catalog::Backends {
                        db,
                        cache: kit::cache::Cache::memory("seed"),
                        bus: kit::events::EventBus::memory(),
                    },
                )
                .await?;
                let started = std::time::Instant::now();
                let n = catalog::demo::seed_bulk(&catalog.state, products).await?;
                println!("{n} products added in {:.1} s", started.elapsed().as_secs_f64());
                Ok(())
            }
            Command::Migrate { service } => {
                let _telemetry = kit::telemetry::init("migrate", &cli.telemetry).map_err(anyhow::Error::msg)?;
                serve::migrate(service).await
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
