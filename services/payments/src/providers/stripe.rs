//! Stripe's REST API: form-encoded `POST /v1/payment_intents` (confirmed at
//! once) and `POST /v1/refunds`, authenticated with the secret key and
//! made idempotent with `Idempotency-Key`. The synchronous answer settles
//! what it can; webhooks settle the rest, and `GET
//! /v1/payment_intents/{id}` what no webhook settled.

use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::Full;
use serde_json::Value;
use url::Url;

use super::https::HttpsClient;
use super::stripe_event::decline_reason;
use super::{
    ChargeOutcome, ChargeRequest, PaymentProvider, ProviderError, ProviderEvent, RefundOutcome,
    RefundRequest, WebhookError,
};
use crate::config::Secret;

pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

pub struct Stripe {
    http: HttpsClient,
    api_base: Url,
    secret_key: Secret,
    webhook_secret: Secret,
    tolerance: Duration,
}

impl Stripe {
    pub fn new(
        api_base: Url,
        secret_key: Secret,
        webhook_secret: Secret,
        tolerance: Duration,
        timeout: Duration,
    ) -> Result<Self, String> {
        Ok(Self {
            http: HttpsClient::new(timeout)?,
            api_base,
            secret_key,
            webhook_secret,
            tolerance,
        })
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.api_base.as_str().trim_end_matches('/'))
    }

    /// A request to the API with the secret key.
    fn request(&self, method: Method, path: &str) -> Result<http::request::Builder, ProviderError> {
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {}", self.secret_key.expose())).map_err(
                |_| ProviderError::Rejected("the Stripe secret key is not a header".into()),
            )?;
        authorization.set_sensitive(true);
        Ok(Request::builder()
            .method(method)
            .uri(self.endpoint(path))
            .header(header::AUTHORIZATION, authorization)
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, "emporium-payments"))
    }

    /// POST a form to the API; returns the status and the JSON body.
    async fn post_form(
        &self,
        path: &str,
        idempotency_key: &str,
        form: &[(&str, &str)],
    ) -> Result<(StatusCode, Value), ProviderError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter().copied())
            .finish();
        let key = HeaderValue::from_str(idempotency_key)
            .map_err(|_| ProviderError::Rejected("the idempotency key is not a header".into()))?;
        let request = self
            .request(Method::POST, path)?
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("idempotency-key", key)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ProviderError::Rejected(format!("cannot build the request: {e}")))?;
        self.send(path, request).await
    }

    /// GET an object from the API; returns the status and the JSON body.
    async fn get(&self, path: &str) -> Result<(StatusCode, Value), ProviderError> {
        let request = self
            .request(Method::GET, path)?
            .body(Full::new(Bytes::new()))
            .map_err(|e| ProviderError::Rejected(format!("cannot build the request: {e}")))?;
        self.send(path, request).await
    }

    async fn send(
        &self,
        path: &str,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Value), ProviderError> {
        let response = self
            .http
            .send(request)
            .await
            .map_err(|e| ProviderError::Unavailable(format!("Stripe {path}: {e}")))?;
        let json = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        Ok((response.status, json))
    }
}

/// Failures any Stripe call shares: retry what may pass later.
fn common_failure(status: StatusCode, body: &Value) -> ProviderError {
    let message = body
        .get("error")
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("no message");
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            tracing::error!(%status, "Stripe refused the secret key");
            ProviderError::Unavailable(format!("Stripe refused the credentials ({status})"))
        }
        // 409: a request with the same idempotency key is still in flight.
        StatusCode::CONFLICT | StatusCode::TOO_MANY_REQUESTS => {
            ProviderError::Unavailable(format!("Stripe answered {status}: {message}"))
        }
        s if s.is_server_error() => {
            ProviderError::Unavailable(format!("Stripe answered {status}: {message}"))
        }
        _ => ProviderError::Rejected(format!("Stripe answered {status}: {message}")),
    }
}

/// `id` as a path segment, if it looks like a Stripe object id.
fn object_id(id: &str) -> Result<&str, ProviderError> {
    let plausible = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    plausible
        .then_some(id)
        .ok_or_else(|| ProviderError::Rejected(format!("`{id}` is not a Stripe object id")))
}

/// Read Stripe's answer to a confirmed PaymentIntent.
pub fn charge_outcome(status: StatusCode, body: &Value) -> Result<ChargeOutcome, ProviderError> {
    let error = body.get("error");
    if status.is_success() {
        let payment_id = body
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| ProviderError::Rejected("a PaymentIntent without an id".into()))?
            .to_string();
        let intent_status = body.get("status").and_then(Value::as_str).unwrap_or("");
        return Ok(match intent_status {
            "succeeded" => ChargeOutcome::Succeeded { payment_id },
            "requires_payment_method" | "canceled" => ChargeOutcome::Declined {
                reason: body
                    .get("last_payment_error")
                    .and_then(decline_reason)
                    .unwrap_or_else(|| "payment_failed".into()),
                payment_id: Some(payment_id),
            },
            // processing, requires_action, requires_capture, …: a webhook
            // will tell.
            _ => ChargeOutcome::Processing { payment_id },
        });
    }
    let Some(error) = error else {
        return Err(common_failure(status, body));
    };
    let payment_id = error
        .get("payment_intent")
        .and_then(|pi| pi.get("id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let is_card_error = error.get("type").and_then(Value::as_str) == Some("card_error");
    let names_payment_method = error.get("param").and_then(Value::as_str) == Some("payment_method");
    match status {
        StatusCode::PAYMENT_REQUIRED => Ok(ChargeOutcome::Declined {
            reason: decline_reason(error).unwrap_or_else(|| "card_declined".into()),
            payment_id,
        }),
        StatusCode::BAD_REQUEST if is_card_error => Ok(ChargeOutcome::Declined {
            reason: decline_reason(error).unwrap_or_else(|| "card_declined".into()),
            payment_id,
        }),
        StatusCode::BAD_REQUEST if names_payment_method => Ok(ChargeOutcome::Declined {
            reason: "invalid_payment_method".into(),
            payment_id,
        }),
        // Anything else Stripe refuses for this order (amount too small,
        // currency not supported, …) fails this payment, naming why.
        StatusCode::BAD_REQUEST => Ok(ChargeOutcome::Declined {
            reason: error
                .get("code")
                .and_then(Value::as_str)
                .unwrap_or("invalid_request")
                .to_string(),
            payment_id,
        }),
        _ => Err(common_failure(status, body)),
    }
}

/// Read Stripe's answer to a refund.
pub fn refund_outcome(status: StatusCode, body: &Value) -> Result<RefundOutcome, ProviderError> {
    if status.is_success() {
        let refund_id = body.get("id").and_then(Value::as_str).map(str::to_owned);
        return match body.get("status").and_then(Value::as_str) {
            Some("succeeded") => Ok(RefundOutcome::Refunded { refund_id }),
            Some("failed" | "canceled") => Err(ProviderError::Rejected(format!(
                "the refund {} failed",
                refund_id.unwrap_or_default()
            ))),
            _ => Ok(RefundOutcome::Pending {
                refund_id: refund_id
                    .ok_or_else(|| ProviderError::Rejected("a refund without an id".into()))?,
            }),
        };
    }
    let code = body
        .get("error")
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str);
    if status == StatusCode::BAD_REQUEST && code == Some("charge_already_refunded") {
        return Ok(RefundOutcome::Refunded { refund_id: None });
    }
    Err(common_failure(status, body))
}

impl PaymentProvider for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn charge<'a>(
        &'a self,
        request: &'a ChargeRequest,
    ) -> BoxFuture<'a, Result<ChargeOutcome, ProviderError>> {
        Box::pin(async move {
            let amount = request.amount.amount.to_string();
            let currency = request.amount.currency.to_ascii_lowercase();
            let order_id = request.order_id.to_string();
            let (status, body) = self
                .post_form(
                    "/v1/payment_intents",
                    &request.idempotency_key,
                    &[
                        ("amount", &amount),
                        ("currency", &currency),
                        ("confirm", "true"),
                        ("payment_method", request.payment_method.as_str()),
                        ("payment_method_types[]", "card"),
                        ("metadata[order_id]", &order_id),
                    ],
                )
                .await?;
            charge_outcome(status, &body)
        })
    }

    fn refund<'a>(
        &'a self,
        request: &'a RefundRequest,
    ) -> BoxFuture<'a, Result<RefundOutcome, ProviderError>> {
        Box::pin(async move {
            let order_id = request.order_id.to_string();
            let (status, body) = self
                .post_form(
                    "/v1/refunds",
                    &request.idempotency_key,
                    &[
                        ("payment_intent", &request.provider_payment_id),
                        ("metadata[order_id]", &order_id),
                    ],
                )
                .await?;
            refund_outcome(status, &body)
        })
    }

    fn charge_status<'a>(
        &'a self,
        _request: &'a ChargeRequest,
        payment_id: &'a str,
    ) -> BoxFuture<'a, Result<ChargeOutcome, ProviderError>> {
        Box::pin(async move {
            let (status, body) = self
                .get(&format!("/v1/payment_intents/{}", object_id(payment_id)?))
                .await?;
            charge_outcome(status, &body)
        })
    }

    fn refund_status<'a>(
        &'a self,
        _request: &'a RefundRequest,
        refund_id: &'a str,
    ) -> BoxFuture<'a, Result<RefundOutcome, ProviderError>> {
        Box::pin(async move {
            let (status, body) = self
                .get(&format!("/v1/refunds/{}", object_id(refund_id)?))
                .await?;
            refund_outcome(status, &body)
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
    use serde_json::json;

    #[test]
    fn a_confirmed_intent_settles_by_its_status() {
        let ok = |status: &str, extra: Value| {
            let mut body = json!({"id": "pi_1", "object": "payment_intent", "status": status});
            if let Value::Object(m) = extra {
                body.as_object_mut().unwrap().extend(m);
            }
            charge_outcome(StatusCode::OK, &body).unwrap()
        };
        assert_eq!(
            ok("succeeded", json!({})),
            ChargeOutcome::Succeeded {
                payment_id: "pi_1".into()
            }
        );
        assert_eq!(
            ok("processing", json!({})),
            ChargeOutcome::Processing {
                payment_id: "pi_1".into()
            }
        );
        assert_eq!(
            ok("requires_action", json!({})),
            ChargeOutcome::Processing {
                payment_id: "pi_1".into()
            }
        );
        assert_eq!(
            ok(
                "requires_payment_method",
                json!({"last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds"}})
            ),
            ChargeOutcome::Declined {
                payment_id: Some("pi_1".into()),
                reason: "insufficient_funds".into()
            }
        );
    }

    #[test]
    fn card_errors_decline_and_outages_retry() {
        let declined = charge_outcome(
            StatusCode::PAYMENT_REQUIRED,
            &json!({"error": {"type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
                "payment_intent": {"id": "pi_2"}}}),
        )
        .unwrap();
        assert_eq!(
            declined,
            ChargeOutcome::Declined {
                payment_id: Some("pi_2".into()),
                reason: "card_declined".into()
            }
        );
        let missing_method = charge_outcome(
            StatusCode::BAD_REQUEST,
            &json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "param": "payment_method"}}),
        )
        .unwrap();
        assert_eq!(
            missing_method,
            ChargeOutcome::Declined {
                payment_id: None,
                reason: "invalid_payment_method".into()
            }
        );
        for status in [
            StatusCode::UNAUTHORIZED,
            StatusCode::CONFLICT,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
        ] {
            assert!(
                matches!(
                    charge_outcome(status, &json!({"error": {"message": "x"}})),
                    Err(ProviderError::Unavailable(_))
                ),
                "{status} is worth a retry"
            );
        }
    }

    #[test]
    fn refunds_settle_now_or_later() {
        assert_eq!(
            refund_outcome(
                StatusCode::OK,
                &json!({"id": "re_1", "status": "succeeded"})
            )
            .unwrap(),
            RefundOutcome::Refunded {
                refund_id: Some("re_1".into())
            }
        );
        assert_eq!(
            refund_outcome(StatusCode::OK, &json!({"id": "re_1", "status": "pending"})).unwrap(),
            RefundOutcome::Pending {
                refund_id: "re_1".into()
            }
        );
        assert_eq!(
            refund_outcome(
                StatusCode::BAD_REQUEST,
                &json!({"error": {"code": "charge_already_refunded"}})
            )
            .unwrap(),
            RefundOutcome::Refunded { refund_id: None }
        );
        assert!(matches!(
            refund_outcome(StatusCode::OK, &json!({"id": "re_1", "status": "failed"})),
            Err(ProviderError::Rejected(_))
        ));
    }
}
