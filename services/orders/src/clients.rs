//! What orders asks other services synchronously: the caller's cart and the
//! catalogue's current names and prices.

use std::time::Duration;

use serde::Deserialize;
use uuid::Uuid;

use crate::domain::Money;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("{service} is unavailable: {reason}")]
    Unavailable {
        service: &'static str,
        reason: String,
    },
}

#[derive(Debug, Deserialize)]
pub struct CartView {
    pub items: Vec<CartItem>,
}

#[derive(Debug, Deserialize)]
pub struct CartItem {
    pub product_id: Uuid,
    pub quantity: i64,
}

#[derive(Debug, Deserialize, Clone)]
pub struct ProductView {
    pub id: Uuid,
    pub name: String,
    pub price: Money,
    pub is_active: bool,
}

#[derive(Deserialize)]
struct ProductBatch {
    items: Vec<ProductView>,
}

#[derive(Clone)]
pub struct Peers {
    http: reqwest::Client,
    cart: url::Url,
    catalog: url::Url,
}

impl Peers {
    pub fn new(cart: url::Url, catalog: url::Url, timeout: Duration) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .unwrap_or_default(),
            cart,
            catalog,
        }
    }

    fn get(&self, url: url::Url) -> reqwest::RequestBuilder {
        let mut req = self.http.get(url);
        for (k, v) in kit::http::RequestContext::current().outgoing_headers() {
            req = req.header(k, v);
        }
        req
    }

    /// The signed-in caller's cart, read with their own token.
    pub async fn cart(&self, bearer: &str) -> Result<CartView, PeerError> {
        let unavailable = |reason: String| PeerError::Unavailable {
            service: "cart",
            reason,
        };
        let url = self
            .cart
            // Unchecked: orders asks the catalogue for current prices itself.
            .join("/api/v1/cart?check=false")
            .map_err(|e| unavailable(e.to_string()))?;
        let res = self
            .get(url)
            .header(http::header::AUTHORIZATION, format!("Bearer {bearer}"))
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !res.status().is_success() {
            return Err(unavailable(format!("answered {}", res.status())));
        }
        res.json().await.map_err(|e| unavailable(e.to_string()))
    }

    pub async fn products(&self, ids: &[Uuid]) -> Result<Vec<ProductView>, PeerError> {
        let unavailable = |reason: String| PeerError::Unavailable {
            service: "catalog",
            reason,
        };
        let mut url = self
            .catalog
            .join("/api/v1/products")
            .map_err(|e| unavailable(e.to_string()))?;
        let joined: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        url.query_pairs_mut().append_pair("ids", &joined.join(","));
        let res = self
            .get(url)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !res.status().is_success() {
            return Err(unavailable(format!("answered {}", res.status())));
        }
        let batch: ProductBatch = res.json().await.map_err(|e| unavailable(e.to_string()))?;
        Ok(batch.items)
    }
}
