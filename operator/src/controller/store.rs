//! Store → generated Secrets, settings ConfigMap, managed backing stores,
//! migration Jobs and one ServiceDeployment per component; status from them.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Client, ResourceExt};
use serde_json::json;

use super::{Context, NOT_READY_RECHECK, RESYNC, now};
use crate::apply;
use crate::children::store::{self as build, Backing};
use crate::crd::common::{Component, Condition, carry_transition_times, condition};
use crate::crd::store::{ComponentStatus, StorePhase, StoreStatus};
use crate::crd::{PaymentProvider, ServiceDeployment, Store};
use crate::error::{Error, Result};
use crate::labels::MANAGER;

pub async fn reconcile(store: Arc<Store>, ctx: Arc<Context>) -> Result<Action> {
    super::measured(store.clone(), ctx.clone(), reconcile_inner(store, ctx)).await
}

/// Readiness of one dependency: (ready, reason, message).
type Readiness = (bool, String, String);

async fn reconcile_inner(store: Arc<Store>, ctx: Arc<Context>) -> Result<Action> {
    if store.metadata.deletion_timestamp.is_some() {
        // Owner references hand the children to the garbage collector.
        return Ok(Action::await_change());
    }
    let client = &ctx.client;
    let namespace = store
        .namespace()
        .ok_or(Error::MissingField("Store", "metadata.namespace"))?;
    let uid = store
        .uid()
        .ok_or(Error::MissingField("Store", "metadata.uid"))?;
    let before = store.status.clone().unwrap_or_default();

    if store.spec.suspend {
        let status = suspended_status(&store, &before);
        if status != before {
            patch_status(client, &namespace, &store, &status).await?;
            if before.phase != Some(StorePhase::Suspended) {
                ctx.event(
                    store.as_ref(),
                    EventType::Normal,
                    "Suspended",
                    "Suspend",
                    "spec.suspend is set: the operator changes nothing of this shop".into(),
                )
                .await;
            }
        }
        return Ok(Action::await_change());
    }

    // Generated Secrets: created once, never overwritten.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let existing: std::collections::BTreeSet<String> = secrets
        .list_metadata(
            &ListParams::default()
                .labels(&crate::labels::owned_by(&uid))
                .match_any(),
        )
        .await?
        .items
        .iter()
        .map(|s| s.name_any())
        .collect();
    for generated in build::generated_secrets(&store) {
        if !existing.contains(&generated.name) {
            let secret = build::secret(&store, &generated.name, (generated.build)(&store)?)?;
            match secrets.create(&PostParams::default(), &secret).await {
                Ok(_) => {
                    ctx.event(
                        store.as_ref(),
                        EventType::Normal,
                        "SecretGenerated",
                        "Generate",
                        format!("generated Secret {}", generated.name),
                    )
                    .await;
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(error) => return Err(error.into()),
            }
        }
    }

    // Settings and the managed backing stores.
    let mut config_maps = vec![build::settings_config_map(&store)?];
    let (mut stateful_sets, mut services, mut policies) = (vec![], vec![], vec![]);
    for backing in Backing::ALL {
        if let Some(managed) = backing.managed(&store) {
            let children = build::backing(&store, backing, managed)?;
            stateful_sets.push(children.stateful_set);
            services.push(children.service);
            policies.push(children.network_policy);
            config_maps.extend(children.config_map);
        }
    }
    // Independent kinds and reads, side by side.
    let providers: Api<PaymentProvider> = Api::namespaced(client.clone(), &namespace);
    let jobs_api: Api<Job> = Api::namespaced(client.clone(), &namespace);
    let sds_api: Api<ServiceDeployment> = Api::namespaced(client.clone(), &namespace);
    let (_, stateful_sets, _, _, provider, live_jobs, live_sds) = tokio::try_join!(
        apply::sync_owned::<ConfigMap>(client, &namespace, &uid, config_maps),
        apply::sync_owned::<StatefulSet>(client, &namespace, &uid, stateful_sets),
        apply::sync_owned::<Service>(client, &namespace, &uid, services),
        apply::sync_owned::<NetworkPolicy>(client, &namespace, &uid, policies),
        apply::get_cached(&providers, &store.spec.payment_provider_ref.name),
        apply::list_owned(&jobs_api, &uid),
        apply::list_owned(&sds_api, &uid),
    )?;

    let database = backing_readiness(&store, Backing::Postgres, &stateful_sets, &secrets).await?;
    let cache = backing_readiness(&store, Backing::Redis, &stateful_sets, &secrets).await?;
    let messaging = backing_readiness(&store, Backing::RabbitMq, &stateful_sets, &secrets).await?;

    let payment = provider_readiness(&store, provider.as_ref());

    // Migrations gate each service's move to a new image.
    let image = store.spec.image.reference();
    let plan = plan_rollout(&store, &image, database.0, &live_sds, &live_jobs)?;
    let started: Vec<String> = plan
        .jobs
        .iter()
        .map(|j| j.name_any())
        .filter(|name| !live_jobs.contains_key(name))
        .collect();
    let jobs = apply::sync(&jobs_api, live_jobs, plan.jobs).await?;
    for name in started {
        ctx.event(
            store.as_ref(),
            EventType::Normal,
            "MigrationStarted",
            "Migrate",
            format!("started Job {name} for {image}"),
        )
        .await;
    }

    let mut desired_sds = Vec::new();
    for (component, component_image) in &plan.images {
        let spec =
            build::service_deployment_spec(&store, *component, component_image, provider.as_ref());
        desired_sds.push(build::service_deployment(&store, spec)?);
    }
    let sds = apply::sync(&sds_api, live_sds, desired_sds).await?;

    let failed_jobs: Vec<String> = jobs
        .values()
        .filter(|j| job_failed(j))
        .map(|j| j.name_any())
        .collect();
    let status = store_status(
        &store,
        &image,
        &sds,
        [&database, &cache, &messaging, &payment],
        &failed_jobs,
        plan.migrating,
    );
    let ready = status.phase == Some(StorePhase::Ready);
    if status != before {
        patch_status(client, &namespace, &store, &status).await?;
        let was = |t: &str| condition(&before.conditions, t).is_some_and(Condition::is_true);
        let is = |t: &str| condition(&status.conditions, t).is_some_and(Condition::is_true);
        if is("Ready") && !was("Ready") {
            ctx.event(
                store.as_ref(),
                EventType::Normal,
                "ShopReady",
                "Reconcile",
                format!("every component is ready on {image}"),
            )
            .await;
        }
        if is("Degraded") && !was("Degraded") {
            let message = condition(&status.conditions, "Degraded")
                .map(|c| c.message.clone())
                .unwrap_or_default();
            ctx.event(
                store.as_ref(),
                EventType::Warning,
                "Degraded",
                "Reconcile",
                message,
            )
            .await;
        }
        if !payment.0
            && (was("PaymentProviderReady")
                || condition(&before.conditions, "PaymentProviderReady").is_none())
        {
            ctx.event(
                store.as_ref(),
                EventType::Warning,
                "PaymentProviderNotReady",
                "Reconcile",
                payment.2.clone(),
            )
            .await;
        }
    }
    Ok(if ready {
        Action::requeue(RESYNC)
    } else {
        Action::requeue(NOT_READY_RECHECK)
    })
}

/// Which image each component runs now, and the migration Jobs wanted.
pub struct Rollout {
    /// Components with the image their ServiceDeployment gets; a component
    /// missing here waits for its first migration.
    pub images: Vec<(Component, String)>,
    pub jobs: Vec<Job>,
    /// Some component still waits for its migration to the new image.
    pub migrating: bool,
}

/// A service with a database moves to a new image only once that image's
/// migration Job has completed; until then it keeps the image it runs.
pub fn plan_rollout(
    store: &Store,
    image: &str,
    database_ready: bool,
    live_sds: &BTreeMap<String, ServiceDeployment>,
    live_jobs: &BTreeMap<String, Job>,
) -> Result<Rollout> {
    let mut plan = Rollout {
        images: vec![],
        jobs: vec![],
        migrating: false,
    };
    for component in Component::ALL {
        let current = live_sds
            .get(&build::child_name(store, component.as_str()))
            .map(|sd| sd.spec.image.clone());
        if !component.has_database() || current.as_deref() == Some(image) {
            let job_name = build::migration_job_name(store, component, image);
            if let Some(job) = live_jobs.get(&job_name) {
                // Keep the finished Job of the running version (no write: it matches).
                plan.jobs.push(
                    build::migration_job(store, component, image).unwrap_or_else(|_| job.clone()),
                );
            }
            plan.images.push((component, image.to_owned()));
            continue;
        }
        plan.migrating = true;
        if database_ready {
            let job = build::migration_job(store, component, image)?;
            let done = live_jobs.get(&job.name_any()).is_some_and(job_complete);
            plan.jobs.push(job);
            if done {
                plan.images.push((component, image.to_owned()));
                continue;
            }
        }
        if let Some(current) = current {
            plan.images.push((component, current));
        }
    }
    plan.migrating = Component::ALL.iter().any(|c| {
        !plan
            .images
            .iter()
            .any(|(have, img)| have == c && img == image)
    });
    Ok(plan)
}

fn job_condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

pub fn job_complete(job: &Job) -> bool {
    job_condition(job, "Complete")
}

fn job_failed(job: &Job) -> bool {
    job_condition(job, "Failed")
}

async fn backing_readiness(
    store: &Store,
    backing: Backing,
    stateful_sets: &BTreeMap<String, StatefulSet>,
    secrets: &Api<Secret>,
) -> Result<Readiness> {
    if backing.managed(store).is_some() {
        let name = build::child_name(store, backing.name());
        let ready = stateful_sets
            .get(&name)
            .and_then(|s| s.status.as_ref())
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        return Ok(if ready >= 1 {
            (
                true,
                "StatefulSetReady".into(),
                format!("StatefulSet {name} is ready"),
            )
        } else {
            (
                false,
                "StatefulSetNotReady".into(),
                format!("waiting for StatefulSet {name}"),
            )
        });
    }
    let (secret_name, keys): (String, Vec<String>) = match backing {
        Backing::Postgres => match &store.spec.database.external {
            Some(external) => (
                external.secret_name.clone(),
                Component::ALL
                    .iter()
                    .filter(|c| c.has_database())
                    .map(|c| c.to_string())
                    .collect(),
            ),
            None => {
                return Ok((
                    false,
                    "NotConfigured".into(),
                    "neither managed nor external".into(),
                ));
            }
        },
        Backing::Redis | Backing::RabbitMq => {
            let spec = if backing == Backing::Redis {
                &store.spec.cache
            } else {
                &store.spec.messaging
            };
            match &spec.external {
                Some(external) => (external.secret_name.clone(), vec![external.key.clone()]),
                None => {
                    return Ok((
                        false,
                        "NotConfigured".into(),
                        "neither managed nor external".into(),
                    ));
                }
            }
        }
    };
    let Some(secret) = apply::get_cached(secrets, &secret_name).await? else {
        return Ok((
            false,
            "SecretNotFound".into(),
            format!("Secret {secret_name} does not exist"),
        ));
    };
    let data = secret.data.unwrap_or_default();
    let missing: Vec<String> = keys.into_iter().filter(|k| !data.contains_key(k)).collect();
    Ok(if missing.is_empty() {
        (
            true,
            "ExternalSecretFound".into(),
            format!("Secret {secret_name} has the URL"),
        )
    } else {
        (
            false,
            "SecretKeyMissing".into(),
            format!("Secret {secret_name} lacks {}", missing.join(", ")),
        )
    })
}

fn provider_readiness(store: &Store, provider: Option<&PaymentProvider>) -> Readiness {
    let name = &store.spec.payment_provider_ref.name;
    let Some(provider) = provider else {
        return (
            false,
            "NotFound".into(),
            format!("PaymentProvider {name} does not exist"),
        );
    };
    let conditions = provider
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    match condition(conditions, "Ready") {
        Some(c) if c.is_true() => (
            true,
            "ProviderReady".into(),
            format!("PaymentProvider {name} is ready"),
        ),
        Some(c) => (
            false,
            c.reason.clone(),
            format!("PaymentProvider {name}: {}", c.message),
        ),
        None => (
            false,
            "Pending".into(),
            format!("PaymentProvider {name} has not been checked yet"),
        ),
    }
}

fn sd_ready(sd: &ServiceDeployment, image: &str) -> bool {
    let Some(status) = &sd.status else {
        return false;
    };
    sd.spec.image == image
        && status.observed_generation == sd.metadata.generation
        && condition(&status.conditions, "Ready").is_some_and(Condition::is_true)
}

/// The Store's status from what its children report.
pub fn store_status(
    store: &Store,
    image: &str,
    sds: &BTreeMap<String, ServiceDeployment>,
    dependencies: [&Readiness; 4],
    failed_jobs: &[String],
    migrating: bool,
) -> StoreStatus {
    let old = store.status.clone().unwrap_or_default();
    let [database, cache, messaging, payment] = dependencies;
    let mut components = Vec::new();
    let mut not_ready = Vec::new();
    for component in Component::ALL {
        match sds.get(&build::child_name(store, component.as_str())) {
            Some(sd) => {
                let status = sd.status.clone().unwrap_or_default();
                components.push(ComponentStatus {
                    component,
                    ready_replicas: status.ready_replicas,
                    desired_replicas: status.desired_replicas,
                    image: sd.spec.image.clone(),
                });
                if !sd_ready(sd, image) {
                    not_ready.push(component.to_string());
                }
            }
            None => not_ready.push(component.to_string()),
        }
    }
    let dependencies_ready = database.0 && cache.0 && messaging.0 && payment.0;
    let ready = dependencies_ready && not_ready.is_empty() && !migrating;
    let degraded = !failed_jobs.is_empty();
    let dependency = |type_: &str, r: &Readiness| Condition::new(type_, r.0, &r.1, r.2.clone());
    let mut conditions = vec![
        if ready {
            Condition::new(
                "Ready",
                true,
                "AllComponentsReady",
                format!("every component runs {image}"),
            )
        } else if !dependencies_ready {
            Condition::new(
                "Ready",
                false,
                "DependenciesNotReady",
                "waiting for the database, cache, messaging or payment provider",
            )
        } else if migrating {
            Condition::new(
                "Ready",
                false,
                "Migrating",
                format!("running migrations for {image}"),
            )
        } else {
            Condition::new(
                "Ready",
                false,
                "ComponentsNotReady",
                format!("not ready: {}", not_ready.join(", ")),
            )
        },
        Condition::new(
            "Progressing",
            !ready && !degraded,
            if ready {
                "Reconciled"
            } else if migrating {
                "Migrating"
            } else {
                "RollingOut"
            },
            if ready {
                "nothing left to do".to_owned()
            } else {
                format!("converging on {image}")
            },
        ),
        if degraded {
            Condition::new(
                "Degraded",
                true,
                "MigrationFailed",
                format!("migration Job failed: {}", failed_jobs.join(", ")),
            )
        } else {
            Condition::new("Degraded", false, "AsExpected", "nothing has failed")
        },
        dependency("DatabaseReady", database),
        dependency("CacheReady", cache),
        dependency("MessagingReady", messaging),
        dependency("PaymentProviderReady", payment),
    ];
    carry_transition_times(
        &mut conditions,
        &old.conditions,
        store.metadata.generation,
        &now(),
    );
    let phase = if ready {
        StorePhase::Ready
    } else if degraded {
        StorePhase::Degraded
    } else if !dependencies_ready {
        StorePhase::Pending
    } else if migrating {
        StorePhase::Migrating
    } else {
        StorePhase::Progressing
    };
    StoreStatus {
        phase: Some(phase),
        conditions,
        components,
        gateway_url: Some(gateway_url(store)),
        observed_generation: store.metadata.generation,
    }
}

/// Where customers reach the shop.
pub fn gateway_url(store: &Store) -> String {
    match &store.spec.gateway.ingress {
        Some(ingress) => format!("http://{}", ingress.host),
        None => format!(
            "http://{}.{}.svc:8080",
            build::child_name(store, "gateway"),
            store.namespace().unwrap_or_default()
        ),
    }
}

fn suspended_status(store: &Store, before: &StoreStatus) -> StoreStatus {
    let mut status = before.clone();
    status.phase = Some(StorePhase::Suspended);
    let mut conditions: Vec<Condition> = before
        .conditions
        .iter()
        .filter(|c| c.type_ != "Progressing")
        .cloned()
        .collect();
    let mut progressing = vec![Condition::new(
        "Progressing",
        false,
        "Suspended",
        "spec.suspend is set: changes are not applied",
    )];
    carry_transition_times(
        &mut progressing,
        &before.conditions,
        store.metadata.generation,
        &now(),
    );
    conditions.extend(progressing);
    status.conditions = conditions;
    status.observed_generation = store.metadata.generation;
    status
}

async fn patch_status(
    client: &Client,
    namespace: &str,
    store: &Store,
    status: &StoreStatus,
) -> Result<()> {
    let api: Api<Store> = Api::namespaced(client.clone(), namespace);
    let patch = json!({
        "apiVersion": "emporium.dev/v1alpha1",
        "kind": "Store",
        "status": status,
    });
    api.patch_status(
        &store.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store(tag: &str) -> Store {
        serde_json::from_value(json!({
            "apiVersion": "emporium.dev/v1alpha1",
            "kind": "Store",
            "metadata": {"name": "demo", "namespace": "shop", "uid": "store-uid", "generation": 2},
            "spec": {
                "image": {"registry": "ghcr.io/emporium/emporium", "tag": tag},
                "database": {"managed": {}},
                "cache": {"managed": {}},
                "messaging": {"managed": {"storage": {"ephemeral": true}}},
                "paymentProviderRef": {"name": "sandbox"},
            },
        }))
        .unwrap()
    }

    fn running(store: &Store, image: &str) -> BTreeMap<String, ServiceDeployment> {
        Component::ALL
            .iter()
            .map(|c| {
                let spec = build::service_deployment_spec(store, *c, image, None);
                let sd = build::service_deployment(store, spec).unwrap();
                (sd.name_any(), sd)
            })
            .collect()
    }

    /// Each shop setting reaches a service that reads it, under the name
    /// it reads.
    #[test]
    fn shop_settings_reach_the_services_that_read_them() {
        let mut store = store("1.0.0");
        store.spec.shop.currency = "EUR".into();
        let settings = build::settings_config_map(&store).unwrap();
        let data = settings.data.unwrap();
        assert_eq!(data["EMPORIUM_SHOP_CURRENCY"], "EUR");
        assert!(data.contains_key("EMPORIUM_TAX_RATE_BP"));
        let loads_settings = |c: Component| {
            build::service_deployment_spec(&store, c, "img", None)
                .config_maps
                .contains(&"demo-settings".to_string())
        };
        assert!(loads_settings(Component::Cart), "the cart's currency");
        assert!(loads_settings(Component::Orders), "tax and shipping");
    }

    fn completed(mut job: Job) -> Job {
        job.status = Some(
            serde_json::from_value(
                json!({"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}),
            )
            .unwrap(),
        );
        job
    }

    #[test]
    fn a_first_install_waits_for_the_database_then_migrates_before_starting_services_with_a_database()
     {
        let store = store("1.0.0");
        let image = store.spec.image.reference();
        let waiting =
            plan_rollout(&store, &image, false, &BTreeMap::new(), &BTreeMap::new()).unwrap();
        assert!(
            waiting.jobs.is_empty(),
            "no migration before the database is ready"
        );
        let started: Vec<Component> = waiting.images.iter().map(|(c, _)| *c).collect();
        assert_eq!(started, [Component::Gateway, Component::Cart]);
        assert!(waiting.migrating);

        let migrating =
            plan_rollout(&store, &image, true, &BTreeMap::new(), &BTreeMap::new()).unwrap();
        assert_eq!(migrating.jobs.len(), 5);
        let job = &migrating.jobs[0];
        let container = &job
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0];
        assert_eq!(container.args.as_ref().unwrap(), &["migrate", "identity"]);
        assert_eq!(container.image.as_deref(), Some(image.as_str()));
    }

    #[test]
    fn a_new_tag_moves_a_service_only_after_its_migration_completed() {
        let old = store("1.0.0");
        let new = store("2.0.0");
        let old_image = old.spec.image.reference();
        let new_image = new.spec.image.reference();
        let sds = running(&old, &old_image);

        let plan = plan_rollout(&new, &new_image, true, &sds, &BTreeMap::new()).unwrap();
        let images: BTreeMap<Component, String> = plan.images.iter().cloned().collect();
        assert_eq!(
            images[&Component::Gateway],
            new_image,
            "no database, no wait"
        );
        assert_eq!(
            images[&Component::Orders],
            old_image,
            "orders waits for its migration"
        );
        assert!(plan.migrating);

        let orders_job = build::migration_job(&new, Component::Orders, &new_image).unwrap();
        let jobs = BTreeMap::from([(orders_job.name_any(), completed(orders_job))]);
        let plan = plan_rollout(&new, &new_image, true, &sds, &jobs).unwrap();
        let images: BTreeMap<Component, String> = plan.images.iter().cloned().collect();
        assert_eq!(images[&Component::Orders], new_image);
        assert_eq!(images[&Component::Payments], old_image);
    }

    #[test]
    fn managed_stores_use_claims_unless_ephemeral() {
        let store = store("1.0.0");
        let postgres = build::backing(
            &store,
            Backing::Postgres,
            store.spec.database.managed.as_ref().unwrap(),
        )
        .unwrap();
        let spec = postgres.stateful_set.spec.unwrap();
        assert_eq!(
            spec.volume_claim_templates.unwrap()[0]
                .metadata
                .name
                .as_deref(),
            Some("data")
        );
        assert!(
            postgres.config_map.is_some(),
            "the per-service databases init script"
        );
        let rabbit = build::backing(
            &store,
            Backing::RabbitMq,
            store.spec.messaging.managed.as_ref().unwrap(),
        )
        .unwrap();
        let spec = rabbit.stateful_set.spec.unwrap();
        assert!(spec.volume_claim_templates.is_none());
        let volumes = spec.template.spec.unwrap().volumes.unwrap();
        assert!(
            volumes
                .iter()
                .any(|v| v.name == "data" && v.empty_dir.is_some())
        );
    }

    #[test]
    fn each_service_gets_the_urls_it_needs() {
        let store = store("1.0.0");
        let env = |c: Component| {
            build::service_deployment_spec(&store, c, "img", None)
                .env
                .into_iter()
                .map(|e| e.name)
                .collect::<Vec<_>>()
        };
        assert!(env(Component::Gateway).contains(&"EMPORIUM_UPSTREAMS".to_owned()));
        for c in [Component::Identity, Component::Catalog, Component::Gateway] {
            assert!(env(c).contains(&"EMPORIUM_CACHE_URL".to_owned()), "{c}");
        }
        assert!(!env(Component::Orders).contains(&"EMPORIUM_CACHE_URL".to_owned()));
        assert!(!env(Component::Gateway).contains(&"EMPORIUM_DATABASE_URL".to_owned()));
        assert!(env(Component::Cart).contains(&"EMPORIUM_CART_STORE_URL".to_owned()));
        assert!(env(Component::Identity).contains(&"EMPORIUM_JWT_SIGNING_KEY_FILE".to_owned()));
        assert!(env(Component::Orders).contains(&"EMPORIUM_CART_URL".to_owned()));
        let orders = build::service_deployment_spec(&store, Component::Orders, "img", None);
        assert_eq!(orders.config_maps, ["demo-settings"]);
        let database = orders
            .env
            .iter()
            .find(|e| e.name == "EMPORIUM_DATABASE_URL")
            .unwrap();
        assert_eq!(database.secret_key_ref.as_ref().unwrap().key, "orders-url");
    }

    #[test]
    fn an_unchanged_state_computes_an_identical_status() {
        let mut store = store("1.0.0");
        let image = store.spec.image.reference();
        let ready: Readiness = (true, "StatefulSetReady".into(), "ok".into());
        let first = store_status(
            &store,
            &image,
            &BTreeMap::new(),
            [&ready, &ready, &ready, &ready],
            &[],
            false,
        );
        store.status = Some(first.clone());
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let second = store_status(
            &store,
            &image,
            &BTreeMap::new(),
            [&ready, &ready, &ready, &ready],
            &[],
            false,
        );
        assert_eq!(first, second);
        assert_eq!(first.phase, Some(StorePhase::Progressing));
    }
}
