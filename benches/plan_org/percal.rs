//! Per calendar: calstatus's read + parse + expand on one thread against
//! `recurring-ical-events` (`tools/reference/bench.py`) on the same files,
//! and where a parsed calendar's memory goes.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use calstatus::calendar::zones::CustomZone;
use calstatus::calendar::{Window, expand, parse, parse_zone_name};
use serde_json::{Value, json};

use crate::Opts;
use crate::common::{repo_root, secs};
use crate::heap::{heap, live};
use crate::orggen::{WINDOW_FROM, WINDOW_TO};
use crate::pipeline::outlook_weu;

/// The per-calendar comparison.
pub struct PerCal {
    pub files: usize,
    pub bytes: u64,
    pub rust_passes_s: Vec<f64>,
    pub rust_parse_only_s: f64,
    pub rust_failed: usize,
    pub rust_occurrences: usize,
    /// `icalendar::parser::read_calendar`, best of 3: (seconds, files parsed).
    pub ical_lf: (f64, usize),
    pub ical_crlf: (f64, usize),
    pub anatomy: Value,
    pub python: Result<Value, String>,
}

/// Copies every n-th calendar (`--sample` of them) to `<dir>/sample/`.
fn copy_sample(opts: &Opts) -> Result<(Vec<PathBuf>, u64), String> {
    let mut all = crate::orggen::files_with_ext(&opts.dir().join("calendars"), "ics")?;
    // The main org's calendars only (the directory may hold a larger org's).
    all.truncate(opts.users);
    let n = opts.sample.min(all.len());
    let step = (all.len() / n.max(1)).max(1);
    let sample_dir = opts.dir().join("sample");
    let _ = std::fs::remove_dir_all(&sample_dir);
    std::fs::create_dir_all(&sample_dir).map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    let mut bytes = 0u64;
    for p in all.iter().step_by(step).take(n) {
        let dst = sample_dir.join(p.file_name().expect("file name"));
        std::fs::copy(p, &dst).map_err(|e| e.to_string())?;
        bytes += std::fs::metadata(&dst).map(|m| m.len()).unwrap_or(0);
        files.push(dst);
    }
    Ok((files, bytes))
}

/// Same unit as bench.py: read the bytes, parse, expand; one thread, 3
/// passes. Returns the passes' seconds, and the first pass's failures and
/// occurrences.
fn time_rust(files: &[PathBuf], window: Window) -> (Vec<f64>, usize, usize) {
    let zone = parse_zone_name("Europe/Berlin").expect("Europe/Berlin");
    let mut passes = Vec::new();
    let (mut failed, mut occurrences) = (0, 0);
    for pass in 0..3 {
        let (mut f_failed, mut f_occ) = (0, 0);
        let t = Instant::now();
        for f in files {
            let Ok(bytes) = std::fs::read(f) else {
                f_failed += 1;
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            match parse(&text) {
                Ok(cal) => f_occ += std::hint::black_box(expand(&cal, &zone, window).0.len()),
                Err(_) => f_failed += 1,
            }
        }
        passes.push(secs(t.elapsed()));
        if pass == 0 {
            (failed, occurrences) = (f_failed, f_occ);
        }
    }
    (passes, failed, occurrences)
}

/// Best of 3 of `f` over `xs`: (seconds, how many `f` said were fine).
fn best_of_3<T>(xs: &[T], f: impl Fn(&T) -> bool) -> (f64, usize) {
    let mut best = f64::INFINITY;
    let mut ok = 0usize;
    for _ in 0..3 {
        ok = 0;
        let t = Instant::now();
        for x in xs {
            ok += usize::from(std::hint::black_box(f(x)));
        }
        best = best.min(secs(t.elapsed()));
    }
    (best, ok)
}

/// Runs the comparison (and bench.py unless `--no-python`).
pub fn per_calendar(opts: &Opts, window: Window) -> Result<PerCal, String> {
    let (files, bytes) = copy_sample(opts)?;
    let (passes, failed, occurrences) = time_rust(&files, window);
    let texts: Vec<String> = files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .collect();
    let (parse_best, _) = best_of_3(&texts, |t| parse(t).is_ok());
    // The icalendar crate's parser alone on the unfolded text, its lines
    // joined with LF and with CRLF: the property-value parser tries
    // `take_until("\r\n")` first, which scans to the end of the input when
    // there is no CRLF.
    let lf: Vec<String> = texts
        .iter()
        .map(|t| icalendar::parser::unfold(t).replace("\r\n", "\n"))
        .collect();
    let crlf: Vec<String> = lf.iter().map(|t| t.replace('\n', "\r\n")).collect();
    let ical = |x: &String| icalendar::parser::read_calendar(x).is_ok();
    let python = if opts.no_python {
        Err("skipped (--no-python)".into())
    } else {
        run_python(opts, &opts.dir().join("sample"))
    };
    Ok(PerCal {
        files: files.len(),
        bytes,
        rust_passes_s: passes,
        rust_parse_only_s: parse_best,
        rust_failed: failed,
        rust_occurrences: occurrences,
        ical_lf: best_of_3(&lf, ical),
        ical_crlf: best_of_3(&crlf, ical),
        anatomy: calendar_anatomy(&texts),
        python,
    })
}

/// Runs `tools/reference/bench.py` on the sample; its JSON line.
fn run_python(opts: &Opts, sample_dir: &Path) -> Result<Value, String> {
    let last_line = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .lines()
            .last()
            .unwrap_or("")
            .to_string()
    };
    let probe = Command::new(&opts.python)
        .args(["-c", "import recurring_ical_events, icalendar"])
        .output();
    match probe {
        Err(e) => return Err(format!("{} not available: {e}", opts.python)),
        Ok(o) if !o.status.success() => {
            return Err(format!(
                "recurring-ical-events not importable by {} (pip install -r tools/reference/requirements.txt): {}",
                opts.python,
                last_line(&o.stderr)
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
        return Err(format!("bench.py failed: {}", last_line(&out.stderr)));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or("bench.py printed no JSON line")?;
    serde_json::from_str(line).map_err(|e| format!("bench.py JSON: {e}"))
}

/// Where a parsed calendar's memory goes: string payloads by field, struct
/// sizes, distinct VTIMEZONE tables, and (with `--heap`) the live heap it
/// really holds.
fn calendar_anatomy(texts: &[String]) -> Value {
    use calstatus::calendar::ics::{Details, Event, Person, When};
    let before = heap().map(|h| h.0);
    let cals: Vec<calstatus::calendar::Calendar> =
        texts.iter().filter_map(|t| parse(t).ok()).collect();
    let held = heap()
        .map(|h| h.0)
        .zip(before)
        .map(|(a, b)| a.saturating_sub(b));
    let (by_field, events, attendees, zones) = field_bytes(&cals);
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
        "custom_zones_per_calendar": zones as f64 / n as f64,
        "custom_zone_table_bytes_each": zone_table_bytes(),
        "sizes": {
            "Event": std::mem::size_of::<Event>(),
            "Details": std::mem::size_of::<Details>(),
            "When": std::mem::size_of::<When>(),
            "Person": std::mem::size_of::<Person>(),
        },
    })
}

/// Bytes by field over all calendars; events, attendees, distinct zones.
fn field_bytes(
    cals: &[calstatus::calendar::Calendar],
) -> (HashMap<&'static str, usize>, usize, usize, usize) {
    use calstatus::calendar::ics::{Anchor, Details, Event, Person, RDate, When};
    use calstatus::calendar::zones::Zone;
    let opt = |s: &Option<String>| s.as_ref().map(|x| x.capacity()).unwrap_or(0);
    let person = |p: &Person| opt(&p.email) + opt(&p.name);
    let (mut events, mut attendees) = (0usize, 0usize);
    let mut by: HashMap<&'static str, usize> = HashMap::new();
    let mut zones = HashSet::new();
    let mut seen_details = HashSet::new();
    let mut note_zone = |w: &When| {
        if let Anchor::Zoned(Zone::Custom(z)) = &w.anchor {
            zones.insert(Arc::as_ptr(z) as usize);
        }
    };
    for e in cals.iter().flat_map(|c| c.events.iter()) {
        events += 1;
        *by.entry("uid").or_default() += e.uid.capacity();
        *by.entry("rrules").or_default() += e.rrules.iter().map(String::capacity).sum::<usize>();
        *by.entry("exdates+rdates (structs)").or_default() += e.exdates.capacity()
            * std::mem::size_of::<When>()
            + e.rdates.capacity() * std::mem::size_of::<RDate>();
        note_zone(&e.start);
        if let Some(w) = &e.end {
            note_zone(w);
        }
        if seen_details.insert(Arc::as_ptr(&e.details) as usize) {
            let d = &e.details;
            *by.entry("description").or_default() += opt(&d.description);
            *by.entry("summary+location+categories").or_default() += opt(&d.summary)
                + opt(&d.location)
                + d.categories.iter().map(String::capacity).sum::<usize>();
            attendees += d.attendees.len();
            *by.entry("attendees+organizer (strings)").or_default() +=
                d.attendees.iter().map(person).sum::<usize>()
                    + d.organizer.as_ref().map(person).unwrap_or(0);
            *by.entry("attendees (structs)").or_default() +=
                d.attendees.capacity() * std::mem::size_of::<Person>();
            *by.entry("Details structs").or_default() += std::mem::size_of::<Details>();
        }
        *by.entry("Event structs").or_default() += std::mem::size_of::<Event>();
    }
    for c in cals {
        *by.entry("diags").or_default() +=
            c.diags.iter().map(|d| d.message.capacity()).sum::<usize>();
    }
    (by, events, attendees, zones.len())
}

/// One DST zone table's live heap, with the counting allocator (`--heap`).
fn zone_table_bytes() -> Option<usize> {
    heap()?;
    let obs = outlook_weu();
    let live0 = live();
    let held: Vec<Arc<CustomZone>> = (0..100)
        .filter_map(|_| CustomZone::new("W. Europe Standard Time".into(), &obs).map(Arc::new))
        .collect();
    let per = (live() - live0).max(0) as usize / held.len().max(1);
    drop(held);
    Some(per)
}
