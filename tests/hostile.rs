//! Hostile or careless user files (the threat model of a self-service opt-in
//! repository): each gets a clear error for that file, nobody else is
//! harmed, nothing private leaks and no one can act as someone else.

use std::path::Path;

use crate::support::{DAY, calstatus, demo_copy, stderr, stdout};

/// Alice's object id in the demo org.
const ALICE: &str = "a13c2b86-6b07-4ce6-9ad7-33c0db606410";

fn out(o: &std::process::Output) -> (Option<i32>, String, String) {
    (o.status.code(), stdout(o), stderr(o))
}

fn plan_json(cfg: &Path) -> (Option<i32>, serde_json::Value, String) {
    let cfg = cfg.to_str().unwrap();
    let mut args = vec!["plan", "--config", cfg, "--format", "json"];
    args.extend(DAY);
    let (code, stdout, stderr) = out(&calstatus(&args));
    let v = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    (code, v, stderr)
}

/// A second file that claims Alice's id must not silently opt her out, nor
/// take her over: neither file is applied, `check` fails naming both, and
/// the plan lists the conflict.
#[test]
fn a_second_claim_on_someones_id_is_reported_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = demo_copy(dir.path());
    std::fs::write(
        dir.path().join("users/zz-mallory.toml"),
        format!(
            "user = \"{}\"\ncalendars = [\"calendars/bruno.ics\"]\n",
            ALICE.to_uppercase()
        ),
    )
    .unwrap();
    let (code, _, err) = out(&calstatus(&["check", "--config", cfg.to_str().unwrap()]));
    assert_eq!(code, Some(3), "{err}");
    for file in ["alice.toml", "zz-mallory.toml"] {
        assert!(
            err.lines()
                .any(|l| l.contains(file) && l.contains("also claimed by")),
            "{file}: {err}"
        );
    }
    let (code, v, _) = plan_json(&cfg);
    assert_eq!(code, Some(1));
    assert!(
        !v["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["user"].as_str().unwrap().eq_ignore_ascii_case(ALICE))
    );
    let problems = v["problems"].to_string();
    assert!(
        problems.contains("alice.toml") && problems.contains("zz-mallory.toml"),
        "{problems}"
    );
}

/// Private means never shown: a private-meeting message may not use
/// `{summary}`, `{location}` or `{organizer}`, in a user file or the org's.
#[test]
fn private_messages_cannot_show_what_a_meeting_is_about() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = demo_copy(dir.path());
    let david = dir.path().join("users/david.toml");
    let text = std::fs::read_to_string(&david).unwrap();
    let hostile = text.replace(
        "private_message = \"Away from my desk until {end:%H:%M}\"",
        "private_message = { en = \"Busy until {end:%H:%M}\", pt = \"Em: {summary} @ {location}\" }",
    );
    assert_ne!(hostile, text);
    std::fs::write(&david, hostile).unwrap();
    let (code, _, err) = out(&calstatus(&["check", "--config", cfg.to_str().unwrap()]));
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("david.toml") && err.contains("[pt] a private-meeting message may not show"),
        "{err}"
    );
    // David is left out; his private appointment's title reaches no report.
    let (_, v, _) = plan_json(&cfg);
    let all = v.to_string();
    assert!(all.contains("\"problems\""));
    assert!(!all.contains("Doctor") && !all.contains("NYU"), "{all}");
    // The org's own text is checked the same way (and stops everything).
    std::fs::write(&david, text).unwrap();
    let cfg_text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        cfg_text.replace(
            "[org]\n",
            "[org]\nprivate_message = \"Busy with {organizer}\"\n",
        ),
    )
    .unwrap();
    let (code, _, err) = out(&calstatus(&["check", "--config", cfg.to_str().unwrap()]));
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("org.private_message"), "{err}");
}

/// User and rule files follow the same root policy as calendar files: a
/// symbolic link that leads out of its directory is not read, and nothing
/// of the file it points to is echoed back; a FIFO is not waited on.
#[test]
fn org_files_that_lead_outside_their_directory_are_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = demo_copy(dir.path());
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.toml");
    std::fs::write(
        &secret,
        "user = \"SECRET-CONTENT\"\ncalendars = [\"SECRET-CALENDAR\"]\n[[rule]]\nname = \"SECRET-RULE\"\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(&secret, dir.path().join("users/evil.toml")).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(dir.path().join("users/pipe-target"))
        .status()
        .unwrap();
    assert!(status.success());
    std::os::unix::fs::symlink(
        dir.path().join("users/pipe-target"),
        dir.path().join("users/pipe.toml"),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let (code, stdout, err) = out(&calstatus(&["check", "--config", cfg.to_str().unwrap()]));
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("evil.toml") && l.contains("leads outside")),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.contains("pipe.toml") && l.contains("not a regular file")),
        "{err}"
    );
    assert!(!format!("{stdout}{err}").contains("SECRET"), "{err}");
    // The others are planned as usual.
    let (code, v, _) = plan_json(&cfg);
    assert_eq!(code, Some(1));
    assert_eq!(v["users"].as_array().unwrap().len(), 7);
    assert!(!v.to_string().contains("SECRET"));
    // An org rule file that leads outside stops everything, unread.
    std::os::unix::fs::symlink(&secret, dir.path().join("rules/zz-evil.toml")).unwrap();
    let (code, _, err) = out(&calstatus(&["check", "--config", cfg.to_str().unwrap()]));
    assert_eq!(code, Some(3));
    assert!(
        err.contains("zz-evil.toml") && !err.contains("SECRET"),
        "{err}"
    );
}

/// A calendar file belongs to one person: listing a colleague's file (by
/// its path or through a symbolic link) would publish their meeting titles
/// as your own status. Neither file is applied until the org declares the
/// file shared.
#[test]
fn a_user_file_cannot_read_a_colleagues_calendar_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = demo_copy(dir.path());
    std::os::unix::fs::symlink("bruno.ics", dir.path().join("calendars/mine.ics")).unwrap();
    std::fs::write(
        dir.path().join("users/zz-mallory.toml"),
        "user = \"11111111-2222-3333-4444-555555555555\"\ncalendars = [\"calendars/mine.ics\"]\n\n[[rule]]\nname = \"leak\"\nmessage = \"{summary} @ {location}\"\n",
    )
    .unwrap();
    let (code, _, err) = out(&calstatus(&["check", "--config", cfg.to_str().unwrap()]));
    assert_eq!(code, Some(3), "{err}");
    for file in ["bruno.toml", "zz-mallory.toml"] {
        assert!(
            err.lines()
                .any(|l| l.contains(file) && l.contains("may belong to one person only")),
            "{file}: {err}"
        );
    }
    let (_, v, _) = plan_json(&cfg);
    let planned: Vec<&str> = v["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user"].as_str().unwrap())
        .collect();
    assert!(!planned.contains(&"11111111-2222-3333-4444-555555555555"));
    assert!(!planned.contains(&"9d98d35a-5cda-4ac5-98be-428291a139ba"));
    // `plan --user` on the thief alone still sees the conflict.
    let cfg_s = cfg.to_str().unwrap();
    let mut args = vec![
        "plan",
        "--config",
        cfg_s,
        "--format",
        "json",
        "--user",
        "11111111-2222-3333-4444-555555555555",
    ];
    args.extend(DAY);
    let (_, stdout, _) = out(&calstatus(&args));
    assert!(stdout.contains("may belong to one person only"), "{stdout}");
    assert!(!stdout.contains("Platform"), "{stdout}");
    // Declared shared, it may be read by both.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{text}\n[fetch]\nshared_calendars = [\"calendars/bruno.ics\"]\n"),
    )
    .unwrap();
    let (code, _, err) = out(&calstatus(&["check", "--config", cfg_s]));
    assert_eq!(code, Some(0), "{err}");
}

/// One user file cannot make the run expensive for everyone: calendars and
/// personal rules per person are capped, personal regexes get a small
/// compiled-size budget, and the file itself is size-capped.
#[test]
fn one_user_file_cannot_exhaust_memory_or_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = demo_copy(dir.path());
    let users = dir.path().join("users");
    let cals: Vec<String> = (0..40).map(|i| format!("\"calendars/x{i}.ics\"")).collect();
    std::fs::write(
        users.join("zz-many-calendars.toml"),
        format!(
            "user = \"11111111-0000-4000-8000-000000000001\"\ncalendars = [{}]\n",
            cals.join(", ")
        ),
    )
    .unwrap();
    let mut rules = String::from(
        "user = \"11111111-0000-4000-8000-000000000002\"\ncalendars = [\"calendars/zz2.ics\"]\n",
    );
    for i in 0..100 {
        rules.push_str(&format!(
            "[[rule]]\nname = \"r{i}\"\nsummary_regex = \"x{i}\"\nskip = \"x\"\n"
        ));
    }
    std::fs::write(users.join("zz-many-rules.toml"), rules).unwrap();
    std::fs::write(
        users.join("zz-big-regex.toml"),
        "user = \"11111111-0000-4000-8000-000000000003\"\ncalendars = [\"calendars/zz3.ics\"]\n[[rule]]\nname = \"big\"\nsummary_regex = \"(\\\\w{100}){100}\"\nskip = \"x\"\n",
    )
    .unwrap();
    std::fs::write(
        users.join("zz-huge.toml"),
        format!(
            "user = \"11111111-0000-4000-8000-000000000004\"\ncalendars = [\"calendars/zz4.ics\"]\n# {}\n",
            "x".repeat(200_000)
        ),
    )
    .unwrap();
    let (code, _, err) = out(&calstatus(&["check", "--config", cfg.to_str().unwrap()]));
    assert_eq!(code, Some(3), "{err}");
    let line = |file: &str| {
        err.lines()
            .find(|l| l.contains(file))
            .unwrap_or_else(|| panic!("{file}: {err}"))
            .to_string()
    };
    assert!(line("zz-many-calendars.toml").contains("at most 16"));
    assert!(line("zz-many-rules.toml").contains("at most 32"));
    assert!(line("zz-big-regex.toml").contains("invalid regex"));
    assert!(line("zz-huge.toml").contains("larger than 65536 bytes"));
    // The demo's own people still check out.
    assert!(!err.contains("alice.toml"), "{err}");
}

/// A user file's TOML error quotes the value it did not expect; a calendar
/// URL's token must not reach `check` or the plan through it.
#[test]
fn errors_about_a_user_file_never_quote_a_calendar_urls_secret() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = demo_copy(dir.path());
    std::fs::write(
        dir.path().join("users/zz-typo.toml"),
        "user = \"11111111-2222-3333-4444-555555555555\"\ncalendars = \"https://calendar.example.com/ical/abcdefabcdefabcdefabcdefabcdef/basic.ics?token=S3CRET-TOKEN\"\n",
    )
    .unwrap();
    let (code, stdout, err) = out(&calstatus(&["check", "--config", cfg.to_str().unwrap()]));
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("zz-typo.toml"), "{err}");
    assert!(!format!("{stdout}{err}").contains("S3CRET"), "{err}");
    let (_, v, logs) = plan_json(&cfg);
    assert!(!format!("{v}{logs}").contains("S3CRET"), "{v}");
}
