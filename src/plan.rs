//! Planning: occurrences + rules → each user's status timeline. Pure.
//!
//! For every occurrence the first matching rule decides: a message, or a
//! skip with a reason. Occurrences that set a message are grouped into blocks
//! (same rule, back-to-back or overlapping, merged when allowed), then a sweep
//! over time picks, at every instant, the block with the highest priority
//! (then the earlier rule, then the later start). Consecutive stretches won by
//! one block become one status, published at its start with expiry at its
//! end; the message's `{end}` is the end of the block's meetings, so a status
//! never claims less than the meeting it covers.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use serde::Serialize;

use crate::calendar::ics::{Calendar, Diag};
use crate::calendar::{Occurrence, Window, Zone, expand};
use crate::domain::{User, WorkingHours};
use crate::rules::eval::{Subject, first_match};
use crate::rules::template::Vars;
use crate::rules::{Action, Localized, Rule};

/// Org-wide planning settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Merge back-to-back meetings under one rule.
    pub merge: bool,
    /// Largest gap still merged.
    pub merge_gap: Duration,
    /// The org's text for private meetings.
    pub private_message: Localized,
    /// Internal email domains.
    pub internal_domains: HashSet<String>,
}

/// Why a calendar could not be loaded (fetching or parsing it); shared by
/// every reader of the calendar. Its text is what reports show.
pub type LoadError = Arc<dyn std::error::Error + Send + Sync>;

/// One calendar of a user, as loaded by the shell.
#[derive(Clone, Debug)]
pub struct CalendarInput {
    /// Where it came from (redacted), for reports.
    pub label: String,
    /// The parsed calendar, or why it could not be loaded.
    pub calendar: Result<Arc<Calendar>, LoadError>,
}

/// An instant serialised as RFC 3339 UTC with second precision.
pub mod utc_secs {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::Serializer;

    /// Formats one instant.
    pub fn fmt(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::Secs, true)
    }
    /// Serde helper.
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        with_text(t, |text| s.serialize_str(text))
    }

    /// Calls `f` with [`fmt`]'s text, formatted on the stack when it can be.
    pub fn with_text<R>(t: &DateTime<Utc>, f: impl FnOnce(&str) -> R) -> R {
        let mut buf = [0u8; 20];
        match digits(t, &mut buf) {
            Some(text) => f(text),
            None => f(&fmt(t)),
        }
    }

    /// [`fmt`] without allocating, for years 0 to 9999 (every other year
    /// goes through chrono, which signs it).
    fn digits<'b>(t: &DateTime<Utc>, buf: &'b mut [u8; 20]) -> Option<&'b str> {
        use chrono::{Datelike, Timelike};
        let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
        let put = |buf: &mut [u8; 20], at: usize, n: u32, width: usize| {
            let mut n = n;
            for i in (0..width).rev() {
                buf[at + i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        *buf = *b"0000-00-00T00:00:00Z";
        put(buf, 0, year, 4);
        put(buf, 5, t.month(), 2);
        put(buf, 8, t.day(), 2);
        put(buf, 11, t.hour(), 2);
        put(buf, 14, t.minute(), 2);
        put(buf, 17, t.second(), 2);
        std::str::from_utf8(buf).ok()
    }
    /// Serde helper for optional instants.
    pub mod option {
        use chrono::{DateTime, Utc};
        use serde::Serializer;
        /// Serde helper.
        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }
    }
}

/// A reference to one occurrence.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct OccRef {
    /// UID; null when the event has none.
    pub uid: Option<String>,
    /// Original start, UTC; null for non-recurring events.
    #[serde(with = "utc_secs::option")]
    pub recurrence_id: Option<DateTime<Utc>>,
}

/// A planned status.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Status {
    /// Published at.
    #[serde(with = "utc_secs")]
    pub start: DateTime<Utc>,
    /// Expires at.
    #[serde(with = "utc_secs")]
    pub end: DateTime<Utc>,
    /// The text.
    pub message: String,
    /// The rule that made it.
    pub rule: String,
    /// The occurrences behind it.
    pub occurrences: Vec<OccRef>,
}

/// What was decided for an occurrence.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OccurrenceDecision {
    /// It is (part of) a status.
    Status,
    /// It sets nothing.
    Skipped,
}

/// An occurrence in the report.
#[derive(Clone, Debug, Serialize)]
pub struct OccurrenceReport {
    /// UID; null when the event has none.
    pub uid: Option<String>,
    /// Original start, UTC; null for non-recurring events.
    #[serde(with = "utc_secs::option")]
    pub recurrence_id: Option<DateTime<Utc>>,
    /// SUMMARY; null for private events.
    pub summary: Option<String>,
    /// Start.
    #[serde(with = "utc_secs")]
    pub start: DateTime<Utc>,
    /// End.
    #[serde(with = "utc_secs")]
    pub end: DateTime<Utc>,
    /// All-day.
    pub all_day: bool,
    /// OccurrenceDecision.
    pub decision: OccurrenceDecision,
    /// Deciding rule, if any.
    pub rule: Option<String>,
    /// Why it was skipped.
    pub reason: Option<String>,
    /// Which calendar it came from.
    pub calendar: String,
    /// Private (never shown).
    #[serde(skip)]
    pub private: bool,
}

/// A problem with one of the user's sources.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SourceProblem {
    /// The source (redacted URL or file), with a line where known.
    pub source: String,
    /// One sentence.
    pub message: String,
}

/// Everything planned for one person.
#[derive(Clone, Debug, Serialize)]
pub struct UserPlan {
    /// Object id.
    pub user: String,
    /// Zone name.
    pub timezone: String,
    /// Statuses, by start.
    pub statuses: Vec<Status>,
    /// Every occurrence overlapping the window, by start.
    pub occurrences: Vec<OccurrenceReport>,
    /// Sources that failed.
    pub errors: Vec<SourceProblem>,
    /// Repairs made while reading sources.
    pub warnings: Vec<SourceProblem>,
    /// The zone (for local-time renderers).
    #[serde(skip)]
    pub zone: Zone,
    /// The user file's name (for renderers).
    #[serde(skip)]
    pub label: String,
}

/// The whole plan.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// The window.
    pub window: WindowReport,
    /// One entry per planned user.
    pub users: Vec<UserPlan>,
    /// User files that could not be loaded.
    pub problems: Vec<SourceProblem>,
}

/// The window as reported.
#[derive(Clone, Debug, Serialize)]
pub struct WindowReport {
    /// From.
    #[serde(with = "utc_secs")]
    pub from: DateTime<Utc>,
    /// To.
    #[serde(with = "utc_secs")]
    pub to: DateTime<Utc>,
}

/// Local time as a fixed-offset date-time (for templates and renderers).
pub fn local(zone: &Zone, t: DateTime<Utc>) -> DateTime<FixedOffset> {
    let off = zone.offset_at(t.naive_utc());
    let fixed =
        FixedOffset::east_opt(off).unwrap_or(FixedOffset::east_opt(0).expect("zero offset"));
    fixed.from_utc_datetime(&t.naive_utc())
}

/// Whether the occurrence meets the working hours of some working day, in
/// local time (an instant event counts when it falls inside them).
fn overlaps_working_hours(wh: &WorkingHours, zone: &Zone, occ: &Occurrence) -> bool {
    let s = zone.to_local(occ.start);
    let e = zone.to_local(occ.end);
    let mut day: NaiveDate = s.date() - Duration::days(1);
    while day <= e.date() {
        if wh.days.contains(&day.weekday()) {
            let ws = day.and_time(wh.start);
            let we = day.and_time(wh.end);
            if s < we && (e > ws || (s == e && s >= ws)) {
                return true;
            }
        }
        day += Duration::days(1);
        if day > s.date() + Duration::days(400) {
            break;
        }
    }
    false
}

/// An occurrence that wants a status.
struct Candidate<'a> {
    occ: usize,
    rule_idx: usize,
    rule: &'a Rule,
    localized: &'a Localized,
}

/// A run of candidates under one rule.
struct Block {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    rule_idx: usize,
    priority: i32,
    occs: Vec<usize>,
    message: String,
    rule: String,
}

/// Plans one user. `calendars` are in the user's source order.
pub fn plan_user(
    user: &User,
    calendars: &[CalendarInput],
    org_rules: &[Rule],
    settings: &Settings,
    window: Window,
) -> UserPlan {
    let Loaded {
        occs,
        errors,
        warnings,
    } = load_occurrences(user, calendars, window);
    let labels = calendar_labels(calendars);
    let judge = Judge {
        user,
        org_rules,
        settings,
    };
    let mut reports: Vec<OccurrenceReport> = Vec::with_capacity(occs.len());
    let mut candidates: Vec<Candidate<'_>> = Vec::new();
    for (i, (o, ci)) in occs.iter().enumerate() {
        let mut rep = new_report(o, &calendars[*ci].label);
        candidates.extend(judge.decide(i, o, &labels[*ci], &mut rep));
        reports.push(rep);
    }

    let (statuses, in_status) = timeline(&occs, &candidates, user, settings);
    mark_outcomes(&mut reports, &candidates, &in_status);
    UserPlan {
        user: user.id.clone(),
        timezone: user.zone.name(),
        statuses,
        occurrences: reports,
        errors,
        warnings,
        zone: user.zone.clone(),
        label: file_label(user),
    }
}

/// A user's occurrences, read from every calendar, with what went wrong.
struct Loaded {
    /// Occurrences with the index of their calendar, by start, end, UID.
    occs: Vec<(Occurrence, usize)>,
    /// Calendars that could not be loaded.
    errors: Vec<SourceProblem>,
    /// Repairs made while parsing or expanding.
    warnings: Vec<SourceProblem>,
}

/// Expands every loaded calendar over the window and sorts the occurrences;
/// calendars that failed become errors, their diagnostics warnings.
fn load_occurrences(user: &User, calendars: &[CalendarInput], window: Window) -> Loaded {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut occs: Vec<(Occurrence, usize)> = Vec::new();
    for (ci, c) in calendars.iter().enumerate() {
        match &c.calendar {
            Err(e) => errors.push(SourceProblem {
                source: c.label.clone(),
                message: e.to_string(),
            }),
            Ok(cal) => {
                let (o, diags) = expand(cal, &user.zone, window);
                for d in cal.diags.iter().chain(diags.iter()) {
                    warnings.push(diag_problem(&c.label, d));
                }
                occs.extend(o.into_iter().map(|o| (o, ci)));
            }
        }
    }
    occs.sort_by(|a, b| (a.0.start, a.0.end, &a.0.uid).cmp(&(b.0.start, b.0.end, &b.0.uid)));
    Loaded {
        occs,
        errors,
        warnings,
    }
}

/// Each calendar's source and name, lower-case, as `calendar = "…"` rules
/// match them.
fn calendar_labels(calendars: &[CalendarInput]) -> Vec<String> {
    calendars
        .iter()
        .map(|c| {
            let name = c
                .calendar
                .as_ref()
                .ok()
                .and_then(|cal| cal.name.clone())
                .unwrap_or_default();
            format!("{} {}", c.label, name).to_lowercase()
        })
        .collect()
}

/// The report of an occurrence before any decision: skipped, no rule, no
/// reason; the summary is hidden when the event is private.
fn new_report(o: &Occurrence, calendar: &str) -> OccurrenceReport {
    OccurrenceReport {
        uid: o.given_uid().map(str::to_string),
        recurrence_id: o.recurrence_id,
        summary: if o.details.private {
            None
        } else {
            o.details.summary.clone()
        },
        start: o.start,
        end: o.end,
        all_day: o.all_day,
        decision: OccurrenceDecision::Skipped,
        rule: None,
        reason: None,
        calendar: calendar.to_string(),
        private: o.details.private,
    }
}

/// What deciding an occurrence reads: the user, the org's rules, settings.
struct Judge<'a> {
    user: &'a User,
    org_rules: &'a [Rule],
    settings: &'a Settings,
}

impl<'a> Judge<'a> {
    /// Decides occurrence `occ` of calendar `calendar` (its lower-case
    /// label): records the rule and skip reason in `rep`, and returns a
    /// candidate when a rule sets a message.
    fn decide(
        &self,
        occ: usize,
        o: &Occurrence,
        calendar: &str,
        rep: &mut OccurrenceReport,
    ) -> Option<Candidate<'a>> {
        if let Some(wh) = &self.user.working_hours
            && !o.all_day
            && !overlaps_working_hours(wh, &self.user.zone, o)
        {
            rep.reason = Some("outside-working-hours".into());
            return None;
        }
        let Some((rule_idx, rule)) = self.first_rule(o, calendar) else {
            rep.reason = Some("no-rule".into());
            return None;
        };
        rep.rule = Some(rule.name.clone());
        match &rule.action {
            Action::Skip(reason) => {
                rep.reason = Some(reason.clone());
                None
            }
            Action::Message(localized) => Some(Candidate {
                occ,
                rule_idx,
                rule,
                localized,
            }),
        }
    }

    /// The first rule matching the occurrence, with its index in one ordered
    /// list: personal rules come first, then the org's.
    fn first_rule(&self, o: &Occurrence, calendar: &str) -> Option<(usize, &'a Rule)> {
        let user = self.user;
        let subject = Subject {
            email: user.email.as_deref(),
            internal_domains: &self.settings.internal_domains,
            calendar,
        };
        let local_start = user.zone.to_local(o.start);
        first_match(&user.rules, o, local_start, &subject).or_else(|| {
            first_match(self.org_rules, o, local_start, &subject)
                .map(|(i, r)| (user.rules.len() + i, r))
        })
    }
}

/// Records the timeline's outcome for every candidate: in a status, or
/// skipped as overlapped by a stronger one.
fn mark_outcomes(
    reports: &mut [OccurrenceReport],
    candidates: &[Candidate<'_>],
    in_status: &[bool],
) {
    for c in candidates {
        let rep = &mut reports[c.occ];
        if in_status[c.occ] {
            rep.decision = OccurrenceDecision::Status;
        } else {
            rep.reason = Some("overlapped".into());
        }
    }
}

/// The user file's name without its extension (for renderers).
fn file_label(user: &User) -> String {
    user.file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Turns one calendar diagnostic into a warning naming the source and line.
fn diag_problem(label: &str, d: &Diag) -> SourceProblem {
    SourceProblem {
        source: match d.line {
            Some(l) => format!("{label}:{l}"),
            None => label.to_string(),
        },
        message: d.message.clone(),
    }
}

/// Builds the status timeline from the candidates; also tells, per
/// occurrence, whether it ended up in a status.
fn timeline(
    occs: &[(Occurrence, usize)],
    candidates: &[Candidate<'_>],
    user: &User,
    settings: &Settings,
) -> (Vec<Status>, Vec<bool>) {
    let t = Timeline {
        occs,
        user,
        settings,
    };
    let blocks = t.blocks(candidates);
    let runs = sweep(&blocks);
    // Zero-length blocks (instant events) become no status.
    let in_status = covered(occs.len(), &blocks, &runs);
    let statuses = runs.iter().map(|r| t.status(&blocks[r.block], r)).collect();
    (statuses, in_status)
}

/// What the timeline steps read: the user's sorted occurrences (with their
/// calendar index), the user, the org's settings.
struct Timeline<'a> {
    occs: &'a [(Occurrence, usize)],
    user: &'a User,
    settings: &'a Settings,
}

/// A stretch of time won by one block.
struct Run {
    /// Index of the winning block.
    block: usize,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl Timeline<'_> {
    /// Occurrence number `i`.
    fn occ(&self, i: usize) -> &Occurrence {
        &self.occs[i].0
    }

    /// Groups the candidates into blocks (runs under one rule, merged when
    /// allowed), then renders each block's message with its full span.
    fn blocks(&self, candidates: &[Candidate<'_>]) -> Vec<Block> {
        let mut order: Vec<&Candidate<'_>> = candidates.iter().collect();
        order.sort_by_key(|c| (c.rule_idx, self.occ(c.occ).start, self.occ(c.occ).end));
        let mut blocks: Vec<(Block, &Candidate<'_>)> = Vec::new();
        for c in order {
            let o = self.occ(c.occ);
            if let Some((b, first)) = blocks.last_mut()
                && self.joins(b, first, c)
            {
                b.end = b.end.max(o.end);
                b.occs.push(c.occ);
                continue;
            }
            let block = Block {
                start: o.start,
                end: o.end,
                rule_idx: c.rule_idx,
                priority: c.rule.priority,
                occs: vec![c.occ],
                message: String::new(),
                rule: c.rule.name.clone(),
            };
            blocks.push((block, c));
        }
        blocks
            .into_iter()
            .map(|(mut b, c)| {
                b.message = self.message(&b, c.localized);
                b
            })
            .collect()
    }

    /// Whether candidate `c` merges into block `b` (started by `first`):
    /// merging is on, same rule, within the gap, and, when the message shows
    /// details, the same summary, location and privacy.
    fn joins(&self, b: &Block, first: &Candidate<'_>, c: &Candidate<'_>) -> bool {
        let o = self.occ(c.occ);
        let fo = self.occ(first.occ);
        let template = c.localized.for_language(&self.user.language);
        let same_details = !template.reveals_details()
            || (fo.details.summary == o.details.summary
                && fo.details.location == o.details.location
                && fo.details.private == o.details.private);
        self.settings.merge
            && b.rule_idx == c.rule_idx
            && o.start <= b.end + self.settings.merge_gap
            && same_details
    }

    /// Renders a block's message from its first meeting and its span; a
    /// private block's details never reach it.
    fn message(&self, b: &Block, localized: &Localized) -> String {
        let user = self.user;
        let first = self.occ(b.occs[0]);
        let private = b.occs.iter().any(|&i| self.occ(i).details.private);
        let mut template = localized.for_language(&user.language);
        if private && template.reveals_details() {
            template = user
                .private_message
                .as_ref()
                .unwrap_or(&self.settings.private_message)
                .for_language(&user.language);
        }
        let organizer = first
            .details
            .organizer
            .as_ref()
            .and_then(|p| p.name.clone().or_else(|| p.email.clone()));
        // A private meeting's details never reach a message, whatever the
        // template (private-message templates are checked at load too).
        template.render(&Vars {
            summary: first.details.summary.as_deref().filter(|_| !private),
            location: first.details.location.as_deref().filter(|_| !private),
            organizer: organizer.as_deref().filter(|_| !private),
            start: local(&user.zone, b.start),
            end: local(&user.zone, b.end),
            language: &user.language,
        })
    }

    /// The status for run `r` of block `b`.
    fn status(&self, b: &Block, r: &Run) -> Status {
        Status {
            start: r.start,
            end: r.end,
            message: b.message.clone(),
            rule: b.rule.clone(),
            occurrences: b
                .occs
                .iter()
                .map(|&k| OccRef {
                    uid: self.occ(k).given_uid().map(str::to_string),
                    recurrence_id: self.occ(k).recurrence_id,
                })
                .collect(),
        }
    }
}

/// Sweeps over time: the winner of every elementary interval between block
/// bounds, consecutive intervals won by one block joined into one run.
fn sweep(blocks: &[Block]) -> Vec<Run> {
    let mut bounds: Vec<DateTime<Utc>> = blocks.iter().flat_map(|b| [b.start, b.end]).collect();
    bounds.sort();
    bounds.dedup();
    let mut runs: Vec<Run> = Vec::new();
    let mut by_start: Vec<usize> = (0..blocks.len()).collect();
    by_start.sort_by_key(|&i| blocks[i].start);
    let mut next = 0usize;
    let mut active: Vec<usize> = Vec::new();
    for w in bounds.windows(2) {
        let (a, z) = (w[0], w[1]);
        while next < by_start.len() && blocks[by_start[next]].start <= a {
            active.push(by_start[next]);
            next += 1;
        }
        active.retain(|&i| blocks[i].end > a);
        if let Some(i) = winner(blocks, &active, a, z) {
            match runs.last_mut() {
                Some(r) if r.block == i && r.end == a => r.end = z,
                _ => runs.push(Run {
                    block: i,
                    start: a,
                    end: z,
                }),
            }
        }
    }
    runs
}

/// Among the active blocks covering `[a, z)`, the one with the highest
/// priority, then the earlier rule, then the later start, then the lower index.
fn winner(blocks: &[Block], active: &[usize], a: DateTime<Utc>, z: DateTime<Utc>) -> Option<usize> {
    active
        .iter()
        .copied()
        .filter(|&i| blocks[i].start <= a && blocks[i].end >= z)
        .max_by_key(|&i| {
            (
                blocks[i].priority,
                std::cmp::Reverse(blocks[i].rule_idx),
                blocks[i].start,
                std::cmp::Reverse(i),
            )
        })
}

/// Per occurrence (of `n`), whether some run's block contains it.
fn covered(n: usize, blocks: &[Block], runs: &[Run]) -> Vec<bool> {
    let mut in_status = vec![false; n];
    for r in runs {
        for &k in &blocks[r.block].occs {
            in_status[k] = true;
        }
    }
    in_status
}

/// The status covering instant `t`, if any.
pub fn status_at(plan: &UserPlan, t: DateTime<Utc>) -> Option<&Status> {
    plan.statuses.iter().find(|s| s.start <= t && t < s.end)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};

    use super::utc_secs;

    #[test]
    fn instants_serialize_as_chrono_writes_them() {
        let cases = [
            Utc.with_ymd_and_hms(2026, 11, 30, 9, 5, 7).unwrap(),
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-5, 3, 1, 12, 0, 0).unwrap(),
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
            Utc.timestamp_opt(1_795_000_123, 999_999_999).unwrap(),
        ];
        for t in cases {
            let mut out = Vec::new();
            utc_secs::serialize(&t, &mut serde_json::Serializer::new(&mut out)).unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("\"{}\"", utc_secs::fmt(&t)),
                "{t:?}"
            );
        }
    }
}
