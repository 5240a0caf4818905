//! Calendar features, one fixture each: parse + expand → exact UTC spans.

use crate::support::{cal, occurrences, spans};

const BERLIN_VTZ: &str = "BEGIN:VTIMEZONE
TZID:W. Europe Standard Time
BEGIN:STANDARD
DTSTART:16010101T030000
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:16010101T020000
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3
END:DAYLIGHT
END:VTIMEZONE";

#[test]
fn weekly_rule_keeps_local_time_across_dst() {
    let ics = cal("BEGIN:VEVENT
UID:w
DTSTART;TZID=Europe/Berlin:20261019T090000
DTEND;TZID=Europe/Berlin:20261019T093000
RRULE:FREQ=WEEKLY;BYDAY=MO
END:VEVENT");
    let o = occurrences(&ics, "UTC", "2026-10-19T00:00:00Z", "2026-11-03T00:00:00Z");
    assert_eq!(
        spans(&o),
        [
            "2026-10-19T07:00:00Z..2026-10-19T07:30:00Z",
            "2026-10-26T08:00:00Z..2026-10-26T08:30:00Z",
            "2026-11-02T08:00:00Z..2026-11-02T08:30:00Z"
        ]
    );
    assert_eq!(
        o[1].recurrence_id.unwrap().to_rfc3339(),
        "2026-10-26T08:00:00+00:00"
    );
}

#[test]
fn windows_tzid_with_and_without_vtimezone() {
    // With the file's VTIMEZONE (Outlook), and with a bare Windows name (no block).
    let with = cal(&format!(
        "{BERLIN_VTZ}
BEGIN:VEVENT
UID:a
DTSTART;TZID=W. Europe Standard Time:20261127T100000
DTEND;TZID=W. Europe Standard Time:20261127T110000
END:VEVENT"
    ));
    let without = cal("BEGIN:VEVENT
UID:a
DTSTART;TZID=\"Pacific Standard Time\":20261127T100000
DURATION:PT45M
END:VEVENT");
    assert_eq!(
        spans(&occurrences(
            &with,
            "UTC",
            "2026-11-27T00:00:00Z",
            "2026-11-28T00:00:00Z"
        )),
        ["2026-11-27T09:00:00Z..2026-11-27T10:00:00Z"]
    );
    assert_eq!(
        spans(&occurrences(
            &without,
            "UTC",
            "2026-11-27T00:00:00Z",
            "2026-11-28T00:00:00Z"
        )),
        ["2026-11-27T18:00:00Z..2026-11-27T18:45:00Z"]
    );
}

#[test]
fn custom_vtimezone_with_odd_name_is_the_truth() {
    let ics = cal(&format!(
        "{}
BEGIN:VEVENT
UID:c
DTSTART;TZID=Customized Time Zone:20260701T100000
DTEND;TZID=Customized Time Zone:20260701T110000
END:VEVENT",
        BERLIN_VTZ.replace("W. Europe Standard Time", "Customized Time Zone")
    ));
    assert_eq!(
        spans(&occurrences(
            &ics,
            "Asia/Tokyo",
            "2026-07-01T00:00:00Z",
            "2026-07-02T00:00:00Z"
        )),
        ["2026-07-01T08:00:00Z..2026-07-01T09:00:00Z"]
    );
}

#[test]
fn unknown_tzid_falls_back_to_the_users_zone_with_a_warning() {
    let ics = cal("BEGIN:VEVENT
UID:u
DTSTART;TZID=Mars Standard Time:20261127T100000
DTEND;TZID=Mars Standard Time:20261127T110000
END:VEVENT");
    let (o, diags) = crate::support::expand_with_diags(
        &ics,
        "Europe/Lisbon",
        "2026-11-27T00:00:00Z",
        "2026-11-28T00:00:00Z",
    );
    assert_eq!(spans(&o), ["2026-11-27T10:00:00Z..2026-11-27T11:00:00Z"]);
    assert!(
        diags
            .iter()
            .any(|d| d.message.contains("Mars Standard Time")),
        "{diags:?}"
    );
}

#[test]
fn exdates_in_lists_with_tzid_utc_and_date() {
    let ics = cal("BEGIN:VEVENT
UID:x
DTSTART;TZID=Europe/Lisbon:20261123T090000
DTEND;TZID=Europe/Lisbon:20261123T091500
RRULE:FREQ=DAILY;COUNT=7
EXDATE;TZID=Europe/Lisbon:20261124T090000,20261125T090000
EXDATE:20261126T090000Z
EXDATE;VALUE=DATE:20261128
END:VEVENT");
    let o = occurrences(&ics, "UTC", "2026-11-20T00:00:00Z", "2026-12-05T00:00:00Z");
    let days: Vec<String> = o.iter().map(|o| o.start.format("%d").to_string()).collect();
    assert_eq!(days, ["23", "27", "29"]);
}

#[test]
fn rdate_adds_instances_without_doubling_and_periods_keep_their_length() {
    let ics = cal("BEGIN:VEVENT
UID:r
DTSTART:20261123T100000Z
DTEND:20261123T110000Z
RRULE:FREQ=DAILY;COUNT=2
RDATE:20261124T100000Z,20261130T150000Z
RDATE;VALUE=PERIOD:20261201T080000Z/20261201T083000Z
END:VEVENT");
    assert_eq!(
        spans(&occurrences(
            &ics,
            "UTC",
            "2026-11-20T00:00:00Z",
            "2026-12-05T00:00:00Z"
        )),
        [
            "2026-11-23T10:00:00Z..2026-11-23T11:00:00Z",
            "2026-11-24T10:00:00Z..2026-11-24T11:00:00Z",
            "2026-11-30T15:00:00Z..2026-11-30T16:00:00Z",
            "2026-12-01T08:00:00Z..2026-12-01T08:30:00Z"
        ]
    );
}

#[test]
fn overrides_move_shorten_and_cancel_instances() {
    let ics = cal("BEGIN:VEVENT
UID:s
DTSTART;TZID=America/New_York:20261123T090000
DTEND;TZID=America/New_York:20261123T100000
RRULE:FREQ=DAILY;COUNT=4
SUMMARY:Stand-up
END:VEVENT
BEGIN:VEVENT
UID:s
RECURRENCE-ID;TZID=America/New_York:20261124T090000
DTSTART;TZID=America/New_York:20261124T140000
DTEND;TZID=America/New_York:20261124T143000
SUMMARY:Stand-up (moved)
END:VEVENT
BEGIN:VEVENT
UID:s
RECURRENCE-ID:20261125T140000Z
DTSTART;TZID=America/New_York:20261125T090000
DTEND;TZID=America/New_York:20261125T091500
END:VEVENT
BEGIN:VEVENT
UID:s
RECURRENCE-ID;TZID=America/New_York:20261126T090000
DTSTART;TZID=America/New_York:20261126T090000
DTEND;TZID=America/New_York:20261126T100000
STATUS:CANCELLED
END:VEVENT");
    let o = occurrences(&ics, "UTC", "2026-11-20T00:00:00Z", "2026-12-05T00:00:00Z");
    assert_eq!(
        spans(&o),
        [
            "2026-11-23T14:00:00Z..2026-11-23T15:00:00Z",
            "2026-11-24T19:00:00Z..2026-11-24T19:30:00Z",
            "2026-11-25T14:00:00Z..2026-11-25T14:15:00Z",
            "2026-11-26T14:00:00Z..2026-11-26T15:00:00Z"
        ]
    );
    assert_eq!(o[1].details.summary.as_deref(), Some("Stand-up (moved)"));
    assert_eq!(
        crate::support::fmt(o[1].recurrence_id.unwrap()),
        "2026-11-24T14:00:00Z"
    );
    assert!(o[3].details.cancelled);
}

#[test]
fn this_and_future_override_shifts_later_instances() {
    let ics = cal("BEGIN:VEVENT
UID:f
DTSTART:20261123T090000Z
DTEND:20261123T100000Z
RRULE:FREQ=DAILY;COUNT=4
END:VEVENT
BEGIN:VEVENT
UID:f
RECURRENCE-ID;RANGE=THISANDFUTURE:20261125T090000Z
DTSTART:20261125T110000Z
DTEND:20261125T113000Z
END:VEVENT");
    assert_eq!(
        spans(&occurrences(
            &ics,
            "UTC",
            "2026-11-20T00:00:00Z",
            "2026-12-05T00:00:00Z"
        )),
        [
            "2026-11-23T09:00:00Z..2026-11-23T10:00:00Z",
            "2026-11-24T09:00:00Z..2026-11-24T10:00:00Z",
            "2026-11-25T11:00:00Z..2026-11-25T11:30:00Z",
            "2026-11-26T11:00:00Z..2026-11-26T11:30:00Z"
        ]
    );
}

#[test]
fn durations_missing_ends_and_all_day_in_the_users_zone() {
    let ics = cal("BEGIN:VEVENT
UID:d1
DTSTART:20261127T100000Z
DURATION:PT1H30M
END:VEVENT
BEGIN:VEVENT
UID:d2
DTSTART:20261127T120000Z
END:VEVENT
BEGIN:VEVENT
UID:d3
DTSTART;VALUE=DATE:20261127
END:VEVENT
BEGIN:VEVENT
UID:d4
DTSTART;VALUE=DATE:20261127
DTEND;VALUE=DATE:20261130
END:VEVENT");
    assert_eq!(
        spans(&occurrences(
            &ics,
            "Asia/Tokyo",
            "2026-11-26T00:00:00Z",
            "2026-11-28T00:00:00Z"
        )),
        [
            "2026-11-26T15:00:00Z..2026-11-27T15:00:00Z",
            "2026-11-26T15:00:00Z..2026-11-29T15:00:00Z",
            "2026-11-27T10:00:00Z..2026-11-27T11:30:00Z",
            "2026-11-27T12:00:00Z..2026-11-27T12:00:00Z"
        ]
    );
}

#[test]
fn floating_times_are_the_users_unless_x_wr_timezone_says_otherwise() {
    let body = "BEGIN:VEVENT
UID:fl
DTSTART:20261127T090000
DTEND:20261127T100000
END:VEVENT";
    assert_eq!(
        spans(&occurrences(
            &cal(body),
            "Europe/Lisbon",
            "2026-11-27T00:00:00Z",
            "2026-11-28T00:00:00Z"
        )),
        ["2026-11-27T09:00:00Z..2026-11-27T10:00:00Z"]
    );
    let google = cal(&format!("X-WR-TIMEZONE:America/Los_Angeles\n{body}"));
    assert_eq!(
        spans(&occurrences(
            &google,
            "Europe/Lisbon",
            "2026-11-27T00:00:00Z",
            "2026-11-28T00:00:00Z"
        )),
        ["2026-11-27T17:00:00Z..2026-11-27T18:00:00Z"]
    );
}

#[test]
fn dst_gap_and_overlap_follow_rfc5545() {
    let ics = cal("BEGIN:VEVENT
UID:gap
DTSTART;TZID=Europe/Berlin:20260329T023000
DTEND;TZID=Europe/Berlin:20260329T033000
END:VEVENT
BEGIN:VEVENT
UID:overlap
DTSTART;TZID=Europe/Berlin:20261025T023000
DTEND;TZID=Europe/Berlin:20261025T040000
END:VEVENT");
    let o = occurrences(&ics, "UTC", "2026-03-01T00:00:00Z", "2026-11-01T00:00:00Z");
    // Gap: offset from before the gap (+1) → 01:30Z; overlap: first occurrence (+2) → 00:30Z.
    assert_eq!(crate::support::fmt(o[0].start), "2026-03-29T01:30:00Z");
    assert_eq!(crate::support::fmt(o[1].start), "2026-10-25T00:30:00Z");
    assert_eq!(crate::support::fmt(o[1].end), "2026-10-25T03:00:00Z");
}

#[test]
fn until_count_monthly_and_yearly_rules() {
    let ics = cal("BEGIN:VEVENT
UID:until-utc
DTSTART;TZID=Europe/Lisbon:20261101T080000
DTEND;TZID=Europe/Lisbon:20261101T081500
RRULE:FREQ=WEEKLY;BYDAY=MO,WE;UNTIL=20261125T080000Z
END:VEVENT
BEGIN:VEVENT
UID:until-exchange-floating
DTSTART;TZID=Pacific Standard Time:20261102T090000
DTEND;TZID=Pacific Standard Time:20261102T093000
RRULE:FREQ=WEEKLY;BYDAY=MO, TU;UNTIL=20261117T000000
END:VEVENT
BEGIN:VEVENT
UID:last-friday
DTSTART;TZID=America/New_York:20260130T160000
DTEND;TZID=America/New_York:20260130T170000
RRULE:FREQ=MONTHLY;BYDAY=-1FR
END:VEVENT
BEGIN:VEVENT
UID:yearly
DTSTART;VALUE=DATE:20201127
RRULE:FREQ=YEARLY
END:VEVENT");
    let o = occurrences(&ics, "UTC", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z");
    let by = |uid: &str| -> Vec<String> {
        o.iter()
            .filter(|x| x.uid == uid)
            .map(|x| x.start.format("%m-%d").to_string())
            .collect()
    };
    // DTSTART (a Sunday) always counts, though the rule says MO,WE.
    assert_eq!(
        by("until-utc"),
        [
            "11-01", "11-02", "11-04", "11-09", "11-11", "11-16", "11-18", "11-23", "11-25"
        ]
    );
    assert_eq!(
        by("until-exchange-floating"),
        ["11-02", "11-03", "11-09", "11-10", "11-16"]
    );
    assert_eq!(by("last-friday"), ["11-27"]);
    assert_eq!(by("yearly"), ["11-27"]);
}

#[test]
fn framing_bom_cr_folding_escapes_and_several_calendars() {
    let text = "\u{feff}BEGIN:VCALENDAR\rBEGIN:VEVENT\rUID:one\rDTSTART:20261127T090000Z\rDTEND:20261127T100000Z\rSUMMARY:Budget\\, Q4\\; review with \\\"Finance\\\"\r  and friends\\\\x\rEND:VEVENT\rEND:VCALENDAR\rBEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:two\nDTSTART:20261127T110000Z\nDTEND:20261127T120000Z\nEND:VEVENT\nEND:VCALENDAR\ntrailing text";
    let o = occurrences(text, "UTC", "2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z");
    assert_eq!(o.len(), 2);
    assert_eq!(
        o[0].details.summary.as_deref(),
        Some("Budget, Q4; review with \"Finance\" and friends\\x")
    );
}

#[test]
fn highest_sequence_wins_for_duplicate_masters() {
    let ics = cal("BEGIN:VEVENT
UID:dup
SEQUENCE:1
DTSTART:20261127T090000Z
DTEND:20261127T100000Z
END:VEVENT
BEGIN:VEVENT
UID:dup
SEQUENCE:3
DTSTART:20261127T130000Z
DTEND:20261127T140000Z
END:VEVENT");
    assert_eq!(
        spans(&occurrences(
            &ics,
            "UTC",
            "2026-11-27T00:00:00Z",
            "2026-11-28T00:00:00Z"
        )),
        ["2026-11-27T13:00:00Z..2026-11-27T14:00:00Z"]
    );
}

#[test]
fn busy_status_privacy_and_replies_are_read() {
    let ics = cal("BEGIN:VEVENT
UID:p
DTSTART:20261127T090000Z
DTEND:20261127T100000Z
CLASS:PRIVATE
X-MICROSOFT-CDO-BUSYSTATUS:OOF
ORGANIZER;CN=Bob:mailto:Bob@Contoso.com
ATTENDEE;PARTSTAT=DECLINED;CN=Alice:mailto:alice@contoso.com
END:VEVENT
BEGIN:VEVENT
UID:t
DTSTART:20261127T110000Z
DTEND:20261127T120000Z
TRANSP:TRANSPARENT
END:VEVENT");
    let o = occurrences(&ics, "UTC", "2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z");
    use calstatus::calendar::ics::{Busy, PartStat};
    assert!(o[0].details.private);
    assert_eq!(o[0].details.busy, Some(Busy::Oof));
    assert_eq!(
        o[0].details.organizer.as_ref().unwrap().email.as_deref(),
        Some("bob@contoso.com")
    );
    assert_eq!(o[0].details.attendees[0].partstat, Some(PartStat::Declined));
    assert_eq!(o[1].details.busy, Some(Busy::Free));
}

#[test]
fn pathological_rules_are_bounded() {
    let ics = cal("BEGIN:VEVENT
UID:storm
DTSTART:20200101T000000Z
DURATION:PT1S
RRULE:FREQ=SECONDLY;COUNT=1000000000
END:VEVENT
BEGIN:VEVENT
UID:fine
DTSTART:20261127T090000Z
DTEND:20261127T100000Z
END:VEVENT");
    let started = std::time::Instant::now();
    let (o, diags) = crate::support::expand_with_diags(
        &ics,
        "UTC",
        "2026-11-27T00:00:00Z",
        "2026-11-28T00:00:00Z",
    );
    // The storm is cut short with a diagnostic; the other event survives.
    assert!(o.iter().any(|x| x.uid == "fine"));
    assert!(
        diags.iter().any(|d| d.message.contains("storm")),
        "{diags:?}"
    );
    // Bounded work, not a timing target: generous enough for a debug build.
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn a_broken_event_costs_only_itself() {
    let ics = cal("BEGIN:VEVENT
UID:bad
DTSTART:not-a-date
END:VEVENT
BEGIN:VEVENT
UID:no-start
SUMMARY:nothing
END:VEVENT
BEGIN:VEVENT
UID:good
DTSTART:20261127T090000Z
DTEND:20261127T100000Z
ATTENDEE;DELEGATED-TO=\"mailto:a@x.com\",\"mailto:b@x.com\":mailto:c@x.com
END:VEVENT");
    let parsed = calstatus::calendar::parse(&ics).unwrap();
    assert_eq!(parsed.events.len(), 1);
    assert_eq!(parsed.events[0].uid, "good");
    assert!(parsed.diags.len() >= 2, "{:?}", parsed.diags);
    assert!(calstatus::calendar::parse("<html><body>Sign in</body></html>").is_err());
    assert!(calstatus::calendar::parse("").is_err());
}

/// Inputs the fuzzer found panicking (each fixed at the root), kept as
/// inline regressions, plus every minimised file under fuzz/regressions/.
#[test]
fn fuzz_regressions_never_panic() {
    let inline = [
        // A multi-byte character where "mailto:" would end.
        cal(
            "BEGIN:VEVENT\nUID:m\nDTSTART:20261127T090000Z\nATTENDEE:ma\u{fffd}\u{fffd}@x\nORGANIZER:mailto\u{3063}\nEND:VEVENT",
        ),
        // A non-ASCII BYDAY entry.
        cal(
            "BEGIN:VEVENT\nUID:b\nDTSTART:20261127T090000Z\nRRULE:FREQ=WEEKLY;BYDAY=\u{20ac}\nEND:VEVENT",
        ),
        // A huge duration (wall-clock arithmetic overflow).
        cal(
            "BEGIN:VEVENT\nUID:d\nDTSTART:20261127T090000Z\nDURATION:P9999999999W\nRRULE:FREQ=DAILY\nRDATE;VALUE=PERIOD:20261128T090000Z/P9999999999W\nEND:VEVENT",
        ),
        cal("BEGIN:VEVENT\nUID:n\nDTSTART:20261127T090000Z\nDURATION:-P9999999999W\nEND:VEVENT"),
        // An absurd nth weekday in a VTIMEZONE rule.
        cal(
            "BEGIN:VTIMEZONE\nTZID:X\nBEGIN:STANDARD\nDTSTART:19701025T030000\nTZOFFSETFROM:+0200\nTZOFFSETTO:+0100\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-2147483648SU\nEND:STANDARD\nEND:VTIMEZONE\nBEGIN:VEVENT\nUID:z\nDTSTART;TZID=X:20261127T090000\nEND:VEVENT",
        ),
    ];
    let mut texts: Vec<String> = inline.to_vec();
    if let Ok(dir) = std::fs::read_dir(crate::support::root().join("fuzz/regressions")) {
        for e in dir.flatten() {
            texts.push(String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned());
        }
    }
    for text in &texts {
        if let Ok(parsed) = calstatus::calendar::parse(text) {
            for (from, to) in [
                ("2026-11-20T00:00:00Z", "2026-12-04T00:00:00Z"),
                ("1990-01-01T00:00:00Z", "2040-01-01T00:00:00Z"),
            ] {
                let w = calstatus::calendar::Window {
                    from: crate::support::t(from),
                    to: crate::support::t(to),
                };
                for tz in ["UTC", "Pacific/Kiritimati", "America/St_Johns"] {
                    let (occ, _) =
                        calstatus::calendar::expand(&parsed, &crate::support::zone(tz), w);
                    assert!(occ.iter().all(|o| o.end >= o.start && o.start < w.to));
                }
            }
        }
    }
}

#[test]
fn an_ended_series_keeps_its_rdates() {
    // Found by the benchmark: a series that ended before the window must
    // not lose its RDATEs (nor be reported as "UNTIL before DTSTART").
    let ics = cal("BEGIN:VEVENT
UID:ended
DTSTART:20260105T090000Z
DTEND:20260105T100000Z
RRULE:FREQ=WEEKLY;UNTIL=20261012T090000Z
RDATE:20261201T090000Z
END:VEVENT");
    let (o, diags) = crate::support::expand_with_diags(
        &ics,
        "UTC",
        "2026-11-27T00:00:00Z",
        "2026-12-04T00:00:00Z",
    );
    assert_eq!(spans(&o), ["2026-12-01T09:00:00Z..2026-12-01T10:00:00Z"]);
    assert!(diags.is_empty(), "{diags:?}");
}
