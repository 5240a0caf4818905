//! The daemon's Prometheus metrics (`/metrics`, the OpenMetrics text format
//! via `prometheus-client`). The sync engine reports writes through the
//! [`Observer`] seam, the Graph client reports each answer's status, and
//! the loop sets the gauges. Names are a contract: dashboards depend on them.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::engine::Observer;
use crate::graph::client::OpError;

/// A label set of one label.
type Label = Vec<(&'static str, String)>;

/// Every metric of the daemon.
pub struct Metrics {
    registry: Registry,
    writes: Family<Label, Counter>,
    graph_requests: Family<Label, Counter>,
    graph_throttled: Counter,
    publish_lag: Histogram,
    fetch_errors: Counter,
    stale_seconds: Gauge<f64, AtomicU64>,
    users: Family<Label, Gauge>,
    reload_errors: Counter,
    clock_jumps: Counter,
    shards_held: Gauge,
    lease_renewals: Counter,
    lease_takeovers: Counter,
}

/// Buckets of the publish lag, in seconds: the target is ≤ 2 s.
const LAG_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
];

impl Metrics {
    /// A registry with every metric at zero; the certificate's expiry is
    /// exported only when a certificate is used.
    pub fn new(certificate_expiry: Option<DateTime<Utc>>) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("calstatus");
        let writes = Family::<Label, Counter>::default();
        let graph_requests = Family::<Label, Counter>::default();
        let graph_throttled = Counter::default();
        let publish_lag = Histogram::new(LAG_BUCKETS);
        let fetch_errors = Counter::default();
        let stale_seconds = Gauge::<f64, AtomicU64>::default();
        let users = Family::<Label, Gauge>::default();
        let reload_errors = Counter::default();
        let clock_jumps = Counter::default();
        let shards_held = Gauge::default();
        let lease_renewals = Counter::default();
        let lease_takeovers = Counter::default();
        registry.register(
            "writes",
            "Status writes by outcome (a $batch item is one write): applied, failed, throttled",
            writes.clone(),
        );
        registry.register(
            "graph_requests",
            "HTTP requests to Microsoft Graph by answer status (0: no answer)",
            graph_requests.clone(),
        );
        registry.register(
            "graph_throttled",
            "Answers (batch items included) that were 429 Too Many Requests",
            graph_throttled.clone(),
        );
        registry.register(
            "publish_lag_seconds",
            "From a status's planned instant (start minus lead time) to Graph's 2xx",
            publish_lag.clone(),
        );
        registry.register(
            "calendar_fetch_errors",
            "Calendar reads that failed (the last good copy was kept)",
            fetch_errors.clone(),
        );
        registry.register(
            "calendar_stale_seconds",
            "Age of the oldest last good copy of a calendar",
            stale_seconds.clone(),
        );
        registry.register(
            "users",
            "Users by state: opted-in, planned, failed",
            users.clone(),
        );
        registry.register(
            "config_reload_errors",
            "Configuration edits that were rejected (the last good one stays)",
            reload_errors.clone(),
        );
        registry.register(
            "clock_jumps",
            "Wall-clock jumps detected (suspend/resume, NTP steps)",
            clock_jumps.clone(),
        );
        registry.register(
            "shards_held",
            "Shards of the people this instance writes for (all 64 on its own store)",
            shards_held.clone(),
        );
        registry.register(
            "lease_renewals",
            "Heartbeats that renewed this instance's shard leases (a shared store)",
            lease_renewals.clone(),
        );
        registry.register(
            "lease_takeovers",
            "Shards taken over from an instance that stopped renewing",
            lease_takeovers.clone(),
        );
        if let Some(at) = certificate_expiry {
            let g = Gauge::<f64, AtomicU64>::default();
            g.set(at.timestamp() as f64);
            registry.register(
                "certificate_expiry_timestamp_seconds",
                "When the app's certificate credential expires (Unix time)",
                g,
            );
        }
        Arc::new(Metrics {
            registry,
            writes,
            graph_requests,
            graph_throttled,
            publish_lag,
            fetch_errors,
            stale_seconds,
            users,
            reload_errors,
            clock_jumps,
            shards_held,
            lease_renewals,
            lease_takeovers,
        })
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// One HTTP answer from Graph (`0`: none came).
    pub fn graph_answer(&self, status: u16) {
        self.graph_requests
            .get_or_create(&vec![("status", status.to_string())])
            .inc();
    }

    /// A throttled answer or batch item.
    pub fn throttled(&self) {
        self.graph_throttled.inc();
    }

    /// A failed calendar read.
    pub fn fetch_error(&self) {
        self.fetch_errors.inc();
    }

    /// The age of the oldest last good calendar copy.
    pub fn set_stale(&self, seconds: f64) {
        self.stale_seconds.set(seconds);
    }

    /// How many users are in `state`.
    pub fn set_users(&self, state: &str, n: usize) {
        self.users
            .get_or_create(&vec![("state", state.to_string())])
            .set(n as i64);
    }

    /// A rejected configuration edit.
    pub fn reload_error(&self) {
        self.reload_errors.inc();
    }

    /// A detected clock jump.
    pub fn clock_jump(&self) {
        self.clock_jumps.inc();
    }

    /// How many shards this instance holds.
    pub fn set_shards(&self, n: usize) {
        self.shards_held.set(n as i64);
    }

    /// A heartbeat renewed the leases: `held` shards, `taken_over` of them
    /// just taken from a stopped instance.
    pub fn lease_renewed(&self, held: usize, taken_over: usize) {
        self.lease_renewals.inc();
        self.lease_takeovers.inc_by(taken_over as u64);
        self.set_shards(held);
    }
}

/// The outcome label of a write.
pub fn outcome(result: &Result<(), OpError>) -> &'static str {
    match result {
        Ok(()) => "applied",
        Err(e) if e.status == Some(429) => "throttled",
        Err(_) => "failed",
    }
}

impl Observer for Metrics {
    fn written(&self, _user: &str, result: &Result<(), OpError>, due: Option<DateTime<Utc>>) {
        self.writes
            .get_or_create(&vec![("outcome", outcome(result).to_string())])
            .inc();
        if let (Ok(()), Some(due)) = (result, due) {
            self.publish_lag
                .observe(crate::engine::lag(due, Utc::now()).as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        let m = Metrics::new(None);
        m.written("u", &Ok(()), Some(Utc::now()));
        m.graph_answer(200);
        m.throttled();
        m.set_users("planned", 3);
        let text = m.encode();
        for name in [
            "calstatus_writes_total{outcome=\"applied\"} 1",
            "calstatus_graph_requests_total{status=\"200\"} 1",
            "calstatus_graph_throttled_total 1",
            "calstatus_publish_lag_seconds_bucket",
            "calstatus_calendar_fetch_errors_total 0",
            "calstatus_calendar_stale_seconds",
            "calstatus_users{state=\"planned\"} 3",
            "calstatus_config_reload_errors_total 0",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
        assert!(!text.contains("certificate_expiry"));
    }
}
