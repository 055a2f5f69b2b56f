//! Domain events: the envelope, the bus that carries it (RabbitMQ, a
//! SQLite file in embedded mode, or in process), the transactional outbox that publishes it, and the inbox that
//! makes consumers idempotent.

mod amqp;
mod bus;
mod envelope;
pub mod inbox;
mod memory;
pub mod outbox;
mod schema;
mod sqlite;

pub use bus::{
    DeadLetter, EventBus, EventHandler, HandlerError, RetryPolicy, Subscription, Topology,
};
pub use envelope::Envelope;
pub use outbox::{Outbox, OutboxRelay, Unwritten};
pub use schema::ensure_schema;
