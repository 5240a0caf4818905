//! What this instance may write, when several share one database: the
//! shards it holds (with their epochs, the fencing tokens) and until when.
//! "Until when" is read on this instance's monotonic clock: a lease renewed
//! by a heartbeat that *started* at `t` expires in the database at
//! `db_now + ttl`, which is later than `t + ttl`; so writes stop at
//! `t + ttl − margin`, before any other instance can take the shard —
//! whatever the instances' wall clocks say. A single instance (SQLite)
//! holds everything for ever. The heartbeat task keeps it current and
//! adjusts this instance's share of the tenant's Graph budget.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::graph::limiter::Limiter;
use crate::state::{Fence, Held, SHARDS, Scope, Spend, StateStore, shard_of};

use super::http::Health;
use super::metrics::Metrics;

/// How often a shared store's leases are renewed.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// What this instance holds.
#[derive(Debug)]
pub struct Shards {
    holder: String,
    shared: bool,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    held: BTreeMap<u16, i64>,
    /// Writes stop at this instant (None: never, a single instance).
    valid_until: Option<Instant>,
}

/// The margin kept inside a lease's expiry.
fn margin(ttl: Duration) -> Duration {
    (ttl / 3).min(Duration::from_secs(2))
}

impl Shards {
    /// Everything, for ever (one instance on its own store).
    pub fn single(holder: &str) -> Arc<Shards> {
        Arc::new(Shards {
            holder: holder.to_string(),
            shared: false,
            state: Mutex::new(State {
                held: Held::all().shards,
                valid_until: None,
            }),
        })
    }

    /// Nothing yet (a shared store: the heartbeat brings shards).
    pub fn shared(holder: &str) -> Arc<Shards> {
        Arc::new(Shards {
            holder: holder.to_string(),
            shared: true,
            state: Mutex::new(State {
                held: BTreeMap::new(),
                valid_until: Some(Instant::now()),
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This instance's name in the leases.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// How many shards are held (and still valid).
    pub fn count(&self) -> usize {
        let s = self.state();
        if s.valid_until.is_some_and(|v| Instant::now() >= v) {
            return 0;
        }
        s.held.len()
    }

    /// Takes in a heartbeat that started at `started`: returns the shards
    /// newly held (a takeover or a first share: their people need a pass).
    pub fn update(&self, held: &Held, started: Instant, ttl: Duration) -> Vec<u16> {
        let mut s = self.state();
        let lapsed = s.valid_until.is_some_and(|v| Instant::now() >= v);
        let new: Vec<u16> = held
            .shards
            .iter()
            .filter(|(shard, epoch)| lapsed || s.held.get(shard) != Some(epoch))
            .map(|(shard, _)| *shard)
            .collect();
        s.held = held.shards.clone();
        s.valid_until = Some(started + ttl.saturating_sub(margin(ttl)));
        new
    }
}

impl Shards {
    /// `true` when a write decided under `epoch` for `id` may be sent now:
    /// the shard is held under that very lease, still valid.
    pub fn holds_under(&self, id: &str, epoch: Option<i64>) -> bool {
        let s = self.state();
        s.valid_until.is_none_or(|v| Instant::now() < v)
            && s.held
                .get(&shard_of(id))
                .is_some_and(|e| epoch.is_none_or(|want| *e == want))
    }
}

impl Scope for Shards {
    /// Held, and the lease still valid by this instance's monotonic clock.
    fn holds(&self, id: &str) -> bool {
        self.holds_under(id, None)
    }

    /// The held shards of these ids, with their epochs (a shared store only).
    fn fence(&self, ids: &[&str]) -> Option<Fence> {
        if !self.shared {
            return None;
        }
        let s = self.state();
        let mut shards: Vec<(u16, i64)> = ids
            .iter()
            .filter_map(|id| {
                let shard = shard_of(id);
                s.held.get(&shard).map(|e| (shard, *e))
            })
            .collect();
        shards.sort_unstable();
        shards.dedup();
        Some(Fence {
            holder: self.holder.clone(),
            shards,
        })
    }
}

/// What the heartbeat of a shared store works with.
pub struct Heartbeat {
    /// The shared store.
    pub store: Arc<dyn StateStore>,
    /// What this instance holds (updated at each beat).
    pub shards: Arc<Shards>,
    /// `[state] lease_ttl`.
    pub ttl: Duration,
    /// The Graph limiter whose budget follows the shards held.
    pub limiter: Arc<Limiter>,
    /// The tenant's budget (`[graph] budget`, reloadable).
    pub budget: Arc<std::sync::atomic::AtomicUsize>,
    /// Where newly held shards are sent (the loop runs a pass for them).
    pub taken: tokio::sync::mpsc::UnboundedSender<Vec<u16>>,
    /// `/healthz` (`database`).
    pub health: Arc<Health>,
    /// `/metrics`.
    pub metrics: Arc<Metrics>,
}

impl Heartbeat {
    /// Renews the leases every [`HEARTBEAT`] until `stop`, then gives the
    /// shards back. The budget of the limiter follows [`budget_share`]:
    /// this instance's share of the tenant's budget, no more than what the
    /// others left of it.
    pub async fn run(self, stop: tokio_util::sync::CancellationToken) {
        // Nothing is held before the first heartbeat: the smallest budget.
        self.limiter.set_budget(1);
        loop {
            let started = Instant::now();
            self.beat(started).await;
            tokio::select! {
                _ = tokio::time::sleep(HEARTBEAT.saturating_sub(started.elapsed())) => {}
                _ = stop.cancelled() => break,
            }
        }
        if let Err(e) = self.store.release(self.shards.holder()).await {
            tracing::warn!(message = "Could not give the shards back; they lapse after the lease time.", error = %e);
        }
    }

    /// One beat, started at `started`: report the spend, renew, take or
    /// give shards, and update the budget, health and metrics.
    async fn beat(&self, started: Instant) {
        let spend = Spend {
            ops: self.limiter.spent().await,
            window: self.limiter.window(),
        };
        let beat = self
            .store
            .heartbeat(self.shards.holder(), self.ttl, spend)
            .await;
        if started.elapsed() > HEARTBEAT {
            tracing::warn!(
                message = "Renewing the shard leases was slow; writes stop if it takes longer than the lease margin.",
                ms = started.elapsed().as_millis() as u64
            );
        }
        match beat {
            Ok(held) => {
                let new = self.shards.update(&held, started, self.ttl);
                self.metrics
                    .lease_renewed(held.shards.len(), held.taken_over.len());
                self.health.update(|h| h.database = "ok");
                let budget = self.budget.load(std::sync::atomic::Ordering::SeqCst);
                self.limiter
                    .set_budget(budget_share(budget, held.shards.len(), held.others_spent));
                if !held.taken_over.is_empty() {
                    tracing::warn!(message = "Took over shards of an instance that stopped.", shards = ?held.taken_over);
                }
                if !new.is_empty() {
                    let _ = self.taken.send(new);
                }
            }
            Err(e) => {
                tracing::error!(message = "Cannot renew the shard leases; writes stop when they lapse.", error = %e);
                self.health.update(|h| h.database = "unreachable");
                self.metrics.set_shards(self.shards.count());
            }
        }
    }
}

/// This instance's budget: its shards' share of the tenant's `budget`, and
/// no more than the others left of it in the window (after a takeover or
/// a rebalance, what the others spent under their larger shares still
/// counts in Graph's window) — at least 1.
pub fn budget_share(budget: usize, held: usize, others_spent: usize) -> usize {
    let share = budget * held / usize::from(SHARDS);
    share.min(budget.saturating_sub(others_spent)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_stop_inside_the_lease_and_new_shards_are_told() {
        let s = Shards::shared("me");
        let id = "a11ce000-0000-4000-8000-000000000001";
        assert!(!s.holds(id), "nothing before the first heartbeat");
        let mut held = Held::default();
        held.shards.insert(shard_of(id), 7);
        let t0 = Instant::now();
        assert_eq!(s.update(&held, t0, Duration::from_secs(15)), [shard_of(id)]);
        assert!(s.holds(id));
        assert_eq!(s.fence(&[id]).unwrap().shards, [(shard_of(id), 7)]);
        assert!(s.holds_under(id, Some(7)) && !s.holds_under(id, Some(6)));
        // The same again: nothing new; a new epoch is new.
        assert!(s.update(&held, t0, Duration::from_secs(15)).is_empty());
        held.shards.insert(shard_of(id), 8);
        assert_eq!(s.update(&held, t0, Duration::from_secs(15)).len(), 1);
        // A lease renewed long ago has lapsed here before it does in the database.
        let long_ago = Instant::now() - Duration::from_secs(14);
        s.update(&held, long_ago, Duration::from_secs(15));
        assert!(!s.holds(id));
        assert_eq!(s.count(), 0);
        // The budget: the share of the shards held, within what is left.
        assert_eq!(budget_share(1500, 64, 0), 1500);
        assert_eq!(budget_share(1500, 21, 0), 492);
        assert_eq!(budget_share(1500, 32, 1400), 100);
        assert_eq!(budget_share(1500, 0, 0), 1);
        // One instance holds everything, for ever.
        let one = Shards::single("me");
        assert!(one.holds(id) && one.fence(&[id]).is_none());
    }
}
