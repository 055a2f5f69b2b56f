//! Where carts live. Redis in production: one hash per cart, one field per
//! product holding the line as JSON, read-modify-writes done by Lua scripts
//! so concurrent requests never lose an update, and the key's expiry pushed
//! back on every write. Embedded (`emporium up`), carts live in the
//! service's SQL database so they survive a restart: portable SQL through
//! `kit::db::Database`, an `expires_at` column filtered on read, and a
//! background purge.
//!
//! Both stores keep the same rules: a line holds at most
//! [`MAX_QUANTITY`](crate::domain::MAX_QUANTITY), a cart at most
//! `max_lines` products, and a refused change leaves the cart (and its
//! expiry) exactly as it was.

pub mod redis;
pub mod sql;

use std::time::Duration;

use uuid::Uuid;

use crate::domain::{CartOwner, Line};
pub use redis::RedisCarts;
pub use sql::SqlCarts;

/// How long a cart lives after its last change, and how many products it
/// may hold.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub ttl: Duration,
    pub max_lines: usize,
}

impl Retention {
    pub(crate) fn ttl_millis(&self) -> i64 {
        i64::try_from(self.ttl.as_millis())
            .unwrap_or(i64::MAX)
            .max(1)
    }
}

/// The outcome of adding to a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome {
    /// Done; the cart's lines after the change.
    Added(Vec<Line>),
    /// The line would hold more than the per-line maximum.
    OverQuantityCap { in_cart: i64 },
    /// The line would hold more than the catalogue has in stock.
    NotEnoughStock { in_cart: i64 },
    /// The cart already holds as many different products as it may.
    CartFull,
}

/// The outcome of setting a line's quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetOutcome {
    Updated(Vec<Line>),
    NotInCart,
    /// An increase beyond what was allowed.
    Refused {
        in_cart: i64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("a stored cart line cannot be read: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// The store is down or overloaded, rather than something being wrong.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Redis(e) => {
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_refusal()
                    || e.is_connection_dropped()
            }
            StoreError::Sql(e) => kit::db::is_unavailable(e),
            StoreError::Corrupt(_) => false,
        }
    }
}

/// The cart store chosen at start-up.
#[derive(Clone)]
pub enum CartStore {
    Redis(RedisCarts),
    Sql(SqlCarts),
}

impl CartStore {
    /// The cart's lines in the order they were added (none if it does not
    /// exist or has expired).
    pub async fn lines(&self, owner: CartOwner) -> Result<Vec<Line>, StoreError> {
        match self {
            CartStore::Redis(s) => s.lines(owner).await,
            CartStore::Sql(s) => s.lines(owner).await,
        }
    }

    /// Add `line.quantity` of `line.product_id`: a new line keeps `line`'s
    /// name and price; an existing one keeps its own and grows. Refused if
    /// the line would exceed the per-line maximum or `stock`.
    pub async fn add(
        &self,
        owner: CartOwner,
        line: Line,
        stock: i64,
    ) -> Result<AddOutcome, StoreError> {
        match self {
            CartStore::Redis(s) => s.add(owner, line, stock).await,
            CartStore::Sql(s) => s.add(owner, line, stock).await,
        }
    }

    /// Set a line's quantity. Lowering is always allowed; raising only up
    /// to `allowed` (the stock the catalogue reported, or 0 when it could
    /// not vouch for the product).
    pub async fn set_quantity(
        &self,
        owner: CartOwner,
        product_id: Uuid,
        quantity: i64,
        allowed: i64,
    ) -> Result<SetOutcome, StoreError> {
        match self {
            CartStore::Redis(s) => s.set_quantity(owner, product_id, quantity, allowed).await,
            CartStore::Sql(s) => s.set_quantity(owner, product_id, quantity, allowed).await,
        }
    }

    /// Remove a line if it is there; the cart's lines afterwards.
    pub async fn remove(
        &self,
        owner: CartOwner,
        product_id: Uuid,
    ) -> Result<Vec<Line>, StoreError> {
        match self {
            CartStore::Redis(s) => s.remove(owner, product_id).await,
            CartStore::Sql(s) => s.remove(owner, product_id).await,
        }
    }

    /// Empty the cart.
    pub async fn clear(&self, owner: CartOwner) -> Result<(), StoreError> {
        match self {
            CartStore::Redis(s) => s.clear(owner).await,
            CartStore::Sql(s) => s.clear(owner).await,
        }
    }

    /// Empty a customer's cart (once their order is placed).
    pub async fn clear_for_user(&self, user_id: Uuid) -> Result<(), StoreError> {
        self.clear(CartOwner::Customer(user_id)).await
    }

    /// Empty a customer's cart because their order was placed, once per
    /// event however often it is delivered. `false`: seen before.
    pub async fn clear_for_order(
        &self,
        user_id: Uuid,
        event: &kit::events::Envelope,
    ) -> Result<bool, StoreError> {
        match self {
            CartStore::Redis(s) => s.clear_once(CartOwner::Customer(user_id), event.id).await,
            CartStore::Sql(s) => s.clear_once(CartOwner::Customer(user_id), event).await,
        }
    }

    /// Fold `from` into `into` and delete `from`: quantities of a product
    /// in both add up (capped at the per-line maximum, keeping `into`'s
    /// price), other lines move over while `into` has room.
    pub async fn merge(&self, from: CartOwner, into: CartOwner) -> Result<Vec<Line>, StoreError> {
        match self {
            CartStore::Redis(s) => s.merge(from, into).await,
            CartStore::Sql(s) => s.merge(from, into).await,
        }
    }

    /// Delete expired carts (Redis expires keys itself). Returns how many.
    pub async fn purge_expired(&self) -> Result<u64, StoreError> {
        match self {
            CartStore::Redis(_) => Ok(0),
            CartStore::Sql(s) => s.purge_expired().await,
        }
    }

    pub fn needs_purging(&self) -> bool {
        matches!(self, CartStore::Sql(_))
    }

    pub async fn ping(&self) -> Result<(), String> {
        match self {
            CartStore::Redis(s) => s.ping().await,
            CartStore::Sql(s) => s.ping().await,
        }
    }
}
