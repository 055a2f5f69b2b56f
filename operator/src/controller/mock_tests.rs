//! Reconcilers against a mocked API server (tower-test): every request is
//! recorded — method, path, field manager, content type, body — and checked.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

use super::{Context, payment_provider, service_deployment};
use crate::crd::{PaymentProvider, ServiceDeployment};
use crate::telemetry::Metrics;

/// One request the operator made.
#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

impl Recorded {
    fn is_write(&self) -> bool {
        self.method != "GET"
    }
}

/// What the fake API server holds: objects by path, and lists by collection path.
#[derive(Default)]
struct FakeApi {
    objects: BTreeMap<String, Value>,
    lists: BTreeMap<String, Vec<Value>>,
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": reason, "code": code, "message": reason})
}

/// A client whose every request the fake answers and records.
fn mock_client(api: FakeApi) -> (Client, Arc<Mutex<Vec<Recorded>>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let log = recorded.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = http_body_util::BodyExt::collect(body)
                .await
                .unwrap()
                .to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let record = Recorded {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().unwrap_or_default().to_owned(),
                content_type: parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default(),
                body: body.clone(),
            };
            log.lock().unwrap().push(record.clone());
            let (code, answer) = match record.method.as_str() {
                "GET" if record.query.contains("labelSelector") => (
                    200,
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"},
                           "items": api.lists.get(&record.path).cloned().unwrap_or_default()}),
                ),
                "GET" => match api.objects.get(&record.path) {
                    Some(object) => (200, object.clone()),
                    None => (404, status(404, "NotFound")),
                },
                // A status apply answers with the object and its new status.
                "PATCH" if record.path.ends_with("/status") => {
                    let parent = record.path.trim_end_matches("/status");
                    let mut object = api
                        .objects
                        .get(parent)
                        .cloned()
                        .unwrap_or_else(|| json!({"metadata": {}}));
                    object["status"] = body["status"].clone();
                    (200, object)
                }
                // Server-side apply and creation answer with the object.
                _ => (if record.method == "POST" { 201 } else { 200 }, body),
            };
            let response = Response::builder()
                .status(StatusCode::from_u16(code).unwrap())
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap();
            send.send_response(response);
        }
    });
    (Client::new(service, "default"), recorded)
}

fn context(client: Client) -> Arc<Context> {
    Context::new(client, Metrics, "test".into())
}

fn writes_made(recorded: &Arc<Mutex<Vec<Recorded>>>) -> Vec<Recorded> {
    recorded
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.is_write())
        .cloned()
        .collect()
}

fn assert_server_side_apply(request: &Recorded) {
    assert_eq!(request.method, "PATCH", "{request:?}");
    assert_eq!(
        request.content_type, "application/apply-patch+yaml",
        "{}",
        request.path
    );
    assert!(
        request.query.contains("fieldManager=emporium-operator"),
        "{}",
        request.query
    );
    assert!(request.query.contains("force=true"), "{}", request.query);
}

fn provider(secret_keys_needed: &str) -> PaymentProvider {
    serde_json::from_value(json!({
        "apiVersion": "emporium.dev/v1alpha1",
        "kind": "PaymentProvider",
        "metadata": {"name": "stripe", "namespace": "shop", "uid": "pp-uid", "generation": 1},
        "spec": {"type": secret_keys_needed, "secretRef": {"name": "stripe-keys"}, "currency": "EUR"},
    }))
    .unwrap()
}

#[tokio::test]
async fn a_provider_missing_a_key_gets_a_not_ready_status_and_a_warning() {
    let mut api = FakeApi::default();
    api.objects.insert(
        "/api/v1/namespaces/shop/secrets/stripe-keys".into(),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "stripe-keys"}, "data": {"webhook-secret": "d2g="}}),
    );
    api.objects.insert(
        "/apis/emporium.dev/v1alpha1/namespaces/shop/paymentproviders/stripe".into(),
        serde_json::to_value(provider("stripe")).unwrap(),
    );
    let (client, recorded) = mock_client(api);
    let ctx = context(client);
    payment_provider::reconcile(Arc::new(provider("stripe")), ctx)
        .await
        .unwrap();

    let requests = recorded.lock().unwrap().clone();
    assert_eq!(requests[0].method, "GET");
    assert_eq!(
        requests[0].path,
        "/api/v1/namespaces/shop/secrets/stripe-keys"
    );
    let writes = writes_made(&recorded);
    assert_eq!(writes.len(), 2, "{writes:#?}");
    let status = &writes[0];
    assert_eq!(
        status.path,
        "/apis/emporium.dev/v1alpha1/namespaces/shop/paymentproviders/stripe/status"
    );
    assert_server_side_apply(status);
    let ready = &status.body["status"]["conditions"][0];
    assert_eq!(ready["type"], "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "SecretKeyMissing");
    assert!(ready["message"].as_str().unwrap().contains("api-key"));
    assert_eq!(status.body["status"]["observedGeneration"], 1);
    let event = &writes[1];
    assert_eq!(
        (event.method.as_str(), event.path.as_str()),
        ("POST", "/apis/events.k8s.io/v1/namespaces/shop/events")
    );
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["reason"], "SecretKeyMissing");
    assert_eq!(event.body["regarding"]["name"], "stripe");
}

#[tokio::test]
async fn a_provider_whose_status_is_current_makes_no_write() {
    let mut api = FakeApi::default();
    api.objects.insert(
        "/api/v1/namespaces/shop/secrets/stripe-keys".into(),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "stripe-keys"}, "data": {"webhook-secret": "d2g=", "api-key": "aw=="}}),
    );
    let (client, recorded) = mock_client(api);
    let mut current = provider("stripe");
    let secret = serde_json::from_value(json!({"metadata": {"name": "stripe-keys"}, "data": {"webhook-secret": "d2g=", "api-key": "aw=="}})).unwrap();
    current.status = Some(payment_provider::status_of(&current, Some(&secret)));
    payment_provider::reconcile(Arc::new(current), context(client))
        .await
        .unwrap();
    assert!(
        writes_made(&recorded).is_empty(),
        "{:#?}",
        writes_made(&recorded)
    );
    assert_eq!(recorded.lock().unwrap().len(), 1);
}

fn service_deployment() -> ServiceDeployment {
    serde_json::from_value(json!({
        "apiVersion": "emporium.dev/v1alpha1",
        "kind": "ServiceDeployment",
        "metadata": {"name": "demo-payments", "namespace": "shop", "uid": "sd-uid", "generation": 3,
                     "labels": {"emporium.dev/store": "demo"}},
        "spec": {
            "component": "payments",
            "image": "ghcr.io/emporium/emporium:1.0.0",
            "replicas": 1,
            "env": [{"name": "EMPORIUM_STRIPE_WEBHOOK_SECRET", "secretKeyRef": {"name": "keys", "key": "webhook-secret"}}],
            "network": {"allowFrom": ["gateway"]},
        },
    }))
    .unwrap()
}

const KINDS: [(&str, &str); 7] = [
    ("/api/v1/namespaces/shop/serviceaccounts", "ServiceAccount"),
    ("/api/v1/namespaces/shop/services", "Service"),
    ("/apis/apps/v1/namespaces/shop/deployments", "Deployment"),
    (
        "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
    ),
    (
        "/apis/policy/v1/namespaces/shop/poddisruptionbudgets",
        "PodDisruptionBudget",
    ),
    (
        "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies",
        "NetworkPolicy",
    ),
    (
        "/apis/networking.k8s.io/v1/namespaces/shop/ingresses",
        "Ingress",
    ),
];

#[tokio::test]
async fn a_service_deployment_applies_its_children_then_a_second_pass_writes_nothing() {
    let secret_path = "/api/v1/namespaces/shop/secrets/keys";
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys"}, "data": {"webhook-secret": "d2g="}});
    let mut api = FakeApi::default();
    api.objects.insert(secret_path.into(), secret.clone());
    api.objects.insert(
        "/apis/emporium.dev/v1alpha1/namespaces/shop/servicedeployments/demo-payments".into(),
        serde_json::to_value(service_deployment()).unwrap(),
    );
    let (client, recorded) = mock_client(api);
    service_deployment::reconcile(Arc::new(service_deployment()), context(client))
        .await
        .unwrap();

    let requests = recorded.lock().unwrap().clone();
    // Every kind is listed by the owner's uid before anything is applied.
    for (collection, _) in KINDS {
        let list = requests
            .iter()
            .find(|r| r.path == collection && r.method == "GET")
            .unwrap_or_else(|| panic!("no list of {collection}"));
        assert!(
            list.query.contains("emporium.dev%2Fowner-uid%3Dsd-uid"),
            "{}",
            list.query
        );
    }
    let writes = writes_made(&recorded);
    let mut paths: Vec<&str> = writes.iter().map(|w| w.path.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/api/v1/namespaces/shop/serviceaccounts/demo-payments",
            "/api/v1/namespaces/shop/services/demo-payments",
            "/apis/apps/v1/namespaces/shop/deployments/demo-payments",
            "/apis/emporium.dev/v1alpha1/namespaces/shop/servicedeployments/demo-payments/status",
            "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies/demo-payments",
        ],
        "one replica: no autoscaler, no disruption budget, no ingress"
    );
    for write in &writes {
        assert_server_side_apply(write);
    }
    let by_path = |suffix: &str| {
        &writes
            .iter()
            .find(|w| w.path.ends_with(suffix))
            .unwrap()
            .body
    };
    let deployment = by_path("deployments/demo-payments");
    assert_eq!(
        deployment["metadata"]["ownerReferences"][0]["uid"],
        "sd-uid"
    );
    assert_eq!(
        deployment["metadata"]["ownerReferences"][0]["controller"],
        true
    );
    assert_eq!(
        deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "emporium-operator"
    );
    assert_eq!(
        deployment["metadata"]["labels"]["emporium.dev/store"],
        "demo"
    );
    let template = &deployment["spec"]["template"];
    assert_eq!(
        template["metadata"]["annotations"]["emporium.dev/config-checksum"]
            .as_str()
            .unwrap()
            .len(),
        32
    );
    let container = &template["spec"]["containers"][0];
    assert_eq!(container["args"], json!(["serve", "payments"]));
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(
        by_path("serviceaccounts/demo-payments")["automountServiceAccountToken"],
        false
    );
    let policy =
        &by_path("networkpolicies/demo-payments")["spec"]["ingress"][0]["from"][0]["podSelector"];
    assert_eq!(policy["matchExpressions"][0]["values"], json!(["gateway"]));

    // Second pass: the cluster holds what was applied, the status is current.
    let mut api = FakeApi::default();
    api.objects.insert(secret_path.into(), secret);
    for write in writes.iter().filter(|w| !w.path.ends_with("/status")) {
        let collection = write.path.rsplit_once('/').unwrap().0.to_owned();
        api.lists
            .entry(collection)
            .or_default()
            .push(write.body.clone());
    }
    let mut sd = service_deployment();
    sd.status = Some(serde_json::from_value(by_path("/status")["status"].clone()).unwrap());
    let (client, recorded) = mock_client(api);
    service_deployment::reconcile(Arc::new(sd), context(client))
        .await
        .unwrap();
    assert!(
        writes_made(&recorded).is_empty(),
        "{:#?}",
        writes_of(&recorded)
    );
}

fn writes_of(recorded: &Arc<Mutex<Vec<Recorded>>>) -> Vec<(String, String)> {
    writes_made(recorded)
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect()
}

#[tokio::test]
async fn a_changed_secret_changes_only_the_checksum_of_its_users() {
    let sd = service_deployment();
    let checksum = |value: &str| {
        let mut api = FakeApi::default();
        api.objects.insert(
            "/api/v1/namespaces/shop/secrets/keys".into(),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys"},
                   "data": {"webhook-secret": value, "unrelated": "eA=="}}),
        );
        let (client, _) = mock_client(api);
        let sd = sd.clone();
        async move {
            service_deployment::config_checksum(&client, "shop", &sd)
                .await
                .unwrap()
        }
    };
    let first = checksum("d2g=").await;
    assert_eq!(first, checksum("d2g=").await);
    assert_ne!(first, checksum("b3RoZXI=").await);
}
