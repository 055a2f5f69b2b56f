use crate::db::{Backend, Database};

/// The outbox and inbox tables every event-producing or -consuming service
/// needs, created if missing (portable DDL, so services' own migrations
/// don't repeat it).
pub async fn ensure_schema(db: &Database) -> Result<(), sqlx::Error> {
    const STATEMENTS: &[&str] = &[
        "CREATE TABLE IF NOT EXISTS outbox_events (
            id TEXT PRIMARY KEY,
            routing_key TEXT NOT NULL,
            envelope TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            published_at BIGINT,
            attempts INTEGER NOT NULL DEFAULT 0
        )",
        "CREATE INDEX IF NOT EXISTS outbox_events_unpublished
            ON outbox_events (id) WHERE published_at IS NULL",
        "CREATE TABLE IF NOT EXISTS processed_events (
            consumer TEXT NOT NULL,
            event_id TEXT NOT NULL,
            processed_at BIGINT NOT NULL,
            PRIMARY KEY (consumer, event_id)
        )",
    ];
    // Two replicas may start at once; PostgreSQL's IF NOT EXISTS can still
    // race on the catalog, so serialize with an advisory lock there.
    let mut tx = db.begin().await?;
    if db.backend() == Backend::Postgres {
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(7208153)) AS held")
            .execute(&mut *tx)
            .await?;
    }
    for s in STATEMENTS.iter().copied() {
        sqlx::query(s).execute(&mut *tx).await?;
    }
    // Added later: the lease a relay holds on the rows it is publishing.
    let add_claims = "ALTER TABLE outbox_events ADD COLUMN claimed_until BIGINT";
    match db.backend() {
        Backend::Postgres => {
            sqlx::query("ALTER TABLE outbox_events ADD COLUMN IF NOT EXISTS claimed_until BIGINT")
                .execute(&mut *tx)
                .await?;
        }
        Backend::Sqlite => {
            let present = sqlx::query(
                "SELECT 1 AS one FROM pragma_table_info('outbox_events') WHERE name = 'claimed_until'",
            )
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
            if !present {
                sqlx::query(add_claims).execute(&mut *tx).await?;
            }
        }
    }
    tx.commit().await
}
