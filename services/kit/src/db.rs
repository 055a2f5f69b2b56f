//! A service's database: PostgreSQL in production, a SQLite file embedded.
//! Queries are written once in portable SQL through sqlx's `Any` driver
//! (`$1` placeholders work on both); each service keeps one migration
//! folder per backend so PostgreSQL-only strengths stay in its own.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::postgres::PgListener;
use sqlx::{Any, AnyPool, Connection, Executor, Transaction};
use tokio_util::sync::CancellationToken;

use crate::config::DatabaseUrl;

/// A pooled PostgreSQL connection idle this long is pinged before use.
const RECHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

#[derive(Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    /// PostgreSQL's URL, for connections outside the pool (LISTEN).
    postgres_url: Option<std::sync::Arc<str>>,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("cannot create the directory for {path}: {source}")]
    Directory {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl Database {
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, DbError> {
        Self::connect_with(url, 10).await
    }

    pub async fn connect_with(url: &DatabaseUrl, max_connections: u32) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        match url {
            DatabaseUrl::Postgres(u) => {
                let opts = AnyConnectOptions::from_str(u).map_err(DbError::Connect)?;
                let pool = AnyPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(10))
                    // sqlx pings every connection as it returns to the pool;
                    // pinging it again on the way out (its default) costs a
                    // round trip per use and only tells something new about
                    // a connection that sat idle, which a server restart or
                    // a dropped link may have broken meanwhile.
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            if meta.idle_for >= RECHECK_AFTER_IDLE {
                                conn.ping().await?;
                            }
                            Ok(true)
                        })
                    })
                    .connect_with(opts)
                    .await
                    .map_err(DbError::Connect)?;
                Ok(Self {
                    pool,
                    backend: Backend::Postgres,
                    postgres_url: Some(u.as_str().into()),
                })
            }
            DatabaseUrl::Sqlite(u) => {
                let path = u
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:");
                let path = path.split('?').next().unwrap_or(path);
                let dir = std::path::Path::new(path).parent();
                if let Some(dir) = dir.filter(|d| path != ":memory:" && !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|source| DbError::Directory {
                        path: path.to_string(),
                        source,
                    })?;
                }
                let with_mode = if u.contains('?') {
                    u.clone()
                } else {
                    format!("{u}?mode=rwc")
                };
                let opts = AnyConnectOptions::from_str(&with_mode).map_err(DbError::Connect)?;
                let pool = AnyPoolOptions::new()
                    .max_connections(max_connections.min(4))
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            // WAL lets readers run beside the one writer; the
                            // busy timeout queues writers instead of failing.
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            Ok(())
                        })
                    })
                    .connect_with(opts)
                    .await
                    .map_err(DbError::Connect)?;
                Ok(Self {
                    pool,
                    backend: Backend::Sqlite,
                    postgres_url: None,
                })
            }
        }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Begin a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`) so two writers queue on the busy timeout rather
    /// than deadlock when a reader upgrades.
    pub async fn begin(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Postgres => self.pool.begin().await,
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
        }
    }

    /// Apply the migrations for this backend.
    pub async fn migrate(&self, postgres: &Migrator, sqlite: &Migrator) -> Result<(), DbError> {
        match self.backend {
            Backend::Postgres => postgres.run(&self.pool).await?,
            Backend::Sqlite => sqlite.run(&self.pool).await?,
        }
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), String> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Hand the payload of every notice on `channel` to `on_notice` until
    /// `shutdown`, reconnecting after failures (notices sent meanwhile are
    /// lost: listeners must not depend on them alone). `None` on SQLite.
    pub fn listen(
        &self,
        channel: &'static str,
        on_notice: impl Fn(&str) + Send + 'static,
        shutdown: CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let url = self.postgres_url.clone()?;
        Some(tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            while !shutdown.is_cancelled() {
                let listening = async {
                    let mut listener = PgListener::connect(&url).await?;
                    listener.listen(channel).await?;
                    Ok::<_, sqlx::Error>(listener)
                };
                let failure = match listening.await {
                    Ok(mut listener) => {
                        backoff = Duration::from_millis(200);
                        loop {
                            tokio::select! {
                                notice = listener.recv() => match notice {
                                    Ok(n) => on_notice(n.payload()),
                                    Err(e) => break e,
                                },
                                () = shutdown.cancelled() => return,
                            }
                        }
                    }
                    Err(e) => e,
                };
                tracing::warn!(%channel, error = %failure, "cannot listen for database notices; retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }))
    }
}

/// The name of the violated constraint, if `err` is a unique or check
/// violation: lets storage code turn a named constraint into a client error
/// instead of checking first and racing.
pub fn violated_constraint(err: &sqlx::Error) -> Option<String> {
    let db = err.as_database_error()?;
    if let Some(c) = db.constraint() {
        return Some(c.to_string());
    }
    // SQLite reports no constraint name: "UNIQUE constraint failed: users.email".
    let msg = db.message();
    msg.strip_prefix("UNIQUE constraint failed: ")
        .map(|cols| cols.to_string())
}

pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .map(|e| e.is_unique_violation())
        .unwrap_or(false)
}

/// `err` says the database cannot serve anyone right now (unreachable,
/// restarting, recovering, out of connections), not that this request or
/// event is wrong: worth waiting for, never worth giving up on.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        // SQLSTATE classes 08 (connection exception), 53 (insufficient
        // resources: too many connections, disk full) and 57P (operator
        // intervention: shutting down, crashed, still starting up).
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_trouble_is_unavailable_and_mistakes_are_not() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(is_unavailable(&sqlx::Error::Io(refused)));
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        assert!(!is_unavailable(&sqlx::Error::ColumnNotFound("x".into())));
        // A pool closed on purpose is shutting down, not waiting for a server.
        assert!(!is_unavailable(&sqlx::Error::PoolClosed));
    }

    #[tokio::test]
    async fn a_sql_mistake_is_not_unavailability() {
        let db = Database::connect(&DatabaseUrl::Sqlite("sqlite::memory:".into()))
            .await
            .unwrap();
        let err = sqlx::query("SELECT * FROM no_such_table")
            .execute(db.pool())
            .await
            .unwrap_err();
        assert!(!is_unavailable(&err), "{err}");
    }
}
