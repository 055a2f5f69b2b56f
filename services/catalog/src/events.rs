//! The events the catalog publishes (through the outbox, in the same
//! transaction as the change). Routing keys: `product.created`,
//! `product.updated`, `product.deleted`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::Money;
use crate::storage::products::ProductRecord;

pub const SERVICE: &str = "catalog";
pub const PRODUCT_CREATED: &str = "product.created";
pub const PRODUCT_UPDATED: &str = "product.updated";
pub const PRODUCT_DELETED: &str = "product.deleted";

/// Payload of `product.created`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductCreated {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub price: Money,
    pub stock: i64,
    pub category_id: Uuid,
    pub is_active: bool,
}

impl From<&ProductRecord> for ProductCreated {
    fn from(p: &ProductRecord) -> Self {
        Self {
            product_id: p.id,
            sku: p.sku.clone(),
            name: p.name.clone(),
            price: p.price.clone(),
            stock: p.stock,
            category_id: p.category_id,
            is_active: p.is_active,
        }
    }
}

/// Payload of `product.updated`: the product as it now is, with the price
/// it had before (carts and orders re-price on a change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductUpdated {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub old_price: Money,
    pub new_price: Money,
    pub stock: i64,
    pub category_id: Uuid,
    pub is_active: bool,
}

impl ProductUpdated {
    pub fn new(old: &ProductRecord, new: &ProductRecord) -> Self {
        Self {
            product_id: new.id,
            sku: new.sku.clone(),
            name: new.name.clone(),
            old_price: old.price.clone(),
            new_price: new.price.clone(),
            stock: new.stock,
            category_id: new.category_id,
            is_active: new.is_active,
        }
    }
}

/// Payload of `product.deleted`: the product is no longer sold (it is kept,
/// inactive, so past orders still resolve it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductDeleted {
    pub product_id: Uuid,
    pub sku: String,
}
