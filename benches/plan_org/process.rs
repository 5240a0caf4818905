//! The whole `calstatus plan --format json --output FILE` process, as a
//! person or a scheduler runs it, timed from outside with GNU time: wall
//! time, user + system CPU time and peak RSS, at each org size (1,000 /
//! 10,000 / 50,000 users by default), so that one sees how the cost grows.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{Value, json};

use crate::cli::plan_args;
use crate::common::{loadavg, max, median, mib, min, secs};

/// One run of the process.
pub struct Run {
    pub wall_s: f64,
    /// User + system CPU seconds (`None` without GNU time).
    pub cpu_s: Option<f64>,
    pub user_s: Option<f64>,
    pub sys_s: Option<f64>,
    pub max_rss_kib: Option<u64>,
    pub exit: i32,
    /// Load average just before the run.
    pub load: String,
}

/// The runs at one org size.
pub struct Size {
    pub users: usize,
    pub runs: Vec<Run>,
    pub output_bytes: u64,
}

impl Size {
    pub fn wall(&self) -> f64 {
        median(&self.runs.iter().map(|r| r.wall_s).collect::<Vec<_>>())
    }

    fn all(&self, f: impl Fn(&Run) -> Option<f64>) -> Option<Vec<f64>> {
        self.runs.iter().map(f).collect()
    }

    /// Median CPU seconds.
    pub fn cpu(&self) -> Option<f64> {
        self.all(|r| r.cpu_s).map(|v| median(&v))
    }

    /// Median peak RSS, KiB.
    pub fn rss_kib(&self) -> Option<f64> {
        self.all(|r| r.max_rss_kib.map(|k| k as f64))
            .map(|v| median(&v))
    }
}

/// One run of `bin args`, through GNU time when there is one.
fn run_once(bin: &Path, args: &[String], scratch: &Path) -> Run {
    let load = loadavg();
    let times = scratch.join("time.txt");
    let gnu_time = Path::new("/usr/bin/time").is_file();
    let mut cmd = if gnu_time {
        let mut c = Command::new("/usr/bin/time");
        c.args(["-f", "%e %U %S %M", "-o"]).arg(&times).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    let t = Instant::now();
    let status = cmd
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let wall_s = secs(t.elapsed());
    let exit = status.ok().and_then(|s| s.code()).unwrap_or(-1);
    let f: Vec<f64> = std::fs::read_to_string(&times)
        .ok()
        .filter(|_| gnu_time)
        .and_then(|s| s.lines().last().map(str::to_string))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let field = |i: usize| (f.len() == 4).then(|| f[i]);
    Run {
        wall_s,
        cpu_s: field(1).zip(field(2)).map(|(u, s)| u + s),
        user_s: field(1),
        sys_s: field(2),
        max_rss_kib: field(3).map(|k| k as u64),
        exit,
        load,
    }
}

/// `runs` timed runs (after one warm-up) of `plan --format json --output`
/// on each `(users, config)`.
pub fn measure(
    bin: &Path,
    orgs: &[(usize, std::path::PathBuf)],
    runs: usize,
    dir: &Path,
) -> Vec<Size> {
    let mut out = Vec::new();
    for (users, config) in orgs {
        let report = dir.join(format!("plan-{users}.json"));
        let mut args = plan_args(config, None);
        args.extend(["--output".to_string(), report.display().to_string()]);
        let _ = run_once(bin, &args, dir); // warm-up: page cache, binary
        let runs: Vec<Run> = (0..runs).map(|_| run_once(bin, &args, dir)).collect();
        let output_bytes = std::fs::metadata(&report).map(|m| m.len()).unwrap_or(0);
        let _ = std::fs::remove_file(&report);
        out.push(Size {
            users: *users,
            runs,
            output_bytes,
        });
    }
    print(&out);
    out
}

fn print(sizes: &[Size]) {
    let nproc = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!(
        "\n== calstatus plan --format json --output FILE: the whole process (GNU time), median of runs =="
    );
    println!(
        "{:>7} {:>8} {:>15} {:>8} {:>11} {:>9} {:>10} {:>11} {:>5}  load before each run",
        "users",
        "wall s",
        "(min .. max)",
        "CPU s",
        "cores busy",
        "peak MiB",
        "report MiB",
        "CPU ms/user",
        "exit"
    );
    for s in sizes {
        let walls: Vec<f64> = s.runs.iter().map(|r| r.wall_s).collect();
        let cpu = s.cpu();
        let cell =
            |x: Option<f64>, f: &dyn Fn(f64) -> String| x.map(f).unwrap_or_else(|| "?".into());
        println!(
            "{:>7} {:>8.2} {:>15} {:>8} {:>11} {:>9} {:>10.1} {:>11} {:>5}  {}",
            s.users,
            s.wall(),
            format!("({:.2} .. {:.2})", min(&walls), max(&walls)),
            cell(cpu, &|c| format!("{c:.2}")),
            cell(cpu, &|c| format!("{:.0} %", 100.0 * c / (s.wall() * nproc))),
            cell(s.rss_kib(), &|k| format!("{:.0}", k / 1024.0)),
            s.output_bytes as f64 / 1048576.0,
            cell(cpu, &|c| format!("{:.3}", c * 1000.0 / s.users as f64)),
            s.runs.iter().map(|r| r.exit).max().unwrap_or(-1),
            s.runs
                .iter()
                .map(|r| format!("[{}]", r.load))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
}

/// The sizes' runs, for the results file.
pub fn to_json(sizes: &[Size]) -> Value {
    json!(
        sizes
            .iter()
            .map(|s| json!({
                "users": s.users,
                "median_wall_s": s.wall(),
                "median_cpu_s": s.cpu(),
                "median_max_rss_kib": s.rss_kib(),
                "median_max_rss_mib": s.rss_kib().map(|k| mib(k as u64)),
                "report_bytes": s.output_bytes,
                "runs": s.runs.iter().map(|r| json!({
                    "wall_s": r.wall_s,
                    "cpu_s": r.cpu_s,
                    "user_s": r.user_s,
                    "sys_s": r.sys_s,
                    "max_rss_kib": r.max_rss_kib,
                    "exit": r.exit,
                    "load_average_before": r.load,
                })).collect::<Vec<_>>(),
            }))
            .collect::<Vec<_>>()
    )
}
