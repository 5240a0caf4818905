//! ICS text → calendar model: sanitising, parsing and property extraction.
//!
//! Real files break strict parsers (a BOM, CR-only line endings, colon-less
//! lines, text after `END:VCALENDAR`, several `VCALENDAR`s, a missing
//! `END:VEVENT`). [`parse`] first rebuilds a well-formed component structure
//! line by line — reporting everything it repairs or drops, with the original
//! line number — then hands each calendar to the `icalendar` crate's parser
//! for content lines (parameters, quoting, unescaping). A component that still
//! fails is dropped on its own; the rest of the file survives. Pure code.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{Duration, NaiveDate, NaiveDateTime, NaiveTime, Weekday};
use icalendar::parser::{Component, Property};

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
        match s.to_ascii_uppercase().as_str() {
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
    /// `CLASS:PRIVATE` or `CLASS:CONFIDENTIAL`.
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

/// A line of the sanitised text, with the line number it came from.
struct Line<'a> {
    no: usize,
    text: std::borrow::Cow<'a, str>,
}

/// Parses ICS text. Fails only when the text holds no calendar at all.
pub fn parse(text: &str) -> Result<Calendar, IcsError> {
    let mut cal = Calendar::default();
    let blocks = sanitize(text, &mut cal.diags);
    if blocks.is_empty() {
        let head: String = text
            .trim_start_matches('\u{feff}')
            .chars()
            .take(40)
            .collect();
        let hint = if head.trim_start().starts_with('<') {
            " (the text looks like HTML: a login page or an error page?)".to_string()
        } else if head.trim().is_empty() {
            " (the text is empty)".to_string()
        } else {
            String::new()
        };
        return Err(IcsError::NotCalendar(hint));
    }
    for block in blocks {
        read_block(&block, &mut cal);
    }
    Ok(cal)
}

/// A VCALENDAR's lines plus, for each top-level child, where it starts.
struct Block<'a> {
    lines: Vec<Line<'a>>,
}

/// Components that live directly in a VCALENDAR and never inside each other.
fn is_top_level_kind(name: &str) -> bool {
    matches!(
        name,
        "VEVENT" | "VTODO" | "VJOURNAL" | "VFREEBUSY" | "VTIMEZONE"
    )
}

fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Rebuilds a clean structure: unfolds, normalises endings, splits calendars,
/// closes what was left open, drops what cannot be a content line.
fn sanitize<'a>(text: &'a str, diags: &mut Vec<Diag>) -> Vec<Block<'a>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Physical lines on CRLF, LF or lone CR.
    let mut physical: Vec<(usize, &str)> = Vec::new();
    let mut no = 0usize;
    for chunk in text.split('\n') {
        let chunk = chunk.strip_suffix('\r').unwrap_or(chunk);
        if chunk.contains('\r') {
            for part in chunk.split('\r') {
                no += 1;
                physical.push((no, part));
            }
        } else {
            no += 1;
            physical.push((no, chunk));
        }
    }
    // Unfold. Blank lines are skipped here, so that a continuation after
    // doubled line endings (`\r\n\r\n`) joins the last content line.
    let mut logical: Vec<Line<'a>> = Vec::with_capacity(physical.len());
    for (no, line) in physical {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix([' ', '\t'])
            && let Some(prev) = logical.last_mut()
        {
            prev.text.to_mut().push_str(rest);
            continue;
        }
        logical.push(Line {
            no,
            text: std::borrow::Cow::Borrowed(line),
        });
    }

    let mut blocks: Vec<Block<'a>> = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    let mut current: Vec<Line<'a>> = Vec::new();
    let mut outside_reported = false;
    // Levels of components nested deeper than MAX_NESTING_DEPTH being
    // skipped; nothing of them reaches `current`, so the tree built from it
    // (and its recursive drop) stays shallow.
    let mut skipped = 0usize;
    let close_all = |stack: &mut Vec<String>, current: &mut Vec<Line<'a>>, no: usize| {
        while let Some(name) = stack.pop() {
            current.push(Line {
                no,
                text: format!("END:{name}").into(),
            });
        }
    };
    for line in logical {
        let t = line.text.trim_end();
        if t.trim().is_empty() {
            continue;
        }
        let starts = |prefix: &str| {
            t.get(..prefix.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(prefix))
        };
        if starts("BEGIN:") {
            let name = t[6..].trim().to_ascii_uppercase();
            if skipped > 0 {
                // Only a calendar or a top-level component ends the skip.
                if name != "VCALENDAR" && !is_top_level_kind(&name) {
                    skipped += 1;
                    continue;
                }
                skipped = 0;
            }
            if !is_valid_name(&name) {
                diags.push(Diag {
                    line: Some(line.no),
                    message: format!("dropped a malformed line: {}", clip(t)),
                });
                continue;
            }
            if name == "VCALENDAR" {
                if !stack.is_empty() {
                    diags.push(Diag {
                        line: Some(line.no),
                        message: "a new VCALENDAR began before the previous one ended; closed it"
                            .into(),
                    });
                    close_all(&mut stack, &mut current, line.no);
                    blocks.push(Block {
                        lines: std::mem::take(&mut current),
                    });
                }
            } else if stack.is_empty() {
                // A component outside any calendar: open an implicit one.
                diags.push(Diag {
                    line: Some(line.no),
                    message: format!("BEGIN:{name} outside a VCALENDAR; read it anyway"),
                });
                stack.push("VCALENDAR".into());
                current.push(Line {
                    no: line.no,
                    text: "BEGIN:VCALENDAR".into(),
                });
            } else if is_top_level_kind(&name)
                && let Some(pos) = stack.iter().rposition(|s| is_top_level_kind(s))
            {
                // These never nest: the open one lost its END (O365 feeds
                // dropping END:VEVENT, a misspelt END:VTOOD…).
                diags.push(Diag {
                    line: Some(line.no),
                    message: format!(
                        "BEGIN:{name} inside {}: its END is missing or misspelt; closed it",
                        stack[pos]
                    ),
                });
                while stack.len() > pos {
                    let n = stack.pop().unwrap_or_default();
                    current.push(Line {
                        no: line.no,
                        text: format!("END:{n}").into(),
                    });
                }
            }
            if stack.len() >= MAX_NESTING_DEPTH {
                diags.push(Diag {
                    line: Some(line.no),
                    message: format!(
                        "skipped a component nested more than {MAX_NESTING_DEPTH} deep, with everything in it"
                    ),
                });
                skipped = 1;
                continue;
            }
            stack.push(name.clone());
            current.push(Line {
                no: line.no,
                text: format!("BEGIN:{name}").into(),
            });
            continue;
        }
        if starts("END:") {
            let name = t[4..].trim().to_ascii_uppercase();
            if skipped > 0 {
                // Inside skipped levels, an END closes one of them, unless it
                // names an open calendar or top-level component.
                let structural = stack.iter().any(|s| {
                    (s == "VCALENDAR" || is_top_level_kind(s))
                        && (*s == name || name.starts_with(s.as_str()))
                });
                if !structural {
                    skipped -= 1;
                    continue;
                }
                skipped = 0;
            }
            if stack.is_empty() {
                diags.push(Diag {
                    line: Some(line.no),
                    message: format!("END:{name} without a matching BEGIN; ignored"),
                });
                continue;
            }
            let pos = stack.iter().rposition(|s| s == &name).or_else(|| {
                // Typos such as END:VCALENDARD close the innermost that prefixes them.
                stack.iter().rposition(|s| name.starts_with(s.as_str()))
            });
            match pos {
                Some(pos) => {
                    if pos + 1 < stack.len() || stack[pos] != name {
                        diags.push(Diag {
                            line: Some(line.no),
                            message: format!(
                                "END:{name} does not match BEGIN:{}; closed what was open",
                                stack.last().map(String::as_str).unwrap_or("")
                            ),
                        });
                    }
                    while stack.len() > pos {
                        let n = stack.pop().unwrap_or_default();
                        current.push(Line {
                            no: line.no,
                            text: format!("END:{n}").into(),
                        });
                    }
                    if stack.is_empty() {
                        blocks.push(Block {
                            lines: std::mem::take(&mut current),
                        });
                    }
                }
                None => diags.push(Diag {
                    line: Some(line.no),
                    message: format!("END:{name} without a matching BEGIN; ignored"),
                }),
            }
            continue;
        }
        if skipped > 0 {
            continue;
        }
        if stack.is_empty() {
            if !outside_reported {
                diags.push(Diag {
                    line: Some(line.no),
                    message: "ignored text outside BEGIN:VCALENDAR … END:VCALENDAR".into(),
                });
                outside_reported = true;
            }
            continue;
        }
        // A content line: NAME[;params]:value
        let name_end = t.find([';', ':']).unwrap_or(t.len());
        let has_colon = t.contains(':');
        if !has_colon || !is_valid_name(&t[..name_end]) {
            diags.push(Diag {
                line: Some(line.no),
                message: format!("dropped a malformed line: {}", clip(t)),
            });
            continue;
        }
        current.push(line);
    }
    if !stack.is_empty() {
        diags.push(Diag {
            line: Some(no),
            message: format!(
                "the file ended inside {}; closed it",
                stack.last().map(String::as_str).unwrap_or("")
            ),
        });
        close_all(&mut stack, &mut current, no);
        blocks.push(Block { lines: current });
    }
    blocks
}

fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// Parses one sanitised VCALENDAR into `icalendar`'s component tree, line
/// by line: a content line that cannot be read is dropped with a
/// diagnostic, and the rest of its component survives.
fn read_block(block: &Block<'_>, cal: &mut Calendar) {
    // (component, line of its BEGIN)
    let mut stack: Vec<(Component<'_>, usize)> = Vec::new();
    let mut root: Option<Component<'_>> = None;
    let mut children_lines: Vec<usize> = Vec::new();
    for l in &block.lines {
        let t: &str = &l.text;
        if let Some(name) = t.strip_prefix("BEGIN:") {
            stack.push((
                Component {
                    name: name.into(),
                    properties: Vec::new(),
                    components: Vec::new(),
                },
                l.no,
            ));
        } else if t.starts_with("END:") {
            let Some((done, begin_line)) = stack.pop() else {
                continue;
            };
            let top_level = stack.len() == 1;
            match stack.last_mut() {
                Some((parent, _)) => {
                    if top_level {
                        children_lines.push(begin_line);
                    }
                    parent.components.push(done);
                }
                None => root = Some(done),
            }
        } else if let Some((current, _)) = stack.last_mut() {
            match parse_content_line(t) {
                Some(p) => current.properties.push(p),
                None => cal.diags.push(Diag {
                    line: Some(l.no),
                    message: format!(
                        "dropped a line that is not NAME[;PARAM=…]:VALUE: {}",
                        clip(t)
                    ),
                }),
            }
        }
    }
    if let Some(root) = root {
        read_components(&root.properties, &root.components, &children_lines, cal);
    }
}

/// Properties whose values are TEXT (RFC 5545 §3.3.11: `\\`, `\;`, `\,`, `\n` escapes).
fn is_text_property(name: &str) -> bool {
    matches!(
        name.to_ascii_uppercase().as_str(),
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
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n' | 'N') => out.push('\n'),
            Some(other @ ('\\' | ';' | ',' | ':' | '"')) => out.push(other),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Reads `NAME *(;PARAM=value[,value]) : VALUE` (an unfolded line).
/// Parameter values may be quoted and then hold `;`, `:` and `,`.
pub fn parse_content_line(line: &str) -> Option<Property<'_>> {
    let b = line.as_bytes();
    let is_name = |c: u8| c.is_ascii_alphanumeric() || c == b'-';
    let mut i = 0;
    while i < b.len() && is_name(b[i]) {
        i += 1;
    }
    if i == 0 {
        return None;
    }
    let name = &line[..i];
    let mut params = Vec::new();
    loop {
        match b.get(i)? {
            b':' => break,
            b';' => {
                i += 1;
                let k0 = i;
                while i < b.len() && is_name(b[i]) {
                    i += 1;
                }
                if i == k0 {
                    return None;
                }
                let key = &line[k0..i];
                let mut val = None;
                if b.get(i) == Some(&b'=') {
                    i += 1;
                    let v0 = i;
                    loop {
                        if b.get(i) == Some(&b'"') {
                            let close = line[i + 1..].find('"')?;
                            i += close + 2;
                        } else {
                            while i < b.len() && !matches!(b[i], b';' | b':' | b',' | b'"') {
                                i += 1;
                            }
                        }
                        if b.get(i) == Some(&b',') {
                            i += 1;
                            continue;
                        }
                        break;
                    }
                    let raw = &line[v0..i];
                    let single_quoted = raw.len() >= 2
                        && raw.starts_with('"')
                        && raw.ends_with('"')
                        && !raw[1..raw.len() - 1].contains('"');
                    val = Some(
                        if single_quoted {
                            &raw[1..raw.len() - 1]
                        } else {
                            raw
                        }
                        .into(),
                    );
                }
                params.push(icalendar::parser::Parameter {
                    key: key.into(),
                    val,
                });
            }
            _ => return None,
        }
    }
    let raw = &line[i + 1..];
    let text = is_text_property(name)
        || params.iter().any(|p: &icalendar::parser::Parameter<'_>| {
            p.key.as_str().eq_ignore_ascii_case("VALUE")
                && p.val
                    .as_ref()
                    .is_some_and(|v| v.as_str().eq_ignore_ascii_case("TEXT"))
        });
    let val = if text && raw.contains('\\') {
        unescape_text(raw).into()
    } else {
        raw.into()
    };
    Some(Property {
        name: name.into(),
        val,
        params,
    })
}

fn read_components(
    cal_props: &[Property<'_>],
    comps: &[Component<'_>],
    lines: &[usize],
    cal: &mut Calendar,
) {
    // Time zones first: events refer to them.
    let mut zones: HashMap<String, Arc<CustomZone>> = HashMap::new();
    for (c, &line) in comps.iter().zip(lines) {
        if c.name.as_str().eq_ignore_ascii_case("VTIMEZONE") {
            match read_vtimezone(c) {
                Some(z) => {
                    zones.insert(z.tzid.clone(), z);
                }
                None => cal.diags.push(Diag {
                    line: Some(line),
                    message: "a VTIMEZONE without TZID or usable STANDARD/DAYLIGHT; ignored".into(),
                }),
            }
        }
    }
    for p in cal_props {
        match p.name.as_str().to_ascii_uppercase().as_str() {
            "X-WR-TIMEZONE" => {
                if let Some(z) = resolve_tzid(p.val.as_str(), &zones) {
                    cal.default_zone = Some(z);
                } else {
                    cal.diags.push(Diag {
                        line: None,
                        message: format!("unknown X-WR-TIMEZONE {:?}; ignored", p.val.as_str()),
                    });
                }
            }
            "X-WR-CALNAME" => cal.name = Some(p.val.as_str().to_string()),
            _ => {}
        }
    }
    for (c, &line) in comps.iter().zip(lines) {
        if c.name.as_str().eq_ignore_ascii_case("VEVENT") {
            match read_event(c, line, &zones, &mut cal.diags) {
                Ok(ev) => cal.events.push(ev),
                Err(msg) => cal.diags.push(Diag {
                    line: Some(line),
                    message: format!("skipped a VEVENT: {msg}"),
                }),
            }
        }
    }
}

fn param<'a>(p: &'a Property<'_>, key: &str) -> Option<&'a str> {
    p.params
        .iter()
        .find(|pa| pa.key.as_str().eq_ignore_ascii_case(key))
        .and_then(|pa| pa.val.as_ref())
        .map(|v| v.as_str().trim().trim_matches('"'))
}

/// A `VTIMEZONE` → zone, memoised by its content: every Outlook file
/// repeats the same few blocks, and compiling one costs far more than
/// looking it up. (Memoising a pure function keeps parsing pure.)
fn read_vtimezone(c: &Component<'_>) -> Option<Arc<CustomZone>> {
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<CustomZone>>>> = OnceLock::new();
    fn key(c: &Component<'_>, out: &mut String) {
        out.push_str(c.name.as_str());
        out.push('\u{1}');
        for p in &c.properties {
            out.push_str(p.name.as_str());
            for pa in &p.params {
                out.push(';');
                out.push_str(pa.key.as_str());
                out.push('=');
                out.push_str(pa.val.as_ref().map(|v| v.as_str()).unwrap_or(""));
            }
            out.push(':');
            out.push_str(p.val.as_str());
            out.push('\u{1}');
        }
        for sub in &c.components {
            key(sub, out);
        }
        out.push('\u{2}');
    }
    let mut k = String::new();
    key(c, &mut k);
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(z) = cache.lock().ok().and_then(|m| m.get(&k).cloned()) {
        return Some(z);
    }
    let z = Arc::new(compile_vtimezone(c)?);
    if let Ok(mut m) = cache.lock() {
        if m.len() >= 4096 {
            m.clear();
        }
        m.insert(k, z.clone());
    }
    Some(z)
}

fn compile_vtimezone(c: &Component<'_>) -> Option<CustomZone> {
    let tzid = c
        .find_prop("TZID")?
        .val
        .as_str()
        .trim()
        .trim_matches('"')
        .to_string();
    let mut obs = Vec::new();
    for sub in &c.components {
        let daylight = match sub.name.as_str().to_ascii_uppercase().as_str() {
            "STANDARD" => false,
            "DAYLIGHT" => true,
            _ => continue,
        };
        let Some(offset_to) = sub
            .find_prop("TZOFFSETTO")
            .and_then(|p| parse_offset(p.val.as_str()))
        else {
            continue;
        };
        let offset_from = sub
            .find_prop("TZOFFSETFROM")
            .and_then(|p| parse_offset(p.val.as_str()))
            .unwrap_or(offset_to);
        let dtstart = sub
            .find_prop("DTSTART")
            .and_then(|p| parse_wall(p.val.as_str()).map(|(w, _)| w))
            .unwrap_or_else(|| {
                NaiveDate::from_ymd_opt(1970, 1, 1)
                    .unwrap_or_default()
                    .and_time(NaiveTime::MIN)
            });
        let rule = sub
            .find_prop("RRULE")
            .and_then(|p| parse_yearly_rule(p.val.as_str()));
        let mut rdates = Vec::new();
        for p in sub
            .properties
            .iter()
            .filter(|p| p.name.as_str().eq_ignore_ascii_case("RDATE"))
        {
            for v in p.val.as_str().split(',') {
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
            daylight,
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
    let s = s.trim();
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
    let s = s.trim();
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
    let s = s.trim();
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
        return parse_wall(&format!(
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

/// Reads one value of a DTSTART-like property.
fn read_when(
    value: &str,
    tzid: Option<&str>,
    value_type: Option<&str>,
    zones: &HashMap<String, Arc<CustomZone>>,
) -> Option<When> {
    let (wall, utc) = parse_wall(value)?;
    let has_time = value.contains(['T', 't']);
    let _ = value_type; // VALUE=DATE-TIME with a bare date is read as a DATE too
    if !has_time {
        return Some(When {
            wall: wall.date().and_time(NaiveTime::MIN),
            anchor: Anchor::Date,
        });
    }
    let anchor = if utc {
        Anchor::Utc
    } else if let Some(tzid) = tzid.filter(|t| !t.trim().is_empty()) {
        match resolve_tzid(tzid, zones) {
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
    let s = s.trim();
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

fn person(p: &Property<'_>) -> Person {
    let v = p.val.as_str().trim();
    let email = if v
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("mailto:"))
    {
        Some(v[7..].trim().to_ascii_lowercase())
    } else if v.contains('@') {
        Some(v.to_ascii_lowercase())
    } else {
        param(p, "EMAIL").map(|e| e.to_ascii_lowercase())
    };
    Person {
        email: email.filter(|e| !e.is_empty()),
        name: param(p, "CN").map(str::to_string),
        partstat: param(p, "PARTSTAT").map(PartStat::parse),
    }
}

/// Upper-cases a short ASCII name into `buf` without allocating (longer
/// or non-ASCII names come back unchanged: they match no known property).
fn upper_ascii<'a>(s: &'a str, buf: &'a mut [u8; 48]) -> &'a str {
    if s.len() > buf.len() || !s.is_ascii() {
        return s;
    }
    let out = &mut buf[..s.len()];
    out.copy_from_slice(s.as_bytes());
    out.make_ascii_uppercase();
    std::str::from_utf8(out).unwrap_or(s)
}

fn read_event(
    c: &Component<'_>,
    line: usize,
    zones: &HashMap<String, Arc<CustomZone>>,
    diags: &mut Vec<Diag>,
) -> Result<Event, String> {
    let mut details = Details::default();
    let mut start = None;
    let mut end = None;
    let mut duration = None;
    let mut uid = None;
    let mut sequence = 0i64;
    let mut rrules = Vec::new();
    let mut rdates = Vec::new();
    let mut exdates = Vec::new();
    let mut recurrence_id = None;
    let mut cdo_busy = None;
    let mut seen_once = 0u8;
    for p in &c.properties {
        let mut buf = [0u8; 48];
        let name = upper_ascii(p.name.as_str(), &mut buf);
        let val = p.val.as_str();
        let when = |v: &str| read_when(v, param(p, "TZID"), param(p, "VALUE"), zones);
        // Properties that may appear once: the first wins (as libical and
        // ical.js do), later ones are reported and ignored.
        let once = match name {
            "UID" => 1u8,
            "DTSTART" => 2,
            "DTEND" => 4,
            "DURATION" => 8,
            "RECURRENCE-ID" => 16,
            _ => 0,
        };
        if once != 0 {
            if seen_once & once != 0 {
                diags.push(Diag {
                    line: Some(line),
                    message: format!("the VEVENT has more than one {name}; kept the first"),
                });
                continue;
            }
            seen_once |= once;
        }
        match name {
            "UID" => uid = Some(val.trim().to_string()),
            "SUMMARY" => details.summary = Some(val.to_string()),
            "LOCATION" => details.location = Some(val.to_string()).filter(|s| !s.is_empty()),
            "DESCRIPTION" => details.description = Some(val.to_string()),
            "CATEGORIES" => details.categories.extend(
                val.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty()),
            ),
            "SEQUENCE" => sequence = val.trim().parse().unwrap_or(0),
            "STATUS" => match val.trim().to_ascii_uppercase().as_str() {
                "CANCELLED" | "CANCELED" => details.cancelled = true,
                "TENTATIVE" => details.status_tentative = true,
                _ => {}
            },
            "TRANSP" => details.transparent = val.trim().eq_ignore_ascii_case("TRANSPARENT"),
            "CLASS" => {
                details.private = matches!(
                    val.trim().to_ascii_uppercase().as_str(),
                    "PRIVATE" | "CONFIDENTIAL"
                )
            }
            "X-MICROSOFT-CDO-BUSYSTATUS" => cdo_busy = Busy::parse(val.trim()),
            "ORGANIZER" => details.organizer = Some(person(p)),
            // Attendees: the rules need addresses and replies, not names.
            "ATTENDEE" => details.attendees.push(Person {
                name: None,
                ..person(p)
            }),
            "DTSTART" => match when(val) {
                Some(w) => start = Some(w),
                None => return Err(format!("unreadable DTSTART {:?}", clip(val))),
            },
            "DTEND" => match when(val) {
                Some(w) => end = Some(w),
                None => diags.push(Diag {
                    line: Some(line),
                    message: format!("ignored an unreadable DTEND {:?}", clip(val)),
                }),
            },
            "DURATION" => match parse_duration(val) {
                Some(d) => duration = Some(d),
                None => diags.push(Diag {
                    line: Some(line),
                    message: format!("ignored an unreadable DURATION {:?}", clip(val)),
                }),
            },
            "RRULE" if !val.trim().is_empty() => rrules.push(val.trim().to_string()),
            "EXDATE" => {
                for v in val.split(',').filter(|v| !v.trim().is_empty()) {
                    match when(v) {
                        Some(w) => exdates.push(w),
                        None => diags.push(Diag {
                            line: Some(line),
                            message: format!("ignored an unreadable EXDATE {:?}", clip(v)),
                        }),
                    }
                }
            }
            "RDATE" => {
                for v in val.split(',').filter(|v| !v.trim().is_empty()) {
                    let (s, e) = match v.split_once('/') {
                        Some((s, e)) => (s, Some(e)),
                        None => (v, None),
                    };
                    match when(s) {
                        Some(w) => {
                            let (end, duration) = match e {
                                Some(e) if e.trim_start().starts_with(['P', 'p', '-', '+']) => {
                                    (None, parse_duration(e))
                                }
                                Some(e) => (when(e), None),
                                None => (None, None),
                            };
                            rdates.push(RDate {
                                start: w,
                                end,
                                duration,
                            });
                        }
                        None => diags.push(Diag {
                            line: Some(line),
                            message: format!("ignored an unreadable RDATE {:?}", clip(v)),
                        }),
                    }
                }
            }
            "RECURRENCE-ID" => {
                let range =
                    param(p, "RANGE").is_some_and(|r| r.eq_ignore_ascii_case("THISANDFUTURE"));
                match when(val) {
                    Some(w) => recurrence_id = Some((w, range)),
                    None => return Err(format!("unreadable RECURRENCE-ID {:?}", clip(val))),
                }
            }
            _ => {}
        }
    }
    let Some(start) = start else {
        return Err("it has no DTSTART".into());
    };
    details.busy = Some(match cdo_busy {
        Some(b) => b,
        None if details.transparent => Busy::Free,
        None if details.status_tentative => Busy::Tentative,
        None => Busy::Busy,
    });
    let uid = uid.filter(|u| !u.is_empty());
    let uid_given = uid.is_some();
    let uid = uid.unwrap_or_else(|| format!("calstatus-no-uid-line-{line}"));
    Ok(Event {
        uid,
        uid_given,
        line,
        sequence,
        start,
        end,
        duration,
        rrules,
        rdates,
        exdates,
        recurrence_id,
        details: Arc::new(details),
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
        assert_eq!(p.name.as_str(), "ATTENDEE");
        assert_eq!(p.val.as_str(), "mailto:j@x");
        let params: Vec<(&str, Option<&str>)> = p
            .params
            .iter()
            .map(|pa| (pa.key.as_str(), pa.val.as_ref().map(|v| v.as_str())))
            .collect();
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
        assert_eq!(parse_content_line("X-EMPTY:").unwrap().val.as_str(), "");
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
