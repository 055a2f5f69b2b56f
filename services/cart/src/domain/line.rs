use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Money;

/// One product in a cart, as stored: the name and price seen when it was
/// first added are kept, so a later price change is shown, never applied
/// silently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub product_id: Uuid,
    pub name: String,
    pub unit_price: Money,
    pub quantity: i64,
    /// When the line was first added (ms since the epoch); lines are listed
    /// in this order.
    pub added_at: i64,
}

/// Lines in the order they were first added.
pub fn in_cart_order(mut lines: Vec<Line>) -> Vec<Line> {
    lines.sort_by(|a, b| {
        a.added_at
            .cmp(&b.added_at)
            .then(a.product_id.cmp(&b.product_id))
    });
    lines
}
