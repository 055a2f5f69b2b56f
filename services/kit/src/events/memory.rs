//! An in-process bus (`memory://`): same topic routing, retries and
//! dead-lettering as RabbitMQ, but whatever it holds is gone with the
//! process, so it serves unit tests and throwaway single services; embedded
//! mode keeps its events in a SQLite file (`super::sqlite`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::bus::{BusError, DeadLetter, Disposition, Subscription, Topology, handle_with_retries};
use super::envelope::{Envelope, topic_matches};

#[derive(Clone)]
pub struct MemoryBus {
    topology: Topology,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    bindings: Vec<Binding>,
    dead: HashMap<String, Vec<DeadLetter>>,
}

struct Binding {
    queue: String,
    pattern: String,
    tx: mpsc::UnboundedSender<Envelope>,
}

impl MemoryBus {
    pub fn new(topology: Topology) -> Self {
        Self {
            topology,
            inner: Arc::default(),
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub async fn publish(&self, event: &Envelope) -> Result<(), BusError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.bindings.retain(|b| !b.tx.is_closed());
        for b in inner
            .bindings
            .iter()
            .filter(|b| topic_matches(&b.pattern, event.routing_key()))
        {
            let _ = b.tx.send(event.clone());
        }
        Ok(())
    }

    pub async fn publish_all(&self, events: &[Envelope]) -> Vec<Result<(), BusError>> {
        let mut results = Vec::with_capacity(events.len());
        for event in events {
            results.push(self.publish(event).await);
        }
        results
    }

    pub fn subscribe(
        &self,
        sub: Subscription,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let queue = self.topology.queue(&sub.consumer, &sub.event_type);
        let (tx, mut rx) = mpsc::unbounded_channel();
        {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.bindings.push(Binding {
                queue: queue.clone(),
                pattern: sub.event_type.clone(),
                tx,
            });
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    e = rx.recv() => match e { Some(e) => e, None => break },
                    _ = shutdown.cancelled() => break,
                };
                match handle_with_retries(&sub, &event, &shutdown).await {
                    Disposition::Ack | Disposition::Requeue => {}
                    Disposition::DeadLetter(reason) => {
                        let raw = serde_json::to_vec(&event).unwrap_or_default();
                        let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
                        inner
                            .dead
                            .entry(queue.clone())
                            .or_default()
                            .push(DeadLetter {
                                queue: queue.clone(),
                                envelope: Some(event),
                                raw,
                                reason,
                            });
                    }
                }
            }
        })
    }

    pub fn dead_letters(&self, queue: &str) -> Vec<DeadLetter> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.dead.get(queue).cloned().unwrap_or_default()
    }

    pub async fn replay_dead_letters(&self, queue: &str) -> Result<usize, BusError> {
        let letters = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.dead.remove(queue).unwrap_or_default()
        };
        let mut replayed = 0;
        for letter in letters {
            if let Some(event) = letter.envelope {
                // Back to the dead queue's own consumer only, as RabbitMQ's
                // replay does through the queue's binding.
                let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
                for b in inner.bindings.iter().filter(|b| b.queue == queue) {
                    let _ = b.tx.send(event.clone());
                }
                replayed += 1;
            }
        }
        Ok(replayed)
    }
}
