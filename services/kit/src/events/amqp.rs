//! RabbitMQ: one durable topic exchange, one durable queue per consuming
//! service and event, a dead-letter exchange with a `.dlq` queue per queue.
//! Messages are persistent and published with confirms; deliveries are
//! acknowledged by hand after the handler has committed.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::Confirmation;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::bus::{BusError, DeadLetter, Disposition, Subscription, Topology, handle_with_retries};
use super::envelope::Envelope;

const PREFETCH: u16 = 32;
/// Longest a connection, a declaration, a publish or its confirm may take.
/// lapin has no timeouts of its own: a broker that stops while a connection
/// is being opened, or before it confirms, can leave the caller waiting for
/// ever (an outbox relay that never publishes again).
const BROKER_TIMEOUT: Duration = Duration::from_secs(15);

fn broker_timeout(what: &str) -> BusError {
    BusError::Broker(format!(
        "{what}: no answer from the broker within {} s",
        BROKER_TIMEOUT.as_secs()
    ))
}

#[derive(Clone)]
pub struct AmqpBus {
    uri: Arc<str>,
    topology: Topology,
    publisher: Arc<Mutex<Option<(Connection, Channel)>>>,
}

fn broker(e: impl std::fmt::Display) -> BusError {
    BusError::Broker(e.to_string())
}

impl AmqpBus {
    pub async fn connect(uri: &str, topology: Topology) -> Result<Self, BusError> {
        let bus = Self {
            uri: uri.into(),
            topology,
            publisher: Arc::default(),
        };
        bus.publisher_channel().await?;
        Ok(bus)
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    async fn open(&self) -> Result<(Connection, Channel), BusError> {
        let opening = async {
            let conn = Connection::connect(&self.uri, ConnectionProperties::default())
                .await
                .map_err(broker)?;
            let channel = conn.create_channel().await.map_err(broker)?;
            self.declare_exchanges(&channel).await?;
            Ok((conn, channel))
        };
        tokio::time::timeout(BROKER_TIMEOUT, opening)
            .await
            .map_err(|_| broker_timeout("connecting"))?
    }

    async fn declare_exchanges(&self, channel: &Channel) -> Result<(), BusError> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                self.topology.exchange.as_str().into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(broker)?;
        channel
            .exchange_declare(
                self.topology.dead_letter_exchange().as_str().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(broker)
    }

    /// The confirm-mode channel for publishing, reopened after a failure.
    async fn publisher_channel(&self) -> Result<Channel, BusError> {
        let mut guard = self.publisher.lock().await;
        if let Some((conn, ch)) = guard.as_ref()
            && conn.status().connected()
            && ch.status().connected()
        {
            return Ok(ch.clone());
        }
        let (conn, ch) = self.open().await?;
        tokio::time::timeout(
            BROKER_TIMEOUT,
            ch.confirm_select(ConfirmSelectOptions::default()),
        )
        .await
        .map_err(|_| broker_timeout("confirm mode"))?
        .map_err(broker)?;
        *guard = Some((conn, ch.clone()));
        Ok(ch)
    }

    async fn forget_publisher(&self) {
        if let Some((conn, _)) = self.publisher.lock().await.take() {
            let _ =
                tokio::time::timeout(BROKER_TIMEOUT, conn.close(0, "reconnecting".into())).await;
        }
    }

    fn properties(event: &Envelope) -> BasicProperties {
        let mut headers = FieldTable::default();
        if let Some(tp) = &event.traceparent {
            headers.insert(
                "traceparent".into(),
                AMQPValue::LongString(tp.as_str().into()),
            );
        }
        let mut props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(event.id.to_string().as_str().into())
            .with_type(event.event_type.as_str().into())
            .with_headers(headers);
        if let Some(c) = &event.correlation_id {
            props = props.with_correlation_id(c.as_str().into());
        }
        props
    }

    pub async fn publish(&self, event: &Envelope) -> Result<(), BusError> {
        self.publish_to(&self.topology.exchange, event.routing_key(), event)
            .await
    }

    /// Publish `events` back to back, then wait for their confirms
    /// together: the broker syncs persistent messages to disk in groups,
    /// so one confirm at a time caps a publisher at one disk sync per
    /// message. The result says, per event, whether the broker has it.
    pub async fn publish_all(&self, events: &[Envelope]) -> Vec<Result<(), BusError>> {
        let channel = match self.publisher_channel().await {
            Ok(c) => c,
            Err(e) => {
                let reason = e.to_string();
                return events
                    .iter()
                    .map(|_| Err(BusError::Broker(reason.clone())))
                    .collect();
            }
        };
        // One deadline for the whole batch: past it, whatever is not
        // confirmed counts as not published (its outbox row is sent again).
        let deadline = tokio::time::Instant::now() + BROKER_TIMEOUT;
        let mut pending = Vec::with_capacity(events.len());
        for event in events {
            let sent = match serde_json::to_vec(event) {
                Ok(body) => tokio::time::timeout_at(
                    deadline,
                    channel.basic_publish(
                        self.topology.exchange.as_str().into(),
                        event.routing_key().into(),
                        BasicPublishOptions::default(),
                        &body,
                        Self::properties(event),
                    ),
                )
                .await
                .map_err(|_| broker_timeout("publishing"))
                .and_then(|sent| sent.map_err(broker)),
                Err(e) => Err(BusError::Encode(e)),
            };
            pending.push(sent);
        }
        let mut results = Vec::with_capacity(events.len());
        let mut lost = false;
        for sent in pending {
            let result = match sent {
                Ok(confirm) => match tokio::time::timeout_at(deadline, confirm).await {
                    Ok(Ok(Confirmation::Ack(_))) => Ok(()),
                    Ok(Ok(_)) => Err(BusError::NotConfirmed),
                    Ok(Err(e)) => Err(broker(e)),
                    Err(_) => Err(broker_timeout("awaiting the confirm")),
                },
                Err(e) => Err(e),
            };
            lost |= matches!(result, Err(BusError::Broker(_)));
            results.push(result);
        }
        if lost {
            self.forget_publisher().await;
        }
        results
    }

    async fn publish_to(
        &self,
        exchange: &str,
        routing_key: &str,
        event: &Envelope,
    ) -> Result<(), BusError> {
        let body = serde_json::to_vec(event)?;
        let channel = self.publisher_channel().await?;
        let publishing = async {
            channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions::default(),
                    &body,
                    Self::properties(event),
                )
                .await
                .map_err(broker)?
                .await
                .map_err(broker)
        };
        let outcome = tokio::time::timeout(BROKER_TIMEOUT, publishing)
            .await
            .unwrap_or_else(|_| Err(broker_timeout("publishing")));
        match outcome {
            Ok(Confirmation::Ack(_)) => Ok(()),
            Ok(_) => Err(BusError::NotConfirmed),
            Err(e) => {
                self.forget_publisher().await;
                Err(e)
            }
        }
    }

    async fn declare_queue(
        &self,
        channel: &Channel,
        queue: &str,
        event_type: &str,
    ) -> Result<(), BusError> {
        let dlx = self.topology.dead_letter_exchange();
        let dlq = self.topology.dead_letter_queue(queue);
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let mut expiring = FieldTable::default();
        if let Some(ttl) = self.topology.unused_queue_ttl {
            expiring.insert(
                "x-expires".into(),
                AMQPValue::LongLongInt(ttl.as_millis() as i64),
            );
        }
        channel
            .queue_declare(dlq.as_str().into(), durable, expiring.clone())
            .await
            .map_err(broker)?;
        channel
            .queue_bind(
                dlq.as_str().into(),
                dlx.as_str().into(),
                queue.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker)?;
        let mut args = expiring;
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(dlx.as_str().into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(queue.into()),
        );
        channel
            .queue_declare(queue.into(), durable, args)
            .await
            .map_err(broker)?;
        channel
            .queue_bind(
                queue.into(),
                self.topology.exchange.as_str().into(),
                event_type.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker)
    }

    pub async fn subscribe(
        &self,
        sub: Subscription,
        shutdown: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, BusError> {
        let queue = self.topology.queue(&sub.consumer, &sub.event_type);
        // Declare before returning, so nothing published from now on is
        // missed even if consuming starts later.
        let (conn, channel) = self.open().await?;
        tokio::time::timeout(
            BROKER_TIMEOUT,
            self.declare_queue(&channel, &queue, &sub.event_type),
        )
        .await
        .map_err(|_| broker_timeout("declaring the queue"))??;
        let bus = self.clone();
        Ok(tokio::spawn(async move {
            let mut first = Some((conn, channel));
            let mut backoff = Duration::from_millis(200);
            while !shutdown.is_cancelled() {
                let opened = match first.take() {
                    Some(c) => Ok(c),
                    None => match bus.open().await {
                        Ok((conn, ch)) => tokio::time::timeout(
                            BROKER_TIMEOUT,
                            bus.declare_queue(&ch, &queue, &sub.event_type),
                        )
                        .await
                        .unwrap_or_else(|_| Err(broker_timeout("declaring the queue")))
                        .map(|_| (conn, ch)),
                        Err(e) => Err(e),
                    },
                };
                match opened {
                    Ok((conn, channel)) => {
                        backoff = Duration::from_millis(200);
                        if let Err(e) = consume(&channel, &queue, &sub, &shutdown).await {
                            tracing::warn!(%queue, error = %e, "consumer stopped; reconnecting");
                        }
                        let _ = conn.close(0, "consumer done".into()).await;
                    }
                    Err(e) => {
                        tracing::warn!(%queue, error = %e, "cannot reach the broker; retrying");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }))
    }

    pub async fn dead_letters(&self, queue: &str) -> Result<Vec<DeadLetter>, BusError> {
        let (conn, channel) = self.open().await?;
        if !queue_exists(&conn, &self.topology.dead_letter_queue(queue)).await? {
            return Ok(Vec::new());
        }
        let dlq = self.topology.dead_letter_queue(queue);
        let mut letters = Vec::new();
        // Peek: take without acking, then close the channel so the broker
        // puts every message back.
        while let Some(msg) = channel
            .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .map_err(broker)?
        {
            letters.push(DeadLetter {
                queue: queue.to_string(),
                envelope: serde_json::from_slice(&msg.delivery.data).ok(),
                raw: msg.delivery.data.clone(),
                reason: death_reason(&msg.delivery.properties),
            });
        }
        let _ = channel.close(0, "peeked".into()).await;
        let _ = conn.close(0, "peeked".into()).await;
        Ok(letters)
    }

    pub async fn replay_dead_letters(&self, queue: &str) -> Result<usize, BusError> {
        let (conn, channel) = self.open().await?;
        if !queue_exists(&conn, &self.topology.dead_letter_queue(queue)).await? {
            return Ok(0);
        }
        let dlq = self.topology.dead_letter_queue(queue);
        // Only the messages there now: one that fails again is back in the
        // dead-letter queue at once and would otherwise be replayed again
        // and again by this very loop.
        let waiting = channel
            .queue_declare(
                dlq.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(broker)?
            .message_count();
        let mut replayed = 0;
        for _ in 0..waiting {
            let Some(msg) = channel
                .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: false })
                .await
                .map_err(broker)?
            else {
                break;
            };
            match serde_json::from_slice::<Envelope>(&msg.delivery.data) {
                Ok(event) => {
                    // Straight back to the queue that failed it (default
                    // exchange), not to every subscriber of the event.
                    self.publish_to("", queue, &event).await?;
                    msg.delivery
                        .ack(BasicAckOptions::default())
                        .await
                        .map_err(broker)?;
                    replayed += 1;
                }
                Err(_) => {
                    // Unparseable: leave it where it is.
                    msg.delivery
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..Default::default()
                        })
                        .await
                        .map_err(broker)?;
                    break;
                }
            }
        }
        let _ = conn.close(0, "replayed".into()).await;
        Ok(replayed)
    }

    pub async fn ping(&self) -> Result<(), String> {
        self.publisher_channel()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// A passive declare on a throwaway channel: the broker closes a channel
/// that names a missing queue, so never ask on one still needed.
async fn queue_exists(conn: &Connection, queue: &str) -> Result<bool, BusError> {
    let probe = conn.create_channel().await.map_err(broker)?;
    let found = probe
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .is_ok();
    if found {
        let _ = probe.close(0, "probed".into()).await;
    }
    Ok(found)
}

/// Resolves once `channel` can no longer be used.
async fn channel_lost(channel: &Channel) {
    while channel.status().connected() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn death_reason(props: &BasicProperties) -> String {
    props
        .headers()
        .as_ref()
        .and_then(|h| {
            h.inner()
                .get(&ShortString::from("x-first-death-reason"))
                .cloned()
        })
        .map(|v| match v {
            AMQPValue::LongString(s) => s.to_string(),
            other => format!("{other:?}"),
        })
        .unwrap_or_else(|| "unknown".into())
}

async fn consume(
    channel: &Channel,
    queue: &str,
    sub: &Subscription,
    shutdown: &CancellationToken,
) -> Result<(), BusError> {
    let starting = async {
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .map_err(broker)?;
        channel
            .basic_consume(
                queue.into(),
                format!("{}-{}", sub.consumer, uuid::Uuid::now_v7())
                    .as_str()
                    .into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker)
    };
    let consumer = tokio::time::timeout(BROKER_TIMEOUT, starting)
        .await
        .map_err(|_| broker_timeout("starting to consume"))??;
    let stream = consumer.take_until(shutdown.cancelled());
    let failure: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let work = stream.for_each_concurrent(PREFETCH as usize, |delivery| {
        let failure = failure.clone();
        async move {
            let delivery = match delivery {
                Ok(d) => d,
                Err(e) => {
                    *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    return;
                }
            };
            let disposition = match serde_json::from_slice::<Envelope>(&delivery.data) {
                Ok(event) => handle_with_retries(sub, &event, shutdown).await,
                Err(e) => {
                    tracing::error!(%queue, error = %e, "undecodable message");
                    Disposition::DeadLetter(format!("undecodable: {e}"))
                }
            };
            let acked = match disposition {
                Disposition::Ack => delivery.ack(BasicAckOptions::default()).await,
                Disposition::DeadLetter(_) => {
                    delivery.reject(BasicRejectOptions { requeue: false }).await
                }
                Disposition::Requeue => {
                    delivery
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..Default::default()
                        })
                        .await
                }
            };
            if let Err(e) = acked {
                // The channel died: the broker will redeliver; the
                // inbox makes the second delivery harmless.
                tracing::warn!(%queue, error = %e, "cannot acknowledge");
            }
        }
    });
    // When the connection dies under it, lapin may leave an acknowledgement
    // waiting for ever, and with it this consumer. So stop waiting once the
    // channel is gone: what is in flight is dropped unacknowledged (the
    // broker redelivers it; the inbox makes that harmless) and the caller
    // reconnects.
    tokio::select! {
        () = work => {}
        () = channel_lost(channel) => {
            return Err(BusError::Broker("the channel to the broker was lost".into()));
        }
    }
    match failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
        Some(e) => Err(BusError::Broker(e)),
        None if shutdown.is_cancelled() => Ok(()),
        None => Err(BusError::Broker("consumer cancelled by the broker".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "broker" that takes connections and never says a word, as one that
    /// is stopping can: connecting gives up instead of waiting for ever.
    #[tokio::test]
    async fn a_broker_that_never_answers_is_given_up_on() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let uri = format!("amqp://guest:guest@{addr}/%2f");
        let connecting = AmqpBus::connect(&uri, Topology::default());
        let outcome = tokio::time::timeout(BROKER_TIMEOUT * 2, connecting)
            .await
            .expect("connecting must give up on its own");
        match outcome {
            Err(BusError::Broker(message)) => {
                assert!(message.contains("no answer"), "{message}")
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("connected to a silent server"),
        }
    }
}
