use serde::{Deserialize, Serialize};

/// An amount in integer minor units (cents) of an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Money {
    /// Minor units: 1999 is 19.99 in a two-decimal currency.
    pub amount: i64,
    /// ISO 4217 code, e.g. `USD`.
    pub currency: String,
}

impl Money {
    pub fn new(amount: i64, currency: &str) -> Self {
        Self {
            amount,
            currency: currency.to_string(),
        }
    }

    /// This amount `quantity` times, saturating rather than wrapping.
    pub fn times(&self, quantity: i64) -> Money {
        Money::new(self.amount.saturating_mul(quantity), &self.currency)
    }
}

/// A three-letter ISO 4217 code in capitals.
pub fn is_currency_code(s: &str) -> bool {
    s.len() == 3 && s.chars().all(|c| c.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiplies_without_wrapping() {
        assert_eq!(Money::new(1999, "USD").times(3), Money::new(5997, "USD"));
        assert_eq!(Money::new(i64::MAX, "USD").times(2).amount, i64::MAX);
    }

    #[test]
    fn currency_codes() {
        assert!(is_currency_code("EUR"));
        assert!(!is_currency_code("eur"));
        assert!(!is_currency_code("EURO"));
    }
}
