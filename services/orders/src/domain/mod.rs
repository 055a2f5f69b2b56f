//! The order's own rules: its status machine, how totals are priced, what a
//! shipping address and a payment method look like.

pub mod address;
pub mod pricing;
pub mod status;

pub use address::ShippingAddress;
pub use pricing::{Money, PricingPolicy, Totals};
pub use status::OrderStatus;
