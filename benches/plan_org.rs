//! Planning benchmark: a synthetic 10,000-user organisation, planned end to end.
//!
//! ```sh
//! cargo build --release                  # the CLI latency part times target/release/calstatus
//! cargo bench --bench plan_org           # everything, 10,000 users
//! cargo bench --bench plan_org -- --users 1000 --no-python
//! CALSTATUS_BENCH_USERS=2000 cargo bench --bench plan_org
//! ```
//!
//! What it does (see BENCHMARKS.md):
//!
//! 1. Generates a deterministic org (`tests/support/orggen`, shared with the
//!    tests) under `target/bench-org/`: `calstatus.toml`, one
//!    `users/uNNNNN.toml` and one Outlook-style `calendars/uNNNNN.ics` per user.
//! 2. Times the whole `calstatus plan --format json --output FILE` process
//!    (release binary, GNU time: wall, CPU, peak RSS) at each `--growth`
//!    size (1,000 / 10,000 / 50,000 users; the orgs share `calendars/`).
//! 3. Runs the pipeline the CLI runs (`org::load` → `fetch_all` → `parse_fetched`
//!    → `plan_users`) on a 7-day window from 2026-11-30T00:00:00Z in a tokio
//!    multi-thread runtime, timing every stage (wall and process CPU seconds:
//!    the machine may be shared, so the load average is printed too), and
//!    reads VmHWM/VmRSS. `--heap` adds a counting global allocator for the
//!    live heap after each stage and a per-calendar memory anatomy.
//! 4. Times `calstatus plan --user …` (release binary) on the synthetic org and
//!    on `examples/demo`.
//! 5. Times `parse` + `expand` per calendar on a sample and runs
//!    `tools/reference/bench.py` (recurring-ical-events) on the same files;
//!    its CPU per file against the whole process's CPU per calendar is the
//!    issue-9 ratio.
//!
//! Options: `--help` (after `--`). Results also go to
//! `target/bench-results/plan_org.json`.

#[allow(dead_code)]
#[path = "common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/support/orggen/mod.rs"]
mod orggen;

#[path = "plan_org/cli.rs"]
mod cli;
#[path = "plan_org/heap.rs"]
mod heap;
#[path = "plan_org/percal.rs"]
mod percal;
#[path = "plan_org/pipeline.rs"]
mod pipeline;
#[path = "plan_org/process.rs"]
mod process;
#[path = "plan_org/report.rs"]
mod report;

use std::path::PathBuf;
use std::time::Instant;

use calstatus::calendar::Window;
use chrono::{DateTime, Utc};
use clap::Parser;
use clap::builder::FalseyValueParser;
use serde_json::{Value, json};

use common::{CargoBenchArgs, loadavg, mib, reset_hwm, secs, target_dir, utc};
use orggen::{GenStats, GenUser, Spec, WINDOW_FROM, WINDOW_TO};

/// The planning benchmark (see BENCHMARKS.md). Every option is also an
/// environment variable.
#[derive(Debug, Parser)]
#[command(name = "plan_org")]
pub struct Opts {
    /// Users (one calendar each).
    #[arg(long, env = "CALSTATUS_BENCH_USERS", value_parser = common::positive, default_value_t = 10_000)]
    pub users: usize,
    /// Events per calendar (±20 %, not counting overrides).
    #[arg(long, env = "CALSTATUS_BENCH_EVENTS", default_value_t = 30)]
    pub events: usize,
    /// PRNG seed; user i is the same at every org size.
    #[arg(long, env = "CALSTATUS_BENCH_SEED", default_value_t = 0x00C4_1570)]
    pub seed: u64,
    /// Pipeline runs; the median is reported.
    #[arg(long, env = "CALSTATUS_BENCH_RUNS", value_parser = common::positive, default_value_t = 3)]
    pub runs: usize,
    /// Calendars in the Rust and Python comparison.
    #[arg(long, env = "CALSTATUS_BENCH_SAMPLE", value_parser = common::positive, default_value_t = 500)]
    pub sample: usize,
    /// Timed CLI runs, after one warm-up run.
    #[arg(long, env = "CALSTATUS_BENCH_CLI_RUNS", value_parser = common::positive, default_value_t = 10)]
    pub cli_runs: usize,
    /// `bench.py --repeat`.
    #[arg(long, env = "CALSTATUS_BENCH_PY_REPEAT", value_parser = common::positive, default_value_t = 1)]
    pub py_repeat: usize,
    /// Python interpreter.
    #[arg(long, env = "CALSTATUS_BENCH_PYTHON", default_value = "python3")]
    pub python: String,
    /// Binary for the CLI timings (default: target/release/calstatus).
    #[arg(long, env = "CALSTATUS_BENCH_BIN")]
    pub bin: Option<PathBuf>,
    /// Where the org is written (default: target/bench-org). Deleted and
    /// rewritten, but only if it holds the bench's marker file.
    #[arg(long, env = "CALSTATUS_BENCH_DIR")]
    dir: Option<PathBuf>,
    /// Skip the CLI timings.
    #[arg(long, env = "CALSTATUS_BENCH_NO_CLI", value_parser = FalseyValueParser::new())]
    pub no_cli: bool,
    /// Skip the Python comparison.
    #[arg(long, env = "CALSTATUS_BENCH_NO_PYTHON", value_parser = FalseyValueParser::new())]
    pub no_python: bool,
    /// Skip the per-calendar comparison.
    #[arg(long, env = "CALSTATUS_BENCH_NO_PERCAL", value_parser = FalseyValueParser::new())]
    pub no_percal: bool,
    /// Calendars as published from Outlook with limited details (the
    /// owner's reply, no other attendee, no DESCRIPTION: ~30 KiB instead of
    /// ~49 KiB), closer to the files of issue 9's measurement. Use another
    /// --dir to keep the full org.
    #[arg(long, env = "CALSTATUS_BENCH_PUBLISHED", value_parser = FalseyValueParser::new())]
    pub published: bool,
    /// Reuse the org already in --dir.
    #[arg(long, env = "CALSTATUS_BENCH_NO_GENERATE", value_parser = FalseyValueParser::new())]
    pub no_generate: bool,
    /// Org sizes at which the whole `plan --format json` process is timed.
    #[arg(
        long,
        env = "CALSTATUS_BENCH_GROWTH",
        value_delimiter = ',',
        value_parser = common::positive,
        default_values_t = [1_000, 10_000, 50_000]
    )]
    pub growth: Vec<usize>,
    /// Timed runs of the whole process at each size, after one warm-up run.
    #[arg(long, env = "CALSTATUS_BENCH_PROCESS_RUNS", value_parser = common::positive, default_value_t = 5)]
    pub process_runs: usize,
    /// Skip timing the whole process.
    #[arg(long, env = "CALSTATUS_BENCH_NO_PROCESS", value_parser = FalseyValueParser::new())]
    pub no_process: bool,
    /// Counting global allocator: live heap after each stage, and where a
    /// parsed calendar's memory goes.
    #[arg(long, env = "CALSTATUS_BENCH_HEAP", value_parser = FalseyValueParser::new())]
    pub heap: bool,
    #[command(flatten)]
    cargo: CargoBenchArgs,
}

impl Opts {
    /// Parsed from the command line and the environment (at least 2 events).
    fn get() -> Opts {
        let mut o = Opts::parse();
        o.events = o.events.max(2);
        o
    }

    /// The org directory, absolute.
    pub fn dir(&self) -> PathBuf {
        let dir = self
            .dir
            .clone()
            .unwrap_or_else(|| target_dir().join("bench-org"));
        std::path::absolute(&dir).unwrap_or(dir)
    }

    fn spec(&self) -> Spec {
        Spec {
            users: self.users,
            events: self.events,
            seed: self.seed,
            detail: if self.published {
                orggen::Detail::Published
            } else {
                orggen::Detail::Full
            },
        }
    }
}

/// Everything measured, for the tables and the results file.
pub struct Results {
    pub opts: Opts,
    pub started: DateTime<Utc>,
    pub machine: Value,
    pub load_before: String,
    pub load_after: String,
    pub gen_s: f64,
    pub gstats: GenStats,
    pub build_plan: pipeline::BuildPlan,
    pub runs: Vec<pipeline::PipelineRun>,
    pub summary: report::Summary,
    pub hwm_resettable: bool,
    pub zone_cost: f64,
    pub cli: Vec<cli::CliResult>,
    pub cli_note: String,
    pub percal: Option<percal::PerCal>,
    pub ratio: Option<f64>,
    /// The whole process at each size.
    pub process: Vec<process::Size>,
    /// CPU per calendar of the whole process (main size) against
    /// recurring-ical-events' CPU per file, same run.
    pub process_ratio: Option<f64>,
}

fn main() {
    let opts = Opts::get();
    if opts.heap {
        heap::enable();
    }
    let window = Window {
        from: utc(WINDOW_FROM),
        to: utc(WINDOW_TO),
    };
    let started = Utc::now();
    let machine = machine();
    let load_before = loadavg();
    print_header(started, &machine, &load_before);
    let (users, gstats, gen_s) = prepare_org(&opts);
    let config = opts.dir().join("calstatus.toml");
    let process = whole_process(&opts);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let hwm_resettable = reset_hwm();
    let build_plan = pipeline::build_plan(&rt, &config, window);
    println!(
        "  build_plan (the CLI's pipeline): {:.3} s wall, {:.2} CPU s, VmHWM {:.0} MiB, {} statuses",
        build_plan.wall,
        build_plan.cpu,
        mib(build_plan.hwm_kib.unwrap_or(0)),
        build_plan.statuses
    );
    let runs = staged_runs(&opts, &rt, &config, window);
    let load_after = loadavg();
    let mut r = Results {
        summary: report::Summary::of(&runs),
        zone_cost: pipeline::zone_table_cost(),
        percal: None,
        ratio: None,
        process,
        process_ratio: None,
        opts,
        started,
        machine,
        load_before,
        load_after,
        gen_s,
        gstats,
        build_plan,
        runs,
        hwm_resettable,
        cli: Vec::new(),
        cli_note: String::new(),
    };
    report::print_pipeline(&r);
    if !r.opts.no_cli {
        (r.cli, r.cli_note) = cli::measure(&r.opts, &users, &config);
    }
    per_calendar(&mut r, window);
    report::print_targets(&r);
    common::write_results("plan_org", &report::to_json(&r));
}

fn print_header(started: DateTime<Utc>, mach: &Value, load_before: &str) {
    println!(
        "calstatus plan_org benchmark — {}",
        started.format("%Y-%m-%d %H:%M UTC")
    );
    println!(
        "machine: {} × {} ({}), {:.1} GiB RAM, {}",
        mach["nproc"],
        mach["cpu_model"].as_str().unwrap_or(""),
        mach["kernel"].as_str().unwrap_or(""),
        mach["mem_total_mib"].as_f64().unwrap_or(0.0) / 1024.0,
        mach["rustc"].as_str().unwrap_or("")
    );
    println!("window: {WINDOW_FROM} .. {WINDOW_TO}; load average before: {load_before}");
}

/// Generates the org (or reads the users of the one in `--dir`); exits on failure.
fn prepare_org(opts: &Opts) -> (Vec<GenUser>, GenStats, f64) {
    let dir = opts.dir();
    let t = Instant::now();
    let made = if opts.no_generate {
        orggen::existing_users(&dir).map(|u| (u, GenStats::default()))
    } else {
        let also: &[usize] = if opts.no_process { &[] } else { &opts.growth };
        orggen::generate(&dir, opts.spec(), also, &common::repo_root().join("rules"))
    };
    let (users, g) = made.unwrap_or_else(|e| {
        eprintln!("plan_org: {e}");
        std::process::exit(1);
    });
    let gen_s = secs(t.elapsed());
    if opts.no_generate {
        println!("\nreusing {} users under {}", users.len(), dir.display());
        return (users, g, gen_s);
    }
    println!(
        "\ngenerated {} users in {:.2} s under {}",
        g.users,
        gen_s,
        dir.display()
    );
    let per_user = |x: f64| x / g.users.max(1) as f64;
    println!(
        "  calendars: {:.1} MiB ({:.1} KiB/file), user files {:.1} MiB; {} VEVENTs ({:.1}/file): {} masters ({} recurring), {} overrides ({} cancelled), {} EXDATE values, {} all-day; {} VTIMEZONE blocks ({} with DST)",
        g.files_bytes as f64 / 1048576.0,
        per_user(g.files_bytes as f64 / 1024.0),
        g.user_bytes as f64 / 1048576.0,
        g.vevents,
        per_user(g.vevents as f64),
        g.masters,
        g.recurring,
        g.overrides,
        g.cancelled_overrides,
        g.exdates,
        g.all_day,
        g.vtimezones,
        g.vtimezones_dst
    );
    (users, g, gen_s)
}

/// The whole `plan` process at each `--growth` size (and `--users`).
fn whole_process(opts: &Opts) -> Vec<process::Size> {
    if opts.no_process {
        return Vec::new();
    }
    let Some(bin) = cli::find_bin(opts) else {
        println!("\n== whole process: skipped: no release binary (cargo build --release)");
        return Vec::new();
    };
    let dir = opts.dir();
    let mut sizes: Vec<usize> = opts.growth.clone();
    sizes.push(opts.users);
    sizes.sort_unstable();
    sizes.dedup();
    let orgs: Vec<(usize, PathBuf)> = sizes
        .into_iter()
        .map(|n| (n, orggen::config_path(&dir, n, opts.users)))
        .filter(|(n, c)| {
            let there = c.is_file();
            if !there {
                println!(
                    "whole process: no org of {n} users in {} (generate it)",
                    dir.display()
                );
            }
            there
        })
        .collect();
    process::measure(&bin, &orgs, opts.process_runs, &dir)
}

/// `--runs` staged runs; exits if one fails.
fn staged_runs(
    opts: &Opts,
    rt: &tokio::runtime::Runtime,
    config: &std::path::Path,
    window: Window,
) -> Vec<pipeline::PipelineRun> {
    (0..opts.runs)
        .map(|i| match pipeline::run_pipeline(rt, config, window) {
            Ok(r) => {
                println!(
                    "  pipeline run {}/{}: {:.3} s, VmHWM {:.0} MiB",
                    i + 1,
                    opts.runs,
                    r.total,
                    mib(r.hwm_kib.unwrap_or(0))
                );
                r
            }
            Err(e) => {
                eprintln!("plan_org: the pipeline failed: {e}");
                std::process::exit(1);
            }
        })
        .collect()
}

/// The per-calendar comparison, unless `--no-percal`.
fn per_calendar(r: &mut Results, window: Window) {
    if r.opts.no_percal {
        return;
    }
    match percal::per_calendar(&r.opts, window) {
        Ok(p) => {
            r.ratio = report::print_percal(&p);
            r.process_ratio = report::process_ratio(r, &p);
            r.percal = Some(p);
        }
        Err(e) => println!("\nper-calendar comparison failed: {e}"),
    }
}

/// The machine: CPUs, memory, kernel, compiler.
fn machine() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|r| r.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let mem_total = read("/proc/meminfo").lines().find_map(|l| {
        l.strip_prefix("MemTotal:")
            .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
    });
    let rustc =
        std::process::Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu_model": model,
        "mem_total_mib": mem_total.map(mib),
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "rustc": rustc,
    })
}
