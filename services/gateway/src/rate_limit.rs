//! Per-client rate limiting with GCRA: in memory (governor) for one
//! replica, or in Redis (a GCRA script on the server's clock) so that every
//! replica draws on the same allowance.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use redis::aio::ConnectionManager;

/// How many requests a client may make: `per_second` sustained, `burst`
/// at once.
#[derive(Debug, Clone, Copy)]
pub struct Allowance {
    pub per_second: f64,
    pub burst: u32,
}

impl Allowance {
    fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.per_second.max(0.000_1))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the allowance is full again.
    pub reset_secs: u64,
    /// Seconds until the next request may pass (denied only).
    pub retry_after_secs: u64,
}

type Keyed =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

#[derive(Clone)]
pub enum ClientRateLimiter {
    Memory {
        allowance: Allowance,
        limiter: Arc<Keyed>,
    },
    Redis {
        allowance: Allowance,
        conn: ConnectionManager,
        prefix: String,
        script: Arc<redis::Script>,
    },
}

const GCRA: &str = r#"
local burst = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local tolerance = interval * burst
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((tolerance + interval) / 1000))
return {1, math.floor((tolerance - (new_tat - now)) / interval), 0, new_tat - now}
"#;

fn secs_ceil(micros: i64) -> u64 {
    (micros.max(0) as u64).div_ceil(1_000_000)
}

impl ClientRateLimiter {
    pub fn memory(allowance: Allowance) -> Self {
        let burst = NonZeroU32::new(allowance.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(allowance.interval())
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Self::Memory {
            allowance,
            limiter: Arc::new(
                RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            ),
        }
    }

    pub fn redis(allowance: Allowance, conn: ConnectionManager, prefix: &str) -> Self {
        Self::Redis {
            allowance,
            conn,
            prefix: prefix.to_string(),
            script: Arc::new(redis::Script::new(GCRA)),
        }
    }

    /// Forget clients idle long enough to have a full allowance again.
    pub fn forget_idle(&self) {
        if let Self::Memory { limiter, .. } = self {
            limiter.retain_recent();
        }
    }

    /// Take one request from `client`'s allowance. A Redis outage lets the
    /// request through (limiting is protection, not a point of failure).
    pub async fn check(&self, client: &str) -> Decision {
        match self {
            Self::Memory { allowance, limiter } => {
                let full_in = |remaining: u32| {
                    let missing = allowance.burst.saturating_sub(remaining) as f64;
                    (missing / allowance.per_second).ceil() as u64
                };
                match limiter.check_key(&client.to_string()) {
                    Ok(snapshot) => {
                        let remaining = snapshot.remaining_burst_capacity();
                        Decision {
                            allowed: true,
                            limit: allowance.burst,
                            remaining,
                            reset_secs: full_in(remaining),
                            retry_after_secs: 0,
                        }
                    }
                    Err(not_until) => {
                        let wait = not_until.wait_time_from(DefaultClock::default().now());
                        Decision {
                            allowed: false,
                            limit: allowance.burst,
                            remaining: 0,
                            reset_secs: full_in(0),
                            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                        }
                    }
                }
            }
            Self::Redis {
                allowance,
                conn,
                prefix,
                script,
            } => {
                let interval_us = (allowance.interval().as_micros() as i64).max(1);
                let result: Result<(i64, i64, i64, i64), _> = script
                    .key(format!("{prefix}:{client}"))
                    .arg(allowance.burst.max(1))
                    .arg(interval_us)
                    .invoke_async(&mut conn.clone())
                    .await;
                match result {
                    Ok((allowed, remaining, retry_us, reset_us)) => Decision {
                        allowed: allowed == 1,
                        limit: allowance.burst,
                        remaining: remaining.max(0) as u32,
                        reset_secs: secs_ceil(reset_us),
                        retry_after_secs: if allowed == 1 {
                            0
                        } else {
                            secs_ceil(retry_us).max(1)
                        },
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "shared rate limiter unavailable; letting the request through");
                        Decision {
                            allowed: true,
                            limit: allowance.burst,
                            remaining: allowance.burst,
                            reset_secs: 0,
                            retry_after_secs: 0,
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_limiter_allows_the_burst_then_refuses() {
        let l = ClientRateLimiter::memory(Allowance {
            per_second: 1.0,
            burst: 3,
        });
        for expected_remaining in [2, 1, 0] {
            let d = l.check("10.0.0.1").await;
            assert!(d.allowed);
            assert_eq!(d.remaining, expected_remaining);
        }
        let denied = l.check("10.0.0.1").await;
        assert!(!denied.allowed);
        assert!(denied.retry_after_secs >= 1);
        assert!(
            l.check("10.0.0.2").await.allowed,
            "other clients are unaffected"
        );
    }
}
