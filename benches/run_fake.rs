//! Daemon benchmark: the release binary's `calstatus run` against the
//! loopback fake Microsoft Graph (`tests/support/fake_graph.rs`) and a
//! loopback calendar server that answers conditional GETs.
//!
//! ```sh
//! cargo build --release && cargo bench --bench run_fake            # 1 user, 10,000 users, budget, steady state
//! cargo bench --bench run_fake -- --users 2000 --budget-users 1000
//! ```
//!
//! Scenarios (see BENCHMARKS.md, "Daemon"):
//! 1. **Publish lag, one user**: a meeting that starts `--lead-s` seconds
//!    after launch; lag = when the fake accepted the write − the start.
//! 2. **Publish lag, a wave**: N users (`--users`, 10,000) whose meetings all
//!    start at the same second, a budget that does not bind (1,000,000 per
//!    30 s), the fake answering after `--latency-ms` (20): p50/p99/max lag.
//! 3. **A binding budget**: `--budget-users` (5,000) at 2,000 per 30 s: when
//!    the wave ends, against the floor the budget dictates.
//! 4. **Steady state** (after the 10,000-user wave, calendars served by URL
//!    with ETags): the daemon's CPU seconds and RSS while idle between
//!    boundaries, and the CPU cost of one refresh in which every calendar
//!    answers 304 (`--refresh-s`, 10).
//! 5. **Several instances** (needs PostgreSQL: `CALSTATUS_TEST_POSTGRES`,
//!    default 127.0.0.1:5432/test; skipped, saying so, without it): the
//!    wave of scenario 2 from files, one instance on SQLite against three
//!    on one PostgreSQL database: wall time and lag.
//! 6. **Takeover**: three instances, a slow wave (`--takeover-latency-ms`,
//!    200, Graph concurrency 2); one is SIGKILLed when 30 % is written: the
//!    time from the kill to the first status of its people, at the default
//!    `lease_ttl` (15 s), and when the wave ends.
//!
//! `--scenarios 5,6` runs some only.
//!
//! Prints a table and writes `target/bench-results/run_fake.json`.

#[allow(dead_code)]
#[path = "../tests/support/fake_graph.rs"]
mod fake_graph;

#[allow(dead_code)]
#[path = "common/mod.rs"]
mod common;

#[allow(dead_code)]
#[path = "../tests/support/pg.rs"]
mod pg;

/// `tests/support/pg.rs` says a skip through this.
fn skip(test: &str, why: &str) {
    println!("SKIPPED {test}: {why}");
}

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use clap::Parser;
use serde_json::{Value, json};

use common::{CargoBenchArgs, secs, write_results};
use fake_graph::{FakeGraph, Options};

/// Options: a flag after `--`, or the variable.
#[derive(Debug, Parser)]
#[command(about = "calstatus run against the loopback fake Graph")]
struct Opts {
    /// Users in the wave.
    #[arg(long, env = "CALSTATUS_BENCH_USERS", default_value_t = 10_000)]
    users: usize,
    /// Users in the binding-budget wave.
    #[arg(long, env = "CALSTATUS_BENCH_BUDGET_USERS", default_value_t = 5_000)]
    budget_users: usize,
    /// The binding budget, per 30 s.
    #[arg(long, env = "CALSTATUS_BENCH_BUDGET", default_value_t = 2_000)]
    budget: usize,
    /// The fake's answer latency.
    #[arg(long, env = "CALSTATUS_BENCH_LATENCY_MS", default_value_t = 20)]
    latency_ms: u64,
    /// Seconds between refreshes in the steady-state scenario.
    #[arg(long, env = "CALSTATUS_BENCH_REFRESH_S", default_value_t = 10)]
    refresh_s: u64,
    /// The scenarios to run (1–6; 1–4 run together).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 5, 6])]
    scenarios: Vec<u8>,
    /// The fake's latency in the takeover scenario.
    #[arg(
        long,
        env = "CALSTATUS_BENCH_TAKEOVER_LATENCY_MS",
        default_value_t = 200
    )]
    takeover_latency_ms: u64,
    /// Binary (default: target/release/calstatus).
    #[arg(long, env = "CALSTATUS_BENCH_BIN")]
    bin: Option<PathBuf>,
    #[command(flatten)]
    cargo: CargoBenchArgs,
}

fn guid(i: usize) -> String {
    format!("{i:08x}-0000-4000-8000-{i:012x}")
}

fn ics(uid: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    let f = |t: DateTime<Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
    format!(
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:{uid}\r\nDTSTART:{}\r\nDTEND:{}\r\nSUMMARY:Wave\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        f(start),
        f(end)
    )
}

/// A calendar server: `/u{i}.ics` → the wave's calendar, with an ETag; a
/// matching `If-None-Match` gets 304. Counts 200s and 304s.
struct CalServer {
    port: u16,
    full: Arc<AtomicUsize>,
    not_modified: Arc<AtomicUsize>,
}

async fn cal_server(start: DateTime<Utc>, end: DateTime<Utc>) -> CalServer {
    use axum::http::{HeaderMap, StatusCode, Uri};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let full = Arc::new(AtomicUsize::new(0));
    let not_modified = Arc::new(AtomicUsize::new(0));
    let (f, n) = (full.clone(), not_modified.clone());
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let (f, n) = (f.clone(), n.clone());
        async move {
            let etag = "\"v1\"";
            if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag) {
                n.fetch_add(1, Ordering::Relaxed);
                return (StatusCode::NOT_MODIFIED, [("etag", etag)], String::new());
            }
            f.fetch_add(1, Ordering::Relaxed);
            let uid = uri.path().trim_matches('/').to_string();
            (StatusCode::OK, [("etag", etag)], ics(&uid, start, end))
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    CalServer {
        port,
        full,
        not_modified,
    }
}

/// One org directory for a scenario.
fn write_org(
    dir: &Path,
    fake: &FakeGraph,
    users: usize,
    calendar: impl Fn(usize) -> String,
    extra: &str,
    state: &str,
) -> PathBuf {
    std::fs::create_dir_all(dir.join("users")).unwrap();
    common::copy_dir(&common::repo_root().join("rules"), &dir.join("rules")).unwrap();
    std::fs::write(dir.join("secret.txt"), fake_graph::CLIENT_SECRET).unwrap();
    for i in 1..=users {
        std::fs::write(
            dir.join(format!("users/u{i}.toml")),
            format!(
                "user = \"{}\"\ncalendars = [\"{}\"]\n",
                guid(i),
                calendar(i)
            ),
        )
        .unwrap();
    }
    let cfg = dir.join("calstatus.toml");
    // `extra` may set its own concurrency.
    let concurrency = if extra.contains("concurrency") {
        ""
    } else {
        "concurrency = 16\n"
    };
    std::fs::write(
        &cfg,
        format!(
            "[org]\ntimezone = \"UTC\"\n[fetch]\nallow_http = true\nallow_private_networks = true\nconcurrency = 64\n[graph]\ntenant_id = \"{}\"\nclient_id = \"{}\"\nclient_secret_file = \"secret.txt\"\ngraph_url = \"{url}\"\nlogin_url = \"{url}\"\n{concurrency}{extra}\n{state}\n",
            fake_graph::TENANT,
            fake_graph::CLIENT_ID,
            url = fake.url()
        ),
    )
    .unwrap();
    cfg
}

/// The daemon, started on `cfg`.
struct Daemon(Child);

impl Daemon {
    fn start(bin: &Path, cfg: &Path) -> Daemon {
        Daemon(
            Command::new(bin)
                .args(["run", "--config", cfg.to_str().unwrap()])
                .env("RUST_LOG", "calstatus=warn")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("the release binary runs"),
        )
    }

    /// (user+system CPU seconds, RSS MiB) from /proc.
    fn usage(&self) -> (f64, f64) {
        let pid = self.0.id();
        let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|st| {
                let f: Vec<String> = st
                    .rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
            })
            .unwrap_or_default();
        let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))?
                    .split_whitespace()
                    .nth(1)?
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or_default()
            / 1024.0;
        (cpu, rss)
    }

    fn stop(mut self) -> Duration {
        let t = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
        t.elapsed()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the fake accepted `n` writes (or `limit` passes).
async fn until_written(fake: &FakeGraph, n: usize, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if fake.set_count() >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let k = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[k.min(sorted.len() - 1)]
}

/// Lags (s) of the accepted writes from `start`.
fn lags(fake: &FakeGraph, start: DateTime<Utc>) -> Vec<f64> {
    let mut v: Vec<f64> = fake
        .writes()
        .iter()
        .map(|w| (w.at - start).num_microseconds().unwrap_or(0) as f64 / 1e6)
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// When a wave of `users` starts: after the daemon has had time to start,
/// load and plan.
fn wave_start(users: usize) -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0) + chrono::Duration::seconds(8 + (users / 1000) as i64 * 2)
}

/// Where a wave's instances keep their state.
#[derive(Clone, Copy)]
enum Store<'a> {
    /// One instance, SQLite.
    Sqlite,
    /// `n` instances on this PostgreSQL database.
    Postgres(&'a str, usize),
}

/// A wave of `users` meetings starting at `start` (an hour long), from
/// files or from `served`. Returns the fake, the daemons, the lag of each
/// write and the wall time from launch to the last write. `during` runs
/// while the wave is written (a kill).
#[allow(clippy::too_many_arguments)]
async fn wave(
    bin: &Path,
    dir: &Path,
    users: usize,
    latency: Duration,
    graph_extra: &str,
    served: Option<&CalServer>,
    refresh: &str,
    start: DateTime<Utc>,
    store: Store<'_>,
) -> (FakeGraph, Vec<Daemon>, Vec<f64>, f64) {
    let fake = FakeGraph::start(Options {
        users: (1..=users).map(guid).collect(),
        upns: Vec::new(),
        ..Options::default()
    })
    .await;
    fake.set_latency(latency);
    let end = start + chrono::Duration::hours(1);
    let calendar = |i: usize| match served {
        Some(s) => format!("http://127.0.0.1:{}/u{i}.ics", s.port),
        None => {
            let file = dir.join(format!("calendars/u{i}.ics"));
            std::fs::write(&file, ics(&format!("m{i}"), start, end)).unwrap();
            format!("calendars/u{i}.ics")
        }
    };
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("calendars")).unwrap();
    // Files are written by `calendar` before the org file lists them.
    let files: Vec<String> = (1..=users).map(&calendar).collect();
    let (state, n) = match store {
        Store::Sqlite => ("[state]\npath = \"state.db\"".to_string(), 1),
        Store::Postgres(url, n) => (format!("[state]\nurl = \"{url}\"\ntls = \"disable\""), n),
    };
    let cfg = write_org(
        dir,
        &fake,
        users,
        |i| files[i - 1].clone(),
        &format!("{graph_extra}\n[run]\nrefresh = \"{refresh}\"\n"),
        &state,
    );
    let daemons: Vec<Daemon> = (0..n).map(|_| Daemon::start(bin, &cfg)).collect();
    let t = Instant::now();
    let done = until_written(&fake, users, Duration::from_secs(600)).await;
    let wall = secs(t.elapsed());
    assert!(
        done,
        "the wave did not finish: {} of {users}",
        fake.set_count()
    );
    let l = lags(&fake, start);
    (fake, daemons, l, wall)
}

fn summary(name: &str, users: usize, lags: &[f64]) -> Value {
    let v = json!({
        "scenario": name,
        "users": users,
        "writes": lags.len(),
        "lag_p50_s": percentile(lags, 0.5),
        "lag_p99_s": percentile(lags, 0.99),
        "lag_max_s": lags.last().copied().unwrap_or(f64::NAN),
        "lag_min_s": lags.first().copied().unwrap_or(f64::NAN),
    });
    println!(
        "{name:<28} users {users:>6}  lag p50 {:.3} s  p99 {:.3} s  max {:.3} s  (min {:.3} s)",
        v["lag_p50_s"].as_f64().unwrap_or(f64::NAN),
        v["lag_p99_s"].as_f64().unwrap_or(f64::NAN),
        v["lag_max_s"].as_f64().unwrap_or(f64::NAN),
        v["lag_min_s"].as_f64().unwrap_or(f64::NAN),
    );
    v
}

async fn run(opts: Opts) -> Value {
    let bin = opts
        .bin
        .clone()
        .unwrap_or_else(|| common::target_dir().join("release/calstatus"));
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --release` first",
        bin.display()
    );
    let root = common::target_dir().join("bench-run");
    let latency = Duration::from_millis(opts.latency_ms);
    println!(
        "calstatus run against the fake Graph ({} ms latency); load average {}",
        opts.latency_ms,
        common::loadavg()
    );
    let mut results = Vec::new();

    if opts.scenarios.contains(&1) {
        results.extend(single(&bin, &root, &opts, latency).await);
    }
    if opts.scenarios.contains(&5) || opts.scenarios.contains(&6) {
        results.extend(shared(&bin, &root, &opts, latency).await);
    }
    json!({ "latency_ms": opts.latency_ms, "load": common::loadavg(), "results": results })
}

/// Scenarios 1–4: one instance on SQLite.
async fn single(bin: &Path, root: &Path, opts: &Opts, latency: Duration) -> Vec<Value> {
    let mut results = Vec::new();
    // 1. One user.
    let (_f, mut d, l, _) = wave(
        bin,
        &root.join("one"),
        1,
        latency,
        "",
        None,
        "1h",
        wave_start(1),
        Store::Sqlite,
    )
    .await;
    d.remove(0).stop();
    results.push(summary("one user", 1, &l));

    // 2. A wave, budget not binding; calendars by URL for the steady state after.
    let start = wave_start(opts.users);
    let server = cal_server(start, start + chrono::Duration::hours(1)).await;
    let (fake, mut d, l, wall) = wave(
        bin,
        &root.join("wave"),
        opts.users,
        latency,
        "budget = 1000000",
        Some(&server),
        &format!("{}s", opts.refresh_s),
        start,
        Store::Sqlite,
    )
    .await;
    let d = d.remove(0);
    let mut wave_v = summary("wave, budget not binding", opts.users, &l);
    wave_v["http_requests"] = json!(fake.http_requests());
    wave_v["wall_from_launch_s"] = json!(wall);

    // 4. Steady state: idle between boundaries, then refreshes answered 304.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu0, rss0) = d.usage();
    let nm0 = server.not_modified.load(Ordering::Relaxed);
    let window = Duration::from_secs(opts.refresh_s * 3);
    tokio::time::sleep(window).await;
    let (cpu1, rss1) = d.usage();
    let nm1 = server.not_modified.load(Ordering::Relaxed);
    let refreshes = (nm1 - nm0) as f64 / opts.users as f64;
    let cpu_per_refresh = if refreshes > 0.0 {
        (cpu1 - cpu0) / refreshes
    } else {
        f64::NAN
    };
    let stop_s = secs(d.stop());
    println!(
        "steady state, {} users: {:.1} refreshes in {} s, all 304 ({} answers); CPU {:.2} s in all, {:.3} s per refresh; RSS {:.0} → {:.0} MiB; SIGTERM → exit in {:.2} s",
        opts.users,
        refreshes,
        window.as_secs(),
        nm1 - nm0,
        cpu1 - cpu0,
        cpu_per_refresh,
        rss0,
        rss1,
        stop_s
    );
    wave_v["steady"] = json!({
        "window_s": window.as_secs(),
        "refreshes": refreshes,
        "not_modified_answers": nm1 - nm0,
        "full_answers": server.full.load(Ordering::Relaxed),
        "cpu_s": cpu1 - cpu0,
        "cpu_per_refresh_s": cpu_per_refresh,
        "rss_mib": rss1,
        "sigterm_exit_s": stop_s,
    });
    results.push(wave_v);

    // 3. A binding budget.
    let (fake, d, l, wall) = wave(
        bin,
        &root.join("budget"),
        opts.budget_users,
        latency,
        &format!("budget = {}\nbudget_window = \"30s\"", opts.budget),
        None,
        "1h",
        wave_start(opts.budget_users),
        Store::Sqlite,
    )
    .await;
    for d in d {
        d.stop();
    }
    let ops = fake.presence_ops_log().len();
    let floor = ((ops.saturating_sub(1)) / opts.budget) as f64 * 30.0;
    let mut v = summary("wave, binding budget", opts.budget_users, &l);
    let end = l.last().copied().unwrap_or(f64::NAN);
    println!(
        "  {ops} presence operations at {}/30 s: the budget's floor {floor:.1} s after the first; the wave ended {end:.1} s after its start",
        opts.budget
    );
    v["presence_ops"] = json!(ops);
    v["budget"] = json!(opts.budget);
    v["floor_s"] = json!(floor);
    v["ended_after_start_s"] = json!(end);
    v["wall_from_launch_s"] = json!(wall);
    results.push(v);
    results
}

/// Scenarios 5 and 6: several instances on PostgreSQL.
async fn shared(bin: &Path, root: &Path, opts: &Opts, latency: Duration) -> Vec<Value> {
    let mut results = Vec::new();
    if opts.scenarios.contains(&5) {
        // 5. The same wave, one instance on SQLite against three on PostgreSQL.
        let Some(db) = pg::throwaway("run_fake scenario 5").await else {
            return results;
        };
        for (name, store) in [
            ("wave, 1 instance, SQLite", Store::Sqlite),
            ("wave, 3 instances, PostgreSQL", Store::Postgres(&db.url, 3)),
        ] {
            let (_fake, daemons, l, wall) = wave(
                bin,
                &root.join("shared"),
                opts.users,
                latency,
                "budget = 1000000",
                None,
                "1h",
                wave_start(opts.users),
                store,
            )
            .await;
            for d in daemons {
                d.stop();
            }
            let mut v = summary(name, opts.users, &l);
            println!("  wall time from launch to the last write: {wall:.2} s");
            v["wall_from_launch_s"] = json!(wall);
            results.push(v);
        }
    }
    if opts.scenarios.contains(&6) {
        results.push(takeover(bin, root, opts).await);
    }
    results
}

/// Scenario 6: one of three instances killed in the middle of a slow wave.
async fn takeover(bin: &Path, root: &Path, opts: &Opts) -> Value {
    let Some(db) = pg::throwaway("run_fake scenario 6").await else {
        return json!({ "scenario": "takeover", "skipped": "no PostgreSQL" });
    };
    let latency = Duration::from_millis(opts.takeover_latency_ms);
    let users = opts.users;
    let start = wave_start(users);
    // Launch the wave in the background and kill one instance at 30 %.
    let dir = root.join("takeover");
    let url = db.url.clone();
    let bin2 = bin.to_path_buf();
    let handle = tokio::spawn(async move {
        wave(
            &bin2,
            &dir,
            users,
            latency,
            "budget = 1000000\nconcurrency = 2",
            None,
            "1h",
            start,
            Store::Postgres(&url, 3),
        )
        .await
    });
    // The fake is inside the task: watch the database's journal instead.
    let (c, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let ok = calstatus::state::JournalOutcome::Ok.as_str();
    let applied = || async {
        c.query_one("SELECT count(*) FROM journal WHERE outcome = $1", &[&ok])
            .await
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0)
    };
    let give_up = std::time::Instant::now() + Duration::from_secs(600);
    while applied().await < (users as i64) * 3 / 10 {
        assert!(
            std::time::Instant::now() < give_up && !handle.is_finished(),
            "the takeover wave never reached 30 % of its writes in the journal"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The victim: the instance holding shard 0.
    let row = c
        .query_one("SELECT holder FROM shards WHERE shard = 0", &[])
        .await
        .unwrap();
    let holder: String = row.get(0);
    let pid = holder.split('/').nth(1).unwrap().to_string();
    let victims: Vec<i32> = c
        .query("SELECT shard FROM shards WHERE holder = $1", &[&holder])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let written: i64 = applied().await;
    let killed_at = Utc::now();
    let _ = Command::new("kill").args(["-KILL", &pid]).status();
    let (fake, daemons, l, wall) = handle.await.unwrap();
    for d in daemons {
        d.stop();
    }
    // The first write for the victim's people after the kill (not its own
    // in flight: later than the fake's latency plus 300 ms).
    let in_flight =
        killed_at + chrono::Duration::from_std(latency + Duration::from_millis(300)).unwrap();
    let first = fake
        .writes()
        .into_iter()
        .filter(|w| victims.contains(&i32::from(calstatus::state::shard_of(&w.user))))
        .filter(|w| w.at > in_flight)
        .map(|w| w.at)
        .min();
    let failover = first.map(|f| (f - killed_at).num_milliseconds() as f64 / 1000.0);
    let per_user: std::collections::HashMap<String, usize> =
        fake.writes()
            .into_iter()
            .fold(Default::default(), |mut m, w| {
                *m.entry(w.user).or_default() += 1;
                m
            });
    let duplicates: usize = per_user.values().map(|n| n - 1).sum();
    let mut v = summary("wave, 3 instances, one killed", users, &l);
    println!(
        "  killed after {written} writes; first status of its people {:.2} s after SIGKILL (lease_ttl 15 s); wave ended {:.1} s after its start; {duplicates} duplicate writes",
        failover.unwrap_or(f64::NAN),
        l.last().copied().unwrap_or(f64::NAN)
    );
    v["killed_after_writes"] = json!(written);
    v["failover_s"] = json!(failover);
    v["duplicates"] = json!(duplicates);
    v["wall_from_launch_s"] = json!(wall);
    v["latency_ms"] = json!(opts.takeover_latency_ms);
    v
}

fn main() {
    let opts = Opts::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = rt.block_on(run(opts));
    write_results("run_fake", &out);
}
