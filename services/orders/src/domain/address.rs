use kit::FieldError;
use serde::{Deserialize, Serialize};

/// Where an order goes. Normalised and validated at the edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShippingAddress {
    /// Not blank; at most 100 characters once trimmed.
    #[schema(min_length = 1)]
    pub name: String,
    /// Not blank; at most 200 characters once trimmed.
    #[schema(min_length = 1)]
    pub line1: String,
    /// At most 200 characters; blank is the same as absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    /// Not blank; at most 100 characters once trimmed.
    #[schema(min_length = 1)]
    pub city: String,
    /// At most 100 characters; blank is the same as absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Not blank; at most 20 characters once trimmed.
    #[schema(min_length = 1)]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. `US` (taken in any case, kept in capitals).
    #[schema(pattern = "^\\s*[A-Za-z]{2}\\s*$", example = "US")]
    pub country: String,
}

// ISO 3166-1 alpha-2 codes in use.
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ \
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL \
GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR \
LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK \
PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR \
TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

fn required(errors: &mut Vec<FieldError>, field: &str, value: &str, max: usize) {
    let len = value.trim().chars().count();
    if len == 0 {
        errors.push(FieldError::new(
            format!("shipping_address.{field}"),
            "must not be empty",
        ));
    } else if len > max {
        errors.push(FieldError::new(
            format!("shipping_address.{field}"),
            format!("must be at most {max} characters"),
        ));
    }
}

impl ShippingAddress {
    /// Trimmed, the country in capitals (`us` is `US`), and empty optional
    /// lines dropped: the form a shop stores and a carrier reads.
    pub fn normalized(self) -> Self {
        let optional = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        ShippingAddress {
            name: self.name.trim().to_owned(),
            line1: self.line1.trim().to_owned(),
            line2: optional(self.line2),
            city: self.city.trim().to_owned(),
            state: optional(self.state),
            postal_code: self.postal_code.trim().to_owned(),
            country: self.country.trim().to_ascii_uppercase(),
        }
    }

    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        required(&mut errors, "name", &self.name, 100);
        required(&mut errors, "line1", &self.line1, 200);
        required(&mut errors, "city", &self.city, 100);
        required(&mut errors, "postal_code", &self.postal_code, 20);
        if self.line2.as_ref().is_some_and(|l| l.chars().count() > 200) {
            errors.push(FieldError::new(
                "shipping_address.line2",
                "must be at most 200 characters",
            ));
        }
        if self.state.as_ref().is_some_and(|s| s.chars().count() > 100) {
            errors.push(FieldError::new(
                "shipping_address.state",
                "must be at most 100 characters",
            ));
        }
        let country = self.country.as_str();
        if country.len() != 2 || !COUNTRIES.split(' ').any(|c| c == country) {
            errors.push(FieldError::new(
                "shipping_address.country",
                "must be an ISO 3166-1 alpha-2 code such as US or DE",
            ));
        }
        errors
    }
}

/// A provider's payment method token (`pm_…`); never card data.
pub fn validate_payment_method(token: &str) -> Option<FieldError> {
    let ok = token.len() <= 255
        && token.starts_with("pm_")
        && token.len() > 3
        && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (!ok).then(|| {
        FieldError::new(
            "payment_method",
            "must be a payment method token such as pm_card_visa",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address() -> ShippingAddress {
        ShippingAddress {
            name: "Ada Lovelace".into(),
            line1: "1 Analytical Way".into(),
            line2: None,
            city: "London".into(),
            state: None,
            postal_code: "N1 9GU".into(),
            country: "GB".into(),
        }
    }

    #[test]
    fn a_full_address_is_valid() {
        assert!(address().validate().is_empty());
    }

    #[test]
    fn names_each_bad_field() {
        let mut a = address();
        a.city = " ".into();
        a.country = "XX".into();
        let fields: Vec<String> = a.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            vec!["shipping_address.city", "shipping_address.country"]
        );
    }

    #[test]
    fn normalising_trims_capitalises_the_country_and_drops_empty_lines() {
        let given = ShippingAddress {
            name: "  Ada Lovelace ".into(),
            line2: Some("   ".into()),
            state: Some(" Greater London ".into()),
            country: " gb ".into(),
            ..address()
        };
        let n = given.normalized();
        assert_eq!(n.name, "Ada Lovelace");
        assert_eq!(n.line2, None);
        assert_eq!(n.state.as_deref(), Some("Greater London"));
        assert_eq!(n.country, "GB");
        assert!(n.validate().is_empty());
        let unknown = ShippingAddress {
            country: "zz".into(),
            ..address()
        };
        assert_eq!(unknown.normalized().validate().len(), 1);
    }

    #[test]
    fn payment_methods_are_tokens() {
        assert!(validate_payment_method("pm_card_visa").is_none());
        assert!(validate_payment_method("4242424242424242").is_some());
        assert!(validate_payment_method("pm_").is_some());
    }
}
