//! Sync benchmark: one full `sync` pass for a whole organisation against the
//! loopback fake Microsoft Graph (`tests/support/fake_graph.rs`).
//!
//! ```sh
//! cargo bench --bench sync_fake                                # 10,000 users
//! CALSTATUS_BENCH_USERS=2000 cargo bench --bench sync_fake
//! cargo bench --bench sync_fake -- --users 2000 --no-budget --no-unbatched
//! ```
//!
//! What it does (see BENCHMARKS.md, "Sync"):
//!
//! 1. Generates an org under a temporary directory: N users, each with a
//!    one-event calendar (2031-03-10 09:00–10:00 UTC, all at the same time;
//!    in the future because the fake, like Graph, expires messages by the
//!    real clock), the repository's `rules/`, and a `[graph]` section that
//!    points `graph_url`/`login_url` at the fake (`client_secret_file`).
//! 2. Per scenario, on a fresh fake and a fresh state file, runs one
//!    `sync::run_pass` at 09:00:30 (planning included; `org::load` is timed
//!    apart) in a multi-thread tokio runtime, the fake answering every
//!    request after `--latency-ms` (20). Scenarios: batching on and off, at
//!    concurrency 8 (the default) and 16, budget 1,000,000 per 30 s (never
//!    binding). Reports wall time, the HTTP requests and presence operations
//!    the fake counted, the statuses it accepted, whether every user ended
//!    with our message, and a stage breakdown derived from the fake's
//!    presence-operation log (planning+setup before the first read, reads,
//!    reconcile+intents, writes, tail), with the process's CPU time and the
//!    time its threads spent runnable but waiting for a CPU (from
//!    `/proc/self/task/*/schedstat`: on a shared machine, contention shows
//!    there, not in the wall time alone).
//! 3. A binding budget: 2000 per 30 s with `--budget-users` (5000) users,
//!    batching on, concurrency 8. Compares the wall time with the floor the
//!    budget dictates (K presence operations, reads included: the last one
//!    cannot start before floor((K-1)/2000)·30 s) and checks, from the
//!    fake's log, that no rolling 30 s window held more than 2000 operations.
//! 4. Prints a table and writes `target/bench-results/sync_fake.json`.
//!
//! Options (flag or environment variable): `--users N` /
//! `CALSTATUS_BENCH_USERS` (10000), `--budget-users N` /
//! `CALSTATUS_BENCH_BUDGET_USERS` (5000), `--budget N` /
//! `CALSTATUS_BENCH_BUDGET` (2000 per 30 s), `--latency-ms N` /
//! `CALSTATUS_BENCH_LATENCY_MS` (20), `--concurrency 8,16` /
//! `CALSTATUS_BENCH_CONCURRENCY`, `--runs N` / `CALSTATUS_BENCH_RUNS` (3
//! passes per batched scenario, each on a fresh fake and state file; the
//! median is reported), `--fake-budget` /
//! `CALSTATUS_BENCH_FAKE_BUDGET` (the fake also enforces the binding budget
//! with 429s, as Graph would), `--no-unbatched`, `--no-budget`,
//! `--no-stages` (skip timing the pieces of a pass in isolation: planning,
//! the state store's per-user reads, intents and per-write outcomes, and the
//! Graph client's reads and batched writes alone at the given latency, at
//! twice the concurrency, and at zero latency).

#[allow(dead_code)]
#[path = "../tests/support/fake_graph.rs"]
mod fake_graph;

#[path = "common/mod.rs"]
mod common;
use common::{arg_flag, arg_num, arg_value};

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use calstatus::reconcile::Decision;
use calstatus::sync::{SyncOptions, run_pass};
use chrono::{DateTime, Utc};
use fake_graph::{FakeGraph, Options};
use serde_json::{Value, json};

const MEETING: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//calstatus bench//EN\r\nBEGIN:VEVENT\r\nUID:sync-bench-1\r\nDTSTAMP:20310301T000000Z\r\nDTSTART:20310310T090000Z\r\nDTEND:20310310T100000Z\r\nSUMMARY:Weekly sync\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
const PASS_AT: &str = "2031-03-10T09:00:30Z";
const EXPIRY: &str = "2031-03-10T10:00:00Z";
const WINDOW: Duration = Duration::from_secs(30);
/// A budget that never binds.
const FREE_BUDGET: usize = 1_000_000;
/// Ids per `getPresencesByUserId`.
const READ_CHUNK: usize = calstatus::graph::client::MAX_PRESENCE_IDS;

// Targets (batching on, default concurrency).
const TARGET_WALL_S: f64 = 3.0;
const TARGET_HTTP: usize = 600;

// ---------------------------------------------------------------------------
// Options

struct Opts {
    users: usize,
    budget_users: usize,
    budget: usize,
    latency: Duration,
    concurrency: Vec<usize>,
    fake_budget: bool,
    unbatched: bool,
    binding: bool,
    stages: bool,
    runs: usize,
}

impl Opts {
    fn from_env() -> Opts {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let concurrency: Vec<usize> =
            arg_value(&args, "--concurrency", "CALSTATUS_BENCH_CONCURRENCY")
                .map(|v| {
                    v.split(',')
                        .filter_map(|c| c.trim().parse().ok())
                        .filter(|c| *c > 0)
                        .collect()
                })
                .filter(|v: &Vec<usize>| !v.is_empty())
                .unwrap_or_else(|| vec![8, 16]);
        Opts {
            users: arg_num(&args, "--users", "CALSTATUS_BENCH_USERS", 10_000usize).max(1),
            budget_users: arg_num(
                &args,
                "--budget-users",
                "CALSTATUS_BENCH_BUDGET_USERS",
                5_000usize,
            )
            .max(1),
            budget: arg_num(&args, "--budget", "CALSTATUS_BENCH_BUDGET", 2_000usize).max(1),
            latency: Duration::from_millis(arg_num(
                &args,
                "--latency-ms",
                "CALSTATUS_BENCH_LATENCY_MS",
                20u64,
            )),
            concurrency,
            fake_budget: arg_flag(&args, "--fake-budget", "CALSTATUS_BENCH_FAKE_BUDGET"),
            unbatched: !arg_flag(&args, "--no-unbatched", "CALSTATUS_BENCH_NO_UNBATCHED"),
            binding: !arg_flag(&args, "--no-budget", "CALSTATUS_BENCH_NO_BUDGET"),
            stages: !arg_flag(&args, "--no-stages", "CALSTATUS_BENCH_NO_STAGES"),
            runs: arg_num(&args, "--runs", "CALSTATUS_BENCH_RUNS", 3usize).max(1),
        }
    }
}

fn target_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(p) if p.is_absolute() => p,
        Some(p) => root.join(p),
        None => root.join("target"),
    }
}

// ---------------------------------------------------------------------------
// The org

fn guid(i: usize) -> String {
    format!("{i:08x}-0000-4000-8000-{i:012x}")
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dest)?;
        } else {
            std::fs::copy(e.path(), &dest)?;
        }
    }
    Ok(())
}

/// `users/uN.toml` + `calendars/uN.ics` for users `1..=n`, rules and the secret.
fn generate_org(dir: &Path, n: usize) -> std::io::Result<Vec<String>> {
    std::fs::create_dir_all(dir.join("users"))?;
    std::fs::create_dir_all(dir.join("calendars"))?;
    copy_dir(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules"),
        &dir.join("rules"),
    )?;
    std::fs::write(dir.join("secret.txt"), fake_graph::CLIENT_SECRET)?;
    let mut ids = Vec::with_capacity(n);
    for i in 1..=n {
        let id = guid(i);
        std::fs::write(dir.join(format!("calendars/u{i:05}.ics")), MEETING)?;
        std::fs::write(
            dir.join(format!("users/u{i:05}.toml")),
            format!(
                "user = \"{id}\"\ncalendars = [\"calendars/u{i:05}.ics\"]\ntimezone = \"UTC\"\n"
            ),
        )?;
        ids.push(id);
    }
    Ok(ids)
}

/// A config for one scenario: its own fake and its own state file.
fn write_config(
    dir: &Path,
    name: &str,
    fake: &FakeGraph,
    batch: bool,
    concurrency: usize,
    budget: usize,
) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("calstatus-{name}.toml"));
    let state = dir.join(format!("state-{name}.db"));
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", state.display()));
    }
    std::fs::write(
        &path,
        format!(
            "[org]\ntimezone = \"UTC\"\n\n[graph]\ntenant_id = \"{tenant}\"\nclient_id = \"{client}\"\nclient_secret_file = \"secret.txt\"\ngraph_url = \"{url}\"\nlogin_url = \"{url}\"\nbatch = {batch}\nbudget = {budget}\nbudget_window = \"30s\"\nconcurrency = {concurrency}\n\n[state]\npath = \"state-{name}.db\"\n\n[sync]\n",
            tenant = fake_graph::TENANT,
            client = fake_graph::CLIENT_ID,
            url = fake.url(),
        ),
    )?;
    Ok(path)
}

// ---------------------------------------------------------------------------
// One scenario

#[derive(Clone)]
struct Scenario {
    name: String,
    users: usize,
    batch: bool,
    concurrency: usize,
    budget: usize,
    fake_budget: Option<usize>,
}

#[derive(Default)]
struct Stages {
    /// Pass start → first presence operation at the fake (planning, state, token).
    before_reads_s: f64,
    /// First read → last read answered.
    reads_s: f64,
    /// Last read answered → first write at the fake (reconcile, intents).
    reconcile_s: f64,
    /// First write → last write answered.
    writes_s: f64,
    /// Last write answered → `run_pass` returned.
    tail_s: f64,
}

struct Outcome {
    scenario: Scenario,
    load_s: f64,
    wall_s: f64,
    /// Wall time of every repetition (the row is the median one).
    wall_runs: Vec<f64>,
    /// CPU seconds of this process (client, fake, planning) during the pass.
    cpu_s: f64,
    /// CPU seconds other processes used during the pass.
    others_cpu_s: f64,
    /// On-CPU and runnable-but-waiting times of our threads during the pass.
    sched: Sched,
    http_requests: usize,
    token_requests: usize,
    presence_ops: usize,
    reads: usize,
    set_count: usize,
    users_with_message: usize,
    failed: usize,
    counts: BTreeMap<String, usize>,
    stages: Stages,
    max_in_window: usize,
    min_gap_budget_ops_s: Option<f64>,
    last_op_s: f64,
    budget_floor_s: f64,
}

impl Outcome {
    fn all_set(&self) -> bool {
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

/// CPU seconds this process has used (user + system; Linux, 100 ticks/s).
fn self_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|st| {
            // Fields after the parenthesised command name; utime and stime are 14 and 15.
            let rest = st.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let u: f64 = f.get(11)?.parse().ok()?;
            let s: f64 = f.get(12)?.parse().ok()?;
            Some((u + s) / 100.0)
        })
        .unwrap_or_default()
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
struct Sched {
    main_run: f64,
    main_wait: f64,
    all_run: f64,
    all_wait: f64,
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

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

async fn run_scenario(
    dir: &Path,
    ids: &[String],
    s: Scenario,
    latency: Duration,
) -> Result<Outcome, String> {
    let fake = FakeGraph::start(Options {
        users: ids.to_vec(),
        upns: Vec::new(),
        ..Options::default()
    })
    .await;
    fake.set_latency(latency);
    fake.set_budget(s.fake_budget);
    let cfg = write_config(dir, &s.name, &fake, s.batch, s.concurrency, s.budget)
        .map_err(|e| format!("writing the config: {e}"))?;

    let t_load = Instant::now();
    let org = calstatus::org::load(&cfg).map_err(|p| format!("org::load: {p:?}"))?;
    let load_s = secs(t_load.elapsed());
    let settings =
        calstatus::graph::settings(&org.config).map_err(|p| format!("graph settings: {p:?}"))?;
    let policy = org.config.file.sync.personal_message;
    let opts = SyncOptions {
        at: t(PASS_AT),
        users: Vec::new(),
        dry_run: false,
        lead_time: chrono::Duration::zero(),
        policy,
    };

    let (cpu0, busy0, sched0) = (self_cpu_s(), machine_busy_s(), sched_now());
    let start = Instant::now();
    let report = run_pass(&org, settings, &opts)
        .await
        .map_err(|e| format!("run_pass: {e}"))?;
    let end = Instant::now();
    let wall = end.duration_since(start);
    let cpu_s = self_cpu_s() - cpu0;
    let others_cpu_s = (machine_busy_s() - busy0 - cpu_s).max(0.0);
    let sched = Sched::between(&sched0, &sched_now());

    let log = fake.presence_ops_log();
    let reads = s.users.div_ceil(READ_CHUNK);
    let at = |i: usize| log.get(i).map(|x| x.saturating_duration_since(start));
    let stages = match (at(0), at(reads.saturating_sub(1)), at(reads), log.last()) {
        (Some(first), Some(last_read), Some(first_write), Some(last)) => {
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
        _ => Stages::default(),
    };
    let expiry = t(EXPIRY);
    let users_with_message = fake
        .messages()
        .values()
        .filter(|m| {
            m.as_ref()
                .is_some_and(|p| p.by_app && !p.content.is_empty() && p.expiry == Some(expiry))
        })
        .count();
    let k = log.len();
    let budget_floor_s = if s.budget < FREE_BUDGET {
        (k.saturating_sub(1) / s.budget) as f64 * WINDOW.as_secs_f64()
    } else {
        0.0
    };
    let out = Outcome {
        load_s,
        wall_s: secs(wall),
        wall_runs: vec![secs(wall)],
        cpu_s,
        others_cpu_s,
        sched,
        http_requests: fake.http_requests(),
        token_requests: fake.token_requests(),
        presence_ops: k,
        reads,
        set_count: fake.set_count(),
        users_with_message,
        failed: report.failed.len(),
        counts: report
            .counts
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        stages,
        max_in_window: max_in_window(&log),
        min_gap_budget_ops_s: (s.budget < FREE_BUDGET)
            .then(|| min_gap(&log, s.budget).map(secs))
            .flatten(),
        last_op_s: log
            .last()
            .map(|l| secs(l.saturating_duration_since(start)))
            .unwrap_or_default(),
        budget_floor_s,
        scenario: s,
    };
    if report
        .users
        .iter()
        .any(|u| u.decision == Decision::Failed && u.error.is_some())
    {
        let first = report
            .users
            .iter()
            .find_map(|u| u.error.clone())
            .unwrap_or_default();
        eprintln!(
            "sync_fake: {}: {} failed users, first error: {first}",
            out.scenario.name, out.failed
        );
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Stages in isolation (where the time of a pass goes)

/// The pieces of `run_pass`, each timed on its own with the same inputs.
async fn isolated_stages(
    dir: &Path,
    ids: &[String],
    concurrency: usize,
    latency: Duration,
) -> Result<Value, String> {
    use calstatus::graph::client::{GraphClient, Write};
    use calstatus::graph::model::set_status_body;
    use calstatus::reconcile::Intent;
    use calstatus::state::{SqliteStore, StateStore, WriteResult};

    let n = ids.len();
    let fake = FakeGraph::start(Options {
        users: ids.to_vec(),
        upns: Vec::new(),
        ..Options::default()
    })
    .await;
    let cfg = write_config(dir, "stages", &fake, true, concurrency, FREE_BUDGET)
        .map_err(|e| format!("writing the config: {e}"))?;
    let org = calstatus::org::load(&cfg).map_err(|p| format!("org::load: {p:?}"))?;
    let settings =
        calstatus::graph::settings(&org.config).map_err(|p| format!("graph settings: {p:?}"))?;
    let at = t(PASS_AT);
    let window = calstatus::calendar::Window {
        from: at - chrono::Duration::days(1),
        to: at + chrono::Duration::days(1),
    };

    // Planning, as run_pass does it.
    let t0 = Instant::now();
    let plan = calstatus::pipeline::build_plan(&org, window, &[])
        .await
        .map_err(|e| format!("build_plan: {e}"))?;
    let plan_s = secs(t0.elapsed());
    let planned = plan.users.len();
    drop(plan);

    // The state store: the records of every user, the intents (one
    // transaction), then one transaction per batch of 20 outcomes (what
    // `engine::apply` does as each $batch comes back).
    let state = dir.join("state-stages.db");
    let t0 = Instant::now();
    let store = SqliteStore::open(&state).map_err(|e| e.to_string())?;
    let open_s = secs(t0.elapsed());
    let t0 = Instant::now();
    store.records(ids).await.map_err(|e| e.to_string())?;
    let record_reads_s = secs(t0.elapsed());
    let expiry = t(EXPIRY);
    let intents: Vec<Intent> = ids
        .iter()
        .map(|id| Intent {
            user: id.clone(),
            decision: Decision::Set,
            message: Some("In a meeting until 10:00".into()),
            expiry: Some(expiry),
            occurrences: "[]".into(),
            save_personal: None,
        })
        .collect();
    let t0 = Instant::now();
    store
        .record_intents("bench", Utc::now(), intents.clone())
        .await
        .map_err(|e| e.to_string())?;
    let intents_s = secs(t0.elapsed());
    let t0 = Instant::now();
    for group in intents.chunks(20) {
        let outcomes = group
            .iter()
            .map(|i| WriteResult {
                intent: i.clone(),
                result: Ok(()),
            })
            .collect();
        store
            .record_outcomes("bench", Utc::now(), outcomes)
            .await
            .map_err(|e| e.to_string())?;
    }
    let outcomes_s = secs(t0.elapsed());
    drop(store);

    // Graph alone: reads and batched writes, no state, `done` a no-op.
    let writes: Vec<Write> = ids
        .iter()
        .map(|id| Write {
            user: id.clone(),
            body: set_status_body("In a meeting until 10:00", Some(expiry)),
        })
        .collect();
    let mut graph = Vec::new();
    for (lat, conc) in [
        (latency, concurrency),
        (latency, concurrency * 2),
        (Duration::ZERO, concurrency),
    ] {
        fake.set_latency(lat);
        let mut st = settings.clone();
        st.concurrency = conc;
        let client = GraphClient::new(st).map_err(|e| e.to_string())?;
        client.check_token().await.map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let read = client.read_messages(ids).await;
        let reads_s = secs(t0.elapsed());
        let before = fake.http_requests();
        let t0 = Instant::now();
        let done = |_: calstatus::engine::WriteResults| {};
        let res = client.apply(writes.clone(), &done).await;
        let writes_s = secs(t0.elapsed());
        let ok = res.iter().filter(|(_, r)| r.is_ok()).count();
        let batches = fake.http_requests() - before;
        // The floor latency alone sets: ceil(batches / concurrency) round trips.
        let floor_s = batches.div_ceil(conc) as f64 * lat.as_secs_f64();
        graph.push(json!({
            "latency_ms": lat.as_millis() as u64,
            "concurrency": conc,
            "reads_s": reads_s,
            "read_users": read.len(),
            "writes_s": writes_s,
            "writes_ok": ok,
            "batches": batches,
            "latency_floor_s": floor_s,
            "extra_over_floor_s": writes_s - floor_s,
            "us_per_write": writes_s * 1e6 / ok.max(1) as f64,
        }));
    }
    Ok(json!({
        "users": n,
        "planned_users": planned,
        "build_plan_s": plan_s,
        "state_open_s": open_s,
        "state_record_reads_s": record_reads_s,
        "state_record_intents_s": intents_s,
        "state_record_outcomes_s": outcomes_s,
        "state_outcome_us_each": outcomes_s * 1e6 / n.max(1) as f64,
        "graph": graph,
    }))
}

fn print_stages(v: &Value) {
    let f = |k: &str| v[k].as_f64().unwrap_or_default();
    println!(
        "\nstages in isolation ({} users):\n  build_plan {:.3} s | state: open {:.3} s, {} record() reads {:.3} s, record_intents {:.3} s, {} outcomes in batches of 20 {:.3} s ({:.0} µs each)",
        v["users"],
        f("build_plan_s"),
        f("state_open_s"),
        v["users"],
        f("state_record_reads_s"),
        f("state_record_intents_s"),
        v["users"],
        f("state_record_outcomes_s"),
        f("state_outcome_us_each"),
    );
    for g in v["graph"].as_array().into_iter().flatten() {
        let f = |k: &str| g[k].as_f64().unwrap_or_default();
        println!(
            "  graph client alone, latency {} ms, concurrency {}: reads {:.3} s; apply {} writes in {} batches {:.3} s (latency floor {:.3} s, +{:.3} s; {:.0} µs per write)",
            g["latency_ms"],
            g["concurrency"],
            f("reads_s"),
            g["writes_ok"],
            g["batches"],
            f("writes_s"),
            f("latency_floor_s"),
            f("extra_over_floor_s"),
            f("us_per_write"),
        );
    }
}

// ---------------------------------------------------------------------------
// Report

fn print_table(rows: &[Outcome]) {
    println!(
        "\n{:<22} {:>6} {:>5} {:>5} {:>9} {:>8} {:>7} {:>6} {:>7} {:>4} {:>7}  wall s of every run",
        "scenario",
        "users",
        "batch",
        "conc",
        "budget",
        "wall s",
        "HTTP",
        "ops",
        "set",
        "all",
        "failed"
    );
    for r in rows {
        let s = &r.scenario;
        println!(
            "{:<22} {:>6} {:>5} {:>5} {:>9} {:>8.2} {:>7} {:>6} {:>7} {:>4} {:>7}  {}",
            s.name,
            s.users,
            if s.batch { "on" } else { "off" },
            s.concurrency,
            if s.budget >= FREE_BUDGET {
                "free".to_string()
            } else {
                format!("{}/30s", s.budget)
            },
            r.wall_s,
            r.http_requests,
            r.presence_ops,
            r.set_count,
            if r.all_set() { "yes" } else { "NO" },
            r.failed,
            r.wall_runs
                .iter()
                .map(|w| format!("{w:.2}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    println!(
        "\nstages, s (from the fake's operation log), and CPU during the pass, s: process CPU time;\nmain thread (drives run_pass) on a CPU / runnable but waiting for one; all threads waiting\n{:<22} {:>8} {:>8} {:>8} {:>9} {:>8} {:>6} {:>8} {:>6} {:>6} {:>6} {:>6}",
        "scenario",
        "load",
        "plan+",
        "reads",
        "reconcile",
        "writes",
        "tail",
        "ops/s",
        "cpu",
        "main",
        "m.wait",
        "wait"
    );
    for r in rows {
        let st = &r.stages;
        println!(
            "{:<22} {:>8.3} {:>8.3} {:>8.3} {:>9.3} {:>8.3} {:>6.3} {:>8.0} {:>6.2} {:>6.2} {:>6.2} {:>6.2}",
            r.scenario.name,
            r.load_s,
            st.before_reads_s,
            st.reads_s,
            st.reconcile_s,
            st.writes_s,
            st.tail_s,
            if st.writes_s > 0.0 {
                r.set_count as f64 / st.writes_s
            } else {
                0.0
            },
            r.cpu_s,
            r.sched.main_run,
            r.sched.main_wait,
            r.sched.all_wait,
        );
    }
    for r in rows.iter().filter(|r| r.scenario.budget < FREE_BUDGET) {
        let s = &r.scenario;
        println!(
            "\nbudget {}/30s, {} users: {} presence ops ({} reads + {} write attempts); floor (last op start) {:.0} s; first op at {:.2} s, last op at {:.2} s ({:.2} s after the first: +{:.2} s over the floor); wall {:.2} s\n  max ops in any rolling 30 s window: {} ({}); shortest span between op i and op i+{}: {}",
            s.budget,
            s.users,
            r.presence_ops,
            r.reads,
            r.presence_ops.saturating_sub(r.reads),
            r.budget_floor_s,
            r.stages.before_reads_s,
            r.last_op_s,
            r.last_op_s - r.stages.before_reads_s,
            r.last_op_s - r.stages.before_reads_s - r.budget_floor_s,
            r.wall_s,
            r.max_in_window,
            if r.max_in_window <= s.budget {
                "kept"
            } else {
                "EXCEEDED"
            },
            s.budget,
            r.min_gap_budget_ops_s
                .map(|g| format!("{g:.3} s"))
                .unwrap_or_else(|| "n/a".into()),
        );
    }
}

fn to_json(r: &Outcome) -> Value {
    let s = &r.scenario;
    json!({
        "name": s.name,
        "users": s.users,
        "batch": s.batch,
        "concurrency": s.concurrency,
        "budget_per_30s": s.budget,
        "fake_budget_per_30s": s.fake_budget,
        "org_load_s": r.load_s,
        "wall_s": r.wall_s,
        "wall_s_all_runs": r.wall_runs,
        "process_cpu_s": r.cpu_s,
        "other_processes_cpu_s": r.others_cpu_s,
        "main_thread_on_cpu_s": r.sched.main_run,
        "main_thread_waiting_for_cpu_s": r.sched.main_wait,
        "threads_on_cpu_s": r.sched.all_run,
        "threads_waiting_for_cpu_s": r.sched.all_wait,
        "http_requests": r.http_requests,
        "token_requests": r.token_requests,
        "presence_ops": r.presence_ops,
        "presence_reads": r.reads,
        "presence_ops_not_accepted": r.presence_ops.saturating_sub(r.reads + r.set_count),
        "set_count": r.set_count,
        "users_with_message": r.users_with_message,
        "all_set": r.all_set(),
        "failed": r.failed,
        "decisions": r.counts,
        "stages_s": {
            "before_reads": r.stages.before_reads_s,
            "reads": r.stages.reads_s,
            "reconcile": r.stages.reconcile_s,
            "writes": r.stages.writes_s,
            "tail": r.stages.tail_s,
        },
        "max_ops_in_30s_window": r.max_in_window,
        "min_span_budget_ops_s": r.min_gap_budget_ops_s,
        "last_op_s": r.last_op_s,
        "budget_floor_s": (s.budget < FREE_BUDGET).then_some(r.budget_floor_s),
    })
}

// ---------------------------------------------------------------------------

fn main() {
    let opts = Opts::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let _ = rustls::crypto::ring::default_provider().install_default();

    let tmp = tempfile::Builder::new()
        .prefix("calstatus-sync-bench-")
        .tempdir()
        .expect("temp dir");
    let n_max = if opts.binding {
        opts.users.max(opts.budget_users)
    } else {
        opts.users
    };
    let t_gen = Instant::now();
    let all_ids = generate_org(tmp.path(), n_max).expect("generating the org");
    println!(
        "sync_fake: generated {n_max} users in {:.2} s under {} (latency {} ms per request, {} worker threads)",
        t_gen.elapsed().as_secs_f64(),
        tmp.path().display(),
        opts.latency.as_millis(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );

    let mut scenarios = Vec::new();
    let mut modes = vec![true];
    if opts.unbatched {
        modes.push(false);
    }
    for batch in modes {
        for &c in &opts.concurrency {
            scenarios.push(Scenario {
                name: format!("{}-c{c}", if batch { "batch" } else { "direct" }),
                users: opts.users,
                batch,
                concurrency: c,
                budget: FREE_BUDGET,
                fake_budget: None,
            });
        }
    }
    if opts.binding {
        scenarios.push(Scenario {
            name: format!("budget{}-c8", opts.budget),
            users: opts.budget_users,
            batch: true,
            concurrency: 8,
            budget: opts.budget,
            fake_budget: opts.fake_budget.then_some(opts.budget),
        });
    }

    let mut rows = Vec::new();
    for s in scenarios {
        let dir = org_dir_for(tmp.path(), s.users, n_max).expect("org dir");
        let ids = &all_ids[..s.users];
        let name = s.name.clone();
        // The short (batched, free-budget) passes are repeated; the median is kept.
        let reps = if s.batch && s.budget >= FREE_BUDGET {
            opts.runs
        } else {
            1
        };
        let mut outs = Vec::new();
        for rep in 1..=reps {
            println!(
                "sync_fake: running {name} ({} users, run {rep}/{reps})…",
                s.users
            );
            match runtime.block_on(run_scenario(&dir, ids, s.clone(), opts.latency)) {
                Ok(o) => {
                    println!(
                        "sync_fake: {name}: {:.2} s, {} HTTP requests, {} set",
                        o.wall_s, o.http_requests, o.set_count
                    );
                    outs.push(o);
                }
                Err(e) => eprintln!("sync_fake: {name} failed: {e}"),
            }
        }
        if outs.is_empty() {
            continue;
        }
        let walls: Vec<f64> = outs.iter().map(|o| o.wall_s).collect();
        outs.sort_by(|a, b| a.wall_s.total_cmp(&b.wall_s));
        let mut median = outs.swap_remove(outs.len() / 2);
        median.wall_runs = walls;
        rows.push(median);
    }

    print_table(&rows);

    let stages = if opts.stages {
        let ids = &all_ids[..opts.users];
        let dir = org_dir_for(tmp.path(), opts.users, n_max).expect("org dir");
        println!("\nsync_fake: timing the stages of a pass in isolation…");
        match runtime.block_on(isolated_stages(
            &dir,
            ids,
            opts.concurrency[0],
            opts.latency,
        )) {
            Ok(v) => {
                print_stages(&v);
                v
            }
            Err(e) => {
                eprintln!("sync_fake: stages: {e}");
                Value::Null
            }
        }
    } else {
        Value::Null
    };

    let target = rows.iter().find(|r| {
        r.scenario.batch && r.scenario.concurrency == 8 && r.scenario.budget >= FREE_BUDGET
    });
    if let Some(r) = target {
        let ok = r.all_set() && r.wall_s < TARGET_WALL_S && r.http_requests < TARGET_HTTP;
        println!(
            "\ntarget (batching, concurrency 8, {} users, median of {} runs): all set in < {TARGET_WALL_S} s with < {TARGET_HTTP} HTTP requests: {} ({:.2} s, {} requests, all set: {})",
            r.scenario.users,
            r.wall_runs.len(),
            if ok { "MET" } else { "MISSED" },
            r.wall_s,
            r.http_requests,
            r.all_set(),
        );
    }

    let out = json!({
        "bench": "sync_fake",
        "pass_at": PASS_AT,
        "latency_ms": opts.latency.as_millis() as u64,
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "runs_per_batched_scenario": opts.runs,
        "targets": {"wall_s": TARGET_WALL_S, "http_requests": TARGET_HTTP},
        "runs": rows.iter().map(to_json).collect::<Vec<_>>(),
        "stages_in_isolation": stages,
    });
    let res_dir = target_dir().join("bench-results");
    let path = res_dir.join("sync_fake.json");
    match std::fs::create_dir_all(&res_dir).and_then(|_| {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&out).unwrap_or_default() + "\n",
        )
    }) {
        Ok(()) => println!("\nwrote {}", path.display()),
        Err(e) => eprintln!("sync_fake: cannot write {}: {e}", path.display()),
    }
}

/// The org directory for `n` users: the generated one when `n` is everyone,
/// otherwise a sibling whose `users/` holds only the first `n` user files.
fn org_dir_for(root: &Path, n: usize, n_max: usize) -> std::io::Result<PathBuf> {
    if n == n_max {
        return Ok(root.to_path_buf());
    }
    let dir = root.join(format!("org-{n}"));
    if !dir.exists() {
        std::fs::create_dir_all(dir.join("users"))?;
        copy_dir(&root.join("rules"), &dir.join("rules"))?;
        std::fs::copy(root.join("secret.txt"), dir.join("secret.txt"))?;
        std::fs::create_dir_all(dir.join("calendars"))?;
        for i in 1..=n {
            let user = format!("users/u{i:05}.toml");
            let cal = format!("calendars/u{i:05}.ics");
            std::fs::copy(root.join(&user), dir.join(&user))?;
            std::fs::copy(root.join(&cal), dir.join(&cal))?;
        }
    }
    Ok(dir)
}
