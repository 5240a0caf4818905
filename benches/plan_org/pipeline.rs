//! The pipeline in process: `build_plan` as the CLI runs it, then the same
//! work as separate stages, each timed on its own.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use calstatus::calendar::zones::{CustomZone, Observance, YearlyRule};
use calstatus::calendar::{Window, ZoneCache, expand};
use calstatus::org::{Org, User};
use calstatus::pipeline::{fetch_all, parse_fetched, plan_users, select_users};
use calstatus::plan::{OccurrenceDecision, Plan, SourceProblem, WindowReport};
use chrono::{NaiveDateTime, Weekday};
use rayon::prelude::*;
use serde_json::{Value, json};

use crate::common::{proc_status_kib, process_cpu_s, reset_hwm, secs};
use crate::heap::{heap, reset_peak};

/// The stages of a staged run.
pub const STAGES: [&str; 6] = [
    "load org (config, rules, user TOML)",
    "fetcher + select users",
    "fetch (read .ics files)",
    "parse (sanitise + icalendar + VTIMEZONE)",
    "expand + plan (plan_users)",
    "collect problems",
];

/// `org::load` + `pipeline::build_plan` in a fresh process: what `calstatus
/// plan` costs before rendering.
pub struct BuildPlan {
    pub wall: f64,
    pub cpu: f64,
    pub hwm_kib: Option<u64>,
    pub statuses: usize,
}

/// Runs `build_plan` once (it plans in chunks and frees calendars as it goes).
pub fn build_plan(rt: &tokio::runtime::Runtime, config: &Path, window: Window) -> BuildPlan {
    reset_hwm();
    let cpu0 = process_cpu_s();
    let t = Instant::now();
    let statuses = rt.block_on(async {
        let org = calstatus::org::load(config).expect("org loads");
        let plan = calstatus::pipeline::build_plan(&org, window, &[])
            .await
            .expect("plan");
        plan.users.iter().map(|u| u.statuses.len()).sum::<usize>()
    });
    BuildPlan {
        wall: secs(t.elapsed()),
        cpu: process_cpu_s() - cpu0,
        hwm_kib: proc_status_kib("VmHWM"),
        statuses,
    }
}

/// One staged run.
pub struct PipelineRun {
    pub stages: [f64; 6],
    /// (live, peak so far) heap bytes after each stage (`--heap`).
    pub stage_heap: [Option<(u64, u64)>; 6],
    /// CPU seconds (all threads) per stage.
    pub stage_cpu: [f64; 6],
    pub cpu_total: f64,
    /// (VmRSS, VmHWM) in KiB right after each stage.
    pub stage_mem: [(Option<u64>, Option<u64>); 6],
    pub total: f64,
    pub hwm_kib: Option<u64>,
    pub rss_end_kib: Option<u64>,
    pub rss_before_kib: Option<u64>,
    pub counts: Value,
    /// Diagnostics, not in `total`.
    pub expand_only_s: f64,
    pub render_json_s: f64,
    pub render_json_bytes: usize,
    pub warnings_sample: Vec<String>,
}

/// Times stages one after the other: wall, CPU, memory and heap of each.
struct Meter {
    start: Instant,
    cpu_start: f64,
    cpu_mark: f64,
    stages: [f64; 6],
    cpu: [f64; 6],
    mem: [(Option<u64>, Option<u64>); 6],
    heaps: [Option<(u64, u64)>; 6],
}

impl Meter {
    fn start() -> Meter {
        let cpu = process_cpu_s();
        Meter {
            start: Instant::now(),
            cpu_start: cpu,
            cpu_mark: cpu,
            stages: [0.0; 6],
            cpu: [0.0; 6],
            mem: [(None, None); 6],
            heaps: [None; 6],
        }
    }

    /// Stage `i` began at `t` and just ended.
    fn done(&mut self, i: usize, t: Instant) {
        self.stages[i] = secs(t.elapsed());
        self.mem[i] = (proc_status_kib("VmRSS"), proc_status_kib("VmHWM"));
        self.cpu[i] = process_cpu_s() - self.cpu_mark;
        self.heaps[i] = heap();
        self.cpu_mark = process_cpu_s();
    }

    /// Runs stage `i`.
    fn stage<T>(&mut self, i: usize, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.done(i, t);
        out
    }
}

fn load_org(config: &Path) -> Result<Org, String> {
    calstatus::org::load(config).map_err(|ps| {
        ps.iter()
            .take(5)
            .map(|p| format!("{}: {:?} {}", p.file.display(), p.key, p.message))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// One staged run: every stage of `build_plan`, the whole org at once.
pub fn run_pipeline(
    rt: &tokio::runtime::Runtime,
    config: &Path,
    window: Window,
) -> Result<PipelineRun, String> {
    let rss_before = proc_status_kib("VmRSS");
    reset_hwm();
    reset_peak();
    let mut m = Meter::start();
    rt.block_on(async {
        let org = m.stage(0, || load_org(config))?;
        let (fetcher, users, problems) = m.stage(1, || {
            let fetcher = calstatus::calendar::source::Fetcher::new(org.policy.clone());
            let (users, problems) = select_users(&org, &[]);
            (fetcher, users, problems)
        });
        let t = Instant::now();
        let texts = fetch_all(&fetcher, &users, org.config.file.fetch.concurrency).await;
        m.done(2, t);
        let fetched_bytes: usize = texts
            .values()
            .map(|r| r.as_ref().map(|t| t.len()).unwrap_or(0))
            .sum();
        let fetch_failed = texts.values().filter(|r| r.is_err()).count();
        let calendars = m.stage(3, || parse_fetched(texts, &ZoneCache::default()));
        let plans = m.stage(4, || plan_users(&org, &users, &calendars, window));
        let plan = m.stage(5, || collect(&org, problems, plans, window));
        let total = secs(m.start.elapsed());
        let (hwm_kib, rss_end_kib) = (proc_status_kib("VmHWM"), proc_status_kib("VmRSS"));
        let diag = diagnostics(&users, &calendars, &plan, window);
        let mut counts = counts(&org, &calendars, &plan);
        counts["fetched_bytes"] = json!(fetched_bytes);
        counts["fetch_failed"] = json!(fetch_failed);
        counts["occurrences_expand_only"] = json!(diag.expanded);
        Ok(PipelineRun {
            stages: m.stages,
            stage_mem: m.mem,
            stage_cpu: m.cpu,
            stage_heap: m.heaps,
            cpu_total: m.cpu_mark - m.cpu_start,
            total,
            hwm_kib,
            rss_end_kib,
            rss_before_kib: rss_before,
            counts,
            expand_only_s: diag.expand_only_s,
            render_json_s: diag.render_json_s,
            render_json_bytes: diag.render_json_bytes,
            warnings_sample: warning_kinds(&plan),
        })
    })
}

/// The plan as `build_plan` returns it (user-file problems included).
fn collect(
    org: &Org,
    mut problems: Vec<SourceProblem>,
    users: Vec<calstatus::plan::UserPlan>,
    window: Window,
) -> Plan {
    problems.extend(org.user_problems.iter().map(|p| SourceProblem {
        source: p.file.display().to_string(),
        message: p.message.clone(),
    }));
    Plan {
        window: WindowReport {
            from: window.from,
            to: window.to,
        },
        users,
        problems,
    }
}

/// Diagnostics of a staged run (not in its total).
struct Diagnostics {
    expanded: usize,
    expand_only_s: f64,
    render_json_s: f64,
    render_json_bytes: usize,
}

/// Expansion alone over the same calendars, and rendering the plan as JSON.
fn diagnostics(
    users: &[&User],
    calendars: &HashMap<calstatus::calendar::source::Source, calstatus::plan::CalendarInput>,
    plan: &Plan,
    window: Window,
) -> Diagnostics {
    let t = Instant::now();
    let expanded: usize = users
        .par_iter()
        .map(|u| {
            u.sources
                .iter()
                .filter_map(|s| calendars.get(s))
                .filter_map(|c| c.calendar.as_ref().ok())
                .map(|cal| expand(cal, &u.zone, window).0.len())
                .sum::<usize>()
        })
        .sum();
    let expand_only_s = secs(t.elapsed());
    let t = Instant::now();
    let rendered = calstatus::report::render(plan, calstatus::report::Format::Json);
    Diagnostics {
        expanded,
        expand_only_s,
        render_json_s: secs(t.elapsed()),
        render_json_bytes: rendered.len(),
    }
}

/// What the run produced, counted.
fn counts(
    org: &Org,
    calendars: &HashMap<calstatus::calendar::source::Source, calstatus::plan::CalendarInput>,
    plan: &Plan,
) -> Value {
    let parsed_ok = calendars.values().filter(|c| c.calendar.is_ok()).count();
    let events: usize = calendars
        .values()
        .filter_map(|c| c.calendar.as_ref().ok())
        .map(|c| c.events.len())
        .sum();
    let occurrences = || plan.users.iter().flat_map(|u| u.occurrences.iter());
    let mut skip_reasons: HashMap<String, usize> = HashMap::new();
    for r in occurrences().filter_map(|o| o.reason.as_ref()) {
        *skip_reasons.entry(r.clone()).or_default() += 1;
    }
    let sum = |f: fn(&calstatus::plan::UserPlan) -> usize| plan.users.iter().map(f).sum::<usize>();
    json!({
        "users_loaded": org.users.len(),
        "users_planned": plan.users.len(),
        "user_problems": org.user_problems.len(),
        "plan_problems": plan.problems.len(),
        "calendars_fetched": calendars.len(),
        "calendars_parsed": parsed_ok,
        "vevents_parsed": events,
        "occurrences_in_window": sum(|u| u.occurrences.len()),
        "occurrences_in_a_status": occurrences().filter(|o| o.decision == OccurrenceDecision::Status).count(),
        "statuses": sum(|u| u.statuses.len()),
        "skip_reasons": skip_reasons,
        "user_errors": sum(|u| u.errors.len()),
        "user_warnings": sum(|u| u.warnings.len()),
    })
}

/// Warning kinds (quoted parts such as UIDs blanked), counted; the first ten.
fn warning_kinds(plan: &Plan) -> Vec<String> {
    let mut kinds: HashMap<String, usize> = HashMap::new();
    for w in plan.users.iter().flat_map(|u| u.warnings.iter()) {
        let mut k = String::new();
        for (i, part) in w.message.split('"').enumerate() {
            k.push_str(if i % 2 == 1 { "\"…\"" } else { part });
        }
        *kinds.entry(k).or_default() += 1;
    }
    let mut sample: Vec<String> = kinds
        .into_iter()
        .map(|(k, n)| format!("{n} × {k}"))
        .collect();
    sample.sort();
    sample.truncate(10);
    sample
}

/// The two observances of Outlook's "W. Europe Standard Time" (1601 onsets).
pub fn outlook_weu() -> [Observance; 2] {
    let at = |s: &str| NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%S").expect("wall");
    let rule = |m: u32| YearlyRule {
        months: vec![m],
        days: vec![(-1, Weekday::Sun)],
        ..Default::default()
    };
    [
        Observance {
            dtstart: at("16011028T030000"),
            offset_from: 7200,
            offset_to: 3600,
            rule: Some(rule(10)),
            rdates: vec![],
            daylight: false,
        },
        Observance {
            dtstart: at("16010325T020000"),
            offset_from: 3600,
            offset_to: 7200,
            rule: Some(rule(3)),
            rdates: vec![],
            daylight: true,
        },
    ]
}

/// Cost of building one VTIMEZONE transition table (`CustomZone::new`) for a
/// DST zone as Outlook writes it, in seconds.
pub fn zone_table_cost() -> f64 {
    let obs = outlook_weu();
    let n = 2000;
    let t = Instant::now();
    let mut keep = 0usize;
    for _ in 0..n {
        let z = CustomZone::new("W. Europe Standard Time".into(), std::hint::black_box(&obs));
        keep += usize::from(z.is_some());
    }
    std::hint::black_box(keep);
    secs(t.elapsed()) / n as f64
}
