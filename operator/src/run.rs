//! Starting the operator: client, leader election, the three controllers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::client::ClientBuilder;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Config, ResourceExt};

use crate::children::service_deployment::{config_maps_used, secrets_used};
use crate::controller::{self as reconcilers, Context, error_policy};
use crate::crd::{PaymentProvider, ServiceDeployment, Store};
use crate::labels;
use crate::lease::LeaderLease;
use crate::telemetry::{self, Metrics};

/// How the operator runs.
pub struct Settings {
    pub listen: SocketAddr,
    pub lease_namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub concurrency: u16,
}

/// A client that counts its writes.
pub async fn client() -> anyhow::Result<Client> {
    let config = Config::infer().await?;
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&tower::util::MapRequestLayer::new(telemetry::count_writes))
        .build())
}

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let prometheus = telemetry::install_metrics()?;
    let leader = Arc::new(AtomicBool::new(false));
    let server = tokio::spawn(telemetry::serve(
        settings.listen,
        prometheus,
        leader.clone(),
    ));

    let client = client().await?;
    let lease = LeaderLease::new(
        client.clone(),
        &settings.lease_namespace,
        &settings.lease_name,
        &settings.identity,
        Duration::from_secs(15),
    );
    tracing::info!(identity = lease.identity(), "waiting to lead");
    tokio::select! {
        () = lease.acquire(Duration::from_secs(2)) => {}
        () = shutdown() => return Ok(()),
    }
    leader.store(true, Ordering::Relaxed);
    tracing::info!(
        identity = lease.identity(),
        "leading: starting the controllers"
    );

    let ctx = Context::new(client.clone(), Metrics, settings.identity.clone());
    let controllers = controllers(client, ctx, settings.concurrency);
    tokio::select! {
        () = controllers => tracing::warn!("the controllers stopped"),
        () = lease.keep(Duration::from_secs(5)) => {
            // Another replica may act from now on: stop at once.
            anyhow::bail!("lost the leader lease");
        }
        () = shutdown() => {
            tracing::info!("shutting down");
            lease.release().await;
        }
        result = server => {
            result??;
        }
    }
    Ok(())
}

async fn shutdown() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// The three controllers, until one stream ends.
pub async fn controllers(client: Client, ctx: Arc<Context>, concurrency: u16) {
    let managed = || {
        watcher::Config::default()
            .labels(&labels::managed_selector())
            .any_semantic()
    };
    let all = || watcher::Config::default().any_semantic();
    let config = controller::Config::default()
        .concurrency(concurrency)
        .debounce(Duration::from_millis(500));

    let stores =
        Controller::new(Api::<Store>::all(client.clone()), all()).with_config(config.clone());
    let store_index = stores.store();
    let stores = stores
        .owns(Api::<ServiceDeployment>::all(client.clone()), managed())
        .owns(Api::<StatefulSet>::all(client.clone()), managed())
        .owns(Api::<Job>::all(client.clone()), managed())
        .owns(Api::<ConfigMap>::all(client.clone()), managed())
        .owns(Api::<Service>::all(client.clone()), managed())
        .owns(Api::<NetworkPolicy>::all(client.clone()), managed())
        .owns(Api::<Secret>::all(client.clone()), managed())
        .watches(
            Api::<PaymentProvider>::all(client.clone()),
            all(),
            move |provider| {
                let namespace = provider.namespace();
                store_index
                    .state()
                    .into_iter()
                    .filter(|store| {
                        store.namespace() == namespace
                            && store.spec.payment_provider_ref.name == provider.name_any()
                    })
                    .map(|store| ObjectRef::from_obj(store.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .run(reconcilers::store::reconcile, error_policy, ctx.clone())
        .for_each(|result| async move { log_result("Store", result) });

    let sds = Controller::new(Api::<ServiceDeployment>::all(client.clone()), all())
        .with_config(config.clone());
    let sd_index = sds.store();
    let sd_index_too = sd_index.clone();
    let sds = sds
        .owns(Api::<Deployment>::all(client.clone()), managed())
        .owns(Api::<Service>::all(client.clone()), managed())
        .owns(Api::<ServiceAccount>::all(client.clone()), managed())
        .owns(
            Api::<HorizontalPodAutoscaler>::all(client.clone()),
            managed(),
        )
        .owns(Api::<PodDisruptionBudget>::all(client.clone()), managed())
        .owns(Api::<NetworkPolicy>::all(client.clone()), managed())
        .owns(Api::<Ingress>::all(client.clone()), managed())
        .watches(Api::<Secret>::all(client.clone()), all(), move |secret| {
            let namespace = secret.namespace();
            let name = secret.name_any();
            sd_index
                .state()
                .into_iter()
                .filter(|sd| {
                    sd.namespace() == namespace && secrets_used(sd).iter().any(|(s, _)| *s == name)
                })
                .map(|sd| ObjectRef::from_obj(sd.as_ref()))
                .collect::<Vec<_>>()
        })
        .watches(
            Api::<ConfigMap>::all(client.clone()),
            all(),
            move |config_map| {
                let namespace = config_map.namespace();
                let name = config_map.name_any();
                sd_index_too
                    .state()
                    .into_iter()
                    .filter(|sd| {
                        sd.namespace() == namespace
                            && config_maps_used(sd).iter().any(|(c, _)| *c == name)
                    })
                    .map(|sd| ObjectRef::from_obj(sd.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .run(
            reconcilers::service_deployment::reconcile,
            error_policy,
            ctx.clone(),
        )
        .for_each(|result| async move { log_result("ServiceDeployment", result) });

    let providers =
        Controller::new(Api::<PaymentProvider>::all(client.clone()), all()).with_config(config);
    let provider_index = providers.store();
    let providers = providers
        .watches(Api::<Secret>::all(client.clone()), all(), move |secret| {
            let namespace = secret.namespace();
            let name = secret.name_any();
            provider_index
                .state()
                .into_iter()
                .filter(|p| p.namespace() == namespace && p.spec.secret_ref.name == name)
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect::<Vec<_>>()
        })
        .run(reconcilers::payment_provider::reconcile, error_policy, ctx)
        .for_each(|result| async move { log_result("PaymentProvider", result) });

    tokio::select! {
        () = stores => {}
        () = sds => {}
        () = providers => {}
    }
}

fn log_result<T: std::fmt::Debug, E: std::fmt::Display>(kind: &str, result: Result<T, E>) {
    match result {
        Ok(object) => tracing::debug!(kind, ?object, "reconciled"),
        Err(error) => tracing::debug!(kind, %error, "reconcile did not complete"),
    }
}
