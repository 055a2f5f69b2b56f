use kit::FieldError;

/// The most of one product a cart line may hold.
pub const MAX_QUANTITY: i64 = 99;

/// How many of a product a request asks for: 1 to [`MAX_QUANTITY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(i64);

impl Quantity {
    pub fn parse(n: i64) -> Result<Self, FieldError> {
        if (1..=MAX_QUANTITY).contains(&n) {
            Ok(Self(n))
        } else {
            Err(FieldError::new(
                "quantity",
                format!("must be between 1 and {MAX_QUANTITY}"),
            ))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert!(Quantity::parse(0).is_err());
        assert!(Quantity::parse(-3).is_err());
        assert_eq!(Quantity::parse(1).unwrap().get(), 1);
        assert_eq!(Quantity::parse(99).unwrap().get(), 99);
        assert_eq!(Quantity::parse(100).unwrap_err().field, "quantity");
    }
}
