//! Cached responses: product pages, listings and searches, kept in the kit
//! [`Cache`] (Redis in production, memory embedded) for a short TTL.
//!
//! Every key carries the catalogue's generation number. A write sets a new
//! generation after its transaction commits and before it answers, so from
//! then on every reader looks under new keys and nothing cached before the
//! write can be served again. The same generation vouches for the copies
//! the gateway keeps ([`kit::edge_cache`]). A failing cache is skipped,
//! never an error.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use kit::cache::Cache;
use kit::edge_cache::Validity;
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

/// A response body and where it came from.
pub struct Cached {
    pub body: Bytes,
    pub lookup: Lookup,
    /// Set when the body was read or stored under a generation: the
    /// gateway may keep it while that generation lasts.
    pub validity: Option<Validity>,
}

#[derive(Clone)]
pub struct CatalogCache {
    store: Option<Cache>,
    ttl: Duration,
    /// Set (epoch millis) when a generation bump failed: until then this
    /// process does not read the cache, which may still hold what the write
    /// replaced. Zero when the cache is trusted.
    distrust_until: Arc<AtomicI64>,
    /// The generation's full key, as the gateway is told it.
    generation_key: Arc<str>,
}

impl CatalogCache {
    /// `store` should be namespaced for the catalog (`cache.scoped("catalog")`).
    pub fn new(store: Cache, mode: CacheMode, ttl: Duration) -> Self {
        Self {
            generation_key: store.key(GENERATION).into(),
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

    /// Give the catalogue a generation if the cache has none (a new or
    /// emptied cache), so responses can be vouched for before any write.
    pub async fn start_generation(&self) {
        let Some(store) = &self.store else {
            return;
        };
        match tokio::time::timeout(OPERATION_TIMEOUT, store.start_generation(GENERATION)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot start the catalog cache generation"),
            Err(_) => tracing::warn!("catalog cache timed out starting its generation"),
        }
    }

    /// The response under `key`, from the cache or from `load` (and then
    /// remembered for the TTL).
    pub async fn get_or_load<E, F, Fut>(&self, key: &str, load: F) -> Result<Cached, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
    {
        let bypass = |body: Vec<u8>| Cached {
            body: body.into(),
            lookup: record(Lookup::Bypass),
            validity: None,
        };
        let Some(store) = self.readable() else {
            return Ok(bypass(load().await?));
        };
        let generation = match tokio::time::timeout(
            OPERATION_TIMEOUT,
            store.generation_at(&self.generation_key),
        )
        .await
        {
            Ok(Ok(Some(g))) => g,
            Ok(Ok(None)) => {
                self.start_generation().await;
                return Ok(bypass(load().await?));
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "catalog cache unavailable; reading the database");
                return Ok(bypass(load().await?));
            }
            Err(_) => {
                tracing::warn!("catalog cache timed out; reading the database");
                return Ok(bypass(load().await?));
            }
        };
        let validity = Some(Validity {
            generation_key: self.generation_key.to_string(),
            generation,
            max_age: self.ttl,
        });
        let key = format!("g{generation}:{key}");
        match tokio::time::timeout(OPERATION_TIMEOUT, store.get(&key)).await {
            Ok(Ok(Some(hit))) => {
                return Ok(Cached {
                    body: hit.into(),
                    lookup: record(Lookup::Hit),
                    validity,
                });
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "catalog cache unavailable; reading the database");
                return Ok(bypass(load().await?));
            }
            Err(_) => {
                tracing::warn!("catalog cache timed out; reading the database");
                return Ok(bypass(load().await?));
            }
        }
        let value = load().await?;
        match tokio::time::timeout(OPERATION_TIMEOUT, store.set(&key, &value, self.ttl)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot fill the catalog cache"),
            Err(_) => tracing::warn!("catalog cache timed out while filling"),
        }
        Ok(Cached {
            body: value.into(),
            lookup: record(Lookup::Miss),
            validity,
        })
    }

    /// Make every cached response stale. Call after a write commits and
    /// before answering it.
    pub async fn invalidate_all(&self) {
        let Some(store) = &self.store else {
            return;
        };
        let failure =
            match tokio::time::timeout(OPERATION_TIMEOUT, store.new_generation(GENERATION)).await {
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
        // Others (the gateway, other replicas) still trust the old
        // generation: keep trying to replace it until the cache answers.
        let (store, ttl) = (store.clone(), self.ttl);
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(100);
            let deadline = tokio::time::Instant::now() + ttl;
            while tokio::time::Instant::now() < deadline {
                tokio::time::sleep(wait).await;
                if let Ok(Ok(_)) =
                    tokio::time::timeout(OPERATION_TIMEOUT, store.new_generation(GENERATION)).await
                {
                    tracing::info!("catalog cache generation replaced after an earlier failure");
                    return;
                }
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        });
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
        let cache = CatalogCache::new(
            Cache::memory("t").scoped("catalog"),
            CacheMode::On,
            Duration::from_secs(60),
        );
        cache.start_generation().await;
        let c = cache.get_or_load("k", || load("one")).await.unwrap();
        assert_eq!((&c.body[..], c.lookup), (&b"one"[..], Lookup::Miss));
        let first = c.validity.expect("vouched for by a generation");
        assert_eq!(first.generation_key, "t:catalog:generation");
        let c = cache.get_or_load("k", || load("two")).await.unwrap();
        assert_eq!((&c.body[..], c.lookup), (&b"one"[..], Lookup::Hit));
        assert_eq!(c.validity.as_ref(), Some(&first));
        cache.invalidate_all().await;
        let c = cache.get_or_load("k", || load("two")).await.unwrap();
        assert_eq!((&c.body[..], c.lookup), (&b"two"[..], Lookup::Miss));
        assert_ne!(c.validity.unwrap().generation, first.generation);
    }

    #[tokio::test]
    async fn off_means_always_load() {
        let cache = CatalogCache::new(Cache::memory("t"), CacheMode::Off, Duration::from_secs(60));
        cache.start_generation().await;
        cache.get_or_load("k", || load("one")).await.unwrap();
        let c = cache.get_or_load("k", || load("two")).await.unwrap();
        assert_eq!((&c.body[..], c.lookup), (&b"two"[..], Lookup::Bypass));
        assert_eq!(c.validity, None);
    }
}
