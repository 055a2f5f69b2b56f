//! The events notifications reads, as its own types (services/EVENTS.md is
//! the contract). Unknown fields are ignored so producers can add to them.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::Money;

/// What a notification is about; one per consumed event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Welcome,
    OrderConfirmed,
    OrderCancelled,
    OrderShipped,
    OrderDelivered,
    PaymentRefunded,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Welcome,
        Kind::OrderConfirmed,
        Kind::OrderCancelled,
        Kind::OrderShipped,
        Kind::OrderDelivered,
        Kind::PaymentRefunded,
    ];

    /// The stored and served name (`order_confirmed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Welcome => "welcome",
            Kind::OrderConfirmed => "order_confirmed",
            Kind::OrderCancelled => "order_cancelled",
            Kind::OrderShipped => "order_shipped",
            Kind::OrderDelivered => "order_delivered",
            Kind::PaymentRefunded => "payment_refunded",
        }
    }

    /// The event that causes it (its routing key).
    pub fn event_type(self) -> &'static str {
        match self {
            Kind::Welcome => "user.registered",
            Kind::OrderConfirmed => "order.confirmed",
            Kind::OrderCancelled => "order.cancelled",
            Kind::OrderShipped => "order.shipped",
            Kind::OrderDelivered => "order.delivered",
            Kind::PaymentRefunded => "payment.refunded",
        }
    }

    pub fn from_event_type(event_type: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.event_type() == event_type)
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// `user.registered`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRegistered {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
}

/// One line of an order, as order events carry it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderLine {
    pub name: String,
    pub unit_price: Money,
    pub quantity: i64,
    pub line_total: Money,
}

/// `order.confirmed`, `order.shipped` and `order.delivered`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderUpdate {
    pub order_id: Uuid,
    pub order_number: String,
    pub customer_id: Uuid,
    pub customer_email: String,
    pub lines: Vec<OrderLine>,
    pub subtotal: Money,
    pub shipping: Money,
    pub tax: Money,
    pub total: Money,
}

/// `order.cancelled`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub order_id: Uuid,
    pub order_number: String,
    pub customer_id: Uuid,
    pub customer_email: String,
    pub reason: String,
    pub paid: bool,
    pub lines: Vec<OrderLine>,
    pub total: Money,
}

/// `payment.refunded`. The contract names no customer id or order number:
/// when absent, they are found from an earlier notification about the same
/// order (or, for the customer, to the same address).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PaymentRefunded {
    pub order_id: Uuid,
    pub payment_id: Uuid,
    pub amount: Money,
    pub customer_email: String,
    #[serde(default)]
    pub customer_id: Option<Uuid>,
    #[serde(default)]
    pub order_number: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_event_type(k.event_type()), Some(k));
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kind::from_event_type("order.placed"), None);
    }

    #[test]
    fn order_payload_ignores_fields_it_does_not_need() {
        let v = serde_json::json!({
            "order_id": "0190a6d2-8f4e-7c4b-9f7e-3d2c1b0a9f8e",
            "order_number": "EMP-1001",
            "customer_id": "0190a6d2-8f4e-7c4b-9f7e-3d2c1b0a9f8f",
            "customer_email": "ada@example.com",
            "lines": [{"product_id": "0190a6d2-8f4e-7c4b-9f7e-3d2c1b0a9f90", "name": "Mug",
                       "unit_price": {"amount": 999, "currency": "USD"}, "quantity": 2,
                       "line_total": {"amount": 1998, "currency": "USD"}}],
            "subtotal": {"amount": 1998, "currency": "USD"},
            "shipping": {"amount": 1, "currency": "USD"},
            "tax": {"amount": 0, "currency": "USD"},
            "total": {"amount": 1999, "currency": "USD"},
            "payment_method": "card"
        });
        let o: OrderUpdate = serde_json::from_value(v).unwrap();
        assert_eq!(o.lines[0].quantity, 2);
        assert_eq!(o.total, Money::new(1999, "USD"));
    }
}
