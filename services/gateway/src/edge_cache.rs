//! Copies of public responses that their service vouched for with a
//! generation in the shared cache ([`kit::edge_cache`]). A copy is served
//! only after a read of that generation, made for the request at hand,
//! returns the number it was kept under: a service that changed what the
//! copy shows has set a new number before answering the change, so no copy
//! outlives a write that has returned. Without an answer from the shared
//! cache the request goes to the service.
//!
//! Requests waiting on the same generation share reads: one read answers
//! every request that arrived before it was sent, which is all a request
//! needs (any write that returned before it arrived is visible to such a
//! read), so a busy gateway sends about one read per round trip instead
//! of one per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Body as _;
use kit::cache::Cache;
use kit::edge_cache::{HEADER, Validity};
use moka::Expiry;
use tokio::sync::oneshot;

/// Larger bodies stream through and are not kept.
const LARGEST_COPY: u64 = 512 * 1024;
/// A shared cache slower than this counts as down for the request.
const GENERATION_READ_TIMEOUT: Duration = Duration::from_millis(500);

struct KeptCopy {
    validity: Validity,
    content_type: Option<HeaderValue>,
    body: Bytes,
}

struct UntilMaxAge;

impl Expiry<String, Arc<KeptCopy>> for UntilMaxAge {
    fn expire_after_create(
        &self,
        _k: &String,
        v: &Arc<KeptCopy>,
        _at: Instant,
    ) -> Option<Duration> {
        Some(v.validity.max_age)
    }
}

pub struct EdgeCache {
    copies: moka::future::Cache<String, Arc<KeptCopy>>,
    generations: Arc<GenerationReads>,
}

impl EdgeCache {
    /// `generations` must be the store the services set their generations
    /// in; copies take at most `max_bytes` of memory.
    pub fn new(generations: Cache, max_bytes: u64) -> Self {
        Self {
            copies: moka::future::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|k: &String, v: &Arc<KeptCopy>| {
                    u32::try_from(k.len() + v.body.len() + 256).unwrap_or(u32::MAX)
                })
                .expire_after(UntilMaxAge)
                .build(),
            generations: Arc::new(GenerationReads {
                store: generations,
                batches: Mutex::default(),
            }),
        }
    }

    /// The kept copy for `key`, if the generation that vouched for it
    /// still holds.
    pub async fn serve(&self, key: &str) -> Option<Response> {
        let copy = self.copies.get(key).await?;
        match self.generations.read(&copy.validity.generation_key).await {
            Ok(Some(g)) if g == copy.validity.generation => {
                record("hit");
                let mut res = (StatusCode::OK, copy.body.clone()).into_response();
                let headers = res.headers_mut();
                if let Some(ct) = &copy.content_type {
                    headers.insert(header::CONTENT_TYPE, ct.clone());
                }
                headers.insert("x-cache", HeaderValue::from_static("hit"));
                Some(res)
            }
            Ok(_) => {
                record("stale");
                self.copies.invalidate(key).await;
                None
            }
            Err(e) => {
                record("unavailable");
                tracing::warn!(error = %e, "shared cache unavailable; asking the service");
                None
            }
        }
    }

    /// Keep a copy of `res` under `key` if its service vouched for it
    /// (`validity`, taken off its headers); returns the response to send.
    pub async fn keep(&self, key: String, validity: Validity, res: Response) -> Response {
        let fits = res
            .body()
            .size_hint()
            .upper()
            .is_some_and(|n| n <= LARGEST_COPY);
        if res.status() != StatusCode::OK || !fits {
            return res;
        }
        let (parts, body) = res.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                tracing::warn!(error = %e, "upstream body broke off");
                return kit::Problem::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream-unavailable",
                    "The service is unavailable",
                )
                .detail("the response broke off")
                .into_response();
            }
        };
        let copy = KeptCopy {
            validity,
            content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
            body: body.clone(),
        };
        self.copies.insert(key, Arc::new(copy)).await;
        record("stored");
        Response::from_parts(parts, Body::from(body))
    }
}

type Reading = Result<Option<u64>, String>;

/// Reads of generations, shared by the requests that wait on the same key.
struct GenerationReads {
    store: Cache,
    /// Per key: whether a reader is running, and who waits for its next read.
    batches: Mutex<HashMap<String, Batch>>,
}

#[derive(Default)]
struct Batch {
    reading: bool,
    waiting: Vec<oneshot::Sender<Reading>>,
}

impl GenerationReads {
    /// The generation under `key`, read after this call began.
    async fn read(self: &Arc<Self>, key: &str) -> Reading {
        let (tx, rx) = oneshot::channel();
        let start_reader = {
            let mut batches = self.batches.lock().unwrap_or_else(|e| e.into_inner());
            let batch = match batches.get_mut(key) {
                Some(b) => b,
                None => batches.entry(key.to_owned()).or_default(),
            };
            batch.waiting.push(tx);
            !std::mem::replace(&mut batch.reading, true)
        };
        if start_reader {
            let (reads, key) = (self.clone(), key.to_owned());
            tokio::spawn(async move { reads.answer_waiting(&key).await });
        }
        match tokio::time::timeout(GENERATION_READ_TIMEOUT * 2, rx).await {
            Ok(Ok(reading)) => reading,
            Ok(Err(_)) => Err("the generation read was abandoned".into()),
            Err(_) => Err("timed out".into()),
        }
    }

    /// Read for everyone waiting, again and again, until nobody waits.
    async fn answer_waiting(&self, key: &str) {
        loop {
            let waiting = {
                let mut batches = self.batches.lock().unwrap_or_else(|e| e.into_inner());
                let Some(batch) = batches.get_mut(key) else {
                    return;
                };
                if batch.waiting.is_empty() {
                    batch.reading = false;
                    return;
                }
                std::mem::take(&mut batch.waiting)
            };
            // Sent after every one of `waiting` arrived.
            let reading =
                match tokio::time::timeout(GENERATION_READ_TIMEOUT, self.store.generation_at(key))
                    .await
                {
                    Ok(Ok(g)) => Ok(g),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out".to_string()),
                };
            for w in waiting {
                let _ = w.send(reading.clone());
            }
        }
    }
}

/// Take the service's word for a response off its headers, so it never
/// reaches a client.
pub fn take_validity(res: &mut Response) -> Option<Validity> {
    res.headers_mut()
        .remove(HEADER)
        .and_then(|v| Validity::parse(&v))
}

fn record(outcome: &'static str) {
    metrics::counter!("gateway_edge_cache_total", "outcome" => outcome).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(res: Response) -> Bytes {
        res.into_body().collect().await.unwrap().to_bytes()
    }

    fn upstream(status: StatusCode, body: &'static str) -> Response {
        let mut res = (status, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        res
    }

    async fn vouched(shared: &Cache) -> Validity {
        let generation = shared.start_generation("catalog:generation").await.unwrap();
        Validity {
            generation_key: shared.key("catalog:generation"),
            generation,
            max_age: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn serves_a_copy_until_its_generation_changes() {
        let shared = Cache::memory("shop");
        let edge = EdgeCache::new(shared.clone(), 1024 * 1024);
        assert!(edge.serve("/p/1").await.is_none(), "nothing kept yet");
        let validity = vouched(&shared).await;
        let sent = edge
            .keep(
                "/p/1".into(),
                validity,
                upstream(StatusCode::OK, "{\"price\":1}"),
            )
            .await;
        assert_eq!(body_of(sent).await, "{\"price\":1}");

        let copy = edge.serve("/p/1").await.expect("served from the copy");
        assert_eq!(copy.headers()["x-cache"], "hit");
        assert_eq!(copy.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(body_of(copy).await, "{\"price\":1}");

        shared.new_generation("catalog:generation").await.unwrap();
        assert!(edge.serve("/p/1").await.is_none(), "a write made it stale");
        assert!(edge.serve("/p/1").await.is_none(), "and it was dropped");
    }

    #[tokio::test]
    async fn keeps_only_successful_answers() {
        let shared = Cache::memory("shop");
        let edge = EdgeCache::new(shared.clone(), 1024 * 1024);
        let validity = vouched(&shared).await;
        let sent = edge
            .keep(
                "/p/2".into(),
                validity,
                upstream(StatusCode::NOT_FOUND, "{}"),
            )
            .await;
        assert_eq!(sent.status(), StatusCode::NOT_FOUND);
        assert!(edge.serve("/p/2").await.is_none());
    }

    #[tokio::test]
    async fn concurrent_reads_all_see_a_generation_set_before_they_began() {
        let shared = Cache::memory("shop");
        let reads = Arc::new(GenerationReads {
            store: shared.clone(),
            batches: Mutex::default(),
        });
        let key = shared.key("g");
        assert_eq!(reads.read(&key).await, Ok(None));
        for _ in 0..3 {
            let set = shared.new_generation("g").await.unwrap();
            let all = futures::future::join_all((0..50).map(|_| reads.read(&key))).await;
            assert!(all.iter().all(|r| *r == Ok(Some(set))), "{all:?}");
        }
    }

    #[test]
    fn the_services_word_is_taken_off_the_response() {
        let mut res = upstream(StatusCode::OK, "{}");
        let validity = Validity {
            generation_key: "shop:catalog:generation".into(),
            generation: 7,
            max_age: Duration::from_secs(60),
        };
        res.headers_mut()
            .insert(HEADER, validity.header_value().unwrap());
        assert_eq!(take_validity(&mut res), Some(validity));
        assert!(res.headers().get(HEADER).is_none());
    }
}
