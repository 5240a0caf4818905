//! Renderers of a plan: `table` (a person at a terminal, local times),
//! `json` (the machine contract, see docs/plan-json.md), `csv` (one row per
//! status) and `html` (a self-contained page with a timeline per user).
//! Pure: a plan in, text out. Private meetings never show their summary.
//!
//! Everything in a plan that came from a calendar or a user file is hostile
//! text: the table escapes control characters and bidi overrides
//! ([`crate::text::for_terminal`]), CSV cells are escaped the same way and
//! never start like a formula ([`crate::text::csv_cell`]), the HTML page is
//! escaped by [`html::escape`] and JSON as serde_json escapes it plus
//! what [`crate::text::for_json`] escapes.

pub mod html;

use comfy_table::{Cell, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};

use crate::plan::{
    OccurrenceDecision, Plan, SourceProblem, UserPlan, WindowReport, local, utc_secs,
};
use crate::text::{csv_cell, for_terminal as term};

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Local times per user, for a terminal.
    Table,
    /// The stable machine contract.
    Json,
    /// One row per status.
    Csv,
    /// One offline page with a timeline picture.
    Html,
}

/// Renders a plan: for every format but HTML, its [`head`], each user's
/// [`separator`] and [`user`] part, and its [`tail`].
pub fn render(plan: &Plan, format: Format) -> String {
    if !format.streams() {
        return html::render(plan);
    }
    let mut out = head(format, &plan.window);
    for (i, u) in plan.users.iter().enumerate() {
        out.push_str(separator(format, i));
        out.push_str(&user(format, u));
    }
    out.push_str(&tail(format, &plan.problems, plan.users.len()));
    out
}

impl Format {
    /// Whether the report can be written a user at a time, as users are
    /// planned ([`head`], [`user`], [`tail`]). The HTML page opens with
    /// totals over all users, so it is rendered from the whole plan.
    pub fn streams(self) -> bool {
        self != Format::Html
    }
}

/// The start of a report, before the first user (HTML: empty).
pub fn head(format: Format, window: &WindowReport) -> String {
    match format {
        Format::Table => table_head(window),
        Format::Json => json::head(window),
        Format::Csv => csv_head(),
        Format::Html => String::new(),
    }
}

/// What stands between user `i - 1` and user `i` (before the first: `i` = 0).
pub fn separator(format: Format, i: usize) -> &'static str {
    match format {
        Format::Json => json::separator(i),
        Format::Table | Format::Csv | Format::Html => "",
    }
}

/// One user's part of a report. Pure and independent of the other users,
/// so users can be rendered in parallel (HTML: empty).
pub fn user(format: Format, u: &UserPlan) -> String {
    match format {
        Format::Table => table_user(u),
        Format::Json => json::user(u),
        Format::Csv => csv_user(u),
        Format::Html => String::new(),
    }
}

/// The end of a report, after `users` users (HTML: empty).
pub fn tail(format: Format, problems: &[SourceProblem], users: usize) -> String {
    match format {
        Format::Table => table_tail(problems),
        Format::Json => json::tail(problems, users),
        Format::Csv | Format::Html => String::new(),
    }
}

/// The JSON contract (C1 and bidi controls `\u`-escaped, see
/// [`crate::text::for_json`]).
pub fn json(plan: &Plan) -> String {
    render(plan, Format::Json)
}

/// One row per status. Every cell is escaped like the table (so a row is
/// one line, safe to print) and a cell that starts with `=`, `+`, `-`, `@`,
/// a tab or a carriage return gets a leading `'`, in every column alike.
pub fn csv(plan: &Plan) -> String {
    render(plan, Format::Csv)
}

fn csv_records(records: impl FnOnce(&mut csv::Writer<Vec<u8>>)) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    records(&mut w);
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

fn csv_head() -> String {
    csv_records(|w| {
        let _ = w.write_record([
            "user",
            "timezone",
            "start",
            "end",
            "local_start",
            "local_end",
            "rule",
            "message",
            "occurrences",
        ]);
    })
}

fn csv_user(u: &UserPlan) -> String {
    fn cell(s: &str) -> String {
        csv_cell(&term(s)).into_owned()
    }
    csv_records(|w| {
        for s in &u.statuses {
            let _ = w.write_record(
                [
                    u.user.as_str(),
                    u.timezone.as_str(),
                    &utc_secs::fmt(&s.start),
                    &utc_secs::fmt(&s.end),
                    &local(&u.zone, s.start).format("%Y-%m-%d %H:%M").to_string(),
                    &local(&u.zone, s.end).format("%Y-%m-%d %H:%M").to_string(),
                    s.rule.as_str(),
                    s.message.as_str(),
                    &s.occurrences.len().to_string(),
                ]
                .map(cell),
            );
        }
    })
}

/// Human time span in a user's zone: "Fri 27 Nov 09:30–10:00".
pub fn local_span(
    zone: &crate::calendar::Zone,
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
) -> String {
    let s = local(zone, start);
    let e = local(zone, end);
    if s.date_naive() == e.date_naive() {
        format!(
            "{} {}–{}",
            s.format("%a %d %b"),
            s.format("%H:%M"),
            e.format("%H:%M")
        )
    } else {
        format!(
            "{} – {}",
            s.format("%a %d %b %H:%M"),
            e.format("%a %d %b %H:%M")
        )
    }
}

/// A summary fit to show: private ones are hidden.
pub fn shown_summary(summary: Option<&str>, private: bool) -> String {
    if private {
        "(private)".into()
    } else {
        summary.unwrap_or("(no title)").to_string()
    }
}

/// For a person at a terminal: every text from the plan goes through
/// [`term`], so no control character or bidi override reaches the screen.
pub fn table(plan: &Plan) -> String {
    render(plan, Format::Table)
}

fn table_head(window: &WindowReport) -> String {
    format!(
        "Dry run: what calstatus would publish from {} to {} (UTC). Nothing is sent.\n",
        utc_secs::fmt(&window.from),
        utc_secs::fmt(&window.to)
    )
}

fn table_user(u: &UserPlan) -> String {
    let mut out = String::new();
    out.push('\n');
    out.push_str(&format!(
        "{} · {} · {}\n",
        term(&u.label),
        term(&u.user),
        term(&u.timezone)
    ));
    if u.statuses.is_empty() {
        out.push_str("  no status to publish in this window\n");
    } else {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_width(120)
            .set_header(["when (local)", "message", "rule"]);
        for s in &u.statuses {
            t.add_row([
                Cell::new(local_span(&u.zone, s.start, s.end)),
                Cell::new(term(&s.message)),
                Cell::new(term(&s.rule)),
            ]);
        }
        out.push_str(&t.to_string());
        out.push('\n');
    }
    let skipped: Vec<_> = u
        .occurrences
        .iter()
        .filter(|o| o.decision == OccurrenceDecision::Skipped)
        .collect();
    if !skipped.is_empty() {
        out.push_str("  skipped:\n");
        for o in skipped {
            out.push_str(&format!(
                "    {}  {}  ({})\n",
                local_span(&u.zone, o.start, o.end),
                term(&shown_summary(o.summary.as_deref(), o.private)),
                term(o.reason.as_deref().unwrap_or(""))
            ));
        }
    }
    for e in &u.errors {
        out.push_str(&format!(
            "  error: {}: {}\n",
            term(&e.source),
            term(&e.message)
        ));
    }
    if !u.warnings.is_empty() {
        out.push_str(&format!(
            "  {} warning(s) while reading calendars (see --format json)\n",
            u.warnings.len()
        ));
    }
    out
}

fn table_tail(problems: &[SourceProblem]) -> String {
    let mut out = String::new();
    if !problems.is_empty() {
        out.push_str("\nProblems:\n");
        for p in problems {
            out.push_str(&format!("  {}: {}\n", term(&p.source), term(&p.message)));
        }
    }
    out
}

mod json {
    //! The JSON contract (docs/plan-json.md), written a user at a time.
    //!
    //! The document is serde_json's pretty form of the [`Plan`](crate::plan::Plan)
    //! (two-space indent) with DEL, C1, bidi controls and the line/paragraph
    //! separators written as `\uXXXX` (as [`crate::text::for_json`] does), then a
    //! newline. [`Pretty`] is serde_json's `PrettyFormatter` started at any
    //! depth, so each part can be serialized on its own, on any thread, and
    //! the parts joined by [`head`], [`user`] and [`tail`] give the same bytes
    //! as the whole. A user's object, most of a large report, is written by
    //! [`Writer`], which knows its shape (the test at the end holds it to
    //! serde's bytes).

    use std::io::{self, Write};

    use serde::Serialize;
    use serde_json::ser::Formatter;

    use chrono::{DateTime, Utc};

    use crate::plan::{
        OccRef, OccurrenceDecision, OccurrenceReport, SourceProblem, Status, UserPlan,
        WindowReport, utc_secs,
    };
    use crate::text::is_unsafe;

    /// serde_json's pretty formatter (two spaces) starting at depth `indent`,
    /// escaping what [`crate::text::for_json`] escapes.
    struct Pretty {
        indent: usize,
        has_value: bool,
    }

    fn indent<W: ?Sized + Write>(w: &mut W, n: usize) -> io::Result<()> {
        for _ in 0..n {
            w.write_all(b"  ")?;
        }
        Ok(())
    }

    impl Pretty {
        /// `[` or `{`: one level deeper.
        fn open<W: ?Sized + Write>(&mut self, w: &mut W, bracket: &[u8]) -> io::Result<()> {
            self.indent += 1;
            self.has_value = false;
            w.write_all(bracket)
        }

        /// `]` or `}`, on its own line after values.
        fn close<W: ?Sized + Write>(&mut self, w: &mut W, bracket: &[u8]) -> io::Result<()> {
            self.indent -= 1;
            if self.has_value {
                w.write_all(b"\n")?;
                indent(w, self.indent)?;
            }
            w.write_all(bracket)
        }

        /// Before an element or a key: a new line, indented.
        fn item<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
            w.write_all(if first { b"\n" } else { b",\n" })?;
            indent(w, self.indent)
        }
    }

    impl Formatter for Pretty {
        fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.open(w, b"[")
        }

        fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.close(w, b"]")
        }

        fn begin_array_value<W: ?Sized + Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> io::Result<()> {
            self.item(w, first)
        }

        fn end_array_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
            self.has_value = true;
            Ok(())
        }

        fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.open(w, b"{")
        }

        fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.close(w, b"}")
        }

        fn begin_object_key<W: ?Sized + Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> io::Result<()> {
            self.item(w, first)
        }

        fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
            w.write_all(b": ")
        }

        fn end_object_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
            self.has_value = true;
            Ok(())
        }

        /// serde escapes `"`, `\` and C0 controls around the fragments; the
        /// other unsafe characters are escaped here.
        fn write_string_fragment<W: ?Sized + Write>(
            &mut self,
            w: &mut W,
            s: &str,
        ) -> io::Result<()> {
            // Every unsafe character at or above U+0020 is DEL or starts with
            // one of these UTF-8 lead bytes (C1: C2; the rest: E2).
            if memchr::memchr3(0x7f, 0xc2, 0xe2, s.as_bytes()).is_none() {
                return w.write_all(s.as_bytes());
            }
            let mut last = 0;
            for (i, c) in s.char_indices() {
                if is_unsafe(c) && (c as u32) >= 0x20 {
                    w.write_all(&s.as_bytes()[last..i])?;
                    write!(w, "\\u{:04x}", c as u32)?;
                    last = i + c.len_utf8();
                }
            }
            w.write_all(&s.as_bytes()[last..])
        }
    }

    /// `value` serialized at depth `depth`, appended to `out`.
    fn write_at<T: Serialize + ?Sized>(out: &mut Vec<u8>, depth: usize, value: &T) {
        let mut ser = serde_json::Serializer::with_formatter(
            &mut *out,
            Pretty {
                indent: depth,
                has_value: false,
            },
        );
        // Plans hold only strings, numbers, booleans and well-formed instants.
        let _ = value.serialize(&mut ser);
    }

    /// Bytes serde_json writes are UTF-8.
    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// From the document's start to the opening of the users array.
    pub(super) fn head(window: &WindowReport) -> String {
        let mut out = b"{\n  \"window\": ".to_vec();
        write_at(&mut out, 1, window);
        out.extend_from_slice(b",\n  \"users\": [");
        text(out)
    }

    /// What comes before user `i` in the users array.
    pub(super) fn separator(i: usize) -> &'static str {
        if i == 0 { "\n    " } else { ",\n    " }
    }

    /// One user's object, as it stands in the users array: the bytes
    /// [`write_at`] would write at depth 2 (the test below holds the two
    /// together), written directly because this is most of a large report
    /// and serde's generic path costs twice as much.
    pub(super) fn user(u: &UserPlan) -> String {
        let mut w = Writer {
            // Most users' objects fit (25 KiB on average in the benchmark
            // org), so few are copied as they grow.
            out: String::with_capacity(40 * 1024),
            depth: 2,
        };
        w.user(u);
        w.out
    }

    /// A pretty-printer of the report's own shapes, byte for byte what
    /// serde_json with [`Pretty`] writes. It writes only `str`s, so its
    /// text needs no UTF-8 check at the end.
    struct Writer {
        out: String,
        depth: usize,
    }

    impl Writer {
        fn line(&mut self) {
            const SPACES: &str = "                                                                ";
            self.out.push('\n');
            let mut n = 2 * self.depth;
            while n > 0 {
                let k = n.min(SPACES.len());
                self.out.push_str(&SPACES[..k]);
                n -= k;
            }
        }

        /// `"key": ` of an object's member (`first`: the first one).
        fn key(&mut self, first: bool, key: &str) {
            if !first {
                self.out.push(',');
            }
            self.line();
            self.out.push('"');
            self.out.push_str(key);
            self.out.push_str("\": ");
        }

        /// An object whose members `body` writes.
        fn object(&mut self, body: impl FnOnce(&mut Self)) {
            self.out.push('{');
            self.depth += 1;
            body(self);
            self.depth -= 1;
            self.line();
            self.out.push('}');
        }

        /// An array of `items`, each written by `item`.
        fn array<T>(&mut self, items: &[T], mut item: impl FnMut(&mut Self, &T)) {
            self.out.push('[');
            if items.is_empty() {
                self.out.push(']');
                return;
            }
            self.depth += 1;
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.line();
                item(self, x);
            }
            self.depth -= 1;
            self.line();
            self.out.push(']');
        }

        /// A JSON string: serde_json's escapes (`"`, `\\`, C0 controls)
        /// and [`Pretty::write_string_fragment`]'s (DEL, C1, bidi, line and
        /// paragraph separators).
        fn string(&mut self, s: &str) {
            self.out.push('"');
            let b = s.as_bytes();
            // Only these bytes can start something to escape: every unsafe
            // character at or above U+0080 is C1 (lead byte C2) or one of
            // U+2028–202E, U+2066–2069 (lead byte E2).
            let plain = |x: u8| {
                (0x20..0x7f).contains(&x) & (x != b'"') & (x != b'\\')
                    | (x >= 0x80) & (x != 0xc2) & (x != 0xe2)
            };
            // The usual case, checked without branching on each byte.
            if b.iter().fold(true, |all, &x| all & plain(x)) {
                self.out.push_str(s);
                self.out.push('"');
                return;
            }
            let mut last = 0;
            let mut i = 0;
            while i < b.len() {
                let x = b[i];
                if plain(x) {
                    i += 1;
                    continue;
                }
                let c = s[i..].chars().next().unwrap_or('\u{fffd}');
                let next = i + c.len_utf8();
                if x >= 0x80 && !is_unsafe(c) {
                    i = next;
                    continue;
                }
                self.out.push_str(&s[last..i]);
                match c {
                    '"' => self.out.push_str("\\\""),
                    '\\' => self.out.push_str("\\\\"),
                    '\u{8}' => self.out.push_str("\\b"),
                    '\t' => self.out.push_str("\\t"),
                    '\n' => self.out.push_str("\\n"),
                    '\u{c}' => self.out.push_str("\\f"),
                    '\r' => self.out.push_str("\\r"),
                    c => {
                        let _ = std::fmt::Write::write_fmt(
                            &mut self.out,
                            format_args!("\\u{:04x}", c as u32),
                        );
                    }
                }
                last = next;
                i = next;
            }
            self.out.push_str(&s[last..]);
            self.out.push('"');
        }

        fn opt_string(&mut self, s: Option<&str>) {
            match s {
                Some(s) => self.string(s),
                None => self.out.push_str("null"),
            }
        }

        /// Digits, `-`, `:`, `T` and `Z`: nothing to escape.
        fn instant(&mut self, t: &DateTime<Utc>) {
            utc_secs::with_text(t, |s| {
                self.out.push('"');
                self.out.push_str(s);
                self.out.push('"');
            });
        }

        fn opt_instant(&mut self, t: Option<&DateTime<Utc>>) {
            match t {
                Some(t) => self.instant(t),
                None => self.out.push_str("null"),
            }
        }

        fn user(&mut self, u: &UserPlan) {
            self.object(|w| {
                w.key(true, "user");
                w.string(&u.user);
                w.key(false, "timezone");
                w.string(&u.timezone);
                w.key(false, "statuses");
                w.array(&u.statuses, Self::status);
                w.key(false, "occurrences");
                w.array(&u.occurrences, Self::occurrence);
                w.key(false, "errors");
                w.array(&u.errors, Self::problem);
                w.key(false, "warnings");
                w.array(&u.warnings, Self::problem);
            });
        }

        fn status(&mut self, s: &Status) {
            self.object(|w| {
                w.key(true, "start");
                w.instant(&s.start);
                w.key(false, "end");
                w.instant(&s.end);
                w.key(false, "message");
                w.string(&s.message);
                w.key(false, "rule");
                w.string(&s.rule);
                w.key(false, "occurrences");
                w.array(&s.occurrences, |w, r: &OccRef| {
                    w.object(|w| {
                        w.key(true, "uid");
                        w.opt_string(r.uid.as_deref());
                        w.key(false, "recurrence_id");
                        w.opt_instant(r.recurrence_id.as_ref());
                    })
                });
            });
        }

        fn occurrence(&mut self, o: &OccurrenceReport) {
            self.object(|w| {
                w.key(true, "uid");
                w.opt_string(o.uid.as_deref());
                w.key(false, "recurrence_id");
                w.opt_instant(o.recurrence_id.as_ref());
                w.key(false, "summary");
                w.opt_string(o.summary.as_deref());
                w.key(false, "start");
                w.instant(&o.start);
                w.key(false, "end");
                w.instant(&o.end);
                w.key(false, "all_day");
                w.out.push_str(if o.all_day { "true" } else { "false" });
                w.key(false, "decision");
                w.string(match o.decision {
                    OccurrenceDecision::Status => "status",
                    OccurrenceDecision::Skipped => "skipped",
                });
                w.key(false, "rule");
                w.opt_string(o.rule.as_deref());
                w.key(false, "reason");
                w.opt_string(o.reason.as_deref());
                w.key(false, "calendar");
                w.string(&o.calendar);
            });
        }

        fn problem(&mut self, p: &SourceProblem) {
            self.object(|w| {
                w.key(true, "source");
                w.string(&p.source);
                w.key(false, "message");
                w.string(&p.message);
            });
        }
    }

    /// From the end of the users array (`users` of them) to the end.
    pub(super) fn tail(problems: &[SourceProblem], users: usize) -> String {
        let mut out = if users > 0 {
            b"\n  ]".to_vec()
        } else {
            b"]".to_vec()
        };
        out.extend_from_slice(b",\n  \"problems\": ");
        write_at(&mut out, 1, problems);
        out.extend_from_slice(b"\n}\n");
        text(out)
    }

    #[cfg(test)]
    mod tests {
        use chrono::{TimeZone, Utc};

        use crate::calendar::parse_zone_name;
        use crate::plan::{OccRef, OccurrenceDecision, OccurrenceReport, Plan, Status, UserPlan};
        use crate::report::{Format, render};

        fn plan(users: usize, problems: usize) -> Plan {
            let at = |h| Utc.with_ymd_and_hms(2026, 11, 30, h, 0, 0).unwrap();
            let user = |i: usize| UserPlan {
                user: format!("user-{i}"),
                timezone: "Europe/Lisbon".into(),
                statuses: if i == 2 {
                    Vec::new()
                } else {
                    vec![Status {
                        start: at(9),
                        end: at(10),
                        message: "Em reunião \"até\" 10:00\n\u{202e}\u{9b}\u{7f}\u{1b}\\".into(),
                        rule: "meeting".into(),
                        occurrences: vec![OccRef {
                            uid: Some("a\u{2028}b".into()),
                            recurrence_id: None,
                        }],
                    }]
                },
                occurrences: vec![
                    OccurrenceReport {
                        uid: None,
                        recurrence_id: Some(at(9)),
                        summary: Some("朝会 \u{2066}x\u{2069}".into()),
                        start: at(9),
                        end: at(10),
                        all_day: false,
                        decision: OccurrenceDecision::Skipped,
                        rule: None,
                        reason: Some("no-rule".into()),
                        calendar: "/srv/c.ics".into(),
                        private: false,
                    },
                    OccurrenceReport {
                        uid: Some(
                            "€ \u{8}\u{c}\u{1}\t\r\u{1f}\u{80}\u{a0}\u{200f}\u{202a}\u{2029}😀"
                                .into(),
                        ),
                        recurrence_id: None,
                        summary: Some(String::new()),
                        start: Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
                        end: at(10),
                        all_day: true,
                        decision: OccurrenceDecision::Status,
                        rule: Some("ooo".into()),
                        reason: None,
                        calendar: "C:\\cal\\\"x\".ics".into(),
                        private: false,
                    },
                ]
                .into_iter()
                .take(1 + i % 2)
                .collect(),
                errors: (0..i % 3)
                    .map(|k| crate::plan::SourceProblem {
                        source: format!("c{k}.ics:3"),
                        message: "unreadable \"x\"".into(),
                    })
                    .collect(),
                warnings: (0..i % 2)
                    .map(|k| crate::plan::SourceProblem {
                        source: format!("w{k}.ics"),
                        message: "repaired\u{9b}".into(),
                    })
                    .collect(),
                zone: parse_zone_name("Europe/Lisbon").unwrap(),
                label: "u".into(),
            };
            Plan {
                window: crate::plan::WindowReport {
                    from: at(0),
                    to: at(23),
                },
                users: (0..users).map(user).collect(),
                problems: (0..problems)
                    .map(|i| crate::plan::SourceProblem {
                        source: format!("users/{i}.toml"),
                        message: "bad \u{85}".into(),
                    })
                    .collect(),
            }
        }

        /// The contract as serde_json writes the whole plan, escaped by `for_json`.
        fn whole(plan: &Plan) -> String {
            let s = serde_json::to_string_pretty(plan).unwrap();
            crate::text::for_json(&s).into_owned() + "\n"
        }

        #[test]
        fn parts_make_the_whole_document() {
            for (users, problems) in [(0, 0), (1, 0), (0, 2), (3, 1), (6, 0)] {
                let p = plan(users, problems);
                assert_eq!(render(&p, Format::Json), whole(&p), "{users} users");
            }
            let doc = render(&plan(2, 1), Format::Json);
            assert!(doc.contains("\\u202e") && doc.contains("\\u009b") && doc.contains("\\u007f"));
            assert!(doc.contains("\\u001b") && doc.contains("\\u2028") && doc.contains("\\u0085"));
        }
    }
}
