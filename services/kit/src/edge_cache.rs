//! What a service tells the gateway about a response the gateway may keep
//! and serve again without asking the service.
//!
//! The service names a generation in the shared cache (its full key) and
//! the number it held when the response was made. The gateway serves its
//! copy only while a read of that key, made for every request it answers
//! from the copy, still returns the same number, and never longer than
//! `max-age`. A service that changes what the response shows sets a new
//! generation before it answers the change, so no copy outlives it.
//! A service marks only responses that are the same for every caller: the
//! gateway keys its copies by path and query alone.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue};

/// `x-emporium-edge-cache: generation-key=<key>; generation=<n>; max-age=<secs>`,
/// from a service to the gateway only (the gateway strips it).
pub const HEADER: HeaderName = HeaderName::from_static("x-emporium-edge-cache");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validity {
    /// The generation's key in the shared cache, in full.
    pub generation_key: String,
    pub generation: u64,
    pub max_age: Duration,
}

impl Validity {
    /// The header value; `None` for a key that cannot be written in one.
    pub fn header_value(&self) -> Option<HeaderValue> {
        if self.generation_key.is_empty()
            || self
                .generation_key
                .bytes()
                .any(|b| b == b';' || b == b'=' || !b.is_ascii_graphic())
        {
            return None;
        }
        HeaderValue::from_str(&format!(
            "generation-key={}; generation={}; max-age={}",
            self.generation_key,
            self.generation,
            self.max_age.as_secs()
        ))
        .ok()
    }

    pub fn parse(value: &HeaderValue) -> Option<Self> {
        let (mut key, mut generation, mut max_age) = (None, None, None);
        for part in value.to_str().ok()?.split(';') {
            match part.trim().split_once('=')? {
                ("generation-key", k) if !k.is_empty() => key = Some(k.to_string()),
                ("generation", n) => generation = n.parse().ok(),
                ("max-age", s) => max_age = s.parse().ok().map(Duration::from_secs),
                _ => return None,
            }
        }
        Some(Self {
            generation_key: key?,
            generation: generation?,
            max_age: max_age.filter(|a| !a.is_zero())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_header() {
        let v = Validity {
            generation_key: "emporium:catalog:generation".into(),
            generation: 42,
            max_age: Duration::from_secs(60),
        };
        assert_eq!(Validity::parse(&v.header_value().unwrap()), Some(v));
    }

    #[test]
    fn refuses_what_it_cannot_trust() {
        for bad in [
            "generation=1; max-age=60",
            "generation-key=k; max-age=60",
            "generation-key=k; generation=x; max-age=60",
            "generation-key=k; generation=1; max-age=0",
            "generation-key=k; generation=1; max-age=60; private=1",
            "nonsense",
        ] {
            assert_eq!(
                Validity::parse(&HeaderValue::from_static(bad)),
                None,
                "{bad}"
            );
        }
        let spaced = Validity {
            generation_key: "a b".into(),
            generation: 1,
            max_age: Duration::from_secs(1),
        };
        assert_eq!(spaced.header_value(), None);
    }
}
