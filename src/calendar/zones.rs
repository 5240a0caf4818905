//! Time zones: resolving a TZID to something that converts wall-clock times.
//!
//! Resolution order (matching the reference implementations): an IANA name,
//! then the calendar's own `VTIMEZONE` block, then the CLDR Windows mapping
//! ("W. Europe Standard Time"), then a few well-known spellings (Mozilla
//! prefixes, `tzone://Microsoft/Utc`, `GMT+05:30`). Whatever is left is
//! unresolved and the caller falls back to the user's zone with a warning.
//!
//! Wall → UTC follows RFC 5545 §3.3.5: a time inside a spring-forward gap
//! takes the offset from before the gap; an ambiguous (fall-back) time takes
//! the first occurrence. Pure code, no IO.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{
    DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc,
    Weekday,
};

/// A resolved time zone.
#[derive(Clone, Debug)]
pub enum Zone {
    /// Coordinated Universal Time.
    Utc,
    /// A tz database zone.
    Iana(chrono_tz::Tz),
    /// A fixed offset (`GMT+05:30`).
    Fixed(FixedOffset),
    /// A calendar's own `VTIMEZONE` definition.
    Custom(Arc<CustomZone>),
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Zone::Utc, Zone::Utc) => true,
            (Zone::Iana(a), Zone::Iana(b)) => a == b,
            (Zone::Fixed(a), Zone::Fixed(b)) => a == b,
            (Zone::Custom(a), Zone::Custom(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Zone {
    /// The zone's display name.
    pub fn name(&self) -> String {
        match self {
            Zone::Utc => "UTC".into(),
            Zone::Iana(tz) => tz.name().into(),
            Zone::Fixed(off) => format!("UTC{off}"),
            Zone::Custom(c) => c.tzid.clone(),
        }
    }

    /// Offset from UTC, in seconds, in force at the UTC instant `utc`.
    pub fn offset_at(&self, utc: NaiveDateTime) -> i32 {
        match self {
            Zone::Utc => 0,
            Zone::Iana(tz) => tz.offset_from_utc_datetime(&utc).fix().local_minus_utc(),
            Zone::Fixed(off) => off.local_minus_utc(),
            Zone::Custom(c) => c.offset_at(utc.and_utc().timestamp()),
        }
    }

    /// [`Zone::offset_at`] of a UTC instant in seconds since the epoch.
    fn offset_at_secs(&self, utc: i64) -> i32 {
        match self {
            Zone::Custom(c) => c.offset_at(utc),
            _ => DateTime::from_timestamp(utc, 0).map_or(0, |t| self.offset_at(t.naive_utc())),
        }
    }

    /// The local wall-clock time of a UTC instant.
    pub fn to_local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        let naive = t.naive_utc();
        naive + Duration::seconds(i64::from(self.offset_at(naive)))
    }

    /// The UTC instant of a local wall-clock time (gap: offset from before
    /// the gap; overlap: the first occurrence).
    pub fn to_utc(&self, wall: NaiveDateTime) -> DateTime<Utc> {
        match self {
            Zone::Utc => wall.and_utc(),
            Zone::Fixed(off) => {
                (wall - Duration::seconds(i64::from(off.local_minus_utc()))).and_utc()
            }
            _ => {
                // In seconds: three date-time sums per instance cost more
                // than the offset lookups.
                let w = wall.and_utc().timestamp();
                // Offsets in force half a day either side bracket any transition.
                let before = self.offset_at_secs(w - 14 * 3600);
                let after = self.offset_at_secs(w + 14 * 3600);
                // Of the readings whose offset is in force at their instant,
                // the first (the larger offset); in a gap neither is, and
                // `before` is taken.
                let off = if before == after {
                    before
                } else {
                    [before, after]
                        .into_iter()
                        .filter(|&o| self.offset_at_secs(w - i64::from(o)) == o)
                        .max()
                        .unwrap_or(before)
                };
                (wall - Duration::seconds(i64::from(off))).and_utc()
            }
        }
    }
}

/// Parses a zone name given by a person (config, user file): IANA or Windows.
pub fn parse_zone_name(name: &str) -> Option<Zone> {
    let name = name.trim();
    if name.eq_ignore_ascii_case("UTC") || name == "Etc/UTC" || name == "Z" {
        return Some(Zone::Utc);
    }
    if let Ok(tz) = chrono_tz::Tz::from_str(name) {
        return Some(Zone::Iana(tz));
    }
    windows_zone(name)
}

fn windows_zone(name: &str) -> Option<Zone> {
    if let Ok(w) = windows_timezones::WindowsTimezone::from_str(name) {
        return Some(iana_or_utc(chrono_tz::Tz::from(w)));
    }
    // Case-insensitive fallback: the generated parser is case-sensitive.
    static LOWER: std::sync::OnceLock<HashMap<String, chrono_tz::Tz>> = std::sync::OnceLock::new();
    let table = LOWER.get_or_init(|| {
        let mut m = HashMap::new();
        for name in WINDOWS_NAMES_EXTRA {
            if let Ok(tz) = chrono_tz::Tz::from_str(name.1) {
                m.insert(name.0.to_ascii_lowercase(), tz);
            }
        }
        m
    });
    let lower = name.to_ascii_lowercase();
    if let Some(tz) = table.get(&lower) {
        return Some(iana_or_utc(*tz));
    }
    // Try a title-cased lookup through the generated parser.
    for w in ALL_WINDOWS_PROBES {
        if w.eq_ignore_ascii_case(name)
            && let Ok(w) = windows_timezones::WindowsTimezone::from_str(w)
        {
            return Some(iana_or_utc(chrono_tz::Tz::from(w)));
        }
    }
    None
}

fn iana_or_utc(tz: chrono_tz::Tz) -> Zone {
    if tz == chrono_tz::UTC || tz == chrono_tz::Etc::UTC {
        Zone::Utc
    } else {
        Zone::Iana(tz)
    }
}

/// Names seen in real files that CLDR does not list (retired or informal).
const WINDOWS_NAMES_EXTRA: &[(&str, &str)] = &[
    ("Coordinated Universal Time", "UTC"),
    ("UTC", "UTC"),
    ("GMT", "UTC"),
    ("Greenwich Mean Time", "Europe/London"),
    ("Mid-Atlantic Standard Time", "Atlantic/South_Georgia"),
    ("Kamchatka Standard Time", "Asia/Kamchatka"),
    ("Armenian Standard Time", "Asia/Yerevan"),
];

/// Common Windows names, probed case-insensitively.
const ALL_WINDOWS_PROBES: &[&str] = &[
    "W. Europe Standard Time",
    "Romance Standard Time",
    "Central Europe Standard Time",
    "Central European Standard Time",
    "GMT Standard Time",
    "Pacific Standard Time",
    "Mountain Standard Time",
    "Central Standard Time",
    "Eastern Standard Time",
    "India Standard Time",
    "Tokyo Standard Time",
    "China Standard Time",
    "AUS Eastern Standard Time",
    "E. South America Standard Time",
    "FLE Standard Time",
    "GTB Standard Time",
    "Singapore Standard Time",
];

/// Resolves a TZID parameter value against the calendar's `VTIMEZONE`s.
pub fn resolve_tzid(tzid: &str, custom: &HashMap<String, Arc<CustomZone>>) -> Option<Zone> {
    let tzid = tzid.trim().trim_matches('"').trim();
    if tzid.is_empty() {
        return None;
    }
    if let Ok(tz) = chrono_tz::Tz::from_str(tzid) {
        return Some(iana_or_utc(tz));
    }
    if let Some(c) = custom.get(tzid) {
        return Some(Zone::Custom(c.clone()));
    }
    if let Some(z) = windows_zone(tzid) {
        return Some(z);
    }
    heuristic_zone(tzid)
}

/// Well-known spellings no table carries.
fn heuristic_zone(tzid: &str) -> Option<Zone> {
    let lower = tzid.to_ascii_lowercase();
    if lower == "tzone://microsoft/utc" || lower == "utc" || lower == "gmt" || lower == "z" {
        return Some(Zone::Utc);
    }
    // "/mozilla.org/20050126_1/Europe/Berlin", "/softwarestudio.org/Olson_20011030_5/America/New_York"
    let parts: Vec<&str> = tzid.split('/').collect();
    for i in 1..parts.len() {
        if let Ok(tz) = chrono_tz::Tz::from_str(&parts[i..].join("/")) {
            return Some(iana_or_utc(tz));
        }
    }
    None
}

/// One STANDARD or DAYLIGHT block of a `VTIMEZONE`.
#[derive(Clone, Debug)]
pub struct Observance {
    /// Onset, as local time in the offset that was in force before it.
    pub dtstart: NaiveDateTime,
    /// Offset before the onset, seconds east of UTC.
    pub offset_from: i32,
    /// Offset after the onset, seconds east of UTC.
    pub offset_to: i32,
    /// A yearly rule, if any.
    pub rule: Option<YearlyRule>,
    /// Extra onsets (`RDATE`), local time.
    pub rdates: Vec<NaiveDateTime>,
    /// `true` for DAYLIGHT.
    pub daylight: bool,
}

/// The subset of RRULE that time-zone definitions use.
#[derive(Clone, Debug, Default)]
pub struct YearlyRule {
    /// BYMONTH (1–12); empty means the DTSTART month.
    pub months: Vec<u32>,
    /// BYDAY entries: (nth, weekday); nth 0 = every.
    pub days: Vec<(i32, Weekday)>,
    /// BYMONTHDAY values.
    pub monthdays: Vec<i32>,
    /// UNTIL, as a UTC instant (seconds).
    pub until: Option<i64>,
    /// COUNT.
    pub count: Option<u32>,
}

/// A `VTIMEZONE` turned into a sorted transition table.
#[derive(Debug)]
pub struct CustomZone {
    /// The TZID it was declared with.
    pub tzid: String,
    /// (UTC instant in seconds, offset after the transition), in order.
    transitions: Vec<(i64, i32)>,
    /// Offset before the first transition.
    initial: i32,
    /// For each span of 2^[`SPAN_BITS`] seconds from the first transition,
    /// the index of the first transition at or after the span's start: a
    /// lookup scans the few transitions from there instead of searching
    /// the whole table (three lookups per instance converted).
    spans: Vec<u32>,
}

/// A span of [`CustomZone::spans`]: 2^24 s, about 194 days.
const SPAN_BITS: u32 = 24;

/// Most onsets one observance may have in a year.
const MAX_ONSETS_PER_YEAR: usize = 4;

/// First and last year for which transitions are computed.
const FIRST_YEAR: i32 = 1970;
const LAST_YEAR: i32 = 2100;

impl CustomZone {
    /// Builds the transition table. Returns `None` when there is no usable observance.
    pub fn new(tzid: String, observances: &[Observance]) -> Option<CustomZone> {
        if observances.is_empty() {
            return None;
        }
        let mut trans: Vec<(i64, i32, i32)> = Vec::new();
        for ob in observances {
            let mut onsets: Vec<NaiveDateTime> = vec![ob.dtstart];
            onsets.extend(ob.rdates.iter().copied());
            if let Some(rule) = &ob.rule {
                let start_year = ob.dtstart.year().max(FIRST_YEAR - 1);
                let mut emitted = 1u32; // DTSTART counts as the first instance
                'years: for year in start_year..=LAST_YEAR {
                    let months: Vec<u32> = if rule.months.is_empty() {
                        vec![ob.dtstart.month()]
                    } else {
                        rule.months.clone()
                    };
                    // A real zone changes offset a few times a year at most.
                    let mut this_year = 0;
                    for month in months {
                        for day in rule_days_in_month(rule, year, month, ob.dtstart.day()) {
                            this_year += 1;
                            if this_year > MAX_ONSETS_PER_YEAR {
                                break;
                            }
                            let Some(date) = NaiveDate::from_ymd_opt(year, month, day) else {
                                continue;
                            };
                            let local = date.and_time(ob.dtstart.time());
                            if local <= ob.dtstart {
                                continue;
                            }
                            let utc = (local - Duration::seconds(i64::from(ob.offset_from)))
                                .and_utc()
                                .timestamp();
                            if rule.until.is_some_and(|u| utc > u) {
                                break 'years;
                            }
                            if rule.count.is_some_and(|c| emitted >= c) {
                                break 'years;
                            }
                            emitted += 1;
                            onsets.push(local);
                        }
                    }
                }
            }
            for local in onsets {
                let utc = (local - Duration::seconds(i64::from(ob.offset_from)))
                    .and_utc()
                    .timestamp();
                trans.push((utc, ob.offset_from, ob.offset_to));
            }
        }
        trans.sort_by_key(|t| t.0);
        let initial = trans.first().map(|t| t.1).unwrap_or(0);
        // Transitions before the table's range collapse into the initial offset.
        let cutoff = NaiveDate::from_ymd_opt(FIRST_YEAR, 1, 1)
            .map(|d| {
                d.and_hms_opt(0, 0, 0)
                    .unwrap_or_default()
                    .and_utc()
                    .timestamp()
            })
            .unwrap_or(0);
        let mut initial_eff = initial;
        let mut transitions = Vec::with_capacity(trans.len());
        for (t, _, to) in trans {
            if t < cutoff {
                initial_eff = to;
            } else {
                transitions.push((t, to));
            }
        }
        let spans = match (transitions.first(), transitions.last()) {
            (Some(first), Some(last)) => (0..=(last.0 - first.0) >> SPAN_BITS)
                .map(|k| {
                    let start = first.0 + (k << SPAN_BITS);
                    transitions.partition_point(|t| t.0 < start) as u32
                })
                .collect(),
            _ => Vec::new(),
        };
        Some(CustomZone {
            tzid,
            transitions,
            initial: initial_eff,
            spans,
        })
    }

    /// The offset in force at `utc`: that of the last transition at or
    /// before it (the table's `partition_point`, found from its span).
    fn offset_at(&self, utc: i64) -> i32 {
        let t = &self.transitions;
        let after = match t.first() {
            None => 0,
            Some(first) if utc < first.0 => 0,
            Some(first) => match self.spans.get(((utc - first.0) >> SPAN_BITS) as usize) {
                // Every transition before the span's start is before `utc`.
                Some(&from) => {
                    let mut i = from as usize;
                    while i < t.len() && t[i].0 <= utc {
                        i += 1;
                    }
                    i
                }
                // After the last span: after every transition.
                None => t.len(),
            },
        };
        match after {
            0 => self.initial,
            i => t[i - 1].1,
        }
    }
}

fn rule_days_in_month(rule: &YearlyRule, year: i32, month: u32, default_day: u32) -> Vec<u32> {
    let Some(first) = NaiveDate::from_ymd_opt(year, month, 1) else {
        return vec![];
    };
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    };
    let len = next.map(|n| (n - first).num_days() as u32).unwrap_or(31);
    let in_monthdays = |d: u32| {
        rule.monthdays.is_empty()
            || rule.monthdays.iter().any(|&md| {
                (md > 0 && md as u32 == d) || (md < 0 && (len as i32 + 1 + md) as u32 == d)
            })
    };
    if rule.days.is_empty() {
        if rule.monthdays.is_empty() {
            return vec![default_day];
        }
        return (1..=len).filter(|&d| in_monthdays(d)).collect();
    }
    let mut out = Vec::new();
    for &(nth, wd) in &rule.days {
        let first_wd = first.weekday().num_days_from_monday();
        let matching: Vec<u32> = (1..=len)
            .filter(|&d| (first_wd + d - 1) % 7 == wd.num_days_from_monday() && in_monthdays(d))
            .collect();
        if nth == 0 {
            out.extend(matching);
        } else if nth > 0 {
            if let Some(d) = matching.get(nth as usize - 1) {
                out.push(*d);
            }
        } else if let Some(idx) = matching.len().checked_sub(nth.unsigned_abs() as usize) {
            out.push(matching[idx]);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn windows_names_map_to_iana() {
        assert_eq!(
            parse_zone_name("W. Europe Standard Time").unwrap().name(),
            "Europe/Berlin"
        );
        assert_eq!(
            parse_zone_name("pacific standard time").unwrap().name(),
            "America/Los_Angeles"
        );
        assert!(parse_zone_name("Mars/Olympus").is_none());
    }

    #[test]
    fn heuristics() {
        let none = HashMap::new();
        assert_eq!(
            resolve_tzid("/mozilla.org/20050126_1/Europe/Berlin", &none)
                .unwrap()
                .name(),
            "Europe/Berlin"
        );
        assert_eq!(
            resolve_tzid("tzone://Microsoft/Utc", &none).unwrap(),
            Zone::Utc
        );
        assert!(resolve_tzid("GMT+05:30", &none).is_none());
        assert_eq!(
            resolve_tzid("\"Pacific Standard Time\"", &none)
                .unwrap()
                .name(),
            "America/Los_Angeles"
        );
        assert!(resolve_tzid("Customized Time Zone", &none).is_none());
    }

    #[test]
    fn gap_takes_offset_before_and_overlap_takes_first() {
        let berlin = parse_zone_name("Europe/Berlin").unwrap();
        // 2026-03-29 02:30 does not exist in Berlin: offset before (+1) applies.
        assert_eq!(
            berlin.to_utc(dt("2026-03-29 02:30")).naive_utc(),
            dt("2026-03-29 01:30")
        );
        // 2026-10-25 02:30 happens twice: the first (+2) wins.
        assert_eq!(
            berlin.to_utc(dt("2026-10-25 02:30")).naive_utc(),
            dt("2026-10-25 00:30")
        );
    }

    fn eu_custom() -> CustomZone {
        let rule = |m| YearlyRule {
            months: vec![m],
            days: vec![(-1, Weekday::Sun)],
            ..Default::default()
        };
        CustomZone::new(
            "Customized Time Zone".into(),
            &[
                Observance {
                    dtstart: dt("1601-01-01 03:00"),
                    offset_from: 7200,
                    offset_to: 3600,
                    rule: Some(rule(10)),
                    rdates: vec![],
                    daylight: false,
                },
                Observance {
                    dtstart: dt("1601-01-01 02:00"),
                    offset_from: 3600,
                    offset_to: 7200,
                    rule: Some(rule(3)),
                    rdates: vec![],
                    daylight: true,
                },
            ],
        )
        .unwrap()
    }

    /// The span table finds what a search of the whole table finds: at,
    /// just before and just after every transition, between them, before
    /// the first and after the last.
    #[test]
    fn span_lookup_agrees_with_a_search_of_every_transition() {
        let z = eu_custom();
        let search = |utc: i64| match z.transitions.partition_point(|t| t.0 <= utc) {
            0 => z.initial,
            i => z.transitions[i - 1].1,
        };
        assert!(z.transitions.len() > 200, "{}", z.transitions.len());
        let mut at: Vec<i64> = vec![i64::MIN / 2, -1, 0, i64::MAX / 2];
        for w in z.transitions.windows(2) {
            let (a, b) = (w[0].0, w[1].0);
            at.extend([a - 1, a, a + 1, (a + b) / 2, b - 1]);
        }
        let last = z.transitions.last().unwrap().0;
        at.extend([
            last,
            last + 1,
            last + (1 << SPAN_BITS),
            last + (3 << SPAN_BITS),
        ]);
        let mut changes = 0;
        for (k, &utc) in at.iter().enumerate() {
            assert_eq!(z.offset_at(utc), search(utc), "{utc}");
            changes += usize::from(k > 0 && search(utc) != search(at[k - 1]));
        }
        assert!(changes > 250, "{changes}");
    }

    #[test]
    fn custom_vtimezone_matches_tzdb() {
        let custom = Zone::Custom(Arc::new(eu_custom()));
        let berlin = parse_zone_name("Europe/Berlin").unwrap();
        for s in [
            "2026-01-15 09:00",
            "2026-03-29 01:59",
            "2026-03-29 02:30",
            "2026-03-29 03:00",
            "2026-07-01 12:00",
            "2026-10-25 02:30",
            "2026-10-25 03:00",
            "2030-12-31 23:00",
        ] {
            assert_eq!(custom.to_utc(dt(s)), berlin.to_utc(dt(s)), "{s}");
            let u = berlin.to_utc(dt(s));
            assert_eq!(custom.to_local(u), berlin.to_local(u), "{s}");
        }
    }
}
