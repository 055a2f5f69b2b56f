//! Delivery over SMTP (lettre, rustls with ring).
//!
//! `EMPORIUM_SMTP_URL` format:
//!
//! | URL | connection |
//! |---|---|
//! | `smtp://user:pass@host:587` | STARTTLS, required (the default for `smtp://`; port 587 if omitted) |
//! | `smtp://host:25?tls=opportunistic` | STARTTLS when the server offers it, else plain |
//! | `smtp://127.0.0.1:1025?tls=none` | plain text, for a server on this machine (mailpit) |
//! | `smtps://user:pass@host` | TLS from the first byte (port 465 if omitted) |
//!
//! User and password are optional and percent-decoded (`%40` for `@`).
//! The password never appears in logs, errors or `Debug` output.

use std::fmt;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use percent_encoding::percent_decode_str;

use crate::storage::notifications::NotificationRecord;

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtp://` (default): STARTTLS, refusing a server without it.
    StartTls,
    /// `smtp://…?tls=opportunistic`: STARTTLS if offered.
    Opportunistic,
    /// `smtps://`: TLS from the start.
    Implicit,
    /// `smtp://…?tls=none`: no encryption (local servers only).
    None,
}

/// A parsed `EMPORIUM_SMTP_URL`.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: Option<String>,
    password: Option<String>,
}

impl SmtpUrl {
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }
}

/// The URL with the password masked.
impl fmt::Display for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.security == Security::Implicit {
            "smtps"
        } else {
            "smtp"
        };
        write!(f, "{scheme}://")?;
        if let Some(u) = &self.username {
            write!(f, "{u}")?;
            if self.password.is_some() {
                write!(f, ":***")?;
            }
            write!(f, "@")?;
        }
        write!(f, "{}:{}", self.host, self.port)?;
        match self.security {
            Security::Opportunistic => write!(f, "?tls=opportunistic"),
            Security::None => write!(f, "?tls=none"),
            Security::StartTls | Security::Implicit => Ok(()),
        }
    }
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SmtpUrl({self})")
    }
}

fn decode(part: &str, what: &str) -> Result<String, String> {
    percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| format!("the {what} is not valid percent-encoded UTF-8"))
}

/// Parse an SMTP URL (see the module documentation for the format).
pub fn parse_smtp_url(s: &str) -> Result<SmtpUrl, String> {
    let url = url::Url::parse(s).map_err(|e| format!("not a URL ({e})"))?;
    let (mut security, default_port) = match url.scheme() {
        "smtp" => (Security::StartTls, 587),
        "smtps" => (Security::Implicit, 465),
        other => {
            return Err(format!(
                "unsupported scheme `{other}`; expected smtp:// or smtps://"
            ));
        }
    };
    for (key, value) in url.query_pairs() {
        match (key.as_ref(), value.as_ref(), security) {
            ("tls", "required" | "starttls", Security::StartTls) => {}
            ("tls", "opportunistic", Security::StartTls) => security = Security::Opportunistic,
            ("tls", "none", Security::StartTls) => security = Security::None,
            ("tls", v, Security::Implicit) => {
                return Err(format!(
                    "`tls={v}` does not apply to smtps:// (always TLS); use smtp:// for STARTTLS or none"
                ));
            }
            ("tls", v, _) => {
                return Err(format!(
                    "unknown `tls={v}`; expected required, opportunistic or none"
                ));
            }
            (k, _, _) => return Err(format!("unknown parameter `{k}`; only `tls` is understood")),
        }
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("the URL names no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let username = match url.username() {
        "" => None,
        u => Some(decode(u, "user name")?),
    };
    let password = url.password().map(|p| decode(p, "password")).transpose()?;
    if password.is_some() && username.is_none() {
        return Err("a password needs a user name".into());
    }
    if url.path() != "" && url.path() != "/" {
        return Err("an SMTP URL has no path".into());
    }
    Ok(SmtpUrl {
        host,
        port: url.port().unwrap_or(default_port),
        security,
        username,
        password,
    })
}

/// Why a delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth another attempt later (server down, 4xx, timeout).
    #[error("{0}")]
    Transient(String),
    /// Will never succeed (5xx refusal, unusable address).
    #[error("{0}")]
    Permanent(String),
}

#[derive(Debug, thiserror::Error)]
#[error("SMTP: {0}")]
pub struct SetupError(String);

/// Sends rendered notifications through one SMTP server.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    url: SmtpUrl,
}

impl Mailer {
    pub fn new(url: &SmtpUrl, from: Mailbox, timeout: Duration) -> Result<Self, SetupError> {
        let tls_params = || {
            TlsParameters::new(url.host.clone())
                .map_err(|e| SetupError(format!("TLS for {}: {e}", url.host)))
        };
        let tls = match url.security {
            Security::StartTls => Tls::Required(tls_params()?),
            Security::Opportunistic => Tls::Opportunistic(tls_params()?),
            Security::Implicit => Tls::Wrapper(tls_params()?),
            Security::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&url.host)
            .port(url.port)
            .tls(tls)
            .timeout(Some(timeout))
            .pool_config(PoolConfig::new().max_size(4));
        if let Some(user) = &url.username {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                url.password.clone().unwrap_or_default(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            url: url.clone(),
        })
    }

    /// The server, password masked (for logs).
    pub fn server(&self) -> &SmtpUrl {
        &self.url
    }

    /// Build the MIME message (text and HTML alternatives) for `n`.
    pub fn message(&self, n: &NotificationRecord) -> Result<Message, SendError> {
        let to: Mailbox = n
            .recipient
            .parse()
            .map_err(|e| SendError::Permanent(format!("invalid recipient address: {e}")))?;
        let domain = self.from.email.domain().to_string();
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(n.subject.clone())
            // Stable per notification, so a resend after a crash can be
            // recognised as the same message.
            .message_id(Some(format!("<{}@{domain}>", n.id)))
            .multipart(MultiPart::alternative_plain_html(
                n.body_text.clone(),
                n.body_html.clone(),
            ))
            .map_err(|e| SendError::Permanent(format!("cannot build the message: {e}")))
    }

    pub async fn send(&self, n: &NotificationRecord) -> Result<(), SendError> {
        let message = self.message(n)?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
            Err(e) => Err(SendError::Transient(e.to_string())),
        }
    }

    /// Connect and say NOOP (readiness).
    pub async fn check(&self) -> Result<(), String> {
        match self.transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!("{} does not answer NOOP", self.url)),
            Err(e) => Err(format!("{}: {e}", self.url)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_defaults_to_required_starttls_on_587() {
        let u = parse_smtp_url("smtp://mailer:s%40cret@mail.example.com").unwrap();
        assert_eq!(u.host, "mail.example.com");
        assert_eq!(u.port, 587);
        assert_eq!(u.security, Security::StartTls);
        assert_eq!(u.username.as_deref(), Some("mailer"));
        assert_eq!(u.password.as_deref(), Some("s@cret"));
    }

    #[test]
    fn smtps_and_tls_choices() {
        let u = parse_smtp_url("smtps://u:p@mail.example.com").unwrap();
        assert_eq!((u.port, u.security), (465, Security::Implicit));
        let u = parse_smtp_url("smtp://127.0.0.1:1025?tls=none").unwrap();
        assert_eq!((u.port, u.security), (1025, Security::None));
        assert_eq!(u.username, None);
        let u = parse_smtp_url("smtp://relay:25?tls=opportunistic").unwrap();
        assert_eq!(u.security, Security::Opportunistic);
        assert!(parse_smtp_url("smtp://h?tls=maybe").is_err());
        assert!(parse_smtp_url("smtps://h?tls=none").is_err());
        assert!(parse_smtp_url("smtp://h?timeout=3").is_err());
        assert!(parse_smtp_url("http://h").is_err());
        assert!(parse_smtp_url("smtp://:pw@h").is_err());
        assert!(parse_smtp_url("not a url").is_err());
    }

    #[test]
    fn the_password_never_shows() {
        let u = parse_smtp_url("smtp://mailer:hunter2@mail.example.com:2525").unwrap();
        assert_eq!(u.to_string(), "smtp://mailer:***@mail.example.com:2525");
        assert!(!format!("{u:?}").contains("hunter2"));
        let u = parse_smtp_url("smtp://[::1]:1025?tls=none").unwrap();
        assert_eq!(u.host, "::1");
    }

    #[tokio::test]
    async fn builds_a_multipart_message_with_a_stable_id() {
        let from: Mailbox = "Emporium <shop@emporium.local>".parse().unwrap();
        let mailer = Mailer::new(
            &parse_smtp_url("smtp://127.0.0.1:1?tls=none").unwrap(),
            from,
            Duration::from_secs(1),
        )
        .unwrap();
        let id = uuid::Uuid::now_v7();
        let n = NotificationRecord {
            id,
            user_id: None,
            kind: "welcome".into(),
            event_id: uuid::Uuid::now_v7(),
            order_id: None,
            order_number: None,
            recipient: "ada@example.com".into(),
            subject: "Welcome to Emporium, Ada".into(),
            body_text: "plain".into(),
            body_html: "<p>html</p>".into(),
            status: crate::storage::notifications::Status::Queued,
            attempts: 0,
            last_error: None,
            next_attempt_at: None,
            created_at: 0,
            sent_at: None,
        };
        let raw = String::from_utf8(mailer.message(&n).unwrap().formatted()).unwrap();
        assert!(
            raw.contains(&format!("Message-ID: <{id}@emporium.local>")),
            "{raw}"
        );
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/plain") && raw.contains("text/html"));
        let bad = NotificationRecord {
            recipient: "not an address".into(),
            ..n
        };
        assert!(matches!(mailer.message(&bad), Err(SendError::Permanent(_))));
    }
}
