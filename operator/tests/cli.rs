//! The operator binary refuses bad settings at start-up, naming the
//! environment variable, before it talks to any cluster.

use std::process::Command;

fn start_with(vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_emporium-operator"))
        .arg("run")
        // Nothing to reach: a bad setting must stop it before it tries.
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .envs(vars.iter().copied())
        .output()
        .expect("the operator binary starts");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_bad_watched_namespace_stops_the_operator_naming_the_variable() {
    let (code, stderr) = start_with(&[("EMPORIUM_WATCH_NAMESPACES", "shop-eu,Shop_US")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("EMPORIUM_WATCH_NAMESPACES"), "{stderr}");
    assert!(
        stderr.contains("`Shop_US` is not a namespace name"),
        "{stderr}"
    );
}

#[test]
fn zero_concurrency_stops_the_operator_naming_the_variable() {
    let (code, stderr) = start_with(&[("EMPORIUM_OPERATOR_CONCURRENCY", "0")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("EMPORIUM_OPERATOR_CONCURRENCY"), "{stderr}");
}
