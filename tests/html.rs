//! HTML report checks (rendered in headless Chromium where available).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use calstatus::calendar::parse_zone_name;
use calstatus::plan::{
    OccRef, OccurrenceDecision, OccurrenceReport, Plan, SourceProblem, Status, UserPlan,
    WindowReport,
};
use calstatus::report::html::{escape, render};
use chrono::{DateTime, Utc};

use crate::support::{root, t};

const DAY: [&str; 4] = [
    "--from",
    "2026-11-27T00:00:00Z",
    "--to",
    "2026-11-28T00:00:00Z",
];

/// Runs `calstatus plan` on the demo org for one day in `format`.
fn demo_plan(format: &str) -> String {
    let cfg = root()
        .join("examples/demo/calstatus.toml")
        .display()
        .to_string();
    let mut args = vec!["plan", "--config", &cfg, "--format", format];
    args.extend(DAY);
    let out = Command::new(env!("CARGO_BIN_EXE_calstatus"))
        .args(&args)
        .env_remove("CALSTATUS_CONFIG")
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{format}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn demo_page_is_self_contained_and_complete() {
    let html = demo_plan("html");
    let json: serde_json::Value = serde_json::from_str(&demo_plan("json")).unwrap();
    let users = json["users"].as_array().unwrap();
    let statuses: usize = users
        .iter()
        .map(|u| u["statuses"].as_array().unwrap().len())
        .sum();
    let skipped: usize = users
        .iter()
        .flat_map(|u| u["occurrences"].as_array().unwrap())
        .filter(|o| o["decision"] == "skipped")
        .count();

    assert!(html.starts_with("<!doctype html>"), "{}", &html[..40]);
    assert!(html.contains("<title>calstatus plan</title>"));
    assert_eq!(users.len(), 7);
    assert_eq!(html.matches("data-user=").count(), users.len());
    for u in users {
        let id = u["user"].as_str().unwrap();
        assert!(html.contains(&format!("data-user=\"{id}\"")), "{id}");
    }
    assert_eq!(html.matches("class=\"timeline\"").count(), users.len());
    assert_eq!(html.matches("class=\"status\"").count(), statuses);
    assert_eq!(html.matches("class=\"skipped\"").count(), skipped);
    assert!(statuses > 0 && skipped > 0);
    // The window and the counts are in the header.
    assert!(html.contains("2026-11-27T00:00:00Z"));
    assert!(html.contains(&format!("<b>{statuses}</b>statuses")));
    // Hour ticks in local time: Priya (Kolkata, +05:30) starts at 05:30, so
    // her first full-hour tick is "06"; the UTC axis starts with the day.
    assert!(html.contains(">Fri 27</text>"));
    // Offline: nothing is fetched.
    for bad in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "href='http",
        "@import",
        "url(http",
    ] {
        assert!(!html.contains(bad), "external reference: {bad}");
    }
    assert!(!html.contains("<link"), "no stylesheets");
    assert!(!html.contains("<script src"), "no external script");
    // David's private appointment is planned but never named.
    assert!(!html.contains("Doctor"), "a private summary leaked");
    // Skipped occurrences explain themselves.
    assert!(html.contains("skipped: tentative"));
    assert!(html.contains("Friday tech talk"));
}

fn user(label: &str, id: &str, summary: &str, message: &str) -> UserPlan {
    let s = t("2026-11-27T09:00:00Z");
    let e = t("2026-11-27T10:00:00Z");
    UserPlan {
        user: id.into(),
        timezone: "Europe/Lisbon".into(),
        statuses: vec![Status {
            start: s,
            end: e,
            message: message.into(),
            rule: "<b>rule</b>".into(),
            occurrences: vec![OccRef {
                uid: Some("u1".into()),
                recurrence_id: None,
            }],
        }],
        occurrences: vec![
            OccurrenceReport {
                uid: Some("u1".into()),
                recurrence_id: None,
                summary: Some(summary.into()),
                start: s,
                end: e,
                all_day: false,
                decision: OccurrenceDecision::Status,
                rule: Some("<b>rule</b>".into()),
                reason: None,
                calendar: "cal.ics".into(),
                private: false,
            },
            OccurrenceReport {
                uid: Some("u2".into()),
                recurrence_id: None,
                summary: Some(summary.into()),
                start: t("2026-11-27T11:00:00Z"),
                end: t("2026-11-27T12:00:00Z"),
                all_day: false,
                decision: OccurrenceDecision::Skipped,
                rule: None,
                reason: Some("<i>no-rule</i>".into()),
                calendar: "cal.ics".into(),
                private: false,
            },
            OccurrenceReport {
                uid: Some("u3".into()),
                recurrence_id: None,
                summary: None,
                start: t("2026-11-27T13:00:00Z"),
                end: t("2026-11-27T14:00:00Z"),
                all_day: false,
                decision: OccurrenceDecision::Skipped,
                rule: Some("tentative".into()),
                reason: Some("tentative".into()),
                calendar: "cal.ics".into(),
                private: true,
            },
        ],
        errors: vec![SourceProblem {
            source: "<script>src</script>".into(),
            message: "bad <script>alert(3)</script> & worse".into(),
        }],
        warnings: vec![SourceProblem {
            source: "cal.ics:3".into(),
            message: "<img src=x onerror=alert(4)>".into(),
        }],
        zone: parse_zone_name("Europe/Lisbon").unwrap(),
        label: label.into(),
    }
}

fn window(from: &str, to: &str) -> WindowReport {
    WindowReport {
        from: t(from),
        to: t(to),
    }
}

#[test]
fn everything_from_the_plan_is_escaped() {
    assert_eq!(
        escape("<script>alert(\"x\") & 'y'</script>"),
        "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
    );
    let plan = Plan {
        window: window("2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z"),
        users: vec![user(
            "<script>alert(0)</script>",
            "id\"><script>alert(1)</script>",
            "<script>alert(1)</script>",
            "Busy <script>alert(2)</script>",
        )],
        problems: vec![SourceProblem {
            source: "users/<x>.toml".into(),
            message: "<script>alert(5)</script>".into(),
        }],
    };
    let html = render(&plan);
    // The page's own filter script is the only script element.
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(!html.contains("<script>alert"));
    assert!(!html.contains("<img"));
    assert!(!html.contains("<b>rule"));
    assert!(!html.contains("<i>no-rule"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("Busy &lt;script&gt;alert(2)&lt;/script&gt;"));
    assert!(html.contains("data-user=\"id&quot;&gt;&lt;script&gt;"));
    // Errors are shown, warnings counted, problems listed.
    assert!(html.contains("bad &lt;script&gt;alert(3)&lt;/script&gt; &amp; worse"));
    assert!(html.contains("1 warning"));
    assert!(html.contains("users/&lt;x&gt;.toml"));
    // The private occurrence is shown as such.
    assert!(html.contains("(private)"));
}

#[test]
fn statuses_are_clipped_to_the_window_and_in_local_time() {
    let mut u = user("alice", "a", "Standup", "In a meeting");
    u.errors.clear();
    // Starts before the window, ends after it.
    u.statuses[0].start = t("2026-11-26T20:00:00Z");
    u.statuses[0].end = t("2026-11-28T05:00:00Z");
    let plan = Plan {
        window: window("2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z"),
        users: vec![u],
        problems: vec![],
    };
    let html = render(&plan);
    assert!(
        html.contains("<rect x=\"0%\" y=\"16\" width=\"100%\""),
        "{html}"
    );
    // Lisbon is UTC+0 in November: the tooltip spans two local days.
    assert!(html.contains("Thu 26 Nov 20:00 – Sat 28 Nov 05:00"));
}

/// A synthetic organisation: `n` users, each with a handful of statuses and
/// skipped occurrences over one working day.
fn big_plan(n: usize) -> Plan {
    let zones = [
        "Europe/Lisbon",
        "America/New_York",
        "Asia/Kolkata",
        "Asia/Tokyo",
        "America/Los_Angeles",
    ];
    let at = |h: i64, m: i64| -> DateTime<Utc> {
        t("2026-11-27T00:00:00Z") + chrono::Duration::minutes(h * 60 + m)
    };
    let users = (0..n)
        .map(|i| {
            let tz = zones[i % zones.len()];
            let mut statuses = Vec::new();
            let mut occurrences = Vec::new();
            for k in 0..6i64 {
                let (s, e) = (at(1 + 3 * k, 15 * (i as i64 % 4)), at(2 + 3 * k, 30));
                statuses.push(Status {
                    start: s,
                    end: e,
                    message: format!("In a meeting until {:02}:30", 2 + 3 * k),
                    rule: if k % 3 == 0 { "focus" } else { "meeting" }.into(),
                    occurrences: vec![OccRef {
                        uid: Some(format!("{i}-{k}")),
                        recurrence_id: None,
                    }],
                });
                occurrences.push(OccurrenceReport {
                    uid: Some(format!("{i}-{k}-skip")),
                    recurrence_id: None,
                    summary: Some(format!("Optional session {k}")),
                    start: at(3 + 3 * k, 0),
                    end: at(3 + 3 * k, 45),
                    all_day: false,
                    decision: OccurrenceDecision::Skipped,
                    rule: Some("tentative".into()),
                    reason: Some("tentative".into()),
                    calendar: "calendars/user.ics".into(),
                    private: false,
                });
            }
            UserPlan {
                user: format!("{i:08x}-0000-4000-8000-{i:012x}"),
                timezone: tz.into(),
                statuses,
                occurrences,
                errors: vec![],
                warnings: vec![],
                zone: parse_zone_name(tz).unwrap(),
                label: format!("user{i:04}"),
            }
        })
        .collect();
    Plan {
        window: window("2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z"),
        users,
        problems: vec![],
    }
}

#[test]
fn a_thousand_users_render_fast_and_small() {
    let plan = big_plan(1_000);
    let started = Instant::now();
    let html = render(&plan);
    let took = started.elapsed();
    println!(
        "1000 users: {} bytes ({:.2} MB) in {:?}",
        html.len(),
        html.len() as f64 / 1e6,
        took
    );
    assert_eq!(html.matches("data-user=").count(), 1_000);
    assert_eq!(html.matches("class=\"status\"").count(), 6_000);
    assert!(html.len() < 6_000_000, "{} bytes", html.len());
    // Generous: debug builds on a loaded CI machine.
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// The first Chromium-like browser on PATH.
fn chromium() -> Option<String> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| std::env::split_paths(&path).any(|d| d.join(name).is_file()))
        .map(str::to_string)
}

/// Runs the browser headless on `page`, killing it after 60 s.
fn headless(browser: &str, profile: &Path, page: &Path, extra: &[String]) -> Output {
    let child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts the browser");
    // Read the pipes on another thread so a chatty browser cannot block.
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("browser output"),
        Err(_) => {
            // Kill only the process we started, by its id.
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{browser} did not finish within 60 s");
        }
    }
}

#[test]
fn demo_page_renders_in_a_browser() {
    let Some(browser) = chromium() else {
        crate::support::skip(
            "demo_page_renders_in_a_browser",
            "no Chromium on PATH (apt-get install chromium)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("plan.html");
    std::fs::write(&page, demo_plan("html")).unwrap();

    let shot = dir.path().join("shot.png");
    let out = headless(
        &browser,
        &dir.path().join("profile-shot"),
        &page,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1400,1000".into(),
        ],
    );
    let size = std::fs::metadata(&shot)
        .unwrap_or_else(|e| {
            panic!(
                "no screenshot ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .len();
    assert!(size > 10_000, "screenshot is only {size} bytes");
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    let out = headless(
        &browser,
        &dir.path().join("profile-dom"),
        &page,
        &["--dump-dom".into()],
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.matches("class=\"timeline\"").count() == 7,
        "timelines missing from the DOM: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dom.contains("class=\"status\""));
    // The inline script ran without error: it reveals the filter box.
    let input = dom
        .split("<input")
        .nth(1)
        .and_then(|s| s.split('>').next())
        .expect("the filter box");
    assert!(input.contains("id=\"filter\""), "{input}");
    assert!(!input.contains("hidden"), "the filter script did not run");
}
