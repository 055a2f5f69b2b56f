//! The catalog's own rules: what a SKU, a slug, a price, a product, a
//! category and a review are.

pub mod category;
pub mod money;
pub mod product;
pub mod review;
pub mod search;
pub mod sku;
pub mod slug;

pub use category::{CategoryDraft, NewCategory};
pub use money::{Currency, Money, Price};
pub use product::{Image, NewProduct, ProductDraft};
pub use review::{NewReview, ReviewDraft};
pub use search::{Cursor, ListParams, ProductQuery, Sort};
pub use sku::Sku;
pub use slug::Slug;
