//! The binary as an admin uses it: the demo org, `check`, bad input.

use crate::support::{DAY, calstatus, demo_copy, root, stderr, stdout};

fn demo_config() -> String {
    root()
        .join("examples/demo/calstatus.toml")
        .display()
        .to_string()
}

#[test]
fn demo_plan_json_follows_the_contract() {
    let cfg = demo_config();
    let mut args = vec!["plan", "--config", &cfg, "--format", "json"];
    args.extend(DAY);
    let out = calstatus(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["window"]["from"], "2026-11-27T00:00:00Z");
    let users = v["users"].as_array().unwrap();
    // Eight files, one disabled.
    assert_eq!(users.len(), 7);
    let instant = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$").unwrap();
    let mut private_seen = false;
    for u in users {
        for s in u["statuses"].as_array().unwrap() {
            assert!(instant.is_match(s["start"].as_str().unwrap()));
            assert!(instant.is_match(s["end"].as_str().unwrap()));
            assert!(s["message"].as_str().unwrap().chars().count() <= 280);
            assert!(!s["occurrences"].as_array().unwrap().is_empty());
        }
        for o in u["occurrences"].as_array().unwrap() {
            let d = o["decision"].as_str().unwrap();
            assert!(d == "status" || d == "skipped");
            assert_eq!(o["reason"].is_null(), d == "status", "{o}");
            if o["summary"].is_null() && !o["uid"].as_str().unwrap_or("").is_empty() {
                private_seen = true;
            }
        }
    }
    // David's private doctor appointment is the last Friday of November.
    assert!(
        private_seen,
        "a private occurrence must be reported with a null summary"
    );
    let text = stdout(&out);
    assert!(
        !text.contains("Doctor"),
        "a private summary leaked into the report"
    );
}

#[test]
fn demo_plan_table_csv_html_and_single_user() {
    let cfg = demo_config();
    for (format, needle) in [
        ("table", "dry run"),
        ("csv", "user,timezone,start,end"),
        ("html", "<!doctype html"),
    ] {
        let mut args = vec!["plan", "--config", &cfg, "--format", format];
        args.extend(DAY);
        let out = calstatus(&args);
        assert_eq!(out.status.code(), Some(0), "{format}: {}", stderr(&out));
        assert!(stdout(&out).to_lowercase().contains(needle), "{format}");
        assert!(
            !stdout(&out).contains("Doctor"),
            "{format} leaks a private summary"
        );
    }
    let mut args = vec![
        "plan",
        "--config",
        &cfg,
        "--format",
        "json",
        "--user",
        "a13c2b86-6b07-4ce6-9ad7-33c0db606410",
    ];
    args.extend(DAY);
    let out = calstatus(&args);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["users"].as_array().unwrap().len(), 1);
    // Alice reads Portuguese.
    assert!(
        v["users"][0]["statuses"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("Em reunião")
    );
}

#[test]
fn check_passes_on_the_demo() {
    let out = calstatus(&["check", "--config", &demo_config()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("OK"));
}

#[test]
fn check_reports_every_problem_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = demo_copy(dir.path());
    std::fs::write(
        dir.path().join("rules/zz-typos.toml"),
        "[[rule]]\nname = \"a\"\nsumary = \"x\"\nmessage = \"hi\"\n\n[[rule]]\nname = \"b\"\nmessage = \"until {ends}\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("users/zoe.toml"),
        "user = \"11111111-2222-3333-4444-555555555555\"\ncalendars = [\"calendars/missing.ics\"]\ntimezone = \"Mars/Base\"\n",
    )
    .unwrap();
    let out = calstatus(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(
        err.contains("zz-typos.toml:3: sumary: unknown field"),
        "{err}"
    );
    assert!(
        err.contains("zz-typos.toml:8:") && err.contains("{ends}"),
        "{err}"
    );
    assert!(err.contains("zoe.toml:3: timezone"), "{err}");
    // A broken org rule file stops planning altogether (exit 3), naming it.
    let mut args = vec!["plan", "--config", cfg.to_str().unwrap()];
    args.extend(DAY);
    let out = calstatus(&args);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("zz-typos.toml"));
}

#[test]
fn a_missing_calendar_fails_only_its_user() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = demo_copy(dir.path());
    std::fs::write(
        dir.path().join("users/zoe.toml"),
        "user = \"11111111-2222-3333-4444-555555555555\"\ncalendars = [\"calendars/missing.ics\", \"/etc/passwd\"]\n",
    )
    .unwrap();
    let mut args = vec![
        "plan",
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        "json",
    ];
    args.extend(DAY);
    let out = calstatus(&args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let users = v["users"].as_array().unwrap();
    assert_eq!(users.len(), 8);
    let zoe = users
        .iter()
        .find(|u| u["user"] == "11111111-2222-3333-4444-555555555555")
        .unwrap();
    let errors = zoe["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("missing.ics")
    );
    assert!(
        errors[1]["message"]
            .as_str()
            .unwrap()
            .contains("outside the directories")
    );
    let others_with_statuses = users
        .iter()
        .filter(|u| !u["statuses"].as_array().unwrap().is_empty())
        .count();
    assert!(others_with_statuses >= 6);
}

#[test]
fn bad_arguments_and_missing_config_are_clear() {
    let out = calstatus(&["plan", "--config", "/nonexistent/calstatus.toml"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("/nonexistent/calstatus.toml"));
    let out = calstatus(&["plan", "--config", &demo_config(), "--from", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("RFC 3339"));
}
