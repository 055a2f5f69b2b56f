use serde::{Deserialize, Serialize};

/// An amount in integer minor units of an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Money {
    pub amount: i64,
    pub currency: String,
}

impl Money {
    pub fn new(amount: i64, currency: &str) -> Self {
        Self {
            amount,
            currency: currency.to_string(),
        }
    }
}

/// How an order is priced beyond its lines. Rates are in basis points
/// (1/100 of a percent) so every figure stays an integer.
#[derive(Debug, Clone)]
pub struct PricingPolicy {
    pub shipping_fee: i64,
    pub free_shipping_from: i64,
    pub tax_rate_bp: i64,
}

impl Default for PricingPolicy {
    fn default() -> Self {
        Self {
            shipping_fee: 499,
            free_shipping_from: 5000,
            tax_rate_bp: 800,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub subtotal: i64,
    pub shipping: i64,
    pub tax: i64,
    pub total: i64,
}

impl PricingPolicy {
    /// Tax on the subtotal, rounded half up to the minor unit (explicit:
    /// integer arithmetic, no floats).
    pub fn tax(&self, subtotal: i64) -> i64 {
        let scaled = subtotal as i128 * self.tax_rate_bp as i128;
        ((scaled + 5_000) / 10_000) as i64
    }

    pub fn totals(&self, subtotal: i64) -> Totals {
        let shipping = if subtotal >= self.free_shipping_from {
            0
        } else {
            self.shipping_fee
        };
        let tax = self.tax(subtotal);
        Totals {
            subtotal,
            shipping,
            tax,
            total: subtotal + shipping + tax,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tax_rounds_half_up() {
        let p = PricingPolicy {
            tax_rate_bp: 800,
            ..Default::default()
        };
        assert_eq!(p.tax(1999), 160); // 159.92
        assert_eq!(p.tax(1000), 80);
        assert_eq!(p.tax(6_250), 500);
        let half = PricingPolicy {
            tax_rate_bp: 50, // 0.5 %
            ..Default::default()
        };
        assert_eq!(half.tax(100), 1); // 0.5 rounds up
        assert_eq!(half.tax(99), 0); // 0.495 rounds down
    }

    #[test]
    fn shipping_is_free_from_the_threshold() {
        let p = PricingPolicy::default();
        let below = p.totals(4_999);
        assert_eq!(below.shipping, 499);
        assert_eq!(below.total, 4_999 + 499 + p.tax(4_999));
        assert_eq!(p.totals(5_000).shipping, 0);
    }
}
