//! Reading Stripe-shaped events (`{"id": "evt_…", "type": …, "data":
//! {"object": …}}`), which Stripe and the sandbox both send.

use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::{ProviderEvent, ProviderEventKind, WebhookError};

#[derive(Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    object: Value,
}

fn string(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// The order a Stripe object was made for: `metadata.order_id`, which
/// payments sets on every PaymentIntent (and Stripe copies to its charges).
fn order_id(object: &Value) -> Option<Uuid> {
    object
        .get("metadata")
        .and_then(|m| m.get("order_id"))
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
}

/// Why a payment failed, from a Stripe `last_payment_error` or `error`
/// object: the specific decline code when there is one, else the error code.
pub fn decline_reason(error: &Value) -> Option<String> {
    let decline_code = string(error, "decline_code").filter(|c| c != "generic_decline");
    decline_code.or_else(|| string(error, "code"))
}

pub fn read(body: &[u8]) -> Result<ProviderEvent, WebhookError> {
    let event: Event =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let object = &event.data.object;
    let missing =
        |what: &str| WebhookError::Malformed(format!("{} has no {what}", event.event_type));
    let kind = match event.event_type.as_str() {
        "payment_intent.succeeded" => ProviderEventKind::ChargeSucceeded {
            payment_id: string(object, "id").ok_or_else(|| missing("data.object.id"))?,
            order_id: order_id(object),
        },
        "payment_intent.payment_failed" => ProviderEventKind::ChargeFailed {
            payment_id: string(object, "id").ok_or_else(|| missing("data.object.id"))?,
            order_id: order_id(object),
            reason: object
                .get("last_payment_error")
                .and_then(decline_reason)
                .unwrap_or_else(|| "payment_failed".into()),
        },
        "charge.refunded" => {
            // The object is a charge (`ch_…` with its `payment_intent`); the
            // sandbox may send the PaymentIntent itself.
            let id = string(object, "id");
            let payment_id = string(object, "payment_intent")
                .or_else(|| id.clone().filter(|i| i.starts_with("pi_")));
            let refund_id = object
                .get("refunds")
                .and_then(|r| r.get("data"))
                .and_then(|d| d.get(0))
                .and_then(|r| string(r, "id"));
            ProviderEventKind::Refunded {
                payment_id,
                order_id: order_id(object),
                refund_id,
            }
        }
        _ => ProviderEventKind::Ignored,
    };
    Ok(ProviderEvent {
        id: event.id,
        event_type: event.event_type,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read_json(v: Value) -> Result<ProviderEvent, WebhookError> {
        read(&serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn reads_a_successful_payment_intent() {
        let order = Uuid::now_v7();
        let e = read_json(json!({
            "id": "evt_1", "object": "event", "type": "payment_intent.succeeded",
            "data": {"object": {"id": "pi_1", "object": "payment_intent", "amount": 1000,
                "currency": "usd", "metadata": {"order_id": order.to_string()}}}
        }))
        .unwrap();
        assert_eq!(e.id, "evt_1");
        assert_eq!(
            e.kind,
            ProviderEventKind::ChargeSucceeded {
                payment_id: "pi_1".into(),
                order_id: Some(order)
            }
        );
    }

    #[test]
    fn a_failure_names_the_most_specific_reason() {
        let failed = |error: Value| match read_json(
            json!({"id": "evt_2", "type": "payment_intent.payment_failed",
                "data": {"object": {"id": "pi_2", "last_payment_error": error}}}),
        )
        .unwrap()
        .kind
        {
            ProviderEventKind::ChargeFailed { reason, .. } => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            failed(json!({"code": "card_declined", "decline_code": "insufficient_funds"})),
            "insufficient_funds"
        );
        assert_eq!(
            failed(json!({"code": "card_declined", "decline_code": "generic_decline"})),
            "card_declined"
        );
        assert_eq!(failed(json!({"code": "expired_card"})), "expired_card");
        assert_eq!(failed(Value::Null), "payment_failed");
    }

    #[test]
    fn reads_a_refunded_charge() {
        let order = Uuid::now_v7();
        let e = read_json(json!({"id": "evt_3", "type": "charge.refunded",
            "data": {"object": {"id": "ch_1", "object": "charge", "payment_intent": "pi_3",
                "refunded": true, "metadata": {"order_id": order.to_string()},
                "refunds": {"data": [{"id": "re_1"}]}}}}))
        .unwrap();
        assert_eq!(
            e.kind,
            ProviderEventKind::Refunded {
                payment_id: Some("pi_3".into()),
                order_id: Some(order),
                refund_id: Some("re_1".into())
            }
        );
    }

    #[test]
    fn other_types_are_ignored_and_junk_is_malformed() {
        let e =
            read_json(json!({"id": "evt_4", "type": "customer.created", "data": {"object": {}}}))
                .unwrap();
        assert_eq!(e.kind, ProviderEventKind::Ignored);
        assert!(matches!(read(b"not json"), Err(WebhookError::Malformed(_))));
        assert!(matches!(
            read_json(
                json!({"id": "evt_5", "type": "payment_intent.succeeded", "data": {"object": {}}})
            ),
            Err(WebhookError::Malformed(_))
        ));
    }
}
