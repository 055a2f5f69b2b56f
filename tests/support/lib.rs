//! Test support: fresh backends per test (a new PostgreSQL database, a new
//! Redis namespace, a new RabbitMQ exchange; or a new SQLite file and
//! in-process bus and cache) and a whole shop started on random ports.
//!
//! `EMPORIUM_TEST_BACKENDS=real` uses `EMPORIUM_TEST_POSTGRES_URL`,
//! `EMPORIUM_TEST_REDIS_URL` and `EMPORIUM_TEST_AMQP_URL` (`cargo xtask test`
//! provisions them); anything else runs on the embedded set. A missing URL
//! in real mode fails the test: a backend is never silently skipped.

pub mod mailpit;
pub mod redis_stand_in;
pub mod shop;

use kit::cache::Cache;
use kit::config::{BusUrl, CacheUrl, DatabaseUrl};
use kit::db::Database;
use kit::events::{EventBus, Topology};
use sqlx::Connection;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendSet {
    Embedded,
    Real {
        postgres: String,
        redis: String,
        amqp: String,
    },
}

fn required(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("EMPORIUM_TEST_BACKENDS=real but {var} is not set; run `cargo xtask test`, which provisions it")
    })
}

impl BackendSet {
    pub fn from_env() -> Self {
        match std::env::var("EMPORIUM_TEST_BACKENDS").as_deref() {
            Ok("real") => BackendSet::Real {
                postgres: required("EMPORIUM_TEST_POSTGRES_URL"),
                redis: required("EMPORIUM_TEST_REDIS_URL"),
                amqp: required("EMPORIUM_TEST_AMQP_URL"),
            },
            Ok("embedded") | Err(_) => BackendSet::Embedded,
            Ok(other) => panic!("EMPORIUM_TEST_BACKENDS={other}: expected `real` or `embedded`"),
        }
    }

    pub fn is_real(&self) -> bool {
        matches!(self, BackendSet::Real { .. })
    }
}

/// Backends made for one test; dropped with it (SQLite files vanish with
/// their temporary directory; PostgreSQL databases are dropped by xtask
/// before the next run).
pub struct Backends {
    pub set: BackendSet,
    pub tag: String,
    pub dir: tempfile::TempDir,
    databases: std::sync::atomic::AtomicUsize,
    /// The embedded cache: one store for every service of the test, as in
    /// `emporium up` (and as one Redis is in the real set).
    memory_cache: Cache,
}

impl Backends {
    pub fn new() -> Self {
        kit::telemetry::init(
            "test",
            &kit::telemetry::TelemetryArgs {
                log: std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
                ..Default::default()
            },
        )
        .ok();
        let tag = format!("t{}", uuid::Uuid::now_v7().simple());
        Self {
            set: BackendSet::from_env(),
            memory_cache: Cache::memory(&tag),
            tag,
            dir: tempfile::tempdir().expect("temporary directory"),
            databases: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// A new, empty database.
    pub async fn database_url(&self, name: &str) -> DatabaseUrl {
        match &self.set {
            BackendSet::Embedded => {
                let n = self
                    .databases
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                DatabaseUrl::sqlite_file(&self.dir.path().join(format!("{name}-{n}.db")))
            }
            BackendSet::Real { postgres, .. } => {
                let n = self
                    .databases
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let db_name = format!("emporium_test_{}_{}_{n}", self.tag, name);
                let mut admin = sqlx::PgConnection::connect(postgres)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("cannot reach PostgreSQL at EMPORIUM_TEST_POSTGRES_URL: {e}")
                    });
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
                    .execute(&mut admin)
                    .await
                    .expect("create test database");
                let mut url =
                    url::Url::parse(postgres).expect("EMPORIUM_TEST_POSTGRES_URL is a URL");
                url.set_path(&db_name);
                DatabaseUrl::Postgres(url.to_string())
            }
        }
    }

    pub async fn database(&self, name: &str) -> Database {
        Database::connect(&self.database_url(name).await)
            .await
            .expect("connect to the test database")
    }

    pub fn cache_url(&self) -> CacheUrl {
        match &self.set {
            BackendSet::Embedded => CacheUrl::Memory,
            BackendSet::Real { redis, .. } => CacheUrl::Redis(redis.clone()),
        }
    }

    /// A cache namespaced for this test.
    pub async fn cache(&self) -> Cache {
        match &self.set {
            BackendSet::Embedded => self.memory_cache.clone(),
            BackendSet::Real { .. } => Cache::connect(&self.cache_url(), &self.tag)
                .await
                .expect("connect to the test cache"),
        }
    }

    pub fn bus_url(&self) -> BusUrl {
        match &self.set {
            // As `emporium up` keeps its events: one file, shared by every
            // service of the test (as one RabbitMQ is in the real set).
            BackendSet::Embedded => BusUrl::sqlite_file(&self.dir.path().join("bus.db")),
            BackendSet::Real { amqp, .. } => BusUrl::Amqp(amqp.clone()),
        }
    }

    /// Exchange and queue names private to this test.
    pub fn topology(&self) -> Topology {
        Topology {
            exchange: format!("{}.events", self.tag),
            // Test queues go away on their own once the test is over.
            unused_queue_ttl: Some(std::time::Duration::from_secs(600)),
        }
    }

    pub async fn bus(&self) -> EventBus {
        EventBus::connect(&self.bus_url(), self.topology())
            .await
            .expect("connect to the test event bus")
    }
}

impl Default for Backends {
    fn default() -> Self {
        Self::new()
    }
}

/// Poll `check` until it returns `Some`, or fail after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
