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
        Self::start_on(None, &[]).await
    }

    /// Start on `smtp_port` (loopback only; no update checks, no outside
    /// lookups), waiting until its API answers.
    pub async fn start_with(smtp_port: u16, extra: &[&str]) -> Mailpit {
        Self::start_on(Some(smtp_port), extra).await
    }

    /// Ports come from [`free_port`], which another test may take between
    /// the check and mailpit's bind; mailpit then exits at once (saying so
    /// on its stdout), so it is started again on other ports.
    async fn start_on(smtp_port: Option<u16>, extra: &[&str]) -> Mailpit {
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            let smtp_port = smtp_port.unwrap_or_else(free_port);
            match Self::try_start(smtp_port, extra).await {
                Ok(mailpit) => return mailpit,
                Err(why) if attempt < ATTEMPTS => {
                    eprintln!("mailpit attempt {attempt}: {why}; trying other ports")
                }
                Err(why) => panic!("mailpit did not start in {ATTEMPTS} attempts: {why}"),
            }
        }
        unreachable!()
    }

    async fn try_start(smtp_port: u16, extra: &[&str]) -> Result<Mailpit, String> {
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
            // With --quiet mailpit logs only errors, and logs them here.
            .stdout(Stdio::inherit())
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
        // Its own info endpoint, not just any `/readyz`: a test's service
        // listening on that port would answer one too.
        let info = mailpit.api.join("/api/v1/info").unwrap();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(status) = mailpit.child.try_wait().unwrap() {
                return Err(format!("it exited ({status})"));
            }
            let answer = mailpit.http.get(info.clone()).send().await;
            if let Ok(res) = answer
                && res.status().is_success()
                && let Ok(body) = res.json::<Value>().await
                && body.get("Version").is_some()
            {
                return Ok(mailpit);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("no answer from {info} within 30 s"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
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
