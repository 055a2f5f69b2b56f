//! Slows down password guessing: after too many failures for one account
//! or from one client within a window, sign-in answers 429 until the window
//! ends. Counters live in the cache so every replica sees them.

use std::time::Duration;

use kit::cache::Cache;

#[derive(Clone)]
pub struct LoginThrottle {
    cache: Cache,
    window: Duration,
    max_per_account: i64,
    max_per_client: i64,
}

impl LoginThrottle {
    pub fn new(cache: Cache, window: Duration, max_per_account: u32, max_per_client: u32) -> Self {
        Self {
            cache,
            window,
            max_per_account: max_per_account as i64,
            max_per_client: max_per_client as i64,
        }
    }

    fn keys(email: &str, client: &str) -> (String, String) {
        (
            format!("login-failures:account:{email}"),
            format!("login-failures:client:{client}"),
        )
    }

    /// `Some(seconds)` while either counter is over its limit. A cache
    /// outage never locks anyone out.
    pub async fn blocked_for(&self, email: &str, client: &str) -> Option<u64> {
        let (account, client) = Self::keys(email, client);
        let mut wait = None;
        for (key, max) in [
            (account, self.max_per_account),
            (client, self.max_per_client),
        ] {
            match self.cache.counter(&key).await {
                Ok((count, left)) if count >= max => {
                    wait = Some(wait.unwrap_or(0).max(left.max(1)));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "login throttle unavailable"),
            }
        }
        wait
    }

    pub async fn record_failure(&self, email: &str, client: &str) {
        let (account, client) = Self::keys(email, client);
        for key in [account, client] {
            if let Err(e) = self.cache.incr_in_window(&key, self.window).await {
                tracing::warn!(error = %e, "login throttle unavailable");
            }
        }
    }

    pub async fn record_success(&self, email: &str) {
        let (account, _) = Self::keys(email, "");
        let _ = self.cache.delete(&account).await;
    }
}
