//! Access-token verification. Tokens are EdDSA JWTs signed by identity;
//! everyone else verifies them with identity's published JWKS, cached and
//! refetched when a token names a key not seen yet.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use axum::http::{header, request::Parts};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, RwLock};
use uuid::Uuid;

use crate::problem::Problem;

/// The claims identity puts in every access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub sub: Uuid,
    pub email: String,
    pub roles: Vec<String>,
    pub perms: Vec<String>,
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
}

/// The caller, as proven by a valid access token.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthUser {
    pub id: Uuid,
    pub email: String,
    pub roles: Vec<String>,
    pub perms: Vec<String>,
}

impl AuthUser {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    pub fn has_permission(&self, perm: &str) -> bool {
        self.perms.iter().any(|p| p == perm)
    }

    /// 403 unless the caller holds `perm`.
    pub fn require_permission(&self, perm: &str) -> Result<(), Problem> {
        if self.has_permission(perm) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "requires the `{perm}` permission"
            )))
        }
    }
}

impl From<Claims> for AuthUser {
    fn from(c: Claims) -> Self {
        Self {
            id: c.sub,
            email: c.email,
            roles: c.roles,
            perms: c.perms,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's algorithm is not allowed")]
    Algorithm,
    #[error("the token is signed with an unknown key")]
    UnknownKey,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("the signing keys cannot be fetched: {0}")]
    KeysUnavailable(String),
}

impl From<TokenError> for Problem {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::KeysUnavailable(_) => {
                Problem::unavailable("cannot verify tokens right now")
            }
            other => Problem::unauthorized(other.to_string()),
        }
    }
}

enum KeySource {
    Jwks {
        url: url::Url,
        http: reqwest::Client,
    },
    Fixed,
}

struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

/// Verifies access tokens: EdDSA only, `iss`, `aud` and `exp` checked.
pub struct TokenVerifier {
    source: KeySource,
    issuer: String,
    audience: String,
    cache: RwLock<KeyCache>,
    refetch: Mutex<()>,
    /// Least time between two fetches caused by unknown key ids, so forged
    /// `kid`s cannot hammer identity.
    min_refetch: Duration,
    max_age: Duration,
    /// Tokens already verified, until they expire: a signature check costs
    /// far more than a lookup, and clients reuse a token many times.
    verified: moka::future::Cache<Arc<str>, (AuthUser, i64)>,
}

fn verified_cache() -> moka::future::Cache<Arc<str>, (AuthUser, i64)> {
    moka::future::Cache::builder()
        .max_capacity(50_000)
        .time_to_live(Duration::from_secs(300))
        .build()
}

impl TokenVerifier {
    /// Verify with keys fetched from a JWKS URL.
    pub fn from_jwks_url(url: url::Url, issuer: &str, audience: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            source: KeySource::Jwks { url, http },
            issuer: issuer.into(),
            audience: audience.into(),
            cache: RwLock::new(KeyCache {
                keys: HashMap::new(),
                fetched_at: None,
            }),
            refetch: Mutex::new(()),
            min_refetch: Duration::from_secs(1),
            max_age: Duration::from_secs(300),
            verified: verified_cache(),
        }
    }

    /// Verify with a fixed key set (identity verifying its own tokens).
    pub fn from_jwks(jwks: &JwkSet, issuer: &str, audience: &str) -> Self {
        Self {
            source: KeySource::Fixed,
            issuer: issuer.into(),
            audience: audience.into(),
            cache: RwLock::new(KeyCache {
                keys: decode_jwks(jwks),
                fetched_at: Some(Instant::now()),
            }),
            refetch: Mutex::new(()),
            min_refetch: Duration::from_secs(1),
            max_age: Duration::MAX,
            verified: verified_cache(),
        }
    }

    /// Replace a fixed key set (identity after a key rotation).
    pub async fn replace_keys(&self, jwks: &JwkSet) {
        let mut cache = self.cache.write().await;
        cache.keys = decode_jwks(jwks);
        cache.fetched_at = Some(Instant::now());
    }

    pub fn with_min_refetch(mut self, d: Duration) -> Self {
        self.min_refetch = d;
        self
    }

    async fn fetch(&self) -> Result<(), TokenError> {
        let KeySource::Jwks { url, http } = &self.source else {
            return Ok(());
        };
        let set: JwkSet = http
            .get(url.clone())
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| TokenError::KeysUnavailable(e.to_string()))?
            .json()
            .await
            .map_err(|e| TokenError::KeysUnavailable(e.to_string()))?;
        let mut cache = self.cache.write().await;
        cache.keys = decode_jwks(&set);
        cache.fetched_at = Some(Instant::now());
        Ok(())
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, TokenError> {
        {
            let cache = self.cache.read().await;
            let fresh = cache
                .fetched_at
                .map(|t| t.elapsed() < self.max_age)
                .unwrap_or(false);
            if let (Some(k), true) = (cache.keys.get(kid), fresh) {
                return Ok(k.clone());
            }
        }
        let _one_fetch_at_a_time = self.refetch.lock().await;
        {
            let cache = self.cache.read().await;
            let recent = cache
                .fetched_at
                .map(|t| t.elapsed() < self.min_refetch)
                .unwrap_or(false);
            if let Some(k) = cache.keys.get(kid) {
                if recent
                    || cache
                        .fetched_at
                        .map(|t| t.elapsed() < self.max_age)
                        .unwrap_or(false)
                {
                    return Ok(k.clone());
                }
            } else if recent {
                return Err(TokenError::UnknownKey);
            }
        }
        if let Err(e) = self.fetch().await {
            // Keep serving with the keys we had if identity is briefly down.
            let cache = self.cache.read().await;
            return cache.keys.get(kid).cloned().ok_or(e);
        }
        let cache = self.cache.read().await;
        cache.keys.get(kid).cloned().ok_or(TokenError::UnknownKey)
    }

    pub async fn verify(&self, token: &str) -> Result<AuthUser, TokenError> {
        if let Some((user, exp)) = self.verified.get(token).await {
            if exp > now_secs() {
                return Ok(user);
            }
            self.verified.invalidate(token).await;
        }
        let (user, exp) = self.verify_signature(token).await?;
        self.verified
            .insert(token.into(), (user.clone(), exp))
            .await;
        Ok(user)
    }

    async fn verify_signature(&self, token: &str) -> Result<(AuthUser, i64), TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Algorithm);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = VALIDATION_LEEWAY_SECS as u64;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| match e
            .kind()
        {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => TokenError::Algorithm,
            other => TokenError::Invalid(format!("{other:?}")),
        })?;
        let exp = data.claims.exp;
        Ok((data.claims.into(), exp))
    }
}

const VALIDATION_LEEWAY_SECS: i64 = 5;

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn decode_jwks(set: &JwkSet) -> HashMap<String, DecodingKey> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some((kid, key))
        })
        .collect()
}

fn bearer(parts: &Parts) -> Result<Option<&str>, Problem> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| Problem::unauthorized("malformed Authorization header"))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(Problem::unauthorized(
            "expected `Authorization: Bearer <token>`",
        )),
    }
}

/// Verify the request's bearer token, if it has one.
pub async fn authenticate(
    verifier: &TokenVerifier,
    parts: &Parts,
) -> Result<Option<AuthUser>, Problem> {
    match bearer(parts)? {
        None => Ok(None),
        Some(token) => verifier
            .verify(token)
            .await
            .map(Some)
            .map_err(Problem::from),
    }
}

impl<S> FromRequestParts<S> for AuthUser
where
    Arc<TokenVerifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(user) = parts.extensions.get::<AuthUser>() {
            return Ok(user.clone());
        }
        let verifier = Arc::<TokenVerifier>::from_ref(state);
        let user = authenticate(&verifier, parts)
            .await?
            .ok_or_else(|| Problem::unauthorized("a bearer token is required"))?;
        parts.extensions.insert(user.clone());
        Ok(user)
    }
}

impl<S> OptionalFromRequestParts<S> for AuthUser
where
    Arc<TokenVerifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let verifier = Arc::<TokenVerifier>::from_ref(state);
        authenticate(&verifier, parts).await
    }
}
