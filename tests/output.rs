//! Hostile input never controls the admin's terminal, forges a log line or
//! runs a spreadsheet formula: calendars and user files carrying ESC, OSC,
//! NUL, CR/LF, C1 controls, bidi overrides and formulas, and a user file
//! whose very name holds a newline, through every human-facing output of
//! the binary (plan table/CSV/HTML, check, sync table, text logs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::copy_dir;
use crate::support::fake_graph::{self, FakeGraph, Options};
use crate::support::root;
use crate::support::{DAY, demo_copy, stderr, stdout};

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
    plan_with(cfg, format, &[], rust_log)
}

/// [`plan`] with more arguments.
fn plan_with(cfg: &Path, format: &str, more: &[&str], rust_log: Option<&str>) -> Output {
    let mut args = vec![
        "plan",
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        format,
    ];
    args.extend(more);
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
fn plan_table_shows_no_raw_control_characters() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = hostile_org(dir.path());
    let out = plan(&cfg, "table", None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let table = stdout(&out);
    assert_clean("table", &table);
    // Escaped, not dropped: the admin sees what was there.
    for shown in [
        r"Sync \x1b]0;pwned\x07\x1b[2J\x00 done",
        r"\u{202e}1 \u{9b}31m",
        r"echo\x1b[1m",
        r"skipme \x1b[31mred",
        r"reason\r\nFORGED\x1b]0;pwned\x07",
        r"missing\n WARN calstatus::forged: calendar\x1b[2K\u{9b}.ics",
        r"evil\n WARN calstatus::forged: user file\x1b[2K.toml",
    ] {
        assert!(table.contains(shown), "{shown} not in\n{table}");
    }
    // The HTML page too (it may be printed to a terminal).
    let out = plan(&cfg, "html", None);
    let html = stdout(&out);
    assert!(html.contains(r"reason\r\nFORGED\x1b]0;pwned\x07"), "{html}");
    assert_eq!(raw_controls(&html), Vec::<char>::new());
}

#[test]
fn plan_csv_neutralises_formulas_and_control_characters() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = hostile_org(dir.path());
    let out = plan(&cfg, "csv", None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert_clean("csv", &text);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    // One record per line: no cell spans lines.
    assert_eq!(records.len() + 1, text.lines().count());
    for r in &records {
        for cell in r {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "formula-leading cell {cell:?} in {r:?}"
            );
        }
    }
    let messages: Vec<&str> = records
        .iter()
        .filter(|r| &r[0] == MALLORY)
        .map(|r| &r[7])
        .collect();
    for want in [
        "'=HYPERLINK(\"http://evil.example/\",\"click\")",
        "'- Lunch",
        "'@SUM(1+1)",
        "'+cmd|' /C calc'!A0",
    ] {
        assert!(messages.contains(&want), "{want} not in {messages:?}");
    }
    assert!(
        records
            .iter()
            .any(|r| &r[0] == MALLORY && &r[6] == r"echo\x1b[1m")
    );
}

#[test]
fn plan_json_escapes_what_serde_leaves_raw() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = hostile_org(dir.path());
    let out = plan(&cfg, "json", None);
    let text = stdout(&out);
    // serde escapes C0; C1 and bidi controls are escaped too, data intact.
    assert_eq!(raw_controls(&text), Vec::<char>::new(), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mallory = v["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user"] == MALLORY)
        .unwrap();
    assert_eq!(
        mallory["statuses"][0]["message"],
        "Sync \x1b]0;pwned\x07\x1b[2J\0 done FORGED linein Room \u{202e}1 \u{9b}31m"
    );
}

#[test]
fn check_prints_problems_without_raw_control_characters() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = hostile_org(dir.path());
    let out = run(&["check", "--config", cfg.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert_clean("check", &err);
    for shown in [
        r"evil\n WARN calstatus::forged: user file\x1b[2K.toml:1:",
        r"missing\n WARN calstatus::forged: calendar\x1b[2K\u{9b}.ics",
        r": warning: line 41: dropped a malformed line: garbage line \x1b[2J without a colon",
    ] {
        assert!(err.contains(shown), "{shown} not in\n{err}");
    }
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

/// One user whose meeting summary is hostile, against the fake Graph.
fn sync_org(dir: &Path, fake: &FakeGraph, user: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("users")).unwrap();
    std::fs::create_dir_all(dir.join("calendars")).unwrap();
    copy_dir(&root().join("rules"), &dir.join("rules"));
    std::fs::write(dir.join("secret.txt"), fake_graph::CLIENT_SECRET).unwrap();
    std::fs::write(
        dir.join("calendars/u.ics"),
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:s-1\r\nDTSTART:20310310T090000Z\r\nDTEND:20310310T100000Z\r\nSUMMARY:Sync \x1b]0;pwned\x07\x1b[2J\0 done\\nFORGED line \u{202e}x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("users/u.toml"),
        format!(
            "user = \"{user}\"\ncalendars = [\"calendars/u.ics\"]\ntimezone = \"UTC\"\n\n[[rule]]\nname = \"echo\\u001b[1m\"\nbusy = [\"busy\"]\nmessage = \"{{summary}}\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("calstatus.toml"),
        format!(
            "[org]\ntimezone = \"UTC\"\n\n[graph]\ntenant_id = \"{}\"\nclient_id = \"{}\"\nclient_secret_file = \"secret.txt\"\ngraph_url = \"{url}\"\nlogin_url = \"{url}\"\n\n[state]\npath = \"state.db\"\n",
            fake_graph::TENANT,
            fake_graph::CLIENT_ID,
            url = fake.url()
        ),
    )
    .unwrap();
    dir.join("calstatus.toml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_table_shows_no_raw_control_characters() {
    let user = "00000001-0000-4000-8000-000000000001".to_string();
    let fake = FakeGraph::start(Options {
        users: vec![user.clone()],
        ..Options::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = sync_org(dir.path(), &fake, &user);
    let out = tokio::task::spawn_blocking(move || {
        run(
            &[
                "sync",
                "--config",
                cfg.to_str().unwrap(),
                "--at",
                "2031-03-10T09:05:00Z",
                "--dry-run",
            ],
            None,
        )
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.contains("SET"), "{table}");
    assert_clean("sync table", &table);
    assert!(
        table.contains(r"message: Sync \x1b]0;pwned\x07\x1b[2J\x00 done"),
        "{table}"
    );
    assert_eq!(fake.set_count(), 0);
}

/// `--output` naming a FIFO (or a device such as `/dev/null`) writes into
/// it and leaves it what it is: renaming a finished report over it would
/// replace it with a plain file (run as root, `/dev/null` itself).
#[cfg(unix)]
#[test]
fn output_into_a_fifo_leaves_the_fifo() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = demo_copy(dir.path());
    for format in ["json", "html"] {
        let fifo = dir.path().join(format!("report-{format}"));
        assert!(
            Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
        };
        let out = plan_with(&cfg, format, &["--output", fifo.to_str().unwrap()], None);
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "{}",
            stderr(&out)
        );
        // Checked before waiting for the reader, which a replaced FIFO
        // would leave waiting for a writer.
        let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(kind.is_fifo(), "{format}: the FIFO was replaced: {kind:?}");
        assert!(!fifo.with_extension("calstatus-tmp").exists());
        let text = reader.join().unwrap();
        assert!(text.len() > 100, "{format}: {text:?}");
    }
}
