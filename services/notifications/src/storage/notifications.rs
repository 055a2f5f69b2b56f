//! The `notifications` table: what was said to whom, and how its email
//! delivery is going.

use kit::db::{Backend, Database};
use sqlx::any::AnyRow;
use std::sync::LazyLock;

use sqlx::{Any, Executor, Row};
use uuid::Uuid;

/// Where a notification's email stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Kept for the in-app feed only: no SMTP server is configured, so no
    /// email was (or will be) sent.
    Stored,
    /// Waiting for its first or next delivery attempt.
    Queued,
    /// Accepted by the SMTP server.
    Sent,
    /// Given up on: too many failed attempts, or refused for good.
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Stored => "stored",
            Status::Queued => "queued",
            Status::Sent => "sent",
            Status::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [Status::Stored, Status::Queued, Status::Sent, Status::Failed]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

#[derive(Debug, Clone)]
pub struct NotificationRecord {
    pub id: Uuid,
    pub user_id: Option<Uuid>,
    pub kind: String,
    pub event_id: Uuid,
    pub order_id: Option<Uuid>,
    pub order_number: Option<String>,
    pub recipient: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    pub status: Status,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<i64>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

const COLUMNS: &str = "id, user_id, kind, event_id, order_id, order_number, recipient, subject, \
     body_text, body_html, status, attempts, last_error, next_attempt_at, created_at, sent_at";

fn uuid(s: &str) -> Result<Uuid, sqlx::Error> {
    Uuid::parse_str(s).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn opt_uuid(s: Option<String>) -> Result<Option<Uuid>, sqlx::Error> {
    s.as_deref().map(uuid).transpose()
}

fn from_row(row: &AnyRow) -> Result<NotificationRecord, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(NotificationRecord {
        id: uuid(&row.try_get::<String, _>("id")?)?,
        user_id: opt_uuid(row.try_get("user_id")?)?,
        kind: row.try_get("kind")?,
        event_id: uuid(&row.try_get::<String, _>("event_id")?)?,
        order_id: opt_uuid(row.try_get("order_id")?)?,
        order_number: row.try_get("order_number")?,
        recipient: row.try_get("recipient")?,
        subject: row.try_get("subject")?,
        body_text: row.try_get("body_text")?,
        body_html: row.try_get("body_html")?,
        status: Status::parse(&status).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown notification status `{status}`").into())
        })?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        created_at: row.try_get("created_at")?,
        sent_at: row.try_get("sent_at")?,
    })
}

/// A notification about to be recorded.
#[derive(Debug, Clone)]
pub struct NewNotification<'a> {
    pub id: Uuid,
    pub user_id: Option<Uuid>,
    pub kind: &'a str,
    pub event_id: Uuid,
    pub order_id: Option<Uuid>,
    pub order_number: Option<&'a str>,
    pub recipient: &'a str,
    pub subject: &'a str,
    pub body_text: &'a str,
    pub body_html: &'a str,
    pub status: Status,
    pub last_error: Option<&'a str>,
    pub next_attempt_at: Option<i64>,
    pub created_at: i64,
}

const INSERT_COLUMNS: &str = "INSERT INTO notifications (id, user_id, kind, event_id, order_id, \
     order_number, recipient, subject, body_text, body_html, status, attempts, last_error, \
     next_attempt_at, created_at)";

/// The fourteen values `$first` onwards, in [`bind`]'s order.
fn values(first: usize) -> String {
    let p: Vec<String> = (first..first + 14).map(|i| format!("${i}")).collect();
    // `attempts` starts at 0, between status and last_error.
    format!("{}, 0, {}", p[..11].join(", "), p[11..].join(", "))
}

fn bind<'q>(
    query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    n: &'q NewNotification<'_>,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    query
        .bind(n.id.to_string())
        .bind(n.user_id.map(|u| u.to_string()))
        .bind(n.kind)
        .bind(n.event_id.to_string())
        .bind(n.order_id.map(|u| u.to_string()))
        .bind(n.order_number)
        .bind(n.recipient)
        .bind(n.subject)
        .bind(n.body_text)
        .bind(n.body_html)
        .bind(n.status.as_str())
        .bind(n.last_error)
        .bind(n.next_attempt_at)
        .bind(n.created_at)
}

pub async fn insert<'e>(
    db: impl Executor<'e, Database = Any>,
    n: &NewNotification<'_>,
) -> Result<(), sqlx::Error> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| format!("{INSERT_COLUMNS} VALUES ({})", values(1)));
    bind(sqlx::query(sqlx::AssertSqlSafe(SQL.as_str())), n)
        .execute(db)
        .await?;
    Ok(())
}

/// PostgreSQL only: claim the event that caused `n` in the inbox (`claim`,
/// binding `$1` to `$3`) and insert `n` in one statement, with no
/// transaction around it. `false`: the event was claimed before, and
/// nothing was inserted.
pub async fn claim_and_insert<'e>(
    db: impl Executor<'e, Database = Any>,
    claim: Claim<'_>,
    n: &NewNotification<'_>,
) -> Result<bool, sqlx::Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH claim AS ({} RETURNING 1) {INSERT_COLUMNS} SELECT {} \
             WHERE EXISTS (SELECT 1 FROM claim)",
            kit::events::inbox::CLAIM,
            values(4)
        )
    });
    let query = sqlx::query(sqlx::AssertSqlSafe(SQL.as_str()))
        .bind(claim.consumer)
        .bind(claim.event_id.to_string())
        .bind(claim.at);
    let done = bind(query, n).execute(db).await?;
    Ok(done.rows_affected() == 1)
}

/// Who claims which event, and when, for [`claim_and_insert`].
pub struct Claim<'a> {
    pub consumer: &'a str,
    pub event_id: Uuid,
    pub at: i64,
}

pub async fn by_id<'e>(
    db: impl Executor<'e, Database = Any>,
    id: Uuid,
) -> Result<Option<NotificationRecord>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM notifications WHERE id = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(db)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// Every notification caused by `event_id` (at most one).
pub async fn for_event<'e>(
    db: impl Executor<'e, Database = Any>,
    event_id: Uuid,
) -> Result<Vec<NotificationRecord>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM notifications WHERE event_id = $1");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(event_id.to_string())
        .fetch_all(db)
        .await?;
    rows.iter().map(from_row).collect()
}

/// The customer and order number an earlier notification about `order_id`
/// recorded.
pub async fn order_owner<'e>(
    db: impl Executor<'e, Database = Any>,
    order_id: Uuid,
) -> Result<Option<(Option<Uuid>, Option<String>)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT user_id, order_number FROM notifications WHERE order_id = $1 \
         ORDER BY id DESC LIMIT 1",
    )
    .bind(order_id.to_string())
    .fetch_optional(db)
    .await?;
    row.map(|r| Ok((opt_uuid(r.try_get("user_id")?)?, r.try_get("order_number")?)))
        .transpose()
}

/// The customer an earlier notification to `recipient` belonged to.
pub async fn user_by_recipient<'e>(
    db: impl Executor<'e, Database = Any>,
    recipient: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT user_id FROM notifications WHERE recipient = $1 AND user_id IS NOT NULL \
         ORDER BY id DESC LIMIT 1",
    )
    .bind(recipient)
    .fetch_optional(db)
    .await?;
    row.map(|r| opt_uuid(r.try_get("user_id")?))
        .transpose()
        .map(Option::flatten)
}

/// A page of `user_id`'s notifications, newest first, older than `before`.
pub async fn feed_page<'e>(
    db: impl Executor<'e, Database = Any>,
    user_id: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<NotificationRecord>, sqlx::Error> {
    let rows = match before {
        None => {
            let sql = format!(
                "SELECT {COLUMNS} FROM notifications WHERE user_id = $1 ORDER BY id DESC LIMIT $2"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(user_id.to_string())
                .bind(limit)
                .fetch_all(db)
                .await?
        }
        Some(before) => {
            let sql = format!(
                "SELECT {COLUMNS} FROM notifications WHERE user_id = $1 AND id < $2 \
                 ORDER BY id DESC LIMIT $3"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(user_id.to_string())
                .bind(before.to_string())
                .bind(limit)
                .fetch_all(db)
                .await?
        }
    };
    rows.iter().map(from_row).collect()
}

/// Claim up to `limit` queued notifications that are due at `now`: each
/// counts one more attempt and is leased until `lease_until` (after which a
/// crashed sender's claim lapses and another may take it). Row locks with
/// SKIP LOCKED keep two replicas from claiming the same row on PostgreSQL;
/// SQLite has a single writer.
pub async fn claim_due(
    db: &Database,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<NotificationRecord>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let lock = match db.backend() {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM notifications WHERE status = 'queued' AND next_attempt_at <= $1 \
         ORDER BY next_attempt_at, id LIMIT $2{lock}"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
    let mut claimed = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    for n in &mut claimed {
        sqlx::query(
            "UPDATE notifications SET attempts = attempts + 1, next_attempt_at = $1 WHERE id = $2",
        )
        .bind(lease_until)
        .bind(n.id.to_string())
        .execute(&mut *tx)
        .await?;
        n.attempts += 1;
        n.next_attempt_at = Some(lease_until);
    }
    tx.commit().await?;
    Ok(claimed)
}

/// The SMTP server accepted it.
pub async fn mark_sent<'e>(
    db: impl Executor<'e, Database = Any>,
    id: Uuid,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE notifications SET status = 'sent', sent_at = $1, next_attempt_at = NULL, \
         last_error = NULL WHERE id = $2 AND status = 'queued'",
    )
    .bind(now)
    .bind(id.to_string())
    .execute(db)
    .await?;
    Ok(())
}

/// An attempt failed: try again at `retry_at`, or give up when `None`.
pub async fn record_failure<'e>(
    db: impl Executor<'e, Database = Any>,
    id: Uuid,
    error: &str,
    retry_at: Option<i64>,
) -> Result<(), sqlx::Error> {
    let status = if retry_at.is_some() {
        Status::Queued
    } else {
        Status::Failed
    };
    sqlx::query(
        "UPDATE notifications SET status = $1, last_error = $2, next_attempt_at = $3 \
         WHERE id = $4 AND status = 'queued'",
    )
    .bind(status.as_str())
    .bind(error)
    .bind(retry_at)
    .bind(id.to_string())
    .execute(db)
    .await?;
    Ok(())
}

/// How many notifications are in each status (for metrics and tests).
pub async fn count_by_status(db: &Database, status: Status) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) AS n FROM notifications WHERE status = $1")
        .bind(status.as_str())
        .fetch_one(db.pool())
        .await?
        .try_get("n")
}
