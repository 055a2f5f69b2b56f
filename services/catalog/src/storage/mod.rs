//! The catalog's tables. Portable SQL through sqlx's `Any` driver; the
//! listing's dynamic parts go through [`sql::Sql`].

pub mod categories;
pub mod products;
pub mod reviews;
pub mod sql;

use uuid::Uuid;

pub static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
pub static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub(crate) fn uuid(s: String) -> Result<Uuid, sqlx::Error> {
    Uuid::parse_str(&s).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// Did `err` break the unique constraint known as `postgres_name` on
/// PostgreSQL, or over `sqlite_columns` on SQLite (which names columns, not
/// constraints)?
pub(crate) fn violates_unique(
    err: &sqlx::Error,
    postgres_name: &str,
    sqlite_columns: &str,
) -> bool {
    kit::db::is_unique_violation(err)
        && kit::db::violated_constraint(err)
            .is_some_and(|c| c == postgres_name || c == sqlite_columns)
}

pub(crate) fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|e| e.is_foreign_key_violation())
}
