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
use kube::core::NamespaceResourceScope;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Config, Resource, ResourceExt};

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
    pub watched: Watched,
}

/// Which namespaces the operator reconciles: every one (a cluster-wide
/// install), or a list, so that it can run with RoleBindings in those
/// namespaces only (`EMPORIUM_WATCH_NAMESPACES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched {
    All,
    Namespaces(Vec<String>),
}

impl Watched {
    /// A comma-separated list of namespace names; empty means all.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut namespaces: Vec<String> = Vec::new();
        for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !is_namespace_name(name) {
                return Err(format!(
                    "`{name}` is not a namespace name (lowercase letters, digits and '-', \
                     starting and ending with a letter or digit, at most 63 characters)"
                ));
            }
            if !namespaces.iter().any(|n| n == name) {
                namespaces.push(name.to_owned());
            }
        }
        Ok(if namespaces.is_empty() {
            Watched::All
        } else {
            Watched::Namespaces(namespaces)
        })
    }

    /// The namespaces to watch one by one; `None` stands for all at once.
    fn scopes(&self) -> Vec<Option<&str>> {
        match self {
            Watched::All => vec![None],
            Watched::Namespaces(names) => names.iter().map(|n| Some(n.as_str())).collect(),
        }
    }
}

impl std::fmt::Display for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Watched::All => f.write_str("every namespace"),
            Watched::Namespaces(names) => f.write_str(&names.join(", ")),
        }
    }
}

/// An RFC 1123 label, what Kubernetes takes as a namespace's name.
fn is_namespace_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let inner = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.first().is_some_and(inner)
        && bytes.last().is_some_and(inner)
        && bytes.iter().all(|b| inner(b) || *b == b'-')
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
        watched = %settings.watched,
        "leading: starting the controllers"
    );

    let ctx = Context::new(client.clone(), Metrics, settings.identity.clone());
    let controllers = controllers(client, ctx, settings.concurrency, &settings.watched);
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

/// The three controllers for each watched scope, until one stream ends.
pub async fn controllers(client: Client, ctx: Arc<Context>, concurrency: u16, watched: &Watched) {
    let runs = watched.scopes().into_iter().map(|namespace| {
        Box::pin(controllers_in(
            client.clone(),
            ctx.clone(),
            concurrency,
            namespace.map(str::to_owned),
        ))
    });
    futures::future::select_all(runs).await;
}

/// `K` in `namespace`, or in every namespace.
fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// The three controllers over one namespace (or all), until one stream
/// ends. Each watch stays inside that namespace, so namespaced rights are
/// enough.
async fn controllers_in(
    client: Client,
    ctx: Arc<Context>,
    concurrency: u16,
    namespace: Option<String>,
) {
    let ns = namespace.as_deref();
    let managed = || {
        watcher::Config::default()
            .labels(&labels::managed_selector())
            .any_semantic()
    };
    let all = || watcher::Config::default().any_semantic();
    let config = controller::Config::default()
        .concurrency(concurrency)
        .debounce(Duration::from_millis(500));

    let stores = Controller::new(api::<Store>(&client, ns), all()).with_config(config.clone());
    let store_index = stores.store();
    let stores = stores
        .owns(api::<ServiceDeployment>(&client, ns), managed())
        .owns(api::<StatefulSet>(&client, ns), managed())
        .owns(api::<Job>(&client, ns), managed())
        .owns(api::<ConfigMap>(&client, ns), managed())
        .owns(api::<Service>(&client, ns), managed())
        .owns(api::<NetworkPolicy>(&client, ns), managed())
        .owns(api::<Secret>(&client, ns), managed())
        .watches(
            api::<PaymentProvider>(&client, ns),
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

    let sds =
        Controller::new(api::<ServiceDeployment>(&client, ns), all()).with_config(config.clone());
    let sd_index = sds.store();
    let sd_index_too = sd_index.clone();
    let sds = sds
        .owns(api::<Deployment>(&client, ns), managed())
        .owns(api::<Service>(&client, ns), managed())
        .owns(api::<ServiceAccount>(&client, ns), managed())
        .owns(api::<HorizontalPodAutoscaler>(&client, ns), managed())
        .owns(api::<PodDisruptionBudget>(&client, ns), managed())
        .owns(api::<NetworkPolicy>(&client, ns), managed())
        .owns(api::<Ingress>(&client, ns), managed())
        .watches(api::<Secret>(&client, ns), all(), move |secret| {
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
        .watches(api::<ConfigMap>(&client, ns), all(), move |config_map| {
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
        })
        .run(
            reconcilers::service_deployment::reconcile,
            error_policy,
            ctx.clone(),
        )
        .for_each(|result| async move { log_result("ServiceDeployment", result) });

    let providers = Controller::new(api::<PaymentProvider>(&client, ns), all()).with_config(config);
    let provider_index = providers.store();
    let providers = providers
        .watches(api::<Secret>(&client, ns), all(), move |secret| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watched_namespaces_are_a_comma_separated_list_and_empty_means_all() {
        assert_eq!(Watched::parse("").unwrap(), Watched::All);
        assert_eq!(Watched::parse(" , ").unwrap(), Watched::All);
        assert_eq!(
            Watched::parse("shop-a, shop-b,shop-a,").unwrap(),
            Watched::Namespaces(vec!["shop-a".into(), "shop-b".into()])
        );
        assert_eq!(
            Watched::parse("shop-b").unwrap().scopes(),
            vec![Some("shop-b")]
        );
        assert_eq!(Watched::All.scopes(), vec![None]);
    }

    #[test]
    fn a_name_kubernetes_would_refuse_is_named_in_the_error() {
        for bad in ["Shop", "shop_a", "-shop", "shop-", "a.b", &"a".repeat(64)] {
            let error = Watched::parse(&format!("ok,{bad}")).unwrap_err();
            assert!(error.contains(&format!("`{bad}`")), "{bad}: {error}");
        }
        assert!(Watched::parse(&"a".repeat(63)).is_ok());
    }
}
