//! Emporium's Kubernetes operator: one `Store` resource becomes a whole
//! shop. [`crd`] holds the resource types, [`children`] the pure builders of
//! what each resource wants, [`controller`] the reconcilers, [`apply`] how
//! children are applied, [`lease`] leader election, [`run`] the wiring.

pub mod apply;
pub mod children;
pub mod controller;
pub mod crd;
pub mod error;
pub mod labels;
pub mod lease;
pub mod run;
pub mod telemetry;
