//! ICS bytes → `parse` → `expand`: must never panic, must finish in bounded
//! time, and every occurrence must satisfy `end >= start` and overlap the
//! window it was expanded for.
//!
//! The whole input is the ICS text (lossy UTF-8). The *last four bytes* also
//! steer the run (zone and window): ICS tolerates trailing junk, so seeds stay
//! valid calendars while mutations at the end explore other windows/zones.
#![no_main]

use calstatus::calendar::{Window, Zone, expand, parse, parse_zone_name};
use chrono::{DateTime, Duration, TimeZone, Utc};
use libfuzzer_sys::fuzz_target;

/// User zones picked by a control byte: DST both hemispheres, odd offsets,
/// the date line, Windows names.
const USER_ZONES: &[&str] = &[
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/St_Johns",
    "Pacific/Kiritimati",
    "Pacific/Apia",
    "America/Sao_Paulo",
    "Europe/London",
    "Africa/Casablanca",
    "Antarctica/Troll",
    "W. Europe Standard Time",
    "Pacific Standard Time",
];

fn anchor() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap()
}

fn window(ctl: [u8; 4]) -> Window {
    let ymd = |y| Utc.with_ymd_and_hms(y, 1, 1, 0, 0, 0).unwrap();
    match ctl[0] % 8 {
        // Wide windows.
        0 => Window { from: ymd(1990), to: ymd(2040) },
        1 => Window { from: ymd(2020), to: ymd(2031) },
        // Empty window at a derived instant.
        2 => {
            let t = anchor() + Duration::minutes((i64::from(ctl[1]) - 128) * 45);
            Window { from: t, to: t }
        }
        // Around 2026-11-27: start ±4 days (45-minute steps), length up to
        // ~5 days (30-minute steps) or up to ~2 months (6-hour steps).
        m => {
            let from = anchor() + Duration::minutes((i64::from(ctl[1]) - 128) * 45);
            let len = if m == 3 {
                Duration::hours(6 * i64::from(ctl[2]))
            } else {
                Duration::minutes(30 * i64::from(ctl[2]))
            };
            Window { from, to: from + len }
        }
    }
}

fn check(zone: &Zone, cal: &calstatus::calendar::Calendar, w: Window) {
    let (occs, diags) = expand(cal, zone, w);
    for d in &diags {
        let _ = d.to_string();
    }
    for o in &occs {
        assert!(o.end >= o.start, "end before start: {o:?}");
        let overlaps = if o.start == o.end {
            o.start >= w.from && o.start < w.to
        } else {
            o.start < w.to && o.end > w.from
        };
        assert!(overlaps, "occurrence outside {w:?}: {o:?}");
    }
    assert!(
        occs.windows(2)
            .all(|p| (p[0].start, p[0].end, &p[0].uid) <= (p[1].start, p[1].end, &p[1].uid)),
        "occurrences not sorted"
    );
}

/// Unfolded content lines (CRLF, LF or lone CR; a leading space or tab
/// continues the previous non-blank line), as `parse` reads them.
fn logical_lines(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let physical = text.split('\n').flat_map(|c| c.strip_suffix('\r').unwrap_or(c).split('\r'));
    for line in physical.filter(|l| !l.is_empty()) {
        match line.strip_prefix([' ', '\t']) {
            Some(rest) if !out.is_empty() => out.last_mut().unwrap().push_str(rest),
            _ => out.push(line.to_string()),
        }
    }
    out
}

/// Sum of an RFC 5545 duration's parts in seconds, ignoring syntax errors.
fn rough_duration_secs(v: &str) -> u128 {
    let mut total = 0u128;
    let mut num = 0u128;
    for c in v.chars() {
        match c.to_ascii_uppercase() {
            '0'..='9' => num = num.saturating_mul(10).saturating_add(c as u128 - '0' as u128),
            u => {
                let f = match u {
                    'W' => 604_800,
                    'D' => 86_400,
                    'H' => 3_600,
                    'M' => 60,
                    'S' => 1,
                    _ => 0,
                };
                total = total.saturating_add(num.saturating_mul(f));
                num = 0;
            }
        }
    }
    total
}

/// With `CALSTATUS_FUZZ_SKIP_KNOWN=1`, inputs that would only re-hit a bug
/// already reported (see README.md) are skipped, so a long run can find
/// *other* bugs. Rough textual filters: they over-approximate.
fn known_bug(text: &str) -> Option<&'static str> {
    if text.contains("2147483648") {
        return Some("zones-nth-negate-overflow");
    }
    for l in logical_lines(text) {
        let name_end = l.find([';', ':']).unwrap_or(l.len());
        let name = l[..name_end].trim().to_ascii_uppercase();
        match name.as_str() {
            "ATTENDEE" | "ORGANIZER" if !l.is_ascii() => return Some("person-mailto-char-boundary"),
            "RRULE" if !l.is_ascii() => return Some("nth-weekday-char-boundary"),
            // Anything past ~30,000 years can overflow NaiveDateTime arithmetic.
            "DURATION" | "RDATE" => {
                let v = l.rsplit(':').next().unwrap_or("");
                if v.split([',', '/']).any(|p| rough_duration_secs(p) > 900_000_000_000) {
                    return Some("duration-overflow");
                }
            }
            _ => {}
        }
    }
    None
}

fn skip_known() -> bool {
    static SKIP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SKIP.get_or_init(|| std::env::var_os("CALSTATUS_FUZZ_SKIP_KNOWN").is_some_and(|v| v == "1"))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if skip_known() && known_bug(&text).is_some() {
        return;
    }
    let Ok(cal) = parse(&text) else {
        return;
    };
    for d in &cal.diags {
        let _ = d.to_string();
    }
    let mut ctl = [0u8; 4];
    if data.len() >= 4 {
        ctl.copy_from_slice(&data[data.len() - 4..]);
    }
    let w = window(ctl);
    let user = parse_zone_name(USER_ZONES[usize::from(ctl[3]) % USER_ZONES.len()])
        .expect("user zone list is valid");
    check(&Zone::Utc, &cal, w);
    check(&parse_zone_name("Europe/Berlin").expect("Berlin"), &cal, w);
    check(&user, &cal, w);
});
