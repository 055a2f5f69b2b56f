//! Cached responses: product pages, listings and searches, kept in the kit
//! [`Cache`] (Redis in production, memory embedded) for a short TTL.
//!
//! Every key carries the catalogue's generation number. A write bumps the
//! generation after its transaction commits and before it answers, so from
//! then on every reader looks under new keys and nothing cached before the
//! write can be served again. A failing cache is skipped, never an error.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use kit::cache::Cache;
use sha2::{Digest, Sha256};

/// Whether responses are cached (`EMPORIUM_CATALOG_CACHE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CacheMode {
    #[default]
    On,
    Off,
}

const GENERATION: &str = "generation";
/// A cache slower than this is treated as down for the request.
const OPERATION_TIMEOUT: Duration = Duration::from_millis(500);

/// Where a response came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
    /// The cache is off, failing, or not trusted right now.
    Bypass,
}

impl Lookup {
    pub fn as_str(self) -> &'static str {
        match self {
            Lookup::Hit => "hit",
            Lookup::Miss => "miss",
            Lookup::Bypass => "bypass",
        }
    }
}

#[derive(Clone)]
pub struct CatalogCache {
    store: Option<Cache>,
    ttl: Duration,
    /// Set (epoch millis) when a generation bump failed: until then this
    /// process does not read the cache, which may still hold what the write
    /// replaced. Zero when the cache is trusted.
    distrust_until: Arc<AtomicI64>,
}

impl CatalogCache {
    /// `store` should be namespaced for the catalog (`cache.scoped("catalog")`).
    pub fn new(store: Cache, mode: CacheMode, ttl: Duration) -> Self {
        Self {
            store: (mode == CacheMode::On).then_some(store),
            ttl,
            distrust_until: Arc::default(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.store.is_some()
    }

    fn readable(&self) -> Option<&Cache> {
        let store = self.store.as_ref()?;
        let until = self.distrust_until.load(Ordering::Relaxed);
        (until == 0 || kit::clock::now_millis() >= until).then_some(store)
    }

    /// The response under `key`, from the cache or from `load` (and then
    /// remembered for the TTL).
    pub async fn get_or_load<E, F, Fut>(&self, key: &str, load: F) -> Result<(Bytes, Lookup), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
    {
        let Some(store) = self.readable() else {
            return Ok((load().await?.into(), record(Lookup::Bypass)));
        };
        let generation =
            match tokio::time::timeout(OPERATION_TIMEOUT, store.get_counter(GENERATION)).await {
                Ok(Ok(g)) => g,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "catalog cache unavailable; reading the database");
                    return Ok((load().await?.into(), record(Lookup::Bypass)));
                }
                Err(_) => {
                    tracing::warn!("catalog cache timed out; reading the database");
                    return Ok((load().await?.into(), record(Lookup::Bypass)));
                }
            };
        let key = format!("g{generation}:{key}");
        match tokio::time::timeout(OPERATION_TIMEOUT, store.get(&key)).await {
            Ok(Ok(Some(hit))) => return Ok((hit.into(), record(Lookup::Hit))),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "catalog cache unavailable; reading the database");
                return Ok((load().await?.into(), record(Lookup::Bypass)));
            }
            Err(_) => {
                tracing::warn!("catalog cache timed out; reading the database");
                return Ok((load().await?.into(), record(Lookup::Bypass)));
            }
        }
        let value = load().await?;
        match tokio::time::timeout(OPERATION_TIMEOUT, store.set(&key, &value, self.ttl)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot fill the catalog cache"),
            Err(_) => tracing::warn!("catalog cache timed out while filling"),
        }
        Ok((value.into(), record(Lookup::Miss)))
    }

    /// Make every cached response stale. Call after a write commits and
    /// before answering it.
    pub async fn invalidate_all(&self) {
        let Some(store) = &self.store else {
            return;
        };
        let failure = match tokio::time::timeout(OPERATION_TIMEOUT, store.incr(GENERATION)).await {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_string(),
        };
        // Entries of the current generation may hold what was just
        // replaced; stop reading them until they have all expired.
        let until =
            kit::clock::now_millis() + (self.ttl + Duration::from_secs(5)).as_millis() as i64;
        self.distrust_until.fetch_max(until, Ordering::Relaxed);
        metrics::counter!("catalog_cache_invalidation_failures_total").increment(1);
        tracing::warn!(error = %failure, ttl_secs = self.ttl.as_secs(), "cannot invalidate the catalog cache; bypassing it until its entries expire");
    }
}

fn record(lookup: Lookup) -> Lookup {
    metrics::counter!("catalog_cache_lookups_total", "outcome" => lookup.as_str()).increment(1);
    lookup
}

/// A short fixed-length key for a long request description.
pub fn digest(parts: &[u8]) -> String {
    let hash = Sha256::digest(parts);
    hash.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn load(v: &str) -> Result<Vec<u8>, std::convert::Infallible> {
        Ok(v.as_bytes().to_vec())
    }

    #[tokio::test]
    async fn hits_until_invalidated() {
        let cache = CatalogCache::new(Cache::memory("t"), CacheMode::On, Duration::from_secs(60));
        let (v, l) = cache.get_or_load("k", || load("one")).await.unwrap();
        assert_eq!((&v[..], l), (&b"one"[..], Lookup::Miss));
        let (v, l) = cache.get_or_load("k", || load("two")).await.unwrap();
        assert_eq!((&v[..], l), (&b"one"[..], Lookup::Hit));
        cache.invalidate_all().await;
        let (v, l) = cache.get_or_load("k", || load("two")).await.unwrap();
        assert_eq!((&v[..], l), (&b"two"[..], Lookup::Miss));
    }

    #[tokio::test]
    async fn off_means_always_load() {
        let cache = CatalogCache::new(Cache::memory("t"), CacheMode::Off, Duration::from_secs(60));
        cache.get_or_load("k", || load("one")).await.unwrap();
        let (v, l) = cache.get_or_load("k", || load("two")).await.unwrap();
        assert_eq!((&v[..], l), (&b"two"[..], Lookup::Bypass));
    }
}
