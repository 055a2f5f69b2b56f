//! One OpenAPI document for the whole shop, merged from every upstream's
//! own, and a Swagger UI page over it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tokio::sync::Mutex;

pub struct MergedDocs {
    upstreams: Vec<(String, url::Url)>,
    http: reqwest::Client,
    cached: Mutex<Option<(Instant, Value)>>,
}

const TTL: Duration = Duration::from_secs(30);

impl MergedDocs {
    pub fn new(upstreams: Vec<(String, url::Url)>) -> Self {
        Self {
            upstreams,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .unwrap_or_default(),
            cached: Mutex::new(None),
        }
    }

    async fn build(&self) -> Value {
        let mut merged = json!({
            "openapi": "3.1.0",
            "info": {"title": "Emporium", "version": "1", "description": "The shop's REST API, through the gateway."},
            "paths": {},
            "components": {"schemas": {}, "securitySchemes": {}},
            "tags": [],
        });
        for (service, base) in &self.upstreams {
            let Ok(url) = base.join("/openapi.json") else {
                continue;
            };
            let doc: Value = match self.http.get(url).send().await {
                Ok(r) if r.status().is_success() => r.json().await.unwrap_or(Value::Null),
                _ => {
                    tracing::warn!(%service, "upstream OpenAPI document unavailable");
                    continue;
                }
            };
            merge_into(&mut merged, &doc);
        }
        add_gateway_responses(&mut merged);
        merged
    }

    pub async fn document(&self) -> Value {
        let mut cached = self.cached.lock().await;
        if let Some((at, doc)) = cached.as_ref()
            && at.elapsed() < TTL
        {
            return doc.clone();
        }
        let doc = self.build().await;
        *cached = Some((Instant::now(), doc.clone()));
        doc
    }
}

/// Copy `doc`'s paths, schemas and security schemes into `merged`.
pub fn merge_into(merged: &mut Value, doc: &Value) {
    for (section, target) in [
        ("paths", &["paths"][..]),
        ("schemas", &["components", "schemas"][..]),
        ("securitySchemes", &["components", "securitySchemes"][..]),
    ] {
        let source = match section {
            "paths" => doc.get("paths"),
            other => doc.get("components").and_then(|c| c.get(other)),
        };
        let Some(Value::Object(items)) = source else {
            continue;
        };
        let mut dest = &mut *merged;
        for key in target {
            dest = dest
                .as_object_mut()
                .map(|o| o.entry(key.to_string()).or_insert_with(|| json!({})))
                .expect("merged document sections are objects");
        }
        if let Some(dest) = dest.as_object_mut() {
            for (k, v) in items {
                dest.insert(k.clone(), v.clone());
            }
        }
    }
}

/// What the gateway itself may answer for any operation it forwards,
/// before the service is asked.
pub fn add_gateway_responses(merged: &mut Value) {
    for op in kit::openapi::operations_mut(merged) {
        kit::openapi::ensure_response(
            op,
            "429",
            "Too many requests from this client; `Retry-After` says when to try again",
        );
        kit::openapi::ensure_response(
            op,
            "502",
            "The service behind the gateway cannot be reached",
        );
        kit::openapi::ensure_response(
            op,
            "504",
            "The service behind the gateway did not answer in time",
        );
    }
}

pub async fn openapi(State(docs): State<Arc<MergedDocs>>) -> Json<Value> {
    Json(docs.document().await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_paths_and_schemas() {
        let mut merged = json!({"paths": {}, "components": {"schemas": {}}});
        merge_into(
            &mut merged,
            &json!({"paths": {"/a": {}}, "components": {"schemas": {"A": {}}}}),
        );
        merge_into(
            &mut merged,
            &json!({"paths": {"/b": {}}, "components": {"schemas": {"B": {}}, "securitySchemes": {"bearer": {}}}}),
        );
        assert!(merged["paths"]["/a"].is_object() && merged["paths"]["/b"].is_object());
        assert!(merged["components"]["schemas"]["A"].is_object());
        assert!(merged["components"]["securitySchemes"]["bearer"].is_object());
    }

    #[test]
    fn every_operation_lists_what_the_gateway_answers_itself() {
        let mut merged = json!({"paths": {
            "/a": {"get": {"responses": {"200": {"description": ""}}}, "parameters": []},
            "/b": {"post": {"responses": {"429": {"description": "sign-in throttled"}}}},
        }});
        add_gateway_responses(&mut merged);
        for status in ["429", "502", "504"] {
            assert_eq!(
                merged["paths"]["/a"]["get"]["responses"][status]["content"]["application/problem+json"]
                    ["schema"]["$ref"],
                "#/components/schemas/ProblemBody",
                "{status}"
            );
        }
        assert_eq!(
            merged["paths"]["/b"]["post"]["responses"]["429"]["description"],
            "sign-in throttled"
        );
    }
}
