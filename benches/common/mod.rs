//! Helpers shared by the benchmarks: the options every bench takes, paths,
//! process measurements (`/proc`), statistics and the results file.
//!
//! Options are parsed with clap derive, like the binary's (`src/cli.rs`):
//! every option is a flag after `--` or an environment variable
//! (`CALSTATUS_BENCH_*`); a switch's variable is on unless empty, `0`,
//! `false`, `no` or `off`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// What `cargo bench` itself passes to a `harness = false` bench: `--bench`,
/// and the name filter of `cargo bench NAME`. Flattened into each bench's
/// options so that clap accepts (and ignores) them.
#[derive(Debug, clap::Args)]
pub struct CargoBenchArgs {
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
    /// `cargo bench NAME` filters.
    #[arg(hide = true)]
    filters: Vec<String>,
}

/// A count of at least 1 (a clap value parser).
pub fn positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// The repository (this package's directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, relative to the repository).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(p) if p.is_absolute() => p,
        Some(p) => repo_root().join(p),
        None => repo_root().join("target"),
    }
}

/// An RFC 3339 instant (constants of the benches).
pub fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

/// Seconds, as a float.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// User + system CPU seconds of this process, all threads (from
/// /proc/self/stat, assuming the usual 100 clock ticks per second).
pub fn process_cpu_s() -> f64 {
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

/// A `/proc/self/status` value in KiB (`VmRSS`, `VmHWM`).
pub fn proc_status_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|r| r.trim_start_matches(':').split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0); `false` if not possible.
pub fn reset_hwm() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The median (NaN for none).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The smallest value (infinity for none).
pub fn min(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::INFINITY, f64::min)
}

/// The largest value (−infinity for none).
pub fn max(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// KiB → MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Writes `target/bench-results/<name>.json` and says where.
pub fn write_results(name: &str, out: &Value) {
    let res_dir = target_dir().join("bench-results");
    let path = res_dir.join(format!("{name}.json"));
    match std::fs::create_dir_all(&res_dir).and_then(|_| {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(out).unwrap_or_default() + "\n",
        )
    }) {
        Ok(()) => println!("\nwrote {}", path.display()),
        Err(e) => eprintln!("{name}: cannot write {}: {e}", path.display()),
    }
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
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
