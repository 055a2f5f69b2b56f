//! A provider that behaves like Stripe in test mode, in process.
//!
//! Stripe's test payment methods decide the outcome (`pm_card_visa`
//! succeeds; `pm_card_chargeDeclined…` decline; anything else is an
//! invalid payment method). As Stripe does for asynchronous methods, a
//! charge or refund answers at once (`processing`, `pending`) and the
//! outcome follows as a Stripe-shaped event POSTed to payments' own webhook
//! URL, signed with the webhook secret, retried until accepted, and now and
//! then delivered twice. So every sandbox payment settles through the same
//! verified webhook path a real provider uses.
//!
//! Like Stripe, the same idempotency key gives the same answer and no
//! second charge. PaymentIntent and refund ids are derived from the key, so
//! this holds across restarts too: a key sent again after payments
//! restarted names the same PaymentIntent, and its outcome is delivered
//! once more (what was in flight died with the process); the webhook path
//! makes that second delivery change nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderMap, Method, Request, header};
use http_body_util::Full;
use kit::http::RequestContext;
use serde_json::{Value, json};
use url::Url;

use super::https::HttpsClient;
use super::{
    ChargeOutcome, ChargeRequest, PaymentProvider, ProviderError, ProviderEvent, RefundOutcome,
    RefundRequest, WebhookError, signature,
};
use crate::config::Secret;

/// Where the sandbox delivers its webhooks: payments' own base URL, known
/// once the service listens.
#[derive(Clone, Default)]
pub struct WebhookTarget(Arc<RwLock<Option<Url>>>);

impl WebhookTarget {
    pub fn set(&self, base: Url) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(base);
    }

    pub fn get(&self) -> Option<Url> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn webhook_url(&self) -> Result<Url, ProviderError> {
        let base = self.get().ok_or_else(|| {
            ProviderError::Unavailable(
                "the sandbox does not know payments' URL yet (EMPORIUM_PUBLIC_URL)".into(),
            )
        })?;
        base.join("/api/v1/payments/webhooks/sandbox")
            .map_err(|e| ProviderError::Rejected(format!("webhook URL: {e}")))
    }
}

#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// Chance that an event is delivered a second time (0.0 to 1.0).
    pub duplicate_probability: f64,
    /// How long after the call the outcome is delivered.
    pub delay: Duration,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        Self {
            duplicate_probability: 0.2,
            delay: Duration::from_millis(150),
        }
    }
}

/// What a Stripe test payment method does, as Stripe documents it.
fn decline_for(payment_method: &str) -> Option<Value> {
    let (code, decline_code) = match payment_method {
        "pm_card_visa" | "pm_card_visa_debit" | "pm_card_mastercard" | "pm_card_amex" => {
            return None;
        }
        "pm_card_chargeDeclined" => ("card_declined", Some("generic_decline")),
        "pm_card_chargeDeclinedInsufficientFunds" => ("card_declined", Some("insufficient_funds")),
        "pm_card_chargeDeclinedLostCard" => ("card_declined", Some("lost_card")),
        "pm_card_chargeDeclinedStolenCard" => ("card_declined", Some("stolen_card")),
        "pm_card_chargeDeclinedExpiredCard" => ("expired_card", None),
        "pm_card_chargeDeclinedIncorrectCvc" => ("incorrect_cvc", None),
        "pm_card_chargeDeclinedProcessingError" => ("processing_error", None),
        _ => ("invalid_payment_method", None),
    };
    Some(json!({
        "type": if code == "invalid_payment_method" { "invalid_request_error" } else { "card_error" },
        "code": code,
        "decline_code": decline_code,
        "message": "The sandbox declined this test payment method.",
    }))
}

/// The id of the object made for an idempotency key: the same key, the
/// same object, in this process or the next.
fn keyed_stripe_id(prefix: &str, idempotency_key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("emporium-sandbox/{prefix}/{idempotency_key}"));
    format!("{prefix}_{}", signature::to_hex(&digest[..12]))
}

fn stripe_id(prefix: &str) -> String {
    format!("{prefix}_{:024x}", rand::random::<u128>() >> 32)
}

pub struct Sandbox {
    http: HttpsClient,
    settings: SandboxSettings,
    webhook_secret: Secret,
    tolerance: Duration,
    target: WebhookTarget,
    /// Idempotency key → PaymentIntent id.
    charges: Mutex<HashMap<String, String>>,
    /// Idempotency key → refund id.
    refunds: Mutex<HashMap<String, String>>,
}

impl Sandbox {
    pub fn new(
        settings: SandboxSettings,
        webhook_secret: Secret,
        tolerance: Duration,
        target: WebhookTarget,
    ) -> Result<Self, String> {
        Ok(Self {
            http: HttpsClient::new(Duration::from_secs(10))?,
            settings,
            webhook_secret,
            tolerance,
            target,
            charges: Mutex::default(),
            refunds: Mutex::default(),
        })
    }

    /// The id remembered for `key`, or a new one made by `make` (then
    /// `true`).
    fn remember(
        map: &Mutex<HashMap<String, String>>,
        key: &str,
        make: impl FnOnce() -> String,
    ) -> (String, bool) {
        let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some(id) => (id.clone(), false),
            None => {
                let id = make();
                map.insert(key.to_string(), id.clone());
                (id, true)
            }
        }
    }

    fn deliver_later(&self, url: Url, event_type: &str, object: Value) {
        let event = json!({
            "id": stripe_id("evt"),
            "object": "event",
            "api_version": "2024-06-20",
            "created": time::OffsetDateTime::now_utc().unix_timestamp(),
            "livemode": false,
            "type": event_type,
            "data": {"object": object},
        });
        let delivery = Delivery {
            http: self.http.clone(),
            url,
            secret: self.webhook_secret.clone(),
            body: Bytes::from(serde_json::to_vec(&event).unwrap_or_default()),
            // Keep the correlation id of the request or event that caused
            // it, so the events the webhook causes can be followed back.
            context: RequestContext::current(),
        };
        let delay = self.settings.delay;
        let twice = rand::random::<f64>() < self.settings.duplicate_probability;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if delivery.send_until_accepted().await && twice {
                delivery.send_until_accepted().await;
            }
        });
    }
}

struct Delivery {
    http: HttpsClient,
    url: Url,
    secret: Secret,
    body: Bytes,
    context: RequestContext,
}

impl Delivery {
    /// POST the event, signed afresh each attempt, backing off between
    /// attempts as Stripe does (more briefly). `true` once accepted.
    async fn send_until_accepted(&self) -> bool {
        let mut wait = Duration::from_millis(200);
        for attempt in 1..=8 {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let mut builder = Request::builder()
                .method(Method::POST)
                .uri(self.url.as_str())
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::USER_AGENT, "emporium-sandbox (Stripe-compatible)")
                .header(
                    signature::HEADER,
                    signature::sign(self.secret.expose(), now, &self.body),
                );
            for (name, value) in self.context.outgoing_headers() {
                builder = builder.header(name, value);
            }
            let Ok(request) = builder.body(Full::new(self.body.clone())) else {
                return false;
            };
            match self.http.send(request).await {
                Ok(res) if res.status.is_success() => return true,
                Ok(res) => {
                    tracing::warn!(status = %res.status, attempt, "sandbox webhook refused; retrying")
                }
                Err(e) => tracing::warn!(error = %e, attempt, "sandbox webhook failed; retrying"),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(10));
        }
        tracing::error!(url = %self.url, "sandbox webhook never accepted; giving up");
        false
    }
}

impl PaymentProvider for Sandbox {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    fn charge<'a>(
        &'a self,
        request: &'a ChargeRequest,
    ) -> BoxFuture<'a, Result<ChargeOutcome, ProviderError>> {
        Box::pin(async move {
            let url = self.target.webhook_url()?;
            let (payment_id, new) = Self::remember(&self.charges, &request.idempotency_key, || {
                keyed_stripe_id("pi", &request.idempotency_key)
            });
            if new {
                let decline = decline_for(request.payment_method.as_str());
                let (event_type, status) = match &decline {
                    None => ("payment_intent.succeeded", "succeeded"),
                    Some(_) => ("payment_intent.payment_failed", "requires_payment_method"),
                };
                self.deliver_later(
                    url,
                    event_type,
                    json!({
                        "id": payment_id,
                        "object": "payment_intent",
                        "amount": request.amount.amount,
                        "currency": request.amount.currency.to_ascii_lowercase(),
                        "status": status,
                        "metadata": {"order_id": request.order_id.to_string()},
                        "last_payment_error": decline,
                    }),
                );
            }
            Ok(ChargeOutcome::Processing { payment_id })
        })
    }

    fn refund<'a>(
        &'a self,
        request: &'a RefundRequest,
    ) -> BoxFuture<'a, Result<RefundOutcome, ProviderError>> {
        Box::pin(async move {
            let url = self.target.webhook_url()?;
            let (refund_id, new) = Self::remember(&self.refunds, &request.idempotency_key, || {
                keyed_stripe_id("re", &request.idempotency_key)
            });
            if new {
                self.deliver_later(
                    url,
                    "charge.refunded",
                    json!({
                        "id": stripe_id("ch"),
                        "object": "charge",
                        "payment_intent": request.provider_payment_id,
                        "amount": request.amount.amount,
                        "amount_refunded": request.amount.amount,
                        "currency": request.amount.currency.to_ascii_lowercase(),
                        "refunded": true,
                        "metadata": {"order_id": request.order_id.to_string()},
                        "refunds": {"object": "list", "data": [{"id": refund_id, "object": "refund", "status": "succeeded"}]},
                    }),
                );
            }
            Ok(RefundOutcome::Pending { refund_id })
        })
    }

    fn charge_status<'a>(
        &'a self,
        request: &'a ChargeRequest,
        payment_id: &'a str,
    ) -> BoxFuture<'a, Result<ChargeOutcome, ProviderError>> {
        Box::pin(async move {
            if payment_id != keyed_stripe_id("pi", &request.idempotency_key) {
                return Err(ProviderError::Rejected(format!(
                    "no such PaymentIntent: {payment_id}"
                )));
            }
            // The test payment method decided the outcome the moment the
            // charge was made: that is what the API shows.
            Ok(match decline_for(request.payment_method.as_str()) {
                None => ChargeOutcome::Succeeded {
                    payment_id: payment_id.to_string(),
                },
                Some(error) => ChargeOutcome::Declined {
                    payment_id: Some(payment_id.to_string()),
                    reason: super::stripe_event::decline_reason(&error)
                        .unwrap_or_else(|| "card_declined".into()),
                },
            })
        })
    }

    fn refund_status<'a>(
        &'a self,
        request: &'a RefundRequest,
        refund_id: &'a str,
    ) -> BoxFuture<'a, Result<RefundOutcome, ProviderError>> {
        Box::pin(async move {
            if refund_id != keyed_stripe_id("re", &request.idempotency_key) {
                return Err(ProviderError::Rejected(format!(
                    "no such refund: {refund_id}"
                )));
            }
            // Test-mode refunds of test cards always go through.
            Ok(RefundOutcome::Refunded {
                refund_id: Some(refund_id.to_string()),
            })
        })
    }

    fn verify_webhook(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<ProviderEvent, WebhookError> {
        super::verify_stripe_webhook(
            self.webhook_secret.expose(),
            self.tolerance,
            headers,
            body,
            now,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_payment_methods_decide_the_outcome() {
        assert!(decline_for("pm_card_visa").is_none());
        let reason = |pm: &str| {
            super::super::stripe_event::decline_reason(&decline_for(pm).unwrap()).unwrap()
        };
        assert_eq!(reason("pm_card_chargeDeclined"), "card_declined");
        assert_eq!(
            reason("pm_card_chargeDeclinedInsufficientFunds"),
            "insufficient_funds"
        );
        assert_eq!(reason("pm_card_whatever"), "invalid_payment_method");
    }

    #[test]
    fn ids_look_like_stripe_ids() {
        let id = stripe_id("pi");
        assert!(id.starts_with("pi_"));
        assert_eq!(id.len(), 3 + 24);
        assert_ne!(id, stripe_id("pi"));
        let keyed = keyed_stripe_id("pi", "order-1");
        assert!(keyed.starts_with("pi_"));
        assert_eq!(keyed.len(), 3 + 24);
    }

    #[test]
    fn a_key_names_the_same_object_in_the_next_process_too() {
        assert_eq!(
            keyed_stripe_id("pi", "order-1"),
            keyed_stripe_id("pi", "order-1")
        );
        assert_ne!(
            keyed_stripe_id("pi", "order-1"),
            keyed_stripe_id("pi", "order-2")
        );
        assert_ne!(
            keyed_stripe_id("pi", "order-1"),
            keyed_stripe_id("re", "order-1")
        );
    }
}
