//! From a consumed event to a stored notification: parse the payload,
//! render the email, and record it together with the event's claim in the
//! inbox (one statement on PostgreSQL, one transaction on SQLite), so a
//! redelivered event never makes a second one.

use std::sync::atomic::{AtomicU64, Ordering};

use kit::db::Backend;
use kit::events::{Envelope, EventBus, HandlerError, Subscription, inbox};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::AppState;
use crate::emails::{Details, Email};
use crate::events::{Kind, OrderCancelled, OrderUpdate, PaymentRefunded, UserRegistered};
use crate::storage::notifications::{self, NewNotification, Status};

/// The name notifications claims events under (inbox and queue names).
pub const CONSUMER: &str = "notifications";

/// Deliveries seen by this process's consumers (duplicates included).
#[derive(Debug, Default)]
pub struct ConsumerStats {
    delivered: AtomicU64,
    duplicates: AtomicU64,
}

impl ConsumerStats {
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::SeqCst)
    }

    /// Deliveries of events already handled (and so ignored).
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::SeqCst)
    }
}

/// One notification, ready to be stored.
struct Draft {
    user_id: Option<Uuid>,
    order_id: Option<Uuid>,
    order_number: Option<String>,
    recipient: String,
    email: Email,
}

fn payload<T: serde::de::DeserializeOwned>(event: &Envelope) -> Result<T, HandlerError> {
    event
        .payload_as()
        .map_err(|e| HandlerError::poison(format!("{} payload: {e}", event.event_type)))
}

async fn draft(state: &AppState, kind: Kind, event: &Envelope) -> Result<Draft, HandlerError> {
    let shop = &state.settings.shop_name;
    let render = |recipient: &str, details: &Details<'_>| {
        state
            .templates
            .render(kind, shop, recipient, details)
            .map_err(HandlerError::poison)
    };
    Ok(match kind {
        Kind::Welcome => {
            let p: UserRegistered = payload(event)?;
            let email = render(&p.email, &Details::Welcome { name: &p.name })?;
            Draft {
                user_id: Some(p.user_id),
                order_id: None,
                order_number: None,
                recipient: p.email,
                email,
            }
        }
        Kind::OrderConfirmed | Kind::OrderShipped | Kind::OrderDelivered => {
            let p: OrderUpdate = payload(event)?;
            let email = render(&p.customer_email, &Details::Order { order: &p })?;
            Draft {
                user_id: Some(p.customer_id),
                order_id: Some(p.order_id),
                order_number: Some(p.order_number),
                recipient: p.customer_email,
                email,
            }
        }
        Kind::OrderCancelled => {
            let p: OrderCancelled = payload(event)?;
            let email = render(&p.customer_email, &Details::Cancelled { order: &p })?;
            Draft {
                user_id: Some(p.customer_id),
                order_id: Some(p.order_id),
                order_number: Some(p.order_number),
                recipient: p.customer_email,
                email,
            }
        }
        Kind::PaymentRefunded => {
            let p: PaymentRefunded = payload(event)?;
            // The contract's refund names no customer or order number: an
            // earlier notification about the order (or, for the customer,
            // to the same address) tells whose feed it joins.
            let (mut user_id, mut order_number) = (p.customer_id, p.order_number.clone());
            if user_id.is_none() || order_number.is_none() {
                let (known_user, known_number) =
                    notifications::order_owner(state.db.pool(), p.order_id)
                        .await?
                        .unwrap_or((None, None));
                user_id = user_id.or(known_user);
                order_number = order_number.or(known_number);
            }
            if user_id.is_none() {
                user_id =
                    notifications::user_by_recipient(state.db.pool(), &p.customer_email).await?;
            }
            let email = render(
                &p.customer_email,
                &Details::Refund {
                    refund: &p,
                    order_number: order_number.as_deref(),
                },
            )?;
            Draft {
                user_id,
                order_id: Some(p.order_id),
                order_number,
                recipient: p.customer_email,
                email,
            }
        }
    })
}

/// Handle one delivery of a consumed event.
#[tracing::instrument(skip_all, fields(event_id = %event.id, event_type = %event.event_type))]
pub async fn handle(state: &AppState, event: Envelope) -> Result<(), HandlerError> {
    let kind = Kind::from_event_type(&event.event_type).ok_or_else(|| {
        HandlerError::poison(format!(
            "notifications does not handle `{}`",
            event.event_type
        ))
    })?;
    state.stats.delivered.fetch_add(1, Ordering::SeqCst);
    let draft = draft(state, kind, &event).await?;
    let now = kit::clock::now_millis();
    // Without SMTP the notification lives in the feed only, and says so.
    let (status, last_error, next_attempt_at) = match &state.mailer {
        None => (Status::Stored, None, None),
        Some(_) => match draft.recipient.parse::<lettre::Address>() {
            Ok(_) => (Status::Queued, None, Some(now)),
            Err(e) => (
                Status::Failed,
                Some(format!("invalid recipient address: {e}")),
                None,
            ),
        },
    };

    let notification = NewNotification {
        id: Uuid::now_v7(),
        user_id: draft.user_id,
        kind: kind.as_str(),
        event_id: event.id,
        order_id: draft.order_id,
        order_number: draft.order_number.as_deref(),
        recipient: &draft.recipient,
        subject: &draft.email.subject,
        body_text: &draft.email.text,
        body_html: &draft.email.html,
        status,
        last_error: last_error.as_deref(),
        next_attempt_at,
        created_at: now,
    };
    let first = match state.db.backend() {
        // One statement claims and records: no transaction round trips.
        Backend::Postgres => {
            let claim = notifications::Claim {
                consumer: CONSUMER,
                event_id: event.id,
                at: now,
            };
            notifications::claim_and_insert(state.db.pool(), claim, &notification).await?
        }
        Backend::Sqlite => {
            let mut tx = state.db.begin().await?;
            let first = inbox::first_delivery(&mut tx, CONSUMER, &event).await?;
            if first {
                notifications::insert(&mut *tx, &notification).await?;
                tx.commit().await?;
            }
            first
        }
    };
    if !first {
        state.stats.duplicates.fetch_add(1, Ordering::SeqCst);
        metrics::counter!("notifications_events_total", "event" => kind.event_type(), "outcome" => "duplicate")
            .increment(1);
        tracing::debug!("event already handled; ignoring the redelivery");
        return Ok(());
    }
    metrics::counter!("notifications_events_total", "event" => kind.event_type(), "outcome" => status.as_str())
        .increment(1);
    if status == Status::Queued {
        state.sender_wake.notify_one();
    }
    Ok(())
}

/// Subscribe to every event notifications reacts to.
pub async fn subscribe_all(
    state: &AppState,
    bus: &EventBus,
    shutdown: &CancellationToken,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let mut handles = Vec::new();
    for kind in Kind::ALL {
        let state = state.clone();
        let subscription =
            Subscription::new(CONSUMER, kind.event_type(), move |event: Envelope| {
                let state = state.clone();
                async move { handle(&state, event).await }
            });
        let handle = bus
            .subscribe(subscription, shutdown.clone())
            .await
            .map_err(|e| format!("subscribing to {}: {e}", kind.event_type()))?;
        handles.push(handle);
    }
    Ok(handles)
}
