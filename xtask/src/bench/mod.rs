//! `cargo xtask bench <what>`: benchmarks are commands that print figures.
//! They run release builds of `emporium` on loopback and drive them with
//! `oha`, a Rust HTTP load generator (installed with cargo when missing).

mod catalog;
mod checkout;
mod gateway;
mod load;
mod operator;
mod processes;

use std::path::Path;

use anyhow::{Result, bail};

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("catalog") => catalog::run(root, &args[1..]),
        Some("checkout") => checkout::run(root, &args[1..]),
        Some("gateway") => gateway::run(root, &args[1..]),
        Some("operator") => operator::run(root, &args[1..]),
        Some(other) => {
            bail!("unknown benchmark `{other}`; available: catalog, checkout, gateway, operator")
        }
        None => bail!("usage: cargo xtask bench catalog|checkout|gateway|operator"),
    }
}
