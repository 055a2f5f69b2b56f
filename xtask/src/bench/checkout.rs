//! `cargo xtask bench checkout`: the whole shop as seven release processes
//! (`emporium serve …`) on real PostgreSQL, Redis and RabbitMQ, and N
//! simulated customers who add a product to their cart, place an order
//! (with an Idempotency-Key) and wait until it is confirmed, reading it
//! with `?wait=` as a checkout page does (or polling, `--wait-secs 0`). Measured
//! at saturation (customers back to back) and at half of that rate
//! (customers paced); figures are printed, never asserted.
//!
//! Isolation from anything else on the same backends:
//! - PostgreSQL: one fresh database per service, dropped at the end;
//! - Redis: a database number of its own (carts, catalog cache, sign-in
//!   counters), flushed at the end — that number only;
//! - RabbitMQ: the services always use the exchange `emporium.events` and
//!   queues named after it, so two shops on one vhost would steal each
//!   other's messages. The bench creates a private vhost
//!   (`rabbitmqctl add_vhost emporium-bench-<pid>`), points every service
//!   at it, and deletes it at the end: nothing is shared and nothing needs
//!   purging.
//!
//! Customers register and sign in before the timed phases (argon2 is slow
//! on purpose, and sign-in is rate limited; the bench's gateway sets that
//! limit high).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::catalog::{
    ChildPids, Cpu, Group, PgDatabase, RedisDb, Scratch, Shares, cache_lookups,
    clean_stale_databases, cores, exited, explain, psql_lines, require_psql, with_path,
};
use super::processes::{build_emporium, free_port, start, wait_ready};
use crate::{cmd, provision};

/// The Redis database number of the checkout bench.
const REDIS_DB: u32 = 8;
const ADMIN_EMAIL: &str = "bench-admin@example.com";
const ADMIN_PASSWORD: &str = "bench admin password";
const CUSTOMER_PASSWORD: &str = "bench customer password";
/// Different products customers pick from (so reservations do not all
/// queue on one row), each with more stock than any run can sell.
const PRODUCTS: usize = 20;
const WARM_UP_SECONDS: u64 = 5;
/// How long a customer waits for one order before giving up on it.
const ORDER_DEADLINE: Duration = Duration::from_secs(60);

struct Options {
    customers: usize,
    seconds: u64,
    poll: Duration,
    /// Read orders with `?wait=` this many seconds; 0: poll every `poll`.
    wait_secs: u64,
    webhook_delay_ms: u64,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut o = Options {
            customers: 64,
            seconds: 20,
            poll: Duration::from_millis(25),
            wait_secs: 10,
            webhook_delay_ms: 150,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str, zero_ok: bool| {
                args.next()
                    .with_context(|| format!("{name} needs a value"))
                    .and_then(|v| {
                        v.parse::<u64>()
                            .ok()
                            .filter(|n| zero_ok || *n > 0)
                            .with_context(|| format!("{name}: `{v}` is not a valid number"))
                    })
            };
            match arg.as_str() {
                "--customers" => o.customers = usize::try_from(value("--customers", false)?)?,
                "--seconds" => o.seconds = value("--seconds", false)?,
                "--poll-ms" => o.poll = Duration::from_millis(value("--poll-ms", false)?),
                "--wait-secs" => o.wait_secs = value("--wait-secs", true)?,
                "--webhook-delay-ms" => o.webhook_delay_ms = value("--webhook-delay-ms", true)?,
                other => bail!(
                    "unknown argument `{other}` for `cargo xtask bench checkout` \
                     (--customers N, --seconds S, --wait-secs S, --poll-ms MS, --webhook-delay-ms MS)"
                ),
            }
        }
        Ok(o)
    }
}

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let options = Options::parse(args)?;
    require_psql()?;
    let rabbitmqctl = cmd::find("rabbitmqctl").context(
        "rabbitmqctl is not installed: the checkout bench needs it to give its services a \
         RabbitMQ vhost of their own (apt-get install rabbitmq-server, or run the bench where \
         the broker runs)",
    )?;
    let urls = provision::provision(root)?;
    let bin = build_emporium(root)?;
    clean_stale_databases(&urls.postgres)?;
    clean_stale_vhosts(&rabbitmqctl)?;
    let scratch = Scratch::new("checkout")?;

    // Guards, dropped in reverse: the services (declared later) first,
    // then the vhost, Redis, the databases, and the scratch directory.
    let pid = std::process::id();
    let prefix = format!("emporium_bench_checkout_{pid}");
    let mut databases = HashMap::new();
    for service in ["identity", "catalog", "orders", "payments", "notifications"] {
        databases.insert(
            service,
            PgDatabase::create(&urls.postgres, &format!("{prefix}_{service}"))?,
        );
    }
    let redis = RedisDb::claim(&urls.redis, REDIS_DB)?;
    let vhost = Vhost::create(&rabbitmqctl, &urls.amqp, &format!("emporium-bench-{pid}"))?;

    let key = cmd::capture(Command::new(&bin).arg("keygen"))?;
    let key_file = scratch.path.join("signing.pem");
    std::fs::write(&key_file, key)?;

    let names = [
        "identity",
        "catalog",
        "cart",
        "orders",
        "payments",
        "notifications",
        "gateway",
    ];
    let ports: HashMap<&str, u16> = names
        .iter()
        .map(|n| Ok((*n, free_port()?)))
        .collect::<Result<_>>()?;
    let local = |service: &str| format!("http://127.0.0.1:{}", ports[service]);
    let jwks = format!("{}/.well-known/jwks.json", local("identity"));
    let common = |service: &str| {
        vec![
            ("EMPORIUM_LISTEN", format!("127.0.0.1:{}", ports[service])),
            ("EMPORIUM_BUS_URL", vhost.url.clone()),
            ("EMPORIUM_JWKS_URL", jwks.clone()),
        ]
    };
    let db = |service: &str| ("EMPORIUM_DATABASE_URL", databases[service].url.clone());
    let mut env: HashMap<&str, Vec<(&str, String)>> = HashMap::new();
    env.insert(
        "identity",
        vec![
            db("identity"),
            ("EMPORIUM_CACHE_URL", redis.url.clone()),
            (
                "EMPORIUM_JWT_SIGNING_KEY_FILE",
                key_file.display().to_string(),
            ),
            ("EMPORIUM_ADMIN_EMAIL", ADMIN_EMAIL.into()),
            ("EMPORIUM_ADMIN_PASSWORD", ADMIN_PASSWORD.into()),
        ],
    );
    env.insert(
        "catalog",
        vec![db("catalog"), ("EMPORIUM_CACHE_URL", redis.url.clone())],
    );
    env.insert(
        "cart",
        vec![
            ("EMPORIUM_CART_STORE_URL", redis.url.clone()),
            ("EMPORIUM_CATALOG_URL", local("catalog")),
            ("EMPORIUM_CART_KEY_PREFIX", format!("emporium-bench-{pid}")),
        ],
    );
    env.insert(
        "orders",
        vec![
            db("orders"),
            ("EMPORIUM_CART_URL", local("cart")),
            ("EMPORIUM_CATALOG_URL", local("catalog")),
        ],
    );
    env.insert(
        "payments",
        vec![
            db("payments"),
            ("EMPORIUM_PAYMENT_PROVIDER", "sandbox".into()),
            ("EMPORIUM_STRIPE_WEBHOOK_SECRET", "whsec_bench".into()),
            ("EMPORIUM_PUBLIC_URL", local("payments")),
            (
                "EMPORIUM_SANDBOX_WEBHOOK_DELAY_MS",
                options.webhook_delay_ms.to_string(),
            ),
        ],
    );
    env.insert("notifications", vec![db("notifications")]);
    env.insert(
        "gateway",
        vec![
            (
                "EMPORIUM_UPSTREAMS",
                names[..6]
                    .iter()
                    .map(|n| format!("{n}={}", local(n)))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("EMPORIUM_CACHE_URL", "memory://".into()),
            ("EMPORIUM_RATE_LIMIT_PER_SECOND", "100000000".into()),
            ("EMPORIUM_RATE_LIMIT_BURST", "100000000".into()),
            ("EMPORIUM_LOGIN_RATE_LIMIT_PER_MINUTE", "100000000".into()),
            ("EMPORIUM_LOGIN_RATE_LIMIT_BURST", "100000000".into()),
        ],
    );

    cmd::step(
        "bench",
        "starting identity, catalog, cart, orders, payments, notifications and the gateway",
    );
    let mut pids = ChildPids::default();
    let mut services = Vec::new();
    let mut groups = Vec::new();
    let mut watched = Vec::new();
    for name in names {
        let mut vars = common(name);
        vars.extend(env.remove(name).unwrap_or_default());
        let mut service = start(name, &bin, &["serve", name], &vars, &scratch.log(name))?;
        let pid = pids.newest();
        groups.push(Group::pid(name, pid));
        watched.push((name, pid));
        // Identity first: the others fetch its JWKS.
        if name == "identity" {
            wait_ready(&mut service, ports[name])?;
        }
        services.push(service);
    }
    for (service, name) in services.iter_mut().zip(names) {
        wait_ready(service, ports[name])?;
    }
    groups.extend([
        Group::comm("postgres (all)", "postgres"),
        Group::comm("redis (all)", "redis-server"),
        Group::comm("rabbitmq (all)", "beam.smp"),
        Group::own_process("customers (xtask)"),
    ]);
    let cpu = Cpu::new(groups);
    let gateway = ports["gateway"];

    let mut shop = Shop::stock(gateway).map_err(|e| explain(e, &watched))?;
    shop.watched.clone_from(&watched);
    let mut customers =
        register_customers(gateway, options.customers).map_err(|e| explain(e, &watched))?;

    // Commits per bench database, from PostgreSQL's statistics.
    let commits_sql = format!(
        "SELECT datname || ' ' || xact_commit FROM pg_stat_database WHERE datname LIKE '{prefix}\\_%'"
    );
    let commits = || -> Result<HashMap<String, f64>> {
        let mut by_service = HashMap::new();
        for line in psql_lines(&urls.postgres, &commits_sql)? {
            if let Some((db, n)) = line.split_once(' ') {
                let service = db.rsplit('_').next().unwrap_or(db).to_owned();
                by_service.insert(service, n.parse().unwrap_or(0.0));
            }
        }
        Ok(by_service)
    };
    let orders_db = &databases["orders"].url;
    let service_dbs: Vec<(&str, &str)> = ["orders", "catalog", "payments", "notifications"]
        .into_iter()
        .map(|s| (s, databases[s].url.as_str()))
        .collect();
    let reading = match options.wait_secs {
        0 => Reading::Poll(options.poll),
        secs => Reading::Wait(secs),
    };
    let mut run_phase = |label: &'static str, seconds: u64, rate: Option<f64>| -> Result<Phase> {
        let start = Instant::now() + Duration::from_millis(200);
        let end = start + Duration::from_secs(seconds);
        // Commits and CPU are sampled at the window's edges, while the
        // load is steady (the counters lag by about a second at both).
        let (outcomes, sampled) = std::thread::scope(|scope| {
            let sampler = scope.spawn(|| -> Result<_> {
                sleep_until(start);
                let (c0, s0) = (commits()?, cpu.sample());
                sleep_until(end);
                Ok((c0, s0, commits()?, cpu.sample()))
            });
            let outcomes = drive(&mut customers, &shop, label, start, end, rate, reading);
            (outcomes, sampler.join())
        });
        let (c0, s0, c1, s1) =
            sampled.map_err(|_| anyhow::anyhow!("the sampling thread panicked"))??;
        let window = s1.at().duration_since(s0.at()).as_secs_f64();
        let mut commits: Vec<(String, f64)> = c1
            .iter()
            .map(|(db, n)| {
                (
                    db.clone(),
                    (n - c0.get(db).copied().unwrap_or(0.0)) / window,
                )
            })
            .collect();
        commits.sort_by(|a, b| b.1.total_cmp(&a.1));
        Phase::summarise(
            label,
            rate,
            outcomes?,
            commits,
            (cpu.report(&s0, &s1), cpu.shares(&s0, &s1)),
            &service_dbs,
        )
    };

    cmd::step(
        "bench",
        format!(
            "warming up: {WARM_UP_SECONDS} s with {} customers",
            options.customers
        ),
    );
    run_phase("warmup", WARM_UP_SECONDS, None).map_err(|e| explain(e, &watched))?;
    let lookups_before = cache_lookups(ports["catalog"]).ok();
    cmd::step(
        "bench",
        format!(
            "{} s at saturation: {} customers, back to back",
            options.seconds, options.customers
        ),
    );
    let saturated =
        run_phase("saturated", options.seconds, None).map_err(|e| explain(e, &watched))?;
    let lookups_after = cache_lookups(ports["catalog"]).ok();
    let half = (saturated.confirmed_per_sec / 2.0).max(0.5);
    cmd::step(
        "bench",
        format!(
            "{} s at half of saturation: {half:.1} orders/s offered",
            options.seconds
        ),
    );
    let halved =
        run_phase("half", options.seconds, Some(half)).map_err(|e| explain(e, &watched))?;
    let statuses = psql_lines(
        orders_db,
        "SELECT status || ' ' || count(*) FROM orders GROUP BY status ORDER BY status",
    )?;

    drop(services);
    drop(vhost);
    drop(redis);
    drop(databases);
    // Keep the services' logs when the shop did not work, to see why.
    if saturated.not_confirmed + halved.not_confirmed == 0 {
        scratch.success();
    } else {
        cmd::step(
            "bench",
            format!(
                "some orders were never confirmed; the services' logs stay in {}",
                scratch.path.display()
            ),
        );
    }

    println!();
    println!(
        "checkout benchmark: {} customers, {PRODUCTS} products; 7 services + PostgreSQL, Redis and \
         RabbitMQ and the customers all on this machine's {} cores",
        options.customers,
        cores()
    );
    let how_customers_read = match reading {
        Reading::Wait(secs) => format!(
            "customers read their order with ?wait={secs}, so the shop answers once it is settled"
        ),
        Reading::Poll(first) => format!(
            "customers poll their order after {} ms, then 1.5x less often, at most every {} ms",
            first.as_millis(),
            (first * 4).as_millis()
        ),
    };
    println!(
        "(sandbox payments: webhook {} ms after the charge, 20% delivered twice; {how_customers_read})",
        options.webhook_delay_ms,
    );
    saturated.print(&format!(
        "at saturation ({} customers back to back, {} s)",
        options.customers, options.seconds
    ));
    halved.print(&format!(
        "at half of saturation ({half:.1} orders/s offered, customers paced, {} s)",
        options.seconds
    ));
    println!();
    println!(
        "confirmed orders/s at saturation:            {:>8.1}        target >= 300",
        saturated.confirmed_per_sec
    );
    println!(
        "p99 place→confirmed at half of saturation:   {:>8.1} ms     target <= 250 ms  (server clock; {:.1} ms as customers saw it)",
        halved.server.1, halved.client.1
    );
    if let Some(line) = cpu_per_order(&saturated.shares, saturated.confirmed_per_sec) {
        println!(
            "cpu per confirmed order at saturation: {line}; 300 orders/s would leave {:.1} ms on these {} cores",
            cores() as f64 * 1000.0 / 300.0,
            cores()
        );
    }
    if let (Some((h0, m0)), Some((h1, m1))) = (lookups_before, lookups_after) {
        let (hits, misses) = (h1 - h0, m1 - m0);
        println!(
            "catalog cache at saturation: {:.1}% hits ({hits:.0} hits, {misses:.0} misses; every stock reservation invalidates it)",
            100.0 * hits / (hits + misses).max(1.0)
        );
    }
    println!("orders by status at the end: {}", statuses.join(", "));
    Ok(())
}

// --------------------------------------------------------------- RabbitMQ

/// A RabbitMQ vhost for this run alone, deleted when dropped.
struct Vhost {
    ctl: PathBuf,
    name: String,
    url: String,
}

impl Vhost {
    fn create(ctl: &Path, amqp_url: &str, name: &str) -> Result<Self> {
        let user = amqp_url
            .split_once("://")
            .and_then(|(_, rest)| rest.split('/').next()?.rsplit_once('@'))
            .map(|(userinfo, _)| userinfo.split(':').next().unwrap_or("guest").to_owned())
            .unwrap_or_else(|| "guest".to_owned());
        cmd::run(Command::new(ctl).args(["-q", "add_vhost", name])).with_context(|| {
            format!("cannot create the bench's RabbitMQ vhost `{name}` with rabbitmqctl (is the broker at {amqp_url} on this machine?)")
        })?;
        let vhost = Self {
            ctl: ctl.to_owned(),
            name: name.to_owned(),
            url: with_path(amqp_url, name)?,
        };
        cmd::run(Command::new(ctl).args([
            "-q",
            "set_permissions",
            "-p",
            name,
            &user,
            ".*",
            ".*",
            ".*",
        ]))?;
        Ok(vhost)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = cmd::run(Command::new(&self.ctl).args(["-q", "delete_vhost", &self.name]));
    }
}

/// Delete the vhosts of bench runs that died before cleaning up.
fn clean_stale_vhosts(ctl: &Path) -> Result<()> {
    let listed = cmd::capture(Command::new(ctl).args(["-q", "list_vhosts", "name"])).context(
        "rabbitmqctl cannot reach the broker; the checkout bench needs it to make a private vhost",
    )?;
    for name in listed
        .lines()
        .map(str::trim)
        .filter(|n| n.starts_with("emporium-bench-"))
    {
        let owner = name
            .trim_start_matches("emporium-bench-")
            .parse::<u32>()
            .ok();
        if owner.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            cmd::step(
                "bench",
                format!("deleting the vhost {name}, left behind by an earlier run"),
            );
            cmd::run(Command::new(ctl).args(["-q", "delete_vhost", name]))?;
        }
    }
    Ok(())
}

// ------------------------------------------------------- HTTP, kept alive

/// An HTTP/1.1 client on one kept-alive loopback connection (a customer's
/// browser tab); reconnects when the server closed it.
struct Client {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
}

/// A failed exchange, and whether it failed before any of the answer came
/// (a kept-alive connection the server had closed: safe to resend).
struct Failure {
    nothing_received: bool,
    error: anyhow::Error,
}

fn fail(nothing_received: bool) -> impl Fn(std::io::Error) -> Failure {
    move |e| Failure {
        nothing_received,
        error: e.into(),
    }
}

impl Client {
    fn new(port: u16) -> Self {
        Self { port, conn: None }
    }

    fn send(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let body = body.map(Value::to_string);
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n",
            self.port
        );
        if let Some(t) = token {
            request.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        match &body {
            Some(b) => request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )),
            None => request.push_str("\r\n"),
        }
        for attempt in 0..2 {
            let reused = self.conn.is_some();
            if !reused {
                let stream = TcpStream::connect(("127.0.0.1", self.port))?;
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(Duration::from_secs(30)))?;
                self.conn = Some(BufReader::new(stream));
            }
            match self.exchange(&request) {
                Ok((status, text, keep)) => {
                    if !keep {
                        self.conn = None;
                    }
                    let value = if text.trim().is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_str(&text).unwrap_or(Value::String(text))
                    };
                    return Ok((status, value));
                }
                Err(f) => {
                    self.conn = None;
                    if !(reused && f.nothing_received && attempt == 0) {
                        return Err(f.error.context(format!("{method} {path}")));
                    }
                }
            }
        }
        bail!("{method} {path}: the connection kept closing")
    }

    fn exchange(&mut self, request: &str) -> Result<(u16, String, bool), Failure> {
        let conn = self.conn.as_mut().expect("connected");
        conn.get_mut()
            .write_all(request.as_bytes())
            .map_err(fail(true))?;
        let mut line = String::new();
        if conn.read_line(&mut line).map_err(fail(true))? == 0 {
            return Err(Failure {
                nothing_received: true,
                error: anyhow::anyhow!("connection closed"),
            });
        }
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Failure {
                nothing_received: false,
                error: anyhow::anyhow!("malformed status line `{}`", line.trim()),
            })?;
        let (mut length, mut chunked, mut keep) = (None, false, true);
        loop {
            line.clear();
            conn.read_line(&mut line).map_err(fail(false))?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
                match k.as_str() {
                    "content-length" => length = v.parse::<usize>().ok(),
                    "transfer-encoding" => chunked = v.contains("chunked"),
                    "connection" => keep = !v.contains("close"),
                    _ => {}
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                conn.read_line(&mut line).map_err(fail(false))?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| Failure {
                    nothing_received: false,
                    error: anyhow::anyhow!("bad chunk size `{}`", line.trim()),
                })?;
                if size == 0 {
                    // Trailers, up to the blank line.
                    loop {
                        line.clear();
                        if conn.read_line(&mut line).map_err(fail(false))? == 0
                            || line.trim().is_empty()
                        {
                            break;
                        }
                    }
                    break;
                }
                let start = body.len();
                body.resize(start + size + 2, 0);
                conn.read_exact(&mut body[start..]).map_err(fail(false))?;
                body.truncate(start + size);
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            conn.read_exact(&mut body).map_err(fail(false))?;
        } else if status != 204 && status != 304 {
            conn.read_to_end(&mut body).map_err(fail(false))?;
            keep = false;
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned(), keep))
    }
}

fn expect(what: &str, (status, body): (u16, Value), ok: &[u16]) -> Result<Value> {
    if ok.contains(&status) {
        Ok(body)
    } else {
        bail!("{what} answered {status}: {body}")
    }
}

// ------------------------------------------------------------ the shop

struct Shop {
    products: Vec<String>,
    /// The services' processes: a stuck order checks whether one died.
    watched: Vec<(&'static str, Option<u32>)>,
}

impl Shop {
    /// As the admin: a category and products with stock to spare.
    fn stock(port: u16) -> Result<Self> {
        cmd::step(
            "bench",
            format!("creating {PRODUCTS} products as the admin"),
        );
        let mut admin = Client::new(port);
        let tokens = expect(
            "admin sign-in",
            admin.send(
                "POST",
                "/api/v1/auth/login",
                None,
                &[],
                Some(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})),
            )?,
            &[200],
        )?;
        let token = tokens["access_token"]
            .as_str()
            .context("no access token for the admin")?
            .to_owned();
        let category = expect(
            "creating a category",
            admin.send(
                "POST",
                "/api/v1/categories",
                Some(&token),
                &[],
                Some(&json!({"name": "Bench", "slug": "bench", "description": "Products of the checkout bench."})),
            )?,
            &[201],
        )?;
        let category_id = category["id"]
            .as_str()
            .context("category without id")?
            .to_owned();
        let mut products = Vec::new();
        for i in 0..PRODUCTS {
            let product = json!({
                "sku": format!("BENCH-{i:03}"),
                "name": format!("Bench Product {i}"),
                "description": "Sold by the checkout benchmark.",
                "price": {"amount": 1_999 + 100 * i as i64, "currency": "USD"},
                "stock": 100_000_000,
                "category_id": category_id,
                "images": [],
                "is_active": true,
            });
            let made = expect(
                "creating a product",
                admin.send(
                    "POST",
                    "/api/v1/products",
                    Some(&token),
                    &[],
                    Some(&product),
                )?,
                &[201],
            )?;
            products.push(
                made["id"]
                    .as_str()
                    .context("product without id")?
                    .to_owned(),
            );
        }
        Ok(Self {
            products,
            watched: Vec::new(),
        })
    }
}

struct Customer {
    index: usize,
    token: String,
    client: Client,
    rng: u64,
}

impl Customer {
    fn random(&mut self, below: usize) -> usize {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % below as u64) as usize
    }
}

/// Register and sign in `n` customers (before anything is timed).
fn register_customers(port: u16, n: usize) -> Result<Vec<Customer>> {
    cmd::step(
        "bench",
        format!("registering and signing in {n} customers (argon2: slow on purpose)"),
    );
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let pid = std::process::id();
    let mut customers: Vec<Customer> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| -> Result<Vec<Customer>> {
                    let mut mine = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= n {
                            return Ok(mine);
                        }
                        let mut client = Client::new(port);
                        let email = format!("customer-{index}-{pid}@example.com");
                        expect(
                            "registering a customer",
                            client.send(
                                "POST",
                                "/api/v1/auth/register",
                                None,
                                &[],
                                Some(&json!({"email": email, "password": CUSTOMER_PASSWORD, "name": format!("Customer {index}")})),
                            )?,
                            &[201],
                        )?;
                        let tokens = expect(
                            "signing a customer in",
                            client.send("POST", "/api/v1/auth/login", None, &[], Some(&json!({"email": email, "password": CUSTOMER_PASSWORD})))?,
                            &[200],
                        )?;
                        let token = tokens["access_token"].as_str().context("no access token")?.to_owned();
                        mine.push(Customer {
                            index,
                            token,
                            client,
                            rng: (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
                        });
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| anyhow::anyhow!("a registering thread panicked"))?
            })
            .collect::<Result<Vec<_>>>()
            .map(|v| v.into_iter().flatten().collect())
    })?;
    customers.sort_by_key(|c| c.index);
    eprintln!(
        "    {n} customers ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(customers)
}

/// One order as a customer lived it.
struct Outcome {
    placed_at: Instant,
    /// When the customer saw it confirmed (None: cancelled or timed out).
    confirmed_at: Option<Instant>,
    add_ms: f64,
    place_ms: f64,
    status: String,
    /// Orders placed again because a late cart clear had emptied the cart.
    replaced: u32,
    /// Reads of the order until it was settled.
    polls: u32,
}

/// Every customer, for `length`: add a random product, place the order,
/// read it until it is confirmed or cancelled. Back to back without `rate`;
/// otherwise each customer starts orders on a schedule so that all of them
/// together offer `rate` orders/s (starting late when the previous order
/// took longer than its slot). In-flight orders are finished.
fn drive(
    customers: &mut [Customer],
    shop: &Shop,
    phase: &str,
    start: Instant,
    end: Instant,
    rate: Option<f64>,
    reading: Reading,
) -> Result<(Instant, Instant, Vec<Outcome>)> {
    let n = customers.len();
    let pid = std::process::id();
    let results: Vec<Result<Vec<Outcome>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = customers
            .iter_mut()
            .map(|customer| {
                scope.spawn(move || -> Result<Vec<Outcome>> {
                    let mut outcomes = Vec::new();
                    let slot = rate.map(|r| Duration::from_secs_f64(n as f64 / r));
                    let offset = rate.map_or(Duration::ZERO, |r| {
                        Duration::from_secs_f64(customer.index as f64 / r)
                    });
                    let mut k = 0u32;
                    loop {
                        let now = Instant::now();
                        let due = match slot {
                            Some(slot) => start + offset + slot * k,
                            None => start.max(now),
                        };
                        if due >= end {
                            break;
                        }
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                        k += 1;
                        let key = format!("bench-{pid}-{phase}-{}-{k}", customer.index);
                        outcomes.push(one_order(customer, shop, &key, reading)?);
                    }
                    Ok(outcomes)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a customer thread panicked")))
            })
            .collect()
    });
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    Ok((start, end, all))
}

/// How customers learn that their order is settled.
#[derive(Clone, Copy)]
enum Reading {
    /// `GET /orders/{id}?wait=S`: the shop answers once it is settled.
    Wait(u64),
    /// Poll after this long, then 1.5× less often, at most every 4×.
    Poll(Duration),
}

fn one_order(c: &mut Customer, shop: &Shop, key: &str, reading: Reading) -> Result<Outcome> {
    let token = c.token.clone();
    let product = shop.products[c.random(shop.products.len())].clone();
    let add = json!({"product_id": product, "quantity": 1});
    let order = json!({
        "shipping_address": {"name": "Bench Customer", "line1": "1 Load Street", "city": "Springfield", "postal_code": "12345", "country": "US"},
        "payment_method": "pm_card_visa",
    });
    let t = Instant::now();
    expect(
        "adding to the cart",
        c.client
            .send("POST", "/api/v1/cart/items", Some(&token), &[], Some(&add))?,
        &[200, 201],
    )?;
    let add_ms = ms(t.elapsed());
    let mut replaced = 0;
    let (placed_at, place_ms, placed) = loop {
        let attempt_key = if replaced == 0 {
            key.to_owned()
        } else {
            format!("{key}-r{replaced}")
        };
        let placed_at = Instant::now();
        let answer = c.client.send(
            "POST",
            "/api/v1/orders",
            Some(&token),
            &[("Idempotency-Key", &attempt_key)],
            Some(&order),
        )?;
        let place_ms = ms(placed_at.elapsed());
        // 409: the clear of the previous order's cart came late and took
        // this item with it; put it back and order again.
        if answer.0 == 409 && replaced < 3 {
            replaced += 1;
            expect(
                "adding to the cart",
                c.client
                    .send("POST", "/api/v1/cart/items", Some(&token), &[], Some(&add))?,
                &[200, 201],
            )?;
            continue;
        }
        break (
            placed_at,
            place_ms,
            expect("placing an order", answer, &[201])?,
        );
    };
    let id = placed["id"]
        .as_str()
        .context("order without id")?
        .to_owned();
    let path = match reading {
        Reading::Wait(secs) => format!("/api/v1/orders/{id}?wait={secs}"),
        Reading::Poll(_) => format!("/api/v1/orders/{id}"),
    };
    // Polling like a checkout page: soon, then less and less often (x1.5,
    // up to four times the first wait), so slow orders do not flood the
    // shop with reads.
    let mut pause = match reading {
        Reading::Wait(_) => Duration::ZERO,
        Reading::Poll(first) => first,
    };
    let mut polls = 0;
    loop {
        if let Reading::Poll(first) = reading {
            std::thread::sleep(pause);
            pause = (pause.mul_f64(1.5)).min(first * 4);
        }
        polls += 1;
        let order = expect(
            "reading an order",
            c.client.send("GET", &path, Some(&token), &[], None)?,
            &[200],
        )?;
        let status = order["status"].as_str().unwrap_or_default().to_owned();
        if polls % 20 == 0 && !exited(&shop.watched).is_empty() {
            bail!("order {id} is stuck at `{status}`");
        }
        let done = match status.as_str() {
            "confirmed" | "processing" | "shipped" | "delivered" => Some(Some(Instant::now())),
            "cancelled" => Some(None),
            _ if placed_at.elapsed() > ORDER_DEADLINE => Some(None),
            _ => None,
        };
        if let Some(confirmed_at) = done {
            return Ok(Outcome {
                placed_at,
                confirmed_at,
                add_ms,
                place_ms,
                status,
                replaced,
                polls,
            });
        }
    }
}

/// `percentile_cont(0.5) …, percentile_cont(0.99) …` of `expr`.
fn p50_p99(expr: &str) -> String {
    format!(
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY {expr}), \
         percentile_cont(0.99) WITHIN GROUP (ORDER BY {expr})"
    )
}

/// The numbers of a one-row query (NULLs as NaN).
fn numbers(url: &str, sql: &str) -> Result<Vec<f64>> {
    let out = cmd::capture(
        provision::psql(url)
            .context("psql is not installed")?
            .args(["-At", "-F", " ", "-c", sql]),
    )?;
    Ok(out
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(f64::NAN))
        .collect())
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The p-th percentile (0–100) of `values`, nearest rank.
fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

// ------------------------------------------------------------- figures

struct Phase {
    confirmed_per_sec: f64,
    offered: Option<f64>,
    placed: usize,
    not_confirmed: usize,
    replaced: u32,
    polls: u32,
    /// p50, p99 in ms: place→confirmed by the services' own clock.
    server: (f64, f64),
    /// … of which placed → stock reserved, and stock reserved → paid.
    reserved: (f64, f64),
    paid: (f64, f64),
    /// Per service: p50, p99 of the wait in the outbox.
    outbox: Vec<(String, (f64, f64))>,
    /// p50, p99 in ms: POST /orders sent → confirmed seen by polling.
    client: (f64, f64),
    place: (f64, f64),
    add: (f64, f64),
    /// Per database (service), busiest first.
    commits: Vec<(String, f64)>,
    cpu: String,
    shares: Shares,
}

impl Phase {
    fn summarise(
        label: &str,
        rate: Option<f64>,
        (start, end, outcomes): (Instant, Instant, Vec<Outcome>),
        commits: Vec<(String, f64)>,
        (cpu, shares): (String, Shares),
        dbs: &[(&str, &str)],
    ) -> Result<Self> {
        let window = end.duration_since(start).as_secs_f64();
        let in_window = |t: Instant| t >= start && t <= end;
        let confirmed_in_window = outcomes
            .iter()
            .filter(|o| o.confirmed_at.is_some_and(in_window))
            .count();
        let mut client: Vec<f64> = outcomes
            .iter()
            .filter_map(|o| Some(ms(o.confirmed_at?.duration_since(o.placed_at))))
            .collect();
        let mut place: Vec<f64> = outcomes.iter().map(|o| o.place_ms).collect();
        let mut add: Vec<f64> = outcomes.iter().map(|o| o.add_ms).collect();
        let pid = std::process::id();
        let orders_db = dbs
            .iter()
            .find(|(s, _)| *s == "orders")
            .map_or("", |(_, u)| *u);
        // The saga's stages by the orders service's own clock: placed →
        // stock reserved (awaiting_payment) → confirmed (paid).
        let stages = numbers(
            orders_db,
            &format!(
                "SELECT {}, {}, {} FROM orders o \
                 JOIN order_history a ON a.order_id = o.id AND a.status = 'awaiting_payment' \
                 JOIN order_history c ON c.order_id = o.id AND c.status = 'confirmed' \
                 WHERE o.idempotency_key LIKE 'bench-{pid}-{label}-%'",
                p50_p99("c.at - o.created_at"),
                p50_p99("a.at - o.created_at"),
                p50_p99("c.at - a.at"),
            ),
        )?;
        let pair = |i: usize| match (stages.get(i), stages.get(i + 1)) {
            (Some(a), Some(b)) => (*a, *b),
            _ => (f64::NAN, f64::NAN),
        };
        // How long events waited in each service's outbox before the broker
        // confirmed them, for events recorded during the window.
        let now_wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let wall_ms = |t: Instant| (now_wall.saturating_sub(t.elapsed())).as_millis();
        let mut outbox = Vec::new();
        for (service, url) in dbs {
            let lag = numbers(
                url,
                &format!(
                    "SELECT {} FROM outbox_events WHERE published_at IS NOT NULL \
                     AND created_at BETWEEN {} AND {}",
                    p50_p99("published_at - created_at"),
                    wall_ms(start),
                    wall_ms(end)
                ),
            )?;
            if let [p50, p99] = lag[..] {
                outbox.push(((*service).to_owned(), (p50, p99)));
            }
        }
        let not_confirmed: Vec<&Outcome> = outcomes
            .iter()
            .filter(|o| o.confirmed_at.is_none())
            .collect();
        if let Some(o) = not_confirmed.first() {
            eprintln!(
                "==> bench: {} orders were not confirmed (one ended `{}`)",
                not_confirmed.len(),
                o.status
            );
        }
        Ok(Self {
            confirmed_per_sec: confirmed_in_window as f64 / window,
            offered: rate,
            placed: outcomes.len(),
            not_confirmed: not_confirmed.len(),
            replaced: outcomes.iter().map(|o| o.replaced).sum(),
            polls: outcomes.iter().map(|o| o.polls).sum(),
            server: pair(0),
            reserved: pair(2),
            paid: pair(4),
            outbox,
            client: (percentile(&mut client, 50.0), percentile(&mut client, 99.0)),
            place: (percentile(&mut place, 50.0), percentile(&mut place, 99.0)),
            add: (percentile(&mut add, 50.0), percentile(&mut add, 99.0)),
            commits,
            cpu,
            shares,
        })
    }

    fn print(&self, title: &str) {
        println!();
        println!("{title}:");
        let offered = self
            .offered
            .map(|r| format!("   ({r:.1} offered)"))
            .unwrap_or_default();
        println!(
            "  confirmed orders/s            {:>8.1}{offered}",
            self.confirmed_per_sec
        );
        let pair = |name: &str, (p50, p99): (f64, f64)| {
            println!("  {name:<29} p50 {p50:>8.1} ms   p99 {p99:>8.1} ms");
        };
        pair("place→confirmed (server)", self.server);
        pair("  placed→stock reserved", self.reserved);
        pair("  stock reserved→paid", self.paid);
        pair("place→confirmed (customer)", self.client);
        pair("POST /orders", self.place);
        pair("POST /cart/items", self.add);
        let total: f64 = self.commits.iter().map(|(_, n)| n).sum();
        // NaN (printed as such) when nothing was confirmed.
        let per_order = |n: f64| {
            if self.confirmed_per_sec > 0.0 {
                n / self.confirmed_per_sec
            } else {
                f64::NAN
            }
        };
        println!(
            "  PostgreSQL commits/s          {total:>8.0}   ({:.1} per confirmed order)",
            per_order(total)
        );
        let parts: Vec<String> = self
            .commits
            .iter()
            .map(|(db, n)| format!("{db} {n:.0} ({:.1})", per_order(*n)))
            .collect();
        println!("    by database (per order):    {}", parts.join(", "));
        if self.not_confirmed > 0 {
            println!(
                "  WARNING: {} orders were never confirmed; these figures do not describe a working shop",
                self.not_confirmed
            );
        }
        println!(
            "  orders placed {}, not confirmed {}, placed again after a late cart clear {}, \
             reads of an order until settled {:.1} on average",
            self.placed,
            self.not_confirmed,
            self.replaced,
            f64::from(self.polls) / self.placed.max(1) as f64
        );
        let outbox: Vec<String> = self
            .outbox
            .iter()
            .map(|(s, (p50, p99))| format!("{s} {p50:.0}/{p99:.0}"))
            .collect();
        println!("  outbox → broker wait p50/p99 ms: {}", outbox.join(", "));
        println!(
            "  cpu (share of one core; `(all)`: the whole server): {}",
            self.cpu
        );
        if let Some(line) = cpu_per_order(&self.shares, self.confirmed_per_sec) {
            println!("  cpu per confirmed order: {line}");
        }
    }
}

/// The whole machine's CPU time per confirmed order, and what the backing
/// servers, the seven services and the customers each took of it:
/// `10.6 ms = backends 5.9 (postgres 3.7, …) + services 4.1 + …`.
fn cpu_per_order(shares: &Shares, confirmed_per_sec: f64) -> Option<String> {
    if confirmed_per_sec <= 0.0 {
        return None;
    }
    // A share of one core, in percent, is 10 ms of CPU per second.
    let ms = |share: f64| share * 10.0 / confirmed_per_sec;
    let (mut backends, mut services, mut customers) = (Vec::new(), 0.0, 0.0);
    for (label, share) in &shares.groups {
        match label.strip_suffix(" (all)") {
            Some(server) => backends.push((server, ms(*share))),
            None if label.starts_with("customers") => customers += ms(*share),
            None => services += ms(*share),
        }
    }
    let backends_ms: f64 = backends.iter().map(|(_, ms)| ms).sum();
    let machine = ms(shares.machine);
    let others = (machine - backends_ms - services - customers).max(0.0);
    let each: Vec<String> = backends
        .iter()
        .map(|(server, ms)| format!("{server} {ms:.1}"))
        .collect();
    Some(format!(
        "{machine:.1} ms = backing servers {backends_ms:.1} ({}) + the seven services {services:.1} \
         + the customers {customers:.1} + others {others:.1}",
        each.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_per_order_splits_the_machine_into_servers_services_and_customers() {
        let shares = Shares {
            groups: vec![
                ("orders", 20.0),
                ("gateway", 10.0),
                ("postgres (all)", 60.0),
                ("rabbitmq (all)", 30.0),
                ("customers (xtask)", 10.0),
            ],
            machine: 140.0,
        };
        // 100 orders/s: one percent of a core is 0.1 ms per order.
        assert_eq!(
            cpu_per_order(&shares, 100.0).unwrap(),
            "14.0 ms = backing servers 9.0 (postgres 6.0, rabbitmq 3.0) + the seven services 3.0 \
             + the customers 1.0 + others 1.0"
        );
        assert_eq!(cpu_per_order(&shares, 0.0), None);
    }
}
