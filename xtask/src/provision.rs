//! PostgreSQL, Redis and RabbitMQ for the "real" test set.
//!
//! For each backend, in order of preference:
//!
//! 1. whatever already answers at `EMPORIUM_TEST_*_URL` (or at xtask's default URL);
//! 2. a server started by hand from the installed Debian package binaries
//!    (no systemd; PostgreSQL as a throwaway `initdb -A trust` cluster);
//! 3. the same, after `apt-get install` when running as root on Debian;
//! 4. `docker compose up` with the repository's `docker-compose.yml`;
//! 5. otherwise an error that says what is missing and how to get it.
//!
//! Servers that xtask starts keep running after the run, so the next run is
//! fast; xtask leaves a marker for each under [`WORK_DIR`] so that
//! `cargo xtask services stop` stops exactly those and nothing else.

mod readiness;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use self::readiness::{Target, tcp_connects, wait_until_usable};
use crate::cmd::{self, step};

/// Where throwaway clusters, logs, sockets and the "started by xtask" markers live.
pub const WORK_DIR: &str = "/tmp/emporium-xtask";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Redis,
    RabbitMq,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Postgres, Backend::Redis, Backend::RabbitMq];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Redis => "redis",
            Backend::RabbitMq => "rabbitmq",
        }
    }

    /// The variable the test suite reads the backend's URL from.
    pub fn env_var(self) -> &'static str {
        match self {
            Backend::Postgres => "EMPORIUM_TEST_POSTGRES_URL",
            Backend::Redis => "EMPORIUM_TEST_REDIS_URL",
            Backend::RabbitMq => "EMPORIUM_TEST_AMQP_URL",
        }
    }

    /// Where xtask looks first, and where it starts a server when there is none.
    /// The ports stay clear of system-wide installs (5432, 6379), except
    /// RabbitMQ's, whose Debian package only runs one node per host anyway.
    pub fn default_url(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres://postgres@127.0.0.1:54329/postgres",
            Backend::Redis => "redis://127.0.0.1:63790",
            Backend::RabbitMq => "amqp://guest:guest@127.0.0.1:5672/%2f",
        }
    }

    /// The port a URL of this kind means when it names none.
    fn standard_port(self) -> u16 {
        match self {
            Backend::Postgres => 5432,
            Backend::Redis => 6379,
            Backend::RabbitMq => 5672,
        }
    }

    fn apt_package(self) -> &'static str {
        match self {
            Backend::Postgres => "postgresql",
            Backend::Redis => "redis-server",
            Backend::RabbitMq => "rabbitmq-server",
        }
    }

    /// The service's name in docker-compose.yml.
    fn compose_service(self) -> &'static str {
        self.name()
    }

    /// How long a server may take to become usable after it was started.
    fn ready_timeout(self) -> Duration {
        match self {
            Backend::Postgres => Duration::from_secs(60),
            Backend::Redis => Duration::from_secs(30),
            Backend::RabbitMq => Duration::from_secs(90),
        }
    }

    /// Whether the package's binaries are here to start a server by hand.
    fn installed(self) -> bool {
        match self {
            Backend::Postgres => pg_bin_dir().is_some(),
            Backend::Redis => cmd::find("redis-server").is_some(),
            Backend::RabbitMq => {
                cmd::find("rabbitmq-server").is_some() && cmd::find("rabbitmqctl").is_some()
            }
        }
    }

    /// Where the server that xtask starts writes its log.
    fn log_location(self) -> String {
        match self {
            Backend::Postgres => format!("{WORK_DIR}/pg-{POSTGRES_PORT}.log"),
            Backend::Redis => format!("{WORK_DIR}/redis-{REDIS_PORT}.log"),
            Backend::RabbitMq => format!("in {WORK_DIR}/rabbitmq/log/"),
        }
    }

    fn marker(self) -> PathBuf {
        Path::new(WORK_DIR).join("started").join(self.name())
    }
}

/// The URLs of the three backends, ready for the test suite.
pub struct Urls {
    pub postgres: String,
    pub redis: String,
    pub amqp: String,
}

impl Urls {
    /// The environment the "real" test set runs with.
    pub fn env(&self) -> [(&'static str, &str); 3] {
        [
            (Backend::Postgres.env_var(), &self.postgres),
            (Backend::Redis.env_var(), &self.redis),
            (Backend::RabbitMq.env_var(), &self.amqp),
        ]
    }

    fn set(&mut self, backend: Backend, url: String) {
        match backend {
            Backend::Postgres => self.postgres = url,
            Backend::Redis => self.redis = url,
            Backend::RabbitMq => self.amqp = url,
        }
    }
}

/// Make sure all three backends run and answer; return their URLs.
pub fn provision(root: &Path) -> Result<Urls> {
    let mut urls = Urls {
        postgres: String::new(),
        redis: String::new(),
        amqp: String::new(),
    };
    let mut to_start = Vec::new();
    for backend in Backend::ALL {
        let from_env = std::env::var(backend.env_var())
            .ok()
            .filter(|url| !url.is_empty());
        let url = from_env
            .clone()
            .unwrap_or_else(|| backend.default_url().to_owned());
        let target = Target::parse(backend, &url)?;
        if target.accepts_tcp() {
            let origin = match from_env {
                Some(_) => format!("from {}", backend.env_var()),
                None => "already running".to_owned(),
            };
            step(backend.name(), format!("using {url} ({origin})"));
        } else if from_env.is_some() && url != backend.default_url() {
            bail!(
                "{var}={url} is set, but nothing answers at {addr}.\n\
                 Start that server, or unset {var} and xtask will provision one at {default}.",
                var = backend.env_var(),
                addr = target.addr(),
                default = backend.default_url(),
            );
        } else {
            step(
                backend.name(),
                format!("nothing answers at {}; provisioning one", target.addr()),
            );
            to_start.push(backend);
        }
        urls.set(backend, url);
    }

    let not_installed: Vec<Backend> = to_start
        .iter()
        .copied()
        .filter(|b| !b.installed())
        .collect();
    if !not_installed.is_empty() && can_use_apt() {
        apt_install(&not_installed)?;
    }
    let mut for_docker = Vec::new();
    for &backend in &to_start {
        if backend.installed() {
            match backend {
                Backend::Postgres => start_postgres()?,
                Backend::Redis => start_redis()?,
                Backend::RabbitMq => start_rabbitmq()?,
            }
        } else {
            for_docker.push(backend);
        }
    }
    if !for_docker.is_empty() {
        if docker_compose_works() {
            compose_up(root, &for_docker)?;
        } else {
            bail!(cannot_provision(&for_docker));
        }
    }

    for (backend, url) in [
        (Backend::Postgres, &urls.postgres),
        (Backend::Redis, &urls.redis),
        (Backend::RabbitMq, &urls.amqp),
    ] {
        wait_until_usable(backend, url)?;
        if to_start.contains(&backend) {
            step(backend.name(), format!("ready at {url}"));
        }
    }
    Ok(urls)
}

/// Stop what xtask started (and only that), in the reverse order of starting.
pub fn stop(root: &Path) -> Result<()> {
    let mut in_docker = Vec::new();
    for backend in [Backend::RabbitMq, Backend::Redis, Backend::Postgres] {
        let marker = backend.marker();
        let Ok(how) = fs::read_to_string(&marker) else {
            step(backend.name(), "not started by xtask; leaving it alone");
            continue;
        };
        if how.starts_with("docker") {
            in_docker.push(backend);
            continue;
        }
        match backend {
            Backend::Postgres => stop_postgres(&how)?,
            Backend::Redis => stop_redis(&how)?,
            Backend::RabbitMq => stop_rabbitmq()?,
        }
        remove_marker(backend)?;
    }
    if !in_docker.is_empty() {
        let services: Vec<&str> = in_docker.iter().map(|b| b.compose_service()).collect();
        step("docker", format!("stopping {}", services.join(", ")));
        cmd::run(compose(root).arg("stop").args(&services))?;
        for backend in in_docker {
            remove_marker(backend)?;
        }
    }
    Ok(())
}

/// `psql` against `url`, quiet and never prompting, if a psql is installed.
pub fn psql(url: &str) -> Option<Command> {
    let program = cmd::find("psql").or_else(|| {
        let psql = pg_bin_dir()?.join("psql");
        cmd::is_executable(&psql).then_some(psql)
    })?;
    let mut psql = Command::new(program);
    psql.env("PGCONNECT_TIMEOUT", "5")
        .args(["-X", "-w", "-q", "-v", "ON_ERROR_STOP=1", "-d", url]);
    Some(psql)
}

// ---------------------------------------------------------------- PostgreSQL

/// The port of the throwaway cluster (the one in the default URL).
const POSTGRES_PORT: u16 = 54329;

/// The bin directory of the newest installed PostgreSQL (Debian keeps each
/// major version in /usr/lib/postgresql/<version>/bin), or the one `initdb`
/// on PATH belongs to.
fn pg_bin_dir() -> Option<PathBuf> {
    let has_tools = |dir: &Path| {
        cmd::is_executable(&dir.join("initdb")) && cmd::is_executable(&dir.join("pg_ctl"))
    };
    let newest = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: Vec<u32> = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| has_tools(bin))
        .max();
    if let Some((_, bin)) = newest {
        return Some(bin);
    }
    let initdb = fs::canonicalize(cmd::find("initdb")?).ok()?;
    let bin = initdb.parent()?.to_path_buf();
    has_tools(&bin).then_some(bin)
}

/// `initdb` refuses to run as root, so as root run PostgreSQL's tools as the
/// `postgres` user that the Debian package creates.
fn as_postgres_user(program: PathBuf) -> Command {
    let mut command = if is_root() {
        let mut runuser = Command::new("runuser");
        runuser.args(["-u", "postgres", "--"]).arg(program);
        runuser
    } else {
        Command::new(program)
    };
    command.current_dir(WORK_DIR);
    command
}

fn start_postgres() -> Result<()> {
    let bin = pg_bin_dir().context("no PostgreSQL binaries (initdb, pg_ctl) found")?;
    let version = pg_major_version(&bin)?;
    let port = POSTGRES_PORT;
    let data = Path::new(WORK_DIR).join(format!("pg-{port}"));
    let log = Path::new(WORK_DIR).join(format!("pg-{port}.log"));
    prepare_work_dir()?;
    if is_root() {
        // The postgres user must be able to create the cluster, its log and
        // its socket here.
        cmd::run(Command::new("chown").arg("postgres:").arg(WORK_DIR)).context(
            "initdb cannot run as root and needs the `postgres` user to own its directory",
        )?;
    }

    let existing = fs::read_to_string(data.join("PG_VERSION")).ok();
    match existing.as_deref().map(str::trim) {
        Some(v) if v == version => step(
            "postgres",
            format!(
                "starting the existing throwaway cluster {} on 127.0.0.1:{port}",
                data.display()
            ),
        ),
        found => {
            if let Some(old) = found {
                step(
                    "postgres",
                    format!(
                        "discarding a PostgreSQL {old} cluster in {}",
                        data.display()
                    ),
                );
            }
            if data.exists() {
                fs::remove_dir_all(&data)
                    .with_context(|| format!("removing {}", data.display()))?;
            }
            step(
                "postgres",
                format!(
                    "starting throwaway cluster on 127.0.0.1:{port} (PostgreSQL {version}, data in {})",
                    data.display()
                ),
            );
            cmd::run(
                as_postgres_user(bin.join("initdb"))
                    .args([
                        "-A",
                        "trust",
                        "-U",
                        "postgres",
                        "-E",
                        "UTF8",
                        "--locale=C",
                        "--no-sync",
                        "-D",
                    ])
                    .arg(&data),
            )?;
        }
    }

    remove_stale_lock(&data.join("postmaster.pid"))?;
    remove_stale_lock(&Path::new(WORK_DIR).join(format!(".s.PGSQL.{port}.lock")))?;
    let server_options = format!(
        "-p {port} -k {WORK_DIR} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300"
    );
    let started = cmd::run(
        as_postgres_user(bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-o", &server_options, "-l"])
            .arg(&log)
            .args(["-w", "-t", "60", "start"]),
    );
    if let Err(error) = started {
        bail!(
            "{error}\nPostgreSQL did not start; the end of {}:\n{}",
            log.display(),
            tail(&log, 8)
        );
    }
    write_marker(
        Backend::Postgres,
        &format!("local\nbin={}\ndata={}\n", bin.display(), data.display()),
    )
}

/// A server that was killed leaves its lock files behind (postmaster.pid,
/// and .s.PGSQL.<port>.lock beside the socket), and PostgreSQL refuses to
/// start while the PID in them names a process. A killed server can linger
/// as a zombie for a while when its adoptive parent reaps slowly (as on this
/// project's VMs): remove a lock whose PID names no process or a zombie.
/// (Only where /proc tells; elsewhere PostgreSQL judges for itself.)
fn remove_stale_lock(lock: &Path) -> Result<()> {
    let Ok(contents) = fs::read_to_string(lock) else {
        return Ok(());
    };
    let Some(pid) = contents
        .lines()
        .next()
        .and_then(|line| line.trim().parse::<u32>().ok())
    else {
        return Ok(());
    };
    if !Path::new("/proc/self").exists() {
        return Ok(());
    }
    // /proc/<pid>/stat is "<pid> (<name>) <state> ..."
    let state = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(") ")?.1.chars().next());
    if matches!(state, None | Some('Z')) {
        step(
            "postgres",
            format!(
                "removing the stale {} (server {pid} is gone)",
                lock.display()
            ),
        );
        fs::remove_file(lock).with_context(|| format!("removing {}", lock.display()))?;
    }
    Ok(())
}

/// "15" for PostgreSQL 15.x, as written in a cluster's PG_VERSION file.
fn pg_major_version(bin: &Path) -> Result<String> {
    let output = Command::new(bin.join("pg_ctl"))
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {}/pg_ctl", bin.display()))?;
    let version = String::from_utf8_lossy(&output.stdout);
    // "pg_ctl (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
    version
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.split('.').next())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("cannot read the version in `{}`", version.trim()))
}

/// Shell commands that crash the PostgreSQL xtask started (`-m immediate`:
/// no checkpoint, as if the machine lost power to it) and start it again
/// with the options it last ran with (`pg_ctl restart` on a stopped
/// cluster reads them from `postmaster.opts`), for the test that does this
/// under load. `None` when xtask did not start the PostgreSQL at `url`.
pub fn postgres_crash_commands(url: &str) -> Option<(String, String)> {
    if url != Backend::Postgres.default_url() {
        return None;
    }
    let marker = fs::read_to_string(Backend::Postgres.marker()).ok()?;
    if !marker.starts_with("local") {
        return None;
    }
    let field = |key: &str| {
        marker
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
    };
    let (bin, data) = (field("bin")?, field("data")?);
    let log = Path::new(WORK_DIR).join(format!("pg-{POSTGRES_PORT}.log"));
    let pg_ctl = format!(
        "{}'{bin}/pg_ctl' -D '{data}'",
        if is_root() {
            "runuser -u postgres -- "
        } else {
            ""
        }
    );
    Some((
        format!("{pg_ctl} -m immediate -w stop"),
        format!("{pg_ctl} -l '{}' -w -t 60 restart", log.display()),
    ))
}

fn stop_postgres(marker: &str) -> Result<()> {
    let field = |key: &str| {
        marker
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .map(PathBuf::from)
            .ok_or_else(|| {
                anyhow!(
                    "marker {} lacks `{key}=`",
                    Backend::Postgres.marker().display()
                )
            })
    };
    let (bin, data) = (field("bin")?, field("data")?);
    let pg_ctl = || {
        let mut pg_ctl = as_postgres_user(bin.join("pg_ctl"));
        pg_ctl.arg("-D").arg(&data);
        pg_ctl
    };
    if !cmd::succeeds(pg_ctl().arg("status")) {
        step(
            "postgres",
            format!("the cluster in {} is not running", data.display()),
        );
        return Ok(());
    }
    step(
        "postgres",
        format!("stopping the throwaway cluster in {}", data.display()),
    );
    cmd::run(pg_ctl().args(["-m", "fast", "-w", "stop"]))
}

// --------------------------------------------------------------------- Redis

/// The port of the redis-server xtask starts (the one in the default URL).
const REDIS_PORT: u16 = 63790;

fn start_redis() -> Result<()> {
    let port = REDIS_PORT;
    prepare_work_dir()?;
    step(
        "redis",
        format!("starting redis-server on 127.0.0.1:{port}"),
    );
    let redis_server = cmd::find("redis-server").context("redis-server is not installed")?;
    cmd::run(
        Command::new(redis_server)
            .args([
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .args(["--save", "", "--appendonly", "no", "--dir", WORK_DIR])
            .arg("--pidfile")
            .arg(format!("{WORK_DIR}/redis-{port}.pid"))
            .arg("--logfile")
            .arg(format!("{WORK_DIR}/redis-{port}.log")),
    )?;
    write_marker(Backend::Redis, &format!("local\nport={port}\n"))
}

fn stop_redis(marker: &str) -> Result<()> {
    let port = marker
        .lines()
        .find_map(|line| line.strip_prefix("port="))
        .map_or_else(|| REDIS_PORT.to_string(), str::to_owned);
    if !tcp_connects(&format!("127.0.0.1:{port}")) {
        step("redis", format!("nothing runs on 127.0.0.1:{port}"));
        return Ok(());
    }
    step(
        "redis",
        format!("stopping redis-server on 127.0.0.1:{port}"),
    );
    let redis_cli = cmd::find("redis-cli").context("redis-cli is not installed")?;
    cmd::run(Command::new(redis_cli).args(["-p", &port, "shutdown", "nosave"]))
}

// ------------------------------------------------------------------ RabbitMQ

fn start_rabbitmq() -> Result<()> {
    step(
        "rabbitmq",
        "starting rabbitmq-server on 127.0.0.1:5672 (takes a few seconds)",
    );
    let started = Instant::now();
    // A fresh node every time, in a directory of its own: a test broker
    // keeps nothing worth keeping, and the queues earlier runs left behind
    // (their `x-expires` only counts while the broker runs) pile up until
    // recovering them at boot takes minutes.
    let base = Path::new(WORK_DIR).join("rabbitmq");
    if base.exists() {
        std::fs::remove_dir_all(&base)
            .with_context(|| format!("cannot clear {}", base.display()))?;
    }
    for dir in ["mnesia", "log"] {
        std::fs::create_dir_all(base.join(dir))
            .with_context(|| format!("cannot create {}", base.join(dir).display()))?;
    }
    // Debian's rabbitmq-server switches to the `rabbitmq` user when run as root.
    if is_root() && cmd::succeeds(Command::new("id").arg("rabbitmq")) {
        cmd::run(Command::new("chown").args(["-R", "rabbitmq:"]).arg(&base))?;
    }
    cmd::run(
        Command::new(cmd::find("rabbitmq-server").context("rabbitmq-server is not installed")?)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_MNESIA_BASE", base.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", base.join("log"))
            // One scheduler, as Erlang picks by itself in a container given
            // one CPU: with one per core, on a machine whose few cores the
            // tests and services share, every message hops between
            // schedulers that wake each other (the checkout bench measured
            // the broker's CPU per order down from 3.2 to 1.7 ms). No
            // `+sbwt none`: RabbitMQ's own defaults already stop idle
            // schedulers from spinning.
            .env("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", "+S 1:1")
            .arg("-detached"),
    )?;
    write_marker(Backend::RabbitMq, "local\n")?;
    // `await_startup` exits 69 at once while the node has not registered
    // yet, and waits for the boot to finish once it has: loop on it.
    let rabbitmqctl = cmd::find("rabbitmqctl").context("rabbitmqctl is not installed")?;
    eprintln!(
        "    $ {} await_startup  (repeated until it succeeds)",
        rabbitmqctl.display()
    );
    while !cmd::succeeds(Command::new(&rabbitmqctl).arg("await_startup")) {
        if started.elapsed() > Backend::RabbitMq.ready_timeout() {
            bail!(
                "RabbitMQ did not finish booting within {}s; see its log {} and `rabbitmqctl status`",
                Backend::RabbitMq.ready_timeout().as_secs(),
                Backend::RabbitMq.log_location()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    step(
        "rabbitmq",
        format!("booted in {:.1}s", started.elapsed().as_secs_f64()),
    );
    Ok(())
}

fn stop_rabbitmq() -> Result<()> {
    let Some(rabbitmqctl) = cmd::find("rabbitmqctl") else {
        bail!("rabbitmqctl is not installed, so the RabbitMQ node xtask started cannot be stopped");
    };
    if !cmd::succeeds(Command::new(&rabbitmqctl).arg("ping")) {
        step("rabbitmq", "the node is not running");
        return Ok(());
    }
    step(
        "rabbitmq",
        "stopping the RabbitMQ node (epmd keeps running; that is harmless)",
    );
    cmd::run(Command::new(rabbitmqctl).arg("stop"))
}

// ------------------------------------------------------- packages and docker

fn can_use_apt() -> bool {
    is_root() && Path::new("/etc/debian_version").exists() && cmd::find("apt-get").is_some()
}

fn apt_install(backends: &[Backend]) -> Result<()> {
    let packages: Vec<&str> = backends.iter().map(|b| b.apt_package()).collect();
    step("apt", format!("installing {}", packages.join(" ")));
    cmd::run(Command::new("apt-get").arg("update"))?;
    cmd::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y"])
            .args(&packages),
    )
}

fn docker_compose_works() -> bool {
    cmd::find("docker").is_some()
        && cmd::succeeds(Command::new("docker").args(["compose", "version"]))
}

fn compose(root: &Path) -> Command {
    let mut docker = Command::new("docker");
    docker
        .arg("compose")
        .arg("-f")
        .arg(root.join("docker-compose.yml"));
    docker
}

fn compose_up(root: &Path, backends: &[Backend]) -> Result<()> {
    let services: Vec<&str> = backends.iter().map(|b| b.compose_service()).collect();
    step(
        "docker",
        format!("starting {} with docker compose", services.join(", ")),
    );
    // `--wait` returns once the healthchecks in docker-compose.yml pass.
    cmd::run(compose(root).args(["up", "-d", "--wait"]).args(&services))?;
    for &backend in backends {
        write_marker(backend, "docker\n")?;
    }
    Ok(())
}

fn cannot_provision(backends: &[Backend]) -> String {
    let names: Vec<&str> = backends.iter().map(|b| b.name()).collect();
    let packages: Vec<&str> = backends.iter().map(|b| b.apt_package()).collect();
    let vars: Vec<&str> = backends.iter().map(|b| b.env_var()).collect();
    let ci = if std::env::var("CI").is_ok_and(|v| v == "true") {
        "\n(CI=true: the tests against real backends are never skipped.)"
    } else {
        ""
    };
    format!(
        "cannot provision {names}: nothing answers at the URLs, the packages are not installed, \
         and neither apt (as root on Debian) nor `docker compose` is available here.\n\
         Any one of these fixes it:\n\
         \x20 - install the packages: `sudo apt-get install -y {packages}` \
         (on Debian/Ubuntu, running as root, xtask does that itself);\n\
         \x20 - install Docker with the compose plugin (xtask then uses docker-compose.yml);\n\
         \x20 - run the servers yourself and set {vars}.{ci}",
        names = names.join(", "),
        packages = packages.join(" "),
        vars = vars.join(", "),
    )
}

// ----------------------------------------------------- markers, files, users

fn prepare_work_dir() -> Result<()> {
    fs::create_dir_all(Path::new(WORK_DIR).join("started"))
        .with_context(|| format!("creating {WORK_DIR}"))
}

fn write_marker(backend: Backend, contents: &str) -> Result<()> {
    prepare_work_dir()?;
    let marker = backend.marker();
    fs::write(&marker, contents).with_context(|| format!("writing {}", marker.display()))
}

/// The last `lines` lines of a log file, for an error message.
fn tail(path: &Path, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read it: {e})"),
    }
}

fn remove_marker(backend: Backend) -> Result<()> {
    let marker = backend.marker();
    fs::remove_file(&marker).with_context(|| format!("removing {}", marker.display()))
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    match fs::metadata("/proc/self") {
        Ok(meta) => meta.uid() == 0,
        Err(_) => cmd::capture(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0"),
    }
}
