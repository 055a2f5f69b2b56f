//! The catalog's part in the checkout saga: reserve an order's stock, all
//! or nothing, when it is placed; give it back, once, when the order is
//! cancelled. Stock never goes below zero: each line is taken with a
//! conditional `UPDATE … WHERE stock >= n` inside one transaction.

use kit::clock::now_millis;
use kit::db::Backend;
use kit::events::{Envelope, EventBus, HandlerError, Subscription, inbox};
use serde::{Deserialize, Serialize};
use sqlx::{Any, Row, Transaction};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::AppState;
use crate::events::SERVICE;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StockLine {
    pub product_id: Uuid,
    pub quantity: i64,
}

#[derive(Deserialize)]
struct OrderPlaced {
    order_id: Uuid,
    lines: Vec<StockLine>,
}

#[derive(Deserialize)]
struct OrderCancelled {
    order_id: Uuid,
}

#[derive(Serialize)]
struct StockReserved<'a> {
    order_id: Uuid,
    lines: &'a [StockLine],
}

#[derive(Serialize)]
struct Shortage {
    product_id: Uuid,
    requested: i64,
    available: i64,
}

#[derive(Serialize)]
struct StockRejected {
    order_id: Uuid,
    reason: &'static str,
    lines: Vec<Shortage>,
}

#[derive(Serialize)]
struct StockReleased {
    order_id: Uuid,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Reservation {
    Reserved,
    Rejected,
    AlreadyHandled,
}

/// Merge repeated products and order by id, so concurrent reservations
/// lock rows in the same order and cannot deadlock.
fn normalise(lines: &[StockLine]) -> Vec<StockLine> {
    let mut merged: std::collections::BTreeMap<Uuid, i64> = Default::default();
    for l in lines {
        *merged.entry(l.product_id).or_default() += l.quantity;
    }
    merged
        .into_iter()
        .map(|(product_id, quantity)| StockLine {
            product_id,
            quantity,
        })
        .collect()
}

async fn take(
    tx: &mut Transaction<'static, Any>,
    line: &StockLine,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE products SET stock = stock - $1, updated_at = $2 \
         WHERE id = $3 AND is_active = $4 AND stock >= $1",
    )
    .bind(line.quantity)
    .bind(now)
    .bind(line.product_id.to_string())
    .bind(true)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Take the last line and, if that worked, record the reservation: on
/// PostgreSQL one statement, so a one-line order reserves in one round trip.
async fn take_last_and_record(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    (order_id, lines): (Uuid, &[StockLine]),
    last: &StockLine,
    now: i64,
) -> Result<bool, sqlx::Error> {
    if backend == Backend::Sqlite {
        if !take(tx, last, now).await? {
            return Ok(false);
        }
        record(tx, order_id, "reserved", lines, now).await?;
        return Ok(true);
    }
    let done = sqlx::query(
        "WITH taken AS (UPDATE products SET stock = stock - $1, updated_at = $2 \
         WHERE id = $3 AND is_active = $4 AND stock >= $1 RETURNING id) \
         INSERT INTO stock_reservations (order_id, status, lines, created_at, updated_at) \
         SELECT $5, 'reserved', $6, $2, $2 FROM taken",
    )
    .bind(last.quantity)
    .bind(now)
    .bind(last.product_id.to_string())
    .bind(true)
    .bind(order_id.to_string())
    .bind(serde_json::to_string(lines).map_err(|e| sqlx::Error::Encode(Box::new(e)))?)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Claim `event` and check that no reservation was decided for the order
/// yet (one statement on PostgreSQL). `false`: nothing left to do.
async fn claim_undecided(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    event: &Envelope,
    order_id: Uuid,
) -> Result<bool, sqlx::Error> {
    if backend == Backend::Sqlite {
        if !inbox::first_delivery(tx, SERVICE, event).await? {
            return Ok(false);
        }
        let earlier = sqlx::query("SELECT status FROM stock_reservations WHERE order_id = $1")
            .bind(order_id.to_string())
            .fetch_optional(&mut **tx)
            .await?;
        return Ok(earlier.is_none());
    }
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH claim AS ({} RETURNING event_id) \
             SELECT EXISTS (SELECT 1 FROM claim) AND NOT EXISTS \
             (SELECT 1 FROM stock_reservations WHERE order_id = $4) AS undecided",
            inbox::CLAIM
        )
    });
    let row = sqlx::query(sqlx::AssertSqlSafe(SQL.as_str()))
        .bind(SERVICE)
        .bind(event.id.to_string())
        .bind(now_millis())
        .bind(order_id.to_string())
        .fetch_one(&mut **tx)
        .await?;
    row.try_get("undecided")
}

async fn available<'e>(
    db: impl sqlx::Executor<'e, Database = Any>,
    product_id: Uuid,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query("SELECT stock, is_active FROM products WHERE id = $1")
        .bind(product_id.to_string())
        .fetch_optional(db)
        .await?;
    let Some(r) = row else {
        return Ok(0);
    };
    // PostgreSQL has a boolean; SQLite an integer 0/1.
    let is_active = match r.try_get::<bool, _>("is_active") {
        Ok(b) => b,
        Err(_) => r.try_get::<i64, _>("is_active")? != 0,
    };
    Ok(if is_active { r.try_get("stock")? } else { 0 })
}

async fn record(
    tx: &mut Transaction<'static, Any>,
    order_id: Uuid,
    status: &str,
    lines: &[StockLine],
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO stock_reservations (order_id, status, lines, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(order_id.to_string())
    .bind(status)
    .bind(serde_json::to_string(lines).map_err(|e| sqlx::Error::Encode(Box::new(e)))?)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The usual reservation, an order of one line reaching PostgreSQL for the
/// first time, as one statement: take the stock, record the reservation,
/// claim the event and write `stock.reserved`, or change nothing. `false`:
/// not taken (too little stock, inactive, or the event or the order seen
/// before); the caller then finds out which through the general path.
/// A racing duplicate delivery cannot take twice: the second reservation
/// row for the order violates its primary key, failing the whole statement.
async fn reserve_one_line_at_once(
    state: &AppState,
    event: &Envelope,
    (order_id, lines): (Uuid, &[StockLine]),
    now: i64,
) -> Result<bool, HandlerError> {
    let [line] = lines else {
        return Ok(false);
    };
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH taken AS (UPDATE products SET stock = stock - $5, updated_at = $3 \
             WHERE id = $6 AND is_active = $7 AND stock >= $5 \
             AND NOT EXISTS (SELECT 1 FROM processed_events WHERE consumer = $1 AND event_id = $2) \
             AND NOT EXISTS (SELECT 1 FROM stock_reservations WHERE order_id = $4) RETURNING id), \
             reservation AS (INSERT INTO stock_reservations (order_id, status, lines, created_at, updated_at) \
             SELECT $4, 'reserved', $8, $3, $3 FROM taken RETURNING order_id), \
             claim AS (INSERT INTO processed_events (consumer, event_id, processed_at) \
             SELECT $1, $2, $3 FROM reservation), \
             announced AS ({}) \
             SELECT COUNT(*) AS reserved FROM reservation",
            kit::events::Unwritten::insert_per_row_sql(9, "reservation")
        )
    });
    let announcement = state
        .outbox
        .unwritten(
            &Envelope::new(SERVICE, "stock.reserved", StockReserved { order_id, lines })
                .map_err(HandlerError::poison)?,
        )
        .map_err(HandlerError::poison)?;
    let query = sqlx::query(sqlx::AssertSqlSafe(SQL.as_str()))
        .bind(SERVICE)
        .bind(event.id.to_string())
        .bind(now)
        .bind(order_id.to_string())
        .bind(line.quantity)
        .bind(line.product_id.to_string())
        .bind(true)
        .bind(serde_json::to_string(lines).map_err(HandlerError::poison)?);
    let row = announcement.bind(query).fetch_one(state.db.pool()).await?;
    if row.try_get::<i64, _>("reserved")? == 0 {
        return Ok(false);
    }
    state.outbox.committed([announcement.written()]);
    Ok(true)
}

/// Reserve every line of an order, or none.
pub async fn reserve(
    state: &AppState,
    event: &Envelope,
    order_id: Uuid,
    lines: &[StockLine],
) -> Result<Reservation, HandlerError> {
    let lines = normalise(lines);
    if lines.is_empty() || lines.iter().any(|l| l.quantity <= 0) {
        return Err(HandlerError::poison(
            "order.placed with no or non-positive quantities",
        ));
    }
    let now = now_millis();
    let backend = state.db.backend();
    if backend == Backend::Postgres
        && reserve_one_line_at_once(state, event, (order_id, &lines), now).await?
    {
        return Ok(reserved(state).await);
    }
    let mut tx = state.db.begin().await?;
    // A redelivery, or a cancellation seen first (it left a tombstone):
    // reserve nothing.
    if !claim_undecided(&mut tx, backend, event, order_id).await? {
        tx.commit().await?;
        return Ok(Reservation::AlreadyHandled);
    }
    let mut short = None;
    if let Some((last, first)) = lines.split_last() {
        for line in first {
            if !take(&mut tx, line, now).await? {
                short = Some(line.product_id);
                break;
            }
        }
        if short.is_none()
            && !take_last_and_record(&mut tx, backend, (order_id, &lines), last, now).await?
        {
            short = Some(last.product_id);
        }
    }
    if short.is_none() {
        let e = Envelope::new(
            SERVICE,
            "stock.reserved",
            StockReserved {
                order_id,
                lines: &lines,
            },
        )
        .map_err(HandlerError::poison)?;
        let recorded = state.outbox.record(&mut tx, &e).await?;
        tx.commit().await?;
        state.outbox.committed([recorded]);
        return Ok(reserved(state).await);
    }
    // Not enough of something: undo every decrement, then record the
    // rejection (and claim the event) in a fresh transaction.
    tx.rollback().await?;
    let mut tx = state.db.begin().await?;
    if !inbox::first_delivery(&mut tx, SERVICE, event).await? {
        tx.commit().await?;
        return Ok(Reservation::AlreadyHandled);
    }
    let mut shortages = Vec::new();
    for line in &lines {
        let have = available(&mut *tx, line.product_id).await?;
        if have < line.quantity {
            shortages.push(Shortage {
                product_id: line.product_id,
                requested: line.quantity,
                available: have,
            });
        }
    }
    if shortages.is_empty() {
        // Stock arrived in between; let the bus redeliver and try again.
        tx.rollback().await?;
        return Err(HandlerError::transient(
            "stock changed while reserving; retrying",
        ));
    }
    record(&mut tx, order_id, "rejected", &lines, now).await?;
    let e = Envelope::new(
        SERVICE,
        "stock.rejected",
        StockRejected {
            order_id,
            reason: "out_of_stock",
            lines: shortages,
        },
    )
    .map_err(HandlerError::poison)?;
    let recorded = state.outbox.record(&mut tx, &e).await?;
    tx.commit().await?;
    state.outbox.committed([recorded]);
    metrics::counter!("catalog_stock_reservations_total", "outcome" => "rejected").increment(1);
    Ok(Reservation::Rejected)
}

/// What follows a committed reservation.
async fn reserved(state: &AppState) -> Reservation {
    state.cache.invalidate_all().await;
    metrics::counter!("catalog_stock_reservations_total", "outcome" => "reserved").increment(1);
    Reservation::Reserved
}

/// Give back what an order reserved, once. Returns whether stock moved.
pub async fn release(
    state: &AppState,
    event: &Envelope,
    order_id: Uuid,
) -> Result<bool, HandlerError> {
    let now = now_millis();
    let mut tx = state.db.begin().await?;
    if !inbox::first_delivery(&mut tx, SERVICE, event).await? {
        tx.commit().await?;
        return Ok(false);
    }
    // Only a reservation still held is released; the status flip is the
    // guard against releasing twice.
    let row = sqlx::query(
        "UPDATE stock_reservations SET status = 'released', updated_at = $1 \
         WHERE order_id = $2 AND status = 'reserved' RETURNING lines",
    )
    .bind(now)
    .bind(order_id.to_string())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        // Nothing held (rejected, released, or `order.placed` not seen yet:
        // the two travel on separate queues). Leave a tombstone so a late
        // `order.placed` reserves nothing for a cancelled order.
        sqlx::query(
            "INSERT INTO stock_reservations (order_id, status, lines, created_at, updated_at) \
             VALUES ($1, 'released', '[]', $2, $2) ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(order_id.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        return Ok(false);
    };
    let lines: Vec<StockLine> =
        serde_json::from_str(&row.try_get::<String, _>("lines")?).map_err(HandlerError::poison)?;
    for line in &lines {
        sqlx::query("UPDATE products SET stock = stock + $1, updated_at = $2 WHERE id = $3")
            .bind(line.quantity)
            .bind(now)
            .bind(line.product_id.to_string())
            .execute(&mut *tx)
            .await?;
    }
    let e = Envelope::new(SERVICE, "stock.released", StockReleased { order_id })
        .map_err(HandlerError::poison)?;
    let recorded = state.outbox.record(&mut tx, &e).await?;
    tx.commit().await?;
    state.outbox.committed([recorded]);
    state.cache.invalidate_all().await;
    metrics::counter!("catalog_stock_reservations_total", "outcome" => "released").increment(1);
    Ok(true)
}

/// Subscribe the catalog to the saga's events.
pub async fn subscribe(
    state: &AppState,
    bus: &EventBus,
    shutdown: &CancellationToken,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let on_placed = {
        let state = state.clone();
        move |event: Envelope| {
            let state = state.clone();
            async move {
                let placed: OrderPlaced = event.payload_as().map_err(HandlerError::poison)?;
                let outcome = reserve(&state, &event, placed.order_id, &placed.lines).await?;
                tracing::info!(order_id = %placed.order_id, ?outcome, "stock reservation");
                Ok(())
            }
        }
    };
    let on_cancelled = {
        let state = state.clone();
        move |event: Envelope| {
            let state = state.clone();
            async move {
                let cancelled: OrderCancelled = event.payload_as().map_err(HandlerError::poison)?;
                if release(&state, &event, cancelled.order_id).await? {
                    tracing::info!(order_id = %cancelled.order_id, "stock released");
                }
                Ok(())
            }
        }
    };
    let mut handles = Vec::new();
    for sub in [
        Subscription::new(SERVICE, "order.placed", on_placed),
        Subscription::new(SERVICE, "order.cancelled", on_cancelled),
    ] {
        handles.push(
            bus.subscribe(sub, shutdown.clone())
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(handles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_merges_and_sorts() {
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        let lines = normalise(&[
            StockLine {
                product_id: b,
                quantity: 1,
            },
            StockLine {
                product_id: a,
                quantity: 2,
            },
            StockLine {
                product_id: b,
                quantity: 3,
            },
        ]);
        assert_eq!(
            lines,
            vec![
                StockLine {
                    product_id: a,
                    quantity: 2
                },
                StockLine {
                    product_id: b,
                    quantity: 4
                }
            ]
        );
    }
}
