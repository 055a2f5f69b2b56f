//! The cart's language: who owns a cart, what a line keeps, how many of a
//! thing a line may hold, and what a cart costs once checked against the
//! catalogue.

pub mod line;
pub mod money;
pub mod owner;
pub mod pricing;
pub mod quantity;

pub use line::Line;
pub use money::Money;
pub use owner::CartOwner;
pub use pricing::{CheckedLine, PricedCart};
pub use quantity::{MAX_QUANTITY, Quantity};
