//! Behaviour and end-to-end tests. Every test runs against the backend set
//! chosen by `EMPORIUM_TEST_BACKENDS` (see `emporium_tests`).

mod cart;
mod catalog;
mod checkout;
mod events;
mod gateway;
mod identity;
mod notifications;
mod payments;
mod stock;
