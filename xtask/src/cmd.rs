//! Running external programs: echo the command line, then run it, and turn
//! failures into errors that say which command failed and how.
//!
//! Everything xtask says goes to stderr, so that stdout stays clean for output
//! meant for machines (`eval "$(cargo xtask services start)"`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context, Result, bail};

/// Print a progress line: `==> postgres: starting throwaway cluster`.
pub fn step(topic: &str, message: impl std::fmt::Display) {
    eprintln!("==> {topic}: {message}");
}

/// Run a command that is part of provisioning; fail unless it exits 0.
///
/// The child's stdout goes to our stderr, so it never mixes with what xtask
/// prints on stdout.
pub fn run(cmd: &mut Command) -> Result<()> {
    echo(cmd);
    let status = cmd
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .with_context(|| spawn_error(cmd))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// Run a command with the terminal attached (tests, linters) and return how
/// it exited; only failing to start it at all is an error.
pub fn status(cmd: &mut Command) -> Result<ExitStatus> {
    echo(cmd);
    cmd.status().with_context(|| spawn_error(cmd))
}

/// Run a command and return its stdout; on failure the error carries the
/// command's stderr.
pub fn capture(cmd: &mut Command) -> Result<String> {
    echo(cmd);
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| spawn_error(cmd))?;
    if !output.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            display(cmd),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Run a command silently (a probe, polled in a loop) and report whether it
/// exited 0. A program that cannot be started counts as failure.
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Find a program on `PATH`, or in the sbin directories that a non-root
/// user's `PATH` often lacks (`rabbitmq-server` lives in `/usr/sbin`).
pub fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The command line as a shell would read it, with the environment variables
/// it sets in front: `EMPORIUM_TEST_BACKENDS=real cargo test -p emporium-tests`.
pub fn display(cmd: &Command) -> String {
    let envs = cmd.get_envs().filter_map(|(key, value)| {
        value.map(|value| {
            format!(
                "{}={}",
                key.to_string_lossy(),
                quote(&value.to_string_lossy())
            )
        })
    });
    envs.chain(std::iter::once(display_argv(cmd)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The program and its arguments, without the environment.
pub fn display_argv(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|word| quote(&word.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn echo(cmd: &Command) {
    eprintln!("    $ {}", display(cmd));
}

fn spawn_error(cmd: &Command) -> String {
    format!(
        "could not run `{}` (is `{}` installed?)",
        display(cmd),
        cmd.get_program().to_string_lossy()
    )
}

/// `word` as one shell word: as is when that is safe, else single-quoted.
pub fn quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_like_a_shell() {
        let mut cmd = Command::new("psql");
        cmd.env("PGCONNECT_TIMEOUT", "5")
            .args(["-Atc", "select 1", ""]);
        assert_eq!(display(&cmd), "PGCONNECT_TIMEOUT=5 psql -Atc 'select 1' ''");
    }
}
