//! One scenario: a full `sync::run_pass` against a fresh fake, and what the
//! fake's log and the scheduler say about it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use calstatus::reconcile::Decision;
use calstatus::sync::{SyncOptions, run_pass};

use crate::common::{process_cpu_s, secs, utc};
use crate::fake_graph::{self, FakeGraph, Options};
use crate::{EXPIRY, FREE_BUDGET, PASS_AT, READ_CHUNK, WINDOW, write_config};

/// A scenario: org size, batching, concurrency and budget.
#[derive(Clone)]
pub struct Scenario {
    pub name: String,
    pub users: usize,
    pub batch: bool,
    pub concurrency: usize,
    pub budget: usize,
    pub fake_budget: Option<usize>,
}

/// Stages of a pass, from the fake's operation log.
#[derive(Default)]
pub struct Stages {
    /// Pass start → first presence operation at the fake (planning, state, token).
    pub before_reads_s: f64,
    /// First read → last read answered.
    pub reads_s: f64,
    /// Last read answered → first write at the fake (reconcile, intents).
    pub reconcile_s: f64,
    /// First write → last write answered.
    pub writes_s: f64,
    /// Last write answered → `run_pass` returned.
    pub tail_s: f64,
}

/// What one pass did.
pub struct Outcome {
    pub scenario: Scenario,
    pub load_s: f64,
    pub wall_s: f64,
    /// Wall time of every repetition (the row is the median one).
    pub wall_runs: Vec<f64>,
    /// CPU seconds of this process (client, fake, planning) during the pass.
    pub cpu_s: f64,
    /// CPU seconds other processes used during the pass.
    pub others_cpu_s: f64,
    /// On-CPU and runnable-but-waiting times of our threads during the pass.
    pub sched: Sched,
    pub http_requests: usize,
    pub token_requests: usize,
    pub presence_ops: usize,
    pub reads: usize,
    pub set_count: usize,
    pub users_with_message: usize,
    pub failed: usize,
    pub counts: BTreeMap<String, usize>,
    pub stages: Stages,
    pub max_in_window: usize,
    pub min_gap_budget_ops_s: Option<f64>,
    pub last_op_s: f64,
    pub budget_floor_s: f64,
}

impl Outcome {
    /// Every user ended with our message, and nothing failed.
    pub fn all_set(&self) -> bool {
        self.users_with_message == self.scenario.users
            && self.set_count == self.scenario.users
            && self.failed == 0
    }
}

/// Most operations in any rolling window `(t - 30 s, t]` (the fake's own rule).
fn max_in_window(log: &[Instant]) -> usize {
    let mut best = 0;
    let mut left = 0;
    for (right, t) in log.iter().enumerate() {
        while t.duration_since(log[left]) >= WINDOW {
            left += 1;
        }
        best = best.max(right - left + 1);
    }
    best
}

/// Shortest time between an operation and the one `budget` later (≥ 30 s when
/// the budget is kept).
fn min_gap(log: &[Instant], budget: usize) -> Option<Duration> {
    (budget..log.len())
        .map(|i| log[i].duration_since(log[i - budget]))
        .min()
}

/// Busy CPU seconds of the whole machine (all processes; Linux).
fn machine_busy_s() -> f64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|st| {
            let line = st.lines().next()?;
            let v: Vec<f64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
            let busy: f64 = v
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
                .map(|(_, x)| x)
                .sum();
            Some(busy / 100.0)
        })
        .unwrap_or_default()
}

/// (on-CPU, waiting-for-CPU) seconds from a `schedstat` file.
fn schedstat(path: &Path) -> (f64, f64) {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|st| {
            let mut f = st.split_whitespace().map(|x| x.parse::<f64>().ok());
            Some((f.next()?? / 1e9, f.next()?? / 1e9))
        })
        .unwrap_or_default()
}

/// Scheduler times per thread id: (on a CPU, runnable but waiting for one).
fn sched_now() -> HashMap<String, (f64, f64)> {
    let mut out = HashMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc/self/task") {
        for e in rd.flatten() {
            out.insert(
                e.file_name().to_string_lossy().into_owned(),
                schedstat(&e.path().join("schedstat")),
            );
        }
    }
    out
}

/// Scheduler times during the pass: the main thread (it drives `run_pass`,
/// as in the CLI) and every thread alive at the end (tokio workers: the
/// fake and hyper; threads that exited during the pass, such as the
/// planner's scoped threads, are not counted).
#[derive(Clone, Copy, Default)]
pub struct Sched {
    pub main_run: f64,
    pub main_wait: f64,
    pub all_run: f64,
    pub all_wait: f64,
}

impl Sched {
    fn between(before: &HashMap<String, (f64, f64)>, after: &HashMap<String, (f64, f64)>) -> Sched {
        let main = std::process::id().to_string();
        let mut s = Sched::default();
        for (tid, (run, wait)) in after {
            let (r0, w0) = before.get(tid).copied().unwrap_or_default();
            s.all_run += run - r0;
            s.all_wait += wait - w0;
            if *tid == main {
                s.main_run = run - r0;
                s.main_wait = wait - w0;
            }
        }
        s
    }
}

/// A fresh fake answering after `latency`, with the scenario's budget.
pub async fn start_fake(ids: &[String], latency: Duration, budget: Option<usize>) -> FakeGraph {
    let fake = FakeGraph::start(Options {
        users: ids.to_vec(),
        upns: Vec::new(),
        ..Options::default()
    })
    .await;
    fake.set_latency(latency);
    fake.set_budget(budget);
    fake
}

/// One pass of scenario `s` over the first `ids`, on a fresh fake and state file.
pub async fn run_scenario(
    dir: &Path,
    ids: &[String],
    s: Scenario,
    latency: Duration,
) -> Result<Outcome, String> {
    let fake = start_fake(ids, latency, s.fake_budget).await;
    let cfg = write_config(
        dir,
        &s.name,
        &fake,
        s.batch,
        s.concurrency,
        s.budget,
        s.users,
    )
    .map_err(|e| format!("writing the config: {e}"))?;
    let t_load = Instant::now();
    let org = calstatus::org::load(&cfg).map_err(|p| format!("org::load: {p:?}"))?;
    let load_s = secs(t_load.elapsed());
    let settings =
        calstatus::graph::settings(&org.config).map_err(|p| format!("graph settings: {p:?}"))?;
    let opts = SyncOptions {
        at: utc(PASS_AT),
        users: Vec::new(),
        dry_run: false,
        lead_time: chrono::Duration::zero(),
        policy: org.config.file.sync.personal_message,
        scope: None,
    };
    let (cpu0, busy0, sched0) = (process_cpu_s(), machine_busy_s(), sched_now());
    let start = Instant::now();
    let report = run_pass(&org, settings, &opts)
        .await
        .map_err(|e| format!("run_pass: {e}"))?;
    let wall = start.elapsed();
    let cpu_s = process_cpu_s() - cpu0;
    let others_cpu_s = (machine_busy_s() - busy0 - cpu_s).max(0.0);
    let sched = Sched::between(&sched0, &sched_now());
    if let Some(first) = report
        .users
        .iter()
        .filter(|u| u.decision == Decision::Failed)
        .find_map(|u| u.error.clone())
    {
        eprintln!(
            "sync_fake: {}: {} failed users, first error: {first}",
            s.name,
            report.failed.len()
        );
    }
    let mut out = observe(&fake, s, start, wall, latency);
    out.load_s = load_s;
    out.cpu_s = cpu_s;
    out.others_cpu_s = others_cpu_s;
    out.sched = sched;
    out.failed = report.failed.len();
    out.counts = report
        .counts
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    Ok(out)
}

/// What the fake saw of a pass that started at `start` and took `wall`.
fn observe(
    fake: &FakeGraph,
    s: Scenario,
    start: Instant,
    wall: Duration,
    latency: Duration,
) -> Outcome {
    let log = fake.presence_ops_log();
    let reads = s.users.div_ceil(READ_CHUNK);
    let expiry = utc(EXPIRY);
    let users_with_message = fake
        .messages()
        .values()
        .filter(|m| {
            m.as_ref()
                .is_some_and(|p| p.by_app && !p.content.is_empty() && p.expiry == Some(expiry))
        })
        .count();
    let k = log.len();
    let binding = s.budget < FREE_BUDGET;
    Outcome {
        load_s: 0.0,
        wall_s: secs(wall),
        wall_runs: vec![secs(wall)],
        cpu_s: 0.0,
        others_cpu_s: 0.0,
        sched: Sched::default(),
        http_requests: fake.http_requests(),
        token_requests: fake.token_requests(),
        presence_ops: k,
        reads,
        set_count: fake.set_count(),
        users_with_message,
        failed: 0,
        counts: BTreeMap::new(),
        stages: stages(&log, reads, start, wall, latency),
        max_in_window: max_in_window(&log),
        min_gap_budget_ops_s: binding.then(|| min_gap(&log, s.budget).map(secs)).flatten(),
        last_op_s: log
            .last()
            .map(|l| secs(l.saturating_duration_since(start)))
            .unwrap_or_default(),
        budget_floor_s: if binding {
            (k.saturating_sub(1) / s.budget) as f64 * WINDOW.as_secs_f64()
        } else {
            0.0
        },
        scenario: s,
    }
}

/// The stages of a pass, read off the presence-operation log: `reads`
/// reads, then the writes.
fn stages(
    log: &[Instant],
    reads: usize,
    start: Instant,
    wall: Duration,
    latency: Duration,
) -> Stages {
    let at = |i: usize| log.get(i).map(|x| x.saturating_duration_since(start));
    let (Some(first), Some(last_read), Some(first_write), Some(last)) =
        (at(0), at(reads.saturating_sub(1)), at(reads), log.last())
    else {
        return Stages::default();
    };
    let last = last.saturating_duration_since(start);
    let reads_end = (last_read + latency).min(first_write);
    let writes_end = (last + latency).min(wall);
    Stages {
        before_reads_s: secs(first),
        reads_s: secs(reads_end.saturating_sub(first)),
        reconcile_s: secs(first_write.saturating_sub(reads_end)),
        writes_s: secs(writes_end.saturating_sub(first_write)),
        tail_s: secs(wall.saturating_sub(writes_end)),
    }
}

/// The fake's shared secret, for the org's `client_secret_file`.
pub const CLIENT_SECRET: &str = fake_graph::CLIENT_SECRET;
