//! A payment's life: recorded from `order.placed`, charged on
//! `stock.reserved`, settled by the provider's answer or webhook, refunded
//! (or never charged) on `order.cancelled`.
//!
//! Every step that calls the provider calls it *before* committing, with an
//! idempotency key derived from the order, and commits its effect together
//! with the claim of what caused it (the event id in the inbox, or the
//! webhook event id). A crash or a failed commit in between leaves the
//! cause unclaimed, so it is retried, and the retried provider call gives
//! the same answer without charging again. Status changes are made under a
//! row lock and only from the states they apply to, so the synchronous
//! answer, webhooks and cancellations may arrive in any order.

use kit::clock::now_millis;
use kit::db::Backend;
use kit::events::outbox::Recorded;
use kit::events::{Envelope, inbox};
use serde::Serialize;
use sqlx::{Any, Transaction};
use uuid::Uuid;

use crate::AppState;
use crate::domain::{PaymentMethodToken, PaymentStatus};
use crate::error::{PaymentsError, Result};
use crate::events::{
    self, OrderCancelled, OrderPlaced, PaymentFailed, PaymentRefunded, PaymentSucceeded,
    StockReserved,
};
use crate::providers::{
    ChargeOutcome, ChargeRequest, ProviderEvent, ProviderEventKind, RefundOutcome, RefundRequest,
};
use crate::storage::payments::{self, PaymentRecord, WebhookSettlement};
use crate::storage::{self, webhook_events};

/// The consumer name of payments' queues and inbox.
pub const CONSUMER: &str = "payments";
pub const SERVICE: &str = "payments";

/// What a step's effect is committed together with.
#[derive(Clone, Copy)]
pub enum Claim<'a> {
    /// A bus event, claimed in the inbox.
    Event(&'a Envelope),
    /// A provider webhook event, claimed in `webhook_events`.
    Webhook {
        provider: &'a str,
        event: &'a ProviderEvent,
    },
    /// The provider's answer when asked where a charge stands: nothing to
    /// claim; the payment's state under its lock decides whether it applies.
    Recheck,
}

impl Claim<'_> {
    /// Claim and lock the order's payment. `None`: an earlier delivery was
    /// applied already. One statement on PostgreSQL.
    async fn take_and_lock(
        &self,
        tx: &mut Transaction<'static, Any>,
        backend: Backend,
        order_id: Uuid,
    ) -> Result<Option<Option<PaymentRecord>>> {
        if backend == Backend::Sqlite {
            if !self.take(tx).await? {
                return Ok(None);
            }
            return Ok(Some(
                payments::by_order_for_update(&mut **tx, backend, order_id).await?,
            ));
        }
        let now = now_millis();
        Ok(match self {
            Claim::Event(e) => {
                payments::claim_event_and_lock(&mut **tx, (CONSUMER, e.id), order_id, now).await?
            }
            Claim::Webhook { provider, event } => {
                let claim = (*provider, event.id.as_str(), event.event_type.as_str());
                payments::claim_webhook_and_lock(&mut **tx, claim, order_id, now).await?
            }
            Claim::Recheck => {
                Some(payments::by_order_for_update(&mut **tx, backend, order_id).await?)
            }
        })
    }

    /// `false`: an earlier delivery was applied already.
    async fn take(&self, tx: &mut Transaction<'static, Any>) -> Result<bool> {
        Ok(match self {
            Claim::Event(e) => inbox::first_delivery(tx, CONSUMER, e).await?,
            Claim::Webhook { provider, event } => {
                webhook_events::claim(
                    &mut **tx,
                    provider,
                    &event.id,
                    &event.event_type,
                    now_millis(),
                )
                .await?
            }
            Claim::Recheck => true,
        })
    }
}

/// Whether a step changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// Delivered before: nothing changed.
    Duplicate,
}

fn payload<T: serde::de::DeserializeOwned>(event: &Envelope) -> Result<T> {
    event
        .payload_as()
        .map_err(|e| PaymentsError::Invalid(format!("{} payload: {e}", event.event_type)))
}

async fn record_event(
    state: &AppState,
    tx: &mut Transaction<'static, Any>,
    event_type: &str,
    payload: impl Serialize,
) -> Result<Recorded> {
    let event = Envelope::new(SERVICE, event_type, payload)?;
    Ok(state.outbox.record(tx, &event).await?)
}

/// Commit `tx` and hand the events it recorded to the outbox relay.
async fn commit(
    state: &AppState,
    tx: Transaction<'static, Any>,
    recorded: impl IntoIterator<Item = Recorded>,
) -> Result<Applied> {
    tx.commit().await?;
    state.outbox.committed(recorded);
    Ok(Applied::Done)
}

/// Only claim the cause: it needs no change.
async fn claim_only(state: &AppState, claim: Claim<'_>) -> Result<Applied> {
    let mut tx = state.db.begin().await?;
    if !claim.take(&mut tx).await? {
        return Ok(Applied::Duplicate);
    }
    commit(state, tx, None).await
}

/// `order.placed`: remember what to charge, once.
pub async fn record_order(state: &AppState, event: &Envelope) -> Result<Applied> {
    let placed: OrderPlaced = payload(event)?;
    let amount = crate::domain::Money::parse(placed.total.amount, &placed.total.currency)
        .map_err(PaymentsError::Invalid)?;
    // An unusable token is not stored; the charge then fails, naming why.
    let payment_method = PaymentMethodToken::parse(placed.payment_method.token())
        .ok()
        .map(|t| t.as_str().to_string());
    let now = now_millis();
    let payment = PaymentRecord {
        id: Uuid::now_v7(),
        order_id: placed.order_id,
        customer_id: placed.customer_id,
        customer_email: placed.customer_email,
        amount,
        payment_method,
        provider: state.provider.name().to_string(),
        status: PaymentStatus::Pending,
        provider_payment_id: None,
        provider_refund_id: None,
        failure_reason: None,
        cancel_requested_at: None,
        created_at: now,
        updated_at: now,
    };
    if state.db.backend() == Backend::Postgres {
        // One statement instead of a transaction of two.
        return match payments::claim_and_insert(state.db.pool(), (CONSUMER, event.id), &payment)
            .await?
        {
            None => Ok(Applied::Duplicate),
            Some(inserted) => {
                if inserted {
                    tracing::info!(order_id = %payment.order_id, payment_id = %payment.id, "payment recorded");
                }
                Ok(Applied::Done)
            }
        };
    }
    let mut tx = state.db.begin().await?;
    if !Claim::Event(event).take(&mut tx).await? {
        return Ok(Applied::Duplicate);
    }
    // Already there if the order was cancelled before this arrived.
    if payments::insert(&mut *tx, &payment).await? {
        tracing::info!(order_id = %payment.order_id, payment_id = %payment.id, "payment recorded");
    }
    commit(state, tx, None).await
}

/// `stock.reserved`: charge the order through the provider.
pub async fn charge_order(state: &AppState, event: &Envelope) -> Result<Applied> {
    let reserved: StockReserved = payload(event)?;
    let pool = state.db.pool();
    // Mark the charge as in flight *before* calling the provider, so a
    // cancellation from now on knows it may have to refund. That is the
    // usual case, one statement; anything else needs a closer look.
    let mut attempts = 0;
    let payment = loop {
        attempts += 1;
        let moved = payments::transition_order(
            pool,
            reserved.order_id,
            PaymentStatus::Pending,
            PaymentStatus::Processing,
            now_millis(),
        )
        .await?;
        if let Some(payment) = moved {
            break payment;
        }
        if storage::already_handled(pool, CONSUMER, event.id).await? {
            return Ok(Applied::Duplicate);
        }
        match payments::by_order(pool, reserved.order_id).await? {
            // order.placed (another queue) was recorded just now: move it.
            Some(p) if p.status == PaymentStatus::Pending && attempts < 3 => continue,
            Some(p) if p.status == PaymentStatus::Pending => {
                return Err(PaymentsError::Retry(format!(
                    "the payment of order {} keeps changing",
                    reserved.order_id
                )));
            }
            Some(p) => break p,
            // order.placed travels on another queue and may come later.
            None => {
                return Err(PaymentsError::Retry(format!(
                    "no payment recorded for order {} yet (order.placed not consumed)",
                    reserved.order_id
                )));
            }
        }
    };
    if payment.status != PaymentStatus::Processing {
        // Cancelled before it was charged, or settled already: nothing to do.
        tracing::info!(order_id = %payment.order_id, status = %payment.status, "not charging");
        return claim_only(state, Claim::Event(event)).await;
    }
    let outcome = match payment
        .payment_method
        .as_deref()
        .and_then(|t| PaymentMethodToken::parse(t).ok())
    {
        Some(payment_method) => {
            let request = ChargeRequest {
                order_id: payment.order_id,
                amount: payment.amount.clone(),
                payment_method,
                idempotency_key: payment.order_id.to_string(),
            };
            state.provider.charge(&request).await?
        }
        None => ChargeOutcome::Declined {
            payment_id: None,
            reason: "invalid_payment_method".into(),
        },
    };
    metrics::counter!("payments_charges_total", "provider" => state.provider.name(), "outcome" => outcome.label())
        .increment(1);
    apply_charge_outcome(state, &payment, outcome, Claim::Event(event)).await
}

fn refund_request(payment: &PaymentRecord, provider_payment_id: &str) -> RefundRequest {
    RefundRequest {
        order_id: payment.order_id,
        provider_payment_id: provider_payment_id.to_string(),
        amount: payment.amount.clone(),
        idempotency_key: format!("refund-{}", payment.order_id),
    }
}

/// Settle a charge from the provider's synchronous answer or its webhook,
/// whichever comes first; the later one changes nothing. `before` is the
/// payment as read before the provider was asked or answered.
async fn apply_charge_outcome(
    state: &AppState,
    before: &PaymentRecord,
    outcome: ChargeOutcome,
    claim: Claim<'_>,
) -> Result<Applied> {
    let order_id = before.order_id;
    // Cancelled while the charge was in flight: refund the success at once,
    // before committing anything. A cancellation seen only under the lock
    // below makes this step start over, refund included.
    let refund = match &outcome {
        ChargeOutcome::Succeeded { payment_id }
            if before.status.awaits_charge_outcome() && before.cancel_requested_at.is_some() =>
        {
            Some(
                state
                    .provider
                    .refund(&refund_request(before, payment_id))
                    .await?,
            )
        }
        _ => None,
    };

    // The usual synchronous answer, a charge still in flight, only notes
    // the provider's id whatever the payment's state: one statement on
    // PostgreSQL instead of a transaction of four.
    if let (ChargeOutcome::Processing { payment_id }, Claim::Event(event), Backend::Postgres) =
        (&outcome, claim, state.db.backend())
    {
        let claimed = payments::claim_and_note_charge_in_flight(
            state.db.pool(),
            (CONSUMER, event.id),
            order_id,
            payment_id,
            now_millis(),
        )
        .await?;
        return Ok(if claimed {
            Applied::Done
        } else {
            Applied::Duplicate
        });
    }
    let mut tx = state.db.begin().await?;
    let Some(locked) = claim
        .take_and_lock(&mut tx, state.db.backend(), order_id)
        .await?
    else {
        return Ok(Applied::Duplicate);
    };
    let payment =
        locked.ok_or_else(|| PaymentsError::Retry(format!("no payment for order {order_id}")))?;
    let now = now_millis();
    if !payment.status.awaits_charge_outcome() {
        if let Some(id) = outcome.payment_id() {
            payments::remember_provider_payment_id(&mut *tx, payment.id, id, now).await?;
        }
        return commit(state, tx, None).await;
    }
    let mut recorded = Vec::new();
    match outcome {
        ChargeOutcome::Processing { payment_id } => {
            payments::settle_charge(
                &mut *tx,
                payment.id,
                PaymentStatus::Processing,
                Some(&payment_id),
                None,
                now,
            )
            .await?;
        }
        ChargeOutcome::Succeeded { payment_id } => {
            if payment.cancel_requested_at.is_some() && refund.is_none() {
                // Cancelled after we looked: start over, refund included.
                return Err(PaymentsError::Retry(format!(
                    "order {order_id} was cancelled while its charge settled"
                )));
            }
            payments::settle_charge(
                &mut *tx,
                payment.id,
                PaymentStatus::Succeeded,
                Some(&payment_id),
                None,
                now,
            )
            .await?;
            recorded.push(
                record_event(
                    state,
                    &mut tx,
                    events::PAYMENT_SUCCEEDED,
                    PaymentSucceeded {
                        order_id,
                        payment_id: payment.id,
                        amount: payment.amount.clone(),
                    },
                )
                .await?,
            );
            tracing::info!(%order_id, payment_id = %payment.id, "payment succeeded");
            if let Some(refund) = refund {
                let succeeded = PaymentRecord {
                    status: PaymentStatus::Succeeded,
                    ..payment
                };
                recorded.extend(settle_refund_in(state, &mut tx, &succeeded, refund, now).await?);
            }
        }
        ChargeOutcome::Declined { payment_id, reason } => {
            payments::settle_charge(
                &mut *tx,
                payment.id,
                PaymentStatus::Failed,
                payment_id.as_deref(),
                Some(&reason),
                now,
            )
            .await?;
            recorded.push(
                record_event(
                    state,
                    &mut tx,
                    events::PAYMENT_FAILED,
                    PaymentFailed {
                        order_id,
                        payment_id: payment.id,
                        reason: reason.clone(),
                    },
                )
                .await?,
            );
            tracing::info!(%order_id, payment_id = %payment.id, %reason, "payment failed");
        }
    }
    commit(state, tx, recorded).await
}

/// Ask the provider where each charge and refund stands whose outcome has
/// not arrived for `after` (its webhook lost, or the process that awaited
/// it gone), and settle those it has decided, as their webhook would have.
/// Returns how many were settled.
pub async fn recheck_in_flight(state: &AppState, after: std::time::Duration) -> Result<usize> {
    let changed_before = now_millis() - after.as_millis() as i64;
    let pool = state.db.pool();
    let mut settled = 0;
    for payment in
        payments::in_flight_since(pool, PaymentStatus::Processing, changed_before, 50).await?
    {
        let (Some(payment_id), Some(payment_method)) = (
            payment.provider_payment_id.as_deref(),
            payment
                .payment_method
                .as_deref()
                .and_then(|t| PaymentMethodToken::parse(t).ok()),
        ) else {
            continue;
        };
        let request = ChargeRequest {
            order_id: payment.order_id,
            amount: payment.amount.clone(),
            payment_method,
            idempotency_key: payment.order_id.to_string(),
        };
        let outcome = match state.provider.charge_status(&request, payment_id).await {
            Ok(ChargeOutcome::Processing { .. }) => continue,
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::warn!(order_id = %payment.order_id, %payment_id, error = %e, "cannot ask the provider about a charge in flight");
                continue;
            }
        };
        tracing::info!(order_id = %payment.order_id, %payment_id, outcome = outcome.label(), "a charge in flight settled on asking the provider");
        match apply_charge_outcome(state, &payment, outcome, Claim::Recheck).await {
            Ok(_) => settled += 1,
            // The next round tries again.
            Err(e) => {
                tracing::warn!(order_id = %payment.order_id, error = %e, "cannot settle a charge in flight")
            }
        }
    }
    for payment in
        payments::in_flight_since(pool, PaymentStatus::Refunding, changed_before, 50).await?
    {
        let (Some(payment_id), Some(refund_id)) = (
            payment.provider_payment_id.as_deref(),
            payment.provider_refund_id.as_deref(),
        ) else {
            continue;
        };
        let request = refund_request(&payment, payment_id);
        let outcome = match state.provider.refund_status(&request, refund_id).await {
            Ok(RefundOutcome::Pending { .. }) => continue,
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::warn!(order_id = %payment.order_id, %refund_id, error = %e, "cannot ask the provider about a refund in flight");
                continue;
            }
        };
        tracing::info!(order_id = %payment.order_id, %refund_id, "a refund in flight settled on asking the provider");
        match apply_refund_outcome(state, payment.order_id, outcome, Claim::Recheck).await {
            Ok(_) => settled += 1,
            Err(e) => {
                tracing::warn!(order_id = %payment.order_id, error = %e, "cannot settle a refund in flight")
            }
        }
    }
    Ok(settled)
}

/// Record a refund's outcome on a payment that was charged; the event it
/// records, if any, goes out once `tx` commits.
async fn settle_refund_in(
    state: &AppState,
    tx: &mut Transaction<'static, Any>,
    payment: &PaymentRecord,
    outcome: RefundOutcome,
    now: i64,
) -> Result<Option<Recorded>> {
    match (payment.status, outcome) {
        (
            PaymentStatus::Succeeded | PaymentStatus::Refunding,
            RefundOutcome::Refunded { refund_id },
        ) => {
            payments::settle_refund(
                &mut **tx,
                payment.id,
                PaymentStatus::Refunded,
                refund_id.as_deref(),
                now,
            )
            .await?;
            let recorded = record_event(
                state,
                tx,
                events::PAYMENT_REFUNDED,
                PaymentRefunded {
                    order_id: payment.order_id,
                    payment_id: payment.id,
                    amount: payment.amount.clone(),
                    customer_email: payment.customer_email.clone(),
                },
            )
            .await?;
            tracing::info!(order_id = %payment.order_id, payment_id = %payment.id, "payment refunded");
            Ok(Some(recorded))
        }
        (PaymentStatus::Succeeded, RefundOutcome::Pending { refund_id }) => {
            payments::settle_refund(
                &mut **tx,
                payment.id,
                PaymentStatus::Refunding,
                Some(&refund_id),
                now,
            )
            .await?;
            Ok(None)
        }
        // Refunded already, or a pending answer after the final one.
        _ => Ok(None),
    }
}

async fn apply_refund_outcome(
    state: &AppState,
    order_id: Uuid,
    outcome: RefundOutcome,
    claim: Claim<'_>,
) -> Result<Applied> {
    let mut tx = state.db.begin().await?;
    if !claim.take(&mut tx).await? {
        return Ok(Applied::Duplicate);
    }
    let Some(payment) =
        payments::by_order_for_update(&mut *tx, state.db.backend(), order_id).await?
    else {
        return commit(state, tx, None).await;
    };
    let recorded = settle_refund_in(state, &mut tx, &payment, outcome, now_millis()).await?;
    commit(state, tx, recorded).await
}

/// `order.cancelled`: refund what was charged; make sure what was not
/// never will be.
pub async fn cancel_order(state: &AppState, event: &Envelope) -> Result<Applied> {
    let cancelled: OrderCancelled = payload(event)?;
    let pool = state.db.pool();
    if storage::already_handled(pool, CONSUMER, event.id).await? {
        return Ok(Applied::Duplicate);
    }
    let order_id = cancelled.order_id;
    let now = now_millis();
    let Some(payment) = payments::by_order(pool, order_id).await? else {
        // Cancelled before order.placed reached us (another queue): leave a
        // cancelled payment so the late order.placed and stock.reserved
        // find it and charge nothing.
        let amount = crate::domain::Money::parse(cancelled.total.amount, &cancelled.total.currency)
            .map_err(PaymentsError::Invalid)?;
        let tombstone = PaymentRecord {
            id: Uuid::now_v7(),
            order_id,
            customer_id: cancelled.customer_id,
            customer_email: cancelled.customer_email,
            amount,
            payment_method: None,
            provider: state.provider.name().to_string(),
            status: PaymentStatus::Cancelled,
            provider_payment_id: None,
            provider_refund_id: None,
            failure_reason: None,
            cancel_requested_at: Some(now),
            created_at: now,
            updated_at: now,
        };
        let mut tx = state.db.begin().await?;
        if !Claim::Event(event).take(&mut tx).await? {
            return Ok(Applied::Duplicate);
        }
        if !payments::insert(&mut *tx, &tombstone).await? {
            return Err(PaymentsError::Retry(format!(
                "the payment of order {order_id} appeared meanwhile"
            )));
        }
        tracing::info!(%order_id, "order cancelled before payments knew it; it will not be charged");
        return commit(state, tx, None).await;
    };
    match payment.status {
        PaymentStatus::Pending => {
            let mut tx = state.db.begin().await?;
            if !Claim::Event(event).take(&mut tx).await? {
                return Ok(Applied::Duplicate);
            }
            if !payments::transition(
                &mut *tx,
                payment.id,
                PaymentStatus::Pending,
                PaymentStatus::Cancelled,
                now,
            )
            .await?
            {
                return Err(PaymentsError::Retry(format!(
                    "the payment of order {order_id} moved meanwhile"
                )));
            }
            tracing::info!(%order_id, payment_id = %payment.id, "payment cancelled before charging");
            commit(state, tx, None).await
        }
        PaymentStatus::Processing => {
            // The outcome is on its way; a success is refunded when it lands.
            let mut tx = state.db.begin().await?;
            if !Claim::Event(event).take(&mut tx).await? {
                return Ok(Applied::Duplicate);
            }
            if !payments::request_cancel(&mut *tx, payment.id, now).await? {
                return Err(PaymentsError::Retry(format!(
                    "the payment of order {order_id} settled meanwhile"
                )));
            }
            tracing::info!(%order_id, payment_id = %payment.id, "order cancelled while charging; a success will be refunded");
            commit(state, tx, None).await
        }
        PaymentStatus::Succeeded => {
            let provider_payment_id = payment.provider_payment_id.as_deref().ok_or_else(|| {
                PaymentsError::Invalid(format!(
                    "payment {} succeeded without a provider id",
                    payment.id
                ))
            })?;
            let outcome = state
                .provider
                .refund(&refund_request(&payment, provider_payment_id))
                .await?;
            apply_refund_outcome(state, order_id, outcome, Claim::Event(event)).await
        }
        PaymentStatus::Failed
        | PaymentStatus::Refunding
        | PaymentStatus::Refunded
        | PaymentStatus::Cancelled => claim_only(state, Claim::Event(event)).await,
    }
}

/// A verified provider webhook event.
pub async fn apply_provider_event(
    state: &AppState,
    provider: &str,
    event: &ProviderEvent,
) -> Result<Applied> {
    let pool = state.db.pool();
    if state.db.backend() == Backend::Postgres
        && let Some(applied) = settle_charge_at_once(state, provider, event).await?
    {
        return Ok(applied);
    }
    if webhook_events::seen(pool, provider, &event.id).await? {
        webhook_events::record_redelivery(pool, provider, &event.id).await?;
        return Ok(Applied::Duplicate);
    }
    let claim = Claim::Webhook { provider, event };
    let find = |order_id: Option<Uuid>, payment_id: Option<String>| async move {
        if let Some(order_id) = order_id
            && let Some(p) = payments::by_order(pool, order_id).await?
        {
            return Ok::<_, PaymentsError>(Some(p));
        }
        match payment_id {
            Some(pi) => Ok(payments::by_provider_payment_id(pool, provider, &pi).await?),
            None => Ok(None),
        }
    };
    let applied = match &event.kind {
        ProviderEventKind::ChargeSucceeded {
            payment_id,
            order_id,
        } => match find(*order_id, Some(payment_id.clone())).await? {
            Some(p) => {
                let outcome = ChargeOutcome::Succeeded {
                    payment_id: payment_id.clone(),
                };
                apply_charge_outcome(state, &p, outcome, claim).await?
            }
            None => unknown_payment(state, claim, event).await?,
        },
        ProviderEventKind::ChargeFailed {
            payment_id,
            order_id,
            reason,
        } => match find(*order_id, Some(payment_id.clone())).await? {
            Some(p) => {
                let outcome = ChargeOutcome::Declined {
                    payment_id: Some(payment_id.clone()),
                    reason: reason.clone(),
                };
                apply_charge_outcome(state, &p, outcome, claim).await?
            }
            None => unknown_payment(state, claim, event).await?,
        },
        ProviderEventKind::Refunded {
            payment_id,
            order_id,
            refund_id,
        } => match find(*order_id, payment_id.clone()).await? {
            Some(p) => {
                let outcome = RefundOutcome::Refunded {
                    refund_id: refund_id.clone(),
                };
                apply_refund_outcome(state, p.order_id, outcome, claim).await?
            }
            None => unknown_payment(state, claim, event).await?,
        },
        ProviderEventKind::Ignored => claim_only(state, claim).await?,
    };
    if applied == Applied::Duplicate {
        // Two deliveries raced; the other one applied it.
        webhook_events::record_redelivery(pool, provider, &event.id).await?;
    }
    Ok(applied)
}

/// PostgreSQL, the usual webhook: the outcome of a charge whose payment
/// awaits it, nothing cancelled, settled in two round trips (a read, then
/// one statement) instead of seven. `None`: anything else, for the general
/// path, which then finds nothing changed.
async fn settle_charge_at_once(
    state: &AppState,
    provider: &str,
    event: &ProviderEvent,
) -> Result<Option<Applied>> {
    let (order_id, provider_payment_id, reason) = match &event.kind {
        ProviderEventKind::ChargeSucceeded {
            payment_id,
            order_id: Some(order_id),
        } => (*order_id, payment_id, None),
        ProviderEventKind::ChargeFailed {
            payment_id,
            order_id: Some(order_id),
            reason,
        } => (*order_id, payment_id, Some(reason)),
        _ => return Ok(None),
    };
    let pool = state.db.pool();
    let Some(payment) = payments::by_order(pool, order_id).await? else {
        return Ok(None);
    };
    if !payment.status.awaits_charge_outcome() || payment.cancel_requested_at.is_some() {
        return Ok(None);
    }
    let (status, announcement) = match reason {
        None => (
            PaymentStatus::Succeeded,
            Envelope::new(
                SERVICE,
                events::PAYMENT_SUCCEEDED,
                PaymentSucceeded {
                    order_id,
                    payment_id: payment.id,
                    amount: payment.amount.clone(),
                },
            )?,
        ),
        Some(reason) => (
            PaymentStatus::Failed,
            Envelope::new(
                SERVICE,
                events::PAYMENT_FAILED,
                PaymentFailed {
                    order_id,
                    payment_id: payment.id,
                    reason: reason.clone(),
                },
            )?,
        ),
    };
    let row = state.outbox.unwritten(&announcement)?;
    let settled = payments::settle_charge_by_webhook(
        pool,
        payment.id,
        (provider, &event.id, &event.event_type),
        (status, provider_payment_id, reason.map(String::as_str)),
        now_millis(),
        &row,
    )
    .await?;
    Ok(match settled {
        WebhookSettlement::Settled => {
            state.outbox.committed([row.written()]);
            tracing::info!(%order_id, payment_id = %payment.id, %status, "payment settled by webhook");
            Some(Applied::Done)
        }
        WebhookSettlement::Duplicate => {
            webhook_events::record_redelivery(pool, provider, &event.id).await?;
            Some(Applied::Duplicate)
        }
        WebhookSettlement::NotApplicable => None,
    })
}

/// An event about a payment Emporium did not make: note it and move on.
async fn unknown_payment(
    state: &AppState,
    claim: Claim<'_>,
    event: &ProviderEvent,
) -> Result<Applied> {
    tracing::warn!(event_id = %event.id, event_type = %event.event_type, "webhook for a payment payments does not know; ignored");
    claim_only(state, claim).await
}
