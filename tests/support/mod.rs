//! Shared test helpers.

#[allow(dead_code)]
pub mod daemon;
#[allow(dead_code)]
pub mod fake_graph;
#[allow(dead_code)]
pub mod orggen;
pub mod pg;

use std::path::{Path, PathBuf};

use calstatus::calendar::{Occurrence, Window, Zone, expand, parse, parse_zone_name};
use chrono::{DateTime, Utc};

/// Says loudly that a test skipped `what` and why (on stdout, which
/// `cargo test` shows, and stderr) — or fails it when
/// `CALSTATUS_NO_SKIP` is set: `.ci/run` installs everything, so nothing
/// may skip there.
pub fn skip(test: &str, why: &str) {
    let msg = format!("SKIPPED {test}: {why}");
    if std::env::var_os("CALSTATUS_NO_SKIP").is_some_and(|v| !v.is_empty()) {
        panic!("{msg} — and CALSTATUS_NO_SKIP is set");
    }
    println!("{msg}");
    eprintln!("{msg}");
}

/// Parses an RFC 3339 instant.
pub fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A zone by name.
pub fn zone(name: &str) -> Zone {
    parse_zone_name(name).unwrap()
}

/// Expands ICS text for a user in `tz` over `[from, to)`.
pub fn occurrences(ics: &str, tz: &str, from: &str, to: &str) -> Vec<Occurrence> {
    expand_with_diags(ics, tz, from, to).0
}

/// Like [`occurrences`], with the diagnostics.
pub fn expand_with_diags(
    ics: &str,
    tz: &str,
    from: &str,
    to: &str,
) -> (Vec<Occurrence>, Vec<calstatus::calendar::Diag>) {
    let cal = parse(ics).expect("parses");
    let window = Window {
        from: t(from),
        to: t(to),
    };
    expand(&cal, &zone(tz), window)
}

/// `start..end` of each occurrence as RFC 3339 UTC strings.
pub fn spans(occ: &[Occurrence]) -> Vec<String> {
    occ.iter()
        .map(|o| format!("{}..{}", fmt(o.start), fmt(o.end)))
        .collect()
}

/// RFC 3339, seconds, Z.
pub fn fmt(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Wraps VEVENT lines into a calendar.
pub fn cal(body: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{}\r\nEND:VCALENDAR\r\n",
        body.trim().replace('\n', "\r\n")
    )
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Copies a directory tree (for tests that edit an org).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let dest = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// Runs the built binary (without `CALSTATUS_CONFIG` from the environment).
pub fn calstatus(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_calstatus"))
        .args(args)
        .env_remove("CALSTATUS_CONFIG")
        .output()
        .expect("runs")
}

/// A process's standard output, as text.
/// `plan --config CFG --format json` for 2026-11-27 (UTC).
pub fn plan_json_day(cfg: &str) -> [&str; 9] {
    [
        "plan",
        "--config",
        cfg,
        "--format",
        "json",
        "--from",
        "2026-11-27T00:00:00Z",
        "--to",
        "2026-11-28T00:00:00Z",
    ]
}

pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A process's standard error, as text.
pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A private copy of the demo org, with the shipped rules inside it; returns its config.
pub fn demo_copy(dir: &Path) -> PathBuf {
    copy_dir(&root().join("examples/demo"), dir);
    copy_dir(&root().join("rules"), &dir.join("rules"));
    let cfg = dir.join("calstatus.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("../../rules", "rules");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// `--from`/`--to` for the demo's day, 2026-11-27 (UTC).
pub const DAY: [&str; 4] = [
    "--from",
    "2026-11-27T00:00:00Z",
    "--to",
    "2026-11-28T00:00:00Z",
];

/// A tiny HTTP/1.1 server on 127.0.0.1 for calendar fetching tests: each
/// connection's request line and headers are read, then `answer` gets the
/// request target and the stream to write the whole response to (or to
/// hold, or to drop). Returns the port.
pub fn http_server(answer: impl Fn(&str, &mut std::net::TcpStream) + Send + Sync + 'static) -> u16 {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let answer = std::sync::Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let mut stream = stream;
                answer(&target, &mut stream);
            });
        }
    });
    port
}

/// Writes a complete `200 OK` response with `body` of `content_type`.
pub fn respond_ok(s: &mut std::net::TcpStream, content_type: &str, body: &str) {
    use std::io::Write;
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Writes an empty response with `status` (e.g. "404 Not Found") and extra headers.
pub fn respond_empty(s: &mut std::net::TcpStream, status: &str, headers: &str) {
    use std::io::Write;
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
}
