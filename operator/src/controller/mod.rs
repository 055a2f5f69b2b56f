//! One kube-runtime Controller per kind, sharing one [`Context`].

pub mod payment_provider;
pub mod service_deployment;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};

use crate::error::Error;
use crate::labels::MANAGER;
use crate::telemetry::Metrics;

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, metrics: Metrics, instance: String) -> Arc<Context> {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: Some(instance),
        };
        Arc::new(Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            failures: Mutex::default(),
        })
    }

    /// Publishes an Event about `object`; a failure to record is only logged.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(%error, reason, "cannot record an event");
        }
    }

    fn succeeded(&self, key: &str) {
        self.failures.lock().unwrap().remove(key);
    }

    /// 5 s, 10 s, 20 s … up to 5 min.
    fn backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap();
        let count = failures.entry(key.to_owned()).or_insert(0);
        *count = (*count + 1).min(16);
        backoff_after(*count)
    }
}

/// The wait after `failures` consecutive failures.
pub fn backoff_after(failures: u32) -> Duration {
    let seconds = 5u64.saturating_mul(1 << failures.saturating_sub(1).min(10));
    Duration::from_secs(seconds.min(300))
}

fn key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// Times a reconcile, counts it, and resets the backoff on success.
pub async fn measured<K, F>(
    object: Arc<K>,
    ctx: Arc<Context>,
    reconcile: F,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
    F: Future<Output = Result<Action, Error>>,
{
    let kind = K::kind(&()).to_string();
    let started = Instant::now();
    let result = reconcile.await;
    ctx.metrics.reconciled(&kind, started.elapsed());
    match &result {
        Ok(_) => ctx.succeeded(&key(object.as_ref())),
        Err(error) => ctx.metrics.failed(&kind, error.metric_label()),
    }
    result
}

/// The shared error policy: log, then retry with exponential backoff.
pub fn error_policy<K: Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let wait = ctx.backoff(&key(object.as_ref()));
    tracing::warn!(
        kind = K::kind(&()).as_ref(),
        name = object.name_any(),
        namespace = object.namespace().unwrap_or_default(),
        %error,
        retry_in = ?wait,
        "reconcile failed"
    );
    Action::requeue(wait)
}

/// Now, as conditions write it.
pub fn now() -> String {
    Timestamp::now()
        .round(jiff_seconds())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn jiff_seconds() -> k8s_openapi::jiff::Unit {
    k8s_openapi::jiff::Unit::Second
}

/// How long an object that is not yet ready waits for the next look, should
/// no watched change arrive first.
pub const NOT_READY_RECHECK: Duration = Duration::from_secs(30);
/// The periodic re-check of a converged object (reads only).
pub const RESYNC: Duration = Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff_after(1), Duration::from_secs(5));
        assert_eq!(backoff_after(2), Duration::from_secs(10));
        assert_eq!(backoff_after(4), Duration::from_secs(40));
        assert_eq!(backoff_after(12), Duration::from_secs(300));
    }
}

#[cfg(test)]
mod mock_tests;
