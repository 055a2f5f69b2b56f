//! The little every Emporium service shares. Mechanisms only: no product,
//! order or cart type lives here.

pub mod auth;
pub mod cache;
pub mod clock;
pub mod config;
pub mod db;
pub mod edge_cache;
pub mod events;
pub mod health;
pub mod http;
pub mod json;
pub mod openapi;
pub mod problem;
pub mod telemetry;
pub mod watch;

pub use problem::{FieldError, Problem};
