//! The events orders publishes and the ones it reacts to (see
//! services/EVENTS.md for the whole contract).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{Money, ShippingAddress};
use crate::storage::orders::{OrderLine, OrderRecord};

pub const SERVICE: &str = "orders";

#[derive(Debug, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order_id: Uuid,
    pub order_number: String,
    pub customer_id: Uuid,
    pub customer_email: String,
    pub lines: Vec<OrderLine>,
    pub subtotal: Money,
    pub shipping: Money,
    pub tax: Money,
    pub total: Money,
    pub payment_method: String,
    pub shipping_address: ShippingAddress,
}

impl From<&OrderRecord> for OrderPlaced {
    fn from(o: &OrderRecord) -> Self {
        Self {
            order_id: o.id,
            order_number: o.number.clone(),
            customer_id: o.customer_id,
            customer_email: o.customer_email.clone(),
            lines: o.lines.clone(),
            subtotal: Money::new(o.subtotal, &o.currency),
            shipping: Money::new(o.shipping, &o.currency),
            tax: Money::new(o.tax, &o.currency),
            total: Money::new(o.total, &o.currency),
            payment_method: o.payment_method.clone(),
            shipping_address: o.shipping_address.clone(),
        }
    }
}

/// `order.confirmed`, `order.processing`, `order.shipped`, `order.delivered`
/// and (with `reason`, `paid`) `order.cancelled`.
#[derive(Debug, Serialize, Deserialize)]
pub struct OrderChanged {
    pub order_id: Uuid,
    pub order_number: String,
    pub customer_id: Uuid,
    pub customer_email: String,
    pub lines: Vec<OrderLine>,
    pub subtotal: Money,
    pub shipping: Money,
    pub tax: Money,
    pub total: Money,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paid: Option<bool>,
}

impl OrderChanged {
    pub fn new(o: &OrderRecord, reason: Option<&str>, paid: Option<bool>) -> Self {
        Self {
            order_id: o.id,
            order_number: o.number.clone(),
            customer_id: o.customer_id,
            customer_email: o.customer_email.clone(),
            lines: o.lines.clone(),
            subtotal: Money::new(o.subtotal, &o.currency),
            shipping: Money::new(o.shipping, &o.currency),
            tax: Money::new(o.tax, &o.currency),
            total: Money::new(o.total, &o.currency),
            reason: reason.map(str::to_string),
            paid,
        }
    }
}

/// The part of `stock.*` and `payment.*` payloads orders reads.
#[derive(Debug, Deserialize)]
pub struct AboutOrder {
    pub order_id: Uuid,
    #[serde(default)]
    pub reason: Option<String>,
}
