//! Carts in Redis: `<prefix>:cart:user:<id>` or `<prefix>:cart:guest:<id>`
//! is a hash of product id → line JSON. Every change is one atomic command
//! or Lua script that also sets the key's expiry, so concurrent requests on
//! one cart never lose an update and a cart lives `ttl` after its last
//! change. (The merge script touches two keys; on a Redis Cluster they
//! would need a shared hash tag.)

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use redis::Script;
use redis::aio::ConnectionManager;
use uuid::Uuid;

use super::{AddOutcome, Retention, SetOutcome, StoreError};
use crate::domain::line::in_cart_order;
use crate::domain::{CartOwner, Line, MAX_QUANTITY};

/// KEYS[1] cart. ARGV: product id, new line JSON, quantity to add, most a
/// line may hold, stock, most lines a cart may hold, TTL in ms.
/// Replies `{"ok", field, line, …}` or `{"cap"|"stock"|"full", in_cart}`.
static ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local current = redis.call('HGET', KEYS[1], ARGV[1])
local line
local in_cart = 0
if current then
  line = cjson.decode(current)
  in_cart = line.quantity
elseif redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[6]) then
  return {'full', '0'}
else
  line = cjson.decode(ARGV[2])
end
local quantity = in_cart + tonumber(ARGV[3])
if quantity > tonumber(ARGV[4]) then return {'cap', tostring(in_cart)} end
if quantity > tonumber(ARGV[5]) then return {'stock', tostring(in_cart)} end
line.quantity = quantity
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(line))
redis.call('PEXPIRE', KEYS[1], ARGV[7])
local reply = redis.call('HGETALL', KEYS[1])
table.insert(reply, 1, 'ok')
return reply
"#,
    )
});

/// KEYS[1] cart. ARGV: product id, quantity, most it may be raised to, TTL
/// in ms. Replies `{"ok", field, line, …}`, `{"missing", "0"}` or
/// `{"refused", in_cart}`.
static SET_QUANTITY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return {'missing', '0'} end
local line = cjson.decode(current)
local quantity = tonumber(ARGV[2])
if quantity > line.quantity and quantity > tonumber(ARGV[3]) then
  return {'refused', tostring(line.quantity)}
end
line.quantity = quantity
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(line))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local reply = redis.call('HGETALL', KEYS[1])
table.insert(reply, 1, 'ok')
return reply
"#,
    )
});

/// KEYS[1] the cart merged into, KEYS[2] the cart merged from. ARGV: most
/// a line may hold, most lines a cart may hold, TTL in ms. Replies the
/// merged cart's `HGETALL`.
static MERGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local from = redis.call('HGETALL', KEYS[2])
local cap = tonumber(ARGV[1])
local room = tonumber(ARGV[2]) - redis.call('HLEN', KEYS[1])
for i = 1, #from, 2 do
  local mine = redis.call('HGET', KEYS[1], from[i])
  if mine then
    local line = cjson.decode(mine)
    line.quantity = math.min(line.quantity + cjson.decode(from[i + 1]).quantity, cap)
    redis.call('HSET', KEYS[1], from[i], cjson.encode(line))
  elseif room > 0 then
    redis.call('HSET', KEYS[1], from[i], from[i + 1])
    room = room - 1
  end
end
redis.call('DEL', KEYS[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('HGETALL', KEYS[1])
"#,
    )
});

/// KEYS[1] cart, KEYS[2] the event's processed marker; ARGV[1] marker ttl (ms).
static CLEAR_ONCE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
",
    )
});

#[derive(Clone)]
pub struct RedisCarts {
    conn: ConnectionManager,
    prefix: Arc<str>,
    retention: Retention,
}

impl RedisCarts {
    pub fn new(conn: ConnectionManager, prefix: &str, retention: Retention) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
            retention,
        }
    }

    /// The Redis key of `owner`'s cart.
    pub fn key(&self, owner: CartOwner) -> String {
        format!("{}:cart:{}", self.prefix, owner.storage_key())
    }

    #[tracing::instrument(skip_all, err)]
    pub async fn lines(&self, owner: CartOwner) -> Result<Vec<Line>, StoreError> {
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.key(owner))
            .query_async(&mut self.conn.clone())
            .await?;
        decode(fields.into_values())
    }

    #[tracing::instrument(skip_all, err)]
    pub async fn add(
        &self,
        owner: CartOwner,
        line: Line,
        stock: i64,
    ) -> Result<AddOutcome, StoreError> {
        let json = serde_json::to_string(&line).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let reply: Vec<String> = ADD
            .key(self.key(owner))
            .arg(line.product_id.to_string())
            .arg(json)
            .arg(line.quantity)
            .arg(MAX_QUANTITY)
            .arg(stock)
            .arg(self.retention.max_lines)
            .arg(self.retention.ttl_millis())
            .invoke_async(&mut self.conn.clone())
            .await?;
        let (status, rest) = split_status(reply)?;
        Ok(match status.as_str() {
            "ok" => AddOutcome::Added(decode_pairs(rest)?),
            "cap" => AddOutcome::OverQuantityCap {
                in_cart: in_cart(&rest)?,
            },
            "stock" => AddOutcome::NotEnoughStock {
                in_cart: in_cart(&rest)?,
            },
            "full" => AddOutcome::CartFull,
            other => return Err(StoreError::Corrupt(format!("script replied `{other}`"))),
        })
    }

    #[tracing::instrument(skip_all, err)]
    pub async fn set_quantity(
        &self,
        owner: CartOwner,
        product_id: Uuid,
        quantity: i64,
        allowed: i64,
    ) -> Result<SetOutcome, StoreError> {
        let reply: Vec<String> = SET_QUANTITY
            .key(self.key(owner))
            .arg(product_id.to_string())
            .arg(quantity)
            .arg(allowed)
            .arg(self.retention.ttl_millis())
            .invoke_async(&mut self.conn.clone())
            .await?;
        let (status, rest) = split_status(reply)?;
        Ok(match status.as_str() {
            "ok" => SetOutcome::Updated(decode_pairs(rest)?),
            "missing" => SetOutcome::NotInCart,
            "refused" => SetOutcome::Refused {
                in_cart: in_cart(&rest)?,
            },
            other => return Err(StoreError::Corrupt(format!("script replied `{other}`"))),
        })
    }

    #[tracing::instrument(skip_all, err)]
    pub async fn remove(
        &self,
        owner: CartOwner,
        product_id: Uuid,
    ) -> Result<Vec<Line>, StoreError> {
        let key = self.key(owner);
        let (fields,): (HashMap<String, String>,) = redis::pipe()
            .atomic()
            .hdel(&key, product_id.to_string())
            .ignore()
            .pexpire(&key, self.retention.ttl_millis())
            .ignore()
            .hgetall(&key)
            .query_async(&mut self.conn.clone())
            .await?;
        decode(fields.into_values())
    }

    #[tracing::instrument(skip_all, err)]
    pub async fn clear(&self, owner: CartOwner) -> Result<(), StoreError> {
        let _: () = redis::cmd("DEL")
            .arg(self.key(owner))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Empty `owner`'s cart because of event `event_id`, once: the claim and
    /// the delete happen in one script, so a redelivered event cannot empty
    /// a cart the customer has started filling again. `false`: seen before.
    pub async fn clear_once(&self, owner: CartOwner, event_id: Uuid) -> Result<bool, StoreError> {
        let claimed: i64 = CLEAR_ONCE
            .key(self.key(owner))
            .key(format!("{}:processed:{event_id}", self.prefix))
            .arg(self.retention.ttl.as_millis().max(1) as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(claimed == 1)
    }

    #[tracing::instrument(skip_all, err)]
    pub async fn merge(&self, from: CartOwner, into: CartOwner) -> Result<Vec<Line>, StoreError> {
        let reply: Vec<String> = MERGE
            .key(self.key(into))
            .key(self.key(from))
            .arg(MAX_QUANTITY)
            .arg(self.retention.max_lines)
            .arg(self.retention.ttl_millis())
            .invoke_async(&mut self.conn.clone())
            .await?;
        decode_pairs(reply)
    }

    pub async fn ping(&self) -> Result<(), String> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn.clone())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

fn split_status(mut reply: Vec<String>) -> Result<(String, Vec<String>), StoreError> {
    if reply.is_empty() {
        return Err(StoreError::Corrupt("empty script reply".into()));
    }
    let status = reply.remove(0);
    Ok((status, reply))
}

fn in_cart(rest: &[String]) -> Result<i64, StoreError> {
    rest.first()
        .and_then(|n| n.parse::<f64>().ok())
        .map(|n| n as i64)
        .ok_or_else(|| StoreError::Corrupt("script reply without a quantity".into()))
}

/// `HGETALL` as a flat list: field, value, field, value, …
fn decode_pairs(flat: Vec<String>) -> Result<Vec<Line>, StoreError> {
    decode(flat.into_iter().skip(1).step_by(2))
}

fn decode(values: impl Iterator<Item = String>) -> Result<Vec<Line>, StoreError> {
    let lines = values
        .map(|json| {
            serde_json::from_str::<Line>(&json).map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(in_cart_order(lines))
}
