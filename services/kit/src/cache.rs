//! Short-lived shared data: Redis in production, memory when embedded.
//! Every key is namespaced by the owning service so two services (or two
//! tests) never collide.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::config::CacheUrl;

#[derive(Clone)]
pub struct Cache {
    namespace: Arc<str>,
    store: Store,
}

#[derive(Clone)]
enum Store {
    Redis(ConnectionManager),
    Memory(moka::future::Cache<String, Entry>),
}

#[derive(Clone)]
struct Entry {
    value: Arc<[u8]>,
    ttl: Duration,
}

struct EntryTtl;

impl Expiry<String, Entry> for EntryTtl {
    fn expire_after_create(&self, _k: &String, v: &Entry, _at: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
    fn expire_after_update(
        &self,
        _k: &String,
        v: &Entry,
        _at: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl Cache {
    pub async fn connect(url: &CacheUrl, namespace: &str) -> Result<Self, CacheError> {
        let store = match url {
            CacheUrl::Redis(u) => {
                let client = redis::Client::open(u.as_str())?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(2)))
                    .set_number_of_retries(1);
                Store::Redis(ConnectionManager::new_with_config(client, config).await?)
            }
            CacheUrl::Memory => Store::Memory(Self::memory_store()),
        };
        Ok(Self {
            namespace: namespace.into(),
            store,
        })
    }

    /// An in-memory cache (embedded mode and unit tests).
    pub fn memory(namespace: &str) -> Self {
        Self {
            namespace: namespace.into(),
            store: Store::Memory(Self::memory_store()),
        }
    }

    fn memory_store() -> moka::future::Cache<String, Entry> {
        moka::future::Cache::builder()
            .max_capacity(100_000)
            .expire_after(EntryTtl)
            .build()
    }

    /// The same store seen under another namespace.
    pub fn scoped(&self, namespace: &str) -> Self {
        Self {
            namespace: format!("{}:{namespace}", self.namespace).into(),
            store: self.store.clone(),
        }
    }

    pub fn is_redis(&self) -> bool {
        matches!(self.store, Store::Redis(_))
    }

    /// The Redis connection, for mechanisms that need a script (the
    /// gateway's shared rate limiter).
    pub fn redis(&self) -> Option<ConnectionManager> {
        match &self.store {
            Store::Redis(c) => Some(c.clone()),
            Store::Memory(_) => None,
        }
    }

    pub fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.namespace)
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let key = self.key(key);
        match &self.store {
            Store::Redis(c) => Ok(c.clone().get(key).await?),
            Store::Memory(m) => Ok(m.get(&key).await.map(|e| e.value.to_vec())),
        }
    }

    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let key = self.key(key);
        match &self.store {
            Store::Redis(c) => {
                let _: () = c.clone().set_ex(key, value, ttl.as_secs().max(1)).await?;
            }
            Store::Memory(m) => {
                m.insert(
                    key,
                    Entry {
                        value: value.into(),
                        ttl,
                    },
                )
                .await
            }
        }
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> Result<(), CacheError> {
        let key = self.key(key);
        match &self.store {
            Store::Redis(c) => {
                let _: () = c.clone().del(key).await?;
            }
            Store::Memory(m) => m.invalidate(&key).await,
        }
        Ok(())
    }

    /// The generation number under `key`: a stamp that changes whenever
    /// what it vouches for changes (`None` until one is set).
    pub async fn generation(&self, key: &str) -> Result<Option<u64>, CacheError> {
        self.generation_at(&self.key(key)).await
    }

    /// A generation that another service named by its full key (see
    /// [`Cache::key`]), in the store this cache shares with it.
    pub async fn generation_at(&self, full_key: &str) -> Result<Option<u64>, CacheError> {
        let raw = match &self.store {
            Store::Redis(c) => c.clone().get::<_, Option<Vec<u8>>>(full_key).await?,
            Store::Memory(m) => m.get(full_key).await.map(|e| e.value.to_vec()),
        };
        Ok(raw.and_then(|v| parse_generation(&v)))
    }

    /// Replace the generation under `key` with a fresh random one. Random,
    /// not counted up: a store that lost its data (a Redis restart) never
    /// hands out a number that copies made before the loss still carry.
    pub async fn new_generation(&self, key: &str) -> Result<u64, CacheError> {
        let generation = fresh_generation();
        self.set(key, generation.to_string().as_bytes(), GENERATION_TTL)
            .await?;
        Ok(generation)
    }

    /// Set a fresh generation under `key` unless one is there; returns the
    /// generation in force.
    pub async fn start_generation(&self, key: &str) -> Result<u64, CacheError> {
        let full = self.key(key);
        let fresh = fresh_generation();
        match &self.store {
            Store::Redis(c) => {
                // SET's reply is ignored: the pipeline answers GET's alone.
                let (current,): (Option<u64>,) = redis::pipe()
                    .cmd("SET")
                    .arg(&full)
                    .arg(fresh)
                    .arg("NX")
                    .arg("EX")
                    .arg(GENERATION_TTL.as_secs())
                    .ignore()
                    .get(&full)
                    .query_async(&mut c.clone())
                    .await?;
                Ok(current.unwrap_or(fresh))
            }
            Store::Memory(m) => {
                let entry = m
                    .entry(full)
                    .or_insert_with(std::future::ready(Entry {
                        value: fresh.to_string().into_bytes().into(),
                        ttl: GENERATION_TTL,
                    }))
                    .await;
                Ok(parse_generation(&entry.into_value().value).unwrap_or(fresh))
            }
        }
    }

    /// Add one to a counter that lives `window` from its first increment;
    /// returns the new count and the seconds left in the window.
    pub async fn incr_in_window(
        &self,
        key: &str,
        window: Duration,
    ) -> Result<(i64, u64), CacheError> {
        let key = self.key(key);
        match &self.store {
            Store::Redis(c) => {
                let (count, ttl): (i64, i64) = redis::pipe()
                    .atomic()
                    .incr(&key, 1)
                    .cmd("EXPIRE")
                    .arg(&key)
                    .arg(window.as_secs().max(1))
                    .arg("NX")
                    .ignore()
                    .ttl(&key)
                    .query_async(&mut c.clone())
                    .await?;
                Ok((count, ttl.max(1) as u64))
            }
            Store::Memory(m) => {
                let entry = m
                    .entry(key)
                    .and_upsert_with(|existing| {
                        let (count, started) = existing
                            .map(|e| decode_counter(&e.into_value().value))
                            .unwrap_or((0, now_secs()));
                        std::future::ready(Entry {
                            value: encode_counter(count + 1, started).into(),
                            ttl: window.saturating_sub(Duration::from_secs(
                                now_secs().saturating_sub(started),
                            )),
                        })
                    })
                    .await;
                let (count, started) = decode_counter(&entry.into_value().value);
                let left = window
                    .as_secs()
                    .saturating_sub(now_secs().saturating_sub(started))
                    .max(1);
                Ok((count, left))
            }
        }
    }

    /// Read a counter without changing it.
    pub async fn counter(&self, key: &str) -> Result<(i64, u64), CacheError> {
        let full = self.key(key);
        match &self.store {
            Store::Redis(c) => {
                let (count, ttl): (Option<i64>, i64) = redis::pipe()
                    .get(&full)
                    .ttl(&full)
                    .query_async(&mut c.clone())
                    .await?;
                Ok((count.unwrap_or(0), ttl.max(0) as u64))
            }
            Store::Memory(m) => Ok(m
                .get(&full)
                .await
                .map(|e| {
                    let (count, started) = decode_counter(&e.value);
                    let left = e
                        .ttl
                        .as_secs()
                        .saturating_sub(now_secs().saturating_sub(started));
                    (count, left)
                })
                .unwrap_or((0, 0))),
        }
    }

    pub async fn ping(&self) -> Result<(), String> {
        match &self.store {
            Store::Redis(c) => redis::cmd("PING")
                .query_async::<String>(&mut c.clone())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Store::Memory(_) => Ok(()),
        }
    }
}

/// Generations outlive any cached copy they vouch for.
const GENERATION_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

fn fresh_generation() -> u64 {
    // Below 2^53, so the number survives a trip through JSON or Lua.
    rand::random::<u64>() >> 11
}

fn parse_generation(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn encode_counter(count: i64, started: u64) -> Vec<u8> {
    let mut v = count.to_le_bytes().to_vec();
    v.extend_from_slice(&started.to_le_bytes());
    v
}

fn decode_counter(v: &[u8]) -> (i64, u64) {
    if v.len() != 16 {
        return (0, now_secs());
    }
    let mut c = [0u8; 8];
    let mut s = [0u8; 8];
    c.copy_from_slice(&v[..8]);
    s.copy_from_slice(&v[8..]);
    (i64::from_le_bytes(c), u64::from_le_bytes(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_get_set_delete() {
        let c = Cache::memory("t");
        assert_eq!(c.get("a").await.unwrap(), None);
        c.set("a", b"1", Duration::from_secs(60)).await.unwrap();
        assert_eq!(c.get("a").await.unwrap(), Some(b"1".to_vec()));
        c.delete("a").await.unwrap();
        assert_eq!(c.get("a").await.unwrap(), None);
    }

    #[tokio::test]
    async fn memory_counter_counts_within_window() {
        let c = Cache::memory("t");
        for i in 1..=3 {
            let (n, left) = c
                .incr_in_window("k", Duration::from_secs(60))
                .await
                .unwrap();
            assert_eq!(n, i);
            assert!(left > 0 && left <= 60);
        }
        assert_eq!(c.counter("k").await.unwrap().0, 3);
    }

    #[tokio::test]
    async fn generations_start_once_and_change_on_demand() {
        let c = Cache::memory("t");
        assert_eq!(c.generation("gen").await.unwrap(), None);
        let first = c.start_generation("gen").await.unwrap();
        assert_eq!(c.start_generation("gen").await.unwrap(), first);
        assert_eq!(c.generation("gen").await.unwrap(), Some(first));
        assert_eq!(c.generation_at("t:gen").await.unwrap(), Some(first));
        let next = c.new_generation("gen").await.unwrap();
        assert_ne!(next, first);
        assert_eq!(c.generation("gen").await.unwrap(), Some(next));
    }

    #[tokio::test]
    async fn namespaces_do_not_collide() {
        let a = Cache::memory("a");
        let b = a.scoped("b");
        a.set("k", b"a", Duration::from_secs(60)).await.unwrap();
        assert_eq!(b.get("k").await.unwrap(), None);
    }
}
