use kit::FieldError;
use serde::Deserialize;
use utoipa::ToSchema;

/// What a signed-in customer sends to review a product.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReview {
    /// 1 (poor) to 5 (excellent).
    #[schema(minimum = 1, maximum = 5)]
    pub rating: i64,
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    /// At most 5000 characters.
    #[serde(default)]
    #[schema(max_length = 5000)]
    pub body: String,
}

#[derive(Debug, Clone)]
pub struct ReviewDraft {
    pub rating: i64,
    pub title: String,
    pub body: String,
}

impl ReviewDraft {
    pub fn parse(input: &NewReview) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        if !(1..=5).contains(&input.rating) {
            errors.push(FieldError::new("rating", "must be between 1 and 5"));
        }
        let title = input.title.trim();
        if title.is_empty() || title.chars().count() > 200 {
            errors.push(FieldError::new("title", "must be 1 to 200 characters"));
        }
        let body = input.body.trim();
        if body.chars().count() > 5000 {
            errors.push(FieldError::new("body", "must be at most 5000 characters"));
        }
        if errors.is_empty() {
            Ok(ReviewDraft {
                rating: input.rating,
                title: title.to_string(),
                body: body.to_string(),
            })
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rating_is_one_to_five() {
        for rating in [0, 6, -1] {
            let e = ReviewDraft::parse(&NewReview {
                rating,
                title: "t".into(),
                body: String::new(),
            })
            .unwrap_err();
            assert_eq!(e[0].field, "rating");
        }
        assert!(
            ReviewDraft::parse(&NewReview {
                rating: 5,
                title: "Great".into(),
                body: "Loved it".into()
            })
            .is_ok()
        );
    }
}
