//! Stripe's webhook signature scheme, which the sandbox signs with too:
//! `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>[,v1=…]`, the
//! HMAC taken with the endpoint's secret over `"{t}.{raw body}"`. A request
//! passes when any `v1` matches (compared in constant time) and `t` lies
//! within the tolerance of now.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub const HEADER: &str = "stripe-signature";

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header is malformed")]
    Malformed,
    #[error("no signature matches the payload")]
    Mismatch,
    #[error("the signature's timestamp is outside the tolerance")]
    OutsideTolerance,
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `Stripe-Signature` value for `body` signed at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", to_hex(&tag))
}

/// Check a `Stripe-Signature` header against the raw body at `now` (Unix
/// seconds). Returns the signed timestamp.
pub fn verify(
    secret: &str,
    header: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            continue;
        };
        match key {
            "t" => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                )
            }
            // Other schemes (v0, …) are ignored, as Stripe's libraries do.
            "v1" => candidates.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let expected = mac(secret, timestamp, body);
    let matched = candidates
        .iter()
        .filter_map(|c| from_hex(c))
        .any(|tag| expected.clone().verify_slice(&tag).is_ok());
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    if now.abs_diff(timestamp) > tolerance.as_secs() {
        return Err(SignatureError::OutsideTolerance);
    }
    Ok(timestamp)
}

pub(super) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test";
    const TOLERANCE: Duration = Duration::from_secs(300);

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut mac = HmacSha256::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            to_hex(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn signs_timestamp_dot_body() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(SECRET, 1_700_000_000, body);
        let mut mac = HmacSha256::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(b"1700000000.{\"id\":\"evt_1\"}");
        assert_eq!(
            header,
            format!("t=1700000000,v1={}", to_hex(&mac.finalize().into_bytes()))
        );
    }

    #[test]
    fn accepts_a_valid_signature_among_several() {
        let body = b"{}";
        let good = sign(SECRET, 1000, body);
        let v1 = good.split_once("v1=").unwrap().1;
        let header = format!("t=1000,v1={},v0=abc,v1={v1}", "00".repeat(32));
        assert_eq!(
            verify(SECRET, Some(&header), body, 1100, TOLERANCE),
            Ok(1000)
        );
    }

    #[test]
    fn rejects_what_it_must() {
        let body = br#"{"amount":100}"#;
        let header = sign(SECRET, 1000, body);
        assert_eq!(
            verify(SECRET, None, body, 1000, TOLERANCE),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(SECRET, Some("garbage"), body, 1000, TOLERANCE),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(SECRET, Some("t=1000"), body, 1000, TOLERANCE),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(SECRET, Some(&header), br#"{"amount":1}"#, 1000, TOLERANCE),
            Err(SignatureError::Mismatch),
            "tampered body"
        );
        assert_eq!(
            verify("whsec_other", Some(&header), body, 1000, TOLERANCE),
            Err(SignatureError::Mismatch),
            "other secret"
        );
        assert_eq!(
            verify(SECRET, Some(&header), body, 1301, TOLERANCE),
            Err(SignatureError::OutsideTolerance),
            "stale"
        );
        assert_eq!(
            verify(SECRET, Some(&header), body, 699, TOLERANCE),
            Err(SignatureError::OutsideTolerance),
            "from the future"
        );
        let replayed = header.replace("t=1000", "t=1299");
        assert_eq!(
            verify(SECRET, Some(&replayed), body, 1300, TOLERANCE),
            Err(SignatureError::Mismatch),
            "a fresh timestamp on an old signature"
        );
        assert_eq!(
            verify(SECRET, Some(&header), body, 1300, TOLERANCE),
            Ok(1000)
        );
    }

    #[test]
    fn hex_round_trips_and_rejects_junk() {
        assert_eq!(
            from_hex(&to_hex(&[0, 1, 0xab, 0xff])).unwrap(),
            vec![0, 1, 0xab, 0xff]
        );
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }
}
