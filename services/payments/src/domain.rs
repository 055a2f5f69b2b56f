//! The words of the payments domain: money, a payment's status and the
//! opaque token that says how an order is paid.

use serde::{Deserialize, Serialize};

/// An amount in integer minor units of an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Money {
    pub amount: i64,
    pub currency: String,
}

impl Money {
    /// A non-negative amount in a three-letter currency, upper-cased.
    pub fn parse(amount: i64, currency: &str) -> Result<Self, String> {
        if amount < 0 {
            return Err(format!("amount {amount} is negative"));
        }
        let currency = currency.trim().to_ascii_uppercase();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(format!("`{currency}` is not an ISO 4217 currency code"));
        }
        Ok(Self { amount, currency })
    }
}

/// Where a payment stands.
///
/// ```text
/// pending ──stock.reserved──> processing ──> succeeded ──order.cancelled──> refunding ──> refunded
///    │                            └────────> failed                └──────(synchronous)──────┘
///    └──order.cancelled──> cancelled
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Recorded from `order.placed`; nothing charged yet.
    Pending,
    /// The charge went to the provider; its outcome is awaited.
    Processing,
    Succeeded,
    Failed,
    /// A refund went to the provider; its outcome is awaited.
    Refunding,
    Refunded,
    /// The order was cancelled before it was charged; it never will be.
    Cancelled,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Processing => "processing",
            PaymentStatus::Succeeded => "succeeded",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Refunding => "refunding",
            PaymentStatus::Refunded => "refunded",
            PaymentStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => PaymentStatus::Pending,
            "processing" => PaymentStatus::Processing,
            "succeeded" => PaymentStatus::Succeeded,
            "failed" => PaymentStatus::Failed,
            "refunding" => PaymentStatus::Refunding,
            "refunded" => PaymentStatus::Refunded,
            "cancelled" => PaymentStatus::Cancelled,
            _ => return None,
        })
    }

    /// Not yet settled by the provider: a charge outcome still applies.
    pub fn awaits_charge_outcome(self) -> bool {
        matches!(self, PaymentStatus::Pending | PaymentStatus::Processing)
    }
}

impl std::fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The provider's opaque token for how an order is paid (`pm_…`). It is
/// never card data, and is kept only to charge the order.
#[derive(Clone, PartialEq, Eq)]
pub struct PaymentMethodToken(String);

impl PaymentMethodToken {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() || s.len() > 255 {
            return Err("the payment method must be 1 to 255 characters".into());
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err("the payment method must be a provider token such as pm_card_visa".into());
        }
        // A card number where a token belongs must never be stored.
        let digits = s.chars().filter(|c| c.is_ascii_digit()).count();
        if digits >= 12 && s.chars().all(|c| c.is_ascii_digit() || c == '-') {
            return Err("the payment method must be a provider token, not card data".into());
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PaymentMethodToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PaymentMethodToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_needs_a_currency_and_no_negative_amount() {
        assert_eq!(
            Money::parse(1999, "usd").unwrap(),
            Money {
                amount: 1999,
                currency: "USD".into()
            }
        );
        assert!(Money::parse(-1, "USD").is_err());
        assert!(Money::parse(1, "US").is_err());
        assert!(Money::parse(1, "U$D").is_err());
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            PaymentStatus::Pending,
            PaymentStatus::Processing,
            PaymentStatus::Succeeded,
            PaymentStatus::Failed,
            PaymentStatus::Refunding,
            PaymentStatus::Refunded,
            PaymentStatus::Cancelled,
        ] {
            assert_eq!(PaymentStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(PaymentStatus::parse("paid"), None);
    }

    #[test]
    fn payment_method_is_a_token_never_a_card_number() {
        assert!(PaymentMethodToken::parse("pm_card_visa").is_ok());
        assert!(PaymentMethodToken::parse("4242424242424242").is_err());
        assert!(PaymentMethodToken::parse("4242-4242-4242-4242").is_err());
        assert!(PaymentMethodToken::parse("").is_err());
        assert!(PaymentMethodToken::parse("pm card").is_err());
        assert_eq!(
            format!("{:?}", PaymentMethodToken::parse("pm_card_visa").unwrap()),
            "PaymentMethodToken(..)"
        );
    }
}
