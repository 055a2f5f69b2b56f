//! `cargo xtask bench catalog`: 100,000 products in a fresh PostgreSQL
//! database, served by two release catalogs (Redis cache on, cache off),
//! each behind its own gateway; `oha` reads products by id and runs
//! searches through both gateways and the figures are printed, never
//! asserted.
//!
//! This file also holds what the benchmarks against real backends share
//! (`checkout` uses it): a scratch directory that keeps the services' logs
//! when something fails, throwaway PostgreSQL databases, a private Redis
//! database number, `oha` over a file of URLs, and CPU accounting per
//! process from /proc.
//!
//! Everything a run creates is torn down by drop guards, on failure too:
//! the processes are killed, the databases dropped, the Redis database
//! flushed; the logs are kept (and their path printed) when the run failed.
//! A run killed outright (Ctrl-C stops the services with it, but not the
//! guards) leaves its databases, Redis database and vhost behind, named
//! after its pid: the next run removes those of runs no longer alive.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::load::{self, Figures};
use super::processes::{build_emporium, free_port, http, start, wait_ready};
use crate::{cmd, provision};

/// The Redis database number the catalog bench caches in (flushed at the
/// start and the end; nothing else is touched).
const REDIS_DB: u32 = 7;
/// A stable cache for the whole run: entries must not expire mid-measurement.
const CACHE_TTL_SECS: &str = "900";
/// Different products read by id.
const IDS: usize = 1_000;

/// Searches a shopper would type, from the words the generator uses
/// (adjective, material, noun), with partial words, filters, sorts and pages.
const SEARCHES: &[&str] = &[
    "q=wireless",
    "q=oak+desk",
    "q=head",
    "q=ceramic+mug&sort=price_asc",
    "q=kettle&in_stock=true",
    "q=lamp&min_price=2000&max_price=8000",
    "q=smart&category=bulk-audio",
    "q=leather+backpack&sort=rating",
    "q=vintage+camera&page=2",
    "q=solar&min_rating=3",
    "q=steel&sort=newest&page_size=50",
    "category=bulk-home&sort=price_asc",
    "category=bulk-audio&in_stock=true&sort=newest",
    "min_price=10000&max_price=20000&sort=price_desc",
    "sort=rating&min_rating=4",
    "sort=newest",
];

struct Options {
    products: usize,
    seconds: u32,
    connections: u32,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut o = Options {
            products: 100_000,
            seconds: 10,
            connections: 50,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .with_context(|| format!("{name} needs a value"))
                    .and_then(|v| {
                        v.parse::<usize>()
                            .ok()
                            .filter(|n| *n > 0)
                            .with_context(|| format!("{name}: `{v}` is not a positive number"))
                    })
            };
            match arg.as_str() {
                "--products" => o.products = value("--products")?,
                "--seconds" => o.seconds = u32::try_from(value("--seconds")?)?,
                "--connections" => o.connections = u32::try_from(value("--connections")?)?,
                other => bail!(
                    "unknown argument `{other}` for `cargo xtask bench catalog` \
                     (--products N, --seconds S, --connections C)"
                ),
            }
        }
        Ok(o)
    }
}

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let options = Options::parse(args)?;
    load::ensure_oha()?;
    require_psql()?;
    let urls = provision::provision(root)?;
    let bin = build_emporium(root)?;
    clean_stale_databases(&urls.postgres)?;
    let scratch = Scratch::new("catalog")?;

    // Dropped in reverse order: services first, then the database, the
    // Redis database, and last the scratch directory (kept on failure).
    let db = PgDatabase::create(
        &urls.postgres,
        &format!("emporium_bench_catalog_{}", std::process::id()),
    )?;
    let redis = RedisDb::claim(&urls.redis, REDIS_DB)?;

    cmd::step("bench", format!("seeding {} products", options.products));
    let seeded = cmd::capture(
        Command::new(&bin)
            .args(["seed-catalog", "--products", &options.products.to_string()])
            .env("EMPORIUM_DATABASE_URL", &db.url)
            .env("EMPORIUM_LOG", "warn"),
    )?;
    eprintln!("    {}", seeded.trim());

    let mut pids = ChildPids::default();
    let nowhere = "http://127.0.0.1:9/.well-known/jwks.json".to_string();
    let catalog = |cached: bool, port: u16| {
        let mut env = vec![
            ("EMPORIUM_LISTEN", format!("127.0.0.1:{port}")),
            ("EMPORIUM_DATABASE_URL", db.url.clone()),
            // Reads publish nothing: the catalog's events stay in process,
            // so this bench never touches the shared broker.
            ("EMPORIUM_BUS_URL", "memory://".into()),
            ("EMPORIUM_JWKS_URL", nowhere.clone()),
            (
                "EMPORIUM_CATALOG_CACHE",
                if cached { "on" } else { "off" }.into(),
            ),
        ];
        if cached {
            env.push(("EMPORIUM_CACHE_URL", redis.url.clone()));
            env.push(("EMPORIUM_CATALOG_CACHE_TTL_SECS", CACHE_TTL_SECS.into()));
        } else {
            env.push(("EMPORIUM_CACHE_URL", "memory://".into()));
        }
        env
    };
    let gateway = |upstream: u16, port: u16| {
        vec![
            ("EMPORIUM_LISTEN", format!("127.0.0.1:{port}")),
            (
                "EMPORIUM_UPSTREAMS",
                format!("catalog=http://127.0.0.1:{upstream}"),
            ),
            (
                "EMPORIUM_GATEWAY_ROUTES",
                "/api/v1/products=catalog:public-read,/api/v1/categories=catalog:public-read"
                    .into(),
            ),
            ("EMPORIUM_JWKS_URL", nowhere.clone()),
            // Redis for the generations the cached gateway checks its
            // copies against; each gateway counts rate limits on its own,
            // so neither pays a Redis script per request.
            ("EMPORIUM_CACHE_URL", redis.url.clone()),
            ("EMPORIUM_RATE_LIMIT_SHARED", "false".into()),
            ("EMPORIUM_RATE_LIMIT_PER_SECOND", "100000000".into()),
            ("EMPORIUM_RATE_LIMIT_BURST", "100000000".into()),
        ]
    };
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect::<Result<_>>()?;
    let (cached_port, uncached_port, cached_gw, uncached_gw) =
        (ports[0], ports[1], ports[2], ports[3]);
    let mut catalog_on = start(
        "catalog",
        &bin,
        &["serve", "catalog"],
        &catalog(true, cached_port),
        &scratch.log("catalog-cache-on"),
    )?;
    let catalog_on_pid = pids.newest();
    let mut catalog_off = start(
        "catalog",
        &bin,
        &["serve", "catalog"],
        &catalog(false, uncached_port),
        &scratch.log("catalog-cache-off"),
    )?;
    let catalog_off_pid = pids.newest();
    let mut gateway_on = start(
        "gateway",
        &bin,
        &["serve", "gateway"],
        &gateway(cached_port, cached_gw),
        &scratch.log("gateway-cache-on"),
    )?;
    let gateway_on_pid = pids.newest();
    let mut gateway_off = start(
        "gateway",
        &bin,
        &["serve", "gateway"],
        &gateway(uncached_port, uncached_gw),
        &scratch.log("gateway-cache-off"),
    )?;
    let gateway_off_pid = pids.newest();
    wait_ready(&mut catalog_on, cached_port)?;
    wait_ready(&mut catalog_off, uncached_port)?;
    wait_ready(&mut gateway_on, cached_gw)?;
    wait_ready(&mut gateway_off, uncached_gw)?;

    // The URL files: the same ids and searches against both gateways.
    let ids = psql_lines(
        &db.url,
        &format!("SELECT id FROM products WHERE is_active ORDER BY random() LIMIT {IDS}"),
    )?;
    if ids.len() < IDS.min(options.products) {
        bail!(
            "expected {} seeded products, found {}",
            IDS.min(options.products),
            ids.len()
        );
    }
    let by_id = |port: u16| -> Vec<String> {
        ids.iter()
            .map(|id| format!("http://127.0.0.1:{port}/api/v1/products/{id}"))
            .collect()
    };
    let search = |port: u16| -> Vec<String> {
        SEARCHES
            .iter()
            .map(|q| format!("http://127.0.0.1:{port}/api/v1/products?{q}"))
            .collect()
    };
    for q in SEARCHES {
        search_once(uncached_gw, q)?;
    }
    let files = [
        ("id-on", by_id(cached_gw)),
        ("id-off", by_id(uncached_gw)),
        ("search-on", search(cached_gw)),
        ("search-off", search(uncached_gw)),
    ];
    let mut file = HashMap::new();
    for (name, lines) in files {
        let path = scratch.path.join(format!("{name}.urls"));
        std::fs::write(&path, lines.join("\n") + "\n")?;
        file.insert(name, path);
    }

    let cpu = Cpu::new(vec![
        Group::pid("gateway (on)", gateway_on_pid),
        Group::pid("catalog (on)", catalog_on_pid),
        Group::pid("gateway (off)", gateway_off_pid),
        Group::pid("catalog (off)", catalog_off_pid),
        Group::comm("postgres (all)", "postgres"),
        Group::comm("redis (all)", "redis-server"),
        Group::waited_children("oha"),
    ]);
    let watched = [
        ("catalog (cache on)", catalog_on_pid),
        ("catalog (cache off)", catalog_off_pid),
        ("gateway (cache on)", gateway_on_pid),
        ("gateway (cache off)", gateway_off_pid),
    ];
    let (s, c) = (options.seconds, options.connections);
    cmd::step(
        "bench",
        "warming up: 3 s of each load (fills the cache, PostgreSQL's buffers, the pools)",
    );
    for name in ["id-on", "id-off", "search-on", "search-off"] {
        oha_urls(&file[name], 3, c, None).map_err(|e| explain(e, &watched))?;
    }
    cmd::step(
        "bench",
        format!("{s} s at saturation with {c} connections, per load"),
    );
    let hits_before = cache_lookups(cached_port)?;
    let edge_before = edge_cache_outcomes(cached_gw)?;
    let measure = |name: &str, rate: Option<f64>| -> Result<(Figures, String)> {
        let before = cpu.sample();
        let figures = oha_urls(&file[name], s, c, rate).map_err(|e| explain(e, &watched))?;
        Ok((figures, cpu.report(&before, &cpu.sample())))
    };
    let id_on = measure("id-on", None)?;
    let id_off = measure("id-off", None)?;
    let search_on = measure("search-on", None)?;
    let search_off = measure("search-off", None)?;
    let hits_after = cache_lookups(cached_port)?;
    let edge_after = edge_cache_outcomes(cached_gw)?;
    let moderate = (search_off.0.requests_per_sec / 2.0).max(1.0);
    cmd::step(
        "bench",
        format!(
            "{s} s of searches with the cache off at {moderate:.0} requests/s (half of saturation)"
        ),
    );
    let search_off_half = measure("search-off", Some(moderate))?;

    // Each search alone, one at a time: which ones cost what.
    cmd::step("bench", "each search alone with the cache off, 5 times");
    let mut alone = Vec::new();
    for q in SEARCHES {
        let mut times = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            search_once(uncached_gw, q)?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        alone.push((times[times.len() / 2], *q));
    }
    alone.sort_by(|a, b| b.0.total_cmp(&a.0));

    drop((gateway_on, gateway_off, catalog_on, catalog_off));
    drop(redis);
    drop(db);
    scratch.success();

    let row = |name: &str, (f, _): &(Figures, String)| {
        println!(
            "  {name:<28} {:>9.0} req/s   p50 {:>8.2} ms   p99 {:>8.2} ms",
            f.requests_per_sec, f.p50_ms, f.p99_ms
        );
    };
    let cpu_row = |(_, cpu): &(Figures, String)| println!("  {:<28} cpu: {cpu}", "");
    let cores = cores();
    println!();
    println!(
        "catalog benchmark: {} products on PostgreSQL, through the gateway; {cores} cores shared by \
         load generator, gateways, catalogs, PostgreSQL and Redis",
        options.products
    );
    println!(
        "saturation, {c} connections, {s} s each (cpu: share of one core, of {}%; \
         `(all)`: the whole server, whoever else uses it):",
        cores * 100
    );
    println!("get by id ({IDS} different products)");
    row("  cached (Redis)", &id_on);
    cpu_row(&id_on);
    row("  uncached (cache off)", &id_off);
    cpu_row(&id_off);
    println!(
        "search listing ({} different queries: text, filters, sorts, facets)",
        SEARCHES.len()
    );
    row("  cached (Redis)", &search_on);
    cpu_row(&search_on);
    row("  uncached (cache off)", &search_off);
    cpu_row(&search_off);
    println!(
        "not saturating: searches with the cache off at {moderate:.0} req/s offered (half of saturation)"
    );
    row("  uncached (cache off)", &search_off_half);
    cpu_row(&search_off_half);
    println!("each search alone with the cache off, one at a time (median of 5):");
    for (ms, q) in &alone {
        println!("  {ms:>8.2} ms  ?{q}");
    }
    let (hits, misses) = (hits_after.0 - hits_before.0, hits_after.1 - hits_before.1);
    let edge = |outcome: &str| {
        edge_after.get(outcome).copied().unwrap_or(0.0)
            - edge_before.get(outcome).copied().unwrap_or(0.0)
    };
    let edge_hits = edge("hit");
    let edge_total = edge_hits + edge("stale") + edge("stored") + edge("unavailable");
    println!();
    println!(
        "copies kept by the cached gateway while measured: {:.2}% served from them ({edge_hits:.0} of {edge_total:.0} reads)",
        100.0 * edge_hits / edge_total.max(1.0)
    );
    println!(
        "cache hit ratio of the cached catalog while measured: {:.2}% ({hits:.0} hits, {misses:.0} misses; reads the gateway answered never reach it)",
        100.0 * hits / (hits + misses).max(1.0)
    );
    let ratio = |on: &(Figures, String), off: &(Figures, String)| {
        on.0.requests_per_sec / off.0.requests_per_sec
    };
    println!(
        "cached / uncached throughput, get by id:  {:>6.2}x   target >= 5x",
        ratio(&id_on, &id_off)
    );
    println!(
        "cached / uncached throughput, search:     {:>6.2}x   target >= 5x",
        ratio(&search_on, &search_off)
    );
    println!(
        "search p99 with the cache off, not saturating ({moderate:.0} req/s): {:.2} ms   target <= 50 ms",
        search_off_half.0.p99_ms
    );
    println!(
        "search p99 with the cache off at saturation ({c} connections):     {:.2} ms",
        search_off.0.p99_ms
    );
    Ok(())
}

/// Hits and misses the catalog has counted, from its /metrics.
/// One listing through the gateway on `port`, which must succeed.
fn search_once(port: u16, query: &str) -> Result<()> {
    let (status, body) = http(port, "GET", &format!("/api/v1/products?{query}"), &[], None)?;
    if status != 200 {
        bail!("search `{query}` answered {status}: {body}");
    }
    Ok(())
}

pub(super) fn cache_lookups(port: u16) -> Result<(f64, f64)> {
    let (status, body) = http(port, "GET", "/metrics", &[], None)?;
    if status != 200 {
        bail!("the catalog's /metrics answered {status}");
    }
    let count = |outcome: &str| {
        body.lines()
            .filter(|l| {
                l.starts_with("catalog_cache_lookups_total")
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    Ok((count("hit"), count("miss")))
}

/// The gateway's kept-copy outcomes (`hit`, `stale`, `stored`, …), from
/// its /metrics.
fn edge_cache_outcomes(port: u16) -> Result<HashMap<String, f64>> {
    let (status, body) = http(port, "GET", "/metrics", &[], None)?;
    if status != 200 {
        bail!("the gateway's /metrics answered {status}");
    }
    let mut outcomes = HashMap::new();
    for line in body
        .lines()
        .filter(|l| l.starts_with("gateway_edge_cache_total"))
    {
        let outcome = line
            .split("outcome=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next());
        if let (Some(outcome), Some(n)) = (
            outcome,
            line.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok()),
        ) {
            *outcomes.entry(outcome.to_string()).or_default() += n;
        }
    }
    Ok(outcomes)
}

pub(super) fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0)
}

// ------------------------------------------------------------------ oha

/// `oha` over the URLs listed in `urls` (one per line, chosen at random for
/// each request); `rate` caps requests/s, with oha's correction for
/// coordinated omission. Every answer must be 200.
pub(super) fn oha_urls(
    urls: &Path,
    seconds: u32,
    connections: u32,
    rate: Option<f64>,
) -> Result<Figures> {
    let mut c = Command::new("oha");
    c.args([
        "--no-tui",
        "--output-format",
        "json",
        "--urls-from-file",
        "-z",
        &format!("{seconds}s"),
    ]);
    c.args(["-c", &connections.to_string()]);
    if let Some(q) = rate {
        c.args(["-q", &format!("{q:.0}"), "--latency-correction"]);
    }
    c.arg(urls);
    let out = cmd::capture(&mut c)?;
    let v: serde_json::Value = serde_json::from_str(&out).context("oha's JSON summary")?;
    let get = |x: &serde_json::Value, what: &str| {
        x.as_f64().with_context(|| format!("oha printed no {what}"))
    };
    let figures = Figures {
        requests_per_sec: get(&v["summary"]["requestsPerSec"], "requestsPerSec")?,
        p50_ms: get(&v["latencyPercentiles"]["p50"], "p50")? * 1000.0,
        p99_ms: get(&v["latencyPercentiles"]["p99"], "p99")? * 1000.0,
    };
    let codes = v["statusCodeDistribution"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let bad: u64 = codes
        .iter()
        .filter(|(k, _)| k.as_str() != "200")
        .map(|(_, n)| n.as_u64().unwrap_or(0))
        .sum();
    if bad > 0 {
        bail!(
            "{bad} responses for {} were not 200: {}",
            urls.display(),
            v["statusCodeDistribution"]
        );
    }
    // Requests cut off when the time is up are not failures.
    let errors: serde_json::Map<String, serde_json::Value> = v["errorDistribution"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !k.contains("aborted due to deadline"))
        .map(|(k, n)| (k.clone(), n.clone()))
        .collect();
    if !errors.is_empty() {
        bail!(
            "oha saw errors for {}: {}",
            urls.display(),
            serde_json::Value::Object(errors)
        );
    }
    Ok(figures)
}

// ------------------------------------------------------- scratch and logs

/// A directory for the services' logs and the bench's files. Kept, with its
/// path printed, unless [`Scratch::success`] was called.
pub(super) struct Scratch {
    pub path: PathBuf,
    ok: bool,
}

impl Scratch {
    pub fn new(bench: &str) -> Result<Self> {
        let path =
            std::env::temp_dir().join(format!("emporium-bench-{bench}-{}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        cmd::step("bench", format!("service logs go to {}", path.display()));
        Ok(Self { path, ok: false })
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.path.join(format!("{name}.log"))
    }

    pub fn success(mut self) {
        self.ok = true;
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.ok {
            let _ = std::fs::remove_dir_all(&self.path);
        } else {
            // The end of each log that has something in it, then where
            // they all are.
            let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect();
            logs.sort();
            for log in logs {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                if !lines.is_empty() {
                    eprintln!("--- end of {}", log.display());
                    for line in &lines[lines.len().saturating_sub(5)..] {
                        eprintln!("    {line}");
                    }
                }
            }
            eprintln!(
                "==> bench: the services' logs are kept in {}",
                self.path.display()
            );
        }
    }
}

// -------------------------------------------------------------- PostgreSQL

pub(super) fn require_psql() -> Result<()> {
    if provision::psql("postgres://localhost/postgres").is_none() {
        bail!(
            "psql is not installed; the bench needs it to create and drop its databases (apt-get install postgresql-client)"
        );
    }
    Ok(())
}

fn psql(url: &str) -> Command {
    provision::psql(url).expect("checked by require_psql")
}

/// Rows of a one-column query, as text.
pub(super) fn psql_lines(url: &str, sql: &str) -> Result<Vec<String>> {
    let out = cmd::capture(psql(url).args(["-At", "-c", sql]))?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// `url` with its path (database, Redis db number, vhost) replaced.
pub(super) fn with_path(url: &str, path: &str) -> Result<String> {
    let (scheme, rest) = url
        .split_once("://")
        .with_context(|| format!("`{url}` is not a URL"))?;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    Ok(match query {
        Some(q) => format!("{scheme}://{authority}/{path}?{q}"),
        None => format!("{scheme}://{authority}/{path}"),
    })
}

/// A database of its own, dropped (connections and all) when this goes.
pub(super) struct PgDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgDatabase {
    pub fn create(admin_url: &str, name: &str) -> Result<Self> {
        cmd::run(psql(admin_url).args(["-c", &format!("CREATE DATABASE {name}")]))
            .with_context(|| format!("cannot create the bench database {name} at {admin_url}"))?;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name: name.to_owned(),
            url: with_path(admin_url, name)?,
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = cmd::run(psql(&self.admin_url).args([
            "-c",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ]));
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid in a bench resource's name (`emporium_bench_catalog_1234`,
/// `emporium_bench_checkout_1234_orders`, `emporium-bench-1234`).
fn owner_pid(name: &str) -> Option<u32> {
    name.split(['_', '-']).find_map(|part| part.parse().ok())
}

/// Drop the databases of bench runs that died without cleaning up
/// (killed, or interrupted before their guards ran).
pub(super) fn clean_stale_databases(admin_url: &str) -> Result<()> {
    if !Path::new("/proc/self").exists() {
        return Ok(());
    }
    for name in psql_lines(
        admin_url,
        "SELECT datname FROM pg_database WHERE datname LIKE 'emporium_bench_%'",
    )? {
        if owner_pid(&name).is_some_and(|pid| !alive(pid)) {
            cmd::step(
                "bench",
                format!("dropping {name}, left behind by an earlier run"),
            );
            cmd::run(psql(admin_url).args([
                "-c",
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            ]))?;
        }
    }
    Ok(())
}

// ------------------------------------------------------------------- Redis

/// One Redis database number, for this run alone: it must be empty or
/// left by a dead bench run; flushed (that database only) at the end.
pub(super) struct RedisDb {
    addr: String,
    password: Option<String>,
    db: u32,
    pub url: String,
}

const OWNER_KEY: &str = "emporium-bench:owner";

impl RedisDb {
    pub fn claim(url: &str, db: u32) -> Result<Self> {
        let rest = url
            .strip_prefix("redis://")
            .with_context(|| format!("the bench needs a plain redis:// URL, not `{url}`"))?;
        let authority = rest.split(['/', '?']).next().unwrap_or(rest);
        let (userinfo, addr) = match authority.rsplit_once('@') {
            Some((u, a)) => (Some(u), a),
            None => (None, authority),
        };
        let password = userinfo
            .map(|u| u.rsplit_once(':').map_or(u, |(_, p)| p))
            .filter(|p| !p.is_empty())
            .map(str::to_owned);
        let addr = if addr.contains(':') {
            addr.to_owned()
        } else {
            format!("{addr}:6379")
        };
        let this = Self {
            addr,
            password,
            db,
            url: with_path(url, &db.to_string())?,
        };
        let keys = this.command(&["DBSIZE"])?;
        if keys != "0" {
            let owner = this.command(&["GET", OWNER_KEY])?;
            match owner.parse::<u32>() {
                Ok(pid) if !alive(pid) => {
                    cmd::step(
                        "bench",
                        format!("flushing Redis db {db}, left behind by an earlier run"),
                    );
                }
                Ok(pid) => bail!(
                    "Redis db {db} at {} is in use by a bench that is still running (pid {pid})",
                    this.addr
                ),
                Err(_) => bail!(
                    "Redis db {db} at {} holds {keys} keys that no bench put there; \
                     the bench flushes its database, so it will not use that one",
                    this.addr
                ),
            }
            this.command(&["FLUSHDB"])?;
        }
        this.command(&["SET", OWNER_KEY, &std::process::id().to_string()])?;
        Ok(this)
    }

    /// One command on this database; the reply as text (`nil` as empty).
    pub fn command(&self, args: &[&str]) -> Result<String> {
        let mut stream = TcpStream::connect(&self.addr)
            .with_context(|| format!("cannot reach Redis at {}", self.addr))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let encode = |args: &[&str]| {
            let mut out = format!("*{}\r\n", args.len());
            for a in args {
                out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
            }
            out
        };
        let mut request = String::new();
        let mut skip = 1;
        if let Some(p) = &self.password {
            request.push_str(&encode(&["AUTH", p]));
            skip += 1;
        }
        request.push_str(&encode(&["SELECT", &self.db.to_string()]));
        request.push_str(&encode(args));
        stream.write_all(request.as_bytes())?;
        let mut reader = BufReader::new(stream);
        let mut reply = String::new();
        for _ in 0..=skip {
            reply = read_reply(&mut reader)?;
        }
        Ok(reply)
    }
}

fn read_reply(reader: &mut impl BufRead) -> Result<String> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end();
    match line.split_at_checked(1) {
        Some(("+" | ":", rest)) => Ok(rest.to_owned()),
        Some(("-", error)) => bail!("Redis: {error}"),
        Some(("$", len)) => {
            let Ok(len) = len.parse::<usize>() else {
                return Ok(String::new());
            };
            let mut body = vec![0; len + 2];
            reader.read_exact(&mut body)?;
            body.truncate(len);
            Ok(String::from_utf8_lossy(&body).into_owned())
        }
        _ => bail!("unexpected reply from Redis: `{line}`"),
    }
}

impl Drop for RedisDb {
    fn drop(&mut self) {
        let _ = self.command(&["FLUSHDB"]);
    }
}

// ------------------------------------------------------------ CPU per process

/// The pids of the `emporium` processes this run started, newest last.
#[derive(Default)]
pub(super) struct ChildPids {
    known: Vec<u32>,
}

impl ChildPids {
    /// The child started last (None where /proc does not tell).
    pub fn newest(&mut self) -> Option<u32> {
        let me = std::process::id();
        let found = proc_stats()
            .into_iter()
            .filter(|s| s.ppid == me && s.comm == "emporium" && !self.known.contains(&s.pid))
            .map(|s| s.pid)
            .max();
        self.known.extend(found);
        found
    }
}

/// Names of the watched processes that have exited (zombies not yet
/// reaped included), for an error that says which service died.
pub(super) fn exited(watched: &[(&'static str, Option<u32>)]) -> Vec<&'static str> {
    watched
        .iter()
        .filter(|(_, pid)| {
            pid.is_some_and(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| s.rsplit_once(") ")?.1.chars().next())
                    .is_none_or(|state| state == 'Z' || state == 'X')
            })
        })
        .map(|(name, _)| *name)
        .collect()
}

/// `error`, saying which watched service exited if one did.
pub(super) fn explain(
    error: anyhow::Error,
    watched: &[(&'static str, Option<u32>)],
) -> anyhow::Error {
    match exited(watched).as_slice() {
        [] => error,
        dead => error.context(format!(
            "{} exited during the bench; see its log",
            dead.join(", ")
        )),
    }
}

struct ProcStat {
    pid: u32,
    ppid: u32,
    comm: String,
    ticks: u64,
}

fn proc_stat(pid: &str) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, tail) = stat.rsplit_once(") ")?;
    let comm = head.split_once(" (")?.1.to_owned();
    // After the comm: state ppid pgrp session tty tpgid flags minflt
    // cminflt majflt cmajflt utime stime cutime cstime ...
    let fields: Vec<&str> = tail.split_whitespace().collect();
    Some(ProcStat {
        pid: pid.parse().ok()?,
        ppid: fields.get(1)?.parse().ok()?,
        comm,
        ticks: fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?,
    })
}

fn proc_stats() -> Vec<ProcStat> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            name.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| proc_stat(name))?
        })
        .collect()
}

/// Children this process has waited for (oha), in clock ticks.
fn waited_children_ticks() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let (_, tail) = s.rsplit_once(") ")?;
            let f: Vec<&str> = tail.split_whitespace().collect();
            Some(f.get(13)?.parse::<u64>().ok()? + f.get(14)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

pub(super) enum Match {
    Pid(Option<u32>),
    Comm(&'static str),
    OwnProcess,
    WaitedChildren,
}

pub(super) struct Group {
    label: &'static str,
    matcher: Match,
}

impl Group {
    pub fn pid(label: &'static str, pid: Option<u32>) -> Self {
        Self {
            label,
            matcher: Match::Pid(pid),
        }
    }
    /// Every process of that name (all of PostgreSQL's backends, say).
    pub fn comm(label: &'static str, comm: &'static str) -> Self {
        Self {
            label,
            matcher: Match::Comm(comm),
        }
    }
    pub fn own_process(label: &'static str) -> Self {
        Self {
            label,
            matcher: Match::OwnProcess,
        }
    }
    pub fn waited_children(label: &'static str) -> Self {
        Self {
            label,
            matcher: Match::WaitedChildren,
        }
    }
}

/// CPU time per group of processes between two samples, from /proc.
pub(super) struct Cpu {
    groups: Vec<Group>,
    ticks_per_second: f64,
}

pub(super) struct Sample {
    at: Instant,
    /// Per group: ticks per pid.
    ticks: Vec<HashMap<u32, u64>>,
    /// Busy ticks of the whole machine, all cores (from /proc/stat).
    machine: u64,
}

impl Sample {
    pub fn at(&self) -> Instant {
        self.at
    }
}

/// user + nice + system + irq + softirq + steal, summed over all cores.
fn machine_busy_ticks() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let line = s.lines().next()?;
            let f: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect();
            Some([0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum())
        })
        .unwrap_or(0)
}

/// CPU over a window, in percent of one core.
pub(super) struct Shares {
    /// Per group, in the order the groups were given.
    pub groups: Vec<(&'static str, f64)>,
    pub machine: f64,
}

impl Cpu {
    pub fn new(groups: Vec<Group>) -> Self {
        let ticks_per_second = cmd::capture(Command::new("getconf").arg("CLK_TCK"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0);
        Self {
            groups,
            ticks_per_second,
        }
    }

    pub fn sample(&self) -> Sample {
        let all = proc_stats();
        let me = std::process::id();
        let ticks = self
            .groups
            .iter()
            .map(|g| match &g.matcher {
                Match::Pid(Some(pid)) => all
                    .iter()
                    .filter(|s| s.pid == *pid)
                    .map(|s| (s.pid, s.ticks))
                    .collect(),
                Match::Pid(None) => HashMap::new(),
                Match::Comm(comm) => all
                    .iter()
                    .filter(|s| s.comm == *comm)
                    .map(|s| (s.pid, s.ticks))
                    .collect(),
                Match::OwnProcess => all
                    .iter()
                    .filter(|s| s.pid == me)
                    .map(|s| (s.pid, s.ticks))
                    .collect(),
                Match::WaitedChildren => HashMap::from([(0, waited_children_ticks())]),
            })
            .collect();
        Sample {
            at: Instant::now(),
            ticks,
            machine: machine_busy_ticks(),
        }
    }

    /// `gateway 45%  catalog 80% …`: each group's CPU as a share of one
    /// core. Processes born in between count from their start; those gone
    /// in between are not counted.
    pub fn report(&self, before: &Sample, after: &Sample) -> String {
        let shares = self.shares(before, after);
        let total: f64 = shares.groups.iter().map(|(_, share)| share).sum();
        // Idle groups (the other setup, say) only make the line longer.
        let parts: Vec<String> = shares
            .groups
            .iter()
            .filter(|(_, share)| *share >= 0.5)
            .map(|(label, share)| format!("{label} {share:.0}%"))
            .collect();
        format!(
            "{}  = {total:.0}%; whole machine {:.0}% (others {:.0}%)",
            parts.join("  "),
            shares.machine,
            (shares.machine - total).max(0.0)
        )
    }

    /// Each group's CPU and the whole machine's, as shares of one core.
    pub fn shares(&self, before: &Sample, after: &Sample) -> Shares {
        let wall = after.at.duration_since(before.at).as_secs_f64().max(1e-3);
        let share = |ticks: u64| ticks as f64 / self.ticks_per_second / wall * 100.0;
        let groups = self
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let ticks: u64 = after.ticks[i]
                    .iter()
                    .map(|(pid, t)| {
                        t.saturating_sub(before.ticks[i].get(pid).copied().unwrap_or(0))
                    })
                    .sum();
                (g.label, share(ticks))
            })
            .collect();
        Shares {
            groups,
            machine: share(after.machine.saturating_sub(before.machine)),
        }
    }
}
