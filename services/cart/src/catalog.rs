//! What the cart asks the catalogue service, over HTTP: is this product
//! there, active, in stock, and at what price. Every call has a deadline and
//! carries the request's id and trace context.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use kit::http::RequestContext;
use serde::Deserialize;
use uuid::Uuid;

use crate::domain::Money;

/// The most products one batched call asks about (the catalogue's limit).
pub const MAX_BATCH: usize = 100;

/// What the catalogue says about a product now. Fields the cart does not use
/// are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Product {
    pub id: Uuid,
    pub name: String,
    pub price: Money,
    pub stock: i64,
    pub is_active: bool,
}

#[derive(Deserialize)]
struct ProductList {
    items: Vec<Product>,
}

/// The answer to one batched question: which products were asked about and
/// which the catalogue knows (active or not).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    asked: HashSet<Uuid>,
    found: HashMap<Uuid, Product>,
}

impl Snapshot {
    pub fn new(asked: &[Uuid], found: Vec<Product>) -> Self {
        let asked: HashSet<Uuid> = asked.iter().copied().collect();
        Self {
            found: found
                .into_iter()
                .filter(|p| asked.contains(&p.id))
                .map(|p| (p.id, p))
                .collect(),
            asked,
        }
    }

    pub fn asked(&self, id: Uuid) -> bool {
        self.asked.contains(&id)
    }

    /// The product if the catalogue knows it (active or not).
    pub fn product(&self, id: Uuid) -> Option<&Product> {
        self.found.get(&id)
    }

    /// The product if it can be bought: known and active.
    pub fn available(&self, id: Uuid) -> Option<&Product> {
        self.product(id).filter(|p| p.is_active)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("the catalogue did not answer in time")]
    Timeout,
    #[error("the catalogue cannot be reached: {0}")]
    Unreachable(String),
    #[error("the catalogue answered {0}")]
    Status(http::StatusCode),
    #[error("the catalogue's answer is not understood: {0}")]
    Body(String),
}

/// A client of the catalogue service's public product API.
#[derive(Clone)]
pub struct CatalogClient {
    http: reqwest::Client,
    products_url: url::Url,
}

impl CatalogClient {
    pub fn new(base: &url::Url, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .unwrap_or_default();
        let products_url = base
            .join("/api/v1/products")
            .unwrap_or_else(|_| base.clone());
        Self { http, products_url }
    }

    /// Ask about `ids` (at most [`MAX_BATCH`]) in one call:
    /// `GET /api/v1/products?ids=a,b,c`. No ids, no call.
    #[tracing::instrument(skip_all, fields(products = ids.len()), err(level = "warn", Display))]
    pub async fn products(&self, ids: &[Uuid]) -> Result<Snapshot, CatalogError> {
        if ids.is_empty() {
            return Ok(Snapshot::default());
        }
        let mut url = self.products_url.clone();
        let list = ids
            .iter()
            .map(Uuid::to_string)
            .collect::<Vec<_>>()
            .join(",");
        url.set_query(Some(&format!("ids={list}")));
        let mut request = self.http.get(url);
        for (name, value) in RequestContext::current().outgoing_headers() {
            request = request.header(name, value);
        }
        let outcome = async {
            let response = request.send().await.map_err(transport)?;
            let status = response.status();
            if !status.is_success() {
                return Err(CatalogError::Status(status));
            }
            let bytes = response.bytes().await.map_err(transport)?;
            serde_json::from_slice::<ProductList>(&bytes)
                .map_err(|e| CatalogError::Body(e.to_string()))
        }
        .await;
        match outcome {
            Ok(list) => Ok(Snapshot::new(ids, list.items)),
            Err(e) => {
                metrics::counter!("cart_catalog_failures_total").increment(1);
                Err(e)
            }
        }
    }
}

fn transport(e: reqwest::Error) -> CatalogError {
    if e.is_timeout() {
        CatalogError::Timeout
    } else {
        CatalogError::Unreachable(e.to_string())
    }
}
