//! `calstatus plan` latency: the release binary, timed from outside.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::Opts;
use crate::common::{max, median, mib, min, repo_root, secs, target_dir};
use crate::orggen::{GenUser, WINDOW_FROM, WINDOW_TO};

/// One timed command line.
pub struct CliResult {
    pub label: String,
    pub args: Vec<String>,
    pub runs_ms: Vec<f64>,
    pub exit_codes: Vec<i32>,
    pub max_rss_kib: Option<u64>,
}

/// The binary to time: `--bin`, else the release build, else the bench's own.
pub fn find_bin(opts: &Opts) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(b) = &opts.bin {
        candidates.push(b.clone());
    }
    candidates.push(target_dir().join("release").join("calstatus"));
    candidates.push(PathBuf::from(env!("CARGO_BIN_EXE_calstatus")));
    candidates.into_iter().find(|p| p.is_file())
}

/// Peak RSS of one run of `bin args`, via GNU time when present.
pub fn max_rss_kib(bin: &Path, args: &[String]) -> Option<u64> {
    if !Path::new("/usr/bin/time").is_file() {
        return None;
    }
    let o = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .ok()?;
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .rev()
        .find_map(|l| l.trim().parse::<u64>().ok())
}

/// One warm-up run, then `runs` timed runs, then one for the peak RSS.
pub fn time_cli(bin: &Path, label: &str, args: &[String], runs: usize) -> CliResult {
    let run = || -> (f64, i32) {
        let t = Instant::now();
        let status = Command::new(bin)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let ms = secs(t.elapsed()) * 1000.0;
        (ms, status.ok().and_then(|s| s.code()).unwrap_or(-1))
    };
    let _ = run(); // warm-up
    let (runs_ms, exit_codes) = (0..runs).map(|_| run()).unzip();
    CliResult {
        label: label.into(),
        args: args.to_vec(),
        runs_ms,
        exit_codes,
        max_rss_kib: max_rss_kib(bin, args),
    }
}

/// `plan --config CFG [--user ID] --format json --from … --to …`.
pub fn plan_args(config: &Path, user: Option<&str>) -> Vec<String> {
    let mut args = vec![
        "plan".into(),
        "--config".into(),
        config.display().to_string(),
    ];
    if let Some(u) = user {
        args.extend(["--user".into(), u.into()]);
    }
    args.extend(["--format", "json", "--from", WINDOW_FROM, "--to", WINDOW_TO].map(String::from));
    args
}

/// The latency cases: one user of the synthetic org, one of the demo, and
/// all users (JSON to /dev/null). Returns them and a note on the binary.
pub fn measure(opts: &Opts, users: &[GenUser], config: &Path) -> (Vec<CliResult>, String) {
    let Some(bin) = find_bin(opts) else {
        let note = format!(
            "release binary not found ({}); run `cargo build --release` first",
            target_dir().join("release/calstatus").display()
        );
        println!("\n== calstatus plan latency: skipped: {note}");
        return (Vec::new(), note);
    };
    let note = format!("binary {}", bin.display());
    let mid = &users[users.len() / 2].id;
    let demo = repo_root().join("examples/demo/calstatus.toml");
    let results = vec![
        time_cli(
            &bin,
            "synthetic org, one --user (loads all user files)",
            &plan_args(config, Some(mid)),
            opts.cli_runs,
        ),
        time_cli(
            &bin,
            "examples/demo, one --user",
            &plan_args(&demo, Some("a13c2b86-6b07-4ce6-9ad7-33c0db606410")),
            opts.cli_runs,
        ),
        time_cli(
            &bin,
            "synthetic org, all users (JSON to /dev/null)",
            &plan_args(config, None),
            1,
        ),
    ];
    print(&results, &note);
    (results, note)
}

fn print(results: &[CliResult], note: &str) {
    println!("\n== calstatus plan latency ({note}) ==");
    println!(
        "{:<52} {:>9} {:>9} {:>9} {:>9} {:>6}",
        "case", "median ms", "min ms", "max ms", "peak MiB", "exit"
    );
    for c in results {
        println!(
            "{:<52} {:>9.1} {:>9.1} {:>9.1} {:>9} {:>6}",
            c.label,
            median(&c.runs_ms),
            min(&c.runs_ms),
            max(&c.runs_ms),
            c.max_rss_kib
                .map(|k| format!("{:.0}", mib(k)))
                .unwrap_or_else(|| "?".into()),
            c.exit_codes.first().copied().unwrap_or(-1)
        );
    }
}
