//! Hostile input never controls the admin's terminal, forges a log line or
//! runs a spreadsheet formula: calendars and user files carrying ESC, OSC,
//! NUL, CR/LF, C1 controls, bidi overrides and formulas, and a user file
//! whose very name holds a newline, through every human-facing output of
//! the binary (for now the text and JSON logs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::cli::{DAY, demo_copy, stderr};

const MALLORY: &str = "66666666-7777-4888-8999-000000000000";

/// Mallory's calendar, raw control bytes written straight into the file;
/// `\n` in SUMMARY is the ICS escape for a newline.
fn hostile_ics() -> String {
    let event = |uid: &str, hour: u32, lines: &str| {
        format!(
            "BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTART:20261127T{hour:02}0000Z\r\nDTEND:20261127T{:02}0000Z\r\n{lines}END:VEVENT\r\n",
            hour + 1
        )
    };
    [
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//evil//EN\r\n".to_string(),
        event(
            "evil-1\x1b[5m",
            9,
            "SUMMARY:Sync \x1b]0;pwned\x07\x1b[2J\0 done\\nFORGED line\r\nLOCATION: in Room \u{202e}1 \u{9b}31m\u{85}\r\n",
        ),
        event(
            "evil-2",
            11,
            "SUMMARY:=HYPERLINK(\"http://evil.example/\"\\,\"click\")\r\n",
        ),
        event("evil-3", 13, "SUMMARY:skipme \x1b[31mred\r\n"),
        event("evil-4", 14, "SUMMARY:- Lunch\r\n"),
        event("evil-5", 15, "SUMMARY:@SUM(1+1)\r\n"),
        event("evil-6", 16, "SUMMARY:+cmd|' /C calc'!A0\r\n"),
        "garbage line \x1b[2J without a colon\r\n".to_string(),
        "END:VCALENDAR\r\n".to_string(),
    ]
    .concat()
}

/// Mallory's user file: personal rules echo the summary and location; the
/// rule names and the skip reason carry ESC, OSC and CR/LF; one calendar
/// path holds a newline that would forge a log line.
fn hostile_user() -> String {
    format!(
        r#"user = "{MALLORY}"
calendars = ["calendars/mallory.ics", "calendars/missing\n WARN calstatus::forged: calendar\u001b[2K\u009b.ics"]
timezone = "UTC"

[[rule]]
name = "hide\u001b[8m"
summary = "skipme"
skip = "reason\r\nFORGED\u001b]0;pwned\u0007"

[[rule]]
name = "echo\u001b[1m"
busy = ["busy"]
message = "{{summary}}{{location}}"
"#
    )
}

/// A broken user file whose name starts a forged log line.
const EVIL_NAME: &str = "evil\n WARN calstatus::forged: user file\x1b[2K.toml";

/// The demo org plus Mallory's files.
fn hostile_org(dir: &Path) -> PathBuf {
    let cfg = demo_copy(dir);
    std::fs::write(dir.join("calendars/mallory.ics"), hostile_ics()).unwrap();
    std::fs::write(dir.join("users/mallory.toml"), hostile_user()).unwrap();
    std::fs::write(dir.join("users").join(EVIL_NAME), "user = \"not a guid\"\n").unwrap();
    cfg
}

fn run(args: &[&str], rust_log: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_calstatus"));
    c.args(args).env_remove("CALSTATUS_CONFIG");
    match rust_log {
        Some(l) => c.env("RUST_LOG", l),
        None => c.env_remove("RUST_LOG"),
    };
    c.output().expect("runs")
}

fn plan(cfg: &Path, format: &str, rust_log: Option<&str>) -> Output {
    let mut args = vec![
        "plan",
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        format,
    ];
    args.extend(DAY);
    run(&args, rust_log)
}

/// Characters a terminal may act on, other than the line feed ending a
/// line (written out here, independent of the code under test).
fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| {
            c != '\n'
                && (c.is_control()
                    || ('\u{202a}'..='\u{202e}').contains(&c)
                    || ('\u{2066}'..='\u{2069}').contains(&c)
                    || c == '\u{2028}'
                    || c == '\u{2029}')
        })
        .collect()
}

/// Lines an attacker wrote rather than the program.
fn forged_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.trim_start().starts_with("WARN calstatus::forged") || l.starts_with("FORGED"))
        .collect()
}

fn assert_clean(what: &str, text: &str) {
    assert_eq!(raw_controls(text), Vec::<char>::new(), "{what}:\n{text:?}");
    assert_eq!(forged_lines(text), Vec::<&str>::new(), "{what}:\n{text}");
}

#[test]
fn text_logs_are_one_line_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = hostile_org(dir.path());
    let out = plan(&cfg, "json", Some("calstatus=debug"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let logs = stderr(&out);
    assert_clean("text logs", &logs);
    let event = regex::Regex::new(r"^ *(TRACE|DEBUG|INFO|WARN|ERROR) calstatus(::\w+)*: ").unwrap();
    for line in logs.lines() {
        assert!(event.is_match(line), "not an event line: {line:?}\n{logs}");
    }
    assert!(
        logs.contains(r"problem=")
            && logs.contains(r"evil\n WARN calstatus::forged: user file\x1b[2K.toml"),
        "{logs}"
    );
    assert!(
        logs.contains(r"source=")
            && logs.contains(r"missing\n WARN calstatus::forged: calendar\x1b[2K\u{9b}.ics"),
        "{logs}"
    );
    // JSON logs stay JSON, one object per line, C1 escaped like C0.
    let mut args = vec![
        "--log-format",
        "json",
        "plan",
        "--config",
        cfg.to_str().unwrap(),
    ];
    args.extend(DAY);
    let out = run(&args, Some("calstatus=debug"));
    let logs = stderr(&out);
    assert_eq!(raw_controls(&logs), Vec::<char>::new(), "{logs}");
    assert!(logs.contains(r"calendar\u001b[2K\u009b.ics"), "{logs}");
    assert!(logs.lines().count() >= 2, "{logs}");
    for line in logs.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect(line);
        assert!(v["level"].is_string(), "{line}");
    }
}
