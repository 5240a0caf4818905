//! The one retry policy and the one rate limiter.
//!
//! Retry: 408, 429, 5xx and transport errors are retried; `Retry-After`
//! (on the response or on a batch item) is honoured as given, otherwise
//! capped exponential backoff with full jitter. Other 4xx are final.
//!
//! Limiter: an exact sliding log — never more than `budget` operations in
//! any window of `window` length, whatever the concurrency.

use std::time::Duration;

use tokio::time::Instant;

/// `true` when a status is worth retrying.
pub fn should_retry(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Backoff cap.
pub const MAX_BACKOFF: Duration = Duration::from_secs(32);
/// First backoff step.
pub const BASE_BACKOFF: Duration = Duration::from_millis(250);

/// How long to wait before attempt `attempt + 1` (0-based `attempt` just failed).
pub fn delay(attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(ra) = retry_after {
        return ra;
    }
    let exp = BASE_BACKOFF
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_BACKOFF);
    // Full jitter in [exp/2, exp].
    let r = (uuid::Uuid::new_v4().as_u128() % 1000) as u32;
    exp / 2 + exp / 2 * r / 1000
}

/// Reads a `Retry-After` value in seconds (HTTP dates are rare from Graph).
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| *s >= 0.0 && *s < 3600.0)
        .map(Duration::from_secs_f64)
}

/// Never more than `budget` operations in any `window`, as Graph sees them.
///
/// An operation holds its slot from the moment it is allowed to start until
/// `window` after its answer came back: Graph counts a request when it
/// arrives, which is somewhere between the two, so spacing by the answer
/// time keeps the budget even when requests are delayed on the way.
pub struct Limiter {
    budget: usize,
    window: Duration,
    log: tokio::sync::Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    next_id: u64,
    /// (id, answered at): `None` while the request is in flight.
    entries: Vec<(u64, Option<Instant>)>,
}

/// Slots held by operations in flight; give them back with [`Limiter::release`].
#[derive(Debug)]
pub struct Permit {
    ids: Vec<u64>,
}

impl Limiter {
    /// A limiter.
    pub fn new(budget: usize, window: Duration) -> Limiter {
        Limiter {
            budget: budget.max(1),
            window,
            log: tokio::sync::Mutex::new(Slots::default()),
        }
    }

    /// Waits until `n` operations may start now, and holds their slots.
    pub async fn acquire(&self, n: usize) -> Permit {
        let n = n.clamp(1, self.budget);
        loop {
            let wait = {
                let mut log = self.log.lock().await;
                let now = Instant::now();
                let window = self.window;
                log.entries
                    .retain(|(_, t)| t.is_none_or(|t| now.duration_since(t) < window));
                if log.entries.len() + n <= self.budget {
                    let mut ids = Vec::with_capacity(n);
                    for _ in 0..n {
                        let id = log.next_id;
                        log.next_id += 1;
                        log.entries.push((id, None));
                        ids.push(id);
                    }
                    return Permit { ids };
                }
                // Sleep until the earliest answered slot leaves the window,
                // checking again soon if only in-flight slots block us.
                let earliest = log
                    .entries
                    .iter()
                    .filter_map(|(_, t)| *t)
                    .map(|t| (t + window).saturating_duration_since(now))
                    .min();
                earliest
                    .map(|e| e.min(Duration::from_millis(50)))
                    .unwrap_or(Duration::from_millis(20))
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }

    /// The operations of `permit` got their answers now.
    pub async fn release(&self, permit: Permit) {
        let now = Instant::now();
        let mut log = self.log.lock().await;
        for (id, t) in log.entries.iter_mut() {
            if t.is_none() && permit.ids.contains(id) {
                *t = Some(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_decisions() {
        assert!(should_retry(429) && should_retry(503) && should_retry(504));
        assert!(!should_retry(400) && !should_retry(403) && !should_retry(404));
        assert_eq!(
            delay(3, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        for a in 0..20 {
            let d = delay(a, None);
            assert!(d <= MAX_BACKOFF && d >= BASE_BACKOFF / 2, "{a}: {d:?}");
        }
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_never_exceeds_the_budget_in_any_window() {
        let limiter = std::sync::Arc::new(Limiter::new(10, Duration::from_secs(30)));
        let start = Instant::now();
        let stamps = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..35 {
            let l = limiter.clone();
            let s = stamps.clone();
            tasks.push(tokio::spawn(async move {
                let p = l.acquire(if i % 5 == 0 { 3 } else { 1 }).await;
                let t = Instant::now();
                l.release(p).await;
                let mut s = s.lock().unwrap();
                for _ in 0..(if i % 5 == 0 { 3 } else { 1 }) {
                    s.push(t);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut stamps = stamps.lock().unwrap().clone();
        stamps.sort();
        assert_eq!(stamps.len(), 49);
        for (i, t) in stamps.iter().enumerate() {
            let in_window = stamps[i..]
                .iter()
                .take_while(|u| u.duration_since(*t) < Duration::from_secs(30))
                .count();
            assert!(in_window <= 10, "{in_window} operations in one window");
        }
        // 49 operations at 10 per 30 s take four full windows, not more.
        let took = stamps.last().unwrap().duration_since(start);
        assert!(
            took >= Duration::from_secs(120) && took < Duration::from_secs(121),
            "{took:?}"
        );
    }
}
