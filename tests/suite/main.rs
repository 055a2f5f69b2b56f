//! Behaviour and end-to-end tests. Every test runs against the backend set
//! chosen by `EMPORIUM_TEST_BACKENDS` (see `emporium_tests`).

mod events;
mod gateway;
mod identity;
