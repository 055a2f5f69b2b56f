//! Every status change of an order goes through [`apply`]: lock the order,
//! check the status machine, record the change with its history entry and
//! the event announcing it, all in one transaction. Saga consumers also
//! claim the causing event in the same transaction, so a redelivery changes
//! nothing. The one step that announces nothing (`stock.reserved`) does all
//! that as one statement on PostgreSQL instead ([`advance_at_once`]).

use std::time::Duration;

use kit::clock::now_millis;
use kit::db::Backend;
use kit::events::{Envelope, EventBus, HandlerError, Subscription, Unwritten};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::AppState;
use crate::domain::OrderStatus;
use crate::error::{OrderError, Result};
use crate::events::{AboutOrder, OrderChanged, SERVICE};
use crate::storage::orders::{self, Claimed, OrderRecord};

#[derive(Debug)]
pub enum Applied {
    Changed(Box<OrderRecord>),
    /// The order is in a state where the change no longer applies.
    Ignored(OrderStatus),
    /// The causing event was handled before.
    Duplicate,
    Missing,
}

pub struct Change<'a> {
    pub order_id: Uuid,
    pub next: OrderStatus,
    pub reason: Option<&'a str>,
    /// The event that causes the change (claimed in the inbox).
    pub cause: Option<&'a Envelope>,
    /// Refuse (rather than ignore) a change the status machine forbids.
    pub strict: bool,
    /// Only the owner may make it (`None`: anyone allowed to call).
    pub owner: Option<Uuid>,
}

/// The database channel on which every status change is announced as
/// `"{order id} {status}"`.
pub const STATUS_CHANNEL: &str = "emporium_order_status";

/// Wake this replica's waiting readers when another replica changes an
/// order (PostgreSQL only: on SQLite every change is made in this process).
pub fn listen_for_status_changes(
    state: &AppState,
    shutdown: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let watch = state.status_watch.clone();
    state.db.listen(
        STATUS_CHANNEL,
        move |payload| {
            let parsed = payload
                .split_once(' ')
                .and_then(|(id, status)| Some((id.parse::<Uuid>().ok()?, status.parse().ok()?)));
            match parsed {
                Some((id, status)) => watch.announce(&id, status),
                None => tracing::warn!(%payload, "unreadable order status notice"),
            }
        },
        shutdown,
    )
}

pub async fn apply(state: &AppState, change: Change<'_>) -> Result<Applied> {
    let mut tx = state.db.begin().await?;
    let backend = state.db.backend();
    let locked = match change.cause {
        Some(event) => {
            let event_id = event.id.to_string();
            let claim = (SERVICE, event_id.as_str());
            match orders::claim_and_lock(&mut tx, backend, claim, change.order_id, now_millis())
                .await?
            {
                Claimed::Duplicate => {
                    tx.commit().await?;
                    return Ok(Applied::Duplicate);
                }
                Claimed::First(order) => order.map(|o| *o),
            }
        }
        None => orders::lock(&mut tx, backend, change.order_id).await?,
    };
    let Some(order) = locked else {
        tx.commit().await?;
        return Ok(Applied::Missing);
    };
    if change.owner.is_some_and(|owner| owner != order.customer_id) {
        return Err(OrderError::NotFound);
    }
    if !order.status.can_become(change.next) {
        if change.strict {
            return Err(OrderError::IllegalTransition {
                from: order.status,
                to: change.next,
            });
        }
        tx.commit().await?;
        return Ok(Applied::Ignored(order.status));
    }
    let now = now_millis();
    let was_paid = order.status.is_paid();
    let mut updated = order.clone();
    updated.status = change.next;
    updated.updated_at = now;
    // As set_status stores them, so the event and the answer show them too.
    if change.next == OrderStatus::Cancelled {
        updated.cancel_reason = change.reason.map(str::to_string);
    }
    if change.next == OrderStatus::Confirmed {
        updated.paid_at = Some(now);
    }
    let announcement = match change.next.event_type() {
        Some(event_type) => {
            let payload = if change.next == OrderStatus::Cancelled {
                OrderChanged::new(&updated, change.reason, Some(was_paid))
            } else {
                OrderChanged::new(&updated, None, None)
            };
            let event = Envelope::new(SERVICE, event_type, payload)?;
            Some(state.outbox.unwritten(&event)?)
        }
        None => None,
    };
    // Readers waiting on other replicas hear of it from the database.
    let notice = format!("{} {}", order.id, change.next);
    orders::set_status(
        &mut tx,
        backend,
        &order,
        (change.next, change.reason),
        now,
        (STATUS_CHANNEL, &notice),
        announcement.as_ref(),
    )
    .await?;
    tx.commit().await?;
    state.outbox.committed(announcement.map(Unwritten::written));
    state.status_watch.announce(&updated.id, updated.status);
    metrics::counter!("order_transitions_total", "to" => change.next.as_str()).increment(1);
    tracing::info!(order_id = %updated.id, status = %updated.status, reason = change.reason.unwrap_or(""), "order status changed");
    Ok(Applied::Changed(Box::new(updated)))
}

/// A saga step that announces nothing and has one status it applies to
/// (`stock.reserved`: pending -> awaiting_payment) takes one statement on
/// PostgreSQL instead of a transaction. `false`: not such a step here.
async fn advance_at_once(
    state: &AppState,
    event: &Envelope,
    order_id: Uuid,
    next: OrderStatus,
) -> Result<bool> {
    if state.db.backend() != Backend::Postgres || next != OrderStatus::AwaitingPayment {
        return Ok(false);
    }
    let from = OrderStatus::Pending;
    debug_assert!(next.event_type().is_none() && from.can_become(next));
    let notice = format!("{order_id} {next}");
    let moved = orders::claim_and_advance(
        state.db.pool(),
        (SERVICE, &event.id.to_string()),
        order_id,
        (from, next),
        now_millis(),
        (STATUS_CHANNEL, &notice),
    )
    .await?;
    match moved {
        Some(true) => {
            state.status_watch.announce(&order_id, next);
            metrics::counter!("order_transitions_total", "to" => next.as_str()).increment(1);
            tracing::info!(%order_id, status = %next, "order status changed");
        }
        Some(false) => {
            tracing::info!(%order_id, event = %event.event_type, "event no longer applies (order missing or not pending)");
        }
        None => {}
    }
    Ok(true)
}

fn saga_step(
    state: &AppState,
    next: OrderStatus,
    default_reason: Option<&'static str>,
) -> impl kit::events::EventHandler {
    let state = state.clone();
    move |event: Envelope| {
        let state = state.clone();
        async move {
            let about: AboutOrder = event.payload_as().map_err(HandlerError::poison)?;
            let detailed;
            let reason = match (default_reason, about.reason.as_deref()) {
                // `stock.rejected` says `out_of_stock` itself: no need to say it twice.
                (Some(base), Some(detail)) if detail != base => {
                    detailed = format!("{base}: {detail}");
                    Some(detailed.as_str())
                }
                (base, _) => base,
            };
            match advance_at_once(&state, &event, about.order_id, next).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(OrderError::Database(e)) => return Err(HandlerError::from(e)),
                Err(e) => return Err(HandlerError::transient(e)),
            }
            let outcome = apply(
                &state,
                Change {
                    order_id: about.order_id,
                    next,
                    reason,
                    cause: Some(&event),
                    strict: false,
                    owner: None,
                },
            )
            .await;
            match outcome {
                Ok(Applied::Ignored(current)) => {
                    tracing::info!(order_id = %about.order_id, %current, event = %event.event_type, "event no longer applies");
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(OrderError::Database(e)) => Err(HandlerError::from(e)),
                Err(e) => Err(HandlerError::transient(e)),
            }
        }
    }
}

/// The saga steps orders takes on other services' events.
pub fn subscriptions(state: &AppState) -> Vec<Subscription> {
    vec![
        Subscription::new(
            SERVICE,
            "stock.reserved",
            saga_step(state, OrderStatus::AwaitingPayment, None),
        ),
        Subscription::new(
            SERVICE,
            "stock.rejected",
            saga_step(state, OrderStatus::Cancelled, Some("out_of_stock")),
        ),
        Subscription::new(
            SERVICE,
            "payment.succeeded",
            saga_step(state, OrderStatus::Confirmed, None),
        ),
        Subscription::new(
            SERVICE,
            "payment.failed",
            saga_step(state, OrderStatus::Cancelled, Some("payment_failed")),
        ),
    ]
}

pub async fn subscribe_all(
    state: &AppState,
    bus: &EventBus,
    shutdown: &CancellationToken,
) -> std::result::Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let mut handles = Vec::new();
    for s in subscriptions(state) {
        handles.push(
            bus.subscribe(s, shutdown.clone())
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(handles)
}

/// Cancel orders whose payment did not succeed in time.
pub async fn sweep_payment_timeouts(state: AppState, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let overdue = async {
            let mut tx = state.db.begin().await?;
            let ids = orders::overdue(&mut tx, state.db.backend(), now_millis(), 100).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(ids)
        }
        .await;
        let ids = match overdue {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "payment timeout sweep failed");
                continue;
            }
        };
        for id in ids {
            let result = apply(
                &state,
                Change {
                    order_id: id,
                    next: OrderStatus::Cancelled,
                    reason: Some("payment_timeout"),
                    cause: None,
                    strict: false,
                    owner: None,
                },
            )
            .await;
            if let Err(e) = result {
                tracing::warn!(order_id = %id, error = %e, "cannot cancel an overdue order");
            }
        }
    }
}
