//! The one retry policy for every outbound request: Graph calls, token
//! requests and calendar URLs. Only transient failures are retried (408,
//! 429, 5xx gateways, timeouts, connection resets); `Retry-After` is
//! honoured as given, up to a cap; otherwise the wait is capped exponential
//! backoff with full jitter (a uniformly random wait between zero and the
//! exponential step, from a real RNG). The rest of the code only says
//! whether an error is transient ([`Transient`]).

use std::future::Future;
use std::time::Duration;

use rand::Rng;

/// First backoff step.
pub const BASE_BACKOFF: Duration = Duration::from_millis(250);
/// Largest backoff step.
pub const MAX_BACKOFF: Duration = Duration::from_secs(32);
/// Longest `Retry-After` honoured; longer ones are cut to this (a server
/// asking for an hour would otherwise stall a whole pass).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// `true` for HTTP statuses worth retrying.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Reads a `Retry-After` value: delay-seconds, or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e6)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// What a failed attempt says about retrying.
pub trait Transient {
    /// `Some(retry_after)` when the failure is transient (with the wait
    /// the server asked for, if any); `None` when retrying cannot help.
    fn transient(&self) -> Option<Option<Duration>>;
}

/// How many times, and how long apart, an operation is tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (at least 1).
    pub max_attempts: u32,
    /// First backoff step.
    pub base: Duration,
    /// Largest backoff step.
    pub cap: Duration,
}

impl RetryPolicy {
    /// A policy of `max_attempts` attempts with the default backoff.
    pub const fn new(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base: BASE_BACKOFF,
            cap: MAX_BACKOFF,
        }
    }

    /// After `failed` attempts failed transiently, how long to wait before
    /// the next one; `None` when no attempt is left.
    pub fn next_delay(&self, failed: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if failed >= self.max_attempts.max(1) {
            return None;
        }
        Some(match retry_after {
            Some(ra) => ra.min(MAX_RETRY_AFTER),
            None => {
                let step = self
                    .base
                    .saturating_mul(1u32 << failed.saturating_sub(1).min(20))
                    .min(self.cap);
                rand::thread_rng().gen_range(Duration::ZERO..=step)
            }
        })
    }

    /// Runs `op` until it succeeds, fails for good, or runs out of attempts.
    pub async fn run<T, E, F, Fut>(&self, what: &str, mut op: F) -> Result<T, E>
    where
        E: Transient + std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut failed = 0u32;
        loop {
            let e = match op().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            failed += 1;
            let Some(wait) = e.transient().and_then(|ra| self.next_delay(failed, ra)) else {
                return Err(e);
            };
            tracing::info!(message = "Retrying.", what, error = %e, wait_ms = wait.as_millis() as u64);
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[derive(Debug)]
    struct E(Option<Option<Duration>>);

    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:?}", self.0)
        }
    }

    impl Transient for E {
        fn transient(&self) -> Option<Option<Duration>> {
            self.0
        }
    }

    #[test]
    fn decisions_and_retry_after() {
        assert!(retryable_status(429) && retryable_status(503) && retryable_status(504));
        assert!(!retryable_status(400) && !retryable_status(403) && !retryable_status(404));
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(
            parse_retry_after("Mon, 01 Jan 2001 00:00:00 GMT"),
            Some(Duration::ZERO)
        );
        let p = RetryPolicy::new(6);
        assert_eq!(
            p.next_delay(1, Some(Duration::from_secs(7))),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            p.next_delay(1, Some(Duration::from_secs(3600))),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(p.next_delay(6, None), None);
        // Full jitter: anywhere in [0, step], and the steps grow to the cap.
        let mut seen_small = false;
        for failed in 1..6 {
            let step = BASE_BACKOFF * (1 << (failed - 1));
            for _ in 0..200 {
                let d = p.next_delay(failed, None).unwrap();
                assert!(d <= step.min(MAX_BACKOFF), "{failed}: {d:?}");
                seen_small |= d < step / 4;
            }
        }
        assert!(seen_small, "the waits are not spread down to zero");
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_with_backoff_on_paused_time() {
        let start = tokio::time::Instant::now();
        let calls = AtomicU32::new(0);
        let r: Result<u32, E> = RetryPolicy::new(4)
            .run("test", || async {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                match n {
                    1 => Err(E(Some(Some(Duration::from_secs(5))))),
                    2 | 3 => Err(E(Some(None))),
                    _ => Ok(n),
                }
            })
            .await;
        assert_eq!(r.unwrap(), 4);
        // 5 s as asked, then two jittered waits of at most 0.5 s and 1 s.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_secs(5) && took <= Duration::from_millis(6500),
            "{took:?}"
        );
        // A final error is not retried; attempts run out.
        let calls = AtomicU32::new(0);
        let r: Result<(), E> = RetryPolicy::new(4)
            .run("test", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(E(None))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let calls = AtomicU32::new(0);
        let _: Result<(), E> = RetryPolicy::new(3)
            .run("test", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(E(Some(None)))
            })
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
