//! Leader election through a `coordination.k8s.io/v1` Lease: one replica
//! acts, the others wait until its lease expires.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;

/// The lock.
pub struct LeaderLease {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

/// What a try to lead found.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// This replica holds the lease (newly or still).
    Leading,
    /// Another replica holds a live lease.
    Held(String),
}

impl LeaderLease {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> LeaderLease {
        LeaderLease {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Acquires or renews the lease. Writes go through optimistic
    /// concurrency (resourceVersion), so two replicas never both win.
    pub async fn try_lead(&self) -> Result<Attempt, kube::Error> {
        let now = Timestamp::now();
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            let lease: Lease = serde_json::from_value(json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name},
                "spec": self.spec(now, now, 0),
            }))
            .expect("a Lease");
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Leading),
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    Ok(Attempt::Held("unknown".into()))
                }
                Err(error) => Err(error),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let renewed = spec
            .renew_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let lasts = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
        let expired = renewed + lasts < now;
        let mine = holder == self.identity;
        if !mine && !expired && !holder.is_empty() {
            return Ok(Attempt::Held(holder));
        }
        let acquired = if mine {
            spec.acquire_time.as_ref().map(|t| t.0).unwrap_or(now)
        } else {
            now
        };
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
        let mut updated = lease.clone();
        updated.spec = Some(
            serde_json::from_value(self.spec(acquired, now, transitions)).expect("a LeaseSpec"),
        );
        match self
            .api
            .replace(&self.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(Attempt::Leading),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Held(holder)),
            Err(error) => Err(error),
        }
    }

    fn spec(&self, acquired: Timestamp, renewed: Timestamp, transitions: i32) -> serde_json::Value {
        json!({
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration.as_secs(),
            "acquireTime": MicroTime(acquired),
            "renewTime": MicroTime(renewed),
            "leaseTransitions": transitions,
        })
    }

    /// Gives the lease up (on shutdown), so a standby takes over at once
    /// instead of waiting for it to expire.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!("released the leader lease"),
            Err(error) => tracing::warn!(%error, "cannot release the leader lease"),
        }
    }

    /// Waits until this replica leads.
    pub async fn acquire(&self, retry: Duration) {
        let mut last_holder = String::new();
        loop {
            match self.try_lead().await {
                Ok(Attempt::Leading) => return,
                Ok(Attempt::Held(holder)) => {
                    if holder != last_holder {
                        tracing::info!(%holder, "another replica leads; standing by");
                        last_holder = holder;
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot read the leader lease"),
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// Renews every `every` until a renewal fails for longer than the lease
    /// lasts; returns then (the caller stops acting).
    pub async fn keep(&self, every: Duration) {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(every).await;
            match self.try_lead().await {
                Ok(Attempt::Leading) => last_renewed = tokio::time::Instant::now(),
                Ok(Attempt::Held(holder)) => {
                    tracing::error!(%holder, "lost the leader lease");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot renew the leader lease");
                    if last_renewed.elapsed() > self.duration {
                        return;
                    }
                }
            }
        }
    }
}
