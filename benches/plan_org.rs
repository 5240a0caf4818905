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
//! 1. Generates a deterministic org (seeded SplitMix64, no extra crates) under
//!    `target/bench-org/`: `calstatus.toml`, one `users/uNNNNN.toml` and one
//!    Outlook-style `calendars/uNNNNN.ics` (~30 events, about half recurring,
//!    Windows TZIDs with VTIMEZONE blocks, EXDATEs, moved and cancelled
//!    RECURRENCE-ID overrides, all-day OOF, private/declined/tentative/free
//!    events) per user.
//! 2. Runs the pipeline the CLI runs (`org::load` → `fetch_all` → `parse_fetched`
//!    → `plan_users`) on a 7-day window from 2026-11-30T00:00:00Z in a tokio
//!    multi-thread runtime, timing every stage (wall and process CPU seconds:
//!    the machine may be shared, so the load average is printed too), and
//!    reads VmHWM/VmRSS. `--heap` adds a counting global allocator for the
//!    live heap after each stage and a per-calendar memory anatomy.
//! 3. Times `calstatus plan --user …` (release binary) on the synthetic org and
//!    on `examples/demo`.
//! 4. Times `parse` + `expand` per calendar on a sample and runs
//!    `tools/reference/bench.py` (recurring-ical-events) on the same files.
//!
//! Options (flag or environment variable):
//! `--users N` / `CALSTATUS_BENCH_USERS` (10000), `--events N` /
//! `CALSTATUS_BENCH_EVENTS` (30), `--seed N` / `CALSTATUS_BENCH_SEED`,
//! `--runs N` / `CALSTATUS_BENCH_RUNS` (3 pipeline runs, median reported),
//! `--sample N` / `CALSTATUS_BENCH_SAMPLE` (500), `--cli-runs N` /
//! `CALSTATUS_BENCH_CLI_RUNS` (10), `--py-repeat N` /
//! `CALSTATUS_BENCH_PY_REPEAT` (1), `--python PATH` / `CALSTATUS_BENCH_PYTHON`
//! (python3), `--bin PATH` / `CALSTATUS_BENCH_BIN`, `--dir PATH` /
//! `CALSTATUS_BENCH_DIR` (target/bench-org), `--no-cli`, `--no-python`,
//! `--no-percal`, `--no-generate` (reuse the org already in `--dir`),
//! `--heap` / `CALSTATUS_BENCH_HEAP` (live-heap accounting; slightly slower).
//! The org is about 480 MiB of .ics for 10,000 users and is rewritten on
//! every run unless `--no-generate` is given.
//! Results also go to `target/bench-results/plan_org.json`.

#[path = "common/mod.rs"]
mod common;
use common::{arg_flag, arg_num, arg_value};

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use calstatus::calendar::source::Fetcher;
use calstatus::calendar::zones::{CustomZone, Observance, YearlyRule};
use calstatus::calendar::{Window, expand, parse, parse_zone_name};
use calstatus::pipeline::{fetch_all, parse_fetched, plan_users, select_users};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Utc, Weekday};
use rayon::prelude::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Live-heap accounting (`--heap`): off by default, one relaxed load per call.

static HEAP_COUNTING: AtomicBool = AtomicBool::new(false);
static HEAP_LIVE: AtomicIsize = AtomicIsize::new(0);
static HEAP_PEAK: AtomicIsize = AtomicIsize::new(0);

struct CountingAlloc;

impl CountingAlloc {
    fn grew(by: isize) {
        if HEAP_COUNTING.load(Ordering::Relaxed) {
            let now = HEAP_LIVE.fetch_add(by, Ordering::Relaxed) + by;
            HEAP_PEAK.fetch_max(now, Ordering::Relaxed);
        }
    }
    fn shrank(by: isize) {
        if HEAP_COUNTING.load(Ordering::Relaxed) {
            HEAP_LIVE.fetch_sub(by, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; only
// counters are updated around it.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            Self::grew(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            Self::grew(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        Self::shrank(layout.size() as isize);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            Self::grew(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// (live, peak since the last reset) heap bytes, when `--heap` is on.
fn heap() -> Option<(u64, u64)> {
    HEAP_COUNTING.load(Ordering::Relaxed).then(|| {
        (
            HEAP_LIVE.load(Ordering::Relaxed).max(0) as u64,
            HEAP_PEAK.load(Ordering::Relaxed).max(0) as u64,
        )
    })
}

fn reset_heap_peak() {
    HEAP_PEAK.store(HEAP_LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

const WINDOW_FROM: &str = "2026-11-30T00:00:00Z";
const WINDOW_TO: &str = "2026-12-07T00:00:00Z";
const MARKER: &str = ".calstatus-bench-org";
/// Bump when the generator changes, so a reused org is regenerated.
const GENERATOR_VERSION: u32 = 1;

// Targets.
const TARGET_WALL_S: f64 = 3.0;
const TARGET_PEAK_BYTES: f64 = 1024.0 * 1024.0 * 1024.0;
const TARGET_RATIO: f64 = 50.0;
const TARGET_CLI_MS: f64 = 100.0;

// ---------------------------------------------------------------------------
// Options

struct Opts {
    users: usize,
    events: usize,
    seed: u64,
    runs: usize,
    sample: usize,
    cli_runs: usize,
    py_repeat: usize,
    python: String,
    bin: Option<PathBuf>,
    dir: PathBuf,
    cli: bool,
    py: bool,
    percal: bool,
    generate: bool,
    heap: bool,
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                repo_root().join(p)
            }
        })
        .unwrap_or_else(|| repo_root().join("target"))
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl Opts {
    fn from_env() -> Opts {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let dir = arg_value(&args, "--dir", "CALSTATUS_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| target_dir().join("bench-org"));
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        Opts {
            users: arg_num(&args, "--users", "CALSTATUS_BENCH_USERS", 10_000usize).max(1),
            events: arg_num(&args, "--events", "CALSTATUS_BENCH_EVENTS", 30usize).max(2),
            seed: arg_num(&args, "--seed", "CALSTATUS_BENCH_SEED", 0x00C4_1570_u64),
            runs: arg_num(&args, "--runs", "CALSTATUS_BENCH_RUNS", 3usize).max(1),
            sample: arg_num(&args, "--sample", "CALSTATUS_BENCH_SAMPLE", 500usize).max(1),
            cli_runs: arg_num(&args, "--cli-runs", "CALSTATUS_BENCH_CLI_RUNS", 10usize).max(1),
            py_repeat: arg_num(&args, "--py-repeat", "CALSTATUS_BENCH_PY_REPEAT", 1usize).max(1),
            python: arg_value(&args, "--python", "CALSTATUS_BENCH_PYTHON")
                .unwrap_or_else(|| "python3".into()),
            bin: arg_value(&args, "--bin", "CALSTATUS_BENCH_BIN").map(PathBuf::from),
            dir,
            cli: !arg_flag(&args, "--no-cli", "CALSTATUS_BENCH_NO_CLI"),
            py: !arg_flag(&args, "--no-python", "CALSTATUS_BENCH_NO_PYTHON"),
            percal: !arg_flag(&args, "--no-percal", "CALSTATUS_BENCH_NO_PERCAL"),
            generate: !arg_flag(&args, "--no-generate", "CALSTATUS_BENCH_NO_GENERATE"),
            heap: arg_flag(&args, "--heap", "CALSTATUS_BENCH_HEAP"),
        }
    }
}

// ---------------------------------------------------------------------------
// Deterministic randomness

/// SplitMix64: tiny, good enough, and stable across platforms.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo + 1) as u64)) as i64
    }
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[(self.next() % xs.len() as u64) as usize]
    }
    fn hex(&mut self, n: usize) -> String {
        let mut s = String::with_capacity(n);
        while s.len() < n {
            let _ = write!(s, "{:016X}", self.next());
        }
        s.truncate(n);
        s
    }
    fn guid(&mut self) -> String {
        let h = self.hex(32).to_ascii_lowercase();
        format!(
            "{}-{}-4{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[13..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

// ---------------------------------------------------------------------------
// Zones

struct WinZone {
    name: &'static str,
    /// The block Outlook writes, one content line per entry.
    vtimezone: &'static [&'static str],
}

const WEU: usize = 0;
const GMT: usize = 1;
const PST: usize = 2;
const EST: usize = 3;
const IST: usize = 4;
const TST: usize = 5;

const ZONES: [WinZone; 6] = [
    WinZone {
        name: "W. Europe Standard Time",
        vtimezone: &[
            "BEGIN:VTIMEZONE",
            "TZID:W. Europe Standard Time",
            "BEGIN:STANDARD",
            "DTSTART:16011028T030000",
            "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10",
            "TZOFFSETFROM:+0200",
            "TZOFFSETTO:+0100",
            "END:STANDARD",
            "BEGIN:DAYLIGHT",
            "DTSTART:16010325T020000",
            "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3",
            "TZOFFSETFROM:+0100",
            "TZOFFSETTO:+0200",
            "END:DAYLIGHT",
            "END:VTIMEZONE",
        ],
    },
    WinZone {
        name: "GMT Standard Time",
        vtimezone: &[
            "BEGIN:VTIMEZONE",
            "TZID:GMT Standard Time",
            "BEGIN:STANDARD",
            "DTSTART:16011028T020000",
            "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10",
            "TZOFFSETFROM:+0100",
            "TZOFFSETTO:+0000",
            "END:STANDARD",
            "BEGIN:DAYLIGHT",
            "DTSTART:16010325T010000",
            "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3",
            "TZOFFSETFROM:+0000",
            "TZOFFSETTO:+0100",
            "END:DAYLIGHT",
            "END:VTIMEZONE",
        ],
    },
    WinZone {
        name: "Pacific Standard Time",
        vtimezone: &[
            "BEGIN:VTIMEZONE",
            "TZID:Pacific Standard Time",
            "BEGIN:STANDARD",
            "DTSTART:16011104T020000",
            "RRULE:FREQ=YEARLY;BYDAY=1SU;BYMONTH=11",
            "TZOFFSETFROM:-0700",
            "TZOFFSETTO:-0800",
            "END:STANDARD",
            "BEGIN:DAYLIGHT",
            "DTSTART:16010311T020000",
            "RRULE:FREQ=YEARLY;BYDAY=2SU;BYMONTH=3",
            "TZOFFSETFROM:-0800",
            "TZOFFSETTO:-0700",
            "END:DAYLIGHT",
            "END:VTIMEZONE",
        ],
    },
    WinZone {
        name: "Eastern Standard Time",
        vtimezone: &[
            "BEGIN:VTIMEZONE",
            "TZID:Eastern Standard Time",
            "BEGIN:STANDARD",
            "DTSTART:16011104T020000",
            "RRULE:FREQ=YEARLY;BYDAY=1SU;BYMONTH=11",
            "TZOFFSETFROM:-0400",
            "TZOFFSETTO:-0500",
            "END:STANDARD",
            "BEGIN:DAYLIGHT",
            "DTSTART:16010311T020000",
            "RRULE:FREQ=YEARLY;BYDAY=2SU;BYMONTH=3",
            "TZOFFSETFROM:-0500",
            "TZOFFSETTO:-0400",
            "END:DAYLIGHT",
            "END:VTIMEZONE",
        ],
    },
    WinZone {
        name: "India Standard Time",
        vtimezone: &[
            "BEGIN:VTIMEZONE",
            "TZID:India Standard Time",
            "BEGIN:STANDARD",
            "DTSTART:16010101T000000",
            "TZOFFSETFROM:+0530",
            "TZOFFSETTO:+0530",
            "END:STANDARD",
            "END:VTIMEZONE",
        ],
    },
    WinZone {
        name: "Tokyo Standard Time",
        vtimezone: &[
            "BEGIN:VTIMEZONE",
            "TZID:Tokyo Standard Time",
            "BEGIN:STANDARD",
            "DTSTART:16010101T000000",
            "TZOFFSETFROM:+0900",
            "TZOFFSETTO:+0900",
            "END:STANDARD",
            "END:VTIMEZONE",
        ],
    },
];

/// A user's zone (IANA, as user files give it), the Windows zone their own
/// Outlook writes, and a weight.
const USER_ZONES: [(&str, usize, u64); 8] = [
    ("Europe/Berlin", WEU, 24),
    ("Europe/Paris", WEU, 8),
    ("Europe/London", GMT, 12),
    ("Europe/Lisbon", GMT, 5),
    ("America/New_York", EST, 18),
    ("America/Los_Angeles", PST, 13),
    ("Asia/Kolkata", IST, 12),
    ("Asia/Tokyo", TST, 8),
];

fn pick_user_zone(rng: &mut Rng) -> (&'static str, usize) {
    let total: u64 = USER_ZONES.iter().map(|z| z.2).sum();
    let mut x = rng.next() % total;
    for (iana, win, w) in USER_ZONES {
        if x < w {
            return (iana, win);
        }
        x -= w;
    }
    (USER_ZONES[0].0, USER_ZONES[0].1)
}

// ---------------------------------------------------------------------------
// Recurrence rules the generator writes (and can enumerate itself, to put
// EXDATEs and overrides on real instances).

#[derive(Clone, Copy, PartialEq, Eq)]
enum Freq {
    Daily,
    Weekly,
    /// `FREQ=MONTHLY;BYDAY=-1FR`.
    MonthlyLastFriday,
    /// `FREQ=MONTHLY;BYDAY=1MO`.
    MonthlyFirstMonday,
    /// `FREQ=MONTHLY;BYMONTHDAY=n`.
    MonthlyDay(u32),
}

#[derive(Clone)]
struct GenRule {
    freq: Freq,
    interval: i64,
    days: Vec<Weekday>,
    count: Option<usize>,
    until: Option<NaiveDate>,
}

fn wd_code(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "MO",
        Weekday::Tue => "TU",
        Weekday::Wed => "WE",
        Weekday::Thu => "TH",
        Weekday::Fri => "FR",
        Weekday::Sat => "SA",
        Weekday::Sun => "SU",
    }
}

fn month_len(d: NaiveDate) -> u32 {
    let (y, m) = (d.year(), d.month());
    let next = if m == 12 {
        NaiveDate::from_ymd_opt(y + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(y, m + 1, 1)
    };
    next.and_then(|n| n.pred_opt())
        .map(|l| l.day())
        .unwrap_or(28)
}

impl GenRule {
    /// Whether day `d` is an instance of a series starting on `start` (COUNT/UNTIL aside).
    fn matches(&self, start: NaiveDate, d: NaiveDate) -> bool {
        if d < start {
            return false;
        }
        match self.freq {
            Freq::Daily => (d - start).num_days() % self.interval == 0,
            Freq::Weekly => {
                let week0 =
                    start - chrono::Duration::days(start.weekday().num_days_from_monday().into());
                let weeks = (d - week0).num_days() / 7;
                weeks % self.interval == 0 && self.days.contains(&d.weekday())
            }
            Freq::MonthlyLastFriday => d.weekday() == Weekday::Fri && d.day() + 7 > month_len(d),
            Freq::MonthlyFirstMonday => d.weekday() == Weekday::Mon && d.day() <= 7,
            Freq::MonthlyDay(n) => d.day() == n,
        }
    }

    /// Instance days from `start` through `upto`, honouring COUNT and UNTIL.
    fn instances(&self, start: NaiveDate, upto: NaiveDate) -> Vec<NaiveDate> {
        let mut out = Vec::new();
        let mut d = start;
        let mut n = 0usize;
        while d <= upto {
            if self.until.is_some_and(|u| d > u) {
                break;
            }
            if self.matches(start, d) {
                n += 1;
                if self.count.is_some_and(|c| n > c) {
                    break;
                }
                out.push(d);
            }
            d = match d.succ_opt() {
                Some(x) => x,
                None => break,
            };
        }
        out
    }

    fn text(&self, all_day: bool) -> String {
        let mut s = match self.freq {
            Freq::Daily => "FREQ=DAILY".to_string(),
            Freq::Weekly => format!(
                "FREQ=WEEKLY;BYDAY={}",
                self.days
                    .iter()
                    .map(|d| wd_code(*d))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Freq::MonthlyLastFriday => "FREQ=MONTHLY;BYDAY=-1FR".into(),
            Freq::MonthlyFirstMonday => "FREQ=MONTHLY;BYDAY=1MO".into(),
            Freq::MonthlyDay(n) => format!("FREQ=MONTHLY;BYMONTHDAY={n}"),
        };
        if self.interval > 1 {
            let _ = write!(s, ";INTERVAL={}", self.interval);
        }
        if let Some(c) = self.count {
            let _ = write!(s, ";COUNT={c}");
        }
        if let Some(u) = self.until {
            if all_day {
                let _ = write!(s, ";UNTIL={}", fmt_date(u));
            } else {
                let _ = write!(s, ";UNTIL={}T235959Z", fmt_date(u));
            }
        }
        s
    }
}

// ---------------------------------------------------------------------------
// Calendar text

fn fmt_date(d: NaiveDate) -> String {
    format!("{:04}{:02}{:02}", d.year(), d.month(), d.day())
}

fn fmt_wall(w: NaiveDateTime) -> String {
    use chrono::Timelike;
    format!(
        "{}T{:02}{:02}{:02}",
        fmt_date(w.date()),
        w.hour(),
        w.minute(),
        w.second()
    )
}

/// Appends one content line folded at 75 octets (RFC 5545 §3.1), CRLF-terminated.
fn push_line(out: &mut String, line: &str) {
    let mut rest = line;
    let mut first = true;
    loop {
        let limit = if first { 75 } else { 74 };
        if !first {
            out.push(' ');
        }
        if rest.len() <= limit {
            out.push_str(rest);
            out.push_str("\r\n");
            return;
        }
        let mut cut = limit;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&rest[..cut]);
        out.push_str("\r\n");
        rest = &rest[cut..];
        first = false;
    }
}

#[derive(Clone)]
struct Person {
    name: String,
    email: String,
}

const FIRST: [&str; 24] = [
    "Alice", "Bruno", "Carol", "David", "Priya", "Kenji", "Mariana", "Liam", "Sofia", "Jonas",
    "Amara", "Wei", "Lucas", "Hannah", "Mateo", "Aisha", "Noah", "Chloé", "Ravi", "Yuki", "Elena",
    "Omar", "Ines", "Tomás",
];
const LAST: [&str; 20] = [
    "Fernandes",
    "Keller",
    "Nguyen",
    "Okafor",
    "Sharma",
    "Tanaka",
    "Costa",
    "O'Brien",
    "Rossi",
    "Schmidt",
    "Mensah",
    "Zhang",
    "Martin",
    "Müller",
    "García",
    "Khan",
    "Smith",
    "Dubois",
    "Iyer",
    "Sato",
];

fn ascii_slug(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            'é' => Some('e'),
            'á' => Some('a'),
            'ü' => Some('u'),
            'í' => Some('i'),
            c if c.is_ascii_alphanumeric() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

fn person(rng: &mut Rng, domain: &str) -> Person {
    let f = *rng.pick(&FIRST);
    let l = *rng.pick(&LAST);
    Person {
        name: format!("{f} {l}"),
        email: format!("{}.{}@{domain}", ascii_slug(f), ascii_slug(l)),
    }
}

const MEETINGS: [&str; 26] = [
    "Team sync",
    "Sprint planning",
    "Design review",
    "Customer call",
    "Architecture board",
    "Budget review",
    "Hiring debrief",
    "Roadmap review",
    "Incident postmortem",
    "Quarterly business review",
    "Lunch & learn",
    "Security champions",
    "Release go/no-go",
    "Ops review",
    "Interview: backend engineer",
    "Vendor demo",
    "All hands",
    "Platform sync",
    "Pipeline review",
    "Reunião de equipa",
    "Teambesprechung",
    "Réunion d'équipe",
    "朝会",
    "Retro",
    "Backlog grooming",
    "Partner onboarding",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Busy,
    Private,
    Declined,
    Tentative,
    Free,
    Focus,
}

fn pick_flavour(rng: &mut Rng) -> Flavour {
    match rng.range(0, 99) {
        0..=67 => Flavour::Busy,
        68..=74 => Flavour::Private,
        75..=81 => Flavour::Declined,
        82..=88 => Flavour::Tentative,
        89..=94 => Flavour::Free,
        _ => Flavour::Focus,
    }
}

#[derive(Clone, Copy)]
enum GenWhen {
    Timed(NaiveDateTime),
    Date(NaiveDate),
}

/// One VEVENT to write.
struct GenEvent {
    uid: String,
    sequence: u32,
    zone: usize,
    start: GenWhen,
    end: GenWhen,
    rrule: Option<String>,
    exdates: Vec<GenWhen>,
    recurrence_id: Option<GenWhen>,
    summary: String,
    busy: &'static str,
    transparent: bool,
    private: bool,
    cancelled: bool,
    all_day_flag: bool,
    organizer: Person,
    attendees: Vec<(Person, &'static str)>,
    teams: Option<String>,
    location: String,
    alarm: bool,
    created: NaiveDateTime,
}

fn when_prop(name: &str, w: GenWhen, zone: usize) -> String {
    match w {
        GenWhen::Timed(t) => format!("{name};TZID={}:{}", ZONES[zone].name, fmt_wall(t)),
        GenWhen::Date(d) => format!("{name};VALUE=DATE:{}", fmt_date(d)),
    }
}

fn write_event(out: &mut String, ev: &GenEvent) {
    push_line(out, "BEGIN:VEVENT");
    for (p, partstat) in &ev.attendees {
        push_line(
            out,
            &format!(
                "ATTENDEE;CN={};PARTSTAT={partstat};ROLE=REQ-PARTICIPANT;RSVP=TRUE:mailto:{}",
                p.name, p.email
            ),
        );
    }
    push_line(
        out,
        if ev.private {
            "CLASS:PRIVATE"
        } else {
            "CLASS:PUBLIC"
        },
    );
    push_line(out, &format!("CREATED:{}Z", fmt_wall(ev.created)));
    if let Some(d) = &ev.teams {
        push_line(out, &format!("DESCRIPTION:{d}"));
    }
    push_line(out, &when_prop("DTEND", ev.end, ev.zone));
    push_line(out, &format!("DTSTAMP:{}Z", fmt_wall(ev.created)));
    push_line(out, &when_prop("DTSTART", ev.start, ev.zone));
    if !ev.exdates.is_empty() {
        let (head, vals): (String, Vec<String>) = match ev.exdates[0] {
            GenWhen::Timed(_) => (
                format!("EXDATE;TZID={}:", ZONES[ev.zone].name),
                ev.exdates
                    .iter()
                    .map(|w| match w {
                        GenWhen::Timed(t) => fmt_wall(*t),
                        GenWhen::Date(d) => fmt_date(*d),
                    })
                    .collect(),
            ),
            GenWhen::Date(_) => (
                "EXDATE;VALUE=DATE:".into(),
                ev.exdates
                    .iter()
                    .map(|w| match w {
                        GenWhen::Timed(t) => fmt_date(t.date()),
                        GenWhen::Date(d) => fmt_date(*d),
                    })
                    .collect(),
            ),
        };
        push_line(out, &format!("{head}{}", vals.join(",")));
    }
    push_line(out, &format!("LAST-MODIFIED:{}Z", fmt_wall(ev.created)));
    push_line(out, &format!("LOCATION:{}", ev.location));
    push_line(
        out,
        &format!(
            "ORGANIZER;CN={}:mailto:{}",
            ev.organizer.name, ev.organizer.email
        ),
    );
    push_line(out, "PRIORITY:5");
    if let Some(rid) = ev.recurrence_id {
        push_line(out, &when_prop("RECURRENCE-ID", rid, ev.zone));
    }
    if let Some(r) = &ev.rrule {
        push_line(out, &format!("RRULE:{r}"));
    }
    push_line(out, &format!("SEQUENCE:{}", ev.sequence));
    if ev.cancelled {
        push_line(out, "STATUS:CANCELLED");
    }
    push_line(out, &format!("SUMMARY;LANGUAGE=en-us:{}", ev.summary));
    push_line(
        out,
        if ev.transparent {
            "TRANSP:TRANSPARENT"
        } else {
            "TRANSP:OPAQUE"
        },
    );
    push_line(out, &format!("UID:{}", ev.uid));
    push_line(out, &format!("X-MICROSOFT-CDO-BUSYSTATUS:{}", ev.busy));
    push_line(out, "X-MICROSOFT-CDO-IMPORTANCE:1");
    if ev.all_day_flag {
        push_line(out, "X-MICROSOFT-CDO-ALLDAYEVENT:TRUE");
    }
    push_line(out, "X-MICROSOFT-DISALLOW-COUNTER:FALSE");
    push_line(out, "X-MS-OLK-AUTOFILLLOCATION:FALSE");
    push_line(
        out,
        if ev.teams.is_some() {
            "X-MS-OLK-CONFTYPE:1"
        } else {
            "X-MS-OLK-CONFTYPE:0"
        },
    );
    if ev.alarm {
        push_line(out, "BEGIN:VALARM");
        push_line(out, "TRIGGER:-PT15M");
        push_line(out, "ACTION:DISPLAY");
        push_line(out, "DESCRIPTION:Reminder");
        push_line(out, "END:VALARM");
    }
    push_line(out, "END:VEVENT");
}

fn outlook_uid(rng: &mut Rng) -> String {
    format!(
        "040000008200E00074C5B7101A82E00800000000{}000000000000000010000000{}",
        rng.hex(16),
        rng.hex(32)
    )
}

fn teams_blurb(rng: &mut Rng) -> String {
    let line = "_".repeat(80);
    format!(
        "{line}\\nMicrosoft Teams meeting\\nJoin on your computer\\, mobile app or room device\\nClick here to join the meeting<https://teams.microsoft.com/l/meetup-join/19%3ameeting_{}%40thread.v2/0?context=%7b%22Tid%22%3a%22{}%22%7d>\\nMeeting ID: {} {} {} {}\\nPasscode: {}\\n{line}\\n",
        rng.hex(32).to_ascii_lowercase(),
        rng.guid(),
        rng.range(100, 999),
        rng.range(100, 999),
        rng.range(100, 999),
        rng.range(100, 999),
        rng.hex(6)
    )
}

/// Statistics of what was generated.
#[derive(Default, Clone)]
struct GenStats {
    users: usize,
    files_bytes: u64,
    user_bytes: u64,
    vevents: usize,
    masters: usize,
    recurring: usize,
    overrides: usize,
    cancelled_overrides: usize,
    exdates: usize,
    all_day: usize,
    vtimezones: usize,
    vtimezones_dst: usize,
}

/// One user's calendar text (and its statistics).
fn gen_calendar(
    rng: &mut Rng,
    owner: &Person,
    home: usize,
    events: usize,
    stats: &mut GenStats,
) -> String {
    let wstart = NaiveDate::from_ymd_opt(2026, 11, 30).expect("date");
    let wend = NaiveDate::from_ymd_opt(2026, 12, 6).expect("date");
    let n_events = (events as i64 + rng.range(-(events as i64) / 5, (events as i64) / 5)).max(2);
    let n_rec = (n_events as f64 * (0.4 + rng.range(0, 20) as f64 / 100.0)).round() as i64;
    let mut evs: Vec<GenEvent> = Vec::new();
    let mut zones_used = [false; 6];
    zones_used[home] = true;
    let colleagues: Vec<Person> = (0..8).map(|_| person(rng, "contoso.com")).collect();
    let externals: Vec<Person> = (0..3).map(|_| person(rng, "fabrikam.com")).collect();
    let part_timer = rng.chance(0.05);

    for k in 0..n_events {
        let recurring = k < n_rec;
        let zone = if rng.chance(0.8) {
            home
        } else {
            rng.range(0, 5) as usize
        };
        let mut flavour = pick_flavour(rng);
        // All-day events: OOF (single, multi-day), working elsewhere, a part-timer's Fridays.
        let all_day_kind = if recurring {
            (k == 0 && part_timer).then_some("OOF")
        } else {
            match rng.range(0, 99) {
                0..=8 => Some("OOF"),
                9..=11 => Some("WORKINGELSEWHERE"),
                _ => None,
            }
        };
        if all_day_kind.is_some() {
            flavour = Flavour::Busy;
        }
        let minutes = *rng.pick(&[15i64, 30, 30, 45, 60, 60, 60, 90, 120]);
        let hour = rng.range(8, 17) as u32;
        let minute = *rng.pick(&[0u32, 0, 0, 15, 30, 30, 45]);
        let time = NaiveTime::from_hms_opt(hour, minute, 0).expect("time");

        // Rule and first day.
        let mut rule = None;
        let first_day: NaiveDate;
        if recurring {
            let mut r = if all_day_kind.is_some() {
                GenRule {
                    freq: Freq::Weekly,
                    interval: 1,
                    days: vec![Weekday::Fri],
                    count: None,
                    until: None,
                }
            } else {
                match rng.range(0, 99) {
                    0..=24 => GenRule {
                        freq: Freq::Weekly,
                        interval: 1,
                        days: vec![
                            Weekday::Mon,
                            Weekday::Tue,
                            Weekday::Wed,
                            Weekday::Thu,
                            Weekday::Fri,
                        ],
                        count: None,
                        until: None,
                    },
                    25..=34 => GenRule {
                        freq: Freq::Daily,
                        interval: 1,
                        days: vec![],
                        count: None,
                        until: None,
                    },
                    35..=59 => GenRule {
                        freq: Freq::Weekly,
                        interval: 1,
                        days: vec![*rng.pick(&[
                            Weekday::Mon,
                            Weekday::Tue,
                            Weekday::Wed,
                            Weekday::Thu,
                            Weekday::Fri,
                        ])],
                        count: None,
                        until: None,
                    },
                    60..=71 => GenRule {
                        freq: Freq::Weekly,
                        interval: 2,
                        days: vec![*rng.pick(&[
                            Weekday::Mon,
                            Weekday::Tue,
                            Weekday::Wed,
                            Weekday::Thu,
                            Weekday::Fri,
                        ])],
                        count: None,
                        until: None,
                    },
                    72..=83 => GenRule {
                        freq: Freq::Weekly,
                        interval: 1,
                        days: rng
                            .pick(&[
                                [Weekday::Tue, Weekday::Thu],
                                [Weekday::Mon, Weekday::Wed],
                                [Weekday::Mon, Weekday::Thu],
                            ])
                            .to_vec(),
                        count: None,
                        until: None,
                    },
                    84..=91 => GenRule {
                        freq: Freq::MonthlyLastFriday,
                        interval: 1,
                        days: vec![],
                        count: None,
                        until: None,
                    },
                    92..=95 => GenRule {
                        freq: Freq::MonthlyFirstMonday,
                        interval: 1,
                        days: vec![],
                        count: None,
                        until: None,
                    },
                    _ => GenRule {
                        freq: Freq::MonthlyDay(rng.range(1, 28) as u32),
                        interval: 1,
                        days: vec![],
                        count: None,
                        until: None,
                    },
                }
            };
            // DTSTART 1–18 months back, moved forward onto the rule.
            let mut d = wstart - chrono::Duration::days(rng.range(30, 540));
            let probe = GenRule {
                count: None,
                until: None,
                ..r.clone()
            };
            while !probe.matches(d, d)
                || (probe.freq == Freq::Weekly && !probe.days.contains(&d.weekday()))
            {
                d = d.succ_opt().expect("date");
            }
            first_day = d;
            // Endings: none, COUNT or UNTIL (some before the window, some after).
            let n_to_window = probe.instances(first_day, wstart).len().max(1);
            match rng.range(0, 99) {
                0..=54 => {}
                55..=79 => {
                    r.count = Some(if rng.chance(0.35) {
                        rng.range(1, n_to_window as i64) as usize
                    } else {
                        n_to_window + rng.range(1, 40) as usize
                    })
                }
                _ => {
                    let u = wstart + chrono::Duration::days(rng.range(-200, 400));
                    r.until = Some(u.max(first_day + chrono::Duration::days(7)));
                }
            }
            rule = Some(r);
        } else {
            // Singles: mostly history, a quarter in the window week, some later.
            let d = match rng.range(0, 99) {
                0..=64 => wstart - chrono::Duration::days(rng.range(30, 540)),
                65..=89 => wstart + chrono::Duration::days(rng.range(0, 6)),
                _ => wstart + chrono::Duration::days(rng.range(7, 60)),
            };
            first_day = d;
        }

        let summary = match (all_day_kind, flavour) {
            (Some("OOF"), _) if part_timer && recurring => "Out of office (part-time)".to_string(),
            (Some("OOF"), _) => rng
                .pick(&[
                    "Out of office",
                    "Vacation",
                    "Férias",
                    "Annual leave",
                    "Urlaub",
                ])
                .to_string(),
            (Some(_), _) => "Working from the Boston office".to_string(),
            (None, Flavour::Focus) => "Focus time".to_string(),
            (None, Flavour::Free) => format!("Hold: {}", rng.pick(&MEETINGS)),
            (None, Flavour::Private) => "Doctor appointment".to_string(),
            (None, _) => {
                if recurring && rng.chance(0.3) {
                    "Daily stand-up".to_string()
                } else {
                    rng.pick(&MEETINGS).to_string()
                }
            }
        };
        let organizer_is_owner = matches!(flavour, Flavour::Focus | Flavour::Private)
            || all_day_kind.is_some()
            || rng.chance(0.35);
        let organizer = if organizer_is_owner {
            owner.clone()
        } else {
            rng.pick(&colleagues).clone()
        };
        let mut attendees = Vec::new();
        if all_day_kind.is_none() && flavour != Flavour::Focus && flavour != Flavour::Private {
            let own = match flavour {
                Flavour::Declined => "DECLINED",
                Flavour::Tentative => "TENTATIVE",
                _ if !organizer_is_owner && rng.chance(0.05) => "NEEDS-ACTION",
                _ => "ACCEPTED",
            };
            attendees.push((owner.clone(), own));
            for _ in 0..rng.range(1, 5) {
                attendees.push((rng.pick(&colleagues).clone(), "ACCEPTED"));
            }
            if rng.chance(0.15) {
                attendees.push((rng.pick(&externals).clone(), "NEEDS-ACTION"));
            }
        }
        let teams = (all_day_kind.is_none()
            && !matches!(flavour, Flavour::Focus | Flavour::Private)
            && rng.chance(0.6))
        .then(|| teams_blurb(rng));
        let location = if teams.is_some() {
            "Microsoft Teams Meeting".to_string()
        } else if all_day_kind.is_some() || flavour == Flavour::Focus {
            String::new()
        } else {
            format!("Room {}.{:02}", rng.range(1, 6), rng.range(1, 40))
        };
        let (busy, transparent) = match (all_day_kind, flavour) {
            (Some(k), _) => (
                if k == "OOF" {
                    "OOF"
                } else {
                    "WORKINGELSEWHERE"
                },
                false,
            ),
            (None, Flavour::Free) => ("FREE", true),
            (None, Flavour::Tentative) => ("TENTATIVE", false),
            _ => ("BUSY", false),
        };
        let created = (first_day - chrono::Duration::days(rng.range(1, 20)))
            .and_hms_opt(rng.range(6, 20) as u32, rng.range(0, 59) as u32, 0)
            .expect("time");
        let (start, end) = match all_day_kind {
            Some(_) => {
                let days = if recurring { 1 } else { rng.range(1, 5) };
                (
                    GenWhen::Date(first_day),
                    GenWhen::Date(first_day + chrono::Duration::days(days)),
                )
            }
            None => {
                let s = first_day.and_time(time);
                (
                    GenWhen::Timed(s),
                    GenWhen::Timed(s + chrono::Duration::minutes(minutes)),
                )
            }
        };
        let all_day = all_day_kind.is_some();
        let zone = if all_day { home } else { zone };
        zones_used[zone] = true;
        let uid = outlook_uid(rng);
        let sequence = rng.range(0, 3) as u32;

        let mut master = GenEvent {
            uid: uid.clone(),
            sequence,
            zone,
            start,
            end,
            rrule: rule.as_ref().map(|r| r.text(all_day)),
            exdates: Vec::new(),
            recurrence_id: None,
            summary: summary.clone(),
            busy,
            transparent,
            private: flavour == Flavour::Private,
            cancelled: false,
            all_day_flag: all_day,
            organizer,
            attendees,
            teams,
            location,
            alarm: !all_day && rng.chance(0.5),
            created,
        };

        let mut overrides = Vec::new();
        if let Some(r) = &rule {
            // Instances near the window and in recent history, away from UNTIL.
            let inst: Vec<NaiveDate> = r
                .instances(first_day, wend)
                .into_iter()
                .filter(|d| *d >= wstart - chrono::Duration::days(150))
                .filter(|d| r.until.is_none_or(|u| *d + chrono::Duration::days(2) < u))
                .collect();
            let in_window: Vec<NaiveDate> = inst.iter().copied().filter(|d| *d >= wstart).collect();
            let mut taken: Vec<NaiveDate> = Vec::new();
            let take = |rng: &mut Rng, prefer_window: bool, taken: &mut Vec<NaiveDate>| {
                let pool = if prefer_window && !in_window.is_empty() {
                    &in_window
                } else {
                    &inst
                };
                if pool.is_empty() {
                    return None;
                }
                let d = *rng.pick(pool);
                if taken.contains(&d) {
                    return None;
                }
                taken.push(d);
                Some(d)
            };
            if rng.chance(0.35) {
                for _ in 0..rng.range(1, 3) {
                    let prefer = rng.chance(0.4);
                    if let Some(d) = take(rng, prefer, &mut taken) {
                        master.exdates.push(if all_day {
                            GenWhen::Date(d)
                        } else {
                            GenWhen::Timed(d.and_time(time))
                        });
                    }
                }
                stats.exdates += master.exdates.len();
            }
            if !all_day && rng.chance(0.3) {
                for _ in 0..rng.range(1, 2) {
                    let prefer = rng.chance(0.6);
                    let Some(d) = take(rng, prefer, &mut taken) else {
                        continue;
                    };
                    let orig = d.and_time(time);
                    let cancelled = rng.chance(0.4);
                    let shift = if cancelled {
                        chrono::Duration::zero()
                    } else {
                        chrono::Duration::minutes(*rng.pick(&[60i64, 120, -60, 30, 24 * 60]))
                    };
                    let s = orig + shift;
                    overrides.push(GenEvent {
                        uid: uid.clone(),
                        sequence: sequence + 1,
                        zone,
                        start: GenWhen::Timed(s),
                        end: GenWhen::Timed(s + chrono::Duration::minutes(minutes)),
                        rrule: None,
                        exdates: Vec::new(),
                        recurrence_id: Some(GenWhen::Timed(orig)),
                        summary: if cancelled {
                            format!("Canceled: {summary}")
                        } else {
                            format!("{summary} (moved)")
                        },
                        busy: master.busy,
                        transparent: master.transparent,
                        private: master.private,
                        cancelled,
                        all_day_flag: false,
                        organizer: master.organizer.clone(),
                        attendees: master.attendees.clone(),
                        teams: master.teams.clone(),
                        location: master.location.clone(),
                        alarm: master.alarm,
                        created: created + chrono::Duration::days(rng.range(1, 30)),
                    });
                    if cancelled {
                        stats.cancelled_overrides += 1;
                    }
                }
            }
        }
        stats.masters += 1;
        stats.recurring += usize::from(rule.is_some());
        stats.all_day += usize::from(all_day);
        stats.overrides += overrides.len();
        evs.push(master);
        evs.extend(overrides);
    }

    let mut out = String::with_capacity(48 * 1024);
    for l in [
        "BEGIN:VCALENDAR",
        "PRODID:-//Microsoft Corporation//Outlook 16.0 MIMEDIR//EN",
        "VERSION:2.0",
        "METHOD:PUBLISH",
        "X-MS-OLK-FORCEINSPECTOROPEN:TRUE",
    ] {
        push_line(&mut out, l);
    }
    push_line(&mut out, &format!("X-WR-CALNAME:{}", owner.name));
    push_line(
        &mut out,
        &format!("X-WR-RELCALID:{{0000002E-{}}}", rng.hex(20)),
    );
    push_line(&mut out, "X-PRIMARY-CALENDAR:TRUE");
    push_line(
        &mut out,
        &format!("X-OWNER;CN=\"{}\":mailto:{}", owner.name, owner.email),
    );
    for (i, used) in zones_used.iter().enumerate() {
        if *used {
            for l in ZONES[i].vtimezone {
                push_line(&mut out, l);
            }
            stats.vtimezones += 1;
            stats.vtimezones_dst += usize::from(ZONES[i].vtimezone.len() > 8);
        }
    }
    for ev in &evs {
        write_event(&mut out, ev);
    }
    push_line(&mut out, "END:VCALENDAR");
    stats.vevents += evs.len();
    out
}

struct GenUser {
    id: String,
}

/// Writes the whole org; returns the users (in file order) and statistics.
fn generate(opts: &Opts) -> Result<(Vec<GenUser>, GenStats), String> {
    let dir = &opts.dir;
    if dir.exists() {
        if !dir.join(MARKER).exists() {
            return Err(format!(
                "{} exists and was not made by this benchmark ({MARKER} missing); refusing to delete it",
                dir.display()
            ));
        }
        std::fs::remove_dir_all(dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
    }
    let users_dir = dir.join("users");
    let cal_dir = dir.join("calendars");
    for d in [&users_dir, &cal_dir] {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    std::fs::write(
        dir.join(MARKER),
        format!(
            "generator={GENERATOR_VERSION}\nusers={}\nevents={}\nseed={}\n",
            opts.users, opts.events, opts.seed
        ),
    )
    .map_err(|e| e.to_string())?;
    let rules = repo_root().join("rules");
    let config = format!(
        "# Synthetic benchmark org written by benches/plan_org.rs (seed {seed}).\n\
         [org]\n\
         rules = {rules:?}\n\
         users = \"users\"\n\
         timezone = \"UTC\"\n\
         language = \"en\"\n\
         internal_domains = [\"contoso.com\"]\n\
         \n\
         [fetch]\n\
         file_roots = [{root:?}]\n",
        seed = opts.seed,
        rules = rules.display().to_string(),
        root = dir.display().to_string(),
    );
    std::fs::write(dir.join("calstatus.toml"), config).map_err(|e| e.to_string())?;

    let mut stats = GenStats::default();
    let mut users = Vec::with_capacity(opts.users);
    const LANGS: [&str; 6] = ["en", "en", "pt", "de", "fr", "es"];
    for i in 0..opts.users {
        let mut rng = Rng::new(opts.seed, i as u64 + 1);
        let (iana, home) = pick_user_zone(&mut rng);
        let id = rng.guid();
        let f = *rng.pick(&FIRST);
        let l = *rng.pick(&LAST);
        let owner = Person {
            name: format!("{f} {l}"),
            email: format!("{}.{}{i}@contoso.com", ascii_slug(f), ascii_slug(l)),
        };
        let name = format!("u{i:05}");
        let ics = gen_calendar(&mut rng, &owner, home, opts.events, &mut stats);
        let mut toml = format!(
            "# {} ({iana})\nuser = \"{id}\"\nemail = \"{}\"\ncalendars = [\"calendars/{name}.ics\"]\ntimezone = \"{iana}\"\nlanguage = \"{}\"\nenabled = true\n",
            owner.name,
            owner.email,
            rng.pick(&LANGS)
        );
        if rng.chance(0.3) {
            let (s, e) = *rng.pick(&[("08:00", "17:00"), ("09:00", "18:00"), ("08:30", "17:30")]);
            let _ = write!(
                toml,
                "\n[working_hours]\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]\nstart = \"{s}\"\nend = \"{e}\"\n"
            );
        }
        if rng.chance(0.05) {
            toml.push_str("\n[[rule]]\nname = \"gym\"\nsummary = \"gym\"\nskip = \"personal\"\n");
        }
        std::fs::write(cal_dir.join(format!("{name}.ics")), &ics).map_err(|e| e.to_string())?;
        std::fs::write(users_dir.join(format!("{name}.toml")), &toml).map_err(|e| e.to_string())?;
        stats.files_bytes += ics.len() as u64;
        stats.user_bytes += toml.len() as u64;
        stats.users += 1;
        users.push(GenUser { id });
    }
    Ok((users, stats))
}

/// Reads the user ids back from an org generated earlier (`--no-generate`).
fn existing_users(dir: &Path) -> Result<Vec<GenUser>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("users"))
        .map_err(|e| format!("cannot read {}: {e}", dir.join("users").display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| e.to_string())?;
        if let Some(id) = text
            .lines()
            .find_map(|l| l.strip_prefix("user = \""))
            .and_then(|r| r.strip_suffix('"'))
        {
            out.push(GenUser { id: id.to_string() });
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Measurement helpers

fn proc_status_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|r| r.trim_start_matches(':').split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// User + system CPU seconds of this process, all threads (from
/// /proc/self/stat, assuming the usual 100 clock ticks per second).
fn proc_cpu_s() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0); `false` if not possible.
fn reset_hwm() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn min(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

// ---------------------------------------------------------------------------
// 1. The pipeline

const STAGES: [&str; 6] = [
    "load org (config, rules, user TOML)",
    "fetcher + select users",
    "fetch (read .ics files)",
    "parse (sanitise + icalendar + VTIMEZONE)",
    "expand + plan (plan_users)",
    "collect problems",
];

struct PipelineRun {
    stages: [f64; 6],
    /// (live, peak so far) heap bytes after each stage (`--heap`).
    stage_heap: [Option<(u64, u64)>; 6],
    /// CPU seconds (all threads) per stage.
    stage_cpu: [f64; 6],
    cpu_total: f64,
    /// (VmRSS, VmHWM) in KiB right after each stage.
    stage_mem: [(Option<u64>, Option<u64>); 6],
    total: f64,
    hwm_kib: Option<u64>,
    rss_end_kib: Option<u64>,
    rss_before_kib: Option<u64>,
    counts: Value,
    /// Diagnostics, not in `total`.
    expand_only_s: f64,
    render_json_s: f64,
    render_json_bytes: usize,
    warnings_sample: Vec<String>,
}

fn run_pipeline(
    rt: &tokio::runtime::Runtime,
    config: &Path,
    window: Window,
) -> Result<PipelineRun, String> {
    let rss_before = proc_status_kib("VmRSS");
    reset_hwm();
    let t_all = Instant::now();
    let mut st = [0f64; 6];
    let mut mem: [(Option<u64>, Option<u64>); 6] = [(None, None); 6];
    let mut cpu = [0f64; 6];
    let mut cpu_mark = proc_cpu_s();
    let cpu_start = cpu_mark;
    let mut heaps: [Option<(u64, u64)>; 6] = [None; 6];
    reset_heap_peak();
    let result = rt.block_on(async {
        let t = Instant::now();
        let org = calstatus::org::load(config).map_err(|ps| {
            ps.iter()
                .take(5)
                .map(|p| format!("{}: {:?} {}", p.file.display(), p.key, p.message))
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        st[0] = secs(t.elapsed());
        mem[0] = (proc_status_kib("VmRSS"), proc_status_kib("VmHWM"));
        cpu[0] = proc_cpu_s() - cpu_mark;
        heaps[0] = heap();
        cpu_mark = proc_cpu_s();

        let t = Instant::now();
        let fetcher = Fetcher::new(org.policy.clone()).map_err(|e| e.to_string())?;
        let (users, mut problems) = select_users(&org, &[]);
        st[1] = secs(t.elapsed());
        mem[1] = (proc_status_kib("VmRSS"), proc_status_kib("VmHWM"));
        cpu[1] = proc_cpu_s() - cpu_mark;
        heaps[1] = heap();
        cpu_mark = proc_cpu_s();

        let t = Instant::now();
        let texts = fetch_all(&fetcher, &users, org.config.file.fetch.concurrency).await;
        st[2] = secs(t.elapsed());
        mem[2] = (proc_status_kib("VmRSS"), proc_status_kib("VmHWM"));
        cpu[2] = proc_cpu_s() - cpu_mark;
        heaps[2] = heap();
        cpu_mark = proc_cpu_s();
        let fetched_bytes: usize = texts
            .values()
            .map(|r| r.as_ref().map(|t| t.len()).unwrap_or(0))
            .sum();
        let fetch_failed = texts.values().filter(|r| r.is_err()).count();

        let t = Instant::now();
        let calendars = parse_fetched(texts, &calstatus::calendar::ZoneCache::default());
        st[3] = secs(t.elapsed());
        mem[3] = (proc_status_kib("VmRSS"), proc_status_kib("VmHWM"));
        cpu[3] = proc_cpu_s() - cpu_mark;
        heaps[3] = heap();
        cpu_mark = proc_cpu_s();

        let t = Instant::now();
        let plans = plan_users(&org, &users, &calendars, window);
        st[4] = secs(t.elapsed());
        mem[4] = (proc_status_kib("VmRSS"), proc_status_kib("VmHWM"));
        cpu[4] = proc_cpu_s() - cpu_mark;
        heaps[4] = heap();
        cpu_mark = proc_cpu_s();

        let t = Instant::now();
        problems.extend(
            org.user_problems
                .iter()
                .map(|p| calstatus::plan::SourceProblem {
                    source: p.file.display().to_string(),
                    message: p.message.clone(),
                }),
        );
        let plan = calstatus::plan::Plan {
            window: calstatus::plan::WindowReport {
                from: window.from,
                to: window.to,
            },
            users: plans,
            problems,
        };
        st[5] = secs(t.elapsed());
        mem[5] = (proc_status_kib("VmRSS"), proc_status_kib("VmHWM"));
        cpu[5] = proc_cpu_s() - cpu_mark;
        heaps[5] = heap();
        cpu_mark = proc_cpu_s();
        let total = secs(t_all.elapsed());
        let hwm = proc_status_kib("VmHWM");
        let rss_end = proc_status_kib("VmRSS");

        // Diagnostics (not part of the pipeline total).
        let t = Instant::now();
        let expanded: Vec<usize> = users
            .par_iter()
            .map(|u| {
                u.sources
                    .iter()
                    .filter_map(|s| calendars.get(s))
                    .filter_map(|c| c.calendar.as_ref().ok())
                    .map(|cal| expand(cal, &u.zone, window).0.len())
                    .sum()
            })
            .collect();
        let expand_only_s = secs(t.elapsed());
        let t = Instant::now();
        let rendered = calstatus::report::render(&plan, calstatus::report::Format::Json);
        let render_json_s = secs(t.elapsed());

        let parsed_ok = calendars.values().filter(|c| c.calendar.is_ok()).count();
        let events: usize = calendars
            .values()
            .filter_map(|c| c.calendar.as_ref().ok())
            .map(|c| c.events.len())
            .sum();
        let occurrences: usize = plan.users.iter().map(|u| u.occurrences.len()).sum();
        let statuses: usize = plan.users.iter().map(|u| u.statuses.len()).sum();
        let in_status = plan
            .users
            .iter()
            .flat_map(|u| u.occurrences.iter())
            .filter(|o| o.decision == calstatus::plan::Decision::Status)
            .count();
        let warnings: usize = plan.users.iter().map(|u| u.warnings.len()).sum();
        let errors: usize = plan.users.iter().map(|u| u.errors.len()).sum();
        let mut skip_reasons: HashMap<String, usize> = HashMap::new();
        for o in plan.users.iter().flat_map(|u| u.occurrences.iter()) {
            if let Some(r) = &o.reason {
                *skip_reasons.entry(r.clone()).or_default() += 1;
            }
        }
        // Warning kinds: quoted parts (UIDs, values) blanked, counted.
        let mut kinds: HashMap<String, usize> = HashMap::new();
        for w in plan.users.iter().flat_map(|u| u.warnings.iter()) {
            let mut k = String::new();
            for (i, part) in w.message.split('"').enumerate() {
                k.push_str(if i % 2 == 1 { "\"…\"" } else { part });
            }
            *kinds.entry(k).or_default() += 1;
        }
        let mut warnings_sample: Vec<String> = kinds
            .into_iter()
            .map(|(k, n)| format!("{n} × {k}"))
            .collect();
        warnings_sample.sort();
        warnings_sample.truncate(10);
        let counts = json!({
            "users_loaded": org.users.len(),
            "users_planned": plan.users.len(),
            "user_problems": org.user_problems.len(),
            "plan_problems": plan.problems.len(),
            "calendars_fetched": calendars.len(),
            "fetch_failed": fetch_failed,
            "fetched_bytes": fetched_bytes,
            "calendars_parsed": parsed_ok,
            "vevents_parsed": events,
            "occurrences_in_window": occurrences,
            "occurrences_expand_only": expanded.iter().sum::<usize>(),
            "occurrences_in_a_status": in_status,
            "statuses": statuses,
            "skip_reasons": skip_reasons,
            "user_errors": errors,
            "user_warnings": warnings,
        });
        let n_bytes = rendered.len();
        drop(rendered);
        Ok::<_, String>((
            total,
            hwm,
            rss_end,
            counts,
            expand_only_s,
            render_json_s,
            n_bytes,
            warnings_sample,
        ))
    })?;
    let (total, hwm, rss_end, counts, expand_only_s, render_json_s, n_bytes, warnings_sample) =
        result;
    Ok(PipelineRun {
        stages: st,
        stage_mem: mem,
        stage_cpu: cpu,
        stage_heap: heaps,
        cpu_total: cpu_mark - cpu_start,
        total,
        hwm_kib: hwm,
        rss_end_kib: rss_end,
        rss_before_kib: rss_before,
        counts,
        expand_only_s,
        render_json_s,
        render_json_bytes: n_bytes,
        warnings_sample,
    })
}

/// Cost of building one VTIMEZONE transition table (`CustomZone::new`) for a
/// DST zone as Outlook writes it (1601 onsets, computed 1970–2100).
fn zone_table_cost() -> f64 {
    let at = |s: &str| NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%S").expect("wall");
    let rule = |m: u32| YearlyRule {
        months: vec![m],
        days: vec![(-1, Weekday::Sun)],
        ..Default::default()
    };
    let obs = [
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
    ];
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

/// Where a parsed calendar's memory goes: string payloads by field, struct
/// sizes, distinct VTIMEZONE tables, and (with `--heap`) the live heap it
/// really holds.
fn calendar_anatomy(texts: &[String]) -> Value {
    use calstatus::calendar::ics::{Anchor, Calendar, Details, Event, Person, When};
    use calstatus::calendar::zones::Zone;
    let before = heap().map(|h| h.0);
    let cals: Vec<Calendar> = texts.iter().filter_map(|t| parse(t).ok()).collect();
    let held = heap()
        .map(|h| h.0)
        .zip(before)
        .map(|(a, b)| a.saturating_sub(b));
    let opt = |s: &Option<String>| s.as_ref().map(|x| x.capacity()).unwrap_or(0);
    let person = |p: &Person| opt(&p.email) + opt(&p.name);
    let (mut events, mut attendees) = (0usize, 0usize);
    let mut by_field: HashMap<&str, usize> = HashMap::new();
    let mut zones = std::collections::HashSet::new();
    let mut seen_details = std::collections::HashSet::new();
    let mut note_zone = |w: &When| {
        if let Anchor::Zoned(Zone::Custom(z)) = &w.anchor {
            zones.insert(Arc::as_ptr(z) as usize);
        }
    };
    for c in &cals {
        for e in &c.events {
            events += 1;
            *by_field.entry("uid").or_default() += e.uid.capacity();
            *by_field.entry("rrules").or_default() +=
                e.rrules.iter().map(String::capacity).sum::<usize>();
            *by_field.entry("exdates+rdates (structs)").or_default() += e.exdates.capacity()
                * std::mem::size_of::<When>()
                + e.rdates.capacity() * std::mem::size_of::<calstatus::calendar::ics::RDate>();
            note_zone(&e.start);
            if let Some(w) = &e.end {
                note_zone(w);
            }
            if seen_details.insert(Arc::as_ptr(&e.details) as usize) {
                let d = &e.details;
                *by_field.entry("description").or_default() += opt(&d.description);
                *by_field.entry("summary+location+categories").or_default() += opt(&d.summary)
                    + opt(&d.location)
                    + d.categories.iter().map(String::capacity).sum::<usize>();
                attendees += d.attendees.len();
                *by_field.entry("attendees+organizer (strings)").or_default() +=
                    d.attendees.iter().map(person).sum::<usize>()
                        + d.organizer.as_ref().map(person).unwrap_or(0);
                *by_field.entry("attendees (structs)").or_default() +=
                    d.attendees.capacity() * std::mem::size_of::<Person>();
                *by_field.entry("Details structs").or_default() += std::mem::size_of::<Details>();
            }
            *by_field.entry("Event structs").or_default() += std::mem::size_of::<Event>();
        }
        *by_field.entry("diags").or_default() +=
            c.diags.iter().map(|d| d.message.capacity()).sum::<usize>();
    }
    // One DST zone table, measured with the counting allocator.
    let zone_bytes = heap().map(|_| {
        let at = |s: &str| NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%S").expect("wall");
        let rule = |m: u32| YearlyRule {
            months: vec![m],
            days: vec![(-1, Weekday::Sun)],
            ..Default::default()
        };
        let obs = [
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
        ];
        let live0 = HEAP_LIVE.load(Ordering::Relaxed);
        let held: Vec<Arc<CustomZone>> = (0..100)
            .filter_map(|_| CustomZone::new("W. Europe Standard Time".into(), &obs).map(Arc::new))
            .collect();
        let per = (HEAP_LIVE.load(Ordering::Relaxed) - live0).max(0) as usize / held.len().max(1);
        drop(held);
        per
    });
    let n = cals.len().max(1);
    let fields: serde_json::Map<String, Value> = by_field
        .iter()
        .map(|(k, v)| (k.to_string(), json!(*v as f64 / n as f64)))
        .collect();
    json!({
        "calendars": cals.len(),
        "text_bytes_per_calendar": texts.iter().map(String::len).sum::<usize>() as f64 / n as f64,
        "live_heap_bytes_per_calendar": held.map(|h| h as f64 / n as f64),
        "events_per_calendar": events as f64 / n as f64,
        "attendees_per_calendar": attendees as f64 / n as f64,
        "bytes_per_calendar_by_field": fields,
        "custom_zones_per_calendar": zones.len() as f64 / n as f64,
        "custom_zone_table_bytes_each": zone_bytes,
        "sizes": {
            "Event": std::mem::size_of::<Event>(),
            "Details": std::mem::size_of::<Details>(),
            "When": std::mem::size_of::<When>(),
            "Person": std::mem::size_of::<Person>(),
        },
    })
}

// ---------------------------------------------------------------------------
// 3. CLI latency

struct CliResult {
    label: String,
    args: Vec<String>,
    runs_ms: Vec<f64>,
    exit_codes: Vec<i32>,
    max_rss_kib: Option<u64>,
}

fn find_bin(opts: &Opts) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(b) = &opts.bin {
        candidates.push(b.clone());
    }
    candidates.push(target_dir().join("release").join("calstatus"));
    candidates.push(PathBuf::from(env!("CARGO_BIN_EXE_calstatus")));
    candidates.into_iter().find(|p| p.is_file())
}

fn time_cli(bin: &Path, label: &str, args: &[String], runs: usize) -> CliResult {
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
    let mut runs_ms = Vec::new();
    let mut exit_codes = Vec::new();
    for _ in 0..runs {
        let (ms, code) = run();
        runs_ms.push(ms);
        exit_codes.push(code);
    }
    // Peak RSS of one extra run, via GNU time when present.
    let max_rss_kib = Path::new("/usr/bin/time")
        .is_file()
        .then(|| {
            Command::new("/usr/bin/time")
                .arg("-f")
                .arg("%M")
                .arg(bin)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .ok()
        })
        .flatten()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .rev()
                .find_map(|l| l.trim().parse::<u64>().ok())
        });
    CliResult {
        label: label.into(),
        args: args.to_vec(),
        runs_ms,
        exit_codes,
        max_rss_kib,
    }
}

// ---------------------------------------------------------------------------
// 4. Per calendar, Rust vs recurring-ical-events

struct PerCal {
    files: usize,
    bytes: u64,
    rust_passes_s: Vec<f64>,
    rust_parse_only_s: f64,
    rust_failed: usize,
    rust_occurrences: usize,
    /// `icalendar::parser::read_calendar`, best of 3: (seconds, files parsed).
    ical_lf: (f64, usize),
    ical_crlf: (f64, usize),
    anatomy: Value,
    python: Result<Value, String>,
}

fn per_calendar(opts: &Opts, window: Window) -> Result<PerCal, String> {
    let cal_dir = opts.dir.join("calendars");
    let mut all: Vec<PathBuf> = std::fs::read_dir(&cal_dir)
        .map_err(|e| format!("cannot read {}: {e}", cal_dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "ics"))
        .collect();
    all.sort();
    let n = opts.sample.min(all.len());
    let step = (all.len() / n.max(1)).max(1);
    let picked: Vec<&PathBuf> = all.iter().step_by(step).take(n).collect();
    let sample_dir = opts.dir.join("sample");
    let _ = std::fs::remove_dir_all(&sample_dir);
    std::fs::create_dir_all(&sample_dir).map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    let mut bytes = 0u64;
    for p in picked {
        let dst = sample_dir.join(p.file_name().expect("file name"));
        std::fs::copy(p, &dst).map_err(|e| e.to_string())?;
        bytes += std::fs::metadata(&dst).map(|m| m.len()).unwrap_or(0);
        files.push(dst);
    }
    let zone = parse_zone_name("Europe/Berlin").expect("Europe/Berlin");

    // Same unit as bench.py: read the bytes, parse, expand; one thread, best of 3.
    let mut passes = Vec::new();
    let mut failed = 0;
    let mut occurrences = 0;
    for pass in 0..3 {
        let mut f_failed = 0;
        let mut f_occ = 0;
        let t = Instant::now();
        for f in &files {
            let bytes = match std::fs::read(f) {
                Ok(b) => b,
                Err(_) => {
                    f_failed += 1;
                    continue;
                }
            };
            let text = String::from_utf8_lossy(&bytes);
            match parse(&text) {
                Ok(cal) => f_occ += std::hint::black_box(expand(&cal, &zone, window).0.len()),
                Err(_) => f_failed += 1,
            }
        }
        passes.push(secs(t.elapsed()));
        if pass == 0 {
            failed = f_failed;
            occurrences = f_occ;
        }
    }
    // Parse alone, for the split (best of 3, texts in memory).
    let texts: Vec<String> = files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .collect();
    let mut parse_best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        for text in &texts {
            let _ = std::hint::black_box(parse(text).map(|c| c.events.len()));
        }
        parse_best = parse_best.min(secs(t.elapsed()));
    }

    // The icalendar crate's parser alone on the unfolded text, its lines
    // joined with LF (as `calendar::ics::read_block` hands it over) and with
    // CRLF: the property-value parser tries `take_until("\r\n")` first, which
    // scans to the end of the input when there is no CRLF.
    let lf: Vec<String> = texts
        .iter()
        .map(|t| icalendar::parser::unfold(t).replace("\r\n", "\n"))
        .collect();
    let crlf: Vec<String> = lf.iter().map(|t| t.replace('\n', "\r\n")).collect();
    let time_ical = |xs: &[String]| {
        let mut best = f64::INFINITY;
        let mut ok = 0usize;
        for _ in 0..3 {
            ok = 0;
            let t = Instant::now();
            for x in xs {
                ok +=
                    usize::from(std::hint::black_box(icalendar::parser::read_calendar(x)).is_ok());
            }
            best = best.min(secs(t.elapsed()));
        }
        (best, ok)
    };
    let ical_lf = time_ical(&lf);
    let ical_crlf = time_ical(&crlf);
    let anatomy = calendar_anatomy(&texts);

    let python = if opts.py {
        run_python(opts, &sample_dir)
    } else {
        Err("skipped (--no-python)".into())
    };
    Ok(PerCal {
        files: files.len(),
        bytes,
        rust_passes_s: passes,
        rust_parse_only_s: parse_best,
        rust_failed: failed,
        rust_occurrences: occurrences,
        ical_lf,
        ical_crlf,
        anatomy,
        python,
    })
}

fn run_python(opts: &Opts, sample_dir: &Path) -> Result<Value, String> {
    let probe = Command::new(&opts.python)
        .args(["-c", "import recurring_ical_events, icalendar"])
        .output();
    match probe {
        Err(e) => return Err(format!("{} not available: {e}", opts.python)),
        Ok(o) if !o.status.success() => {
            return Err(format!(
                "recurring-ical-events not importable by {} (pip install -r tools/reference/requirements.txt): {}",
                opts.python,
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ));
        }
        Ok(_) => {}
    }
    let script = repo_root().join("tools/reference/bench.py");
    let out = Command::new(&opts.python)
        .arg(&script)
        .arg(sample_dir)
        .args(["--from", WINDOW_FROM, "--to", WINDOW_TO])
        .args(["--timezone", "Europe/Berlin"])
        .args(["--repeat", &opts.py_repeat.to_string()])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "bench.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or("bench.py printed no JSON line")?;
    serde_json::from_str(line).map_err(|e| format!("bench.py JSON: {e}"))
}

// ---------------------------------------------------------------------------
// Machine

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|r| r.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let mem_total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu_model": model,
        "mem_total_mib": mem_total.map(mib),
        "kernel": kernel,
        "rustc": rustc,
    })
}

// ---------------------------------------------------------------------------

fn main() {
    let opts = Opts::from_env();
    if opts.heap {
        HEAP_COUNTING.store(true, Ordering::Relaxed);
    }
    let window = Window {
        from: DateTime::parse_from_rfc3339(WINDOW_FROM)
            .expect("window")
            .with_timezone(&Utc),
        to: DateTime::parse_from_rfc3339(WINDOW_TO)
            .expect("window")
            .with_timezone(&Utc),
    };
    let started = Utc::now();
    let mach = machine();
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
    let load_before = loadavg();
    println!("window: {WINDOW_FROM} .. {WINDOW_TO}; load average before: {load_before}");

    // 1. Generate.
    let t = Instant::now();
    let (gen_users, gstats) = if opts.generate {
        match generate(&opts) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("plan_org: {e}");
                std::process::exit(1);
            }
        }
    } else {
        match existing_users(&opts.dir) {
            Ok(u) => (u, GenStats::default()),
            Err(e) => {
                eprintln!("plan_org: {e}");
                std::process::exit(1);
            }
        }
    };
    let gen_s = secs(t.elapsed());
    let config = opts.dir.join("calstatus.toml");
    if opts.generate {
        println!(
            "\ngenerated {} users in {:.2} s under {}",
            gstats.users,
            gen_s,
            opts.dir.display()
        );
        println!(
            "  calendars: {:.1} MiB ({:.1} KiB/file), user files {:.1} MiB; {} VEVENTs ({:.1}/file): {} masters ({} recurring), {} overrides ({} cancelled), {} EXDATE values, {} all-day; {} VTIMEZONE blocks ({} with DST)",
            gstats.files_bytes as f64 / 1048576.0,
            gstats.files_bytes as f64 / 1024.0 / gstats.users.max(1) as f64,
            gstats.user_bytes as f64 / 1048576.0,
            gstats.vevents,
            gstats.vevents as f64 / gstats.users.max(1) as f64,
            gstats.masters,
            gstats.recurring,
            gstats.overrides,
            gstats.cancelled_overrides,
            gstats.exdates,
            gstats.all_day,
            gstats.vtimezones,
            gstats.vtimezones_dst
        );
    } else {
        println!(
            "\nreusing {} users under {}",
            gen_users.len(),
            opts.dir.display()
        );
    }

    // 2. Pipeline.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let hwm_resettable = reset_hwm();
    // The real pipeline first (fresh process): org::load + pipeline::build_plan,
    // which plans in chunks and frees calendars as it goes. Its wall time and
    // peak memory are what `calstatus plan` costs; the staged runs below
    // break the work down (they hold every calendar at once).
    let (bp_wall, bp_cpu, bp_hwm, bp_statuses) = {
        reset_hwm();
        let cpu0 = proc_cpu_s();
        let t = Instant::now();
        let statuses = rt.block_on(async {
            let org = calstatus::org::load(&config).expect("org loads");
            let plan = calstatus::pipeline::build_plan(&org, window, &[])
                .await
                .expect("plan");
            plan.users.iter().map(|u| u.statuses.len()).sum::<usize>()
        });
        (
            secs(t.elapsed()),
            proc_cpu_s() - cpu0,
            proc_status_kib("VmHWM"),
            statuses,
        )
    };
    println!(
        "  build_plan (the CLI's pipeline): {bp_wall:.3} s wall, {bp_cpu:.2} CPU s, VmHWM {:.0} MiB, {bp_statuses} statuses",
        mib(bp_hwm.unwrap_or(0))
    );
    let mut runs = Vec::new();
    for i in 0..opts.runs {
        match run_pipeline(&rt, &config, window) {
            Ok(r) => {
                println!(
                    "  pipeline run {}/{}: {:.3} s, VmHWM {:.0} MiB",
                    i + 1,
                    opts.runs,
                    r.total,
                    mib(r.hwm_kib.unwrap_or(0))
                );
                runs.push(r);
            }
            Err(e) => {
                eprintln!("plan_org: the pipeline failed: {e}");
                std::process::exit(1);
            }
        }
    }
    let totals: Vec<f64> = runs.iter().map(|r| r.total).collect();
    let stage_med: Vec<f64> = (0..STAGES.len())
        .map(|i| median(&runs.iter().map(|r| r.stages[i]).collect::<Vec<_>>()))
        .collect();
    let wall_med = median(&totals);
    let cpu_med: Vec<f64> = (0..STAGES.len())
        .map(|i| median(&runs.iter().map(|r| r.stage_cpu[i]).collect::<Vec<_>>()))
        .collect();
    let cpu_total_med = median(&runs.iter().map(|r| r.cpu_total).collect::<Vec<_>>());
    let load_after = loadavg();
    // The first run is the fresh process (what `calstatus plan` sees); later
    // runs start with the allocator's retained pages and read higher.
    let peak_hwm = runs[0].hwm_kib;
    let max_hwm = runs.iter().filter_map(|r| r.hwm_kib).max();
    let first = &runs[0];
    let expand_med = median(&runs.iter().map(|r| r.expand_only_s).collect::<Vec<_>>());
    let render_med = median(&runs.iter().map(|r| r.render_json_s).collect::<Vec<_>>());
    let zone_cost = zone_table_cost();
    let n_users = first.counts["users_planned"].as_u64().unwrap_or(0);

    println!(
        "\n== Full pipeline: {} users, {} run(s), median (min .. max) ==",
        n_users, opts.runs
    );
    println!(
        "{:<46} {:>9} {:>7} {:>9} {:>11} {:>11}",
        "stage", "seconds", "share", "CPU s", "RSS after", "HWM after"
    );
    for (i, name) in STAGES.iter().enumerate() {
        let (rss, hwm) = first.stage_mem[i];
        let m = |k: Option<u64>| {
            k.map(|k| format!("{:.0} MiB", mib(k)))
                .unwrap_or_else(|| "?".into())
        };
        println!(
            "{:<46} {:>9.3} {:>6.1}% {:>9.2} {:>11} {:>11}",
            name,
            stage_med[i],
            100.0 * stage_med[i] / wall_med,
            cpu_med[i],
            m(rss),
            m(hwm)
        );
    }
    if opts.heap {
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
    println!(
        "{:<46} {:>9.3} {:>7} {:>9.2}   (wall {:.3} .. {:.3})",
        "TOTAL wall",
        wall_med,
        "",
        cpu_total_med,
        min(&totals),
        max(&totals)
    );
    println!(
        "{:<46} {:>9.3}   (not in total; same users, same calendars)",
        "  diag: expand only (rayon over users)", expand_med
    );
    println!(
        "{:<46} {:>9.3}   (not in total; {:.1} MiB, as `--format json`)",
        "  diag: render plan as JSON",
        render_med,
        first.render_json_bytes as f64 / 1048576.0
    );
    println!(
        "{:<46} {:>9.1} µs per DST VTIMEZONE (×{} blocks ≈ {:.3} s CPU)",
        "  diag: CustomZone::new (1970–2100 table)",
        zone_cost * 1e6,
        gstats.vtimezones_dst,
        zone_cost * gstats.vtimezones_dst as f64
    );
    println!(
        "memory (first run): VmHWM {:.0} MiB peak{}; VmRSS {:.0} MiB at the end of the run (plan and calendars alive), {:.0} MiB before it; highest VmHWM of any run {:.0} MiB",
        mib(peak_hwm.unwrap_or(0)),
        if hwm_resettable {
            " (HWM reset before the run)"
        } else {
            " (HWM could not be reset: includes generation)"
        },
        mib(first.rss_end_kib.unwrap_or(0)),
        mib(first.rss_before_kib.unwrap_or(0)),
        mib(max_hwm.unwrap_or(0)),
    );
    println!(
        "load average after the pipeline runs: {load_after} (other processes share these cores)"
    );
    println!("counts: {}", first.counts);
    if !first.warnings_sample.is_empty() {
        println!("warnings by kind: {:?}", first.warnings_sample);
    }

    // 3. CLI.
    let mut cli_results: Vec<CliResult> = Vec::new();
    let mut cli_note = String::new();
    if opts.cli {
        match find_bin(&opts) {
            None => {
                cli_note = format!(
                    "release binary not found ({}); run `cargo build --release` first",
                    target_dir().join("release/calstatus").display()
                );
                println!("\n== calstatus plan latency: skipped: {cli_note}");
            }
            Some(bin) => {
                cli_note = format!("binary {}", bin.display());
                let mid = &gen_users[gen_users.len() / 2].id;
                let common = |cfg: &Path, user: &str| -> Vec<String> {
                    vec![
                        "plan".into(),
                        "--config".into(),
                        cfg.display().to_string(),
                        "--user".into(),
                        user.into(),
                        "--format".into(),
                        "json".into(),
                        "--from".into(),
                        WINDOW_FROM.into(),
                        "--to".into(),
                        WINDOW_TO.into(),
                    ]
                };
                cli_results.push(time_cli(
                    &bin,
                    "synthetic org, one --user (loads all user files)",
                    &common(&config, mid),
                    opts.cli_runs,
                ));
                let demo = repo_root().join("examples/demo/calstatus.toml");
                cli_results.push(time_cli(
                    &bin,
                    "examples/demo, one --user",
                    &common(&demo, "a13c2b86-6b07-4ce6-9ad7-33c0db606410"),
                    opts.cli_runs,
                ));
                let mut all = common(&config, "x");
                all.drain(3..5);
                cli_results.push(time_cli(
                    &bin,
                    "synthetic org, all users (JSON to /dev/null)",
                    &all,
                    1,
                ));
                println!("\n== calstatus plan latency ({cli_note}) ==");
                println!(
                    "{:<52} {:>9} {:>9} {:>9} {:>9} {:>6}",
                    "case", "median ms", "min ms", "max ms", "peak MiB", "exit"
                );
                for c in &cli_results {
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
        }
    }

    // 4. Per calendar.
    let percal = if opts.percal {
        match per_calendar(&opts, window) {
            Ok(p) => Some(p),
            Err(e) => {
                println!("\nper-calendar comparison failed: {e}");
                None
            }
        }
    } else {
        None
    };
    let mut ratio = None;
    if let Some(p) = &percal {
        let best = min(&p.rust_passes_s);
        let rust_ms = best * 1000.0 / p.files as f64;
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
        println!(
            "{:<44} {:>10.4} {:>12.4}",
            "  of which parse (in memory, best/3)",
            p.rust_parse_only_s,
            p.rust_parse_only_s * 1000.0 / p.files as f64
        );
        println!(
            "{:<44} {:>10.4} {:>12.4}   ({} parsed)",
            "  diag: icalendar read_calendar, LF-joined",
            p.ical_lf.0,
            p.ical_lf.0 * 1000.0 / p.files as f64,
            p.ical_lf.1
        );
        println!(
            "{:<44} {:>10.4} {:>12.4}   ({} parsed)",
            "  diag: icalendar read_calendar, CRLF-joined",
            p.ical_crlf.0,
            p.ical_crlf.0 * 1000.0 / p.files as f64,
            p.ical_crlf.1
        );
        println!(
            "memory anatomy of one parsed calendar (average): {}",
            p.anatomy
        );
        match &p.python {
            Ok(v) => {
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
                ratio = Some(r);
                println!(
                    "ratio: calstatus is {r:.1}× faster per calendar (target ≥ {TARGET_RATIO}×)"
                );
                if v["occurrences"].as_u64() != Some(p.rust_occurrences as u64) {
                    println!(
                        "note: occurrence counts differ (calstatus {}, reference {}); check with tools/reference/compare.py",
                        p.rust_occurrences, v["occurrences"]
                    );
                }
            }
            Err(e) => println!("recurring-ical-events: {e}; no ratio"),
        }
    }

    // Targets.
    let single = cli_results.first().map(|c| median(&c.runs_ms));
    let demo = cli_results.get(1).map(|c| median(&c.runs_ms));
    let peak_bytes = peak_hwm.map(|k| k as f64 * 1024.0);
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
    row(
        &format!("{n_users} users, build_plan wall"),
        "< 3 s",
        format!("{bp_wall:.2} s"),
        Some(bp_wall < TARGET_WALL_S),
    );
    row(
        &format!("{n_users} users, build_plan CPU / 2 cores"),
        "< 3 s",
        format!("{:.2} s", bp_cpu / 2.0),
        Some(bp_cpu / 2.0 < TARGET_WALL_S),
    );
    let bp_bytes = bp_hwm.map(|k| k as f64 * 1024.0);
    row(
        "peak memory (build_plan, VmHWM)",
        "< 1 GiB",
        bp_bytes
            .map(|b| format!("{:.0} MiB", b / 1048576.0))
            .unwrap_or_else(|| "?".into()),
        bp_bytes.map(|b| b < TARGET_PEAK_BYTES),
    );
    row(
        &format!("{n_users} users, staged pipeline wall"),
        "(diag)",
        format!("{wall_med:.2} s"),
        None,
    );
    row(
        "peak memory (staged, all calendars at once)",
        "(diag)",
        peak_bytes
            .map(|b| format!("{:.0} MiB", b / 1048576.0))
            .unwrap_or_else(|| "?".into()),
        None,
    );
    row(
        "per calendar vs recurring-ical-events",
        "≥ 50×",
        ratio
            .map(|r| format!("{r:.1}×"))
            .unwrap_or_else(|| "n/a".into()),
        ratio.map(|r| r >= TARGET_RATIO),
    );
    row(
        "single-user plan, synthetic org",
        "< 100 ms",
        single
            .map(|m| format!("{m:.1} ms"))
            .unwrap_or_else(|| "n/a".into()),
        single.map(|m| m < TARGET_CLI_MS),
    );
    row(
        "single-user plan, examples/demo",
        "< 100 ms",
        demo.map(|m| format!("{m:.1} ms"))
            .unwrap_or_else(|| "n/a".into()),
        demo.map(|m| m < TARGET_CLI_MS),
    );

    // JSON.
    let out = json!({
        "benchmark": "plan_org",
        "build_plan": {"wall_s": bp_wall, "cpu_s": bp_cpu, "vmhwm_kib": bp_hwm, "statuses": bp_statuses},
        "date": started.to_rfc3339(),
        "machine": mach,
        "window": {"from": WINDOW_FROM, "to": WINDOW_TO},
        "load_average": {"before": load_before, "after_pipeline": load_after, "end": loadavg()},
        "options": {
            "users": opts.users, "events": opts.events, "seed": opts.seed, "runs": opts.runs,
            "sample": opts.sample, "cli_runs": opts.cli_runs, "py_repeat": opts.py_repeat,
            "dir": opts.dir.display().to_string(), "generated": opts.generate,
        },
        "generated": {
            "seconds": gen_s,
            "users": gstats.users,
            "calendar_bytes": gstats.files_bytes,
            "user_file_bytes": gstats.user_bytes,
            "vevents": gstats.vevents,
            "masters": gstats.masters,
            "recurring": gstats.recurring,
            "overrides": gstats.overrides,
            "cancelled_overrides": gstats.cancelled_overrides,
            "exdate_values": gstats.exdates,
            "all_day": gstats.all_day,
            "vtimezones": gstats.vtimezones,
            "vtimezones_dst": gstats.vtimezones_dst,
        },
        "pipeline": {
            "runs": runs.iter().map(|r| json!({
                "total_seconds": r.total,
                "stages_seconds": STAGES.iter().zip(r.stages).map(|(n, s)| (n.to_string(), json!(s))).collect::<serde_json::Map<_, _>>(),
                "vm_hwm_kib": r.hwm_kib,
                "vm_rss_end_kib": r.rss_end_kib,
                "vm_rss_before_kib": r.rss_before_kib,
                "cpu_seconds": r.cpu_total,
                "stages_cpu_seconds": STAGES.iter().zip(r.stage_cpu).map(|(n, s)| (n.to_string(), json!(s))).collect::<serde_json::Map<_, _>>(),
                "stage_heap_live_peak_bytes": STAGES.iter().zip(r.stage_heap).map(|(n, h)| (n.to_string(), json!(h))).collect::<serde_json::Map<_, _>>(),
                "stage_vm_rss_hwm_kib": STAGES.iter().zip(r.stage_mem).map(|(n, (a, b))| (n.to_string(), json!([a, b]))).collect::<serde_json::Map<_, _>>(),
                "expand_only_seconds": r.expand_only_s,
                "render_json_seconds": r.render_json_s,
            })).collect::<Vec<_>>(),
            "median_total_seconds": wall_med,
            "median_cpu_seconds": cpu_total_med,
            "median_stages_cpu_seconds": STAGES.iter().zip(&cpu_med).map(|(n, s)| (n.to_string(), json!(s))).collect::<serde_json::Map<_, _>>(),
            "median_stages_seconds": STAGES.iter().zip(&stage_med).map(|(n, s)| (n.to_string(), json!(s))).collect::<serde_json::Map<_, _>>(),
            "peak_vm_hwm_kib": peak_hwm,
            "max_vm_hwm_kib_any_run": max_hwm,
            "hwm_reset_per_run": hwm_resettable,
            "counts": first.counts,
            "diagnostics": {
                "expand_only_seconds_median": expand_med,
                "render_json_seconds_median": render_med,
                "render_json_bytes": first.render_json_bytes,
                "custom_zone_new_seconds_each": zone_cost,
            },
            "warning_messages_sample": first.warnings_sample,
        },
        "cli": {
            "note": cli_note,
            "cases": cli_results.iter().map(|c| json!({
                "label": c.label,
                "args": c.args,
                "runs_ms": c.runs_ms,
                "median_ms": median(&c.runs_ms),
                "exit_codes": c.exit_codes,
                "max_rss_kib": c.max_rss_kib,
            })).collect::<Vec<_>>(),
        },
        "per_calendar": percal.as_ref().map(|p| json!({
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
        })),
        "targets": {
            "pipeline_wall_seconds": {"goal": TARGET_WALL_S, "got": wall_med, "pass": wall_med < TARGET_WALL_S},
            "peak_memory_bytes": {"goal": TARGET_PEAK_BYTES, "got": peak_bytes, "pass": peak_bytes.map(|b| b < TARGET_PEAK_BYTES)},
            "per_calendar_ratio": {"goal": TARGET_RATIO, "got": ratio, "pass": ratio.map(|r| r >= TARGET_RATIO)},
            "single_user_plan_ms": {"goal": TARGET_CLI_MS, "got": single, "pass": single.map(|m| m < TARGET_CLI_MS)},
            "demo_single_user_plan_ms": {"goal": TARGET_CLI_MS, "got": demo, "pass": demo.map(|m| m < TARGET_CLI_MS)},
        },
    });
    let res_dir = target_dir().join("bench-results");
    let path = res_dir.join("plan_org.json");
    match std::fs::create_dir_all(&res_dir).and_then(|_| {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&out).unwrap_or_default() + "\n",
        )
    }) {
        Ok(()) => println!("\nwrote {}", path.display()),
        Err(e) => eprintln!("plan_org: cannot write {}: {e}", path.display()),
    }
}
