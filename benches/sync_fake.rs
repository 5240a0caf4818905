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

#[allow(dead_code)]
#[path = "common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/support/orggen/mod.rs"]
mod orggen;

#[path = "sync_fake/isolated.rs"]
mod isolated;
#[path = "sync_fake/pass.rs"]
mod pass;
#[path = "sync_fake/report.rs"]
mod report;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use clap::builder::FalseyValueParser;
use serde_json::{Value, json};

use common::{CargoBenchArgs, write_results};
use fake_graph::FakeGraph;
use orggen::{GenStats, UserFiles, View};
use pass::{Outcome, Scenario};

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

/// The sync benchmark (see BENCHMARKS.md, "Sync"). Every option is also an
/// environment variable.
#[derive(Debug, Parser)]
#[command(name = "sync_fake")]
struct Opts {
    /// Users of the timed scenarios.
    #[arg(long, env = "CALSTATUS_BENCH_USERS", value_parser = common::positive, default_value_t = 10_000)]
    users: usize,
    /// Users of the binding-budget scenario.
    #[arg(long, env = "CALSTATUS_BENCH_BUDGET_USERS", value_parser = common::positive, default_value_t = 5_000)]
    budget_users: usize,
    /// The binding budget, operations per 30 s.
    #[arg(long, env = "CALSTATUS_BENCH_BUDGET", value_parser = common::positive, default_value_t = 2_000)]
    budget: usize,
    /// The fake's latency per request, ms.
    #[arg(long, env = "CALSTATUS_BENCH_LATENCY_MS", default_value_t = 20)]
    latency_ms: u64,
    /// Concurrencies of the free-budget scenarios.
    #[arg(long, env = "CALSTATUS_BENCH_CONCURRENCY", value_parser = common::positive, value_delimiter = ',', default_values_t = [8, 16])]
    concurrency: Vec<usize>,
    /// Passes per batched free-budget scenario; the median is reported.
    #[arg(long, env = "CALSTATUS_BENCH_RUNS", value_parser = common::positive, default_value_t = 3)]
    runs: usize,
    /// The fake also enforces the binding budget with 429s, as Graph would.
    #[arg(long, env = "CALSTATUS_BENCH_FAKE_BUDGET", value_parser = FalseyValueParser::new())]
    fake_budget: bool,
    /// Skip the scenarios without batching.
    #[arg(long, env = "CALSTATUS_BENCH_NO_UNBATCHED", value_parser = FalseyValueParser::new())]
    no_unbatched: bool,
    /// Skip the binding-budget scenario.
    #[arg(long, env = "CALSTATUS_BENCH_NO_BUDGET", value_parser = FalseyValueParser::new())]
    no_budget: bool,
    /// Skip timing the pieces of a pass in isolation.
    #[arg(long, env = "CALSTATUS_BENCH_NO_STAGES", value_parser = FalseyValueParser::new())]
    no_stages: bool,
    #[command(flatten)]
    cargo: CargoBenchArgs,
}

impl Opts {
    fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms)
    }

    /// The org sizes the scenarios need.
    fn sizes(&self) -> Vec<usize> {
        let mut sizes = vec![self.users];
        if !self.no_budget && self.budget_users != self.users {
            sizes.push(self.budget_users);
        }
        sizes
    }
}

// ---------------------------------------------------------------------------
// The org

/// User `i` (from 0) of the sync org: `u<i+1>`, one meeting, UTC.
fn meeting_user(i: usize) -> (UserFiles, GenStats) {
    let n = i + 1;
    let id = format!("{n:08x}-0000-4000-8000-{n:012x}");
    let name = format!("u{n:05}");
    let toml =
        format!("user = \"{id}\"\ncalendars = [\"calendars/{name}.ics\"]\ntimezone = \"UTC\"\n");
    let files = UserFiles {
        id,
        name,
        toml,
        ics: MEETING.to_string(),
    };
    (files, GenStats::default())
}

/// The org in `dir`: the repository's rules, the client secret, and
/// `users-<n>/` for each size; returns every user id.
fn generate_org(dir: &Path, sizes: &[usize]) -> Result<Vec<String>, String> {
    common::copy_dir(&common::repo_root().join("rules"), &dir.join("rules"))
        .map_err(|e| format!("copying the rules: {e}"))?;
    std::fs::write(dir.join("secret.txt"), pass::CLIENT_SECRET).map_err(|e| e.to_string())?;
    let views: Vec<View> = sizes.iter().map(|n| View::new(*n, false)).collect();
    let n = sizes.iter().copied().max().unwrap_or(0);
    orggen::write_users(dir, n, &views, meeting_user).map(|(ids, _)| ids)
}

/// A config for one scenario: its own fake, its own state file, the org of
/// `users` users.
fn write_config(
    dir: &Path,
    name: &str,
    fake: &FakeGraph,
    batch: bool,
    concurrency: usize,
    budget: usize,
    users: usize,
) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("calstatus-{name}.toml"));
    let state = dir.join(format!("state-{name}.db"));
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", state.display()));
    }
    std::fs::write(
        &path,
        format!(
            "[org]\ntimezone = \"UTC\"\nusers = \"{users_dir}\"\n\n[graph]\ntenant_id = \"{tenant}\"\nclient_id = \"{client}\"\nclient_secret_file = \"secret.txt\"\ngraph_url = \"{url}\"\nlogin_url = \"{url}\"\nbatch = {batch}\nbudget = {budget}\nbudget_window = \"30s\"\nconcurrency = {concurrency}\n\n[state]\npath = \"state-{name}.db\"\n\n[sync]\n",
            users_dir = View::new(users, false).dir,
            tenant = fake_graph::TENANT,
            client = fake_graph::CLIENT_ID,
            url = fake.url(),
        ),
    )?;
    Ok(path)
}

// ---------------------------------------------------------------------------

fn main() {
    let opts = Opts::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::Builder::new()
        .prefix("calstatus-sync-bench-")
        .tempdir()
        .expect("temp dir");
    let sizes = opts.sizes();
    let t_gen = Instant::now();
    let all_ids = generate_org(tmp.path(), &sizes).expect("generating the org");
    println!(
        "sync_fake: generated {} users in {:.2} s under {} (latency {} ms per request, {} worker threads)",
        all_ids.len(),
        t_gen.elapsed().as_secs_f64(),
        tmp.path().display(),
        opts.latency_ms,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let rows: Vec<Outcome> = scenarios(&opts)
        .into_iter()
        .filter_map(|s| run_repeated(&opts, &runtime, tmp.path(), &all_ids, s))
        .collect();
    report::print_table(&rows);
    let stages = if opts.no_stages {
        Value::Null
    } else {
        stages_in_isolation(&opts, &runtime, tmp.path(), &all_ids)
    };
    print_target(&rows);
    write_results(
        "sync_fake",
        &json!({
            "bench": "sync_fake",
            "pass_at": PASS_AT,
            "latency_ms": opts.latency_ms,
            "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "runs_per_batched_scenario": opts.runs,
            "targets": {"wall_s": TARGET_WALL_S, "http_requests": TARGET_HTTP},
            "runs": rows.iter().map(report::to_json).collect::<Vec<_>>(),
            "stages_in_isolation": stages,
        }),
    );
}

/// Batching on (and off), at each concurrency, with a free budget; then the
/// binding budget.
fn scenarios(opts: &Opts) -> Vec<Scenario> {
    let mut scenarios = Vec::new();
    let modes: &[bool] = if opts.no_unbatched {
        &[true]
    } else {
        &[true, false]
    };
    for &batch in modes {
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
    if !opts.no_budget {
        scenarios.push(Scenario {
            name: format!("budget{}-c8", opts.budget),
            users: opts.budget_users,
            batch: true,
            concurrency: 8,
            budget: opts.budget,
            fake_budget: opts.fake_budget.then_some(opts.budget),
        });
    }
    scenarios
}

/// A scenario's passes (the short batched free-budget ones `--runs` times);
/// the median one, with every run's wall time.
fn run_repeated(
    opts: &Opts,
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    all_ids: &[String],
    s: Scenario,
) -> Option<Outcome> {
    let ids = &all_ids[..s.users];
    let name = s.name.clone();
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
        match runtime.block_on(pass::run_scenario(dir, ids, s.clone(), opts.latency())) {
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
        return None;
    }
    let walls: Vec<f64> = outs.iter().map(|o| o.wall_s).collect();
    outs.sort_by(|a, b| a.wall_s.total_cmp(&b.wall_s));
    let mut median = outs.swap_remove(outs.len() / 2);
    median.wall_runs = walls;
    Some(median)
}

fn stages_in_isolation(
    opts: &Opts,
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    all_ids: &[String],
) -> Value {
    println!("\nsync_fake: timing the stages of a pass in isolation…");
    let ids = &all_ids[..opts.users];
    match runtime.block_on(isolated::isolated_stages(
        dir,
        ids,
        opts.concurrency[0],
        opts.latency(),
    )) {
        Ok(v) => {
            report::print_stages(&v);
            v
        }
        Err(e) => {
            eprintln!("sync_fake: stages: {e}");
            Value::Null
        }
    }
}

/// The target line: batching, concurrency 8, free budget.
fn print_target(rows: &[Outcome]) {
    let Some(r) = rows.iter().find(|r| {
        r.scenario.batch && r.scenario.concurrency == 8 && r.scenario.budget >= FREE_BUDGET
    }) else {
        return;
    };
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
