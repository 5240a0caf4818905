//! Calendar text as Outlook writes it: CRLF, lines folded at 75 octets,
//! properties in Outlook's order.

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};

use super::people::Person;
use super::rng::Rng;
use super::zones::ZONES;

/// `YYYYMMDD`.
pub fn fmt_date(d: NaiveDate) -> String {
    format!("{:04}{:02}{:02}", d.year(), d.month(), d.day())
}

/// `YYYYMMDDTHHMMSS`.
pub fn fmt_wall(w: NaiveDateTime) -> String {
    format!(
        "{}T{:02}{:02}{:02}",
        fmt_date(w.date()),
        w.hour(),
        w.minute(),
        w.second()
    )
}

/// Appends one content line folded at 75 octets (RFC 5545 §3.1), CRLF-terminated.
pub fn push_line(out: &mut String, line: &str) {
    let mut rest = line;
    let mut first = true;
    loop {
        let limit = if first { 75 } else { 74 };
        if !first {
            out.push(' ');
        }
        if rest.len() <= limit {
            out.push_str(rest);
            out.push_str("\r\n");
            return;
        }
        let mut cut = limit;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&rest[..cut]);
        out.push_str("\r\n");
        rest = &rest[cut..];
        first = false;
    }
}

/// A DATE or a wall time in the event's zone.
#[derive(Clone, Copy)]
pub enum GenWhen {
    /// `TZID=…:YYYYMMDDTHHMMSS`.
    Timed(NaiveDateTime),
    /// `VALUE=DATE:YYYYMMDD`.
    Date(NaiveDate),
}

/// One VEVENT to write.
pub struct GenEvent {
    pub uid: String,
    pub sequence: u32,
    /// Index into [`ZONES`].
    pub zone: usize,
    pub start: GenWhen,
    pub end: GenWhen,
    pub rrule: Option<String>,
    pub exdates: Vec<GenWhen>,
    pub recurrence_id: Option<GenWhen>,
    pub summary: String,
    /// `X-MICROSOFT-CDO-BUSYSTATUS`.
    pub busy: &'static str,
    pub transparent: bool,
    pub private: bool,
    pub cancelled: bool,
    pub all_day_flag: bool,
    pub organizer: Person,
    /// (attendee, PARTSTAT).
    pub attendees: Vec<(Person, &'static str)>,
    /// A Teams-meeting DESCRIPTION.
    pub teams: Option<String>,
    pub location: String,
    pub alarm: bool,
    pub created: NaiveDateTime,
}

fn when_prop(name: &str, w: GenWhen, zone: usize) -> String {
    match w {
        GenWhen::Timed(t) => format!("{name};TZID={}:{}", ZONES[zone].name, fmt_wall(t)),
        GenWhen::Date(d) => format!("{name};VALUE=DATE:{}", fmt_date(d)),
    }
}

fn pick<'a>(yes: bool, a: &'a str, b: &'a str) -> &'a str {
    if yes { a } else { b }
}

/// Appends a VEVENT (properties in the order Outlook writes them), with
/// what `detail` keeps.
pub fn write_event(out: &mut String, ev: &GenEvent, detail: super::Detail) {
    let full = detail == super::Detail::Full;
    push_line(out, "BEGIN:VEVENT");
    // The owner's own reply comes first; a published calendar keeps only it.
    let shown = if full { ev.attendees.len() } else { 1 };
    for (p, partstat) in ev.attendees.iter().take(shown) {
        push_line(
            out,
            &format!(
                "ATTENDEE;CN={};PARTSTAT={partstat};ROLE=REQ-PARTICIPANT;RSVP=TRUE:mailto:{}",
                p.name, p.email
            ),
        );
    }
    push_line(out, pick(ev.private, "CLASS:PRIVATE", "CLASS:PUBLIC"));
    push_line(out, &format!("CREATED:{}Z", fmt_wall(ev.created)));
    if let Some(d) = ev.teams.as_ref().filter(|_| full) {
        push_line(out, &format!("DESCRIPTION:{d}"));
    }
    push_line(out, &when_prop("DTEND", ev.end, ev.zone));
    push_line(out, &format!("DTSTAMP:{}Z", fmt_wall(ev.created)));
    push_line(out, &when_prop("DTSTART", ev.start, ev.zone));
    if !ev.exdates.is_empty() {
        push_line(out, &exdate_line(ev));
    }
    push_line(out, &format!("LAST-MODIFIED:{}Z", fmt_wall(ev.created)));
    push_line(out, &format!("LOCATION:{}", ev.location));
    push_line(
        out,
        &format!(
            "ORGANIZER;CN={}:mailto:{}",
            ev.organizer.name, ev.organizer.email
        ),
    );
    push_line(out, "PRIORITY:5");
    if let Some(rid) = ev.recurrence_id {
        push_line(out, &when_prop("RECURRENCE-ID", rid, ev.zone));
    }
    if let Some(r) = &ev.rrule {
        push_line(out, &format!("RRULE:{r}"));
    }
    write_event_tail(out, ev);
}

/// From SEQUENCE to `END:VEVENT`.
fn write_event_tail(out: &mut String, ev: &GenEvent) {
    push_line(out, &format!("SEQUENCE:{}", ev.sequence));
    if ev.cancelled {
        push_line(out, "STATUS:CANCELLED");
    }
    push_line(out, &format!("SUMMARY;LANGUAGE=en-us:{}", ev.summary));
    push_line(
        out,
        pick(ev.transparent, "TRANSP:TRANSPARENT", "TRANSP:OPAQUE"),
    );
    push_line(out, &format!("UID:{}", ev.uid));
    push_line(out, &format!("X-MICROSOFT-CDO-BUSYSTATUS:{}", ev.busy));
    push_line(out, "X-MICROSOFT-CDO-IMPORTANCE:1");
    if ev.all_day_flag {
        push_line(out, "X-MICROSOFT-CDO-ALLDAYEVENT:TRUE");
    }
    push_line(out, "X-MICROSOFT-DISALLOW-COUNTER:FALSE");
    push_line(out, "X-MS-OLK-AUTOFILLLOCATION:FALSE");
    push_line(
        out,
        pick(
            ev.teams.is_some(),
            "X-MS-OLK-CONFTYPE:1",
            "X-MS-OLK-CONFTYPE:0",
        ),
    );
    if ev.alarm {
        for l in [
            "BEGIN:VALARM",
            "TRIGGER:-PT15M",
            "ACTION:DISPLAY",
            "DESCRIPTION:Reminder",
            "END:VALARM",
        ] {
            push_line(out, l);
        }
    }
    push_line(out, "END:VEVENT");
}

/// One EXDATE line with every value, in the kind of the first.
fn exdate_line(ev: &GenEvent) -> String {
    let (head, vals): (String, Vec<String>) = match ev.exdates[0] {
        GenWhen::Timed(_) => (
            format!("EXDATE;TZID={}:", ZONES[ev.zone].name),
            ev.exdates
                .iter()
                .map(|w| match w {
                    GenWhen::Timed(t) => fmt_wall(*t),
                    GenWhen::Date(d) => fmt_date(*d),
                })
                .collect(),
        ),
        GenWhen::Date(_) => (
            "EXDATE;VALUE=DATE:".into(),
            ev.exdates
                .iter()
                .map(|w| match w {
                    GenWhen::Timed(t) => fmt_date(t.date()),
                    GenWhen::Date(d) => fmt_date(*d),
                })
                .collect(),
        ),
    };
    format!("{head}{}", vals.join(","))
}

/// An Exchange UID (112 characters).
pub fn outlook_uid(rng: &mut Rng) -> String {
    format!(
        "040000008200E00074C5B7101A82E00800000000{}000000000000000010000000{}",
        rng.hex(16),
        rng.hex(32)
    )
}

/// The DESCRIPTION of a Teams meeting.
pub fn teams_blurb(rng: &mut Rng) -> String {
    let line = "_".repeat(80);
    format!(
        "{line}\\nMicrosoft Teams meeting\\nJoin on your computer\\, mobile app or room device\\nClick here to join the meeting<https://teams.microsoft.com/l/meetup-join/19%3ameeting_{}%40thread.v2/0?context=%7b%22Tid%22%3a%22{}%22%7d>\\nMeeting ID: {} {} {} {}\\nPasscode: {}\\n{line}\\n",
        rng.hex(32).to_ascii_lowercase(),
        rng.guid(),
        rng.range(100, 999),
        rng.range(100, 999),
        rng.range(100, 999),
        rng.range(100, 999),
        rng.hex(6)
    )
}
