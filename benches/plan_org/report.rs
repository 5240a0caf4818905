//! What the planning benchmark prints, and its results file.

use serde_json::{Value, json};

use crate::cli::CliResult;
use crate::common::{max, median, mib, min};
use crate::percal::PerCal;
use crate::pipeline::{BuildPlan, PipelineRun, STAGES};
use crate::{Opts, Results};

// Targets (issue 9): the whole `plan --format json` process on 10,000 users.
pub const TARGET_PROCESS_WALL_S: f64 = 2.0;
pub const TARGET_PROCESS_RATIO: f64 = 200.0;
pub const TARGET_PEAK_BYTES: f64 = 1024.0 * 1024.0 * 1024.0;
pub const TARGET_CLI_MS: f64 = 100.0;
// The first benchmark's targets, still reported.
pub const TARGET_WALL_S: f64 = 3.0;
pub const TARGET_RATIO: f64 = 50.0;

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

/// Medians over the staged runs.
pub struct Summary {
    pub totals: Vec<f64>,
    pub wall: f64,
    pub stages: Vec<f64>,
    pub cpu: Vec<f64>,
    pub cpu_total: f64,
    /// The first run's VmHWM (a fresh process, as `calstatus plan` sees it).
    pub peak_hwm: Option<u64>,
    pub max_hwm: Option<u64>,
    pub expand: f64,
    pub render: f64,
}

impl Summary {
    pub fn of(runs: &[PipelineRun]) -> Summary {
        let med = |f: &dyn Fn(&PipelineRun) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        let totals: Vec<f64> = runs.iter().map(|r| r.total).collect();
        Summary {
            wall: median(&totals),
            totals,
            stages: (0..STAGES.len()).map(|i| med(&|r| r.stages[i])).collect(),
            cpu: (0..STAGES.len())
                .map(|i| med(&|r| r.stage_cpu[i]))
                .collect(),
            cpu_total: med(&|r| r.cpu_total),
            peak_hwm: runs[0].hwm_kib,
            max_hwm: runs.iter().filter_map(|r| r.hwm_kib).max(),
            expand: med(&|r| r.expand_only_s),
            render: med(&|r| r.render_json_s),
        }
    }
}

fn mem_cell(k: Option<u64>) -> String {
    k.map(|k| format!("{:.0} MiB", mib(k)))
        .unwrap_or_else(|| "?".into())
}

/// The staged runs' table.
pub fn print_pipeline(r: &Results) {
    let (s, first) = (&r.summary, &r.runs[0]);
    println!(
        "\n== Full pipeline: {} users, {} run(s), median (min .. max) ==",
        first.counts["users_planned"].as_u64().unwrap_or(0),
        r.opts.runs
    );
    println!(
        "{:<46} {:>9} {:>7} {:>9} {:>11} {:>11}",
        "stage", "seconds", "share", "CPU s", "RSS after", "HWM after"
    );
    for (i, name) in STAGES.iter().enumerate() {
        let (rss, hwm) = first.stage_mem[i];
        println!(
            "{:<46} {:>9.3} {:>6.1}% {:>9.2} {:>11} {:>11}",
            name,
            s.stages[i],
            100.0 * s.stages[i] / s.wall,
            s.cpu[i],
            mem_cell(rss),
            mem_cell(hwm)
        );
    }
    if r.opts.heap {
        print_heap(first);
    }
    println!(
        "{:<46} {:>9.3} {:>7} {:>9.2}   (wall {:.3} .. {:.3})",
        "TOTAL wall",
        s.wall,
        "",
        s.cpu_total,
        min(&s.totals),
        max(&s.totals)
    );
    print_diagnostics(r);
}

fn print_heap(first: &PipelineRun) {
    println!("live heap (--heap, first run): after each stage, and the peak up to it");
    for (i, name) in STAGES.iter().enumerate() {
        if let Some((live, peak)) = first.stage_heap[i] {
            println!(
                "  {:<44} live {:>8.1} MiB   peak {:>8.1} MiB",
                name,
                live as f64 / 1048576.0,
                peak as f64 / 1048576.0
            );
        }
    }
}

fn print_diagnostics(r: &Results) {
    let (s, first) = (&r.summary, &r.runs[0]);
    println!(
        "{:<46} {:>9.3}   (not in total; same users, same calendars)",
        "  diag: expand only (rayon over users)", s.expand
    );
    println!(
        "{:<46} {:>9.3}   (not in total; {:.1} MiB, as `--format json`)",
        "  diag: render plan as JSON",
        s.render,
        first.render_json_bytes as f64 / 1048576.0
    );
    println!(
        "{:<46} {:>9.1} µs per DST VTIMEZONE (×{} blocks ≈ {:.3} s CPU)",
        "  diag: CustomZone::new (1970–2100 table)",
        r.zone_cost * 1e6,
        r.gstats.vtimezones_dst,
        r.zone_cost * r.gstats.vtimezones_dst as f64
    );
    println!(
        "memory (first run): VmHWM {:.0} MiB peak{}; VmRSS {:.0} MiB at the end of the run (plan and calendars alive), {:.0} MiB before it; highest VmHWM of any run {:.0} MiB",
        mib(s.peak_hwm.unwrap_or(0)),
        if r.hwm_resettable {
            " (HWM reset before the run)"
        } else {
            " (HWM could not be reset: includes generation)"
        },
        mib(first.rss_end_kib.unwrap_or(0)),
        mib(first.rss_before_kib.unwrap_or(0)),
        mib(s.max_hwm.unwrap_or(0)),
    );
    println!(
        "load average after the pipeline runs: {} (other processes share these cores)",
        r.load_after
    );
    println!("counts: {}", first.counts);
    if !first.warnings_sample.is_empty() {
        println!("warnings by kind: {:?}", first.warnings_sample);
    }
}

/// The per-calendar table; returns the ratio to recurring-ical-events.
pub fn print_percal(p: &PerCal) -> Option<f64> {
    let best = min(&p.rust_passes_s);
    let rust_ms = best * 1000.0 / p.files as f64;
    let per_file = |s: f64| s * 1000.0 / p.files as f64;
    println!(
        "\n== Per calendar: {} files ({:.1} KiB avg), window 7 days, --timezone Europe/Berlin ==",
        p.files,
        p.bytes as f64 / 1024.0 / p.files as f64
    );
    println!(
        "{:<44} {:>10} {:>12} {:>8} {:>7}",
        "implementation", "total s", "ms / file", "occ.", "failed"
    );
    println!(
        "{:<44} {:>10.4} {:>12.4} {:>8} {:>7}",
        "calstatus read+parse+expand (1 thread, best/3)",
        best,
        rust_ms,
        p.rust_occurrences,
        p.rust_failed
    );
    let rows = [
        (
            "  of which parse (in memory, best/3)",
            p.rust_parse_only_s,
            None,
        ),
        (
            "  diag: icalendar read_calendar, LF-joined",
            p.ical_lf.0,
            Some(p.ical_lf.1),
        ),
        (
            "  diag: icalendar read_calendar, CRLF-joined",
            p.ical_crlf.0,
            Some(p.ical_crlf.1),
        ),
    ];
    for (label, s, parsed) in rows {
        let tail = parsed
            .map(|n| format!("   ({n} parsed)"))
            .unwrap_or_default();
        println!("{label:<44} {s:>10.4} {:>12.4}{tail}", per_file(s));
    }
    println!(
        "memory anatomy of one parsed calendar (average): {}",
        p.anatomy
    );
    match &p.python {
        Ok(v) => Some(print_python(v, p, rust_ms)),
        Err(e) => {
            println!("recurring-ical-events: {e}; no ratio");
            None
        }
    }
}

fn print_python(v: &Value, p: &PerCal, rust_ms: f64) -> f64 {
    let total = v["total_seconds"].as_f64().unwrap_or(f64::NAN);
    let py_ms = v["mean_ms_per_file"].as_f64().unwrap_or(f64::NAN);
    println!(
        "{:<44} {:>10.4} {:>12.4} {:>8} {:>7}",
        format!(
            "recurring-ical-events {} (best/{})",
            v["versions"]["recurring-ical-events"]
                .as_str()
                .unwrap_or("?"),
            v["repeat"]
        ),
        total,
        py_ms,
        v["occurrences"],
        v["files_failed"]
    );
    let r = py_ms / rust_ms;
    println!(
        "ratio: calstatus is {r:.1}× faster per calendar (in process, one thread, wall; first target ≥ {TARGET_RATIO}×)"
    );
    if v["occurrences"].as_u64() != Some(p.rust_occurrences as u64) {
        println!(
            "note: occurrence counts differ (calstatus {}, reference {}); check with tools/reference/compare.py",
            p.rust_occurrences, v["occurrences"]
        );
    }
    r
}

/// CPU per calendar of the whole process (main org) against the
/// reference's CPU per file, measured in the same run.
pub fn process_ratio(r: &Results, p: &PerCal) -> Option<f64> {
    let py_ms = p.python.as_ref().ok()?["mean_cpu_ms_per_file"].as_f64()?;
    let main = r.process.iter().find(|s| s.users == r.opts.users)?;
    let ours = main.cpu()? * 1000.0 / main.users as f64;
    let x = py_ms / ours;
    println!(
        "ratio (whole process): {ours:.3} CPU ms per calendar against {py_ms:.1} CPU ms per file: {x:.0}× (target ≥ {TARGET_PROCESS_RATIO}×)"
    );
    Some(x)
}

/// The targets table.
pub fn print_targets(r: &Results) {
    let n = r.runs[0].counts["users_planned"].as_u64().unwrap_or(0);
    let bp = &r.build_plan;
    let single = r.cli.first().map(|c| median(&c.runs_ms));
    let demo = r.cli.get(1).map(|c| median(&c.runs_ms));
    let mem = |k: Option<u64>| k.map(|k| k as f64 * 1024.0);
    let fmt_mem = |b: Option<f64>| {
        b.map(|b| format!("{:.0} MiB", b / 1048576.0))
            .unwrap_or_else(|| "?".into())
    };
    let ms = |m: Option<f64>| {
        m.map(|m| format!("{m:.1} ms"))
            .unwrap_or_else(|| "n/a".into())
    };
    println!("\n== Targets ==");
    let row = |name: &str, goal: &str, got: String, ok: Option<bool>| {
        println!(
            "{:<40} {:>10} {:>14}  {}",
            name,
            goal,
            got,
            ok.map(verdict).unwrap_or("n/a")
        );
    };
    print_process_targets(r, &row);
    row(
        &format!("{n} users, build_plan wall (first)"),
        "< 3 s",
        format!("{:.2} s", bp.wall),
        Some(bp.wall < TARGET_WALL_S),
    );
    row(
        &format!("{n} users, build_plan CPU / 2 cores"),
        "< 3 s",
        format!("{:.2} s", bp.cpu / 2.0),
        Some(bp.cpu / 2.0 < TARGET_WALL_S),
    );
    let bp_bytes = mem(bp.hwm_kib);
    row(
        "peak memory (build_plan, VmHWM)",
        "< 1 GiB",
        fmt_mem(bp_bytes),
        bp_bytes.map(|b| b < TARGET_PEAK_BYTES),
    );
    row(
        &format!("{n} users, staged pipeline wall"),
        "(diag)",
        format!("{:.2} s", r.summary.wall),
        None,
    );
    row(
        "peak memory (staged, all calendars at once)",
        "(diag)",
        fmt_mem(mem(r.summary.peak_hwm)),
        None,
    );
    row(
        "per calendar vs r-i-e (1 thread, first)",
        "≥ 50×",
        r.ratio
            .map(|x| format!("{x:.1}×"))
            .unwrap_or_else(|| "n/a".into()),
        r.ratio.map(|x| x >= TARGET_RATIO),
    );
    row(
        "single-user plan, synthetic org",
        "< 100 ms",
        ms(single),
        single.map(|m| m < TARGET_CLI_MS),
    );
    row(
        "single-user plan, examples/demo",
        "< 100 ms",
        ms(demo),
        demo.map(|m| m < TARGET_CLI_MS),
    );
}

/// Prints one row of the targets table: name, goal, result, verdict.
type Row<'a> = &'a dyn Fn(&str, &str, String, Option<bool>);

/// The whole-process rows.
fn print_process_targets(r: &Results, row: Row<'_>) {
    let Some(main) = r.process.iter().find(|s| s.users == r.opts.users) else {
        return;
    };
    let n = main.users;
    let nproc = r.machine["nproc"].as_f64().unwrap_or(1.0);
    row(
        &format!("plan --format json, {n} users: wall"),
        "< 2 s",
        format!("{:.2} s", main.wall()),
        Some(main.wall() < TARGET_PROCESS_WALL_S),
    );
    if let Some(cpu) = main.cpu() {
        row(
            "  its CPU (user + sys), cores busy",
            "(info)",
            format!("{cpu:.2} s, {:.0} %", 100.0 * cpu / (main.wall() * nproc)),
            None,
        );
    }
    let rss = main.rss_kib().map(|k| k * 1024.0);
    row(
        "  its peak RSS",
        "< 1 GiB",
        rss.map(|b| format!("{:.0} MiB", b / 1048576.0))
            .unwrap_or_else(|| "?".into()),
        rss.map(|b| b < TARGET_PEAK_BYTES),
    );
    row(
        "  CPU per calendar vs r-i-e",
        "≥ 200×",
        r.process_ratio
            .map(|x| format!("{x:.0}×"))
            .unwrap_or_else(|| "n/a".into()),
        r.process_ratio.map(|x| x >= TARGET_PROCESS_RATIO),
    );
}

/// `target/bench-results/plan_org.json`.
pub fn to_json(r: &Results) -> Value {
    let g = &r.gstats;
    json!({
        "benchmark": "plan_org",
        "build_plan": build_plan_json(&r.build_plan),
        "date": r.started.to_rfc3339(),
        "machine": r.machine,
        "window": {"from": crate::orggen::WINDOW_FROM, "to": crate::orggen::WINDOW_TO},
        "load_average": {"before": r.load_before, "after_pipeline": r.load_after, "end": crate::common::loadavg()},
        "options": options_json(&r.opts),
        "generated": {
            "seconds": r.gen_s,
            "users": g.users,
            "calendar_bytes": g.files_bytes,
            "user_file_bytes": g.user_bytes,
            "vevents": g.vevents,
            "masters": g.masters,
            "recurring": g.recurring,
            "overrides": g.overrides,
            "cancelled_overrides": g.cancelled_overrides,
            "exdate_values": g.exdates,
            "all_day": g.all_day,
            "vtimezones": g.vtimezones,
            "vtimezones_dst": g.vtimezones_dst,
        },
        "pipeline": pipeline_json(r),
        "cli": {
            "note": r.cli_note,
            "cases": r.cli.iter().map(cli_json).collect::<Vec<_>>(),
        },
        "per_calendar": r.percal.as_ref().map(|p| percal_json(p, r.ratio)),
        "process": crate::process::to_json(&r.process),
        "process_cpu_ratio": r.process_ratio,
        "targets": targets_json(r),
    })
}

fn build_plan_json(bp: &BuildPlan) -> Value {
    json!({"wall_s": bp.wall, "cpu_s": bp.cpu, "vmhwm_kib": bp.hwm_kib, "statuses": bp.statuses})
}

fn options_json(o: &Opts) -> Value {
    json!({
        "users": o.users, "events": o.events, "seed": o.seed, "runs": o.runs,
        "sample": o.sample, "cli_runs": o.cli_runs, "py_repeat": o.py_repeat,
        "growth": o.growth, "process_runs": o.process_runs,
        "dir": o.dir().display().to_string(), "generated": !o.no_generate,
    })
}

fn by_stage<T: serde::Serialize>(xs: impl IntoIterator<Item = T>) -> Value {
    Value::Object(
        STAGES
            .iter()
            .zip(xs)
            .map(|(n, x)| (n.to_string(), json!(x)))
            .collect(),
    )
}

fn run_json(r: &PipelineRun) -> Value {
    json!({
        "total_seconds": r.total,
        "stages_seconds": by_stage(r.stages),
        "vm_hwm_kib": r.hwm_kib,
        "vm_rss_end_kib": r.rss_end_kib,
        "vm_rss_before_kib": r.rss_before_kib,
        "cpu_seconds": r.cpu_total,
        "stages_cpu_seconds": by_stage(r.stage_cpu),
        "stage_heap_live_peak_bytes": by_stage(r.stage_heap),
        "stage_vm_rss_hwm_kib": by_stage(r.stage_mem.iter().map(|(a, b)| [a, b])),
        "expand_only_seconds": r.expand_only_s,
        "render_json_seconds": r.render_json_s,
    })
}

fn pipeline_json(r: &Results) -> Value {
    let (s, first) = (&r.summary, &r.runs[0]);
    json!({
        "runs": r.runs.iter().map(run_json).collect::<Vec<_>>(),
        "median_total_seconds": s.wall,
        "median_cpu_seconds": s.cpu_total,
        "median_stages_cpu_seconds": by_stage(&s.cpu),
        "median_stages_seconds": by_stage(&s.stages),
        "peak_vm_hwm_kib": s.peak_hwm,
        "max_vm_hwm_kib_any_run": s.max_hwm,
        "hwm_reset_per_run": r.hwm_resettable,
        "counts": first.counts,
        "diagnostics": {
            "expand_only_seconds_median": s.expand,
            "render_json_seconds_median": s.render,
            "render_json_bytes": first.render_json_bytes,
            "custom_zone_new_seconds_each": r.zone_cost,
        },
        "warning_messages_sample": first.warnings_sample,
    })
}

fn cli_json(c: &CliResult) -> Value {
    json!({
        "label": c.label,
        "args": c.args,
        "runs_ms": c.runs_ms,
        "median_ms": median(&c.runs_ms),
        "exit_codes": c.exit_codes,
        "max_rss_kib": c.max_rss_kib,
    })
}

fn percal_json(p: &PerCal, ratio: Option<f64>) -> Value {
    json!({
        "files": p.files,
        "bytes": p.bytes,
        "rust_passes_seconds": p.rust_passes_s,
        "rust_best_seconds": min(&p.rust_passes_s),
        "rust_ms_per_file": min(&p.rust_passes_s) * 1000.0 / p.files as f64,
        "rust_parse_only_best_seconds": p.rust_parse_only_s,
        "rust_occurrences": p.rust_occurrences,
        "rust_failed": p.rust_failed,
        "icalendar_read_calendar_lf_seconds": p.ical_lf.0,
        "icalendar_read_calendar_crlf_seconds": p.ical_crlf.0,
        "memory_anatomy": p.anatomy,
        "python": match &p.python { Ok(v) => v.clone(), Err(e) => json!({"skipped": e}) },
        "ratio": ratio,
    })
}

fn targets_json(r: &Results) -> Value {
    let wall = r.summary.wall;
    let peak = r.summary.peak_hwm.map(|k| k as f64 * 1024.0);
    let single = r.cli.first().map(|c| median(&c.runs_ms));
    let demo = r.cli.get(1).map(|c| median(&c.runs_ms));
    let main = r.process.iter().find(|s| s.users == r.opts.users);
    let main_rss = main.and_then(|m| m.rss_kib()).map(|k| k * 1024.0);
    json!({
        "pipeline_wall_seconds": {"goal": TARGET_WALL_S, "got": wall, "pass": wall < TARGET_WALL_S},
        "peak_memory_bytes": {"goal": TARGET_PEAK_BYTES, "got": peak, "pass": peak.map(|b| b < TARGET_PEAK_BYTES)},
        "per_calendar_ratio": {"goal": TARGET_RATIO, "got": r.ratio, "pass": r.ratio.map(|x| x >= TARGET_RATIO)},
        "single_user_plan_ms": {"goal": TARGET_CLI_MS, "got": single, "pass": single.map(|m| m < TARGET_CLI_MS)},
        "demo_single_user_plan_ms": {"goal": TARGET_CLI_MS, "got": demo, "pass": demo.map(|m| m < TARGET_CLI_MS)},
        "process_wall_seconds": {"goal": TARGET_PROCESS_WALL_S, "got": main.map(|m| m.wall()), "pass": main.map(|m| m.wall() < TARGET_PROCESS_WALL_S)},
        "process_peak_rss_bytes": {"goal": TARGET_PEAK_BYTES, "got": main_rss, "pass": main_rss.map(|b| b < TARGET_PEAK_BYTES)},
        "process_cpu_ratio": {"goal": TARGET_PROCESS_RATIO, "got": r.process_ratio, "pass": r.process_ratio.map(|x| x >= TARGET_PROCESS_RATIO)},
    })
}
