use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use super::Email;

/// A password that meets the policy: at least 10 characters, at most 256,
/// and not the account's email.
pub struct NewPassword(String);

impl NewPassword {
    pub fn parse(raw: &str, email: &Email) -> Result<Self, &'static str> {
        Self::check_length(raw)?;
        if raw.trim().eq_ignore_ascii_case(email.as_str()) {
            return Err("must not be the email address");
        }
        Ok(NewPassword(raw.to_string()))
    }

    /// The rules that do not depend on the email address, for a form
    /// whose email is invalid too.
    pub fn check_length(raw: &str) -> Result<(), &'static str> {
        match raw.chars().count() {
            n if n < 10 => Err("must be at least 10 characters"),
            n if n > 256 => Err("must be at most 256 characters"),
            _ => Ok(()),
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Argon2id at OWASP's parameters (19 MiB, 2 iterations, 1 lane), run off
/// the async runtime with bounded concurrency so a login burst cannot
/// exhaust memory or starve other requests.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    dummy_hash: Arc<str>,
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("OWASP argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

impl PasswordHasher {
    pub fn new(max_concurrent: usize) -> Self {
        let dummy = argon2()
            .hash_password(b"a password nobody has")
            .map(|h| h.to_string())
            .unwrap_or_default();
        Self {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            dummy_hash: dummy.into(),
        }
    }

    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| HashError(e.to_string()))?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            argon2()
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| HashError(e.to_string()))
        })
        .await
        .map_err(|e| HashError(e.to_string()))?
    }

    /// Does `password` match `stored`? With no stored hash (unknown
    /// account) a dummy is checked, so both cases take the same time.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, HashError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| HashError(e.to_string()))?;
        let known = stored.is_some();
        let hash = stored.unwrap_or(&self.dummy_hash).to_owned();
        let password = password.to_owned();
        let matched = tokio::task::spawn_blocking(move || {
            let Ok(parsed) = PasswordHash::new(&hash) else {
                return false;
            };
            argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .await
        .map_err(|e| HashError(e.to_string()))?;
        Ok(known && matched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        let email = Email::parse("ada@example.com").unwrap();
        assert!(NewPassword::parse("short", &email).is_err());
        assert!(NewPassword::check_length("short").is_err());
        assert!(NewPassword::check_length("correct horse battery").is_ok());
        assert!(NewPassword::parse("ada@example.com", &email).is_err());
        assert!(NewPassword::parse("correct horse battery", &email).is_ok());
    }

    #[tokio::test]
    async fn hashes_with_argon2id_and_verifies() {
        let h = PasswordHasher::new(2);
        let hash = h.hash("correct horse battery").await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            h.verify("correct horse battery", Some(&hash))
                .await
                .unwrap()
        );
        assert!(!h.verify("wrong horse battery", Some(&hash)).await.unwrap());
        assert!(!h.verify("anything at all", None).await.unwrap());
    }
}
