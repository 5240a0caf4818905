//! Untrusted text made safe for the places a person reads it: terminals,
//! text logs and spreadsheets. Calendar summaries come from anyone who can
//! send an invitation and user files are written by employees, so nothing
//! from them may move the cursor, retitle the window, forge a log line or
//! run a spreadsheet formula.
//!
//! Conventions (one home, used by every renderer):
//! - **Terminals and text logs** ([`for_terminal`], [`Escaped`],
//!   [`LogFields`]): every control character (C0, DEL, C1), the bidi
//!   embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069) and
//!   the Unicode line and paragraph separators (U+2028, U+2029) are replaced
//!   by a visible escape: `\n`, `\r`, `\t`, `\xNN` for the other C0 controls
//!   and DEL (`\x1b`, `\x00`), `\u{NN}` for the rest (`\u{9b}`, `\u{202e}`).
//!   Backslashes are left as they are (Windows paths stay readable), so a
//!   literal `\n` typed by a user looks like an escaped newline: harmless,
//!   since it can no longer start a line.
//! - **JSON** ([`for_json`], [`JsonLogs`]): serde already writes C0
//!   controls as `\u001b`; DEL, C1, the bidi controls and the separators are
//!   written as `\u009b` too. The data is unchanged for any JSON reader.
//! - **CSV cells** ([`csv_cell`]): a cell starting with `=`, `+`, `-`, `@`,
//!   a tab or a carriage return gets a `'` in front (OWASP's advice against
//!   formula injection), whatever the column: `- Lunch` becomes `'- Lunch`.
//!   The CSV report escapes each cell for the terminal first (it is often
//!   printed), so a record is always one line.
//!
//! Pure: functions of their input; the writer adapters only pass text on.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io;

use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::{FormatFields, MakeWriter};

/// `true` for a character that must not reach a terminal or a log raw.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}'
        )
}

/// Writes the visible escape of `c` (see the module conventions).
pub fn write_escape(out: &mut impl fmt::Write, c: char) -> fmt::Result {
    match c {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        c if (c as u32) < 0x20 || c == '\x7f' => write!(out, "\\x{:02x}", c as u32),
        c => write!(out, "\\u{{{:x}}}", c as u32),
    }
}

/// `s` with every unsafe character replaced by its visible escape; borrowed
/// when there is none (the usual case).
pub fn for_terminal(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    let _ = Escaping(&mut out).write_str(s);
    Cow::Owned(out)
}

/// Serialized JSON (from serde_json) with the unsafe characters serde leaves
/// raw (DEL, C1, bidi controls, separators) written as `\uXXXX` escapes.
/// serde escapes every C0 control inside strings, and JSON outside strings
/// is printable ASCII and whitespace, so such a character is always inside
/// a string, where the escape stands for the very same character.
pub fn for_json(json: &str) -> Cow<'_, str> {
    let unsafe_here = |c: char| is_unsafe(c) && (c as u32) >= 0x20;
    if !json.chars().any(unsafe_here) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if unsafe_here(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A CSV cell that no spreadsheet reads as a formula: `'` is put in front of
/// a cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return.
pub fn csv_cell(s: &str) -> Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// A `fmt::Write` that escapes unsafe characters on their way to `W`.
pub struct Escaping<W>(pub W);

impl<W: fmt::Write> fmt::Write for Escaping<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut last = 0;
        for (i, c) in s.char_indices() {
            if is_unsafe(c) {
                self.0.write_str(&s[last..i])?;
                write_escape(&mut self.0, c)?;
                last = i + c.len_utf8();
            }
        }
        self.0.write_str(&s[last..])
    }
}

/// Displays a value with unsafe characters escaped, without an intermediate
/// string: `eprintln!("{}", Escaped(&problem))`.
pub struct Escaped<T>(pub T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(Escaping(f), "{}", self.0)
    }
}

/// Field formatter of the text logs: tracing-subscriber's default layout
/// (`message key=value …`) with every field name and value escaped, so one
/// event is always one line whatever a path or a calendar contains. Level,
/// target and span names are the program's own and keep their colours.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogFields;

impl<'writer> FormatFields<'writer> for LogFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut escaping = Escaping(&mut writer);
        DefaultFields::new().format_fields(Writer::new(&mut escaping), fields)
    }
}

/// A `MakeWriter` for JSON logs: each formatted event (tracing-subscriber
/// writes one per `write_all`) goes through [`for_json`] on its way to the
/// inner writer, so C1 and bidi controls are `\u`-escaped like C0 ones.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonLogs<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for JsonLogs<M> {
    type Writer = JsonLogs<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        JsonLogs(self.0.make_writer())
    }
}

impl<W: io::Write> io::Write for JsonLogs<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(s) => self.0.write_all(for_json(s).as_bytes())?,
            Err(_) => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// An error and its causes on one line (`a: b: c`), each cause once
/// (many errors repeat their source's text in their own).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        src = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn an_error_chain_is_one_line_with_each_cause_once() {
        #[derive(Debug)]
        struct Outer(std::io::Error, &'static str);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.1)
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let inner = || std::io::Error::other("connection refused");
        assert_eq!(
            error_chain(&Outer(inner(), "connecting")),
            "connecting: connection refused"
        );
        // A cause already quoted by its error is not repeated.
        assert_eq!(
            error_chain(&Outer(inner(), "connecting: connection refused")),
            "connecting: connection refused"
        );
    }

    #[test]
    fn clean_text_is_borrowed_and_unchanged() {
        for s in [
            "",
            "In a meeting until 10:00",
            "Em reunião — às 10:00 ü 日本",
            r"C:\Users\x",
        ] {
            assert!(matches!(for_terminal(s), Cow::Borrowed(t) if t == s), "{s}");
        }
    }

    #[test]
    fn controls_become_visible_escapes() {
        assert_eq!(
            for_terminal("a\x1b]0;title\x07b\0c\r\nd\te\x7f"),
            r"a\x1b]0;title\x07b\x00c\r\nd\te\x7f"
        );
        // C1 (8-bit CSI), bidi overrides and isolates, line separators.
        assert_eq!(
            for_terminal("\u{9b}31m \u{202e}gpj.exe\u{2066}\u{2069} \u{2028}\u{2029}"),
            r"\u{9b}31m \u{202e}gpj.exe\u{2066}\u{2069} \u{2028}\u{2029}"
        );
        // Left-to-right and right-to-left marks carry no state: kept.
        assert_eq!(for_terminal("\u{200f}שלום"), "\u{200f}שלום");
    }

    #[test]
    fn nothing_unsafe_survives() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let out = for_terminal(&all);
        assert!(!out.chars().any(is_unsafe));
        assert!(!out.contains('\n'));
        assert_eq!(Escaped("x\ny").to_string(), r"x\ny");
    }

    #[test]
    fn json_keeps_its_data_and_loses_raw_controls() {
        let value =
            serde_json::json!({"m": "a\x1b[2J\u{7f}\u{9b}31m\u{202e}x\u{2028}\n", "k": [1, "ü"]});
        for text in [
            value.to_string(),
            serde_json::to_string_pretty(&value).unwrap(),
        ] {
            let safe = for_json(&text);
            assert!(!safe.chars().any(|c| is_unsafe(c) && c != '\n'), "{safe}");
            assert!(safe.contains(r"\u009b31m\u202ex\u2028"), "{safe}");
            let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
            assert_eq!(back, value);
        }
        assert!(matches!(for_json("{\n  \"a\": 1\n}"), Cow::Borrowed(_)));
    }

    #[test]
    fn formula_cells_are_quoted() {
        for (cell, want) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+1", "'+1"),
            ("-2+3", "'-2+3"),
            ("- Lunch", "'- Lunch"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
        ] {
            assert_eq!(csv_cell(cell), want);
        }
        for cell in [
            "",
            "Lunch",
            "2026-11-27T09:00:00Z",
            "3",
            " =1",
            "'=1",
            "a=b",
        ] {
            assert!(
                matches!(csv_cell(cell), Cow::Borrowed(c) if c == cell),
                "{cell}"
            );
        }
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_log_event_is_one_line() {
        let buf = Buf::default();
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .without_time()
            .with_ansi(false)
            .fmt_fields(LogFields)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let path = "users/x\n WARN calstatus: forged\r\x1b[2K\0.toml";
            tracing::warn!(message = "A user file has problems.", problem = %path, debug = ?path);
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.ends_with('\n'));
        assert!(
            !text.trim_end_matches('\n').chars().any(is_unsafe),
            "{text}"
        );
        assert!(
            text.contains(r"problem=users/x\n WARN calstatus: forged\r\x1b[2K\x00.toml"),
            "{text}"
        );
    }

    #[test]
    fn a_json_log_event_has_no_raw_c1_or_bidi_control() {
        let buf = Buf::default();
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(JsonLogs(move || sink.clone()))
            .finish();
        let path = "users/x\n\u{9b}2J\u{202e}\x1b.toml";
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(message = "A user file has problems.", problem = %path);
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            !text.trim_end_matches('\n').chars().any(is_unsafe),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["fields"]["problem"], path);
    }
}
