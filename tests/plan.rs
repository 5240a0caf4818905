//! Rules, templates and the status timeline, end to end through `plan_user`.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use calstatus::calendar::{Window, parse};
use calstatus::org::{User, WorkingHours};
use calstatus::plan::{CalendarInput, OccurrenceDecision, Settings, UserPlan, plan_user};
use calstatus::rules::Localized;
use calstatus::rules::model::{RawLocalized, parse_rule_file};

use crate::support::{cal, fmt, root, t, zone};

fn default_rules() -> Vec<calstatus::rules::Rule> {
    let path = root().join("rules/default.toml");
    parse_rule_file(&path, &std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn user(tz: &str, lang: &str) -> User {
    User {
        file: "users/alice.toml".into(),
        id: "fa8bf3dc-eca7-46b7-bad1-db199b62afc3".into(),
        email: Some("alice@contoso.com".into()),
        sources: vec![],
        zone: zone(tz),
        language: lang.into(),
        enabled: true,
        private_message: None,
        working_hours: None,
        rules: vec![],
    }
}

fn settings(merge: bool) -> Settings {
    Settings {
        merge,
        merge_gap: chrono::Duration::zero(),
        private_message: Localized::from_raw(&RawLocalized::One("Busy until {end:%H:%M}".into()))
            .unwrap(),
        internal_domains: HashSet::from(["contoso.com".to_string()]),
    }
}

fn plan_with(
    u: &User,
    body: &str,
    merge: bool,
    rules: &[calstatus::rules::Rule],
    from: &str,
    to: &str,
) -> UserPlan {
    let calendar = CalendarInput {
        label: "calendars/alice.ics".into(),
        calendar: Ok(Arc::new(parse(&cal(body)).unwrap())),
    };
    plan_user(
        u,
        &[calendar],
        rules,
        &settings(merge),
        Window {
            from: t(from),
            to: t(to),
        },
    )
}

fn plan(u: &User, body: &str) -> UserPlan {
    plan_with(
        u,
        body,
        true,
        &default_rules(),
        "2026-11-27T00:00:00Z",
        "2026-11-28T00:00:00Z",
    )
}

/// (local-free) UTC span and message of each status.
fn statuses(p: &UserPlan) -> Vec<String> {
    p.statuses
        .iter()
        .map(|s| {
            format!(
                "{}..{} {} [{}]",
                fmt(s.start),
                fmt(s.end),
                s.message,
                s.rule
            )
        })
        .collect()
}

fn event(uid: &str, start: &str, end: &str, extra: &str) -> String {
    format!(
        "BEGIN:VEVENT\nUID:{uid}\nDTSTART:{start}\nDTEND:{end}\nSUMMARY:{uid}\n{extra}END:VEVENT\n"
    )
}

#[test]
fn default_rules_skip_what_users_expect_and_say_in_a_meeting_otherwise() {
    let body = [
        event("busy", "20261127T090000Z", "20261127T093000Z", ""),
        event(
            "cancelled",
            "20261127T100000Z",
            "20261127T110000Z",
            "STATUS:CANCELLED\n",
        ),
        event(
            "declined",
            "20261127T110000Z",
            "20261127T113000Z",
            "ATTENDEE;PARTSTAT=DECLINED:mailto:Alice@contoso.com\n",
        ),
        event(
            "free",
            "20261127T120000Z",
            "20261127T123000Z",
            "TRANSP:TRANSPARENT\n",
        ),
        event(
            "tentative",
            "20261127T130000Z",
            "20261127T133000Z",
            "X-MICROSOFT-CDO-BUSYSTATUS:TENTATIVE\n",
        ),
        event("birthday", "20261127", "20261128", ""),
    ]
    .concat()
    .replace("DTSTART:20261127\n", "DTSTART;VALUE=DATE:20261127\n")
    .replace("DTEND:20261128\n", "DTEND;VALUE=DATE:20261128\n");
    let p = plan(&user("Europe/Berlin", "en"), &body);
    assert_eq!(
        statuses(&p),
        ["2026-11-27T09:00:00Z..2026-11-27T09:30:00Z In a meeting until 10:30 [meeting]"]
    );
    let reasons: Vec<(String, Option<String>)> = p
        .occurrences
        .iter()
        .map(|o| (o.uid.clone().unwrap_or_default(), o.reason.clone()))
        .collect();
    for (uid, reason) in [
        ("cancelled", "cancelled"),
        ("declined", "declined"),
        ("free", "free"),
        ("tentative", "tentative"),
        ("birthday", "all-day"),
    ] {
        assert!(
            reasons.contains(&(uid.to_string(), Some(reason.to_string()))),
            "{uid}: {reasons:?}"
        );
    }
    assert_eq!(
        p.occurrences
            .iter()
            .filter(|o| o.decision == OccurrenceDecision::Status)
            .count(),
        1
    );
}

#[test]
fn out_of_office_all_day_names_the_day_in_the_users_language() {
    let body = "BEGIN:VEVENT\nUID:ooo\nDTSTART;VALUE=DATE:20261127\nDTEND;VALUE=DATE:20261130\nSUMMARY:Vacation\nX-MICROSOFT-CDO-BUSYSTATUS:OOF\nEND:VEVENT\n".to_string()
        + &event("meeting", "20261127T090000Z", "20261127T100000Z", "");
    let p = plan(&user("Europe/Lisbon", "en"), &body);
    assert_eq!(p.statuses.len(), 1, "{:?}", statuses(&p));
    assert_eq!(
        p.statuses[0].message,
        "Out of office until Monday 30 November"
    );
    assert_eq!(fmt(p.statuses[0].end), "2026-11-30T00:00:00Z");
    // The meeting during the absence is shadowed by the higher-priority rule.
    assert_eq!(
        p.occurrences
            .iter()
            .find(|o| o.uid.as_deref() == Some("meeting"))
            .unwrap()
            .reason
            .as_deref(),
        Some("overlapped")
    );
    let pt = plan(&user("Europe/Lisbon", "pt"), &body);
    assert_eq!(
        pt.statuses[0].message,
        "Fora do escritório até segunda-feira, 30 de novembro"
    );
}

#[test]
fn back_to_back_meetings_merge_unless_disabled() {
    let body = event("a", "20261127T090000Z", "20261127T100000Z", "")
        + &event("b", "20261127T100000Z", "20261127T110000Z", "")
        + &event("c", "20261127T103000Z", "20261127T114500Z", "");
    let u = user("UTC", "en");
    let merged = plan(&u, &body);
    assert_eq!(
        statuses(&merged),
        ["2026-11-27T09:00:00Z..2026-11-27T11:45:00Z In a meeting until 11:45 [meeting]"]
    );
    assert_eq!(merged.statuses[0].occurrences.len(), 3);
    let apart = plan_with(
        &u,
        &body,
        false,
        &default_rules(),
        "2026-11-27T00:00:00Z",
        "2026-11-28T00:00:00Z",
    );
    assert_eq!(
        statuses(&apart),
        [
            "2026-11-27T09:00:00Z..2026-11-27T10:00:00Z In a meeting until 10:00 [meeting]",
            "2026-11-27T10:00:00Z..2026-11-27T10:30:00Z In a meeting until 11:00 [meeting]",
            "2026-11-27T10:30:00Z..2026-11-27T11:45:00Z In a meeting until 11:45 [meeting]"
        ]
    );
}

#[test]
fn higher_priority_interrupts_and_the_long_meeting_resumes() {
    let rules_text = r#"
[[rule]]
name = "urgent"
priority = 50
summary = "incident"
message = "Handling an incident until {end:%H:%M}"

[[rule]]
name = "meeting"
busy = ["busy"]
message = "In a meeting until {end:%H:%M}"
"#;
    let rules = parse_rule_file(Path::new("r.toml"), rules_text).unwrap();
    let body = event("workshop", "20261127T100000Z", "20261127T120000Z", "")
        + &event("incident", "20261127T103000Z", "20261127T110000Z", "");
    let p = plan_with(
        &user("UTC", "en"),
        &body,
        true,
        &rules,
        "2026-11-27T00:00:00Z",
        "2026-11-28T00:00:00Z",
    );
    assert_eq!(
        statuses(&p),
        [
            "2026-11-27T10:00:00Z..2026-11-27T10:30:00Z In a meeting until 12:00 [meeting]",
            "2026-11-27T10:30:00Z..2026-11-27T11:00:00Z Handling an incident until 11:00 [urgent]",
            "2026-11-27T11:00:00Z..2026-11-27T12:00:00Z In a meeting until 12:00 [meeting]"
        ]
    );
    // No gap: a status never expires while a covered meeting still runs.
    for w in p.statuses.windows(2) {
        assert_eq!(w[0].end, w[1].start);
    }
}

#[test]
fn private_meetings_never_show_their_details() {
    let rules = parse_rule_file(
        Path::new("r.toml"),
        "[[rule]]\nname = \"titled\"\nmessage = \"{summary} at {location} with {organizer}\"\n",
    )
    .unwrap();
    let body = event(
        "p1",
        "20261127T090000Z",
        "20261127T100000Z",
        "CLASS:PRIVATE\nSUMMARY:Doctor appointment\nLOCATION:Clinic\nORGANIZER;CN=Dr Who:mailto:who@clinic.example\n",
    );
    let p = plan_with(
        &user("UTC", "en"),
        &body,
        true,
        &rules,
        "2026-11-27T00:00:00Z",
        "2026-11-28T00:00:00Z",
    );
    assert_eq!(p.statuses[0].message, "Busy until 10:00");
    assert_eq!(p.occurrences[0].summary, None);
    let json = serde_json::to_string(&p).unwrap();
    assert!(
        !json.contains("Doctor") && !json.contains("Clinic") && !json.contains("Dr Who"),
        "{json}"
    );
    // A person's own private text wins when given.
    let mut u = user("UTC", "en");
    u.private_message =
        Some(Localized::from_raw(&RawLocalized::One("Unavailable".into())).unwrap());
    let p = plan_with(
        &u,
        &body,
        true,
        &rules,
        "2026-11-27T00:00:00Z",
        "2026-11-28T00:00:00Z",
    );
    assert_eq!(p.statuses[0].message, "Unavailable");
}

#[test]
fn rule_conditions_combine() {
    let rules_text = r#"
[[rule]]
name = "external"
external = true
min_duration = "30m"
weekdays = ["fri"]
start_after = "09:00"
start_before = "12:00"
message = "With a customer until {end:%H:%M} ({duration})"

[[rule]]
name = "categories"
categories_regex = "(?i)^train"
location = "room"
message = "Training: {summary} in {location}"

[[rule]]
name = "rest"
skip = "no-match-here"
"#;
    let rules = parse_rule_file(Path::new("r.toml"), rules_text).unwrap();
    let body = event(
        "ext",
        "20261127T090000Z",
        "20261127T103000Z",
        "ATTENDEE:mailto:bob@fabrikam.com\n",
    ) + &event(
        "ext-short",
        "20261127T110000Z",
        "20261127T111500Z",
        "ATTENDEE:mailto:bob@fabrikam.com\n",
    ) + &event(
        "ext-late",
        "20261127T130000Z",
        "20261127T140000Z",
        "ATTENDEE:mailto:bob@fabrikam.com\n",
    ) + &event(
        "course",
        "20261127T150000Z",
        "20261127T160000Z",
        "CATEGORIES:Work,Training\nLOCATION:Room 4\n",
    );
    let p = plan_with(
        &user("Europe/Lisbon", "en"),
        &body,
        true,
        &rules,
        "2026-11-27T00:00:00Z",
        "2026-11-28T00:00:00Z",
    );
    assert_eq!(
        statuses(&p),
        [
            "2026-11-27T09:00:00Z..2026-11-27T10:30:00Z With a customer until 10:30 (1h 30m) [external]",
            "2026-11-27T15:00:00Z..2026-11-27T16:00:00Z Training: course in Room 4 [categories]"
        ]
    );
}

#[test]
fn personal_rules_come_first_and_working_hours_filter() {
    let mut u = user("America/New_York", "en");
    u.rules = parse_rule_file(
        Path::new("users/alice.toml"),
        "[[rule]]\nname = \"gym\"\nsummary = \"gym\"\nskip = \"personal\"\n",
    )
    .unwrap();
    u.working_hours = Some(WorkingHours {
        days: vec![chrono::Weekday::Fri],
        start: chrono::NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
        end: chrono::NaiveTime::from_hms_opt(17, 0, 0).unwrap(),
    });
    // 12:00 local gym; 08:00–09:30 local (overlaps hours); 18:00 local (outside).
    let body = event("gym", "20261127T170000Z", "20261127T180000Z", "")
        + &event("early", "20261127T130000Z", "20261127T143000Z", "")
        + &event("evening", "20261127T230000Z", "20261128T000000Z", "");
    let p = plan(&u, &body);
    let reason = |uid: &str| {
        p.occurrences
            .iter()
            .find(|o| o.uid.as_deref() == Some(uid))
            .unwrap()
            .reason
            .clone()
    };
    assert_eq!(reason("gym"), Some("personal".into()));
    assert_eq!(reason("early"), None);
    assert_eq!(reason("evening"), Some("outside-working-hours".into()));
}

#[test]
fn messages_are_cut_to_280_characters() {
    let rules = parse_rule_file(
        Path::new("r.toml"),
        "[[rule]]\nname = \"t\"\nmessage = \"{summary}\"\n",
    )
    .unwrap();
    let long = "ä".repeat(400);
    let body = event(&long, "20261127T090000Z", "20261127T100000Z", "");
    let p = plan_with(
        &user("UTC", "en"),
        &body,
        true,
        &rules,
        "2026-11-27T00:00:00Z",
        "2026-11-28T00:00:00Z",
    );
    assert_eq!(p.statuses[0].message.chars().count(), 280);
}

#[test]
fn a_broken_source_is_reported_and_the_rest_planned() {
    let good = CalendarInput {
        label: "good.ics".into(),
        calendar: Ok(Arc::new(
            parse(&cal(&event(
                "m",
                "20261127T090000Z",
                "20261127T100000Z",
                "",
            )))
            .unwrap(),
        )),
    };
    let bad = CalendarInput {
        label: "https://example.com/cal.ics".into(),
        calendar: Err(std::sync::Arc::from(Box::<
            dyn std::error::Error + Send + Sync,
        >::from("answered HTTP 404"))),
    };
    let p = plan_user(
        &user("UTC", "en"),
        &[bad, good],
        &default_rules(),
        &settings(true),
        Window {
            from: t("2026-11-27T00:00:00Z"),
            to: t("2026-11-28T00:00:00Z"),
        },
    );
    assert_eq!(p.statuses.len(), 1);
    assert_eq!(p.errors.len(), 1);
    assert_eq!(p.errors[0].source, "https://example.com/cal.ics");
}
