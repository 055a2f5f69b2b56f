//! What a shopper may ask of the catalogue listing, checked: text, filters,
//! sort order and the page (by number, or by an opaque keyset cursor).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kit::FieldError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

pub const MAX_PAGE_SIZE: u32 = 100;
pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_BATCH_IDS: usize = 100;
const MAX_QUERY_CHARS: usize = 200;
const MAX_TERMS: usize = 10;
const MAX_TERM_CHARS: usize = 64;

/// Listing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// Best text match first (the default with `q`; newest without).
    Relevance,
    PriceAsc,
    PriceDesc,
    /// The default without `q`.
    Newest,
    /// Highest average rating first.
    Rating,
}

impl Sort {
    /// Keyset paging needs a total order on stored columns, which a text
    /// rank is not.
    pub fn supports_cursor(self) -> bool {
        self != Sort::Relevance
    }
}

/// The query string of `GET /api/v1/products`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Comma-separated product ids (at most 100): a batch look-up that
    /// returns inactive products too and ignores every other parameter.
    pub ids: Option<String>,
    /// Words to search for in name, SKU and description; partial words match.
    pub q: Option<String>,
    /// Category id or slug; includes its subcategories.
    pub category: Option<String>,
    /// Lowest price, in minor units.
    pub min_price: Option<i64>,
    /// Highest price, in minor units.
    pub max_price: Option<i64>,
    /// Only products with stock on hand.
    pub in_stock: Option<bool>,
    /// Lowest average rating, 0 to 5.
    #[param(minimum = 0, maximum = 5)]
    pub min_rating: Option<f64>,
    pub sort: Option<Sort>,
    /// Page number from 1 (ignored with `cursor`).
    #[param(minimum = 1)]
    pub page: Option<u32>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<u32>,
    /// `next_cursor` of the previous page (not with `sort=relevance`).
    pub cursor: Option<String>,
}

/// Where a keyset page starts: after the row with this sort key and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(rename = "s")]
    pub sort: Sort,
    #[serde(rename = "k")]
    pub key: i64,
    #[serde(rename = "i")]
    pub id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(raw: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(raw.trim()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// A checked listing query. Serialises canonically, so equal queries share
/// a cache entry.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProductQuery {
    /// Lower-cased search words (letters and digits only, so they can never
    /// be query syntax).
    pub terms: Vec<String>,
    pub category: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub in_stock: bool,
    pub min_rating: Option<f64>,
    pub sort: Sort,
    pub page: u32,
    pub page_size: u32,
    pub cursor: Option<Cursor>,
}

impl ProductQuery {
    pub fn parse(p: &ListParams) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let q = p.q.as_deref().unwrap_or("").trim();
        if q.chars().count() > MAX_QUERY_CHARS {
            errors.push(FieldError::new("q", "must be at most 200 characters"));
        }
        let terms = search_terms(q);
        let category = p
            .category
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string);
        for (field, v) in [("min_price", p.min_price), ("max_price", p.max_price)] {
            if v.is_some_and(|v| v < 0) {
                errors.push(FieldError::new(field, "must not be negative"));
            }
        }
        if let (Some(lo), Some(hi)) = (p.min_price, p.max_price)
            && lo > hi
        {
            errors.push(FieldError::new(
                "max_price",
                "must not be less than min_price",
            ));
        }
        if let Some(r) = p.min_rating
            && !(0.0..=5.0).contains(&r)
        {
            errors.push(FieldError::new("min_rating", "must be between 0 and 5"));
        }
        let page = p.page.unwrap_or(1);
        if page == 0 {
            errors.push(FieldError::new("page", "must be at least 1"));
        }
        let page_size = p.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
            errors.push(FieldError::new("page_size", "must be between 1 and 100"));
        }
        let sort = match p.sort {
            Some(Sort::Relevance) | None if !terms.is_empty() => Sort::Relevance,
            Some(Sort::Relevance) | None => Sort::Newest,
            Some(s) => s,
        };
        let cursor = match p.cursor.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
            None => None,
            Some(_) if !sort.supports_cursor() => {
                errors.push(FieldError::new(
                    "cursor",
                    "cursor paging is not available for relevance order; use page",
                ));
                None
            }
            Some(_) if p.page.is_some_and(|n| n > 1) => {
                errors.push(FieldError::new("cursor", "give either cursor or page"));
                None
            }
            Some(raw) => match Cursor::decode(raw) {
                Some(c) if c.sort == sort => Some(c),
                Some(_) => {
                    errors.push(FieldError::new(
                        "cursor",
                        "belongs to a listing in another order",
                    ));
                    None
                }
                None => {
                    errors.push(FieldError::new("cursor", "is not a cursor from this API"));
                    None
                }
            },
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ProductQuery {
            terms,
            category,
            min_price: p.min_price,
            max_price: p.max_price,
            in_stock: p.in_stock.unwrap_or(false),
            min_rating: p.min_rating.filter(|r| *r > 0.0),
            sort,
            page: if cursor.is_some() { 1 } else { page },
            page_size,
            cursor,
        })
    }

    pub fn offset(&self) -> i64 {
        i64::from(self.page - 1) * i64::from(self.page_size)
    }
}

/// The words of a search: runs of letters and digits, lower-cased, without
/// repeats. Everything else (quotes, operators, punctuation) separates
/// words, so no input can change the shape of the text query.
pub fn search_terms(q: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in q.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        let word: String = word.to_lowercase().chars().take(MAX_TERM_CHARS).collect();
        if !terms.contains(&word) {
            terms.push(word);
        }
        if terms.len() == MAX_TERMS {
            break;
        }
    }
    terms
}

/// Parse `ids=a,b,c`: distinct ids in the order given.
pub fn parse_ids(raw: &str) -> Result<Vec<Uuid>, FieldError> {
    let mut ids = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let id = Uuid::parse_str(part)
            .map_err(|_| FieldError::new("ids", format!("`{part}` is not a product id")))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.len() > MAX_BATCH_IDS {
        return Err(FieldError::new("ids", "at most 100 ids"));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_are_words_only() {
        assert_eq!(
            search_terms("Wire-less  HEADPH* & 'x' | !y"),
            ["wire", "less", "headph", "x", "y"]
        );
        assert!(search_terms(" :* & | ! ").is_empty());
    }

    #[test]
    fn page_size_is_capped() {
        let e = ProductQuery::parse(&ListParams {
            page_size: Some(101),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e[0].field, "page_size");
    }

    #[test]
    fn default_sort_depends_on_the_text() {
        let q = ProductQuery::parse(&ListParams::default()).unwrap();
        assert_eq!(q.sort, Sort::Newest);
        let q = ProductQuery::parse(&ListParams {
            q: Some("lamp".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(q.sort, Sort::Relevance);
    }

    #[test]
    fn cursors_round_trip_and_must_match_the_sort() {
        let c = Cursor {
            sort: Sort::PriceAsc,
            key: 1999,
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c.clone()));
        let q = ProductQuery::parse(&ListParams {
            sort: Some(Sort::PriceAsc),
            cursor: Some(c.encode()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(q.cursor, Some(c.clone()));
        let e = ProductQuery::parse(&ListParams {
            sort: Some(Sort::PriceDesc),
            cursor: Some(c.encode()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e[0].field, "cursor");
        assert!(Cursor::decode("not-a-cursor").is_none());
    }
}
