//! ICS text → calendar model: sanitising, parsing and property extraction.
//!
//! Real files break strict parsers (a BOM, CR-only line endings, colon-less
//! lines, text after `END:VCALENDAR`, several `VCALENDAR`s, a missing or
//! misspelt `END:`, blank lines between folded lines). [`parse`] reads the
//! text in one streaming pass: it rebuilds a well-formed component structure
//! line by line — reporting everything it repairs or drops, with the original
//! line number — and reads content lines (parameters, quoting, unescaping)
//! as [`Prop`]s borrowed from the text: folded lines are joined once into
//! one buffer per file, parameters are read when asked for, and a value is
//! copied only when TEXT unescaping changes it; the calendar model then
//! owns what it keeps. A line or component that still fails is
//! dropped on its own; the rest of the file survives. Diagnostics may quote
//! the file, but never a private event's content: quotes are attached to
//! their component and left out once it is known to be private (its CLASS
//! may come after the bad line; an override inherits its series' class).
//!
//! Work and memory are bounded by the input: components nested deeper than
//! [`MAX_NESTING_DEPTH`] are skipped, only the properties that are read later
//! are kept (the first of each single-valued one), and at most
//! [`MAX_DIAGNOSTICS`] diagnostics are kept per calendar. Pure code.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use chrono::{Duration, NaiveDate, NaiveDateTime, NaiveTime, Weekday};

use super::zones::{CustomZone, Observance, YearlyRule, Zone, resolve_tzid};

/// A problem found while reading a calendar; never fatal for the whole file
/// unless no calendar at all could be found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diag {
    /// 1-based line in the source text, when known.
    pub line: Option<usize>,
    /// What happened, one sentence.
    pub message: String,
}

impl std::fmt::Display for Diag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Most diagnostics kept per calendar, for parsing and again for expansion;
/// the rest are counted in one closing diagnostic.
pub const MAX_DIAGNOSTICS: usize = 100;

/// Deepest component nesting read (`VCALENDAR` is depth 1, a `VEVENT` 2, its
/// `VALARM` 3); deeper components are skipped with a diagnostic.
pub const MAX_NESTING_DEPTH: usize = 8;

/// How a date or date-time value is anchored.
#[derive(Clone, Debug, PartialEq)]
pub enum Anchor {
    /// `VALUE=DATE`: a calendar day (time is midnight).
    Date,
    /// No zone: the user's local time.
    Floating,
    /// Trailing `Z`.
    Utc,
    /// A resolved `TZID`.
    Zoned(Zone),
    /// A `TZID` nothing could resolve (falls back to the user's zone).
    Unknown(String),
}

/// A DATE or DATE-TIME value as written.
#[derive(Clone, Debug, PartialEq)]
pub struct When {
    /// The wall-clock value as written (midnight for a DATE).
    pub wall: NaiveDateTime,
    /// How to read it.
    pub anchor: Anchor,
}

impl When {
    /// `true` for a DATE value.
    pub fn is_date(&self) -> bool {
        self.anchor == Anchor::Date
    }
}

/// Busy status, from `X-MICROSOFT-CDO-BUSYSTATUS` or `TRANSP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Busy {
    /// Busy.
    Busy,
    /// Tentative.
    Tentative,
    /// Free (also `TRANSP:TRANSPARENT`).
    Free,
    /// Out of office.
    Oof,
    /// Working elsewhere.
    Workingelsewhere,
}

impl Busy {
    /// Parses the lower-case rule-file spelling.
    pub fn parse(s: &str) -> Option<Busy> {
        // Outlook's own values, in any case, without allocating.
        const PLAIN: [(&str, Busy); 5] = [
            ("busy", Busy::Busy),
            ("tentative", Busy::Tentative),
            ("free", Busy::Free),
            ("oof", Busy::Oof),
            ("workingelsewhere", Busy::Workingelsewhere),
        ];
        if let Some((_, b)) = PLAIN.iter().find(|(n, _)| s.eq_ignore_ascii_case(n)) {
            return Some(*b);
        }
        match s.to_ascii_lowercase().replace(['-', '_', ' '], "").as_str() {
            "busy" => Some(Busy::Busy),
            "tentative" => Some(Busy::Tentative),
            "free" => Some(Busy::Free),
            "oof" | "outofoffice" | "away" => Some(Busy::Oof),
            "workingelsewhere" => Some(Busy::Workingelsewhere),
            _ => None,
        }
    }
}

/// The person's reply to an invitation (`PARTSTAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PartStat {
    /// ACCEPTED.
    Accepted,
    /// DECLINED.
    Declined,
    /// TENTATIVE.
    Tentative,
    /// NEEDS-ACTION.
    NeedsAction,
    /// DELEGATED or anything else.
    Other,
}

impl PartStat {
    fn parse(s: &str) -> PartStat {
        let mut buf = [0u8; 48];
        match upper_ascii(s, &mut buf) {
            "ACCEPTED" => PartStat::Accepted,
            "DECLINED" => PartStat::Declined,
            "TENTATIVE" => PartStat::Tentative,
            "NEEDS-ACTION" => PartStat::NeedsAction,
            _ => PartStat::Other,
        }
    }
}

/// An attendee or organizer.
#[derive(Clone, Debug, Default)]
pub struct Person {
    /// Email address (lower-case, `mailto:` removed), if any.
    pub email: Option<String>,
    /// Display name (`CN`).
    pub name: Option<String>,
    /// `PARTSTAT`, attendees only.
    pub partstat: Option<PartStat>,
}

impl Person {
    /// The domain part of the email address.
    pub fn domain(&self) -> Option<&str> {
        self.email
            .as_deref()
            .and_then(|e| e.rsplit_once('@'))
            .map(|(_, d)| d)
    }
}

/// The descriptive part of a `VEVENT`, shared by all its occurrences.
#[derive(Clone, Debug, Default)]
pub struct Details {
    /// SUMMARY.
    pub summary: Option<String>,
    /// LOCATION.
    pub location: Option<String>,
    /// DESCRIPTION.
    pub description: Option<String>,
    /// CATEGORIES, flattened.
    pub categories: Vec<String>,
    /// `STATUS:CANCELLED`.
    pub cancelled: bool,
    /// `STATUS:TENTATIVE`.
    pub status_tentative: bool,
    /// Derived busy status.
    pub busy: Option<Busy>,
    /// `TRANSP:TRANSPARENT`.
    pub transparent: bool,
    /// A CLASS other than PUBLIC (PRIVATE, CONFIDENTIAL, a value not
    /// understood, a line that cannot be read; of several CLASSes, any);
    /// an override (RECURRENCE-ID) without CLASS takes its series'.
    pub private: bool,
    /// ORGANIZER.
    pub organizer: Option<Person>,
    /// ATTENDEEs.
    pub attendees: Vec<Person>,
}

/// One PERIOD or DATE/DATE-TIME of an RDATE.
#[derive(Clone, Debug)]
pub struct RDate {
    /// Start.
    pub start: When,
    /// End of a PERIOD value.
    pub end: Option<When>,
    /// Duration of a PERIOD value written with a duration.
    pub duration: Option<Duration>,
}

/// A parsed `VEVENT`.
#[derive(Clone, Debug)]
pub struct Event {
    /// UID (synthesised from the line number when missing).
    pub uid: String,
    /// `false` when the UID was synthesised.
    pub uid_given: bool,
    /// 1-based line of `BEGIN:VEVENT`.
    pub line: usize,
    /// SEQUENCE.
    pub sequence: i64,
    /// DTSTART.
    pub start: When,
    /// DTEND.
    pub end: Option<When>,
    /// DURATION.
    pub duration: Option<Duration>,
    /// RRULE values, raw.
    pub rrules: Vec<String>,
    /// RDATE values.
    pub rdates: Vec<RDate>,
    /// EXDATE values.
    pub exdates: Vec<When>,
    /// RECURRENCE-ID and whether it has `RANGE=THISANDFUTURE`.
    pub recurrence_id: Option<(When, bool)>,
    /// Everything the rules look at.
    pub details: Arc<Details>,
}

/// A parsed file: its events plus what was repaired or dropped.
#[derive(Clone, Debug, Default)]
pub struct Calendar {
    /// All VEVENTs of all VCALENDARs in the file.
    pub events: Vec<Event>,
    /// `X-WR-TIMEZONE`, resolved.
    pub default_zone: Option<Zone>,
    /// `X-WR-CALNAME`.
    pub name: Option<String>,
    /// Problems (repairs, dropped lines or components).
    pub diags: Vec<Diag>,
}

/// Why a whole file was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IcsError {
    /// No `BEGIN:VCALENDAR` at all (an HTML login page, an empty body…).
    #[error("not an iCalendar file: no BEGIN:VCALENDAR found{0}")]
    NotCalendar(String),
}

/// Diagnostics of one calendar: the first [`MAX_DIAGNOSTICS`] are kept, the
/// rest only counted (one closing diagnostic says how many), so a file of
/// junk costs no memory per junk line.
///
/// A diagnostic may quote the file (a malformed line, an unreadable value),
/// but never a private event's content: the quote is held apart with the
/// component it came from, and only added in [`Diags::finish`], once the
/// whole file is read and it is known which components are private (a
/// CLASS may come after the bad line, an override inherits its series').
#[derive(Debug, Default)]
pub(crate) struct Diags {
    kept: Vec<Diag>,
    /// (index into `kept`, quote, owner: the component it belongs to).
    quotes: Vec<(usize, String, usize)>,
    more: usize,
}

impl Diags {
    /// Records a problem; `message` is only formatted when it is kept.
    pub(crate) fn push(&mut self, line: Option<usize>, message: impl FnOnce() -> String) {
        if self.kept.len() < MAX_DIAGNOSTICS {
            self.kept.push(Diag {
                line,
                message: message(),
            });
        } else {
            self.more += 1;
        }
    }

    /// Records a problem that would quote content of component `owner`.
    pub(crate) fn push_quoted(
        &mut self,
        line: Option<usize>,
        owner: usize,
        message: impl FnOnce() -> String,
        quote: impl FnOnce() -> String,
    ) {
        if self.kept.len() < MAX_DIAGNOSTICS {
            self.quotes.push((self.kept.len(), quote(), owner));
        }
        self.push(line, message);
    }

    /// The kept diagnostics, plus one counting those left out (`doing`:
    /// "reading this calendar"). Quotes are added except where `private`
    /// says their component is private.
    pub(crate) fn finish(mut self, doing: &str, private: impl Fn(usize) -> bool) -> Vec<Diag> {
        for (i, quote, owner) in std::mem::take(&mut self.quotes) {
            let m = &mut self.kept[i].message;
            if private(owner) {
                m.push_str(" (not quoted: private)");
            } else {
                m.push_str(": ");
                m.push_str(&quote);
            }
        }
        if self.more > 0 {
            self.kept.push(Diag {
                line: None,
                message: format!("… and {} more problems {doing} were not listed", self.more),
            });
        }
        self.kept
    }
}

/// Parses ICS text. Fails only when the text holds no calendar at all.
///
/// One pass over the text, line by line: nothing is kept per line except
/// the properties that are read later (those of VEVENTs, VTIMEZONEs and the
/// calendar's `X-WR-*`), so memory stays proportional to what is used.
pub fn parse(text: &str) -> Result<Calendar, IcsError> {
    parse_with(text, &ZoneCache::default())
}

/// VTIMEZONE blocks already compiled, by their content. Every Outlook file
/// repeats the same few blocks and compiling one costs far more than
/// looking it up, so the shell keeps one cache for all the files of a run
/// and hands it to [`parse_with`]: memoising a pure function, in a value
/// the caller owns (no process-wide state in the core).
#[derive(Default)]
pub struct ZoneCache {
    compiled: std::sync::Mutex<HashMap<String, Arc<CustomZone>>>,
}

/// Most distinct VTIMEZONE blocks a [`ZoneCache`] holds before it starts over.
const MAX_CACHED_ZONES: usize = 4096;

impl ZoneCache {
    fn get_or_compile(&self, key: String, z: &RawZone<'_>) -> Option<Arc<CustomZone>> {
        let cached = self.compiled.lock().ok().and_then(|m| m.get(&key).cloned());
        if let Some(c) = cached {
            return Some(c);
        }
        let c = Arc::new(compile_vtimezone(z)?);
        if let Ok(mut m) = self.compiled.lock() {
            if m.len() >= MAX_CACHED_ZONES {
                m.clear();
            }
            m.insert(key, c.clone());
        }
        Some(c)
    }
}

/// Like [`parse`], compiling VTIMEZONE blocks through `zones`.
pub fn parse_with(text: &str, zones: &ZoneCache) -> Result<Calendar, IcsError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let unfolded = Unfolded::of(text);
    let mut reader = Reader {
        zone_cache: Some(zones),
        ..Reader::default()
    };
    for &(no, piece) in &unfolded.lines {
        reader.line(no, unfolded.text(text, piece));
    }
    reader.end_of_text(unfolded.physical_lines);
    if reader.calendars == 0 {
        let head: String = text.chars().take(40).collect();
        let hint = if head.trim_start().starts_with('<') {
            " (the text looks like HTML: a login page or an error page?)".to_string()
        } else if head.trim().is_empty() {
            " (the text is empty)".to_string()
        } else {
            String::new()
        };
        return Err(IcsError::NotCalendar(hint));
    }
    let mut cal = reader.cal;
    let private = resolve_privacy(&mut cal.events, &reader.classes, &reader.event_owner);
    // Skipped overrides inherit too (their diagnostics may quote them).
    let private_series: std::collections::HashSet<&str> = cal
        .events
        .iter()
        .filter(|e| e.recurrence_id.is_none() && e.details.private)
        .map(|e| e.uid.as_str())
        .collect();
    let inherits = |o: usize| {
        reader
            .skipped_overrides
            .iter()
            .any(|(so, uid)| *so == o && private_series.contains(uid.as_str()))
    };
    cal.diags = reader.diags.finish("reading this calendar", |o| {
        private.get(o).copied().unwrap_or(true) || inherits(o)
    });
    // In file order (events are read, and report, when their calendar ends).
    cal.diags.sort_by_key(|d| d.line.unwrap_or(usize::MAX));
    Ok(cal)
}

/// Sets each event's `private`: its own CLASS if it has one (any CLASS but
/// PUBLIC, or an unreadable one, makes it private); an override
/// (RECURRENCE-ID) without CLASS takes its series': private when any master
/// with its UID is private. Returns, per owner, whether it is private.
fn resolve_privacy(events: &mut [Event], classes: &[Option<bool>], owners: &[usize]) -> Vec<bool> {
    let mut private: Vec<bool> = classes.iter().map(|c| *c == Some(true)).collect();
    let private_series: std::collections::HashSet<String> = events
        .iter()
        .zip(owners)
        .filter(|(e, o)| e.recurrence_id.is_none() && private[**o])
        .map(|(e, _)| e.uid.clone())
        .collect();
    for (e, &o) in events.iter_mut().zip(owners) {
        if classes[o].is_none() && e.recurrence_id.is_some() && private_series.contains(&e.uid) {
            private[o] = true;
        }
        if e.details.private != private[o] {
            Arc::make_mut(&mut e.details).private = private[o];
        }
    }
    private
}

/// Where an unfolded content line is: a slice of the text, or (when it was
/// folded) of [`Unfolded::joined`].
#[derive(Clone, Copy)]
enum Piece {
    Text(usize, usize),
    Joined(usize, usize),
}

/// The text's content lines, unfolded: each with the number of the physical
/// line it starts on. Lines end on CRLF, LF or a lone CR. Blank lines are
/// skipped, so that a continuation (leading space or tab) after doubled line
/// endings (`\r\n\r\n`) joins the last content line. A line that is not
/// folded stays in the text; folded ones are joined into one buffer, so the
/// reader borrows every line and a file costs two allocations here.
struct Unfolded {
    joined: String,
    lines: Vec<(usize, Piece)>,
    physical_lines: usize,
}

impl Unfolded {
    fn of(text: &str) -> Unfolded {
        let mut u = Unfolded {
            // Most of an Outlook file is folded (attendees, descriptions):
            // one allocation, never moved.
            joined: String::with_capacity(text.len()),
            lines: Vec::with_capacity(text.len() / 48 + 1),
            physical_lines: 0,
        };
        let mut pending: Option<(usize, Piece)> = None;
        let b = text.as_bytes();
        let mut start = 0;
        // Physical lines end on LF, CRLF or a lone CR; a CR that ends the
        // text ends its last line (as CRLF would).
        loop {
            let (end, next) = match memchr::memchr2(b'\n', b'\r', &b[start..]) {
                None => (b.len(), None),
                Some(k) => {
                    let end = start + k;
                    match (b[end], b.get(end + 1)) {
                        (b'\r', Some(b'\n')) => (end, Some(end + 2)),
                        (b'\r', None) => (end, None),
                        _ => (end, Some(end + 1)),
                    }
                }
            };
            let line = &text[start..end];
            u.physical_lines += 1;
            if !line.is_empty() {
                if let Some(rest) = line.strip_prefix([' ', '\t'])
                    && let Some((_, prev)) = pending.as_mut()
                {
                    *prev = u.join(text, *prev, rest);
                } else {
                    if let Some(done) = pending.take() {
                        u.lines.push(done);
                    }
                    pending = Some((u.physical_lines, Piece::Text(start, end)));
                }
            }
            match next {
                Some(n) => start = n,
                None => break,
            }
        }
        u.lines.extend(pending);
        u
    }

    /// `piece` with `rest` appended (the piece being joined is always the
    /// last one in `joined`).
    fn join(&mut self, text: &str, piece: Piece, rest: &str) -> Piece {
        let start = match piece {
            Piece::Joined(a, _) => a,
            Piece::Text(a, b) => {
                let start = self.joined.len();
                self.joined.push_str(&text[a..b]);
                start
            }
        };
        self.joined.push_str(rest);
        Piece::Joined(start, self.joined.len())
    }

    fn text<'a>(&'a self, text: &'a str, piece: Piece) -> &'a str {
        match piece {
            Piece::Text(a, b) => &text[a..b],
            Piece::Joined(a, b) => &self.joined[a..b],
        }
    }
}

/// Components that live directly in a VCALENDAR and never inside each other.
fn is_top_level_kind(name: &str) -> bool {
    matches!(
        name,
        "VEVENT" | "VTODO" | "VJOURNAL" | "VFREEBUSY" | "VTIMEZONE"
    )
}

/// Bytes of a name or parameter name (RFC 5545: letters, digits, `-`).
const NAME_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'-';
        b += 1;
    }
    t
};

/// Bytes that end an unquoted parameter value.
const VALUE_ENDS: [bool; 256] = {
    let mut t = [false; 256];
    t[b';' as usize] = true;
    t[b':' as usize] = true;
    t[b',' as usize] = true;
    t[b'"' as usize] = true;
    t
};

fn is_name_byte(b: u8) -> bool {
    NAME_BYTES[usize::from(b)]
}

fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_name_byte)
}

fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// A `VEVENT`'s properties that [`read_event`] looks at, each with its line.
struct RawEvent<'a> {
    line: usize,
    owner: usize,
    props: Vec<(usize, EventProp, Prop<'a>)>,
    /// Single-valued properties already kept (bits of [`EventProp::single_bit`]).
    seen: u16,
}

/// A `VTIMEZONE`: its properties and its STANDARD/DAYLIGHT parts.
struct RawZone<'a> {
    line: usize,
    props: Vec<Prop<'a>>,
    /// (`true` for DAYLIGHT, properties).
    parts: Vec<(bool, Vec<Prop<'a>>)>,
}

/// What one VCALENDAR holds until its end (events may use zones defined
/// after them).
#[derive(Default)]
struct Pending<'a> {
    /// The calendar's own owner index (its own lines and X-WR-*).
    owner: usize,
    events: Vec<RawEvent<'a>>,
    zones: Vec<RawZone<'a>>,
    x_wr_timezone: Option<String>,
    x_wr_calname: Option<String>,
}

/// Where the properties of an open component go.
#[derive(Clone, Copy, Debug)]
enum Slot {
    Calendar,
    Event(usize),
    Zone(usize),
    ZonePart(usize),
    /// Read for its structure only (VTODO, VALARM, X-…).
    Ignored,
}

struct Frame {
    name: String,
    slot: Slot,
    /// The calendar or top-level component this one belongs to (an index
    /// into `Reader::classes`).
    owner: usize,
}

/// The streaming reader: rebuilds a clean component structure line by line
/// (closing what was left open, splitting calendars, dropping what cannot be
/// a content line, reporting each repair with its line) and collects the
/// properties that are read.
#[derive(Default)]
struct Reader<'a> {
    /// Compiled VTIMEZONEs shared with other files (always set by `parse_with`).
    zone_cache: Option<&'a ZoneCache>,
    cal: Calendar,
    diags: Diags,
    /// Open components, at most [`MAX_NESTING_DEPTH`].
    stack: Vec<Frame>,
    /// Levels of components nested deeper than that, being skipped: only
    /// counted, so no structure grows with the nesting.
    skipped: usize,
    outside_reported: bool,
    /// VCALENDARs opened (explicitly or implicitly).
    calendars: usize,
    pending: Pending<'a>,
    /// For each calendar and top-level component, its own CLASS: `None`
    /// when it has none, `Some(true)` when any CLASS is not PUBLIC or could
    /// not be read (ambiguity resolves to private).
    classes: Vec<Option<bool>>,
    /// The owner of each event in `cal.events`.
    event_owner: Vec<usize>,
    /// Overrides without CLASS that could not be read: (owner, UID).
    skipped_overrides: Vec<(usize, String)>,
}

/// The properties of a VEVENT that [`read_event`] reads, named once per
/// line when it is read (not again by every step that looks at it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventProp {
    Uid,
    Summary,
    Location,
    Description,
    Categories,
    Sequence,
    Status,
    Transp,
    BusyStatus,
    Organizer,
    Attendee,
    DtStart,
    DtEnd,
    Duration,
    RRule,
    ExDate,
    RDate,
    RecurrenceId,
}

impl EventProp {
    /// The property an upper-case name is, if [`read_event`] reads it.
    fn of(upper: &str) -> Option<EventProp> {
        use EventProp::*;
        Some(match upper {
            "UID" => Uid,
            "SUMMARY" => Summary,
            "LOCATION" => Location,
            "DESCRIPTION" => Description,
            "CATEGORIES" => Categories,
            "SEQUENCE" => Sequence,
            "STATUS" => Status,
            "TRANSP" => Transp,
            "X-MICROSOFT-CDO-BUSYSTATUS" => BusyStatus,
            "ORGANIZER" => Organizer,
            "ATTENDEE" => Attendee,
            "DTSTART" => DtStart,
            "DTEND" => DtEnd,
            "DURATION" => Duration,
            "RRULE" => RRule,
            "EXDATE" => ExDate,
            "RDATE" => RDate,
            "RECURRENCE-ID" => RecurrenceId,
            _ => return None,
        })
    }

    /// A bit for each property that may appear once (RFC 5545 §3.6.1), 0
    /// for the others. Of several, the first is kept (as libical and
    /// ical.js do) and the others are reported; keeping only one also
    /// bounds what a file repeating them costs.
    fn single_bit(self) -> u16 {
        use EventProp::*;
        match self {
            Uid => 1,
            DtStart => 1 << 1,
            DtEnd => 1 << 2,
            Duration => 1 << 3,
            RecurrenceId => 1 << 4,
            Summary => 1 << 5,
            Location => 1 << 6,
            Description => 1 << 7,
            Sequence => 1 << 8,
            Status => 1 << 9,
            Transp => 1 << 10,
            Organizer => 1 << 11,
            BusyStatus => 1 << 12,
            Categories | Attendee | RRule | ExDate | RDate => 0,
        }
    }
}

/// The value of a raw event's first `kind` property.
fn first_value<'x>(ev: &'x RawEvent<'_>, kind: EventProp) -> Option<&'x str> {
    ev.props
        .iter()
        .find(|(_, k, _)| *k == kind)
        .map(|(_, _, p)| p.val.as_ref())
}

/// Whether a line is a CLASS property (however damaged the rest is).
fn names_class(t: &str) -> bool {
    t.as_bytes()[0] | 0x20 == b'c'
        && t.get(..5).is_some_and(|h| h.eq_ignore_ascii_case("CLASS"))
        && !t[5..].bytes().next().is_some_and(is_name_byte)
}

/// A CLASS value: `Some(true)` for anything but PUBLIC (RFC 5545 §3.8.1.3:
/// values not understood are treated as PRIVATE), `None` when empty.
fn class_is_private(v: &str) -> Option<bool> {
    let v = v.trim();
    (!v.is_empty()).then(|| !v.eq_ignore_ascii_case("PUBLIC"))
}

impl<'a> Reader<'a> {
    /// One unfolded line.
    fn line(&mut self, no: usize, t: &'a str) {
        let t = t.trim_end();
        // (Blank: what is left after trimming the end has nothing but space.)
        if t.is_empty() {
            return;
        }
        let starts = |prefix: &str| {
            t.get(..prefix.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(prefix))
        };
        // Most lines are content: one look at the first letter tells.
        match t.as_bytes()[0] | 0x20 {
            b'b' if starts("BEGIN:") => self.begin(no, t),
            b'e' if starts("END:") => self.end(no, t),
            _ => self.content(no, t),
        }
    }

    fn begin(&mut self, no: usize, t: &str) {
        let name = trim(&t[6..]).to_ascii_uppercase();
        if self.skipped > 0 {
            // Only a calendar or a top-level component ends the skip.
            if name != "VCALENDAR" && !is_top_level_kind(&name) {
                self.skipped += 1;
                return;
            }
            self.skipped = 0;
        }
        if !is_valid_name(&name) {
            if self.stack.is_empty() {
                self.outside(no);
            } else {
                let owner = self.owner();
                self.diags.push_quoted(
                    Some(no),
                    owner,
                    || "dropped a malformed line".into(),
                    || clip(t),
                );
            }
            return;
        }
        if name == "VCALENDAR" {
            if !self.stack.is_empty() {
                self.diags.push(Some(no), || {
                    "a new VCALENDAR began before the previous one ended; closed it".into()
                });
                self.close_to(0);
            }
        } else if self.stack.is_empty() {
            // A component outside any calendar: open an implicit one.
            self.diags.push(Some(no), || {
                format!("BEGIN:{name} outside a VCALENDAR; read it anyway")
            });
            self.open(no, "VCALENDAR".into());
        } else if is_top_level_kind(&name)
            && let Some(pos) = self.stack.iter().rposition(|f| is_top_level_kind(&f.name))
        {
            // These never nest: the open one lost its END (O365 feeds
            // dropping END:VEVENT, a misspelt END:VTOOD…).
            let open = &self.stack[pos].name;
            self.diags.push(Some(no), || {
                format!("BEGIN:{name} inside {open}: its END is missing or misspelt; closed it")
            });
            self.close_to(pos);
        }
        if self.stack.len() >= MAX_NESTING_DEPTH {
            self.diags.push(Some(no), || {
                format!(
                    "skipped a component nested more than {MAX_NESTING_DEPTH} deep, with everything in it"
                )
            });
            self.skipped = 1;
            return;
        }
        self.open(no, name);
    }

    fn open(&mut self, no: usize, name: String) {
        let owner = match self.stack.len() {
            0 | 1 => {
                self.classes.push(None);
                self.classes.len() - 1
            }
            _ => self.stack.last().map(|f| f.owner).unwrap_or(0),
        };
        let p = &mut self.pending;
        let slot = match (self.stack.last().map(|f| f.slot), name.as_str()) {
            (None, _) => {
                self.calendars += 1;
                p.owner = owner;
                Slot::Calendar
            }
            (Some(Slot::Calendar), "VEVENT") => {
                p.events.push(RawEvent {
                    line: no,
                    owner,
                    // An Outlook meeting has 20 to 40 (its attendees).
                    props: Vec::with_capacity(32),
                    seen: 0,
                });
                Slot::Event(p.events.len() - 1)
            }
            (Some(Slot::Calendar), "VTIMEZONE") => {
                p.zones.push(RawZone {
                    line: no,
                    props: Vec::new(),
                    parts: Vec::new(),
                });
                Slot::Zone(p.zones.len() - 1)
            }
            (Some(Slot::Zone(z)), "STANDARD" | "DAYLIGHT") => {
                p.zones[z].parts.push((name == "DAYLIGHT", Vec::new()));
                Slot::ZonePart(z)
            }
            _ => Slot::Ignored,
        };
        self.stack.push(Frame { name, slot, owner });
    }

    /// Closes the components open at `pos` and above.
    fn close_to(&mut self, pos: usize) {
        while self.stack.len() > pos {
            if let Some(Frame {
                slot: Slot::Calendar,
                ..
            }) = self.stack.pop()
            {
                self.end_calendar();
            }
        }
    }

    /// Where an END:`name` closes: the innermost component of that name, or
    /// (typos such as END:VCALENDARD) the innermost whose name prefixes it.
    fn end_position(&self, name: &str) -> Option<usize> {
        self.stack.iter().rposition(|f| f.name == name).or_else(|| {
            self.stack
                .iter()
                .rposition(|f| name.starts_with(f.name.as_str()))
        })
    }

    fn end(&mut self, no: usize, t: &str) {
        let mut buf = [0u8; 48];
        let name = upper_name(trim(&t[4..]), &mut buf);
        let name = name.as_ref();
        if self.skipped > 0 {
            // Inside skipped levels, an END closes one of them, unless it
            // names an open calendar or top-level component.
            let structural = self.end_position(name).is_some_and(|pos| {
                let open = &self.stack[pos].name;
                open == "VCALENDAR" || is_top_level_kind(open)
            });
            if !structural {
                self.skipped -= 1;
                return;
            }
            self.skipped = 0;
        }
        if self.stack.is_empty() {
            self.diags.push(Some(no), || {
                format!("END:{name} without a matching BEGIN; ignored")
            });
            return;
        }
        let owner = self.owner();
        match self.end_position(name) {
            Some(pos) => {
                if pos + 1 < self.stack.len() || self.stack[pos].name != name {
                    let top = self.stack.last().map(|f| f.name.as_str()).unwrap_or("");
                    self.diags.push_quoted(
                        Some(no),
                        owner,
                        || format!("an END does not match BEGIN:{top}; closed what was open"),
                        || format!("END:{}", clip(name)),
                    );
                }
                self.close_to(pos);
            }
            None => self.diags.push_quoted(
                Some(no),
                owner,
                || "ignored an END without a matching BEGIN".into(),
                || format!("END:{}", clip(name)),
            ),
        }
    }

    fn outside(&mut self, no: usize) {
        if !self.outside_reported {
            self.diags.push(Some(no), || {
                "ignored text outside BEGIN:VCALENDAR … END:VCALENDAR".into()
            });
            self.outside_reported = true;
        }
    }

    /// A content line: NAME[;params]:value.
    fn content(&mut self, no: usize, t: &'a str) {
        if self.skipped > 0 {
            return;
        }
        let Some((slot, owner)) = self.stack.last().map(|f| (f.slot, f.owner)) else {
            self.outside(no);
            return;
        };
        // A CLASS of the calendar or top-level component itself.
        let own_class = self.stack.len() <= 2 && names_class(t);
        let p = match read_content_line(t) {
            Ok(p) => p,
            Err(why) => {
                // A damaged CLASS line of its own hides the component.
                if own_class {
                    self.class(owner, Some(true));
                }
                self.diags
                    .push_quoted(Some(no), owner, || why.into(), || clip(t));
                return;
            }
        };
        if own_class {
            self.class(owner, class_is_private(&p.val));
            return;
        }
        let mut buf = [0u8; 48];
        let name = upper_ascii(p.name, &mut buf);
        let pending = &mut self.pending;
        match slot {
            Slot::Calendar => match name {
                "X-WR-TIMEZONE" => pending.x_wr_timezone = Some(p.val.into_owned()),
                "X-WR-CALNAME" => pending.x_wr_calname = Some(p.val.into_owned()),
                _ => {}
            },
            Slot::Event(i) => {
                let Some(kind) = EventProp::of(name) else {
                    return;
                };
                let ev = &mut pending.events[i];
                let bit = kind.single_bit();
                if ev.seen & bit != 0 {
                    self.diags.push(Some(no), || {
                        format!("the VEVENT has more than one {name}; kept the first")
                    });
                    return;
                }
                ev.seen |= bit;
                ev.props.push((no, kind, p));
            }
            Slot::Zone(z) => pending.zones[z].props.push(p),
            Slot::ZonePart(z) => {
                if let Some((_, props)) = pending.zones[z].parts.last_mut() {
                    props.push(p);
                }
            }
            Slot::Ignored => {}
        }
    }

    /// The component whose content the current line is.
    fn owner(&self) -> usize {
        self.stack.last().map(|f| f.owner).unwrap_or(0)
    }

    /// Records a CLASS value (`None`: empty, says nothing) of `owner`.
    fn class(&mut self, owner: usize, private: Option<bool>) {
        if let (Some(private), Some(c)) = (private, self.classes.get_mut(owner)) {
            *c = Some(c.unwrap_or(false) || private);
        }
    }

    fn end_of_text(&mut self, last: usize) {
        if let Some(top) = self.stack.last() {
            let top = top.name.clone();
            self.diags.push(Some(last), || {
                format!("the file ended inside {top}; closed it")
            });
            self.close_to(0);
        }
    }

    /// A VCALENDAR ended: its zones are compiled and its events read.
    fn end_calendar(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        let mut zones: HashMap<String, Arc<CustomZone>> = HashMap::new();
        for z in &pending.zones {
            match read_vtimezone(z, self.zone_cache) {
                Some(cz) => {
                    zones.insert(cz.tzid.clone(), cz);
                }
                None => self.diags.push(Some(z.line), || {
                    "a VTIMEZONE without TZID or usable STANDARD/DAYLIGHT; ignored".into()
                }),
            }
        }
        let zones = CalendarZones::new(zones);
        if let Some(tz) = pending.x_wr_timezone {
            match zones.resolve(&tz) {
                Some(z) => self.cal.default_zone = Some(z),
                None => self.diags.push_quoted(
                    None,
                    pending.owner,
                    || "unknown X-WR-TIMEZONE ignored".into(),
                    || format!("{:?}", clip(&tz)),
                ),
            }
        }
        if let Some(name) = pending.x_wr_calname {
            self.cal.name = Some(name);
        }
        // Each event's raw properties are freed as soon as it is read.
        self.cal.events.reserve(pending.events.len());
        self.event_owner.reserve(pending.events.len());
        for ev in pending.events {
            match read_event(&ev, &zones, &mut self.diags) {
                Ok(e) => {
                    self.cal.events.push(e);
                    self.event_owner.push(ev.owner);
                }
                Err((msg, quote)) => {
                    let message = || format!("skipped a VEVENT: {msg}");
                    match quote {
                        Some(q) => self
                            .diags
                            .push_quoted(Some(ev.line), ev.owner, message, || q),
                        None => self.diags.push(Some(ev.line), message),
                    }
                    // An override without CLASS may inherit private later.
                    if self.classes.get(ev.owner) == Some(&None)
                        && let Some(uid) = first_value(&ev, EventProp::Uid)
                        && first_value(&ev, EventProp::RecurrenceId).is_some()
                    {
                        self.skipped_overrides
                            .push((ev.owner, uid.trim().to_string()));
                    }
                }
            }
        }
    }
}

/// Properties whose values are TEXT (RFC 5545 §3.3.11: `\\`, `\;`, `\,`, `\n` escapes).
fn is_text_property(name: &str) -> bool {
    let mut buf = [0u8; 48];
    matches!(
        upper_ascii(name, &mut buf),
        "SUMMARY"
            | "LOCATION"
            | "DESCRIPTION"
            | "COMMENT"
            | "CATEGORIES"
            | "RESOURCES"
            | "CONTACT"
            | "UID"
            | "X-WR-CALNAME"
    )
}

/// Undoes TEXT escaping in one left-to-right pass.
fn unescape_text(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    // Copies the text between backslashes whole.
    while let Some(k) = memchr::memchr(b'\\', rest.as_bytes()) {
        out.push_str(&rest[..k]);
        let mut chars = rest[k + 1..].chars();
        match chars.next() {
            Some('n' | 'N') => out.push('\n'),
            Some(other @ ('\\' | ';' | ',' | ':' | '"')) => out.push(other),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
        rest = chars.as_str();
    }
    out.push_str(rest);
    out
}

/// A content line, borrowed from the text: its name, its parameters as
/// written (read on demand by [`Prop::params`]) and its value (unescaped
/// for TEXT values, which is the only copy).
#[derive(Clone, Debug)]
pub struct Prop<'a> {
    /// The property name as written.
    pub name: &'a str,
    /// `;KEY=VALUE…` as written, already checked by [`parse_content_line`].
    params: &'a str,
    /// Where in `params` the first of each [`Known`] parameter is, noted
    /// while the line was checked.
    known: KnownParams,
    /// The value.
    pub val: Cow<'a, str>,
}

/// The parameters looked up on most lines read (every attendee's
/// PARTSTAT, every date's TZID and VALUE, the organizer's CN): where
/// their values are is noted while a line is checked, so a lookup reads
/// no parameter again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Known {
    Tzid,
    Value,
    PartStat,
    Cn,
}

impl Known {
    /// The known parameter `key` is, in any case (looked at for every
    /// parameter of every line: a few instructions, no loop).
    #[inline(always)]
    fn of(key: &str) -> Option<Known> {
        // These names are letters only: a byte ORed with 0x20 is one of
        // their lower-case letters exactly when it is that letter in
        // either case. Compared as one word.
        const FOLD: u64 = 0x2020_2020_2020_2020;
        let b = key.as_bytes();
        let word = |n: usize| {
            let mut w = [0u8; 8];
            w[..n].copy_from_slice(&b[..n]);
            u64::from_le_bytes(w) | (FOLD >> (8 * (8 - n)))
        };
        let name = |s: &[u8]| {
            let mut w = [0u8; 8];
            w[..s.len()].copy_from_slice(s);
            u64::from_le_bytes(w)
        };
        match b.len() {
            2 if word(2) == name(b"cn") => Some(Known::Cn),
            4 if word(4) == name(b"tzid") => Some(Known::Tzid),
            5 if word(5) == name(b"value") => Some(Known::Value),
            8 if word(8) == name(b"partstat") => Some(Known::PartStat),
            _ => None,
        }
    }
}

/// For each [`Known`] parameter, where the value of its first occurrence
/// is in a line's parameters (start, end), or [`KnownParams::ABSENT`] (no
/// such parameter) or [`KnownParams::NO_VALUE`] (its first has no `=`);
/// `None` when the parameters are too long to note (they are scanned then).
#[derive(Clone, Copy, Debug)]
struct KnownParams(Option<[(u32, u32); 4]>);

impl KnownParams {
    const ABSENT: (u32, u32) = (u32::MAX, 0);
    const NO_VALUE: (u32, u32) = (u32::MAX, 1);

    fn new(params_len: usize) -> KnownParams {
        KnownParams((params_len < u32::MAX as usize).then_some([Self::ABSENT; 4]))
    }

    /// Notes parameter `key` with its value as written, `value` (a range
    /// of the parameters), if it is the first of its key.
    fn note(&mut self, key: &str, value: Option<std::ops::Range<usize>>) {
        if let (Some(places), Some(k)) = (&mut self.0, Known::of(key)) {
            let place = &mut places[k as usize];
            if *place == Self::ABSENT {
                // Ends within the parameters, shorter than u32::MAX (`new`).
                *place = value.map_or(Self::NO_VALUE, |v| (v.start as u32, v.end as u32));
            }
        }
    }
}

impl<'a> Prop<'a> {
    /// The parameters: (key, value), a single quoted value unquoted.
    pub fn params(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + use<'a> {
        let params = self.params;
        let mut i = 0;
        std::iter::from_fn(move || {
            if i >= params.len() {
                return None;
            }
            read_param(params, &mut i)
        })
    }
}

/// Reads one `;KEY[=VALUE[,VALUE…]]` of `line` at `i` (on the `;`) and
/// moves `i` past it. Parameter values may be quoted and then hold `;`, `:`
/// and `,`; a single quoted value comes back unquoted. `None` when it is
/// malformed.
fn read_param<'a>(line: &'a str, i: &mut usize) -> Option<(&'a str, Option<&'a str>)> {
    let (key, raw) = scan_param(line, i)?;
    Some((key, raw.map(unquote)))
}

/// A parameter value as written, its quotes taken off when it is one
/// quoted value.
fn unquote(raw: &str) -> &str {
    let single_quoted = raw.len() >= 2
        && raw.starts_with('"')
        && raw.ends_with('"')
        && memchr::memchr(b'"', &raw.as_bytes()[1..raw.len() - 1]).is_none();
    if single_quoted {
        &raw[1..raw.len() - 1]
    } else {
        raw
    }
}

/// [`read_param`] without unquoting: the key and the value as written.
/// Checking a line's parameters needs only this.
fn scan_param<'a>(line: &'a str, i: &mut usize) -> Option<(&'a str, Option<&'a str>)> {
    let b = line.as_bytes();
    *i += 1;
    let k0 = *i;
    while *i < b.len() && is_name_byte(b[*i]) {
        *i += 1;
    }
    if *i == k0 {
        return None;
    }
    let key = &line[k0..*i];
    if b.get(*i) != Some(&b'=') {
        return Some((key, None));
    }
    *i += 1;
    let v0 = *i;
    loop {
        if b.get(*i) == Some(&b'"') {
            let close = memchr::memchr(b'"', &b[*i + 1..])?;
            *i += close + 2;
        } else {
            *i = value_end(b, *i);
        }
        if b.get(*i) == Some(&b',') {
            *i += 1;
            continue;
        }
        break;
    }
    Some((key, Some(&line[v0..*i])))
}

/// Where the unquoted parameter value at `i` ends: the first of `;`, `:`,
/// `,` and `"` ([`VALUE_ENDS`]) at or after `i`, or the end of `b`. Looks
/// at eight bytes at a time (every parameter of every line is read here):
/// in `w ^ (c × 0x01…)` a byte equal to `c` is zero, and the lowest byte
/// that `(x − 0x01…) & !x & 0x80…` flags is always a zero one (a borrow
/// only flags bytes above a zero), so the lowest flag of the four is the
/// first end.
fn value_end(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let equal = |w: u64, c: u8| zero_bytes(w ^ (ONES * u64::from(c)));
    while let Some(Ok(word)) = b.get(i..i + 8).map(<[u8; 8]>::try_from) {
        let w = u64::from_le_bytes(word);
        let ends = equal(w, b';') | equal(w, b':') | equal(w, b',') | equal(w, b'"');
        if ends != 0 {
            return i + (ends.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && !VALUE_ENDS[usize::from(b[i])] {
        i += 1;
    }
    i
}

/// Reads `NAME *(;PARAM=value[,value]) : VALUE` (an unfolded line).
/// Parameter values may be quoted and then hold `;`, `:` and `,`.
pub fn parse_content_line(line: &str) -> Option<Prop<'_>> {
    read_content_line(line).ok()
}

/// A line without a `:` or whose name is not followed by `;` or `:`.
const MALFORMED: &str = "dropped a malformed line";
/// A line with a name and a `:` whose parameters cannot be read.
const NOT_CONTENT_LINE: &str = "dropped a line that is not NAME[;PARAM=…]:VALUE";

/// [`parse_content_line`] in one pass, saying which of [`MALFORMED`] and
/// [`NOT_CONTENT_LINE`] a line it cannot read is.
fn read_content_line(line: &str) -> Result<Prop<'_>, &'static str> {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() && is_name_byte(b[i]) {
        i += 1;
    }
    if i == 0 || !matches!(b.get(i), Some(b';' | b':')) {
        return Err(MALFORMED);
    }
    let name = &line[..i];
    let p0 = i;
    // Unreadable parameters: malformed when the line has no `:` at all.
    let unreadable = || {
        if memchr::memchr(b':', &b[p0..]).is_some() {
            NOT_CONTENT_LINE
        } else {
            MALFORMED
        }
    };
    // (The line is longer than its parameters.)
    let mut known = KnownParams::new(line.len());
    loop {
        match b.get(i) {
            Some(b':') => break,
            Some(b';') => match scan_param(line, &mut i) {
                // A value ends where the scan stopped, at `i`.
                Some((key, value)) => {
                    known.note(key, value.map(|v| i - p0 - v.len()..i - p0));
                }
                None => return Err(unreadable()),
            },
            _ => return Err(unreadable()),
        }
    }
    let prop = Prop {
        name,
        params: &line[p0..i],
        known,
        val: Cow::Borrowed(&line[i + 1..]),
    };
    let raw = &line[i + 1..];
    let text = || {
        is_text_property(name)
            || param(&prop, "VALUE").is_some_and(|v| v.eq_ignore_ascii_case("TEXT"))
    };
    // memchr: `str::contains` scans byte by byte, and most values are long.
    Ok(
        if memchr::memchr(b'\\', raw.as_bytes()).is_some() && text() {
            Prop {
                val: Cow::Owned(unescape_text(raw)),
                ..prop
            }
        } else {
            prop
        },
    )
}

/// `str::trim`, without looking at characters when neither end is space
/// (ASCII above the space and below DEL never is).
fn trim(s: &str) -> &str {
    let plain = |b: Option<&u8>| b.is_some_and(|&b| b > b' ' && b < 0x7f);
    if plain(s.as_bytes().first()) && plain(s.as_bytes().last()) {
        s
    } else {
        s.trim()
    }
}

/// The first `key` parameter's value, trimmed and unquoted. A [`Known`]
/// parameter's value is where the line's check noted it; for any other,
/// the parameters before it are only scanned (unquoting each CN on the
/// way to an attendee's PARTSTAT cost more than the lookup itself).
fn param<'a>(p: &Prop<'a>, key: &str) -> Option<&'a str> {
    let clean = |v: &'a str| {
        let v = trim(unquote(v));
        if v.starts_with('"') || v.ends_with('"') {
            v.trim_matches('"')
        } else {
            v
        }
    };
    if let (Some(places), Some(k)) = (p.known.0, Known::of(key)) {
        return match places[k as usize] {
            KnownParams::ABSENT | KnownParams::NO_VALUE => None,
            (start, end) => p.params.get(start as usize..end as usize).map(clean),
        };
    }
    let mut i = 0;
    while i < p.params.len() {
        let (k, raw) = scan_param(p.params, &mut i)?;
        if k.eq_ignore_ascii_case(key) {
            return raw.map(clean);
        }
    }
    None
}

/// The first property called `name` (any case).
fn find_prop<'x, 'a>(props: &'x [Prop<'a>], name: &str) -> Option<&'x Prop<'a>> {
    props.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

/// A `VTIMEZONE` → zone, through the run's cache when there is one.
fn read_vtimezone(z: &RawZone<'_>, cache: Option<&ZoneCache>) -> Option<Arc<CustomZone>> {
    fn key(props: &[Prop<'_>], out: &mut String) {
        for p in props {
            out.push_str(p.name);
            for (k, v) in p.params() {
                out.push(';');
                out.push_str(k);
                out.push('=');
                out.push_str(v.unwrap_or(""));
            }
            out.push(':');
            out.push_str(&p.val);
            out.push('\u{1}');
        }
        out.push('\u{2}');
    }
    let Some(cache) = cache else {
        return compile_vtimezone(z).map(Arc::new);
    };
    let mut k = String::new();
    key(&z.props, &mut k);
    for (daylight, props) in &z.parts {
        k.push_str(if *daylight { "DAYLIGHT" } else { "STANDARD" });
        key(props, &mut k);
    }
    cache.get_or_compile(k, z)
}

fn compile_vtimezone(z: &RawZone<'_>) -> Option<CustomZone> {
    let tzid = find_prop(&z.props, "TZID")?
        .val
        .trim()
        .trim_matches('"')
        .to_string();
    let mut obs = Vec::new();
    for (daylight, props) in &z.parts {
        let Some(offset_to) = find_prop(props, "TZOFFSETTO").and_then(|p| parse_offset(&p.val))
        else {
            continue;
        };
        let offset_from = find_prop(props, "TZOFFSETFROM")
            .and_then(|p| parse_offset(&p.val))
            .unwrap_or(offset_to);
        let dtstart = find_prop(props, "DTSTART")
            .and_then(|p| parse_wall(&p.val).map(|(w, _)| w))
            .unwrap_or_else(|| {
                NaiveDate::from_ymd_opt(1970, 1, 1)
                    .unwrap_or_default()
                    .and_time(NaiveTime::MIN)
            });
        let rule = find_prop(props, "RRULE").and_then(|p| parse_yearly_rule(&p.val));
        let mut rdates = Vec::new();
        for p in props
            .iter()
            .filter(|p| p.name.eq_ignore_ascii_case("RDATE"))
        {
            for v in p.val.split(',') {
                if let Some((w, _)) = parse_wall(v) {
                    rdates.push(w);
                }
            }
        }
        obs.push(Observance {
            dtstart,
            offset_from,
            offset_to,
            rule,
            rdates,
            daylight: *daylight,
        });
    }
    CustomZone::new(tzid, &obs)
}

fn parse_yearly_rule(s: &str) -> Option<YearlyRule> {
    let mut rule = YearlyRule::default();
    let mut yearly = false;
    for part in s.split(';') {
        let (k, v) = part.split_once('=')?;
        match k.trim().to_ascii_uppercase().as_str() {
            "FREQ" => yearly = v.trim().eq_ignore_ascii_case("YEARLY"),
            "BYMONTH" => rule.months = v.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
            "BYMONTHDAY" => {
                rule.monthdays = v.split(',').filter_map(|x| x.trim().parse().ok()).collect()
            }
            "BYDAY" => {
                rule.days = v
                    .split(',')
                    .filter_map(|x| parse_nth_weekday(x.trim()))
                    .collect()
            }
            "UNTIL" => {
                rule.until = parse_wall(v).map(|(w, _)| w.and_utc().timestamp());
            }
            "COUNT" => rule.count = v.trim().parse().ok(),
            _ => {}
        }
    }
    // Real zones list each month and weekday once; duplicates only cost time.
    rule.months.sort_unstable();
    rule.months.dedup();
    rule.monthdays.sort_unstable();
    rule.monthdays.dedup();
    rule.days
        .sort_by_key(|(n, wd)| (*n, wd.num_days_from_monday()));
    rule.days.dedup();
    yearly.then_some(rule)
}

/// `-1SU`, `2MO`, `TU`.
pub fn parse_nth_weekday(s: &str) -> Option<(i32, Weekday)> {
    let s = trim(s);
    if s.len() < 2 || !s.is_char_boundary(s.len() - 2) {
        return None;
    }
    let (num, wd) = s.split_at(s.len() - 2);
    let wd = match wd.to_ascii_uppercase().as_str() {
        "MO" => Weekday::Mon,
        "TU" => Weekday::Tue,
        "WE" => Weekday::Wed,
        "TH" => Weekday::Thu,
        "FR" => Weekday::Fri,
        "SA" => Weekday::Sat,
        "SU" => Weekday::Sun,
        _ => return None,
    };
    let n = match num.trim() {
        "" | "+" => 0,
        n => n.trim_start_matches('+').parse().ok()?,
    };
    Some((n, wd))
}

fn parse_offset(s: &str) -> Option<i32> {
    let s = trim(s);
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => (1, s),
    };
    if rest.len() < 4 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i32 = rest[0..2].parse().ok()?;
    let m: i32 = rest[2..4].parse().ok()?;
    let sec: i32 = if rest.len() >= 6 {
        rest[4..6].parse().ok()?
    } else {
        0
    };
    Some(sign * (h * 3600 + m * 60 + sec))
}

/// Parses `YYYYMMDD` or `YYYYMMDDTHHMMSS[Z]`; returns (wall, is_utc). A DATE
/// has midnight as wall time.
pub fn parse_wall(s: &str) -> Option<(NaiveDateTime, bool)> {
    let s = trim(s);
    match basic_wall(s.as_bytes()) {
        Some(fast) => fast,
        None => any_wall(s),
    }
}

/// [`parse_wall`] of any form it accepts (`s` trimmed).
fn any_wall(s: &str) -> Option<(NaiveDateTime, bool)> {
    let (s, utc) = match s.strip_suffix(['Z', 'z']) {
        Some(x) => (x, true),
        None => (s, false),
    };
    let (d, t) = match s.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    if d.len() != 8 || !d.bytes().all(|b| b.is_ascii_digit()) {
        // Tolerate ISO dashes: 2026-11-27
        let compact: String = d.chars().filter(|c| *c != '-').collect();
        if compact.len() != 8 || compact.len() == d.len() {
            return None;
        }
        return any_wall(&format!(
            "{compact}{}{}",
            t.map(|t| format!("T{}", t.replace(':', "")))
                .unwrap_or_default(),
            if utc { "Z" } else { "" }
        ));
    }
    let date = NaiveDate::from_ymd_opt(
        d[0..4].parse().ok()?,
        d[4..6].parse().ok()?,
        d[6..8].parse().ok()?,
    )?;
    let time = match t {
        None => NaiveTime::MIN,
        Some(t) => {
            let t = t.split(['.', ',']).next().unwrap_or(t);
            if !t.bytes().all(|b| b.is_ascii_digit()) || !(t.len() == 4 || t.len() == 6) {
                return None;
            }
            let h: u32 = t[0..2].parse().ok()?;
            let m: u32 = t[2..4].parse().ok()?;
            let sec: u32 = if t.len() == 6 {
                t[4..6].parse().ok()?
            } else {
                0
            };
            // 24:00:00 and leap seconds are clamped.
            if h == 24 && m == 0 && sec == 0 {
                return Some((date.succ_opt()?.and_time(NaiveTime::MIN), utc));
            }
            NaiveTime::from_hms_opt(h, m, sec.min(59))?
        }
    };
    Some((date.and_time(time), utc && t.is_some()))
}

/// A calendar's VTIMEZONEs, and the TZIDs its events name, each resolved
/// once (a calendar names a few zones hundreds of times).
struct CalendarZones {
    custom: HashMap<String, Arc<CustomZone>>,
    resolved: std::cell::RefCell<Vec<(String, Option<Zone>)>>,
}

/// Most TZIDs a [`CalendarZones`] remembers (the others are resolved each time).
const MAX_RESOLVED_TZIDS: usize = 32;

impl CalendarZones {
    fn new(custom: HashMap<String, Arc<CustomZone>>) -> CalendarZones {
        CalendarZones {
            custom,
            resolved: Default::default(),
        }
    }

    /// [`resolve_tzid`] against this calendar's zones.
    fn resolve(&self, tzid: &str) -> Option<Zone> {
        let mut resolved = self.resolved.borrow_mut();
        if let Some((_, z)) = resolved.iter().find(|(t, _)| t == tzid) {
            return z.clone();
        }
        let z = resolve_tzid(tzid, &self.custom);
        if resolved.len() < MAX_RESOLVED_TZIDS {
            resolved.push((tzid.to_string(), z.clone()));
        }
        z
    }
}

/// [`parse_wall`] of the forms almost every file writes, read straight
/// from the bytes: `YYYYMMDD`, `YYYYMMDDTHHMMSS` and `YYYYMMDDTHHMMSSZ`.
/// `None` for any other text (then the general reading decides).
fn basic_wall(b: &[u8]) -> Option<Option<(NaiveDateTime, bool)>> {
    let shape = match b.len() {
        8 => true,
        15 => b[8] == b'T',
        16 => b[8] == b'T' && b[15] == b'Z',
        _ => false,
    };
    if !shape {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let time = if b.len() == 8 {
        None
    } else {
        Some((num(9..11)?, num(11..13)?, num(13..15)?))
    };
    let date = NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, mo, d);
    let Some(date) = date else {
        return Some(None);
    };
    let utc = b.len() == 16;
    Some(match time {
        None => Some((date.and_time(NaiveTime::MIN), false)),
        // 24:00:00 and leap seconds are clamped, as below.
        Some((24, 0, 0)) => date
            .succ_opt()
            .map(|next| (next.and_time(NaiveTime::MIN), utc)),
        Some((h, m, sec)) => {
            NaiveTime::from_hms_opt(h, m, sec.min(59)).map(|t| (date.and_time(t), utc))
        }
    })
}

/// Reads one value of a DTSTART-like property.
fn read_when(
    value: &str,
    tzid: Option<&str>,
    value_type: Option<&str>,
    zones: &CalendarZones,
) -> Option<When> {
    let (wall, utc) = parse_wall(value)?;
    let has_time = memchr::memchr2(b'T', b't', value.as_bytes()).is_some();
    let _ = value_type; // VALUE=DATE-TIME with a bare date is read as a DATE too
    if !has_time {
        return Some(When {
            wall: wall.date().and_time(NaiveTime::MIN),
            anchor: Anchor::Date,
        });
    }
    let anchor = if utc {
        Anchor::Utc
    } else if let Some(tzid) = tzid.filter(|t| !trim(t).is_empty()) {
        match zones.resolve(tzid) {
            Some(Zone::Utc) => Anchor::Utc,
            Some(z) => Anchor::Zoned(z),
            None => Anchor::Unknown(tzid.to_string()),
        }
    } else {
        Anchor::Floating
    };
    Some(When { wall, anchor })
}

/// Parses an RFC 5545 duration (`P1D`, `-PT15M`, `P1W`, `PT1H30M`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = trim(s);
    let (neg, s) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let s = s.strip_prefix(['P', 'p'])?;
    let mut total = Duration::zero();
    let mut num = String::new();
    let mut in_time = false;
    let mut any = false;
    for c in s.chars() {
        match c {
            '0'..='9' => num.push(c),
            'T' | 't' => in_time = true,
            _ => {
                let n: i64 = num.parse().ok()?;
                num.clear();
                any = true;
                let d = match (c.to_ascii_uppercase(), in_time) {
                    ('W', _) => Duration::try_weeks(n)?,
                    ('D', _) => Duration::try_days(n)?,
                    ('H', true) => Duration::try_hours(n)?,
                    ('M', true) => Duration::try_minutes(n)?,
                    ('S', true) => Duration::try_seconds(n)?,
                    _ => return None,
                };
                total = total.checked_add(&d)?;
            }
        }
    }
    if !num.is_empty() || !any {
        return None;
    }
    Some(if neg { -total } else { total })
}

/// An ORGANIZER or ATTENDEE (`with_name`: with its CN).
fn person(p: &Prop<'_>, with_name: bool) -> Person {
    let v = trim(&p.val);
    let email = if v
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("mailto:"))
    {
        Some(trim(&v[7..]).to_ascii_lowercase())
    } else if v.contains('@') {
        Some(v.to_ascii_lowercase())
    } else {
        param(p, "EMAIL").map(|e| e.to_ascii_lowercase())
    };
    Person {
        email: email.filter(|e| !e.is_empty()),
        name: with_name
            .then(|| param(p, "CN").map(str::to_string))
            .flatten(),
        partstat: param(p, "PARTSTAT").map(PartStat::parse),
    }
}

/// `s` upper-cased (ASCII letters), without allocating when it is short.
fn upper_name<'a>(s: &'a str, buf: &'a mut [u8; 48]) -> Cow<'a, str> {
    if s.len() <= buf.len() && s.is_ascii() {
        Cow::Borrowed(upper_ascii(s, buf))
    } else {
        Cow::Owned(s.to_ascii_uppercase())
    }
}

/// Whether ASCII `s` may hold a lower-case letter: `false` means it holds
/// none. Every lower-case letter has both 0x40 and 0x20 set (so do a few
/// signs, which only cost an upper-casing that changes nothing); eight
/// bytes at a time.
fn may_have_lower_case(s: &[u8]) -> bool {
    const BIT6: u64 = 0x4040_4040_4040_4040;
    // Bit 5 of each byte moved onto its bit 6 (ASCII: no bit 7 to carry).
    let lower = |w: u64| w & (w << 1) & BIT6 != 0;
    let word = |c: &[u8]| c.iter().fold(0u64, |w, &b| w << 8 | u64::from(b));
    match s.len() {
        // The bytes' order in the word does not matter.
        0..8 => lower(word(s)),
        // The last eight bytes overlap the words before: no copy of a tail.
        n => s.chunks_exact(8).any(|c| lower(word(c))) || lower(word(&s[n - 8..])),
    }
}

/// Upper-cases a short ASCII name into `buf` without allocating (longer
/// or non-ASCII names come back unchanged: they match no known property).
fn upper_ascii<'a>(s: &'a str, buf: &'a mut [u8; 48]) -> &'a str {
    // Most names are written in upper case already.
    if s.len() > buf.len() || !s.is_ascii() || !may_have_lower_case(s.as_bytes()) {
        return s;
    }
    let out = &mut buf[..s.len()];
    out.copy_from_slice(s.as_bytes());
    out.make_ascii_uppercase();
    std::str::from_utf8(out).unwrap_or(s)
}

/// A VEVENT's properties → event. Problems quote values only through
/// [`Diags::push_quoted`]; an event that cannot be read comes back as
/// (why, quote of the value at fault).
fn read_event(
    ev: &RawEvent<'_>,
    zones: &CalendarZones,
    diags: &mut Diags,
) -> Result<Event, EventError> {
    let mut draft = Draft::default();
    let attendees = ev
        .props
        .iter()
        .filter(|(_, k, _)| *k == EventProp::Attendee);
    draft.details.attendees.reserve_exact(attendees.count());
    for &(line, kind, ref p) in &ev.props {
        if !draft.detail(kind, p) {
            let at = At {
                line,
                owner: ev.owner,
            };
            draft.timing(kind, p, zones, at, diags)?;
        }
    }
    draft.finish(ev.line)
}

/// Why an event was dropped, and the value that made it so (quoted only
/// for events that are not private).
type EventError = (String, Option<String>);

/// Where a property was read: its line and the component that owns it.
#[derive(Clone, Copy)]
struct At {
    line: usize,
    owner: usize,
}

impl At {
    /// Says that an unreadable `what` valued `v` was ignored.
    fn ignored(self, diags: &mut Diags, what: &str, v: &str) {
        diags.push_quoted(
            Some(self.line),
            self.owner,
            || format!("ignored an unreadable {what}"),
            || format!("{:?}", clip(v)),
        );
    }
}

/// An event's properties as they are read, before [`Draft::finish`].
#[derive(Default)]
struct Draft {
    details: Details,
    start: Option<When>,
    end: Option<When>,
    duration: Option<Duration>,
    uid: Option<String>,
    sequence: i64,
    rrules: Vec<String>,
    rdates: Vec<RDate>,
    exdates: Vec<When>,
    recurrence_id: Option<(When, bool)>,
    cdo_busy: Option<Busy>,
}

impl Draft {
    /// Reads a property that describes the event rather than when it is;
    /// false for any other.
    fn detail(&mut self, kind: EventProp, p: &Prop<'_>) -> bool {
        use EventProp::*;
        let val: &str = &p.val;
        let d = &mut self.details;
        match kind {
            Uid => self.uid = Some(trim(val).to_string()),
            Summary => d.summary = Some(val.to_string()),
            Location => d.location = Some(val.to_string()).filter(|s| !s.is_empty()),
            Description => d.description = Some(val.to_string()),
            Categories => d.categories.extend(
                val.split(',')
                    .map(|s| trim(s).to_string())
                    .filter(|s| !s.is_empty()),
            ),
            Sequence => self.sequence = trim(val).parse().unwrap_or(0),
            Status => match trim(val).to_ascii_uppercase().as_str() {
                "CANCELLED" | "CANCELED" => d.cancelled = true,
                "TENTATIVE" => d.status_tentative = true,
                _ => {}
            },
            Transp => d.transparent = trim(val).eq_ignore_ascii_case("TRANSPARENT"),
            BusyStatus => self.cdo_busy = Busy::parse(trim(val)),
            Organizer => d.organizer = Some(person(p, true)),
            // Attendees: the rules need addresses and replies, not names.
            Attendee => d.attendees.push(person(p, false)),
            RRule if !trim(val).is_empty() => self.rrules.push(trim(val).to_string()),
            RRule => {}
            DtStart | DtEnd | Duration | ExDate | RDate | RecurrenceId => return false,
        }
        true
    }

    /// Reads a property that says when the event is (start, end, duration,
    /// recurrence exceptions); an unreadable DTSTART or RECURRENCE-ID drops
    /// the event, anything else unreadable is ignored and said.
    fn timing(
        &mut self,
        kind: EventProp,
        p: &Prop<'_>,
        zones: &CalendarZones,
        at: At,
        diags: &mut Diags,
    ) -> Result<(), EventError> {
        let val: &str = &p.val;
        let (tzid, value_type) = (param(p, "TZID"), param(p, "VALUE"));
        let when = |v: &str| read_when(v, tzid, value_type, zones);
        let fatal = |what: &str| {
            Err((
                format!("unreadable {what}"),
                Some(format!("{:?}", clip(val))),
            ))
        };
        let values = || val.split(',').filter(|v| !trim(v).is_empty());
        match kind {
            EventProp::DtStart => match when(val) {
                Some(w) => self.start = Some(w),
                None => return fatal("DTSTART"),
            },
            EventProp::DtEnd => match when(val) {
                Some(w) => self.end = Some(w),
                None => at.ignored(diags, "DTEND", val),
            },
            EventProp::Duration => match parse_duration(val) {
                Some(d) => self.duration = Some(d),
                None => at.ignored(diags, "DURATION", val),
            },
            EventProp::ExDate => {
                for v in values() {
                    match when(v) {
                        Some(w) => self.exdates.push(w),
                        None => at.ignored(diags, "EXDATE", v),
                    }
                }
            }
            EventProp::RDate => {
                for v in values() {
                    match rdate(v, &when) {
                        Some(r) => self.rdates.push(r),
                        None => at.ignored(diags, "RDATE", v),
                    }
                }
            }
            EventProp::RecurrenceId => {
                let range =
                    param(p, "RANGE").is_some_and(|r| r.eq_ignore_ascii_case("THISANDFUTURE"));
                match when(val) {
                    Some(w) => self.recurrence_id = Some((w, range)),
                    None => return fatal("RECURRENCE-ID"),
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The event, once every property is read: it needs a DTSTART; its
    /// busy status comes from Outlook's own property, else TRANSP and
    /// STATUS; a missing UID is synthesised from the line.
    fn finish(self, line: usize) -> Result<Event, EventError> {
        let Some(start) = self.start else {
            return Err(("it has no DTSTART".into(), None));
        };
        let mut details = self.details;
        details.busy = Some(match self.cdo_busy {
            Some(b) => b,
            None if details.transparent => Busy::Free,
            None if details.status_tentative => Busy::Tentative,
            None => Busy::Busy,
        });
        let uid = self.uid.filter(|u| !u.is_empty());
        let uid_given = uid.is_some();
        let uid = uid.unwrap_or_else(|| format!("calstatus-no-uid-line-{line}"));
        Ok(Event {
            uid,
            uid_given,
            line,
            sequence: self.sequence,
            start,
            end: self.end,
            duration: self.duration,
            rrules: self.rrules,
            rdates: self.rdates,
            exdates: self.exdates,
            recurrence_id: self.recurrence_id,
            details: Arc::new(details),
        })
    }
}

/// One RDATE value: a start, or a PERIOD (`start/end` or `start/duration`).
fn rdate(v: &str, when: &impl Fn(&str) -> Option<When>) -> Option<RDate> {
    let (s, e) = match v.split_once('/') {
        Some((s, e)) => (s, Some(e)),
        None => (v, None),
    };
    let start = when(s)?;
    let (end, duration) = match e {
        Some(e) if e.trim_start().starts_with(['P', 'p', '-', '+']) => (None, parse_duration(e)),
        Some(e) => (when(e), None),
        None => (None, None),
    };
    Some(RDate {
        start,
        end,
        duration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walls_and_durations() {
        assert_eq!(
            parse_wall("20261127").unwrap().0.to_string(),
            "2026-11-27 00:00:00"
        );
        assert_eq!(
            parse_wall("20261127T103000Z").unwrap(),
            (
                NaiveDateTime::parse_from_str("2026-11-27 10:30", "%Y-%m-%d %H:%M").unwrap(),
                true
            )
        );
        assert!(parse_wall("2026112").is_none());
        assert!(parse_wall("20261327").is_none());
        assert_eq!(parse_duration("PT1H30M"), Some(Duration::minutes(90)));
        assert_eq!(parse_duration("-P1W"), Some(Duration::weeks(-1)));
        assert_eq!(parse_duration("P1D"), Some(Duration::days(1)));
        assert_eq!(parse_duration("P99999999999999W"), None);
        assert_eq!(parse_duration("PT"), None);
        assert_eq!(parse_offset("+0530"), Some(19800));
        assert_eq!(parse_offset("-0800"), Some(-28800));
    }

    /// Property names are matched in any case: a calendar written in
    /// lower or mixed case reads as the same calendar in upper case.
    #[test]
    fn property_names_are_read_in_any_case() {
        let text = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:a\r\n\
            DTSTART;TZID=Europe/Berlin:20261201T090000\r\nDTEND;TZID=Europe/Berlin:20261201T100000\r\n\
            RRULE:FREQ=WEEKLY;COUNT=3\r\nSUMMARY:Sync\\, weekly\r\nTRANSP:TRANSPARENT\r\n\
            ATTENDEE;CN=B;PARTSTAT=DECLINED:mailto:B@x.org\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let upper = parse(text).unwrap();
        let names = [
            ("UID:", "uid:", "Uid:"),
            ("DTSTART;TZID", "dtstart;tzid", "dtStart;TzId"),
            ("DTEND;", "dtend;", "DtEnd;"),
            ("RRULE", "rrule", "rRule"),
            ("SUMMARY", "summary", "Summary"),
            ("TRANSP:", "transp:", "Transp:"),
            (";CN=B;PARTSTAT", ";cn=B;partstat", ";Cn=B;partStat"),
            ("ATTENDEE", "attendee", "Attendee"),
        ];
        let lower = names
            .iter()
            .fold(text.to_string(), |t, n| t.replace(n.0, n.1));
        let mixed = names
            .iter()
            .fold(text.to_string(), |t, n| t.replace(n.0, n.2));
        for cased in [lower, mixed] {
            let cal = parse(&cased).unwrap();
            assert_eq!(cal.events.len(), 1);
            let (a, b) = (&cal.events[0], &upper.events[0]);
            assert_eq!(
                (&a.uid, &a.start, &a.end, &a.rrules),
                (&b.uid, &b.start, &b.end, &b.rrules)
            );
            assert_eq!(a.details.summary.as_deref(), Some("Sync, weekly"));
            assert!(a.details.transparent);
            assert_eq!(
                format!("{:?}", a.details.attendees),
                format!("{:?}", b.details.attendees)
            );
            assert_eq!(a.details.attendees[0].partstat, Some(PartStat::Declined));
        }
    }

    /// The word-at-a-time scans agree with a byte at a time: where a
    /// value ends (each end byte at each place, none, several, bytes above
    /// 0x7f), and whether a name has a lower-case letter.
    #[test]
    fn word_scans_agree_with_byte_scans() {
        let bytes = b"AZaz09-;:,\"\x7f\x80\xe9 =\x00\xff`{";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let b: Vec<u8> = (0..len)
                .map(|_| bytes[(next() % bytes.len() as u64) as usize])
                .collect();
            for from in 0..=len.min(3) {
                let by_byte = (from..len)
                    .find(|&k| VALUE_ENDS[usize::from(b[k])])
                    .unwrap_or(len);
                assert_eq!(value_end(&b, from), by_byte, "{b:?} from {from}");
            }
            if b.is_ascii() {
                let lower = b.iter().any(u8::is_ascii_lowercase);
                assert!(!lower || may_have_lower_case(&b), "{b:?}");
                let upper = b
                    .iter()
                    .all(|c| !c.is_ascii_lowercase() && c & 0x60 != 0x60);
                assert!(!upper || !may_have_lower_case(&b), "{b:?}");
            }
        }
    }

    #[test]
    fn a_parameter_is_found_as_by_reading_every_parameter() {
        for line in [
            "ATTENDEE;CN=A B;PARTSTAT=ACCEPTED;ROLE=REQ-PARTICIPANT:mailto:a@b.c",
            "ATTENDEE;PARTSTAT=DECLINED:mailto:a@b.c",
            "DTSTART;VALUE=DATE;tzid=\"W. Europe\";TZID=X:20261201",
            "DTSTART;X-TZID=a;TZIDX=b;TZID=\"b;c\":20261201T090000",
            "ORGANIZER;cn=\"A, B\";CN=C;Cn=D:x",
            "SUMMARY;VALUE;VALUE=TEXT;value=DATE:a\\,b",
            "ATTENDEE;PARTSTAT=TENTATIVE:",
            "ATTENDEE;PARTSTAT= TENTATIVE ;RSVP=TRUE:x",
            "ATTENDEE;PARTSTAT=:x",
            "ATTENDEE;partstat=DECLINED;PARTSTAT=ACCEPTED:x",
            "ATTENDEE;PartStat=DECLINED:x",
            "ATTENDEE;PARTSTAT;PARTSTAT=ACCEPTED:x",
            "ATTENDEE;PARTSTAT=ACCEPTED,DECLINED:x",
            "ATTENDEE;PARTSTAT=\"DECLINED\":x",
            "ATTENDEE;PARTSTAT=\"DECLINED\";PARTSTAT=ACCEPTED:x",
            "ATTENDEE;CN=\"x;PARTSTAT=DECLINED\";PARTSTAT=ACCEPTED:x",
            "ATTENDEE;CN=\"x;PARTSTAT=DECLINED\":x",
            "ATTENDEE;X-PARTSTAT=DECLINED;PARTSTAT=ACCEPTED:x",
            "ATTENDEE;PARTSTATX=DECLINED;PARTSTAT=ACCEPTED:x",
            "ATTENDEE;CN=x:PARTSTAT=DECLINED",
            "ATTENDEE:mailto:a@b.c",
        ] {
            let p = parse_content_line(line).expect(line);
            // Every parameter read and unquoted, the first of each kept:
            // the noted ones (PARTSTAT, CN, TZID, VALUE) and a scanned one.
            for key in ["PARTSTAT", "CN", "TZID", "VALUE", "RSVP"] {
                let every = p
                    .params()
                    .find(|(k, _)| k.eq_ignore_ascii_case(key))
                    .and_then(|(_, v)| v)
                    .map(|v| v.trim().trim_matches('"'));
                assert_eq!(param(&p, key), every, "{key} of {line}");
            }
        }
    }

    #[test]
    fn usual_instants_read_from_bytes_as_any_other_text() {
        let mut cases = vec![
            "20261127".to_string(),
            "20261127T103000".into(),
            "20261127T103000Z".into(),
            "20261127t103000z".into(),
            "20261127T103000z".into(),
            "20261127Z".into(),
            "2026-11-27".into(),
            "20261127T1030".into(),
            "20261127T10300".into(),
            "2026112xT103000".into(),
            "20261127T10300x".into(),
            "20261127X103000Z".into(),
            "20261127T103000Y".into(),
            "+0261127T103000Z".into(),
        ];
        for date in [
            "20240229", "20230229", "21000229", "20000229", "20261131", "20261300", "20260001",
            "20261200", "00000101", "99991231", "20261232",
        ] {
            for time in [
                "", "T000000", "T235959", "T235960", "T240000", "T240001", "T246000", "T250000",
                "T126000", "T120099",
            ] {
                for z in ["", "Z"] {
                    cases.push(format!("{date}{time}{z}"));
                }
            }
        }
        for c in &cases {
            assert_eq!(parse_wall(c), any_wall(c), "{c:?}");
        }
        // The usual forms take the quick way; the others the general one.
        for c in [
            "20261127",
            "20261127T103000",
            "20261127T103000Z",
            "20261131",
        ] {
            assert!(basic_wall(c.as_bytes()).is_some(), "{c:?}");
        }
        for c in ["20261127t103000z", "2026-11-27", "20261127T1030"] {
            assert!(basic_wall(c.as_bytes()).is_none(), "{c:?}");
        }
    }

    #[test]
    fn survives_framing_damage() {
        let text = "\u{feff}BEGIN:VCALENDAR\rVERSION:2.0\rBEGIN:VEVENT\rUID:a\rDTSTART:20261127T090000Z\rX-APPLE-RADIUS=49\rBEGIN:VEVENT\rUID:b\rDTSTART:20261127T100000Z\rEND:VEVENT\rEND:VCALENDARD\rtrailing junk\rBEGIN:VCALENDAR\rBEGIN:VEVENT\rUID:c\rDTSTART:20261127T110000Z\rEND:VEVENT\rEND:VCALENDAR\r";
        let cal = parse(text).unwrap();
        let uids: Vec<_> = cal.events.iter().map(|e| e.uid.as_str()).collect();
        assert_eq!(uids, ["a", "b", "c"]);
        assert!(
            cal.diags.iter().any(|d| d.line == Some(6)),
            "{:?}",
            cal.diags
        );
    }

    #[test]
    fn content_lines_with_quoted_parameters() {
        let p = parse_content_line(
            "ATTENDEE;CN=\"Doe; John: CEO\";DELEGATED-TO=\"mailto:a@x\",\"mailto:b@x\";PARTSTAT=ACCEPTED:mailto:j@x",
        )
        .unwrap();
        assert_eq!(p.name, "ATTENDEE");
        assert_eq!(p.val, "mailto:j@x");
        let params: Vec<(&str, Option<&str>)> = p.params().collect();
        assert_eq!(
            params,
            [
                ("CN", Some("Doe; John: CEO")),
                ("DELEGATED-TO", Some("\"mailto:a@x\",\"mailto:b@x\"")),
                ("PARTSTAT", Some("ACCEPTED"))
            ]
        );
        assert!(parse_content_line("NAME;PARAM=\"unclosed:value").is_none());
        assert!(parse_content_line("no colon here").is_none());
        assert!(parse_content_line(";X=1:v").is_none());
        assert_eq!(parse_content_line("X-EMPTY:").unwrap().val, "");
    }

    #[test]
    fn text_escapes_are_undone_in_one_pass() {
        assert_eq!(
            unescape_text(r#"a\nb\Nc\,d\;e\\f\:g\"h\xé\é"#),
            "a\nb\nc,d;e\\f:g\"h\\xé\\é"
        );
        assert_eq!(unescape_text(r"end\"), r"end\");
        assert_eq!(unescape_text(r"\\\\"), r"\\");
        assert_eq!(unescape_text("plain 朝会"), "plain 朝会");
        assert_eq!(unescape_text(""), "");
    }

    /// The one-pass reader classifies an unreadable line as the rule says:
    /// malformed without a `:` or a name followed by `;`/`:`, otherwise
    /// not a content line.
    #[test]
    fn unreadable_lines_are_classified_by_the_rule() {
        let by_rule = |t: &str| -> Result<(), &str> {
            let name_end = t.find([';', ':']).unwrap_or(t.len());
            if !(t.contains(':') && is_valid_name(&t[..name_end])) {
                Err(MALFORMED)
            } else if parse_content_line(t).is_none() {
                Err(NOT_CONTENT_LINE)
            } else {
                Ok(())
            }
        };
        for t in [
            "SUMMARY:ok",
            "X;A=\"a:b\";B=\"unclosed",
            "X;A=\"a:b\";B=\"unclosed:",
            "X;A=1;B",
            "X;A=1;B=2\"x:v",
            "X;A=1,\"q\"x:v",
            "X;=1:v",
            "X;;:v",
            "X;A=1",
            ":v",
            ";A=1:v",
            "NO COLON",
            "NAME WITH SPACE:v",
            "X;A=\"a\",\"b\":v",
            "X",
            "DTSTART;TZID=\"W. Europe Standard Time\":20261130T090000",
        ] {
            assert_eq!(read_content_line(t).map(|_| ()), by_rule(t), "{t:?}");
        }
    }

    /// The line splitting and unfolding as first written (one String per
    /// folded line), kept as the reference for [`Unfolded`].
    fn unfold_reference(text: &str) -> (Vec<(usize, String)>, usize) {
        let mut out: Vec<(usize, String)> = Vec::new();
        let mut pending: Option<(usize, String)> = None;
        let mut no = 0usize;
        for chunk in text.split('\n') {
            let chunk = chunk.strip_suffix('\r').unwrap_or(chunk);
            for line in chunk.split('\r') {
                no += 1;
                if line.is_empty() {
                    continue;
                }
                if let Some(rest) = line.strip_prefix([' ', '\t'])
                    && let Some((_, prev)) = pending.as_mut()
                {
                    prev.push_str(rest);
                    continue;
                }
                out.extend(pending.take());
                pending = Some((no, line.to_string()));
            }
        }
        out.extend(pending);
        (out, no)
    }

    #[test]
    fn unfolding_splits_lines_on_lf_crlf_and_cr() {
        // Every string of up to 7 characters over this alphabet.
        let alphabet = ['a', ' ', '\t', '\r', '\n', 'é'];
        let mut texts = vec![String::new()];
        for _ in 0..7 {
            let longer: Vec<String> = texts
                .iter()
                .filter(|t| t.chars().count() == texts.last().unwrap().chars().count())
                .flat_map(|t| alphabet.iter().map(move |c| format!("{t}{c}")))
                .collect();
            texts.extend(longer);
        }
        for t in &texts {
            let u = Unfolded::of(t);
            let got: Vec<(usize, String)> = u
                .lines
                .iter()
                .map(|&(no, piece)| (no, u.text(t, piece).to_string()))
                .collect();
            assert_eq!((got, u.physical_lines), unfold_reference(t), "{t:?}");
        }
    }

    #[test]
    fn html_is_not_a_calendar() {
        let err = parse("<!DOCTYPE html><html>login</html>").unwrap_err();
        assert!(err.to_string().contains("HTML"));
    }

    #[test]
    fn windows_tzid_with_spaces_and_quotes() {
        let text = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:x\nDTSTART;TZID=\"Pacific Standard Time\":20261127T090000\nDTEND;TZID=W. Europe Standard Time:20261127T190000\nSUMMARY:Plan\\, review\\; go\nEND:VEVENT\nEND:VCALENDAR\n";
        let cal = parse(text).unwrap();
        let ev = &cal.events[0];
        assert_eq!(ev.details.summary.as_deref(), Some("Plan, review; go"));
        match (&ev.start.anchor, &ev.end.as_ref().unwrap().anchor) {
            (Anchor::Zoned(a), Anchor::Zoned(b)) => {
                assert_eq!(a.name(), "America/Los_Angeles");
                assert_eq!(b.name(), "Europe/Berlin");
            }
            other => panic!("{other:?}"),
        }
    }
}
