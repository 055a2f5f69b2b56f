use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// ISO 4217 codes of circulating currencies (funds, precious metals and
/// the testing codes are not prices), sorted for binary search.
const CURRENCIES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR",
    "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB",
    "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS",
    "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

/// An ISO 4217 currency code, upper case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Currency(String);

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let code = raw.trim().to_ascii_uppercase();
        if CURRENCIES.binary_search(&code.as_str()).is_ok() {
            Ok(Currency(code))
        } else {
            Err("must be an ISO 4217 currency code such as USD or EUR")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An amount in minor units (cents) of a currency, as on the wire:
/// `{"amount": 1999, "currency": "USD"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// Minor units (cents for USD, yen for JPY); a price is positive.
    #[schema(minimum = 1)]
    pub amount: i64,
    /// ISO 4217 code.
    #[schema(pattern = "^[A-Z]{3}$", example = "USD")]
    pub currency: String,
}

/// A product's price: a positive amount of a known currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    amount: i64,
    currency: Currency,
}

impl Price {
    /// Validate a price, reporting each bad part under `field.amount` and
    /// `field.currency`.
    pub fn parse(money: &Money, field: &str) -> Result<Self, Vec<kit::FieldError>> {
        let mut errors = Vec::new();
        if money.amount <= 0 {
            errors.push(kit::FieldError::new(
                format!("{field}.amount"),
                "must be a positive number of minor units",
            ));
        }
        let currency = Currency::parse(&money.currency)
            .map_err(|m| errors.push(kit::FieldError::new(format!("{field}.currency"), m)));
        match currency {
            Ok(currency) if errors.is_empty() => Ok(Price {
                amount: money.amount,
                currency,
            }),
            _ => Err(errors),
        }
    }

    pub fn amount(&self) -> i64 {
        self.amount
    }

    pub fn currency(&self) -> &Currency {
        &self.currency
    }

    pub fn to_money(&self) -> Money {
        Money {
            amount: self.amount,
            currency: self.currency.0.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_table_is_sorted() {
        assert!(CURRENCIES.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn known_currencies_only() {
        assert_eq!(Currency::parse("usd").unwrap().as_str(), "USD");
        assert!(Currency::parse("EUR").is_ok());
        for bad in ["", "US", "USDX", "XXX", "XAU", "ABC"] {
            assert!(Currency::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn price_reports_every_bad_part() {
        let errs = Price::parse(
            &Money {
                amount: 0,
                currency: "ZZZ".into(),
            },
            "price",
        )
        .unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["price.amount", "price.currency"]);
        assert!(
            Price::parse(
                &Money {
                    amount: 1,
                    currency: "JPY".into()
                },
                "price"
            )
            .is_ok()
        );
    }
}
