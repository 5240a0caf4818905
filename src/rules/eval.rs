//! Rule evaluation: the first rule whose conditions all hold decides an
//! occurrence. Pure: a function of the occurrence, the person and the rules.

use std::collections::HashSet;

use chrono::{Datelike, NaiveDateTime};

use super::model::{Conditions, Response, Rule};
use crate::calendar::Occurrence;
use crate::calendar::ics::{Details, PartStat};

/// What the rules know about the person and the occurrence's origin.
#[derive(Clone, Debug)]
pub struct Subject<'a> {
    /// The person's email (lower-case), to find their ATTENDEE line.
    pub email: Option<&'a str>,
    /// Domains that count as internal (lower-case).
    pub internal_domains: &'a HashSet<String>,
    /// The calendar's source and name, lower-case, for `calendar = "…"`.
    pub calendar: &'a str,
}

/// The person's reply to this occurrence.
pub fn response(details: &Details, email: Option<&str>) -> Response {
    let Some(email) = email else {
        return Response::None;
    };
    if details
        .organizer
        .as_ref()
        .and_then(|o| o.email.as_deref())
        .is_some_and(|e| e == email)
        && !details
            .attendees
            .iter()
            .any(|a| a.email.as_deref() == Some(email))
    {
        return Response::Accepted;
    }
    match details
        .attendees
        .iter()
        .find(|a| a.email.as_deref() == Some(email))
    {
        None => {
            if details.organizer.as_ref().and_then(|o| o.email.as_deref()) == Some(email) {
                Response::Accepted
            } else {
                Response::None
            }
        }
        Some(a) => match a.partstat {
            Some(PartStat::Declined) => Response::Declined,
            Some(PartStat::Tentative) => Response::Tentative,
            Some(PartStat::NeedsAction) => Response::NeedsAction,
            _ => Response::Accepted,
        },
    }
}

/// `true` when someone outside the internal domains takes part.
pub fn has_external(details: &Details, internal: &HashSet<String>) -> bool {
    if internal.is_empty() {
        return false;
    }
    details
        .organizer
        .iter()
        .chain(details.attendees.iter())
        .filter_map(|p| p.domain())
        .any(|d| !internal.contains(d))
}

/// The first matching rule and its index, if any. `local_start` is the
/// start in the user's zone. The person's reply is found (a walk of the
/// attendees) at most once for all the rules.
pub fn first_match<'r>(
    rules: &'r [Rule],
    occ: &Occurrence,
    local_start: NaiveDateTime,
    subject: &Subject<'_>,
) -> Option<(usize, &'r Rule)> {
    let reply = std::cell::OnceCell::new();
    let reply = || *reply.get_or_init(|| response(&occ.details, subject.email));
    rules
        .iter()
        .enumerate()
        .find(|(_, r)| holds(&r.when, occ, local_start, subject, &reply))
}

/// Whether all of `c` hold. They are tested cheapest first (flags, then
/// times, then the reply, then texts and addresses): the result is the
/// same in any order, and most rules fail on a flag.
fn holds(
    c: &Conditions,
    occ: &Occurrence,
    local_start: NaiveDateTime,
    s: &Subject<'_>,
    reply: &impl Fn() -> Response,
) -> bool {
    let d = &occ.details;
    if c.cancelled.is_some_and(|x| x != d.cancelled)
        || c.all_day.is_some_and(|x| x != occ.all_day)
        || c.private.is_some_and(|x| x != d.private)
    {
        return false;
    }
    if let Some(b) = &c.busy
        && !d.busy.is_some_and(|x| b.contains(&x))
    {
        return false;
    }
    let dur = occ.end - occ.start;
    if c.min_duration.is_some_and(|m| dur < m) || c.max_duration.is_some_and(|m| dur > m) {
        return false;
    }
    if let Some(w) = &c.weekdays
        && !w.contains(&local_start.weekday())
    {
        return false;
    }
    let t = local_start.time();
    if c.start_after.is_some_and(|a| t < a) || c.start_before.is_some_and(|b| t >= b) {
        return false;
    }
    if let Some(r) = &c.response
        && !r.contains(&reply())
    {
        return false;
    }
    let check_text = |m: &Option<super::model::TextMatch>, v: Option<&str>| {
        m.as_ref().is_none_or(|m| m.matches(v))
    };
    if !check_text(&c.summary, d.summary.as_deref())
        || !check_text(&c.location, d.location.as_deref())
        || !check_text(&c.description, d.description.as_deref())
    {
        return false;
    }
    if let Some(m) = &c.categories
        && !d.categories.iter().any(|cat| m.matches(Some(cat)))
    {
        return false;
    }
    if let Some(doms) = &c.organizer_domain {
        let od = d.organizer.as_ref().and_then(|o| o.domain());
        if !od.is_some_and(|od| doms.iter().any(|x| x == od)) {
            return false;
        }
    }
    if let Some(doms) = &c.attendee_domain
        && !d
            .attendees
            .iter()
            .filter_map(|a| a.domain())
            .any(|ad| doms.iter().any(|x| x == ad))
    {
        return false;
    }
    if c.external
        .is_some_and(|x| x != has_external(d, s.internal_domains))
    {
        return false;
    }
    if let Some(cal) = &c.calendar
        && !s.calendar.contains(cal.as_str())
    {
        return false;
    }
    true
}
