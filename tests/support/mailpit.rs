//! mailpit, a real SMTP server with an HTTP API for reading what it
//! received, run on loopback for the email tests. `EMPORIUM_TEST_MAILPIT`
//! names its binary (`cargo xtask test` builds it); without it the tests
//! that need it fail, never skip.

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::eventually;

/// A mailpit process on loopback ports, killed when dropped.
pub struct Mailpit {
    child: Child,
    pub smtp_port: u16,
    pub api: url::Url,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn mailpit_binary() -> PathBuf {
    let path = std::env::var_os("EMPORIUM_TEST_MAILPIT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "EMPORIUM_TEST_MAILPIT is not set: the SMTP tests need a mailpit binary \
             (a real SMTP server with an HTTP API). `cargo xtask test` builds it and sets the \
             variable; by hand: `GOBIN=$HOME/.cache/emporium/tools/mailpit-v1.33.1 go install \
             github.com/axllent/mailpit@v1.33.1` and export \
             EMPORIUM_TEST_MAILPIT=$HOME/.cache/emporium/tools/mailpit-v1.33.1/mailpit"
            )
        });
    assert!(
        path.is_file(),
        "EMPORIUM_TEST_MAILPIT={} is not a file",
        path.display()
    );
    path
}

impl Mailpit {
    pub async fn start() -> Mailpit {
        Self::start_with(free_port(), &[]).await
    }

    /// Start on `smtp_port` (loopback only; no update checks, no outside
    /// lookups), waiting until its API answers.
    pub async fn start_with(smtp_port: u16, extra: &[&str]) -> Mailpit {
        let dir = tempfile::tempdir().expect("mailpit directory");
        let http_port = free_port();
        let child = Command::new(mailpit_binary())
            .arg("--smtp")
            .arg(format!("127.0.0.1:{smtp_port}"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{http_port}"))
            .arg("--database")
            .arg(dir.path().join("mailpit.db"))
            .args([
                "--disable-version-check",
                "--smtp-disable-rdns",
                "--smtp-auth-accept-any",
                "--smtp-auth-allow-insecure",
                "--block-remote-css-and-fonts",
                "--quiet",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mailpit");
        let mut mailpit = Mailpit {
            child,
            smtp_port,
            api: url::Url::parse(&format!("http://127.0.0.1:{http_port}")).unwrap(),
            http: reqwest::Client::new(),
            _dir: dir,
        };
        let readyz = mailpit.api.join("/readyz").unwrap();
        let http = mailpit.http.clone();
        eventually(30, "mailpit to answer", || {
            let (http, readyz) = (http.clone(), readyz.clone());
            async move {
                let ok = http.get(readyz).send().await.ok()?.status().is_success();
                ok.then_some(())
            }
        })
        .await;
        assert!(
            mailpit.child.try_wait().unwrap().is_none(),
            "mailpit exited at start"
        );
        mailpit
    }

    pub fn smtp_url(&self) -> notifications::smtp::SmtpUrl {
        smtp_url(self.smtp_port)
    }

    /// Summaries of every message received, newest first.
    pub async fn messages(&self) -> Vec<Value> {
        let v: Value = self
            .http
            .get(self.api.join("/api/v1/messages?limit=500").unwrap())
            .send()
            .await
            .expect("mailpit API")
            .json()
            .await
            .unwrap();
        v["messages"].as_array().cloned().unwrap_or_default()
    }

    /// The full message (with `Text` and `HTML`) whose subject is `subject`.
    pub async fn message_with_subject(&self, subject: &str) -> Value {
        let summary = self
            .messages()
            .await
            .into_iter()
            .find(|m| m["Subject"] == subject)
            .unwrap_or_else(|| panic!("no message with subject {subject:?}"));
        let id = summary["ID"].as_str().unwrap();
        self.http
            .get(self.api.join(&format!("/api/v1/message/{id}")).unwrap())
            .send()
            .await
            .expect("mailpit API")
            .json()
            .await
            .unwrap()
    }

    pub async fn wait_for_messages(&self, n: usize) -> Vec<Value> {
        eventually(30, &format!("{n} message(s) at mailpit"), || async {
            let m = self.messages().await;
            (m.len() >= n).then_some(m)
        })
        .await
    }
}

impl Drop for Mailpit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn smtp_url(port: u16) -> notifications::smtp::SmtpUrl {
    notifications::smtp::parse_smtp_url(&format!("smtp://127.0.0.1:{port}?tls=none")).unwrap()
}
