use kit::db::{Backend, Database};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row, Transaction};
use uuid::Uuid;

use crate::domain::{Money, OrderStatus, ShippingAddress};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderLine {
    pub product_id: Uuid,
    pub name: String,
    pub unit_price: Money,
    pub quantity: i64,
    pub line_total: Money,
}

#[derive(Debug, Clone)]
pub struct OrderRecord {
    pub id: Uuid,
    pub number: String,
    pub customer_id: Uuid,
    pub customer_email: String,
    pub status: OrderStatus,
    pub cancel_reason: Option<String>,
    pub currency: String,
    pub subtotal: i64,
    pub shipping: i64,
    pub tax: i64,
    pub total: i64,
    pub lines: Vec<OrderLine>,
    pub shipping_address: ShippingAddress,
    pub payment_method: String,
    pub idempotency_key: String,
    pub request_hash: String,
    pub paid_at: Option<i64>,
    pub payment_deadline: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub status: OrderStatus,
    pub reason: Option<String>,
    pub at: i64,
}

const COLUMNS: &str = "id, number, customer_id, customer_email, status, cancel_reason, currency, subtotal, \
    shipping, tax, total, lines, shipping_address, payment_method, idempotency_key, request_hash, paid_at, \
    payment_deadline, created_at, updated_at";

fn decode_err(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

fn uuid(s: String) -> Result<Uuid, sqlx::Error> {
    Uuid::parse_str(&s).map_err(decode_err)
}

fn from_row(row: &AnyRow) -> Result<OrderRecord, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(OrderRecord {
        id: uuid(row.try_get("id")?)?,
        number: row.try_get("number")?,
        customer_id: uuid(row.try_get("customer_id")?)?,
        customer_email: row.try_get("customer_email")?,
        status: status
            .parse()
            .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
        cancel_reason: row.try_get("cancel_reason")?,
        currency: row.try_get("currency")?,
        subtotal: row.try_get("subtotal")?,
        shipping: row.try_get("shipping")?,
        tax: row.try_get("tax")?,
        total: row.try_get("total")?,
        lines: serde_json::from_str(&row.try_get::<String, _>("lines")?).map_err(decode_err)?,
        shipping_address: serde_json::from_str(&row.try_get::<String, _>("shipping_address")?)
            .map_err(decode_err)?,
        payment_method: row.try_get("payment_method")?,
        idempotency_key: row.try_get("idempotency_key")?,
        request_hash: row.try_get("request_hash")?,
        paid_at: row.try_get("paid_at")?,
        payment_deadline: row.try_get("payment_deadline")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub enum InsertOutcome {
    Inserted,
    /// Same customer and idempotency key: another request got there first.
    DuplicateKey,
    /// Order number collision (retry with a new number).
    DuplicateNumber,
}

/// Write a new order, its first history entry and `announcement` (the
/// `order.placed` row). On PostgreSQL that is one statement, atomic without
/// a transaction: pass a plain connection. SQLite needs several: pass a
/// transaction and commit it when this answers `Inserted`.
pub async fn insert(
    conn: &mut AnyConnection,
    backend: Backend,
    o: &OrderRecord,
    announcement: &kit::events::Unwritten,
) -> Result<InsertOutcome, sqlx::Error> {
    static VALUES: &str = "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)";
    static PLACE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH placed AS (INSERT INTO orders ({COLUMNS}) {VALUES} RETURNING id), \
             announced AS ({}) \
             INSERT INTO order_history (id, order_id, status, reason, at) \
             SELECT $21, id, $5, NULL, $19 FROM placed",
            kit::events::Unwritten::insert_sql(22)
        )
    });
    let sql = match backend {
        Backend::Postgres => PLACE.clone(),
        Backend::Sqlite => format!("INSERT INTO orders ({COLUMNS}) {VALUES}"),
    };
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(o.id.to_string())
        .bind(&o.number)
        .bind(o.customer_id.to_string())
        .bind(&o.customer_email)
        .bind(o.status.as_str())
        .bind(o.cancel_reason.clone())
        .bind(&o.currency)
        .bind(o.subtotal)
        .bind(o.shipping)
        .bind(o.tax)
        .bind(o.total)
        .bind(serde_json::to_string(&o.lines).map_err(|e| sqlx::Error::Encode(Box::new(e)))?)
        .bind(
            serde_json::to_string(&o.shipping_address)
                .map_err(|e| sqlx::Error::Encode(Box::new(e)))?,
        )
        .bind(&o.payment_method)
        .bind(&o.idempotency_key)
        .bind(&o.request_hash)
        .bind(o.paid_at)
        .bind(o.payment_deadline)
        .bind(o.created_at)
        .bind(o.updated_at);
    if backend == Backend::Postgres {
        query = announcement.bind(query.bind(Uuid::now_v7().to_string()));
    }
    match query.execute(&mut *conn).await {
        Ok(_) => {}
        Err(e) if kit::db::is_unique_violation(&e) => {
            let constraint = kit::db::violated_constraint(&e).unwrap_or_default();
            return Ok(if constraint.contains("number") {
                InsertOutcome::DuplicateNumber
            } else {
                InsertOutcome::DuplicateKey
            });
        }
        Err(e) => return Err(e),
    }
    if backend == Backend::Sqlite {
        add_history(conn, o.id, o.status, None, o.created_at).await?;
        announcement
            .bind(sqlx::query(kit::events::Unwritten::INSERT))
            .execute(&mut *conn)
            .await?;
    }
    Ok(InsertOutcome::Inserted)
}

pub async fn add_history(
    conn: &mut AnyConnection,
    order_id: Uuid,
    status: OrderStatus,
    reason: Option<&str>,
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO order_history (id, order_id, status, reason, at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(Uuid::now_v7().to_string())
    .bind(order_id.to_string())
    .bind(status.as_str())
    .bind(reason.map(str::to_string))
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Read an order and lock it until the transaction ends, so concurrent
/// transitions (a consumer, the timeout sweep, a customer) apply one by one.
pub async fn lock(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    id: Uuid,
) -> Result<Option<OrderRecord>, sqlx::Error> {
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE id = $1{lock}");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// What [`claim_and_lock`] found.
pub enum Claimed {
    /// The event was handled before: nothing locked that matters.
    Duplicate,
    /// First delivery; the order locked, if it exists.
    First(Option<Box<OrderRecord>>),
}

/// Claim the causing event (`consumer`, `event_id`) and lock the order it
/// is about. On PostgreSQL one statement does both, so a saga step costs
/// one round trip less; SQLite runs the two in turn.
pub async fn claim_and_lock(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    (consumer, event_id): (&str, &str),
    id: Uuid,
    now: i64,
) -> Result<Claimed, sqlx::Error> {
    if backend == Backend::Sqlite {
        let claimed = sqlx::query(kit::events::inbox::CLAIM)
            .bind(consumer)
            .bind(event_id)
            .bind(now)
            .execute(&mut **tx)
            .await?
            .rows_affected()
            == 1;
        if !claimed {
            return Ok(Claimed::Duplicate);
        }
        return Ok(Claimed::First(lock(tx, backend, id).await?.map(Box::new)));
    }
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        kit::events::inbox::claim_then_lock(
            kit::events::inbox::CLAIM,
            &format!("SELECT {COLUMNS} FROM orders WHERE id = $4 FOR UPDATE"),
        )
    });
    let row = sqlx::query(sqlx::AssertSqlSafe(SQL.as_str()))
        .bind(consumer)
        .bind(event_id)
        .bind(now)
        .bind(id.to_string())
        .fetch_one(&mut **tx)
        .await?;
    if !row.try_get::<bool, _>("claimed")? {
        return Ok(Claimed::Duplicate);
    }
    if row.try_get::<Option<String>, _>("id")?.is_none() {
        return Ok(Claimed::First(None));
    }
    Ok(Claimed::First(Some(Box::new(from_row(&row)?))))
}

pub async fn by_idempotency_key<'e>(
    db: impl Executor<'e, Database = Any>,
    customer_id: Uuid,
    key: &str,
) -> Result<Option<OrderRecord>, sqlx::Error> {
    let sql =
        format!("SELECT {COLUMNS} FROM orders WHERE customer_id = $1 AND idempotency_key = $2");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(customer_id.to_string())
        .bind(key)
        .fetch_optional(db)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// On PostgreSQL, claim an event and move the order from `from` to `to`
/// with its history entry and its notice, as one statement: for changes
/// that announce nothing, the usual saga step without a transaction.
/// `None`: the event was handled before; `Some(false)`: claimed, but the
/// order is missing or no longer in `from`.
pub async fn claim_and_advance<'e>(
    db: impl sqlx::Executor<'e, Database = Any>,
    (consumer, event_id): (&str, &str),
    id: Uuid,
    (from, to): (OrderStatus, OrderStatus),
    now: i64,
    (channel, notice): (&str, &str),
) -> Result<Option<bool>, sqlx::Error> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH claim AS ({} RETURNING 1), \
             moved AS (UPDATE orders SET status = $5, updated_at = $3 \
             WHERE id = $4 AND status = $6 AND EXISTS (SELECT 1 FROM claim) RETURNING id), \
             entry AS (INSERT INTO order_history (id, order_id, status, reason, at) \
             SELECT $7, id, $5, NULL, $3 FROM moved) \
             SELECT EXISTS (SELECT 1 FROM claim) AS claimed, \
             (SELECT COUNT(pg_notify($8, $9)) FROM moved) AS moved",
            kit::events::inbox::CLAIM
        )
    });
    let row = sqlx::query(sqlx::AssertSqlSafe(SQL.as_str()))
        .bind(consumer)
        .bind(event_id)
        .bind(now)
        .bind(id.to_string())
        .bind(to.as_str())
        .bind(from.as_str())
        .bind(Uuid::now_v7().to_string())
        .bind(channel)
        .bind(notice)
        .fetch_one(db)
        .await?;
    if !row.try_get::<bool, _>("claimed")? {
        return Ok(None);
    }
    Ok(Some(row.try_get::<i64, _>("moved")? > 0))
}

/// Move `order` to `next` and add the history entry. On PostgreSQL this is
/// one statement, which also sends `notice` (channel, payload) when the
/// transaction commits; SQLite has no notices.
pub async fn set_status(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    order: &OrderRecord,
    change: (OrderStatus, Option<&str>),
    now: i64,
    notice: (&str, &str),
    announcement: Option<&kit::events::Unwritten>,
) -> Result<(), sqlx::Error> {
    let (next, reason) = change;
    let paid_at = if next == OrderStatus::Confirmed {
        Some(now)
    } else {
        order.paid_at
    };
    let cancel_reason = if next == OrderStatus::Cancelled {
        reason.map(str::to_string)
    } else {
        order.cancel_reason.clone()
    };
    let update = "UPDATE orders SET status = $1, cancel_reason = $2, paid_at = $3, updated_at = $4 WHERE id = $5";
    // On PostgreSQL the change, its history entry, its notice and the event
    // announcing it are one statement.
    static MOVE: &str = "WITH moved AS (UPDATE orders SET status = $1, cancel_reason = $2, \
         paid_at = $3, updated_at = $4 WHERE id = $5 RETURNING id), \
         entry AS (INSERT INTO order_history (id, order_id, status, reason, at) \
         SELECT $6, id, $1, $7, $4 FROM moved)";
    static MOVE_AND_NOTIFY: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("{MOVE} SELECT pg_notify($8, $9) FROM moved"));
    static MOVE_ANNOUNCE_AND_NOTIFY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "{MOVE}, announced AS ({}) SELECT pg_notify($8, $9) FROM moved",
            kit::events::Unwritten::insert_sql(10)
        )
    });
    let query = match (backend, announcement) {
        (Backend::Postgres, None) => sqlx::query(sqlx::AssertSqlSafe(MOVE_AND_NOTIFY.as_str())),
        (Backend::Postgres, Some(_)) => {
            sqlx::query(sqlx::AssertSqlSafe(MOVE_ANNOUNCE_AND_NOTIFY.as_str()))
        }
        (Backend::Sqlite, _) => sqlx::query(update),
    }
    .bind(next.as_str())
    .bind(cancel_reason)
    .bind(paid_at)
    .bind(now)
    .bind(order.id.to_string());
    match backend {
        Backend::Postgres => {
            let query = query
                .bind(Uuid::now_v7().to_string())
                .bind(reason.map(str::to_string))
                .bind(notice.0)
                .bind(notice.1);
            match announcement {
                Some(row) => row.bind(query),
                None => query,
            }
            .execute(&mut **tx)
            .await?;
            Ok(())
        }
        Backend::Sqlite => {
            query.execute(&mut **tx).await?;
            add_history(tx, order.id, next, reason, now).await?;
            if let Some(row) = announcement {
                row.bind(sqlx::query(kit::events::Unwritten::INSERT))
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(())
        }
    }
}

/// An order with its history, in one round trip: what every poll of an
/// order costs.
pub async fn by_id_with_history<'e>(
    db: impl Executor<'e, Database = Any>,
    id: Uuid,
) -> Result<Option<(OrderRecord, Vec<HistoryEntry>)>, sqlx::Error> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let columns: Vec<String> = COLUMNS.split(", ").map(|c| format!("o.{c}")).collect();
        format!(
            "SELECT {}, h.status AS h_status, h.reason AS h_reason, h.at AS h_at \
             FROM orders o LEFT JOIN order_history h ON h.order_id = o.id \
             WHERE o.id = $1 ORDER BY h.id",
            columns.join(", ")
        )
    });
    let rows = sqlx::query(sqlx::AssertSqlSafe(SQL.as_str()))
        .bind(id.to_string())
        .fetch_all(db)
        .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let order = from_row(first)?;
    let mut history = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(status) = row.try_get::<Option<String>, _>("h_status")? {
            history.push(history_entry(
                status,
                row.try_get("h_reason")?,
                row.try_get("h_at")?,
            )?);
        }
    }
    Ok(Some((order, history)))
}

fn history_entry(
    status: String,
    reason: Option<String>,
    at: i64,
) -> Result<HistoryEntry, sqlx::Error> {
    Ok(HistoryEntry {
        status: status
            .parse()
            .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
        reason,
        at,
    })
}

/// The histories of several orders in one query, by order id.
pub async fn histories<'e>(
    db: impl Executor<'e, Database = Any>,
    order_ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Vec<HistoryEntry>>, sqlx::Error> {
    let mut by_order: std::collections::HashMap<Uuid, Vec<HistoryEntry>> =
        std::collections::HashMap::new();
    if order_ids.is_empty() {
        return Ok(by_order);
    }
    let placeholders: Vec<String> = (1..=order_ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT order_id, status, reason, at FROM order_history WHERE order_id IN ({}) ORDER BY id",
        placeholders.join(", ")
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for id in order_ids {
        q = q.bind(id.to_string());
    }
    for r in q.fetch_all(db).await? {
        let order_id = uuid(r.try_get("order_id")?)?;
        let entry = history_entry(r.try_get("status")?, r.try_get("reason")?, r.try_get("at")?)?;
        by_order.entry(order_id).or_default().push(entry);
    }
    Ok(by_order)
}

pub async fn history<'e>(
    db: impl Executor<'e, Database = Any>,
    order_id: Uuid,
) -> Result<Vec<HistoryEntry>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT status, reason, at FROM order_history WHERE order_id = $1 ORDER BY id")
            .bind(order_id.to_string())
            .fetch_all(db)
            .await?;
    rows.iter()
        .map(|r| history_entry(r.try_get("status")?, r.try_get("reason")?, r.try_get("at")?))
        .collect()
}

/// Filters of an order listing; `customer` limits it to one customer.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub customer: Option<Uuid>,
    pub status: Option<OrderStatus>,
    pub created_from: Option<i64>,
    pub created_to: Option<i64>,
    pub before: Option<Uuid>,
}

/// Newest first, `limit` rows.
pub async fn list(
    db: &Database,
    filter: &ListFilter,
    limit: i64,
) -> Result<Vec<OrderRecord>, sqlx::Error> {
    let mut clauses = Vec::new();
    let mut binds: Vec<Bind> = Vec::new();
    let mut push = |clause: &str, value: Bind| {
        binds.push(value);
        clauses.push(clause.replace('?', &format!("${}", binds.len())));
    };
    if let Some(c) = filter.customer {
        push("customer_id = ?", Bind::Text(c.to_string()));
    }
    if let Some(s) = filter.status {
        push("status = ?", Bind::Text(s.as_str().to_string()));
    }
    if let Some(f) = filter.created_from {
        push("created_at >= ?", Bind::Int(f));
    }
    if let Some(t) = filter.created_to {
        push("created_at < ?", Bind::Int(t));
    }
    if let Some(b) = filter.before {
        push("id < ?", Bind::Text(b.to_string()));
    }
    let where_clause = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM orders {where_clause} ORDER BY id DESC LIMIT ${}",
        binds.len() + 1
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for b in binds {
        q = match b {
            Bind::Text(s) => q.bind(s),
            Bind::Int(i) => q.bind(i),
        };
    }
    let rows = q.bind(limit).fetch_all(db.pool()).await?;
    rows.iter().map(from_row).collect()
}

enum Bind {
    Text(String),
    Int(i64),
}

/// Orders still waiting for payment past their deadline, claimed so that
/// two sweepers never take the same one.
pub async fn overdue(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    now: i64,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "SELECT id FROM orders WHERE status IN ('pending', 'awaiting_payment') AND payment_deadline < $1 \
         ORDER BY payment_deadline LIMIT $2{lock}"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(limit)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(|r| uuid(r.try_get("id")?)).collect()
}
