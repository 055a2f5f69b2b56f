use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::http::RequestContext;

/// What travels on the bus. `type` doubles as the routing key
/// (`<aggregate>.<event>`, e.g. `user.registered`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub occurred_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    pub producer: String,
    pub payload: serde_json::Value,
}

impl Envelope {
    /// A new event, correlated with the request (or event) being handled.
    pub fn new(
        producer: &str,
        event_type: &str,
        payload: impl Serialize,
    ) -> Result<Self, serde_json::Error> {
        let ctx = RequestContext::current();
        Ok(Self {
            id: Uuid::now_v7(),
            event_type: event_type.to_string(),
            occurred_at: crate::clock::rfc3339(crate::clock::now_millis()),
            correlation_id: ctx.request_id,
            traceparent: ctx.traceparent,
            producer: producer.to_string(),
            payload: serde_json::to_value(payload)?,
        })
    }

    pub fn routing_key(&self) -> &str {
        &self.event_type
    }

    pub fn payload_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_value(self.payload.clone())
    }

    /// The context a consumer runs in, so events it causes keep the
    /// original correlation id and trace.
    pub fn context(&self) -> RequestContext {
        RequestContext {
            request_id: self.correlation_id.clone(),
            traceparent: self
                .traceparent
                .as_deref()
                .map(|tp| crate::http::child_traceparent(Some(tp))),
        }
    }
}

/// Does `pattern` (AMQP topic syntax: `*` one word, `#` zero or more)
/// match `key`?
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match (p.first(), k.first()) {
            (None, None) => true,
            (Some(&"#"), _) => go(&p[1..], k) || (!k.is_empty() && go(p, &k[1..])),
            (Some(&"*"), Some(_)) => go(&p[1..], &k[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &k[1..]),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    go(&p, &k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns() {
        assert!(topic_matches("order.placed", "order.placed"));
        assert!(topic_matches("order.*", "order.placed"));
        assert!(!topic_matches("order.*", "order.placed.v2"));
        assert!(topic_matches("order.#", "order.placed.v2"));
        assert!(topic_matches("#", "anything.at.all"));
        assert!(!topic_matches("user.registered", "order.placed"));
    }

    #[tokio::test]
    async fn envelope_picks_up_the_request_context() {
        let ctx = RequestContext {
            request_id: Some("req-1".into()),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        };
        let e = ctx
            .scope(async {
                Envelope::new("identity", "user.registered", serde_json::json!({"a": 1})).unwrap()
            })
            .await;
        assert_eq!(e.correlation_id.as_deref(), Some("req-1"));
        assert_eq!(e.routing_key(), "user.registered");
        assert_eq!(e.id.get_version_num(), 7);
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], "user.registered");
    }
}
