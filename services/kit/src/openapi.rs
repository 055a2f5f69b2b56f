//! What every service's OpenAPI document says the same way: the bearer
//! scheme, errors as `application/problem+json`, and the responses the
//! shared extractors give on their own (a malformed or non-JSON body, a
//! missing or bad token), so no operation has to remember to list them and
//! a generated client knows every status it can get.

use serde_json::{Map, Value, json};

const PROBLEM: &str = "application/problem+json";
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Adds the `bearer` (JWT) security scheme that operations name in
/// `security(("bearer" = []))`.
pub struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// A service's document as it is served: `doc` with the shop's conventions
/// applied (see [`apply_conventions`]).
pub fn conventional(doc: utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(doc).unwrap_or_else(|_| json!({}));
    apply_conventions(&mut doc);
    doc
}

/// Every operation of `doc`, mutably.
pub fn operations_mut(doc: &mut Value) -> impl Iterator<Item = &mut Map<String, Value>> {
    doc.get_mut("paths")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|item| {
            item.iter_mut()
                .filter(|(method, _)| METHODS.contains(&method.as_str()))
                .filter_map(|(_, op)| op.as_object_mut())
        })
}

/// A problem response to list under `status`.
pub fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/ProblemBody"}}},
    })
}

/// Document `status` on `op` unless it is already.
pub fn ensure_response(op: &mut Map<String, Value>, status: &str, description: &str) {
    if let Some(responses) = op
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut()
    {
        responses
            .entry(status)
            .or_insert_with(|| problem_response(description));
    }
}

/// - Error responses (4xx, 5xx) are `application/problem+json`, as
///   [`crate::Problem`] sends them.
/// - An operation with a JSON body may answer 400 (not JSON), 413 (too
///   large), 415 (not declared as JSON) and 422 (JSON of the wrong shape):
///   `ApiJson` does, before the handler runs.
/// - An operation that takes a bearer token, even optionally, answers 401
///   to a token that is expired, forged or revoked.
pub fn apply_conventions(doc: &mut Value) {
    for op in operations_mut(doc) {
        if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
            for (status, response) in responses.iter_mut() {
                let is_error = matches!(status.as_bytes().first(), Some(b'4' | b'5'));
                let Some(content) = response.get_mut("content").and_then(Value::as_object_mut)
                else {
                    continue;
                };
                if is_error && let Some(body) = content.remove("application/json") {
                    content.entry(PROBLEM).or_insert(body);
                }
            }
        }
        if op.contains_key("requestBody") {
            ensure_response(op, "400", "The body is not valid JSON");
            ensure_response(op, "413", "The body is too large");
            ensure_response(op, "415", "The body is not declared as application/json");
            ensure_response(
                op,
                "422",
                "The body is not valid: each field in error is named",
            );
        }
        let takes_token = op
            .get("security")
            .and_then(Value::as_array)
            .is_some_and(|reqs| reqs.iter().any(|r| r.get("bearer").is_some()));
        if takes_token {
            ensure_response(
                op,
                "401",
                "No valid bearer token: missing where required, or expired, forged or revoked",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        json!({
            "paths": {
                "/things": {
                    "post": {
                        "security": [{"bearer": []}],
                        "requestBody": {"content": {"application/json": {}}},
                        "responses": {
                            "201": {"description": "made", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}},
                            "422": {"description": "", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ProblemBody"}}}},
                        },
                    },
                    "get": {
                        "security": [{}, {"bearer": []}],
                        "responses": {"200": {"description": "list"}},
                    },
                    "parameters": [{"name": "x", "in": "query"}],
                },
                "/public": {"get": {"responses": {"200": {"description": "ok"}, "404": {"description": "none"}}}},
            }
        })
    }

    #[test]
    fn errors_become_problems_and_success_bodies_stay_json() {
        let mut doc = sample();
        apply_conventions(&mut doc);
        let post = &doc["paths"]["/things"]["post"]["responses"];
        assert!(post["201"]["content"]["application/json"].is_object());
        assert!(post["422"]["content"].get("application/json").is_none());
        assert_eq!(
            post["422"]["content"][PROBLEM]["schema"]["$ref"],
            "#/components/schemas/ProblemBody"
        );
        // A described error without a body keeps having none.
        assert!(
            doc["paths"]["/public"]["get"]["responses"]["404"]
                .get("content")
                .is_none()
        );
    }

    #[test]
    fn bodies_and_tokens_bring_the_responses_the_extractors_give() {
        let mut doc = sample();
        apply_conventions(&mut doc);
        let post = doc["paths"]["/things"]["post"]["responses"]
            .as_object()
            .unwrap();
        for status in ["400", "401", "413", "415", "422"] {
            assert!(
                post[status]["content"][PROBLEM].is_object(),
                "POST /things: {status}"
            );
        }
        let get = doc["paths"]["/things"]["get"]["responses"]
            .as_object()
            .unwrap();
        assert!(get.contains_key("401"), "an optional token can be refused");
        assert!(!get.contains_key("415"), "no body, no 415");
        let public = doc["paths"]["/public"]["get"]["responses"]
            .as_object()
            .unwrap();
        assert_eq!(
            public.keys().collect::<Vec<_>>(),
            ["200", "404"],
            "no token, no body: nothing added"
        );
    }

    #[test]
    fn a_response_already_listed_keeps_its_own_description() {
        let mut doc = json!({"paths": {"/a": {"post": {
            "requestBody": {},
            "responses": {"400": {"description": "bad idempotency key"}},
        }}}});
        apply_conventions(&mut doc);
        assert_eq!(
            doc["paths"]["/a"]["post"]["responses"]["400"]["description"],
            "bad idempotency key"
        );
    }
}
