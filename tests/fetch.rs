//! Calendar URLs through a real loopback HTTP server: size cap, timeouts,
//! login pages, errors, and the internal-address guard.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use crate::support::{copy_dir, http_server, respond_empty, respond_ok, root};

/// Serves a few canned answers on 127.0.0.1; returns the base URL.
fn serve() -> String {
    let port = http_server(|path, s| match path {
        "/cal.ics" => respond_ok(
            s,
            "text/calendar",
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:web-1\r\nDTSTART:20261127T150000Z\r\nDTEND:20261127T160000Z\r\nSUMMARY:From the web\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        ),
        "/login" => respond_ok(
            s,
            "text/html",
            "<!DOCTYPE html><html><body>Sign in to your account</body></html>",
        ),
        "/huge" => {
            // No Content-Length: the cap must stop the stream itself.
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/calendar\r\nConnection: close\r\n\r\nBEGIN:VCALENDAR\r\n"
            );
            let chunk = vec![b'X'; 64 * 1024];
            for _ in 0..(512 * 16) {
                if s.write_all(&chunk).is_err() {
                    break;
                }
            }
        }
        "/slow" => {
            std::thread::sleep(Duration::from_secs(5));
            respond_empty(s, "200 OK", "");
        }
        _ => respond_empty(s, "404 Not Found", ""),
    });
    format!("http://127.0.0.1:{port}")
}

/// The id of test user `i`.
pub fn user_id(i: usize) -> String {
    format!("00000000-0000-0000-0000-{i:012}")
}

/// An org in a temporary directory with the default rules, `[fetch]` set
/// to `fetch`, and user `i` reading `calendars[i]`; returns the directory
/// and the config path.
pub fn org(fetch: &str, calendars: &[String]) -> (tempfile::TempDir, String) {
    let users: Vec<Vec<String>> = calendars.iter().map(|c| vec![c.clone()]).collect();
    org_with(fetch, &users)
}

/// Like [`org`], with several calendars per user.
pub fn org_with(fetch: &str, users: &[Vec<String>]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("users")).unwrap();
    copy_dir(&root().join("rules"), &dir.path().join("rules"));
    // These orgs test fetching, not who may read which file: every
    // calendar file is declared shared (see `fetch.shared_calendars`).
    let shared: Vec<String> = users
        .iter()
        .flatten()
        .filter(|c| !c.contains("://"))
        .map(|c| format!("{c:?}"))
        .collect();
    std::fs::write(
        dir.path().join("calstatus.toml"),
        format!(
            "[org]\ntimezone = \"UTC\"\n\n[fetch]\n{fetch}\nshared_calendars = [{}]\n",
            shared.join(", ")
        ),
    )
    .unwrap();
    for (i, cals) in users.iter().enumerate() {
        let list: Vec<String> = cals.iter().map(|c| format!("{c:?}")).collect();
        std::fs::write(
            dir.path().join(format!("users/u{i:04}.toml")),
            format!(
                "user = \"{}\"\ncalendars = [{}]\n",
                user_id(i),
                list.join(", ")
            ),
        )
        .unwrap();
    }
    let cfg = dir.path().join("calstatus.toml").display().to_string();
    (dir, cfg)
}

/// Runs `calstatus` with `args` (and extra environment); returns the exit
/// code, stdout and stderr.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_calstatus"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `plan --format json` over 2026-11-27 (UTC); returns the exit code, the
/// parsed plan and stderr.
pub fn plan_json(cfg: &str) -> (Option<i32>, serde_json::Value, String) {
    let (code, out, err) = run(&crate::support::plan_json_day(cfg), &[]);
    let v = serde_json::from_str(&out).unwrap_or(serde_json::Value::Null);
    (code, v, err)
}

/// The errors of user `user`, joined by "; ".
pub fn error_of(v: &serde_json::Value, user: usize) -> String {
    let id = user_id(user);
    let u = v["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user"] == id.as_str())
        .unwrap();
    u["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn urls_fail_one_user_at_a_time_and_never_hang() {
    let base = serve();
    let (_dir, cfg) = org(
        "allow_http = true\nallow_private_networks = true\ntimeout = \"1s\"\nmax_bytes = 1000000",
        &[
            format!("{base}/cal.ics"),
            format!("{base}/login"),
            format!("{base}/huge"),
            format!("{base}/slow"),
            format!("{base}/missing"),
            "http://127.0.0.1:9/unreachable.ics".to_string(),
        ],
    );
    let started = std::time::Instant::now();
    let (code, v, err) = plan_json(&cfg);
    assert_eq!(code, Some(1), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let u0 = &v["users"][0];
    assert_eq!(u0["statuses"][0]["message"], "In a meeting until 16:00");
    assert!(error_of(&v, 1).contains("HTML"), "{}", error_of(&v, 1));
    assert!(
        error_of(&v, 2).contains("more than 1000000 bytes"),
        "{}",
        error_of(&v, 2)
    );
    assert!(
        error_of(&v, 3).contains("not read within 1s"),
        "{}",
        error_of(&v, 3)
    );
    assert!(error_of(&v, 4).contains("HTTP 404"), "{}", error_of(&v, 4));
    assert!(
        error_of(&v, 5).contains("cannot fetch"),
        "{}",
        error_of(&v, 5)
    );
}

#[test]
fn user_files_cannot_make_the_bot_fetch_internal_addresses() {
    let base = serve();
    let (_dir, cfg) = org(
        "allow_http = true",
        &[
            format!("{base}/cal.ics"),
            "https://localhost/cal.ics".into(),
            "https://169.254.169.254/latest/meta-data".into(),
        ],
    );
    let (code, v, _) = plan_json(&cfg);
    assert_eq!(code, Some(1));
    for i in 0..3 {
        assert!(
            error_of(&v, i).contains("internal address"),
            "{i}: {}",
            error_of(&v, i)
        );
    }
    // Plain http is refused unless allowed.
    let (_dir, cfg) = org(
        "allow_private_networks = true",
        &[format!("{base}/cal.ics")],
    );
    let (_, v, _) = plan_json(&cfg);
    assert!(
        error_of(&v, 0).contains("plain http://"),
        "{}",
        error_of(&v, 0)
    );
}

/// A calendar server's transient failures (503, 429 with a short
/// `Retry-After`, a dropped connection) are tried again within the fetch;
/// a 404 and a long `Retry-After` are not (the next refresh tries again).
#[test]
fn transient_failures_of_a_calendar_url_are_retried_within_the_fetch() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    const ICS: &str = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:r-1\r\nDTSTART:20261127T150000Z\r\nDTEND:20261127T160000Z\r\nSUMMARY:Retried\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    let hits: Arc<[AtomicUsize; 5]> = Arc::new(Default::default());
    let h = hits.clone();
    let port = http_server(move |path, s| {
        let (k, first) = match path {
            "/503" => (0, "503 Service Unavailable"),
            "/429" => (1, "429 Too Many Requests"),
            "/drop" => (2, ""),
            "/404" => (3, "404 Not Found"),
            _ => (4, "429 Too Many Requests"),
        };
        let n = h[k].fetch_add(1, Ordering::SeqCst);
        match (k, n) {
            (2, 0) => {} // the connection is closed without an answer
            (3, _) => respond_empty(s, first, ""),
            (4, _) => respond_empty(s, first, "Retry-After: 3600\r\n"),
            (_, 0) => respond_empty(s, first, "Retry-After: 1\r\n"),
            _ => respond_ok(s, "text/calendar", ICS),
        }
    });
    let base = format!("http://127.0.0.1:{port}");
    let (_dir, cfg) = org(
        "allow_http = true\nallow_private_networks = true\ntimeout = \"10s\"",
        &["/503", "/429", "/drop", "/404", "/later"].map(|p| format!("{base}{p}")),
    );
    let (code, v, err) = plan_json(&cfg);
    assert_eq!(code, Some(1), "{err}");
    for user in 0..3 {
        assert_eq!(error_of(&v, user), "", "user {user}: {v}");
    }
    assert!(error_of(&v, 3).contains("HTTP 404"), "{v}");
    assert!(error_of(&v, 4).contains("HTTP 429"), "{v}");
    let hits: Vec<usize> = hits.iter().map(|h| h.load(Ordering::SeqCst)).collect();
    assert_eq!(hits, [2, 2, 2, 1, 1], "requests per path");
}
