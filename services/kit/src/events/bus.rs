use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::amqp::AmqpBus;
use super::envelope::Envelope;
use super::memory::MemoryBus;
use super::sqlite::SqliteBus;
use crate::config::BusUrl;

/// Names of the exchanges and queues; tests give each run its own prefix.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The durable topic exchange every event is published to.
    pub exchange: String,
    /// Let the broker delete a queue unused this long (`x-expires`): for
    /// throwaway topologies such as tests'. `None` in production.
    pub unused_queue_ttl: Option<std::time::Duration>,
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            exchange: "emporium.events".into(),
            unused_queue_ttl: None,
        }
    }
}

impl Topology {
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.exchange)
    }

    /// The durable queue of one consuming service for one event.
    pub fn queue(&self, consumer: &str, event_type: &str) -> String {
        format!("{}.{consumer}.{event_type}", self.exchange)
    }

    pub fn dead_letter_queue(&self, queue: &str) -> String {
        format!("{queue}.dlq")
    }
}

/// How a consumer retries a failing handler before dead-lettering.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth another try (a database hiccup, a peer briefly down).
    #[error("transient: {0}")]
    Transient(String),
    /// Will never succeed (unparseable payload): dead-letter at once.
    #[error("poison: {0}")]
    Poison(String),
    /// Something every event needs is down (the database, the payment
    /// provider): not this event's fault, so it is retried until that is
    /// back, without counting attempts, and never dead-lettered.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl HandlerError {
    pub fn transient(e: impl std::fmt::Display) -> Self {
        HandlerError::Transient(e.to_string())
    }
    pub fn poison(e: impl std::fmt::Display) -> Self {
        HandlerError::Poison(e.to_string())
    }
    pub fn unavailable(e: impl std::fmt::Display) -> Self {
        HandlerError::Unavailable(e.to_string())
    }
}

impl From<sqlx::Error> for HandlerError {
    fn from(e: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&e) {
            HandlerError::Unavailable(e.to_string())
        } else {
            HandlerError::Transient(e.to_string())
        }
    }
}

/// Reacts to one delivered event. Must be idempotent: delivery is
/// at-least-once (see [`super::inbox`]).
pub trait EventHandler: Send + Sync + 'static {
    fn handle(&self, event: Envelope) -> BoxFuture<'_, Result<(), HandlerError>>;
}

impl<F, Fut> EventHandler for F
where
    F: Fn(Envelope) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    fn handle(&self, event: Envelope) -> BoxFuture<'_, Result<(), HandlerError>> {
        Box::pin(self(event))
    }
}

/// One consuming service's interest in one event type.
#[derive(Clone)]
pub struct Subscription {
    pub consumer: String,
    pub event_type: String,
    pub handler: Arc<dyn EventHandler>,
    pub retry: RetryPolicy,
}

impl Subscription {
    pub fn new(consumer: &str, event_type: &str, handler: impl EventHandler) -> Self {
        Self {
            consumer: consumer.into(),
            event_type: event_type.into(),
            handler: Arc::new(handler),
            retry: RetryPolicy::default(),
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}

/// A message that exhausted its attempts.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub queue: String,
    pub envelope: Option<Envelope>,
    pub raw: Vec<u8>,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("message broker: {0}")]
    Broker(String),
    #[error("the broker did not confirm the message")]
    NotConfirmed,
    #[error("cannot encode event: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Carries events between services.
#[derive(Clone)]
pub enum EventBus {
    Amqp(AmqpBus),
    /// Durable, in one SQLite file: embedded mode.
    Sqlite(SqliteBus),
    /// Gone with the process: unit tests and throwaway single services.
    Memory(MemoryBus),
}

impl EventBus {
    pub async fn connect(url: &BusUrl, topology: Topology) -> Result<Self, BusError> {
        match url {
            BusUrl::Amqp(u) => Ok(EventBus::Amqp(AmqpBus::connect(u, topology).await?)),
            BusUrl::Sqlite(path) => Ok(EventBus::Sqlite(
                SqliteBus::open(std::path::Path::new(path), topology).await?,
            )),
            BusUrl::Memory => Ok(EventBus::Memory(MemoryBus::new(topology))),
        }
    }

    pub fn memory() -> Self {
        EventBus::Memory(MemoryBus::new(Topology::default()))
    }

    pub fn topology(&self) -> &Topology {
        match self {
            EventBus::Amqp(b) => b.topology(),
            EventBus::Sqlite(b) => b.topology(),
            EventBus::Memory(b) => b.topology(),
        }
    }

    /// Publish and wait for the broker's confirm (persistent message).
    pub async fn publish(&self, event: &Envelope) -> Result<(), BusError> {
        match self {
            EventBus::Amqp(b) => b.publish(event).await,
            EventBus::Sqlite(b) => b.publish(event).await,
            EventBus::Memory(b) => b.publish(event).await,
        }
    }

    /// Publish several events and wait for all their confirms; the
    /// result says, per event, whether the broker has it.
    pub async fn publish_all(&self, events: &[Envelope]) -> Vec<Result<(), BusError>> {
        match self {
            EventBus::Amqp(b) => b.publish_all(events).await,
            EventBus::Sqlite(b) => b.publish_all(events).await,
            EventBus::Memory(b) => b.publish_all(events).await,
        }
    }

    /// Declare the subscription's queue and consume it until `shutdown`.
    pub async fn subscribe(
        &self,
        subscription: Subscription,
        shutdown: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, BusError> {
        match self {
            EventBus::Amqp(b) => b.subscribe(subscription, shutdown).await,
            EventBus::Sqlite(b) => b.subscribe(subscription, shutdown).await,
            EventBus::Memory(b) => Ok(b.subscribe(subscription, shutdown)),
        }
    }

    /// Messages in a dead-letter queue (peeked, not removed).
    pub async fn dead_letters(&self, queue: &str) -> Result<Vec<DeadLetter>, BusError> {
        match self {
            EventBus::Amqp(b) => b.dead_letters(queue).await,
            EventBus::Sqlite(b) => b.dead_letters(queue).await,
            EventBus::Memory(b) => Ok(b.dead_letters(queue)),
        }
    }

    /// Move every message of a dead-letter queue back to the exchange.
    pub async fn replay_dead_letters(&self, queue: &str) -> Result<usize, BusError> {
        match self {
            EventBus::Amqp(b) => b.replay_dead_letters(queue).await,
            EventBus::Sqlite(b) => b.replay_dead_letters(queue).await,
            EventBus::Memory(b) => b.replay_dead_letters(queue).await,
        }
    }

    pub async fn ping(&self) -> Result<(), String> {
        match self {
            EventBus::Amqp(b) => b.ping().await,
            EventBus::Sqlite(b) => b.ping().await,
            EventBus::Memory(_) => Ok(()),
        }
    }
}

/// What to do with a delivery once its handler has run.
#[derive(Debug)]
pub(crate) enum Disposition {
    Ack,
    DeadLetter(String),
    /// Shutting down mid-retry: give the message back to the broker.
    Requeue,
}

/// Run the subscription's handler with retries and backoff.
pub(crate) async fn handle_with_retries(
    sub: &Subscription,
    event: &Envelope,
    shutdown: &CancellationToken,
) -> Disposition {
    let mut attempt = 1;
    // Retries while something is down, counted apart from attempts.
    let mut waits = 0;
    loop {
        let outcome = event
            .context()
            .scope(sub.handler.handle(event.clone()))
            .await;
        match outcome {
            Ok(()) => return Disposition::Ack,
            Err(HandlerError::Unavailable(reason)) => {
                waits += 1;
                tracing::warn!(event_id = %event.id, event_type = %event.event_type, consumer = %sub.consumer, waits, %reason, "cannot handle the event while this is down; waiting");
                tokio::select! {
                    _ = tokio::time::sleep(sub.retry.backoff(waits)) => {}
                    _ = shutdown.cancelled() => return Disposition::Requeue,
                }
            }
            Err(HandlerError::Poison(reason)) => {
                tracing::error!(event_id = %event.id, event_type = %event.event_type, consumer = %sub.consumer, %reason, "poison event");
                return Disposition::DeadLetter(reason);
            }
            Err(HandlerError::Transient(reason)) if attempt >= sub.retry.max_attempts => {
                tracing::error!(event_id = %event.id, event_type = %event.event_type, consumer = %sub.consumer, attempt, %reason, "event handler gave up");
                return Disposition::DeadLetter(reason);
            }
            Err(HandlerError::Transient(reason)) => {
                tracing::warn!(event_id = %event.id, event_type = %event.event_type, consumer = %sub.consumer, attempt, %reason, "event handler failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(sub.retry.backoff(attempt)) => {}
                    _ = shutdown.cancelled() => return Disposition::Requeue,
                }
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn failing(times: u32, error: fn() -> HandlerError) -> (Subscription, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let sub = Subscription::new("test", "thing.happened", move |_event: Envelope| {
            let calls = counted.clone();
            async move {
                if calls.fetch_add(1, Ordering::SeqCst) < times {
                    Err(error())
                } else {
                    Ok(())
                }
            }
        })
        .with_retry(RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        });
        (sub, calls)
    }

    fn event() -> Envelope {
        Envelope::new("test", "thing.happened", serde_json::json!({})).unwrap()
    }

    #[tokio::test]
    async fn a_handler_failing_on_its_own_is_dead_lettered_after_its_attempts() {
        let (sub, calls) = failing(10, || HandlerError::transient("constraint"));
        let done = handle_with_retries(&sub, &event(), &CancellationToken::new()).await;
        assert!(matches!(done, Disposition::DeadLetter(_)), "{done:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_outage_is_waited_out_however_long_it_lasts() {
        let (sub, calls) = failing(10, || HandlerError::unavailable("connection refused"));
        let done = handle_with_retries(&sub, &event(), &CancellationToken::new()).await;
        assert!(matches!(done, Disposition::Ack), "{done:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 11);
    }

    #[tokio::test]
    async fn shutting_down_during_an_outage_gives_the_event_back() {
        let (sub, _) = failing(u32::MAX, || HandlerError::unavailable("connection refused"));
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            stop.cancel();
        });
        let done = handle_with_retries(&sub, &event(), &shutdown).await;
        assert!(matches!(done, Disposition::Requeue), "{done:?}");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(700),
        };
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(3), Duration::from_millis(400));
        assert_eq!(p.backoff(4), Duration::from_millis(700));
    }
}
