//! Issuing tokens: short-lived EdDSA access tokens and opaque, rotating
//! refresh tokens stored only as a hash.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header};
use kit::auth::Claims;
use sha2::{Digest, Sha256};

use crate::domain::role::{self, Role};
use crate::keys::KeyRing;
use crate::storage::users::UserRecord;

pub fn access_token(
    keys: &KeyRing,
    user: &UserRecord,
    issuer: &str,
    audience: &str,
    now_secs: i64,
    ttl_secs: i64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let claims = Claims {
        sub: user.id,
        email: user.email.clone(),
        roles: user
            .roles
            .iter()
            .map(|r: &Role| r.as_str().to_string())
            .collect(),
        perms: role::permissions(&user.roles),
        iss: issuer.to_string(),
        aud: audience.to_string(),
        exp: now_secs + ttl_secs,
        iat: now_secs,
    };
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(keys.current_kid().to_string());
    jsonwebtoken::encode(&header, &claims, keys.encoding_key())
}

/// 256 random bits, URL-safe.
pub fn new_refresh_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn hash_refresh_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let a = new_refresh_token();
        let b = new_refresh_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(hash_refresh_token(&a).len(), 64);
        assert_eq!(hash_refresh_token(&a), hash_refresh_token(&a));
    }
}
