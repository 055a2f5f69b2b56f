use kit::db::Backend;
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};
use uuid::Uuid;

use super::uuid;
use crate::domain::{Money, PaymentStatus};

#[derive(Debug, Clone)]
pub struct PaymentRecord {
    pub id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub customer_email: String,
    pub amount: Money,
    /// The provider's opaque token (`pm_…`); `None` when unknown or unusable.
    pub payment_method: Option<String>,
    pub provider: String,
    pub status: PaymentStatus,
    pub provider_payment_id: Option<String>,
    pub provider_refund_id: Option<String>,
    pub failure_reason: Option<String>,
    pub cancel_requested_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, order_id, customer_id, customer_email, amount, currency, payment_method, \
    provider, status, provider_payment_id, provider_refund_id, failure_reason, cancel_requested_at, \
    created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<PaymentRecord, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(PaymentRecord {
        id: uuid(row.try_get("id")?)?,
        order_id: uuid(row.try_get("order_id")?)?,
        customer_id: uuid(row.try_get("customer_id")?)?,
        customer_email: row.try_get("customer_email")?,
        amount: Money {
            amount: row.try_get("amount")?,
            currency: row.try_get("currency")?,
        },
        payment_method: row.try_get("payment_method")?,
        provider: row.try_get("provider")?,
        status: PaymentStatus::parse(&status).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown payment status `{status}`").into())
        })?,
        provider_payment_id: row.try_get("provider_payment_id")?,
        provider_refund_id: row.try_get("provider_refund_id")?,
        failure_reason: row.try_get("failure_reason")?,
        cancel_requested_at: row.try_get("cancel_requested_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Insert a payment unless its order has one already (`false` then): the
/// unique order id decides, not a look beforehand.
pub async fn insert<'e>(
    db: impl Executor<'e, Database = Any>,
    p: &PaymentRecord,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO payments (id, order_id, customer_id, customer_email, amount, currency, \
         payment_method, provider, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(p.id.to_string())
    .bind(p.order_id.to_string())
    .bind(p.customer_id.to_string())
    .bind(&p.customer_email)
    .bind(p.amount.amount)
    .bind(&p.amount.currency)
    .bind(p.payment_method.as_deref())
    .bind(&p.provider)
    .bind(p.status.as_str())
    .bind(p.created_at)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// `order.placed` on PostgreSQL: claim the event and record the payment
/// in one statement (no transaction around two). `None`: delivered before;
/// `Some(inserted)` otherwise (`false`: a payment was there already).
pub async fn claim_and_insert<'e>(
    db: impl Executor<'e, Database = Any>,
    (consumer, event_id): (&str, Uuid),
    p: &PaymentRecord,
) -> Result<Option<bool>, sqlx::Error> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH claim AS ({} RETURNING event_id), \
             added AS (INSERT INTO payments (id, order_id, customer_id, customer_email, amount, \
             currency, payment_method, provider, status, created_at, updated_at) \
             SELECT $4, $5, $6, $7, $8, $9, $10, $11, $12, $3, $3 WHERE EXISTS (SELECT 1 FROM claim) \
             ON CONFLICT (order_id) DO NOTHING RETURNING id) \
             SELECT (SELECT COUNT(*) FROM claim) AS claimed, (SELECT COUNT(*) FROM added) AS added",
            kit::events::inbox::CLAIM
        )
    });
    let row = sqlx::query(sqlx::AssertSqlSafe(SQL.as_str()))
        .bind(consumer)
        .bind(event_id.to_string())
        .bind(p.created_at)
        .bind(p.id.to_string())
        .bind(p.order_id.to_string())
        .bind(p.customer_id.to_string())
        .bind(&p.customer_email)
        .bind(p.amount.amount)
        .bind(&p.amount.currency)
        .bind(p.payment_method.as_deref())
        .bind(&p.provider)
        .bind(p.status.as_str())
        .fetch_one(db)
        .await?;
    if row.try_get::<i64, _>("claimed")? == 0 {
        return Ok(None);
    }
    Ok(Some(row.try_get::<i64, _>("added")? == 1))
}

pub async fn by_order<'e>(
    db: impl Executor<'e, Database = Any>,
    order_id: Uuid,
) -> Result<Option<PaymentRecord>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM payments WHERE order_id = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(order_id.to_string())
        .fetch_optional(db)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// The order's payment, locked for the rest of the transaction (SQLite's
/// `BEGIN IMMEDIATE` already holds the one write lock).
pub async fn by_order_for_update<'e>(
    db: impl Executor<'e, Database = Any>,
    backend: Backend,
    order_id: Uuid,
) -> Result<Option<PaymentRecord>, sqlx::Error> {
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let sql = format!("SELECT {COLUMNS} FROM payments WHERE order_id = $1{lock}");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(order_id.to_string())
        .fetch_optional(db)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// The statement that claims a cause (`claim`, an `INSERT … ON CONFLICT DO
/// NOTHING`) and locks the payment of order `$order_param` together.
fn claim_and_lock_sql(claim: &str, order_param: usize) -> String {
    kit::events::inbox::claim_then_lock(
        claim,
        &format!("SELECT {COLUMNS} FROM payments WHERE order_id = ${order_param} FOR UPDATE"),
    )
}

/// `None`: the cause was claimed before; otherwise the locked payment.
fn claimed_and_locked(row: &AnyRow) -> Result<Option<Option<PaymentRecord>>, sqlx::Error> {
    if !row.try_get::<bool, _>("claimed")? {
        return Ok(None);
    }
    if row.try_get::<Option<String>, _>("id")?.is_none() {
        return Ok(Some(None));
    }
    Ok(Some(Some(from_row(row)?)))
}

/// PostgreSQL: claim a bus event (`consumer`, `event_id`) and lock the
/// order's payment in one statement.
pub async fn claim_event_and_lock<'e>(
    db: impl Executor<'e, Database = Any>,
    (consumer, event_id): (&str, Uuid),
    order_id: Uuid,
    now: i64,
) -> Result<Option<Option<PaymentRecord>>, sqlx::Error> {
    static SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| claim_and_lock_sql(kit::events::inbox::CLAIM, 4));
    let row = sqlx::query(sqlx::AssertSqlSafe(SQL.as_str()))
        .bind(consumer)
        .bind(event_id.to_string())
        .bind(now)
        .bind(order_id.to_string())
        .fetch_one(db)
        .await?;
    claimed_and_locked(&row)
}

/// PostgreSQL: claim a provider's webhook event and lock the order's
/// payment in one statement.
pub async fn claim_webhook_and_lock<'e>(
    db: impl Executor<'e, Database = Any>,
    (provider, event_id, event_type): (&str, &str, &str),
    order_id: Uuid,
    now: i64,
) -> Result<Option<Option<PaymentRecord>>, sqlx::Error> {
    static SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| claim_and_lock_sql(super::webhook_events::CLAIM, 5));
    let row = sqlx::query(sqlx::AssertSqlSafe(SQL.as_str()))
        .bind(provider)
        .bind(event_id)
        .bind(event_type)
        .bind(now)
        .bind(order_id.to_string())
        .fetch_one(db)
        .await?;
    claimed_and_locked(&row)
}

pub async fn by_provider_payment_id<'e>(
    db: impl Executor<'e, Database = Any>,
    provider: &str,
    provider_payment_id: &str,
) -> Result<Option<PaymentRecord>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM payments WHERE provider_payment_id = $1 AND provider = $2 \
         ORDER BY id LIMIT 1"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(provider_payment_id)
        .bind(provider)
        .fetch_optional(db)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// Move the order's payment from `from` to `to` and return it as it now
/// is; `None` if it is missing or no longer in `from`.
pub async fn transition_order<'e>(
    db: impl Executor<'e, Database = Any>,
    order_id: Uuid,
    from: PaymentStatus,
    to: PaymentStatus,
    now: i64,
) -> Result<Option<PaymentRecord>, sqlx::Error> {
    let sql = format!(
        "UPDATE payments SET status = $1, updated_at = $2 WHERE order_id = $3 AND status = $4 \
         RETURNING {COLUMNS}"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(to.as_str())
        .bind(now)
        .bind(order_id.to_string())
        .bind(from.as_str())
        .fetch_optional(db)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// Move a payment from `from` to `to`; `false` if it was no longer in
/// `from` (someone else moved it first).
pub async fn transition<'e>(
    db: impl Executor<'e, Database = Any>,
    id: Uuid,
    from: PaymentStatus,
    to: PaymentStatus,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE payments SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4",
    )
    .bind(to.as_str())
    .bind(now)
    .bind(id.to_string())
    .bind(from.as_str())
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Note that the order was cancelled while its charge is in flight.
pub async fn request_cancel<'e>(
    db: impl Executor<'e, Database = Any>,
    id: Uuid,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE payments SET cancel_requested_at = $1, updated_at = $1 \
         WHERE id = $2 AND status = 'processing'",
    )
    .bind(now)
    .bind(id.to_string())
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Record what the provider said of the charge. The provider's id is kept
/// once known, whichever answer brought it first.
pub async fn settle_charge<'e>(
    db: impl Executor<'e, Database = Any>,
    id: Uuid,
    status: PaymentStatus,
    provider_payment_id: Option<&str>,
    failure_reason: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE payments SET status = $1, provider_payment_id = COALESCE(provider_payment_id, $2), \
         failure_reason = $3, updated_at = $4 WHERE id = $5",
    )
    .bind(status.as_str())
    .bind(provider_payment_id)
    .bind(failure_reason)
    .bind(now)
    .bind(id.to_string())
    .execute(db)
    .await?;
    Ok(())
}

pub async fn settle_refund<'e>(
    db: impl Executor<'e, Database = Any>,
    id: Uuid,
    status: PaymentStatus,
    provider_refund_id: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE payments SET status = $1, provider_refund_id = COALESCE($2, provider_refund_id), \
         updated_at = $3 WHERE id = $4",
    )
    .bind(status.as_str())
    .bind(provider_refund_id)
    .bind(now)
    .bind(id.to_string())
    .execute(db)
    .await?;
    Ok(())
}

/// Keep the provider's id of a payment that is already settled.
pub async fn remember_provider_payment_id<'e>(
    db: impl Executor<'e, Database = Any>,
    id: Uuid,
    provider_payment_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE payments SET provider_payment_id = $1, updated_at = $2 \
         WHERE id = $3 AND provider_payment_id IS NULL",
    )
    .bind(provider_payment_id)
    .bind(now)
    .bind(id.to_string())
    .execute(db)
    .await?;
    Ok(())
}

/// Which payments a listing shows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub customer_id: Option<Uuid>,
    pub order_id: Option<Uuid>,
}

/// Charges (`processing`) or refunds (`refunding`) the provider has made
/// and whose outcome has not arrived since `changed_before` (epoch ms),
/// oldest first.
pub async fn in_flight_since<'e>(
    db: impl Executor<'e, Database = Any>,
    status: PaymentStatus,
    changed_before: i64,
    limit: i64,
) -> Result<Vec<PaymentRecord>, sqlx::Error> {
    let provider_id = match status {
        PaymentStatus::Refunding => "provider_refund_id",
        _ => "provider_payment_id",
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM payments WHERE status = $1 AND updated_at < $2 \
         AND {provider_id} IS NOT NULL ORDER BY updated_at LIMIT $3"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(status.as_str())
        .bind(changed_before)
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter().map(from_row).collect()
}

/// A page of payments in id (creation) order, after `cursor`.
pub async fn page<'e>(
    db: impl Executor<'e, Database = Any>,
    filter: &Filter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<PaymentRecord>, sqlx::Error> {
    let mut sql = format!("SELECT {COLUMNS} FROM payments WHERE id > $1");
    let mut binds = vec![after.map(|u| u.to_string()).unwrap_or_default()];
    if let Some(c) = filter.customer_id {
        binds.push(c.to_string());
        sql.push_str(&format!(" AND customer_id = ${}", binds.len()));
    }
    if let Some(o) = filter.order_id {
        binds.push(o.to_string());
        sql.push_str(&format!(" AND order_id = ${}", binds.len()));
    }
    sql.push_str(&format!(" ORDER BY id LIMIT ${}", binds.len() + 1));
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for b in binds {
        query = query.bind(b);
    }
    let rows = query.bind(limit).fetch_all(db).await?;
    rows.iter().map(from_row).collect()
}

/// PostgreSQL only: claim `event_id` for `consumer` and note the provider's
/// id of a charge still in flight, in one statement. `false`: the event was
/// claimed before, and nothing changed.
pub async fn claim_and_note_charge_in_flight<'e>(
    db: impl Executor<'e, Database = Any>,
    (consumer, event_id): (&str, Uuid),
    order_id: Uuid,
    provider_payment_id: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH claim AS ({} RETURNING event_id), \
             noted AS (UPDATE payments SET provider_payment_id = COALESCE(provider_payment_id, $4), \
             status = CASE WHEN status = 'pending' THEN 'processing' ELSE status END, \
             updated_at = $3 WHERE order_id = $5 AND EXISTS (SELECT 1 FROM claim)) \
             SELECT COUNT(*) AS claimed FROM claim",
            kit::events::inbox::CLAIM
        )
    });
    let row = sqlx::query(sqlx::AssertSqlSafe(SQL.as_str()))
        .bind(consumer)
        .bind(event_id.to_string())
        .bind(now)
        .bind(provider_payment_id)
        .bind(order_id.to_string())
        .fetch_one(db)
        .await?;
    Ok(row.try_get::<i64, _>("claimed")? == 1)
}

/// How [`settle_charge_by_webhook`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookSettlement {
    /// Claimed, settled and announced.
    Settled,
    /// The payment awaits its outcome, but this webhook event was applied
    /// before (a delivery that raced this one).
    Duplicate,
    /// The payment no longer simply awaits its outcome (settled, or its
    /// order cancelled meanwhile): nothing done, not even the claim.
    NotApplicable,
}

/// PostgreSQL: the usual webhook, a charge's outcome for a payment awaiting
/// it with no cancellation requested, in one statement: lock the payment if
/// it still is in that state, claim the webhook event, settle the charge
/// and write the event announcing it. Anything else changes nothing, so the
/// caller can take the general path.
pub async fn settle_charge_by_webhook<'e>(
    db: impl Executor<'e, Database = Any>,
    payment_id: Uuid,
    (provider, event_id, event_type): (&str, &str, &str),
    (status, provider_payment_id, failure_reason): (PaymentStatus, &str, Option<&str>),
    now: i64,
    announcement: &kit::events::Unwritten,
) -> Result<WebhookSettlement, sqlx::Error> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH target AS (SELECT id FROM payments WHERE id = $1 AND status IN ($2, $3) \
             AND cancel_requested_at IS NULL FOR UPDATE), \
             claim AS (INSERT INTO webhook_events (provider, event_id, event_type, received_at, deliveries) \
             SELECT $4, $5, $6, $7, 1 FROM target ON CONFLICT (provider, event_id) DO NOTHING RETURNING 1), \
             moved AS (UPDATE payments SET status = $8, provider_payment_id = COALESCE(provider_payment_id, $9), \
             failure_reason = $10, updated_at = $7 \
             WHERE id IN (SELECT id FROM target) AND EXISTS (SELECT 1 FROM claim) RETURNING id), \
             announced AS ({}) \
             SELECT (SELECT COUNT(*) FROM target) AS locked, (SELECT COUNT(*) FROM moved) AS moved",
            kit::events::Unwritten::insert_per_row_sql(11, "moved")
        )
    });
    let query = sqlx::query(sqlx::AssertSqlSafe(SQL.as_str()))
        .bind(payment_id.to_string())
        .bind(PaymentStatus::Pending.as_str())
        .bind(PaymentStatus::Processing.as_str())
        .bind(provider)
        .bind(event_id)
        .bind(event_type)
        .bind(now)
        .bind(status.as_str())
        .bind(provider_payment_id)
        .bind(failure_reason);
    let row = announcement.bind(query).fetch_one(db).await?;
    Ok(
        match (
            row.try_get::<i64, _>("locked")?,
            row.try_get::<i64, _>("moved")?,
        ) {
            (0, _) => WebhookSettlement::NotApplicable,
            (_, 0) => WebhookSettlement::Duplicate,
            _ => WebhookSettlement::Settled,
        },
    )
}
