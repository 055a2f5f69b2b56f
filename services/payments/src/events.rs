//! The events payments reads and writes (services/EVENTS.md is the
//! contract). Payments declares only the fields it uses of what it reads.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::Money;

pub const ORDER_PLACED: &str = "order.placed";
pub const STOCK_RESERVED: &str = "stock.reserved";
pub const ORDER_CANCELLED: &str = "order.cancelled";
pub const PAYMENT_SUCCEEDED: &str = "payment.succeeded";
pub const PAYMENT_FAILED: &str = "payment.failed";
pub const PAYMENT_REFUNDED: &str = "payment.refunded";

/// What payments needs of `order.placed`.
#[derive(Debug, Clone, Deserialize)]
pub struct OrderPlaced {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub customer_email: String,
    pub total: Money,
    pub payment_method: PaymentMethodField,
}

/// `payment_method` as orders sends it: the provider token itself, or an
/// object carrying it (`{"token": "pm_…"}` or `{"id": "pm_…"}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PaymentMethodField {
    Token(String),
    Object {
        #[serde(alias = "id")]
        token: String,
    },
}

impl PaymentMethodField {
    pub fn token(&self) -> &str {
        match self {
            PaymentMethodField::Token(t) | PaymentMethodField::Object { token: t } => t,
        }
    }
}

/// What payments needs of `stock.reserved`.
#[derive(Debug, Clone, Deserialize)]
pub struct StockReserved {
    pub order_id: Uuid,
}

/// What payments needs of `order.cancelled`.
#[derive(Debug, Clone, Deserialize)]
pub struct OrderCancelled {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub customer_email: String,
    pub total: Money,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PaymentSucceeded {
    pub order_id: Uuid,
    pub payment_id: Uuid,
    pub amount: Money,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PaymentFailed {
    pub order_id: Uuid,
    pub payment_id: Uuid,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PaymentRefunded {
    pub order_id: Uuid,
    pub payment_id: Uuid,
    pub amount: Money,
    pub customer_email: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_order_placed_as_the_contract_shapes_it() {
        let order_id = Uuid::now_v7();
        let customer_id = Uuid::now_v7();
        let placed: OrderPlaced = serde_json::from_value(json!({
            "order_id": order_id, "order_number": "EMP-1", "customer_id": customer_id,
            "customer_email": "ada@example.com",
            "lines": [{"product_id": Uuid::now_v7(), "name": "Mug", "unit_price": {"amount": 500, "currency": "USD"}, "quantity": 2, "line_total": {"amount": 1000, "currency": "USD"}}],
            "subtotal": {"amount": 1000, "currency": "USD"}, "shipping": {"amount": 0, "currency": "USD"},
            "tax": {"amount": 0, "currency": "USD"}, "total": {"amount": 1000, "currency": "USD"},
            "payment_method": "pm_card_visa", "shipping_address": {"line1": "1 Main St"}
        }))
        .unwrap();
        assert_eq!(placed.order_id, order_id);
        assert_eq!(placed.total.amount, 1000);
        assert_eq!(placed.payment_method.token(), "pm_card_visa");
        let object: PaymentMethodField =
            serde_json::from_value(json!({"type": "card", "token": "pm_card_visa"})).unwrap();
        assert_eq!(object.token(), "pm_card_visa");
    }
}
