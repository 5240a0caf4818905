//! The JSON contract (docs/plan-json.md), written a user at a time.
//!
//! The document is serde_json's pretty form of the [`Plan`](crate::plan::Plan)
//! (two-space indent) with DEL, C1, bidi controls and the line/paragraph
//! separators written as `\uXXXX` (as [`crate::text::for_json`] does), then a
//! newline. [`Pretty`] is serde_json's `PrettyFormatter` started at any
//! depth, so each user's object can be serialized on its own, on any thread,
//! and the parts joined by [`super::Parts`] give the same bytes as the whole.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::Formatter;

use crate::plan::{SourceProblem, UserPlan, WindowReport};
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

impl Formatter for Pretty {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.indent += 1;
        self.has_value = false;
        w.write_all(b"[")
    }

    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.indent -= 1;
        if self.has_value {
            w.write_all(b"\n")?;
            indent(w, self.indent)?;
        }
        w.write_all(b"]")
    }

    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        w.write_all(if first { b"\n" } else { b",\n" })?;
        indent(w, self.indent)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.indent += 1;
        self.has_value = false;
        w.write_all(b"{")
    }

    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.indent -= 1;
        if self.has_value {
            w.write_all(b"\n")?;
            indent(w, self.indent)?;
        }
        w.write_all(b"}")
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        w.write_all(if first { b"\n" } else { b",\n" })?;
        indent(w, self.indent)
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
    fn write_string_fragment<W: ?Sized + Write>(&mut self, w: &mut W, s: &str) -> io::Result<()> {
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
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
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

/// One user's object, as it stands in the users array.
pub(super) fn user(u: &UserPlan) -> String {
    let mut out = Vec::with_capacity(16 * 1024);
    write_at(&mut out, 2, u);
    text(out)
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
    use crate::plan::{Decision, OccRef, OccurrenceReport, Plan, Status, UserPlan};
    use crate::report::{Format, render};

    fn plan(users: usize, problems: usize) -> Plan {
        let at = |h| Utc.with_ymd_and_hms(2026, 11, 30, h, 0, 0).unwrap();
        let user = |i: usize| UserPlan {
            user: format!("user-{i}"),
            timezone: "Europe/Lisbon".into(),
            statuses: vec![Status {
                start: at(9),
                end: at(10),
                message: "Em reunião \"até\" 10:00\n\u{202e}\u{9b}\u{7f}\u{1b}\\".into(),
                rule: "meeting".into(),
                occurrences: vec![OccRef {
                    uid: Some("a\u{2028}b".into()),
                    recurrence_id: None,
                }],
            }],
            occurrences: vec![OccurrenceReport {
                uid: None,
                recurrence_id: Some(at(9)),
                summary: Some("朝会 \u{2066}x\u{2069}".into()),
                start: at(9),
                end: at(10),
                all_day: false,
                decision: Decision::Skipped,
                rule: None,
                reason: Some("no-rule".into()),
                calendar: "/srv/c.ics".into(),
                private: false,
            }],
            errors: Vec::new(),
            warnings: Vec::new(),
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
        for (users, problems) in [(0, 0), (1, 0), (0, 2), (3, 1)] {
            let p = plan(users, problems);
            assert_eq!(render(&p, Format::Json), whole(&p), "{users} users");
        }
        let doc = render(&plan(2, 1), Format::Json);
        assert!(doc.contains("\\u202e") && doc.contains("\\u009b") && doc.contains("\\u007f"));
        assert!(doc.contains("\\u001b") && doc.contains("\\u2028") && doc.contains("\\u0085"));
    }
}
