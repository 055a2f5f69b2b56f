//! The operator on a real control plane: kube-apiserver, etcd,
//! kube-controller-manager and kube-scheduler built from upstream, kwok
//! simulating the nodes. Start it with `eval "$(cargo xtask cluster up)"`;
//! `cargo xtask test` does that and runs this suite. The tests run one at a
//! time (they share one operator and read its counters).
//!
//! `cargo test -p operator --test e2e -- --ignored`

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use operator::crd::{PaymentProvider, ServiceDeployment, Store};
use serde_json::json;
use support::*;

const COMPONENTS: [&str; 7] = [
    "gateway",
    "identity",
    "catalog",
    "cart",
    "orders",
    "payments",
    "notifications",
];
const WITH_DATABASE: [&str; 5] = ["identity", "catalog", "orders", "payments", "notifications"];

/// One test at a time: they share one operator and read its counters.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Shop {
    client: Client,
    ns: TestNamespace,
}

impl Shop {
    fn api<K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>>(
        &self,
    ) -> Api<K> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let mut all = vec!["-n", &self.ns.name];
        all.extend_from_slice(args);
        kubectl(&all)
    }
}

/// A namespace with the example payment provider and Store applied with kubectl.
async fn example_shop(test: &str) -> Shop {
    shared_operator();
    let client = client().await;
    let ns = TestNamespace::new(&client, test).await;
    volumes_for(&client, &ns.name, "demo").await;
    let examples = root().join("manifests/examples");
    for file in ["payment-provider-sandbox.yaml", "store.yaml"] {
        kubectl_ok(&[
            "apply",
            "-n",
            &ns.name,
            "-f",
            examples.join(file).to_str().unwrap(),
        ]);
    }
    Shop { client, ns }
}

async fn ready_store(shop: &Shop, name: &str) -> Store {
    let api: Api<Store> = shop.api();
    eventually(&format!("Store {name} Ready"), CONVERGE, || {
        let api = api.clone();
        async move {
            let store = api.get(name).await.ok()?;
            let status = store.status.as_ref()?;
            let ready = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.is_true());
            (ready && status.observed_generation == store.metadata.generation).then_some(store)
        }
    })
    .await
}

async fn deployment_images(shop: &Shop) -> BTreeMap<String, String> {
    let deployments: Api<Deployment> = shop.api();
    deployments
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|d| {
            let image = d
                .spec
                .as_ref()
                .unwrap()
                .template
                .spec
                .as_ref()
                .unwrap()
                .containers[0]
                .image
                .clone()
                .unwrap_or_default();
            (d.name_any(), image)
        })
        .collect()
}

/// The Job has the `Complete` condition (kwok may complete more than one
/// pod of a Job under load, so `succeeded` can exceed 1).
fn complete(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
        })
}

fn checksum(deployment: &Deployment) -> String {
    deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap()["emporium.dev/config-checksum"]
        .clone()
}

async fn wait_deleted<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(&format!("{name} deleted"), CONVERGE, || {
        let api = api.clone();
        async move { api.get_opt(name).await.ok()?.is_none().then_some(()) }
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the local control plane"]
async fn the_example_store_becomes_ready_with_every_child() {
    let _serial = SERIAL.lock().await;
    let shop = example_shop("ready").await;
    let store = ready_store(&shop, "demo").await;
    let uid = store.uid().unwrap();
    let status = store.status.clone().unwrap();
    for condition in [
        "Ready",
        "DatabaseReady",
        "CacheReady",
        "MessagingReady",
        "PaymentProviderReady",
    ] {
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == condition)
            .unwrap();
        assert!(c.is_true(), "{condition}: {c:?}");
        assert_eq!(c.observed_generation, store.metadata.generation);
    }
    assert_eq!(status.components.len(), 7);
    assert_eq!(
        status.gateway_url.as_deref(),
        Some("http://shop.example.test")
    );
    let image = "ghcr.io/emporium/emporium:0.1.0";

    // One ServiceDeployment per component, owned by the Store.
    let sds: Api<ServiceDeployment> = shop.api();
    for component in COMPONENTS {
        let sd = sds.get(&format!("demo-{component}")).await.unwrap();
        assert_eq!(sd.spec.image, image);
        assert_eq!(sd.spec.component.as_str(), component);
        assert_eq!(sd.owner_references()[0].uid, uid);
        assert_eq!(sd.labels()["emporium.dev/store"], "demo");
        assert_eq!(
            sd.labels()["app.kubernetes.io/managed-by"],
            "emporium-operator"
        );
        let sd_uid = sd.uid().unwrap();

        let deployment: Deployment = shop.api().get(&format!("demo-{component}")).await.unwrap();
        assert_eq!(deployment.owner_references()[0].uid, sd_uid);
        assert_eq!(
            deployment.labels()["app.kubernetes.io/component"],
            component
        );
        let template = deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .clone()
            .unwrap();
        let container = &template.containers[0];
        assert_eq!(container.image.as_deref(), Some(image));
        assert_eq!(container.args.clone().unwrap(), ["serve", component]);
        let security = container.security_context.clone().unwrap();
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.capabilities.unwrap().drop.unwrap(), ["ALL"]);
        let pod_security = template.security_context.clone().unwrap();
        assert_eq!(pod_security.run_as_non_root, Some(true));
        assert_eq!(
            pod_security.seccomp_profile.unwrap().type_,
            "RuntimeDefault"
        );
        assert_eq!(template.automount_service_account_token, Some(false));
        let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
            p.clone().unwrap().http_get.unwrap().path.unwrap()
        };
        assert_eq!(path(&container.liveness_probe), "/healthz");
        assert_eq!(path(&container.startup_probe), "/healthz");
        assert_eq!(path(&container.readiness_probe), "/readyz");
        assert!(template.topology_spread_constraints.is_some());
        let env: BTreeMap<String, _> = container
            .env
            .clone()
            .unwrap()
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect();
        assert_eq!(
            env.contains_key("EMPORIUM_DATABASE_URL"),
            WITH_DATABASE.contains(&component),
            "{component}"
        );
        assert!(!checksum(&deployment).is_empty());

        let _: Service = shop.api().get(&format!("demo-{component}")).await.unwrap();
        let account: ServiceAccount = shop.api().get(&format!("demo-{component}")).await.unwrap();
        assert_eq!(account.automount_service_account_token, Some(false));
        let policy: NetworkPolicy = shop.api().get(&format!("demo-{component}")).await.unwrap();
        let rules = policy.spec.unwrap().ingress.unwrap_or_default();
        if component == "gateway" {
            assert!(
                rules[0].from.is_none(),
                "the gateway is reachable from anywhere"
            );
        } else {
            assert!(rules[0].from.is_some(), "{component} only from its callers");
        }
    }
    let env_of = |d: &Deployment, name: &str| {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .env
            .clone()
            .unwrap()
            .into_iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value)
    };
    let gateway: Deployment = shop.api().get("demo-gateway").await.unwrap();
    assert!(
        env_of(&gateway, "EMPORIUM_UPSTREAMS")
            .unwrap()
            .contains("identity=http://demo-identity:8080")
    );
    assert!(
        gateway.spec.as_ref().unwrap().replicas.is_some(),
        "the HPA scales it, from the API server's default"
    );
    let hpa: HorizontalPodAutoscaler = shop.api().get("demo-gateway").await.unwrap();
    assert_eq!(hpa.spec.as_ref().unwrap().max_replicas, 6);
    let _: PodDisruptionBudget = shop.api().get("demo-gateway").await.unwrap();
    let _: PodDisruptionBudget = shop.api().get("demo-catalog").await.unwrap();
    let hpas: Api<HorizontalPodAutoscaler> = shop.api();
    assert!(hpas.get_opt("demo-cart").await.unwrap().is_none());
    let ingress: Ingress = shop.api().get("demo-gateway").await.unwrap();
    assert_eq!(
        ingress.spec.unwrap().rules.unwrap()[0].host.as_deref(),
        Some("shop.example.test")
    );

    // Backing stores, settings, generated secrets, completed migrations.
    for backing in ["postgres", "redis", "rabbitmq"] {
        let set: StatefulSet = shop.api().get(&format!("demo-{backing}")).await.unwrap();
        assert_eq!(set.owner_references()[0].uid, uid);
        assert_eq!(set.status.unwrap().ready_replicas, Some(1));
        let _: Service = shop.api().get(&format!("demo-{backing}")).await.unwrap();
        let _: NetworkPolicy = shop.api().get(&format!("demo-{backing}")).await.unwrap();
    }
    let settings: ConfigMap = shop.api().get("demo-settings").await.unwrap();
    let data = settings.data.unwrap();
    assert_eq!(data["EMPORIUM_TAX_RATE_BP"], "2000");
    assert_eq!(
        data["EMPORIUM_SHOP_CURRENCY"], "EUR",
        "the default currency"
    );
    assert_eq!(data["EMPORIUM_SHIPPING_FEE"], "499");
    assert_eq!(data["EMPORIUM_FREE_SHIPPING_FROM"], "5000");
    for secret in ["database", "cache", "messaging", "jwt", "admin"] {
        let secret: Secret = shop.api().get(&format!("demo-{secret}")).await.unwrap();
        assert_eq!(secret.owner_references()[0].uid, uid);
    }
    let jwt: Secret = shop.api().get("demo-jwt").await.unwrap();
    let pem = String::from_utf8(jwt.data.unwrap()["signing-key.pem"].0.clone()).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let jobs: Api<Job> = shop.api();
    let jobs = jobs.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(jobs.len(), WITH_DATABASE.len());
    for job in &jobs {
        assert!(complete(job), "{} has not completed", job.name_any());
    }

    // kubectl shows the printer columns and short names work.
    let table = shop.kubectl(&["get", "stores"]).1;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "PHASE", "GATEWAY", "AGE"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..4],
        ["demo", "True", "Ready", "http://shop.example.test"]
    );
    assert!(shop.kubectl(&["get", "st"]).0);
    let sd_table = shop.kubectl(&["get", "sd"]).1;
    assert!(sd_table.lines().next().unwrap().contains("COMPONENT"));
    assert_eq!(sd_table.lines().count(), 8);
    let pp_table = shop.kubectl(&["get", "pp"]).1;
    assert!(
        pp_table.lines().nth(1).unwrap().contains("SecretComplete"),
        "{pp_table}"
    );
    let everything = shop.kubectl(&["get", "emporium"]).1;
    assert!(
        everything.contains("store.emporium.dev/demo"),
        "{everything}"
    );

    // Events for a person.
    let events = shop
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.kind=Store",
        ])
        .1;
    assert!(events.contains("ShopReady"), "{events}");
    assert!(events.contains("MigrationStarted"), "{events}");
    delete_volumes(&shop.client, &shop.ns.name).await;
}

#[tokio::test]
#[ignore = "needs the local control plane"]
async fn kubectl_explain_documents_every_field() {
    let _serial = SERIAL.lock().await;
    shared_operator();
    let spec = kubectl_ok(&["explain", "store.spec"]);
    assert!(spec.contains("The desired state of a shop"), "{spec}");
    for (field, words) in [
        ("image", "The container image every component runs"),
        ("database", "each service gets its own database"),
        ("suspend", "Stop reconciling"),
        ("paymentProviderRef", "PaymentProvider"),
    ] {
        assert!(
            spec.contains(field) && spec.contains(words),
            "{field}: {spec}"
        );
    }
    let nested = kubectl_ok(&["explain", "store.spec.database.managed.storage.ephemeral"]);
    assert!(nested.contains("emptyDir"), "{nested}");
    let sd = kubectl_ok(&["explain", "servicedeployment.spec.network.allowFrom"]);
    assert!(sd.contains("Components of the same Store"), "{sd}");
    let pp = kubectl_ok(&["explain", "pp.spec.type"]);
    assert!(pp.contains("sandbox"), "{pp}");
}

#[tokio::test]
#[ignore = "needs the local control plane"]
async fn deleted_and_edited_children_are_restored_and_a_noop_writes_nothing() {
    let _serial = SERIAL.lock().await;
    let shop = example_shop("restore").await;
    ready_store(&shop, "demo").await;
    let deployments: Api<Deployment> = shop.api();

    // A deleted Deployment comes back.
    let before = deployments.get("demo-cart").await.unwrap();
    deployments
        .delete("demo-cart", &DeleteParams::foreground())
        .await
        .unwrap();
    let old_uid = before.uid().unwrap();
    eventually("demo-cart recreated", CONVERGE, || {
        let deployments = deployments.clone();
        let old_uid = old_uid.clone();
        async move {
            let d = deployments.get_opt("demo-cart").await.ok()??;
            (d.uid().unwrap() != old_uid).then_some(())
        }
    })
    .await;

    // A hand-edited managed field is put back.
    let edit = json!({"spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "catalog", "image": "evil:latest"}]}}}});
    deployments
        .patch(
            "demo-catalog",
            &PatchParams::default(),
            &Patch::Strategic(&edit),
        )
        .await
        .unwrap();
    eventually("demo-catalog restored", CONVERGE, || {
        let deployments = deployments.clone();
        async move {
            let d = deployments.get("demo-catalog").await.ok()?;
            let spec = d.spec?;
            let image = spec.template.spec?.containers[0].image.clone()?;
            // And the rollout back has finished: while the pods of the
            // edited template wind down, the ready count (which the
            // statuses report) still moves, and that is a real change.
            let status = d.status?;
            let settled = status.observed_generation >= d.metadata.generation
                && [
                    status.replicas,
                    status.updated_replicas,
                    status.ready_replicas,
                ]
                .iter()
                .all(|n| *n == Some(2));
            (spec.replicas == Some(2) && image == "ghcr.io/emporium/emporium:0.1.0" && settled)
                .then_some(())
        }
    })
    .await;
    ready_store(&shop, "demo").await;

    // Once converged, a reconcile reads and writes nothing.
    let operator = shared_operator();
    let stores: Api<Store> = shop.api();
    // The operator is shared: wait until the namespaces of earlier tests are
    // gone (their teardown makes it reconcile and write), then let trailing
    // watch events settle.
    let ours = format!("namespace/{}", shop.ns.name);
    eventually("earlier tests' namespaces deleted", CONVERGE, || {
        let ours = ours.clone();
        async move {
            let (_, namespaces, _) = kubectl(&["get", "namespaces", "-o", "name"]);
            let others = namespaces
                .lines()
                .filter(|n| n.starts_with("namespace/e2e-") && *n != ours)
                .count();
            (others == 0).then_some(())
        }
    })
    .await;
    // An autoscaled Deployment starts at one pod and its HPA raises it to
    // the minimum on its own schedule; that rightly changes the statuses.
    let autoscalers: Api<HorizontalPodAutoscaler> = shop.api();
    eventually("autoscaled deployments at their minimum", CONVERGE, || {
        let (autoscalers, deployments) = (autoscalers.clone(), deployments.clone());
        async move {
            for hpa in autoscalers.list(&ListParams::default()).await.ok()? {
                let spec = hpa.spec?;
                let d = deployments.get(&spec.scale_target_ref.name).await.ok()?;
                let replicas = d.spec?.replicas?;
                let ready = d.status?.ready_replicas.unwrap_or(0);
                if replicas < spec.min_replicas.unwrap_or(1) || ready != replicas {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    let writes = operator
        .settled_writes(Duration::from_secs(5), CONVERGE)
        .await;
    let reconciles = operator.counter("emporium_operator_reconciles_total");
    // The statuses, to name what changed should the assertion fail.
    let statuses = || {
        kubectl_ok(&[
            "get",
            "stores,servicedeployments",
            "-n",
            &shop.ns.name,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status}{\"\\n\"}{end}",
        ])
    };
    let statuses_before = statuses();
    let poke = json!({"metadata": {"annotations": {"e2e.emporium.dev/poke": "1"}}});
    stores
        .patch("demo", &PatchParams::default(), &Patch::Merge(&poke))
        .await
        .unwrap();
    let sds: Api<ServiceDeployment> = shop.api();
    sds.patch("demo-orders", &PatchParams::default(), &Patch::Merge(&poke))
        .await
        .unwrap();
    eventually(
        "the poked objects reconciled",
        Duration::from_secs(60),
        || {
            let now = operator.counter("emporium_operator_reconciles_total");
            async move { (now >= reconciles + 2.0).then_some(()) }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let statuses_after = statuses();
    let changed: Vec<String> = statuses_after
        .lines()
        .filter(|l| !statuses_before.lines().any(|b| b == *l))
        .map(|l| {
            let name = l.split(' ').next().unwrap_or_default();
            let was = statuses_before
                .lines()
                .find(|b| b.split(' ').next() == Some(name));
            format!("{l}\n  was: {}", was.unwrap_or("(none)"))
        })
        .collect();
    assert_eq!(
        operator.writes(),
        writes,
        "a reconcile with nothing to change wrote; statuses changed:\n{}",
        changed.join("\n")
    );
    delete_volumes(&shop.client, &shop.ns.name).await;
}

#[tokio::test]
#[ignore = "needs the local control plane"]
async fn a_new_image_tag_migrates_each_service_before_rolling_it() {
    let _serial = SERIAL.lock().await;
    let shop = example_shop("upgrade").await;
    ready_store(&shop, "demo").await;
    let stores: Api<Store> = shop.api();
    let patch = json!({"spec": {"image": {"tag": "0.2.0"}}});
    stores
        .patch("demo", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let new_image = "ghcr.io/emporium/emporium:0.2.0";

    // Whenever a service with a database runs the new image, its migration
    // Job for that image has already completed.
    let jobs: Api<Job> = shop.api();
    eventually("every Deployment on 0.2.0", CONVERGE, || {
        let jobs = jobs.clone();
        let shop = &shop;
        async move {
            let images = deployment_images(shop).await;
            let jobs = jobs.list(&ListParams::default()).await.ok()?.items;
            for component in WITH_DATABASE {
                if images.get(&format!("demo-{component}")).map(String::as_str) == Some(new_image) {
                    let migrated = jobs.iter().any(|job| {
                        let container = &job
                            .spec
                            .as_ref()
                            .unwrap()
                            .template
                            .spec
                            .as_ref()
                            .unwrap()
                            .containers[0];
                        container.image.as_deref() == Some(new_image)
                            && container.args.as_ref().is_some_and(|a| a[1] == component)
                            && complete(job)
                    });
                    assert!(
                        migrated,
                        "{component} runs {new_image} before its migration completed"
                    );
                }
            }
            images
                .values()
                .all(|image| image == new_image)
                .then_some(())
        }
    })
    .await;
    let store = ready_store(&shop, "demo").await;
    assert!(
        store
            .status
            .unwrap()
            .components
            .iter()
            .all(|c| c.image == new_image)
    );
    // The old version's Jobs are gone; one per service for the new one.
    let jobs = jobs.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(
        jobs.len(),
        WITH_DATABASE.len(),
        "{:?}",
        jobs.iter().map(|j| j.name_any()).collect::<Vec<_>>()
    );
    delete_volumes(&shop.client, &shop.ns.name).await;
}

#[tokio::test]
#[ignore = "needs the local control plane"]
async fn changing_a_secret_rolls_only_the_pods_that_use_it() {
    let _serial = SERIAL.lock().await;
    let shop = example_shop("secret").await;
    ready_store(&shop, "demo").await;
    let deployments: Api<Deployment> = shop.api();
    let before: BTreeMap<String, (String, Option<i64>)> = deployments
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|d| (d.name_any(), (checksum(d), d.metadata.generation)))
        .collect();
    let secrets: Api<Secret> = shop.api();
    let patch = json!({"stringData": {"webhook-secret": "whsec_rotated"}});
    secrets
        .patch(
            "payments-sandbox",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    eventually("payments rolled", CONVERGE, || {
        let deployments = deployments.clone();
        let old = before["demo-payments"].0.clone();
        async move {
            let d = deployments.get("demo-payments").await.ok()?;
            (checksum(&d) != old).then_some(())
        }
    })
    .await;
    ready_store(&shop, "demo").await;
    for (name, (sum, generation)) in &before {
        let d = deployments.get(name).await.unwrap();
        if name == "demo-payments" {
            assert_ne!(&checksum(&d), sum);
        } else {
            assert_eq!(
                &checksum(&d),
                sum,
                "{name} rolled though it does not use the Secret"
            );
            assert_eq!(&d.metadata.generation, generation, "{name} changed");
        }
    }
    delete_volumes(&shop.client, &shop.ns.name).await;
}

#[tokio::test]
#[ignore = "needs the local control plane"]
async fn a_suspended_store_is_left_alone() {
    let _serial = SERIAL.lock().await;
    let shop = example_shop("suspend").await;
    ready_store(&shop, "demo").await;
    let stores: Api<Store> = shop.api();
    let suspend = json!({"spec": {"suspend": true}});
    stores
        .patch("demo", &PatchParams::default(), &Patch::Merge(&suspend))
        .await
        .unwrap();
    eventually("phase Suspended", CONVERGE, || {
        let stores = stores.clone();
        async move {
            let store = stores.get("demo").await.ok()?;
            let status = store.status?;
            (format!("{:?}", status.phase?) == "Suspended"
                && status.observed_generation == store.metadata.generation)
                .then_some(())
        }
    })
    .await;
    let change = json!({"spec": {"components": {"cart": {"replicas": 3}}}});
    stores
        .patch("demo", &PatchParams::default(), &Patch::Merge(&change))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let sds: Api<ServiceDeployment> = shop.api();
    assert_eq!(
        sds.get("demo-cart").await.unwrap().spec.replicas,
        1,
        "a suspended Store's change was applied"
    );

    let resume = json!({"spec": {"suspend": false}});
    stores
        .patch("demo", &PatchParams::default(), &Patch::Merge(&resume))
        .await
        .unwrap();
    eventually("the change applied after resuming", CONVERGE, || {
        let sds = sds.clone();
        async move { (sds.get("demo-cart").await.ok()?.spec.replicas == 3).then_some(()) }
    })
    .await;
    ready_store(&shop, "demo").await;
    delete_volumes(&shop.client, &shop.ns.name).await;
}

#[tokio::test]
#[ignore = "needs the local control plane"]
async fn an_invalid_store_is_rejected_with_the_cel_message() {
    let _serial = SERIAL.lock().await;
    shared_operator();
    let client = client().await;
    let ns = TestNamespace::new(&client, "invalid").await;
    let file = std::env::temp_dir().join(format!("emporium-invalid-{}.yaml", std::process::id()));
    let store = |database: &str, autoscaling: &str| {
        format!(
            "apiVersion: emporium.dev/v1alpha1
kind: Store
metadata:
  name: broken
spec:
  image: {{tag: \"1.0.0\"}}
  components:
    gateway:
      autoscaling: {autoscaling}
  database: {database}
  cache: {{managed: {{}}}}
  messaging: {{managed: {{}}}}
  paymentProviderRef: {{name: sandbox}}
"
        )
    };
    let ok_scaling = "{minReplicas: 1, maxReplicas: 2}";
    for (manifest, message) in [
        (
            store("{managed: {}, external: {secretName: pg}}", ok_scaling),
            "set exactly one of managed or external",
        ),
        (
            store("{}", ok_scaling),
            "set exactly one of managed or external",
        ),
        (
            store("{managed: {}}", "{minReplicas: 5, maxReplicas: 2}"),
            "autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
        ),
    ] {
        std::fs::write(&file, manifest).unwrap();
        let (ok, out, err) = kubectl(&["apply", "-n", &ns.name, "-f", file.to_str().unwrap()]);
        assert!(!ok, "accepted an invalid Store: {out}");
        assert!(err.contains(message), "{err}");
    }
    std::fs::write(
        &file,
        store("{managed: {}}", ok_scaling).replace("1.0.0", "not a tag!"),
    )
    .unwrap();
    let (ok, _, err) = kubectl(&["apply", "-n", &ns.name, "-f", file.to_str().unwrap()]);
    assert!(!ok && err.contains("spec.image.tag"), "{err}");
    std::fs::write(&file, store("{managed: {}}", ok_scaling)).unwrap();
    kubectl_ok(&["apply", "-n", &ns.name, "-f", file.to_str().unwrap()]);
}

#[tokio::test]
#[ignore = "needs the local control plane"]
async fn a_payment_provider_is_ready_only_with_a_complete_secret() {
    let _serial = SERIAL.lock().await;
    shared_operator();
    let client = client().await;
    let ns = TestNamespace::new(&client, "provider").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "stripe"},
        "stringData": {"webhook-secret": "whsec_1"},
    }))
    .unwrap();
    secrets.create(&Default::default(), &secret).await.unwrap();
    let providers: Api<PaymentProvider> = Api::namespaced(client.clone(), &ns.name);
    let provider: PaymentProvider = serde_json::from_value(json!({
        "apiVersion": "emporium.dev/v1alpha1",
        "kind": "PaymentProvider",
        "metadata": {"name": "stripe"},
        "spec": {"type": "stripe", "secretRef": {"name": "stripe"}, "currency": "EUR"},
    }))
    .unwrap();
    providers
        .create(&Default::default(), &provider)
        .await
        .unwrap();
    let ready = |want: bool| {
        let providers = providers.clone();
        async move {
            eventually(&format!("PaymentProvider Ready={want}"), CONVERGE, || {
                let providers = providers.clone();
                async move {
                    let p = providers.get("stripe").await.ok()?;
                    let c = p
                        .status?
                        .conditions
                        .into_iter()
                        .find(|c| c.type_ == "Ready")?;
                    (c.is_true() == want).then_some(c)
                }
            })
            .await
        }
    };
    let not_ready = ready(false).await;
    assert_eq!(not_ready.reason, "SecretKeyMissing");
    assert!(
        not_ready.message.contains("api-key"),
        "{}",
        not_ready.message
    );
    let events = kubectl_ok(&["get", "events", "-n", &ns.name]);
    assert!(events.contains("SecretKeyMissing"), "{events}");

    let fix = json!({"stringData": {"api-key": "sk_test_1"}});
    secrets
        .patch("stripe", &PatchParams::default(), &Patch::Merge(&fix))
        .await
        .unwrap();
    let c = ready(true).await;
    assert_eq!(c.reason, "SecretComplete");
}

#[tokio::test]
#[ignore = "needs the local control plane"]
async fn deleting_the_store_collects_every_child() {
    let _serial = SERIAL.lock().await;
    let shop = example_shop("delete").await;
    ready_store(&shop, "demo").await;
    let stores: Api<Store> = shop.api();
    stores
        .delete("demo", &DeleteParams::background())
        .await
        .unwrap();
    let ns = shop.ns.name.clone();
    let leftovers = || {
        let ns = ns.clone();
        async move {
            let kinds = "servicedeployments,deployments,statefulsets,services,serviceaccounts,configmaps,secrets,jobs,networkpolicies,horizontalpodautoscalers,poddisruptionbudgets,ingresses,replicasets,pods";
            let (_, out, _) = kubectl(&[
                "get",
                kinds,
                "-n",
                &ns,
                "-l",
                "emporium.dev/store=demo",
                "-o",
                "name",
            ]);
            let (_, pods, _) = kubectl(&["get", "pods", "-n", &ns, "-o", "name"]);
            let all: Vec<String> = out.lines().chain(pods.lines()).map(str::to_owned).collect();
            all.is_empty().then_some(()).ok_or(all)
        }
    };
    eventually("every child garbage-collected", CONVERGE, || async move {
        leftovers().await.ok()
    })
    .await;
    wait_deleted(&stores, "demo").await;
    delete_volumes(&shop.client, &shop.ns.name).await;
}

#[tokio::test]
#[ignore = "needs the local control plane"]
async fn a_second_replica_stays_idle_while_the_first_holds_the_lease() {
    let _serial = SERIAL.lock().await;
    let leader_identity = shared_operator().identity.clone();
    let client = client().await;
    let standby = start_operator("e2e-standby");
    tokio::time::sleep(Duration::from_secs(8)).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let lease = leases.get(&lease_name()).await.unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some(leader_identity.as_str())
    );
    let metrics = standby.metrics();
    assert!(metrics.contains("emporium_operator_leader 0"), "{metrics}");
    assert_eq!(
        sum_counter(&metrics, "emporium_operator_reconciles_total"),
        0.0
    );
    assert_eq!(
        sum_counter(&metrics, "emporium_operator_api_writes_total"),
        0.0,
        "{metrics}"
    );
    assert!(standby.log().contains("standing by"), "{}", standby.log());
}

#[tokio::test]
#[ignore = "needs the local control plane"]
async fn a_stopping_leader_hands_the_lease_to_the_standby() {
    let _serial = SERIAL.lock().await;
    operator_kubeconfig();
    let lease = format!("emporium-operator-handover-{}", std::process::id());
    let mut first = start_operator_on_lease("handover-first", &lease);
    eventually("the first replica leads", Duration::from_secs(60), || {
        let leads = first.is_leader();
        async move { leads.then_some(()) }
    })
    .await;
    let second = start_operator_on_lease("handover-second", &lease);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!second.is_leader(), "two replicas lead at once");
    first.terminate();
    // The lease lasts 15 s; a released one is taken at the standby's next try (2 s).
    eventually("the standby leads", Duration::from_secs(10), || {
        let leads = second.is_leader();
        async move { leads.then_some(()) }
    })
    .await;
    assert!(
        first.log().contains("released the leader lease"),
        "{}",
        first.log()
    );
}
