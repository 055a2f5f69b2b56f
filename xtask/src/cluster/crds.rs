//! `cargo xtask crds [--check]`: regenerate `crds/emporium.dev.yaml` from the
//! operator's types (`cargo run -p operator -- crd`), or check it is current.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

use crate::cmd::{self, step};

pub const FILE: &str = "crds/emporium.dev.yaml";

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let check = match args {
        [] => false,
        [flag] if flag == "--check" => true,
        _ => bail!("usage: cargo xtask crds [--check]"),
    };
    let generated = cmd::capture(
        Command::new("cargo")
            .current_dir(root)
            .args(["run", "--quiet", "-p", "operator", "--", "crd"]),
    )?;
    let path = root.join(FILE);
    let committed = fs::read_to_string(&path).unwrap_or_default();
    if check {
        if committed != generated {
            bail!("{FILE} differs from the operator's types; run `cargo xtask crds`");
        }
        step("crds", format!("{FILE} is current"));
    } else if committed == generated {
        step("crds", format!("{FILE} already current"));
    } else {
        fs::write(&path, generated)?;
        step("crds", format!("wrote {FILE}"));
    }
    Ok(())
}
