//! Money as the events carry it — integer minor units plus an ISO 4217
//! code — and the way customers read it (`1999 USD` → `$19.99`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// An amount in minor units (cents for USD) of `currency`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Digits after the decimal point for an ISO 4217 currency.
pub fn minor_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// A symbol that names the currency unambiguously, where there is one.
fn symbol(currency: &str) -> Option<&'static str> {
    match currency {
        "USD" => Some("$"),
        "EUR" => Some("€"),
        "GBP" => Some("£"),
        "JPY" => Some("¥"),
        _ => None,
    }
}

/// `1234567` → `1,234,567`.
fn group_thousands(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for Money {
    /// `$19.99`, `-$3.50`, `€1,234.00`, `¥1,200`, `CHF 12.50`, `KWD 1.500`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = minor_digits(&self.currency);
        let magnitude = self.amount.unsigned_abs();
        let scale = 10u64.pow(digits);
        let whole = group_thousands(&(magnitude / scale).to_string());
        let number = if digits == 0 {
            whole
        } else {
            format!(
                "{whole}.{:0width$}",
                magnitude % scale,
                width = digits as usize
            )
        };
        let sign = if self.amount < 0 { "-" } else { "" };
        match symbol(&self.currency) {
            Some(s) => write!(f, "{sign}{s}{number}"),
            None => write!(f, "{sign}{} {number}", self.currency),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(amount: i64, currency: &str) -> String {
        Money::new(amount, currency).to_string()
    }

    #[test]
    fn formats_minor_units_with_the_currency() {
        assert_eq!(show(1999, "USD"), "$19.99");
        assert_eq!(show(5, "USD"), "$0.05");
        assert_eq!(show(0, "USD"), "$0.00");
        assert_eq!(show(100, "EUR"), "€1.00");
        assert_eq!(show(250, "GBP"), "£2.50");
    }

    #[test]
    fn groups_thousands() {
        assert_eq!(show(123_456_789, "USD"), "$1,234,567.89");
        assert_eq!(show(100_000, "USD"), "$1,000.00");
        assert_eq!(show(99_999, "USD"), "$999.99");
    }

    #[test]
    fn respects_the_currency_exponent() {
        assert_eq!(show(1200, "JPY"), "¥1,200");
        assert_eq!(show(1500, "KWD"), "KWD 1.500");
        assert_eq!(show(1250, "CHF"), "CHF 12.50");
    }

    #[test]
    fn negative_amounts_and_extremes() {
        assert_eq!(show(-350, "USD"), "-$3.50");
        assert_eq!(show(i64::MIN, "USD"), "-$92,233,720,368,547,758.08");
    }
}
