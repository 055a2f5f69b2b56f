/// A stock-keeping unit: upper-case letters, digits and dashes
/// (`^[A-Z0-9-]+$`), at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sku(String);

impl Sku {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let sku = raw.trim();
        if sku.is_empty() || sku.len() > Self::MAX_LEN {
            return Err("must be 1 to 64 characters");
        }
        if sku
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
        {
            Ok(Sku(sku.to_string()))
        } else {
            Err("may contain only upper-case letters, digits and dashes")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_upper_case_digits_and_dashes() {
        assert_eq!(Sku::parse(" KB-100 ").unwrap().as_str(), "KB-100");
        for bad in ["", "kb-100", "KB 100", "KB_100", "KB/1", "É1"] {
            assert!(Sku::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Sku::parse(&"A".repeat(65)).is_err());
    }
}
