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
use crate::state::{Fence, Held, SHARDS, Scope, StateStore, shard_of};

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

impl Scope for Shards {
    /// Held, and the lease still valid by this instance's monotonic clock.
    fn holds(&self, id: &str) -> bool {
        let s = self.state();
        s.valid_until.is_none_or(|v| Instant::now() < v) && s.held.contains_key(&shard_of(id))
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

/// Renews the leases of a shared store every [`HEARTBEAT`] until `stop`,
/// then gives the shards back. Newly held shards are sent on `taken`; the
/// budget of `limiter` follows the share held of the tenant's `budget`: a
/// smaller share at once, a larger one only a budget window later (what
/// the others spent under their larger shares still counts in Graph's
/// window), so that the instances together stay within the budget. An
/// instance alone from its start takes the whole budget at once.
#[allow(clippy::too_many_arguments)]
pub async fn heartbeat(
    store: Arc<dyn StateStore>,
    shards: Arc<Shards>,
    ttl: Duration,
    limiter: Arc<Limiter>,
    budget: Arc<std::sync::atomic::AtomicUsize>,
    taken: tokio::sync::mpsc::UnboundedSender<Vec<u16>>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut raise_at: Option<(Instant, usize)> = None;
    // Nothing is held before the first heartbeat: the smallest budget.
    limiter.set_budget(1);
    let mut first = true;
    loop {
        let started = Instant::now();
        match store.heartbeat(shards.holder(), ttl).await {
            Ok(held) => {
                let new = shards.update(&held, started, ttl);
                metrics.lease_renewed(held.shards.len(), held.taken_over.len());
                health.update(|h| h.database = "ok");
                let budget = budget.load(std::sync::atomic::Ordering::SeqCst);
                let share = (budget * held.shards.len() / usize::from(SHARDS)).max(1);
                let now_budget = limiter.budget();
                if share < now_budget || (first && held.live == 1) {
                    // Less at once; everything at once when alone from the
                    // start (as one instance on its own store would).
                    limiter.set_budget(share);
                    raise_at = None;
                } else if share > now_budget {
                    // Others may still be spending the shares they had.
                    let at = raise_at.map_or(started + limiter.window(), |(t, _)| t);
                    raise_at = Some((at, share));
                }
                first = false;
                if !held.taken_over.is_empty() {
                    tracing::warn!(message = "Took over shards of an instance that stopped.", shards = ?held.taken_over);
                }
                if !new.is_empty() {
                    let _ = taken.send(new);
                }
            }
            Err(e) => {
                tracing::error!(message = "Cannot renew the shard leases; writes stop when they lapse.", error = %e);
                health.update(|h| h.database = "unreachable");
                metrics.set_shards(shards.count());
            }
        }
        if let Some((at, share)) = raise_at
            && Instant::now() >= at
        {
            limiter.set_budget(share);
            raise_at = None;
        }
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT.saturating_sub(started.elapsed())) => {}
            _ = stop.cancelled() => break,
        }
    }
    if let Err(e) = store.release(shards.holder()).await {
        tracing::warn!(message = "Could not give the shards back; they lapse after the lease time.", error = %e);
    }
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
        // The same again: nothing new; a new epoch is new.
        assert!(s.update(&held, t0, Duration::from_secs(15)).is_empty());
        held.shards.insert(shard_of(id), 8);
        assert_eq!(s.update(&held, t0, Duration::from_secs(15)).len(), 1);
        // A lease renewed long ago has lapsed here before it does in the database.
        let long_ago = Instant::now() - Duration::from_secs(14);
        s.update(&held, long_ago, Duration::from_secs(15));
        assert!(!s.holds(id));
        assert_eq!(s.count(), 0);
        // One instance holds everything, for ever.
        let one = Shards::single("me");
        assert!(one.holds(id) && one.fence(&[id]).is_none());
    }
}
