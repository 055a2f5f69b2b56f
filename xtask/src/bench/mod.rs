//! `cargo xtask bench <what>`: benchmarks are commands that print figures.
//! They run release builds of `emporium` on loopback and drive them with
//! `oha`, a Rust HTTP load generator (installed with cargo when missing).

mod gateway;
mod load;
mod processes;

use std::path::Path;

use anyhow::{Result, bail};

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("gateway") => gateway::run(root, &args[1..]),
        Some(other) => bail!("unknown benchmark `{other}`; available: gateway"),
        None => bail!("usage: cargo xtask bench gateway"),
    }
}
