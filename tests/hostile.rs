//! Hostile or careless user files (the threat model of a self-service opt-in
//! repository): each gets a clear error for that file, nobody else is
//! harmed, nothing private leaks and no one can act as someone else.

use std::path::Path;

use crate::support::{demo_org_copy, run_calstatus};

/// Alice's object id in the demo org.
const ALICE: &str = "a13c2b86-6b07-4ce6-9ad7-33c0db606410";

const DAY: [&str; 4] = [
    "--from",
    "2026-11-27T00:00:00Z",
    "--to",
    "2026-11-28T00:00:00Z",
];

fn out(o: &std::process::Output) -> (Option<i32>, String, String) {
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn plan_json(cfg: &Path) -> (Option<i32>, serde_json::Value, String) {
    let cfg = cfg.to_str().unwrap();
    let mut args = vec!["plan", "--config", cfg, "--format", "json"];
    args.extend(DAY);
    let (code, stdout, stderr) = out(&run_calstatus(&args));
    let v = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    (code, v, stderr)
}

/// A second file that claims Alice's id must not silently opt her out, nor
/// take her over: neither file is applied, `check` fails naming both, and
/// the plan lists the conflict.
#[test]
fn a_second_claim_on_someones_id_is_reported_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = demo_org_copy(dir.path());
    std::fs::write(
        dir.path().join("users/zz-mallory.toml"),
        format!(
            "user = \"{}\"\ncalendars = [\"calendars/bruno.ics\"]\n",
            ALICE.to_uppercase()
        ),
    )
    .unwrap();
    let (code, _, err) = out(&run_calstatus(&[
        "check",
        "--config",
        cfg.to_str().unwrap(),
    ]));
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
    let cfg = demo_org_copy(dir.path());
    let david = dir.path().join("users/david.toml");
    let text = std::fs::read_to_string(&david).unwrap();
    let hostile = text.replace(
        "private_message = \"Away from my desk until {end:%H:%M}\"",
        "private_message = { en = \"Busy until {end:%H:%M}\", pt = \"Em: {summary} @ {location}\" }",
    );
    assert_ne!(hostile, text);
    std::fs::write(&david, hostile).unwrap();
    let (code, _, err) = out(&run_calstatus(&[
        "check",
        "--config",
        cfg.to_str().unwrap(),
    ]));
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
    let (code, _, err) = out(&run_calstatus(&[
        "check",
        "--config",
        cfg.to_str().unwrap(),
    ]));
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("org.private_message"), "{err}");
}
