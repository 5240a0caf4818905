//! Occurrences agree with the Python `recurring-ical-events` library on the
//! shared real-world corpus (when Python, the library and the corpus are
//! there; `.ci/run` installs the library from tools/reference/requirements.txt).

use std::collections::BTreeMap;
use std::process::Command;

use calstatus::calendar::{Window, parse_zone_name};

use crate::support::{orggen, root, t};

/// Files whose difference is understood and documented in tools/reference/README.md.
const KNOWN: &[&str] = &[
    // An all-day series whose EXDATE carries a TZID makes the reference read
    // a UTC UNTIL against zoned instants; we read UNTIL's date (1 instance).
    "cest.ics",
];

type Key = (Option<String>, String, String);

fn occurrences(doc: &serde_json::Value) -> BTreeMap<String, Option<Vec<Key>>> {
    let mut out = BTreeMap::new();
    for f in doc["files"].as_array().unwrap() {
        let name = f["file"].as_str().unwrap().to_string();
        if !f["error"].is_null() {
            out.insert(name, None);
            continue;
        }
        let mut v: Vec<Key> = f["occurrences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o["uid"].as_str().map(str::to_string),
                    o["start"].as_str().unwrap().to_string(),
                    o["end"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        out.insert(name, Some(v));
    }
    out
}

/// Whether python3 can import the reference library (else the test says so).
fn have_reference() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import recurring_ical_events, x_wr_timezone"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        // Not enforced by CALSTATUS_NO_SKIP: PyPI may be out of reach.
        println!(
            "SKIPPED the reference comparison: python3 with recurring-ical-events is not installed (pip install -r tools/reference/requirements.txt)"
        );
    }
    ok
}

/// Occurrences per file under `dir` from `from` to `to` in `tz`: (the
/// reference's, ours).
type PerFile = BTreeMap<String, Option<Vec<Key>>>;
fn both(dir: &std::path::Path, from: &str, to: &str, tz: &str) -> (PerFile, PerFile) {
    let out = Command::new("python3")
        .arg(root().join("tools/reference/occurrences.py"))
        .args(["--from", from, "--to", to, "--timezone", tz])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference = occurrences(&serde_json::from_slice(&out.stdout).unwrap());
    let ours = calstatus::cli::expand_files(
        &[dir.to_path_buf()],
        &parse_zone_name(tz).unwrap(),
        Window {
            from: t(from),
            to: t(to),
        },
    )
    .unwrap();
    (
        reference,
        occurrences(&serde_json::from_str(&ours).unwrap()),
    )
}

#[test]
fn occurrences_match_recurring_ical_events_on_the_corpus() {
    let corpus = root().join("../shared/corpus");
    if !corpus.is_dir() {
        println!("SKIPPED: no shared corpus at {}", corpus.display());
        return;
    }
    if !have_reference() {
        return;
    }
    let corpus = corpus.canonicalize().unwrap();
    let mut compared = 0;
    let mut differing = Vec::new();
    for (from, to, tz) in [
        (
            "2026-11-27T00:00:00Z",
            "2026-12-04T00:00:00Z",
            "Europe/Lisbon",
        ),
        (
            "2000-01-01T00:00:00Z",
            "2030-01-01T00:00:00Z",
            "America/New_York",
        ),
        ("2015-01-01T00:00:00Z", "2023-01-01T00:00:00Z", "Asia/Tokyo"),
    ] {
        let (reference, ours) = both(&corpus, from, to, tz);
        for (file, r) in &reference {
            let Some(r) = r else { continue }; // the reference cannot read it
            compared += 1;
            let o = ours.get(file).cloned().flatten().unwrap_or_default();
            if &o != r {
                let base = file.rsplit('/').next().unwrap_or(file).to_string();
                let missing = r.iter().filter(|x| !o.contains(x)).count();
                let extra = o.iter().filter(|x| !r.contains(x)).count();
                differing.push((base, tz, missing, extra));
            }
        }
    }
    let unexpected: Vec<_> = differing
        .iter()
        .filter(|d| !KNOWN.contains(&d.0.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "differences from recurring-ical-events: {unexpected:?}"
    );
    // The known difference stays small.
    assert!(differing.iter().all(|d| d.2 + d.3 <= 3), "{differing:?}");
    assert!(compared > 250, "only {compared} file comparisons");
}

/// The benchmark's Outlook-style calendars (`support::orggen`: Windows
/// zones with VTIMEZONEs, weekly/daily/monthly series ending by COUNT or
/// UNTIL, EXDATEs, moved and cancelled overrides) expand as the reference
/// does, in the benchmark's week and over the half year before it (where
/// the EXDATEs and overrides of the past are).
#[test]
fn generated_outlook_calendars_match_recurring_ical_events() {
    if !have_reference() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A spread of users (zones, all-day part-timers, every rule kind).
    for i in [0, 3, 8, 21, 34, 55] {
        let (f, _) = orggen::user_files(0x00C4_1570, 30, i);
        std::fs::write(dir.path().join(format!("{}.ics", f.name)), f.ics).unwrap();
    }
    let dir = dir.path().canonicalize().unwrap();
    for (from, to, tz) in [
        (orggen::WINDOW_FROM, orggen::WINDOW_TO, "Europe/Berlin"),
        (
            "2026-07-01T00:00:00Z",
            "2027-01-01T00:00:00Z",
            "America/New_York",
        ),
    ] {
        let (reference, ours) = both(&dir, from, to, tz);
        assert_eq!(reference.len(), 6);
        for (file, r) in &reference {
            let r = r.as_ref().expect("the reference reads it");
            assert!(!r.is_empty(), "{file}: no occurrences from {from} to {to}");
            assert_eq!(
                ours.get(file),
                Some(&Some(r.clone())),
                "{file} from {from} to {to}"
            );
        }
    }
}
