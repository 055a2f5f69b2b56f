use kit::FieldError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::money::{Money, Price};
use super::sku::Sku;

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
pub const MAX_STOCK: i64 = 1_000_000_000;
pub const MAX_IMAGES: usize = 20;

/// What an admin sends to create or (fully) replace a product.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    /// Unique stock-keeping unit: upper-case letters, digits, dashes.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^\\s*[A-Z0-9-]+\\s*$",
        example = "HOM-PN-400"
    )]
    pub sku: String,
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 10000)]
    pub description: String,
    /// A positive amount of a known ISO 4217 currency.
    pub price: Money,
    /// Units on hand, 0 to 1,000,000,000.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub stock: i64,
    /// The category the product is listed under.
    #[schema(format = Uuid)]
    pub category_id: String,
    /// Images in display order, at most 20.
    #[serde(default)]
    #[schema(max_items = 20)]
    pub images: Vec<Image>,
    /// Listed and purchasable (default true).
    #[serde(default = "listed")]
    pub is_active: bool,
}

fn listed() -> bool {
    true
}

/// One product image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// An absolute http(s) URL.
    pub url: String,
    /// Text for readers who cannot see the image.
    #[serde(default)]
    pub alt: String,
}

/// A product as the rules allow it, ready to store.
#[derive(Debug, Clone)]
pub struct ProductDraft {
    pub sku: Sku,
    pub name: String,
    pub description: String,
    pub price: Price,
    pub stock: i64,
    pub category_id: Uuid,
    pub images: Vec<Image>,
    pub is_active: bool,
}

/// Parse a category reference; the message names what is wrong.
pub fn parse_category_id(raw: &str) -> Result<Uuid, &'static str> {
    Uuid::parse_str(raw.trim()).map_err(|_| "must be a category id")
}

impl ProductDraft {
    /// Check every field, reporting all that are wrong at once. Whether the
    /// category exists is the storage's question.
    pub fn parse(input: &NewProduct) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let sku = Sku::parse(&input.sku).map_err(|m| errors.push(FieldError::new("sku", m)));
        let name = input.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            errors.push(FieldError::new("name", "must be 1 to 200 characters"));
        }
        let description = input.description.trim();
        if description.chars().count() > MAX_DESCRIPTION_CHARS {
            errors.push(FieldError::new(
                "description",
                "must be at most 10000 characters",
            ));
        }
        let price = Price::parse(&input.price, "price").map_err(|e| errors.extend(e));
        if !(0..=MAX_STOCK).contains(&input.stock) {
            errors.push(FieldError::new("stock", "must be between 0 and 1000000000"));
        }
        let category_id = parse_category_id(&input.category_id)
            .map_err(|m| errors.push(FieldError::new("category_id", m)));
        if input.images.len() > MAX_IMAGES {
            errors.push(FieldError::new("images", "at most 20 images"));
        }
        let mut images = Vec::with_capacity(input.images.len());
        for (i, image) in input.images.iter().enumerate() {
            match parse_image_url(&image.url) {
                Ok(url) => images.push(Image {
                    url,
                    alt: image.alt.trim().to_string(),
                }),
                Err(m) => errors.push(FieldError::new(format!("images[{i}].url"), m)),
            }
            if image.alt.chars().count() > 300 {
                errors.push(FieldError::new(
                    format!("images[{i}].alt"),
                    "must be at most 300 characters",
                ));
            }
        }
        match (sku, price, category_id) {
            (Ok(sku), Ok(price), Ok(category_id)) if errors.is_empty() => Ok(ProductDraft {
                sku,
                name: name.to_string(),
                description: description.to_string(),
                price,
                stock: input.stock,
                category_id,
                images,
                is_active: input.is_active,
            }),
            _ => Err(errors),
        }
    }
}

fn parse_image_url(raw: &str) -> Result<String, &'static str> {
    let raw = raw.trim();
    if raw.len() > 2048 {
        return Err("must be at most 2048 characters");
    }
    match url::Url::parse(raw) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(u.to_string()),
        _ => Err("must be an absolute http or https URL"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> NewProduct {
        NewProduct {
            sku: "KB-1".into(),
            name: "Keyboard".into(),
            description: String::new(),
            price: Money {
                amount: 4999,
                currency: "USD".into(),
            },
            stock: 3,
            category_id: Uuid::now_v7().to_string(),
            images: vec![Image {
                url: "https://img.example/kb.jpg".into(),
                alt: "A keyboard".into(),
            }],
            is_active: true,
        }
    }

    #[test]
    fn a_good_product_passes() {
        let d = ProductDraft::parse(&input()).unwrap();
        assert_eq!(d.sku.as_str(), "KB-1");
        assert_eq!(d.images.len(), 1);
    }

    #[test]
    fn every_bad_field_is_reported() {
        let mut bad = input();
        bad.sku = "kb 1".into();
        bad.name = " ".into();
        bad.price.amount = -5;
        bad.price.currency = "ZZZ".into();
        bad.stock = -1;
        bad.category_id = "nope".into();
        bad.images[0].url = "javascript:alert(1)".into();
        let errs = ProductDraft::parse(&bad).unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "sku",
                "name",
                "price.amount",
                "price.currency",
                "stock",
                "category_id",
                "images[0].url"
            ]
        );
    }
}
