//! The one rate limiter for Graph presence requests: an exact sliding log,
//! never more than `budget` operations in any window of `window` length,
//! whatever the concurrency. (Retries are `crate::retry`'s.)

use std::time::Duration;

use tokio::time::Instant;

/// Never more than `budget` operations in any `window`, as Graph sees them.
///
/// An operation holds its slot from the moment it is allowed to start until
/// `window` after its answer came back: Graph counts a request when it
/// arrives, which is somewhere between the two, so spacing by the answer
/// time keeps the budget even when requests are delayed on the way.
pub struct Limiter {
    /// The budget now (several instances share the tenant's: see
    /// [`Limiter::set_budget`]).
    budget: std::sync::atomic::AtomicUsize,
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

impl Permit {
    /// The slots held (fewer than asked when the budget is smaller).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// `true` when no slot is held.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl Limiter {
    /// A limiter.
    pub fn new(budget: usize, window: Duration) -> Limiter {
        Limiter {
            budget: std::sync::atomic::AtomicUsize::new(budget.max(1)),
            window,
            log: tokio::sync::Mutex::new(Slots::default()),
        }
    }

    /// The budget now.
    pub fn budget(&self) -> usize {
        self.budget.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Changes the budget (at least 1): this instance's share of the
    /// tenant's. Slots already held still count, so a smaller budget
    /// applies at once; a larger one must not be given before a window has
    /// passed since the others' shares shrank (the caller's business).
    pub fn set_budget(&self, budget: usize) {
        self.budget
            .store(budget.max(1), std::sync::atomic::Ordering::SeqCst);
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Slots taken within the last window (answered or in flight): what
    /// this instance spent, for the others to know.
    pub async fn spent(&self) -> usize {
        let mut log = self.log.lock().await;
        let now = Instant::now();
        let window = self.window;
        log.entries
            .retain(|(_, t)| t.is_none_or(|t| now.duration_since(t) < window));
        log.entries.len()
    }

    /// Waits until `n` operations may start now, and holds their slots.
    pub async fn acquire(&self, n: usize) -> Permit {
        let n = n.clamp(1, self.budget());
        loop {
            let wait = {
                let mut log = self.log.lock().await;
                let now = Instant::now();
                let window = self.window;
                log.entries
                    .retain(|(_, t)| t.is_none_or(|t| now.duration_since(t) < window));
                if log.entries.len() + n <= self.budget() {
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
