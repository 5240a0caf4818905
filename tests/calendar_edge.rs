//! Damaged, hostile or unusual calendars: what real files do that the happy
//! path doesn't, each with a small fixture of our own.

use calstatus::calendar::{Diag, MAX_DIAGNOSTICS, MAX_NESTING_DEPTH, parse};

use crate::support::{cal, expand_with_diags, fmt, occurrences, spans};

fn messages(diags: &[Diag]) -> String {
    diags
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parse and expand diagnostics together, as `plan` reports them.
fn all_diags(ics: &str, tz: &str, from: &str, to: &str) -> Vec<Diag> {
    let parsed = parse(ics).unwrap();
    let (_, exp) = expand_with_diags(ics, tz, from, to);
    parsed.diags.into_iter().chain(exp).collect()
}

// 5. Deep nesting must neither overflow the stack (parsing or dropping) nor
// cost the rest of the file. Runs on the ordinary test thread's stack.
#[test]
fn a_deeply_nested_calendar_is_read_on_a_normal_stack() {
    const DEPTH: usize = 40_000;
    let opened = "BEGIN:X-DEEP\r\n".repeat(DEPTH);
    let nest = format!("{opened}{}", "END:X-DEEP\r\n".repeat(DEPTH));
    let text = format!(
        "BEGIN:VCALENDAR\r\n\
         BEGIN:VEVENT\r\nUID:outer\r\nDTSTART:20261127T090000Z\r\n{nest}SUMMARY:still here\r\nDTEND:20261127T100000Z\r\nEND:VEVENT\r\n\
         BEGIN:VTIMEZONE\r\nTZID:Deep Zone\r\n{nest}BEGIN:STANDARD\r\nDTSTART:19700101T000000\r\nTZOFFSETFROM:+0300\r\nTZOFFSETTO:+0300\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n\
         BEGIN:VEVENT\r\nUID:zoned\r\nDTSTART;TZID=Deep Zone:20261127T130000\r\nDURATION:PT1H\r\nEND:VEVENT\r\n\
         BEGIN:VEVENT\r\nUID:unclosed\r\nDTSTART:20261127T150000Z\r\n{opened}END:VEVENT\r\n\
         BEGIN:VEVENT\r\nUID:last\r\nDTSTART:20261127T170000Z\r\nEND:VEVENT\r\n\
         END:VCALENDAR\r\n"
    );
    let parsed = parse(&text).unwrap();
    let uids: Vec<&str> = parsed.events.iter().map(|e| e.uid.as_str()).collect();
    assert_eq!(uids, ["outer", "zoned", "unclosed", "last"]);
    assert_eq!(
        parsed.events[0].details.summary.as_deref(),
        Some("still here")
    );
    let text_diags = messages(&parsed.diags);
    assert!(
        text_diags.contains(&format!("more than {MAX_NESTING_DEPTH}")),
        "{text_diags}"
    );
    assert!(parsed.diags.len() <= MAX_DIAGNOSTICS + 1);
    let o = occurrences(&text, "UTC", "2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z");
    assert_eq!(
        spans(&o),
        [
            "2026-11-27T09:00:00Z..2026-11-27T10:00:00Z",
            "2026-11-27T10:00:00Z..2026-11-27T11:00:00Z",
            "2026-11-27T15:00:00Z..2026-11-27T15:00:00Z",
            "2026-11-27T17:00:00Z..2026-11-27T17:00:00Z"
        ]
    );
    drop(parsed);
}

// 9a. A private event's content never reaches a diagnostic, even when the
// bad line comes before the event's CLASS.
#[test]
fn private_content_is_never_quoted_in_diagnostics() {
    let ics = cal("BEGIN:VEVENT
UID:secret-uid
DTSTART:20261127T090000Z
Board meeting about the Acme takeover
DTEND:not-a-time-Acme
DURATION:PXAcme
DESCRIPTION;X=\"unclosed:Acme layoffs
EXDATE:Acme-exdate
RDATE:Acme-rdate
RRULE:FREQ=WEEKLY;BYDAY=ACME
BEGIN:VALARM
Acme alarm junk
END:VALARM
CLASS:PRIVATE
END:VEVENT
BEGIN:VEVENT
UID:secret-uid
RECURRENCE-ID:20261127T090000Z
DTSTART:20261127T100000Z
Acme override junk
DTEND:Acme-override-end
END:VEVENT
BEGIN:VEVENT
UID:unreadable-acme
DTSTART:Acme-start
CLASS:CONFIDENTIAL
END:VEVENT
BEGIN:VEVENT
UID:public
DTSTART:20261127T110000Z
Visible junk line
END:VEVENT");
    let diags = all_diags(&ics, "UTC", "2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z");
    let text = messages(&diags);
    assert!(
        !text.to_ascii_lowercase().contains("acme") && !text.contains("secret-uid"),
        "{text}"
    );
    // Every problem is still reported, with its line.
    for line in [4, 7, 8, 9, 10, 11, 12, 15, 23, 24, 26] {
        assert!(
            diags.iter().any(|d| d.line == Some(line)),
            "no diagnostic for line {line}:\n{text}"
        );
    }
    // A public event's junk is quoted (that is what makes it findable).
    assert!(text.contains("Visible junk line"), "{text}");
}

// 9b. Ambiguity resolves to private, and an override inherits its series' class.
#[test]
fn ambiguous_or_inherited_class_is_private() {
    let ics = cal("BEGIN:VEVENT
UID:private-then-public
DTSTART:20261127T080000Z
DURATION:PT30M
CLASS:PRIVATE
CLASS:PUBLIC
END:VEVENT
BEGIN:VEVENT
UID:public-then-private
DTSTART:20261127T090000Z
DURATION:PT30M
CLASS:PUBLIC
CLASS:PRIVATE
END:VEVENT
BEGIN:VEVENT
UID:series
DTSTART:20261123T120000Z
DURATION:PT30M
RRULE:FREQ=DAILY;COUNT=7
CLASS:PRIVATE
SUMMARY:Therapy
END:VEVENT
BEGIN:VEVENT
UID:series
RECURRENCE-ID:20261127T120000Z
DTSTART:20261127T130000Z
DURATION:PT30M
SUMMARY:Therapy (moved)
END:VEVENT
BEGIN:VEVENT
UID:future
DTSTART:20261123T150000Z
DURATION:PT30M
RRULE:FREQ=DAILY;COUNT=7
CLASS:CONFIDENTIAL
END:VEVENT
BEGIN:VEVENT
UID:future
RECURRENCE-ID;RANGE=THISANDFUTURE:20261126T150000Z
DTSTART:20261126T160000Z
DURATION:PT30M
END:VEVENT
BEGIN:VEVENT
UID:open
DTSTART:20261127T180000Z
DURATION:PT30M
END:VEVENT");
    let o = occurrences(&ics, "UTC", "2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z");
    let private: Vec<(String, bool)> = o
        .iter()
        .map(|o| (o.uid.clone(), o.details.private))
        .collect();
    assert_eq!(
        private,
        [
            ("private-then-public".to_string(), true),
            ("public-then-private".to_string(), true),
            ("series".to_string(), true),
            ("future".to_string(), true),
            ("open".to_string(), false),
        ]
    );
}

// 12. An open-ended SECONDLY series that started the day before the window
// fills it (up to the cap) and says it was cut.
#[test]
fn a_dense_series_started_before_the_window_fills_it_and_says_it_was_cut() {
    use calstatus::calendar::expand::MAX_OCCURRENCES_PER_EVENT;
    let ics = cal("BEGIN:VEVENT
UID:tick
DTSTART:20261126T000000Z
DURATION:PT1S
RRULE:FREQ=SECONDLY
END:VEVENT");
    let (o, diags) = expand_with_diags(&ics, "UTC", "2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z");
    assert_eq!(o.len(), MAX_OCCURRENCES_PER_EVENT);
    assert_eq!(fmt(o[0].start), "2026-11-27T00:00:00Z");
    assert_eq!(fmt(o[1].start), "2026-11-27T00:00:01Z");
    assert!(
        diags.iter().any(|d| d.message.contains("\"tick\"")),
        "{diags:?}"
    );
}

// 12. Every cap on expansion work leaves a diagnostic naming what it cut.
#[test]
fn every_expansion_cap_says_so() {
    use calstatus::calendar::expand::MAX_OCCURRENCES_PER_CALENDAR;
    // More occurrences in the window than a calendar may have.
    let mut body = String::new();
    for i in 0..5 {
        body += &format!(
            "BEGIN:VEVENT\nUID:dense-{i}\nDTSTART:20261127T000000Z\nRRULE:FREQ=SECONDLY\nEND:VEVENT\n"
        );
    }
    // A rule that never matches: `rrule` gives up after its own search limit.
    body += "BEGIN:VEVENT\nUID:a-never\nDTSTART:20261127T000000Z\nRRULE:FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30\nEND:VEVENT\n";
    let (o, diags) = expand_with_diags(
        &cal(&body),
        "UTC",
        "2026-11-27T00:00:00Z",
        "2026-11-28T00:00:00Z",
    );
    assert!(o.len() <= MAX_OCCURRENCES_PER_CALENDAR, "{}", o.len());
    let text = messages(&diags);
    assert!(
        text.contains(&format!("more than {MAX_OCCURRENCES_PER_CALENDAR}")),
        "{text}"
    );
    assert!(text.contains("\"a-never\""), "{text}");
}

// 15. Doubled line endings put a blank line before a folded continuation.
#[test]
fn a_continuation_after_a_blank_line_joins_the_last_content_line() {
    let text = "BEGIN:VCALENDAR\r\n\r\nBEGIN:VEVENT\r\n\r\nUID:fold\r\n\r\nDTSTART:2026112\r\n\r\n 7T090000Z\r\n\r\nDTEND:20261127T100000Z\r\n\r\nSUMMARY:Quarterly\r\n\r\n  review\r\n\r\nEND:VEVENT\r\n\r\nEND:VCALENDAR\r\n\r\n";
    let o = occurrences(text, "UTC", "2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z");
    assert_eq!(spans(&o), ["2026-11-27T09:00:00Z..2026-11-27T10:00:00Z"]);
    assert_eq!(o[0].details.summary.as_deref(), Some("Quarterly review"));
}

// 16. A misspelt END leaves a component open; the next top-level component
// closes it.
#[test]
fn a_component_opened_inside_another_closes_it() {
    let ics = cal("BEGIN:VTODO
UID:todo
SUMMARY:Write report
END:VTOOD
BEGIN:VEVENT
UID:after-todo
DTSTART:20261127T090000Z
DTEND:20261127T100000Z
END:VEVENT
BEGIN:VTIMEZONE
TZID:Plus Three
BEGIN:STANDARD
DTSTART:19700101T000000
TZOFFSETFROM:+0300
TZOFFSETTO:+0300
END:STANDARD
END:VTIMEZON
BEGIN:VEVENT
UID:after-zone
DTSTART;TZID=Plus Three:20261127T140000
DURATION:PT1H
BEGIN:VALARM
TRIGGER:-PT15M
BEGIN:VEVENT
UID:after-alarm
DTSTART:20261127T150000Z
DURATION:PT1H
END:VEVENT");
    let (o, diags) = expand_with_diags(&ics, "UTC", "2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z");
    let parsed = parse(&ics).unwrap();
    assert_eq!(
        spans(&o),
        [
            "2026-11-27T09:00:00Z..2026-11-27T10:00:00Z",
            "2026-11-27T11:00:00Z..2026-11-27T12:00:00Z",
            "2026-11-27T15:00:00Z..2026-11-27T16:00:00Z"
        ],
        "{:?}",
        parsed.diags
    );
    assert!(diags.is_empty(), "{diags:?}");
    let text = messages(&parsed.diags);
    assert!(text.contains("VTODO"), "{text}");
    assert!(text.contains("VTIMEZONE"), "{text}");
}

// 17. An all-day event's DATE-TIME end (or a DURATION with hours) keeps its
// last day, for users on either side of UTC.
#[test]
fn an_all_day_event_with_a_timed_end_keeps_its_last_day() {
    let ics = cal("BEGIN:VEVENT
UID:utc-end
DTSTART;VALUE=DATE:20261127
DTEND:20261129T000000Z
END:VEVENT
BEGIN:VEVENT
UID:zoned-end-with-time
DTSTART;VALUE=DATE:20261127
DTEND;TZID=Europe/Berlin:20261128T120000
END:VEVENT
BEGIN:VEVENT
UID:hours
DTSTART;VALUE=DATE:20261127
DURATION:PT36H
END:VEVENT
BEGIN:VEVENT
UID:daily
DTSTART;VALUE=DATE:20261120
DTEND:20261121T000000Z
RRULE:FREQ=DAILY;COUNT=8
END:VEVENT");
    for (tz, two_days, days) in [
        (
            "America/Los_Angeles",
            "2026-11-27T08:00:00Z..2026-11-29T08:00:00Z",
            [
                "2026-11-26T08:00:00Z..2026-11-27T08:00:00Z",
                "2026-11-27T08:00:00Z..2026-11-28T08:00:00Z",
            ],
        ),
        (
            "Asia/Tokyo",
            "2026-11-26T15:00:00Z..2026-11-28T15:00:00Z",
            [
                "2026-11-25T15:00:00Z..2026-11-26T15:00:00Z",
                "2026-11-26T15:00:00Z..2026-11-27T15:00:00Z",
            ],
        ),
    ] {
        let o = occurrences(&ics, tz, "2026-11-26T12:00:00Z", "2026-11-27T12:00:00Z");
        let by = |uid: &str| -> Vec<String> {
            spans(
                &o.iter()
                    .filter(|x| x.uid == uid)
                    .cloned()
                    .collect::<Vec<_>>(),
            )
        };
        assert!(o.iter().all(|x| x.all_day), "{tz}");
        assert_eq!(by("utc-end"), [two_days], "{tz}");
        assert_eq!(by("zoned-end-with-time"), [two_days], "{tz}");
        assert_eq!(by("hours"), [two_days], "{tz}");
        assert_eq!(by("daily"), days, "{tz}");
    }
}

// 18. An exception left over from before the series was edited (lower
// SEQUENCE, RECURRENCE-ID no longer an instance) is dropped, with a warning.
#[test]
fn stale_exceptions_are_dropped() {
    let ics = cal("BEGIN:VEVENT
UID:weekly
SEQUENCE:3
DTSTART:20261124T090000Z
DTEND:20261124T100000Z
RRULE:FREQ=WEEKLY
EXDATE:20261208T090000Z
END:VEVENT
BEGIN:VEVENT
UID:weekly
SEQUENCE:1
RECURRENCE-ID:20261123T090000Z
DTSTART:20261123T140000Z
DTEND:20261123T150000Z
SUMMARY:stale: Mondays were moved to Tuesdays
END:VEVENT
BEGIN:VEVENT
UID:weekly
SEQUENCE:0
RECURRENCE-ID:20261201T090000Z
DTSTART:20261201T150000Z
DTEND:20261201T160000Z
SUMMARY:kept: still an instance (Outlook often keeps the old SEQUENCE)
END:VEVENT
BEGIN:VEVENT
UID:weekly
SEQUENCE:0
RECURRENCE-ID:20261208T090000Z
DTSTART:20261208T150000Z
DTEND:20261208T160000Z
SUMMARY:an instance (not stale), dropped as its RECURRENCE-ID is excluded
END:VEVENT
BEGIN:VEVENT
UID:weekly
SEQUENCE:3
RECURRENCE-ID:20261125T090000Z
DTSTART:20261125T090000Z
DTEND:20261125T100000Z
SUMMARY:kept: as new as the master
END:VEVENT
BEGIN:VEVENT
UID:weekly
SEQUENCE:2
RECURRENCE-ID;RANGE=THISANDFUTURE:20261130T090000Z
DTSTART:20261130T170000Z
DTEND:20261130T180000Z
SUMMARY:stale this-and-future
END:VEVENT");
    let (o, diags) = expand_with_diags(&ics, "UTC", "2026-11-20T00:00:00Z", "2026-12-10T00:00:00Z");
    assert_eq!(
        spans(&o),
        [
            "2026-11-24T09:00:00Z..2026-11-24T10:00:00Z",
            "2026-11-25T09:00:00Z..2026-11-25T10:00:00Z",
            "2026-12-01T15:00:00Z..2026-12-01T16:00:00Z",
        ],
        "{diags:?}"
    );
    let stale: Vec<_> = diags
        .iter()
        .filter(|d| d.message.contains("stale"))
        .collect();
    assert_eq!(stale.len(), 2, "{diags:?}");
    assert!(stale.iter().all(|d| d.message.contains("\"weekly\"")));
}

// 19. Duplicated properties: the first wins (as libical and ical.js do), with a warning.
#[test]
fn the_first_of_duplicated_properties_wins() {
    let ics = cal("BEGIN:VEVENT
UID:first-uid
DTSTART:20261127T090000Z
DTSTART:20261127T150000Z
DTEND:20261127T100000Z
DTEND:20261127T160000Z
UID:second-uid
END:VEVENT
BEGIN:VEVENT
UID:dur
DTSTART:20261127T110000Z
DURATION:PT30M
DURATION:PT5H
END:VEVENT
BEGIN:VEVENT
UID:series
DTSTART:20261123T120000Z
DURATION:PT1H
RRULE:FREQ=DAILY;COUNT=7
END:VEVENT
BEGIN:VEVENT
UID:series
RECURRENCE-ID:20261127T120000Z
RECURRENCE-ID:20261126T120000Z
DTSTART:20261127T130000Z
DURATION:PT1H
END:VEVENT");
    let parsed = parse(&ics).unwrap();
    let (o, _) = expand_with_diags(&ics, "UTC", "2026-11-26T00:00:00Z", "2026-11-28T00:00:00Z");
    assert_eq!(
        o.iter()
            .map(|x| format!("{} {}..{}", x.uid, fmt(x.start), fmt(x.end)))
            .collect::<Vec<_>>(),
        [
            "series 2026-11-26T12:00:00Z..2026-11-26T13:00:00Z",
            "first-uid 2026-11-27T09:00:00Z..2026-11-27T10:00:00Z",
            "dur 2026-11-27T11:00:00Z..2026-11-27T11:30:00Z",
            "series 2026-11-27T13:00:00Z..2026-11-27T14:00:00Z",
        ]
    );
    let text = messages(&parsed.diags);
    for prop in ["DTSTART", "DTEND", "UID", "DURATION", "RECURRENCE-ID"] {
        assert!(
            text.contains(&format!("more than one {prop}")),
            "{prop}: {text}"
        );
    }
}

// 8. One calendar full of junk reports a bounded number of problems.
#[test]
fn diagnostics_are_capped_per_calendar() {
    let mut body = String::from(
        "BEGIN:VEVENT\nUID:ok\nDTSTART:20261127T090000Z\nDTEND:20261127T100000Z\nEND:VEVENT\n",
    );
    for i in 0..5_000 {
        body += &format!("junk line {i}\n");
    }
    for i in 0..500 {
        body += &format!(
            "BEGIN:VEVENT\nUID:mars-{i}\nDTSTART;TZID=Mars Standard Time:20261127T120000\nEND:VEVENT\n"
        );
    }
    let ics = cal(&body);
    let parsed = parse(&ics).unwrap();
    assert_eq!(parsed.diags.len(), MAX_DIAGNOSTICS + 1);
    assert!(
        parsed.diags[MAX_DIAGNOSTICS]
            .message
            .contains("4900 more problems"),
        "{:?}",
        parsed.diags[MAX_DIAGNOSTICS]
    );
    let (o, diags) = expand_with_diags(&ics, "UTC", "2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z");
    assert_eq!(o.len(), 501);
    assert_eq!(diags.len(), MAX_DIAGNOSTICS + 1, "{diags:?}");
    assert!(
        diags[MAX_DIAGNOSTICS].message.contains("400 more problems"),
        "{:?}",
        diags[MAX_DIAGNOSTICS]
    );
}
