//! The sender: delivers queued notifications over SMTP. Each claim counts
//! an attempt; a failed attempt is retried with exponential backoff until
//! the configured number of attempts, then the notification is `failed`.
//! Claims lease rows, so replicas never send the same one at once and a
//! crashed sender's rows come back when the lease ends.

use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::smtp::{Mailer, SendError};
use crate::storage::notifications::{self, NotificationRecord};

/// Rows claimed per round; sent a few at a time.
const BATCH: i64 = 16;
const CONCURRENCY: usize = 4;
/// Longest an `last_error` is kept.
const MAX_ERROR_LEN: usize = 500;

/// How long a claim holds a row before another sender may take it: long
/// enough for a whole batch to time out.
pub fn lease(smtp_timeout: Duration) -> Duration {
    smtp_timeout * 4 * (BATCH as u32 / CONCURRENCY as u32) + Duration::from_secs(30)
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_ERROR_LEN {
        let mut cut = MAX_ERROR_LEN;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

async fn deliver(
    state: &AppState,
    mailer: &Mailer,
    n: NotificationRecord,
) -> Result<(), sqlx::Error> {
    let policy = &state.settings.delivery;
    match mailer.send(&n).await {
        Ok(()) => {
            notifications::mark_sent(state.db.pool(), n.id, kit::clock::now_millis()).await?;
            metrics::counter!("notifications_emails_total", "outcome" => "sent").increment(1);
            tracing::info!(notification_id = %n.id, kind = %n.kind, attempt = n.attempts, "email sent");
        }
        Err(e) => {
            let permanent = matches!(e, SendError::Permanent(_));
            let attempts = u32::try_from(n.attempts).unwrap_or(u32::MAX);
            let retry_at = (!permanent && attempts < policy.max_attempts)
                .then(|| kit::clock::now_millis() + policy.backoff(attempts).as_millis() as i64);
            let error = truncate(e.to_string());
            notifications::record_failure(state.db.pool(), n.id, &error, retry_at).await?;
            let outcome = if retry_at.is_some() {
                "retry"
            } else {
                "failed"
            };
            metrics::counter!("notifications_emails_total", "outcome" => outcome).increment(1);
            if retry_at.is_some() {
                tracing::warn!(notification_id = %n.id, attempt = n.attempts, %error, "email not sent; will retry");
            } else {
                tracing::error!(notification_id = %n.id, attempt = n.attempts, permanent, %error, "email not sent; giving up");
            }
        }
    }
    Ok(())
}

/// Claim the notifications due now and try each once; returns how many
/// were claimed.
pub async fn deliver_due(state: &AppState, mailer: &Mailer) -> Result<usize, sqlx::Error> {
    let now = kit::clock::now_millis();
    let lease_until = now + lease(state.settings.smtp_timeout).as_millis() as i64;
    let claimed = notifications::claim_due(&state.db, now, lease_until, BATCH).await?;
    let count = claimed.len();
    let results: Vec<Result<(), sqlx::Error>> = futures::stream::iter(claimed)
        .map(|n| deliver(state, mailer, n))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect::<Result<(), _>>()?;
    Ok(count)
}

/// Deliver until `shutdown`: at once when a notification is queued, and
/// every poll interval for retries that come due.
pub async fn run(state: AppState, mailer: Mailer, shutdown: CancellationToken) {
    tracing::info!(server = %mailer.server(), "email sender started");
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        match deliver_due(&state, &mailer).await {
            Ok(n) if n as i64 == BATCH => {
                failures = 0;
                continue;
            }
            Ok(_) => {
                failures = 0;
                tokio::select! {
                    _ = state.sender_wake.notified() => {}
                    _ = tokio::time::sleep(state.settings.sender_poll) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
            Err(e) => {
                failures += 1;
                let wait = Duration::from_millis(100 * 2u64.pow(failures.min(6)));
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "email sender cannot reach its database");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_kept_short_on_a_char_boundary() {
        let long = "é".repeat(400);
        let t = truncate(long);
        assert!(t.len() <= MAX_ERROR_LEN + '…'.len_utf8());
        assert!(t.ends_with('…'));
        assert_eq!(truncate("short".into()), "short");
    }

    #[test]
    fn the_lease_outlasts_a_batch_of_timeouts() {
        let t = Duration::from_secs(30);
        assert!(lease(t) > t * (BATCH as u32 / CONCURRENCY as u32));
    }
}
