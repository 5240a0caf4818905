//! Secrets in calendar URLs (tokens in the query, long private path
//! segments, user info) never reach an error, a report, a log line or
//! `check` output — whichever way the fetch fails: connection refused,
//! timeout, a redirect to an unreachable or hanging address, or a refused
//! redirect.

use std::net::TcpListener;
use std::time::Duration;

use crate::fetch::{error_of, org_with, plan_json, run};
use crate::support::{http_server, respond_empty};

/// What every secret in this file contains.
const MARK: &str = "SECRET";
/// A long private path segment (Google-style).
const SEG: &str = "SECRETsegment0123456789abcdefghij";

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A server that accepts connections and never answers; returns its port.
pub fn hanging_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

/// A server answering every request with a redirect to `targets[path]`.
fn redirecting_server(targets: Vec<(&'static str, String)>) -> u16 {
    http_server(
        move |path, s| match targets.iter().find(|(p, _)| *p == path) {
            Some((_, to)) => respond_empty(s, "302 Found", &format!("Location: {to}\r\n")),
            None => respond_empty(s, "404 Not Found", ""),
        },
    )
}

#[test]
fn url_secrets_never_reach_errors_reports_logs_or_check() {
    let closed = closed_port();
    let hang = hanging_server();
    let redirect = redirecting_server(vec![
        (
            "/to-closed",
            format!("http://127.0.0.1:{closed}/{SEG}/r.ics?token=SECRETredirect"),
        ),
        (
            "/to-hanging",
            format!("http://127.0.0.1:{hang}/{SEG}/r.ics?token=SECRETredirecthang"),
        ),
        ("/to-ftp", "ftp://127.0.0.1/x.ics?token=SECRETftp".into()),
        ("/to-relative", format!("/{SEG}/again?token=SECRETrelative")),
        (
            "/to-garbage",
            format!("http://[::1/{SEG}/x?token=SECRETgarbage"),
        ),
    ]);
    let users = vec![
        // 0: connection refused
        vec![format!(
            "http://127.0.0.1:{closed}/{SEG}/reach.ics?token=SECRETrefused"
        )],
        // 1: redirect to a closed port
        vec![format!("http://127.0.0.1:{redirect}/to-closed")],
        // 2: credentials in the URL
        vec![format!(
            "http://SECRETuser:SECRETpw@127.0.0.1:{closed}/x.ics"
        )],
        // 3: timeout
        vec![format!(
            "http://127.0.0.1:{hang}/{SEG}/hang.ics?token=SECRETtimeout"
        )],
        // 4: redirect to a hanging server
        vec![format!("http://127.0.0.1:{redirect}/to-hanging")],
        // 5: redirect to an unsupported scheme
        vec![format!("http://127.0.0.1:{redirect}/to-ftp")],
        // 6: redirect loop through a relative Location
        vec![format!("http://127.0.0.1:{redirect}/to-relative")],
        // 7, 8: not URLs calstatus reads (the user file is refused)
        vec!["ftp://127.0.0.1/x.ics?token=SECRETunsupported".into()],
        vec!["https://exa mple.com/SECRETsegment0123456789abcdefghij?token=SECRETbad".into()],
        // 9: a redirect to something that is not a URL
        vec![format!("http://127.0.0.1:{redirect}/to-garbage")],
    ];
    let (dir, cfg) = org_with(
        "allow_http = true\nallow_private_networks = true\ntimeout = \"1s\"",
        &users,
    );
    let started = std::time::Instant::now();

    // The JSON plan: every fetch failed with a useful, secret-free message.
    let (code, v, err) = plan_json(&cfg);
    assert_eq!(code, Some(1), "{err}");
    let json = v.to_string();
    assert!(!json.contains(MARK), "JSON plan leaks a secret: {json}");
    assert!(!err.contains(MARK), "stderr leaks a secret: {err}");
    for i in 0..=6 {
        let e = error_of(&v, i);
        assert!(e.contains("127.0.0.1"), "user {i}: {e}");
    }
    assert!(
        error_of(&v, 0).contains("cannot fetch"),
        "{}",
        error_of(&v, 0)
    );
    assert!(error_of(&v, 1).contains("redirect"), "{}", error_of(&v, 1));
    assert!(error_of(&v, 3).contains("1s"), "{}", error_of(&v, 3));
    assert!(error_of(&v, 5).contains("ftp"), "{}", error_of(&v, 5));
    assert!(
        error_of(&v, 9).contains("redirected to http://[::1/…"),
        "{}",
        error_of(&v, 9)
    );
    assert_eq!(v["problems"].as_array().unwrap().len(), 2, "{json}");

    // Every other report format, with every log line on.
    let html = dir.path().join("plan.html");
    let html_s = html.display().to_string();
    let window = [
        "--from",
        "2026-11-27T00:00:00Z",
        "--to",
        "2026-11-28T00:00:00Z",
    ];
    for (format, log) in [
        ("table", "text"),
        ("csv", "json"),
        ("json", "json"),
        ("html", "text"),
    ] {
        let mut args = vec![
            "--log-format",
            log,
            "plan",
            "--config",
            &cfg,
            "--format",
            format,
        ];
        args.extend(window);
        if format == "html" {
            args.extend(["--output", html_s.as_str()]);
        }
        let (code, out, err) = run(&args, &[("RUST_LOG", "trace")]);
        assert_eq!(code, Some(1), "{format}: {err}");
        assert!(!out.contains(MARK), "{format} output leaks a secret: {out}");
        assert!(
            !err.contains(MARK),
            "{format} trace logs leak a secret: {err}"
        );
        // The trace logs are really on (hyper's connection logs are there).
        assert!(
            err.lines().count() > 20,
            "{format}: too few log lines: {err}"
        );
    }
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains(MARK), "HTML report leaks a secret");
    assert!(page.contains("127.0.0.1"));

    // `check` lists every failure, without secrets.
    let (code, out, err) = run(&["check", "--config", &cfg], &[("RUST_LOG", "trace")]);
    assert_ne!(code, Some(0), "{out}{err}");
    assert!(
        !out.contains(MARK) && !err.contains(MARK),
        "check leaks a secret: {out}{err}"
    );
    assert!(err.contains("cannot fetch"), "{err}");
    // Five runs with 1 s timeouts: none may hang.
    assert!(started.elapsed() < Duration::from_secs(60));
}
