//! Recurrence expansion: a parsed calendar → the occurrences in a window.
//!
//! Recurrences are expanded on wall-clock times with the `rrule` crate's typed
//! API (UTC as a neutral carrier; the common DAILY and WEEKLY rules are
//! walked here, to the same instances), then each wall time is converted
//! with the event's resolved zone, so DST never shifts a 09:00 meeting. DTSTART always
//! counts as the first instance; RDATE, EXDATE (also DATE-valued against a
//! timed series) and RECURRENCE-ID overrides (including `THISANDFUTURE`) are
//! applied here, since no crate does it right. Work per event and per
//! calendar is bounded, and whatever a bound cuts is reported: a
//! pathological rule yields a diagnostic, never a hang or a silent gap.
//! Pure code.

use std::collections::BTreeMap;

// foldhash (randomly seeded per process, as std's maps are) instead of
// SipHash: these maps are keyed by instants and UIDs, hashed for every
// instance of every series.
use foldhash::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use rrule::{Frequency, NWeekday, RRule, RRuleSet, Unvalidated};

use super::ics::{
    Anchor, Calendar, Details, Diag, Diags, Event, When, parse_nth_weekday, parse_wall,
};
use super::zones::Zone;

/// A half-open UTC interval `[from, to)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Inclusive start.
    pub from: DateTime<Utc>,
    /// Exclusive end.
    pub to: DateTime<Utc>,
}

/// One instance of an event, in UTC.
#[derive(Clone, Debug)]
pub struct Occurrence {
    /// The event's UID (synthesised when the file gives none, see `uid_given`).
    pub uid: String,
    /// `false` when the event has no UID of its own.
    pub uid_given: bool,
    /// Original start of this instance (UTC); `None` for a non-recurring event.
    pub recurrence_id: Option<DateTime<Utc>>,
    /// Start (UTC).
    pub start: DateTime<Utc>,
    /// End (UTC), never before `start`.
    pub end: DateTime<Utc>,
    /// A DATE-valued (all-day) occurrence.
    pub all_day: bool,
    /// What the rules look at.
    pub details: Arc<Details>,
}

/// Most occurrences one event may have in a window before it is cut short.
pub const MAX_OCCURRENCES_PER_EVENT: usize = 5_000;
/// Most recurrence instances generated per event before the window is reached.
pub const MAX_ITERATIONS_PER_EVENT: usize = 200_000;
/// Most recurrence instances generated for a whole calendar.
pub const MAX_ITERATIONS_PER_CALENDAR: usize = 1_000_000;
/// Most occurrences one calendar may have in a window (a real person's
/// week has a few hundred at most).
pub const MAX_OCCURRENCES_PER_CALENDAR: usize = 20_000;

/// Expands every event of `cal` that overlaps `window`.
///
/// `user_zone` anchors floating and all-day values. Sorted by start, end, uid.
pub fn expand(cal: &Calendar, user_zone: &Zone, window: Window) -> (Vec<Occurrence>, Vec<Diag>) {
    let (masters, overrides) = series_of(cal);
    let mut run = Run {
        cal,
        user_zone,
        window,
        budget: MAX_ITERATIONS_PER_CALENDAR,
        out: Vec::new(),
        diags: Diags::default(),
    };
    let mut full = false;
    for (uid, master) in &masters {
        if run.out.len() >= MAX_OCCURRENCES_PER_CALENDAR {
            // Later events are not expanded at all.
            full = true;
            break;
        }
        let ovs = overrides.get(uid).map(Vec::as_slice).unwrap_or(&[]);
        expand_series(&mut run, master, ovs);
    }
    // Overrides whose master is not in the file stand alone.
    for (uid, ovs) in &overrides {
        if masters.contains_key(uid) || full {
            continue;
        }
        for ov in latest_overrides(ovs) {
            let ctx = Ctx::new(ov, cal, user_zone, &mut run.diags);
            let rid = ov.recurrence_id.as_ref().map(|(w, _)| ctx.rid_instant(w));
            run.out.extend(ctx.single(ov, rid, None, window));
        }
    }
    let Run {
        mut out, mut diags, ..
    } = run;
    out.sort_by(|a, b| (a.start, a.end, &a.uid).cmp(&(b.start, b.end, &b.uid)));
    if full || out.len() > MAX_OCCURRENCES_PER_CALENDAR {
        out.truncate(MAX_OCCURRENCES_PER_CALENDAR);
        diags.push(None, || {
            format!(
                "the calendar has more than {MAX_OCCURRENCES_PER_CALENDAR} occurrences in the window; kept the first {MAX_OCCURRENCES_PER_CALENDAR}"
            )
        });
    }
    // Messages name a private event only as such (see `who`): nothing is quoted.
    (out, diags.finish("expanding this calendar", |_| true))
}

/// Overrides (events with a RECURRENCE-ID) by UID.
type OverridesByUid<'c> = HashMap<&'c str, Vec<&'c Event>>;

/// The series of a calendar: masters by UID (highest SEQUENCE wins; on a
/// tie the first in the file) and overrides by UID.
fn series_of(cal: &Calendar) -> (BTreeMap<&str, &Event>, OverridesByUid<'_>) {
    let mut masters: BTreeMap<&str, &Event> = BTreeMap::new();
    let mut overrides: OverridesByUid<'_> = HashMap::default();
    for ev in &cal.events {
        if ev.recurrence_id.is_some() {
            overrides.entry(ev.uid.as_str()).or_default().push(ev);
            continue;
        }
        match masters.get(ev.uid.as_str()) {
            Some(prev) if prev.sequence >= ev.sequence => {}
            Some(_) | None => {
                masters.insert(ev.uid.as_str(), ev);
            }
        }
    }
    (masters, overrides)
}

/// How a diagnostic names an event: its UID, or for a private event only
/// "a private event" (the diagnostic's line points at it); no property
/// value of a private event is ever quoted.
fn who(ev: &Event) -> String {
    if ev.details.private {
        "a private event".into()
    } else {
        format!("{:?}", ev.uid)
    }
}

/// For each RECURRENCE-ID, the override with the highest SEQUENCE.
fn latest_overrides<'a>(ovs: &[&'a Event]) -> Vec<&'a Event> {
    let mut best: Vec<&'a Event> = Vec::new();
    for ov in ovs {
        let rid = ov.recurrence_id.as_ref().map(|r| &r.0);
        match best
            .iter_mut()
            .find(|b| b.recurrence_id.as_ref().map(|r| &r.0) == rid)
        {
            Some(b) if b.sequence <= ov.sequence => *b = ov,
            Some(_) => {}
            None => best.push(ov),
        }
    }
    best
}

/// How one event's times are read.
struct Ctx<'a> {
    /// The zone recurrences are expanded in.
    zone: Zone,
    /// The user's zone (all-day and floating values).
    user_zone: &'a Zone,
    all_day: bool,
    /// Duration in wall-clock terms (negative: start and end swapped).
    duration: Duration,
}

impl Occurrence {
    /// The UID as the file gives it (`None` when it has none).
    pub fn given_uid(&self) -> Option<&str> {
        self.uid_given.then_some(self.uid.as_str())
    }
}

impl<'a> Ctx<'a> {
    fn new(ev: &Event, cal: &Calendar, user_zone: &'a Zone, diags: &mut Diags) -> Ctx<'a> {
        let zone = match &ev.start.anchor {
            Anchor::Date => user_zone.clone(),
            // X-WR-TIMEZONE (Google, Apple) anchors floating values too.
            Anchor::Floating => cal
                .default_zone
                .clone()
                .unwrap_or_else(|| user_zone.clone()),
            Anchor::Utc => cal.default_zone.clone().unwrap_or(Zone::Utc),
            Anchor::Zoned(z) => z.clone(),
            Anchor::Unknown(name) => {
                diags.push(Some(ev.line), || {
                    let name = if ev.details.private {
                        String::new()
                    } else {
                        format!(" {name:?}")
                    };
                    format!(
                        "unknown time zone{name}; read the times in {} instead",
                        user_zone.name()
                    )
                });
                user_zone.clone()
            }
        };
        let mut ctx = Ctx {
            zone,
            user_zone,
            all_day: ev.start.is_date(),
            duration: Duration::zero(),
        };
        let start_wall = ctx.wall(&ev.start);
        // Durations are wall-clock (as the reference implementations do): a
        // DTEND in another zone is measured exactly once, then added on the
        // wall clock of each instance.
        let duration = match (&ev.end, ev.duration) {
            // All-day: whole days, counted on the dates as written (a
            // DATE-TIME end in another zone must not lose the last day).
            (Some(end), _) if ctx.all_day => all_day_length(ev.start.wall.date(), end),
            (None, Some(d)) if ctx.all_day => whole_days(d),
            (Some(end), _) => {
                let same = match (&ev.start.anchor, &end.anchor) {
                    (a, b) if a == b => true,
                    (Anchor::Date, _) | (_, Anchor::Date) => true,
                    (Anchor::Floating, Anchor::Unknown(_))
                    | (Anchor::Unknown(_), Anchor::Floating) => true,
                    _ => false,
                };
                if same {
                    ctx.wall(end) - start_wall
                } else {
                    ctx.instant_of(end) - ctx.instant(&start_wall, false)
                }
            }
            (None, Some(d)) => d,
            (None, None) if ctx.all_day => Duration::days(1),
            (None, None) => Duration::zero(),
        };
        if duration < Duration::zero() {
            diags.push(Some(ev.line), || {
                "the event ends before it starts; read it with start and end swapped".into()
            });
        }
        ctx.duration = clamp_duration(duration);
        ctx
    }

    /// A value as a wall-clock time in the expansion zone.
    fn wall(&self, w: &When) -> NaiveDateTime {
        match &w.anchor {
            Anchor::Date | Anchor::Floating | Anchor::Unknown(_) => w.wall,
            Anchor::Utc => self.zone.to_local(w.wall.and_utc()),
            Anchor::Zoned(z) if *z == self.zone => w.wall,
            Anchor::Zoned(z) => self.zone.to_local(z.to_utc(w.wall)),
        }
    }

    /// The instant a RECURRENCE-ID names: its own zone's reading, local
    /// midnight for a DATE.
    fn rid_instant(&self, rid: &When) -> DateTime<Utc> {
        self.instant_of(rid)
    }

    /// A value's own instant, whatever zone it names.
    fn instant_of(&self, w: &When) -> DateTime<Utc> {
        match &w.anchor {
            Anchor::Date => self
                .user_zone
                .to_utc(w.wall.date().and_time(NaiveTime::MIN)),
            Anchor::Floating | Anchor::Unknown(_) => self.zone.to_utc(w.wall),
            Anchor::Utc => w.wall.and_utc(),
            Anchor::Zoned(z) => z.to_utc(w.wall),
        }
    }

    /// A wall time of this series as an instant.
    fn instant(&self, wall: &NaiveDateTime, date: bool) -> DateTime<Utc> {
        if date || self.all_day {
            self.user_zone.to_utc(wall.date().and_time(NaiveTime::MIN))
        } else {
            self.zone.to_utc(*wall)
        }
    }

    /// Start and end instants of an instance starting at `wall`.
    fn span(
        &self,
        wall: NaiveDateTime,
        duration: Option<Duration>,
    ) -> (DateTime<Utc>, DateTime<Utc>) {
        let d = duration.unwrap_or(self.duration);
        let a = self.instant(&wall, false);
        let b = self.instant(&(wall + d), false);
        (a.min(b), a.max(b))
    }

    /// An event read on its own (a non-recurring event or an override).
    fn single(
        &self,
        ev: &Event,
        recurrence_id: Option<DateTime<Utc>>,
        fallback_duration: Option<Duration>,
        window: Window,
    ) -> Option<Occurrence> {
        let wall = self.wall(&ev.start);
        let duration = if ev.end.is_none() && ev.duration.is_none() {
            fallback_duration
        } else {
            None
        };
        let (start, end) = self.span(wall, duration);
        overlaps(start, end, window).then(|| Occurrence {
            uid: ev.uid.clone(),
            uid_given: ev.uid_given,
            recurrence_id,
            start,
            end,
            all_day: self.all_day,
            details: ev.details.clone(),
        })
    }
}

/// The longest duration an event may claim (files do contain `P99999999W`);
/// keeps all wall-clock arithmetic far from chrono's limits.
pub const MAX_EVENT_DURATION_DAYS: i64 = 366 * 100;

/// The length of an all-day span from `start` to `end`: `end`'s date as
/// written, the next day if it has a time of day (as RDATE, EXDATE and
/// UNTIL of an all-day series are read).
fn all_day_length(start: NaiveDate, end: &When) -> Duration {
    let mut days = (end.wall.date() - start).num_days();
    if !end.is_date() && end.wall.time() != NaiveTime::MIN {
        days += 1;
    }
    Duration::try_days(days).unwrap_or(Duration::MAX)
}

/// A duration rounded up (away from zero) to whole days.
fn whole_days(d: Duration) -> Duration {
    let n = d.num_days();
    let n = match (d - Duration::days(n)).cmp(&Duration::zero()) {
        std::cmp::Ordering::Greater => n + 1,
        std::cmp::Ordering::Less => n - 1,
        std::cmp::Ordering::Equal => n,
    };
    Duration::try_days(n).unwrap_or(Duration::MAX)
}

fn clamp_duration(d: Duration) -> Duration {
    let max = Duration::days(MAX_EVENT_DURATION_DAYS);
    d.clamp(-max, max)
}

fn overlaps(start: DateTime<Utc>, end: DateTime<Utc>, w: Window) -> bool {
    if start == end {
        start >= w.from && start < w.to
    } else {
        start < w.to && end > w.from
    }
}

/// One calendar's expansion: its inputs, what is left of its work budget
/// (recurrence instances), and what it has produced so far.
struct Run<'a> {
    cal: &'a Calendar,
    user_zone: &'a Zone,
    window: Window,
    budget: usize,
    out: Vec<Occurrence>,
    diags: Diags,
}

/// Where one series is expanded: its first start (wall clock, expansion
/// zone), the wall-clock range `[lo, hi]` in which an instance start could
/// reach `window`, and the window itself (for the per-event cap).
struct Reach {
    dtstart: NaiveDateTime,
    lo: NaiveDateTime,
    hi: NaiveDateTime,
    window: Window,
}

impl Reach {
    /// The reach of the series read through `ctx`, for `window`.
    fn of(ctx: &Ctx<'_>, master: &Event, window: Window) -> Reach {
        let longest = ctx.duration.abs();
        Reach {
            dtstart: ctx.wall(&master.start),
            lo: ctx.zone.to_local(window.from) - longest - Duration::days(2),
            hi: ctx.zone.to_local(window.to) + Duration::days(2),
            window,
        }
    }
}

/// Expands one series (a master and its overrides) into `run.out`.
fn expand_series(run: &mut Run<'_>, master: &Event, ovs: &[&Event]) {
    let ctx = Ctx::new(master, run.cal, run.user_zone, &mut run.diags);
    let recurring = !master.rrules.is_empty() || !master.rdates.is_empty();
    let ovs = latest_overrides(ovs);
    if !recurring && ovs.is_empty() {
        run.out.extend(ctx.single(master, None, None, run.window));
        return;
    }
    let reach = Reach::of(&ctx, master, run.window);
    let ovs = drop_stale(run, master, ovs, &ctx, reach.dtstart);
    let (mut instances, mut cut) = series_walls(run, master, &ctx, &reach);
    let ex = Exclusions::of(master, &ctx);
    instances.retain(|w, _| !ex.hides(w));
    let ovs: Vec<&Event> = ovs
        .into_iter()
        .filter(|ov| {
            ov.recurrence_id
                .as_ref()
                .is_none_or(|(rid, _)| !ex.hides_rid(&ctx, rid))
        })
        .collect();
    let moved = Moved::of(&ovs, &ctx, run.cal, run.user_zone);
    cut |= emit_instances(run, master, &ctx, &instances, &moved);
    if cut {
        run.diags.push(Some(master.line), || format!(
            "{} has more than {MAX_OCCURRENCES_PER_EVENT} occurrences in the window; kept the first {MAX_OCCURRENCES_PER_EVENT}",
            who(master)
        ));
    }
    // The overrides themselves, wherever they moved to.
    for ov in ovs {
        let Some((rid, _)) = &ov.recurrence_id else {
            continue;
        };
        let octx = Ctx::new(ov, run.cal, run.user_zone, &mut run.diags);
        let rid_instant = ctx.rid_instant(rid);
        run.out
            .extend(octx.single(ov, Some(rid_instant), Some(ctx.duration), run.window));
    }
}

/// The series' instance starts that can reach the window (DTSTART, each
/// distinct RRULE, RDATEs), each with its own duration when an RDATE period
/// gives one; and whether the per-event cap cut a rule short.
fn series_walls(
    run: &mut Run<'_>,
    master: &Event,
    ctx: &Ctx<'_>,
    reach: &Reach,
) -> (BTreeMap<NaiveDateTime, Option<Duration>>, bool) {
    let mut instances: BTreeMap<NaiveDateTime, Option<Duration>> = BTreeMap::new();
    let mut cut = false;
    let mut empty_series = false;
    if reach.dtstart >= reach.lo && reach.dtstart <= reach.hi {
        instances.insert(reach.dtstart, None);
    }
    let mut seen_rules = HashSet::default();
    for rule in master
        .rrules
        .iter()
        .filter(|r| seen_rules.insert(r.as_str()))
    {
        match rule_instances(rule, reach, ctx, master, &mut run.budget) {
            Ok(found) => {
                if let Some(msg) = found.note {
                    run.diags.push(Some(master.line), || msg);
                }
                cut |= found.full;
                for w in found.walls {
                    instances.entry(w).or_insert(None);
                }
            }
            Err(msg) if msg == UNTIL_BEFORE_START => {
                // Nothing at all, not even DTSTART or RDATEs (as the reference does).
                run.diags.push(Some(master.line), || {
                    format!(
                        "{}: the RRULE's UNTIL is before DTSTART; the series has no occurrences",
                        who(master)
                    )
                });
                instances.clear();
                empty_series = true;
            }
            Err(msg) => run.diags.push(Some(master.line), || {
                if master.details.private {
                    format!("ignored an unreadable RRULE of {}", who(master))
                } else {
                    format!("ignored the RRULE {rule:?} of {:?}: {msg}", master.uid)
                }
            }),
        }
    }
    if !empty_series {
        add_rdates(master, ctx, reach, &mut instances);
    }
    (instances, cut)
}

/// Adds the RDATEs that can reach the window; an RDATE period sets that
/// instance's duration.
fn add_rdates(
    master: &Event,
    ctx: &Ctx<'_>,
    reach: &Reach,
    instances: &mut BTreeMap<NaiveDateTime, Option<Duration>>,
) {
    for rd in &master.rdates {
        let w = if ctx.all_day && !rd.start.is_date() {
            rd.start.wall.date().and_time(NaiveTime::MIN)
        } else {
            ctx.wall(&rd.start)
        };
        if w < reach.lo || w > reach.hi {
            continue;
        }
        let d = match (&rd.end, rd.duration) {
            (Some(e), _) if ctx.all_day => Some(clamp_duration(all_day_length(w.date(), e))),
            (None, Some(d)) if ctx.all_day => Some(clamp_duration(whole_days(d))),
            (Some(e), _) => Some(clamp_duration(ctx.wall(e) - w)),
            (None, Some(d)) => Some(clamp_duration(d)),
            _ => None,
        };
        let slot = instances.entry(w).or_insert(None);
        if d.is_some() {
            *slot = d;
        }
    }
}

/// EXDATEs: exact wall times, or whole days when DATE-valued (or the
/// series is all-day).
struct Exclusions {
    walls: HashSet<NaiveDateTime>,
    days: HashSet<NaiveDate>,
}

impl Exclusions {
    /// The master's EXDATEs read through `ctx`.
    fn of(master: &Event, ctx: &Ctx<'_>) -> Exclusions {
        let mut ex = Exclusions {
            walls: HashSet::default(),
            days: HashSet::default(),
        };
        for d in &master.exdates {
            if d.is_date() || ctx.all_day {
                // An all-day series matches on the day as written (Exchange
                // writes DATE-TIME exclusions in its own zone).
                ex.days.insert(d.wall.date());
            } else {
                // Matched by instant, or (as the reference does) by the wall
                // time as written, whatever its zone.
                ex.walls.insert(ctx.wall(d));
                ex.walls.insert(d.wall);
            }
        }
        ex
    }

    /// Whether the instance starting at `w` is excluded.
    fn hides(&self, w: &NaiveDateTime) -> bool {
        self.walls.contains(w) || self.days.contains(&w.date())
    }

    /// Whether the instance an override's RECURRENCE-ID names is excluded
    /// (then the override is dropped too).
    fn hides_rid(&self, ctx: &Ctx<'_>, rid: &When) -> bool {
        let w = if ctx.all_day { rid.wall } else { ctx.wall(rid) };
        if ctx.all_day || rid.is_date() {
            self.days.contains(&w.date())
        } else {
            self.walls.contains(&w)
                || self.walls.contains(&rid.wall)
                || self.days.contains(&w.date())
        }
    }
}

/// The overrides, keyed by the wall time of the instance they replace:
/// single instances (by wall time, and by day for DATE values) and
/// THISANDFUTURE ones (sorted, each with its own reading of times).
struct Moved<'e, 'z> {
    single: HashMap<NaiveDateTime, &'e Event>,
    single_days: HashMap<NaiveDate, &'e Event>,
    future: Vec<(NaiveDateTime, &'e Event, Ctx<'z>)>,
}

impl<'e, 'z> Moved<'e, 'z> {
    /// Sorts `ovs` (already filtered) by what they replace.
    fn of(ovs: &[&'e Event], ctx: &Ctx<'_>, cal: &Calendar, user_zone: &'z Zone) -> Self {
        let mut moved = Moved {
            single: HashMap::default(),
            single_days: HashMap::default(),
            future: Vec::new(),
        };
        for ov in ovs {
            let Some((rid, range)) = &ov.recurrence_id else {
                continue;
            };
            let w = if ctx.all_day { rid.wall } else { ctx.wall(rid) };
            if *range {
                let fctx = Ctx::new(ov, cal, user_zone, &mut Diags::default());
                moved.future.push((w, ov, fctx));
            } else {
                if ctx.all_day || rid.is_date() {
                    moved.single_days.insert(w.date(), ov);
                }
                moved.single.insert(w, ov);
            }
        }
        moved.future.sort_by_key(|f| f.0);
        moved
    }

    /// Whether a single-instance override replaces the instance at `w`.
    fn replaces(&self, ctx: &Ctx<'_>, w: &NaiveDateTime) -> bool {
        self.single.contains_key(w) || (ctx.all_day && self.single_days.contains_key(&w.date()))
    }

    /// The latest THISANDFUTURE override at or before `w`.
    fn future_at(&self, w: &NaiveDateTime) -> Option<&(NaiveDateTime, &'e Event, Ctx<'z>)> {
        self.future.iter().rev().find(|(fw, _, _)| fw <= w)
    }
}

/// Pushes the instances that overlap the window (those not replaced by an
/// override; moved by a THISANDFUTURE override where one applies), at most
/// [`MAX_OCCURRENCES_PER_EVENT`]; true when that cap cut them short.
fn emit_instances(
    run: &mut Run<'_>,
    master: &Event,
    ctx: &Ctx<'_>,
    instances: &BTreeMap<NaiveDateTime, Option<Duration>>,
    moved: &Moved<'_, '_>,
) -> bool {
    let mut count = 0usize;
    for (w, &own) in instances {
        if moved.replaces(ctx, w) {
            continue;
        }
        let (start, end, all_day, details) = match moved.future_at(w) {
            // The override itself is emitted with the others.
            Some((fw, _, _)) if fw == w => continue,
            Some((fw, fov, fctx)) => {
                let shift = fctx.wall(&fov.start) - *fw;
                let (start, end) = fctx.span(*w + shift, None);
                (start, end, fctx.all_day, &fov.details)
            }
            None => {
                let (start, end) = ctx.span(*w, own);
                (start, end, ctx.all_day, &master.details)
            }
        };
        if !overlaps(start, end, run.window) {
            continue;
        }
        if count == MAX_OCCURRENCES_PER_EVENT {
            return true;
        }
        count += 1;
        run.out.push(Occurrence {
            uid: master.uid.clone(),
            uid_given: master.uid_given,
            recurrence_id: Some(ctx.instant(w, false)),
            start,
            end,
            all_day,
            details: details.clone(),
        });
    }
    false
}

/// Drops stale exceptions: an override with a lower SEQUENCE than its
/// master whose RECURRENCE-ID is not an instance of the series as it is now
/// (RRULE, RDATE and DTSTART; EXDATE does not matter) is a leftover from
/// before the series was edited, and Outlook drops it too. An override with
/// a lower SEQUENCE whose RECURRENCE-ID is still an instance is kept
/// (Outlook often doesn't bump exception sequences), and so is one whose
/// SEQUENCE is not lower. Only overrides that would show in the window (or
/// move later instances, THISANDFUTURE) are checked; when the check is cut
/// short by a bound on work, the override is kept and that is reported.
fn drop_stale<'e>(
    run: &mut Run<'_>,
    master: &Event,
    ovs: Vec<&'e Event>,
    ctx: &Ctx<'_>,
    dtstart: NaiveDateTime,
) -> Vec<&'e Event> {
    let mut kept = Vec::with_capacity(ovs.len());
    for ov in ovs {
        let Some((rid, range)) = &ov.recurrence_id else {
            kept.push(ov);
            continue;
        };
        let shows = *range || {
            let octx = Ctx::new(ov, run.cal, run.user_zone, &mut Diags::default());
            octx.single(ov, None, Some(ctx.duration), run.window)
                .is_some()
        };
        if ov.sequence >= master.sequence || !shows {
            kept.push(ov);
            continue;
        }
        match is_instance(master, ctx, dtstart, rid, &mut run.budget) {
            Ok(true) => kept.push(ov),
            Ok(false) => run.diags.push(Some(ov.line), || {
                let at = if master.details.private || ov.details.private {
                    String::new()
                } else {
                    format!(" {}", rid.wall.format("%Y-%m-%d %H:%M:%S"))
                };
                format!(
                    "dropped a stale exception of {}: its RECURRENCE-ID{at} is no longer an instance of the series, and its SEQUENCE {} is lower than the series' {}",
                    who(master),
                    ov.sequence,
                    master.sequence
                )
            }),
            Err(note) => {
                run.diags.push(Some(ov.line), || {
                    format!("could not check whether an exception of {} is stale: {note}", who(master))
                });
                kept.push(ov);
            }
        }
    }
    kept
}

/// Whether `rid` names an instance of the master's series (RRULE, RDATE,
/// DTSTART; EXDATE ignored), matched as overrides are matched (by instant or
/// by wall time as written; by day for all-day series and DATE values).
/// Expands only around `rid`, under the calendar's budget; `Err` when a
/// bound cut the search before it could tell.
fn is_instance(
    master: &Event,
    ctx: &Ctx<'_>,
    dtstart: NaiveDateTime,
    rid: &When,
    budget: &mut usize,
) -> Result<bool, String> {
    let w = if ctx.all_day { rid.wall } else { ctx.wall(rid) };
    let by_day = ctx.all_day || rid.is_date();
    let matches = |x: &NaiveDateTime| *x == w || *x == rid.wall || (by_day && x.date() == w.date());
    if matches(&dtstart) {
        return Ok(true);
    }
    for rd in &master.rdates {
        let x = if ctx.all_day && !rd.start.is_date() {
            rd.start.wall.date().and_time(NaiveTime::MIN)
        } else {
            ctx.wall(&rd.start)
        };
        if matches(&x) {
            return Ok(true);
        }
    }
    let reach = Reach {
        dtstart,
        lo: w.min(rid.wall) - Duration::days(2),
        hi: w.max(rid.wall) + Duration::days(2),
        // Nothing overlaps an empty window: no instance counts towards a cap.
        window: Window {
            from: DateTime::<Utc>::MIN_UTC,
            to: DateTime::<Utc>::MIN_UTC,
        },
    };
    let mut seen_rules = HashSet::default();
    for rule in master
        .rrules
        .iter()
        .filter(|r| seen_rules.insert(r.as_str()))
    {
        // An unreadable rule (reported by the expansion) has no instances.
        let Ok(found) = rule_instances(rule, &reach, ctx, master, budget) else {
            continue;
        };
        if found.walls.iter().any(matches) {
            return Ok(true);
        }
        if found.cut_short {
            return Err(found.note.unwrap_or_default());
        }
    }
    Ok(false)
}

/// Parses an RRULE value into the `rrule` crate's typed rule.
fn build_rule(
    s: &str,
    ctx: &Ctx<'_>,
    master: &Event,
) -> Result<(RRule<Unvalidated>, Option<i64>, bool), String> {
    let mut rule: Option<RRule<Unvalidated>> = None;
    let mut parts: Vec<(String, String)> = Vec::new();
    for part in s.split(';').filter(|p| !p.trim().is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not KEY=VALUE"))?;
        let k = k.trim().to_ascii_uppercase();
        if k == "FREQ" {
            rule = Some(RRule::new(frequency(v)?));
        } else {
            parts.push((k, v.trim().to_string()));
        }
    }
    let mut rule = rule.ok_or("no FREQ")?;
    let mut count = None;
    let mut has_until = false;
    for (k, v) in parts {
        rule = match k.as_str() {
            "INTERVAL" => rule.interval(
                v.parse::<u16>()
                    .map_err(|_| format!("bad INTERVAL {v:?}"))?
                    .max(1),
            ),
            "COUNT" => {
                count = Some(v.parse::<i64>().map_err(|_| format!("bad COUNT {v:?}"))?);
                rule
            }
            "UNTIL" => {
                has_until = true;
                rule.until(until(&v, ctx, master)?)
            }
            "BYDAY" => rule.by_weekday(by_day(&v)?),
            "BYMONTHDAY" => rule.by_month_day(nums(&v, &k)?),
            "BYMONTH" => {
                let months: Vec<u8> = nums(&v, &k)?;
                let months = months
                    .into_iter()
                    .map(|m| chrono::Month::try_from(m).map_err(|_| format!("bad BYMONTH {m}")))
                    .collect::<Result<Vec<_>, _>>()?;
                rule.by_month(&months)
            }
            "BYYEARDAY" => rule.by_year_day(nums(&v, &k)?),
            "BYWEEKNO" => rule.by_week_no(nums(&v, &k)?),
            "BYHOUR" => rule.by_hour(nums(&v, &k)?),
            "BYMINUTE" => rule.by_minute(nums(&v, &k)?),
            "BYSECOND" => rule.by_second(nums(&v, &k)?),
            "BYSETPOS" => rule.by_set_pos(nums(&v, &k)?),
            "WKST" => match parse_nth_weekday(&v) {
                Some((0, wd)) => rule.week_start(wd),
                _ => return Err(format!("bad WKST {v:?}")),
            },
            _ => rule, // X- parts and unknown extensions are ignored
        };
    }
    Ok((rule, count, has_until))
}

/// An RRULE's FREQ.
fn frequency(v: &str) -> Result<Frequency, String> {
    Ok(match v.trim().to_ascii_uppercase().as_str() {
        "YEARLY" => Frequency::Yearly,
        "MONTHLY" => Frequency::Monthly,
        "WEEKLY" => Frequency::Weekly,
        "DAILY" => Frequency::Daily,
        "HOURLY" => Frequency::Hourly,
        "MINUTELY" => Frequency::Minutely,
        "SECONDLY" => Frequency::Secondly,
        other => return Err(format!("unknown FREQ {other:?}")),
    })
}

/// A comma-separated list of numbers (a leading `+` allowed).
fn nums<T: std::str::FromStr>(v: &str, key: &str) -> Result<Vec<T>, String> {
    v.split(',')
        .filter(|x| !x.trim().is_empty())
        .map(|x| {
            x.trim()
                .trim_start_matches('+')
                .parse::<T>()
                .map_err(|_| format!("bad {key} value {x:?}"))
        })
        .collect()
}

/// An RRULE's UNTIL as a wall time of the series (carried as UTC).
fn until(v: &str, ctx: &Ctx<'_>, master: &Event) -> Result<DateTime<rrule::Tz>, String> {
    let (w, utc) = parse_wall(v).ok_or_else(|| format!("bad UNTIL {v:?}"))?;
    let zoned = matches!(master.start.anchor, Anchor::Zoned(_) | Anchor::Utc);
    let wall = if !utc && !ctx.all_day && zoned {
        // A DATE or floating UNTIL on a zoned series: read both as
        // local and as UTC, the earlier wins (as the reference does).
        w.min(ctx.zone.to_local(w.and_utc()))
    } else if utc && !ctx.all_day {
        ctx.zone.to_local(w.and_utc())
    } else if ctx.all_day {
        // An all-day series runs through UNTIL's date as written.
        w.date().and_time(NaiveTime::MIN)
    } else {
        w
    };
    Ok(rrule::Tz::UTC.from_utc_datetime(&wall))
}

/// An RRULE's BYDAY list (`MO`, `-1FR`, `+2TU`; ordinals up to 53).
fn by_day(v: &str) -> Result<Vec<NWeekday>, String> {
    v.split(',')
        .filter(|x| !x.trim().is_empty())
        .map(|x| {
            parse_nth_weekday(x)
                .filter(|(n, _)| n.abs() <= 53)
                .map(|(n, wd)| {
                    if n == 0 {
                        NWeekday::Every(wd)
                    } else {
                        NWeekday::Nth(n as i16, wd)
                    }
                })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("bad BYDAY {v:?}"))
}

/// What [`rule_instances`] found.
struct Found {
    /// Instance starts (wall) within `[lo, hi]`.
    walls: Vec<NaiveDateTime>,
    /// Something to report (a bound cut the search, the rule matches nothing).
    note: Option<String>,
    /// Stopped because more than [`MAX_OCCURRENCES_PER_EVENT`] instances
    /// overlap the window (instances before the window never count).
    full: bool,
    /// Stopped before `hi` by a bound on work: `walls` may miss instances.
    cut_short: bool,
}

/// The rule's instances within `[reach.lo, reach.hi]`.
fn rule_instances(
    s: &str,
    reach: &Reach,
    ctx: &Ctx<'_>,
    master: &Event,
    budget: &mut usize,
) -> Result<Found, String> {
    let mut found = Found {
        walls: Vec::new(),
        note: None,
        full: false,
        cut_short: false,
    };
    if *budget == 0 {
        found.note = Some(format!(
            "{} was not expanded: the calendar's recurrences exceed {MAX_ITERATIONS_PER_CALENDAR} instances in all",
            who(master)
        ));
        found.cut_short = true;
        return Ok(found);
    }
    let (rule, count, _) = build_rule(s, ctx, master)?;
    if count == Some(0) {
        return Ok(found);
    }
    // A negative COUNT is ignored (the series is open-ended), as the reference does.
    let count = count.filter(|c| *c > 0);
    // UNTIL before DTSTART: the series is empty (checked on the original
    // start, before any shift below).
    if let Some(until) = rule.get_until()
        && until.naive_utc() < reach.dtstart
    {
        return Err(UNTIL_BEFORE_START.into());
    }
    // Pin the BYxxx defaults to the original DTSTART before any shift.
    let rule = pin_defaults(rule, reach.dtstart);
    let (start, skipped) = fast_forward(&rule, count, reach);
    let rule = match count {
        // Every instance is before the shifted start, so before `lo`.
        Some(c) if c <= skipped => return Ok(found),
        Some(c) => rule.count(u32::try_from(c - skipped).unwrap_or(u32::MAX)),
        None => rule,
    };
    let open_ended = count.is_none() && rule.get_until().is_none();
    // Ended before `lo`: no instance to find (the rule is still checked).
    let ended = rule.get_until().is_some_and(|u| u.naive_utc() < reach.lo);
    let carrier = rrule::Tz::UTC.from_utc_datetime(&start);
    let from_end = days_from_the_end(&rule);
    let valid = match rule.validate(carrier) {
        Ok(_) if ended => return Ok(found),
        Ok(valid) => valid,
        Err(e) => return Err(e.to_string()),
    };
    let walker = Walker {
        s,
        reach,
        ctx,
        master,
    };
    if let Some(p) = Periodic::of(&valid, start) {
        return Ok(walker.walk(p, open_ended, budget));
    }
    if let Some(m) = Monthly::of(&valid, &from_end, start) {
        return Ok(walker.walk(m, open_ended, budget));
    }
    let set = RRuleSet::new(carrier).rrule(valid).limit();
    Ok(walker.walk(set.into_iter().map(|t| t.naive_utc()), open_ended, budget))
}

/// The instances of a rule [`per_period`] accepts (DAILY without day
/// filters, WEEKLY on plain weekdays, one time of day), walked here: every
/// period holds the same days, so the next instance is a table lookup
/// instead of the `rrule` crate's per-period day sets (most of the cost of
/// a typical calendar's recurrences). Same instances as `rrule` from the
/// same start, COUNT and UNTIL (held equal by the tests); any other rule
/// goes to `rrule`.
struct Periodic {
    /// The first day of the current period: the start's date (DAILY) or
    /// the WKST day on or before it (WEEKLY).
    period: NaiveDate,
    /// The instance days of every period, as days after its first day,
    /// ascending.
    offsets: [u8; 7],
    len: usize,
    /// The next entry of `offsets` to look at.
    next: usize,
    /// Days from one period to the next (INTERVAL, or 7 × INTERVAL).
    step: u64,
    bounds: Bounds,
}

/// What the walkers of [`Periodic`] and [`Monthly`] share: the rule's one
/// time of day, the walk's start, UNTIL and COUNT.
struct Bounds {
    /// The time of day of every instance.
    time: NaiveTime,
    /// Nothing before this (the walk's start) is an instance.
    start: NaiveDateTime,
    until: Option<NaiveDateTime>,
    /// Instances still to give under COUNT.
    left: Option<u32>,
}

/// What a walker does with a day of the rule: skip it (before the walk's
/// start), stop (past UNTIL), or give its instance.
enum Step {
    Skip,
    Stop,
    Give(NaiveDateTime),
}

impl Bounds {
    /// A rule's bounds, when it has one time of day (defaults pinned).
    fn of(rule: &RRule<rrule::Validated>, start: NaiveDateTime) -> Option<Bounds> {
        let time = match (
            rule.get_by_hour(),
            rule.get_by_minute(),
            rule.get_by_second(),
        ) {
            ([h], [m], [s]) => NaiveTime::from_hms_opt((*h).into(), (*m).into(), (*s).into())?,
            _ => return None,
        };
        Some(Bounds {
            time,
            start,
            until: rule.get_until().map(|u| u.naive_utc()),
            left: rule.get_count(),
        })
    }

    /// COUNT is used up, or UNTIL passed.
    fn ended(&self) -> bool {
        self.left == Some(0)
    }

    /// The instance on `day`, counted.
    fn step(&mut self, day: NaiveDate) -> Step {
        let t = day.and_time(self.time);
        if t < self.start {
            return Step::Skip;
        }
        if self.until.is_some_and(|u| t > u) {
            self.left = Some(0);
            return Step::Stop;
        }
        if let Some(n) = &mut self.left {
            *n -= 1;
        }
        Step::Give(t)
    }
}

impl Periodic {
    fn of(rule: &RRule<rrule::Validated>, start: NaiveDateTime) -> Option<Periodic> {
        use chrono::Datelike;
        per_period(rule)?;
        let bounds = Bounds::of(rule, start)?;
        let interval = u64::from(rule.get_interval().max(1));
        let mut offsets = [0u8; 7];
        let mut len = 0;
        let (period, step) = match rule.get_freq() {
            Frequency::Daily => {
                len = 1;
                (start.date(), interval)
            }
            Frequency::Weekly => {
                let wkst = rule.get_week_start().num_days_from_monday();
                let from_wkst = |d: chrono::Weekday| (7 + d.num_days_from_monday() - wkst) % 7;
                for d in rule.get_by_weekday() {
                    let NWeekday::Every(wd) = d else { return None };
                    let off = from_wkst(*wd) as u8;
                    if !offsets[..len].contains(&off) {
                        offsets[len] = off;
                        len += 1;
                    }
                }
                offsets[..len].sort_unstable();
                let back = u64::from(from_wkst(start.weekday()));
                (
                    start.date().checked_sub_days(chrono::Days::new(back))?,
                    7 * interval,
                )
            }
            _ => return None,
        };
        Some(Periodic {
            period,
            offsets,
            len,
            next: 0,
            step,
            bounds,
        })
    }
}

impl Iterator for Periodic {
    type Item = NaiveDateTime;

    fn next(&mut self) -> Option<NaiveDateTime> {
        while !self.bounds.ended() {
            if self.next == self.len {
                self.period = self.period.checked_add_days(chrono::Days::new(self.step))?;
                self.next = 0;
            }
            let day = self
                .period
                .checked_add_days(chrono::Days::new(self.offsets[self.next].into()))?;
            self.next += 1;
            match self.bounds.step(day) {
                Step::Skip => continue,
                Step::Stop => return None,
                Step::Give(t) => return Some(t),
            }
        }
        None
    }
}

/// The instances of a MONTHLY rule whose every month holds some, walked
/// here: days of the month (BYMONTHDAY within ±28, which every month has)
/// or weekdays (BYDAY, every one or the ±1st to ±4th, which every month
/// has), not both; one time of day; no other BYxxx. Each month's instance
/// days are a bit set computed from its length and first weekday, instead
/// of `rrule`'s iterator (set up, then month sets built, for every series:
/// ~25,000 instructions). Same instances as `rrule` from the same start,
/// COUNT and UNTIL (held equal by the tests); any other rule goes to
/// `rrule`.
struct Monthly {
    /// The current month, as months since year 0.
    month: i64,
    /// Months from one period to the next (INTERVAL).
    step: i64,
    /// The current month's instance days not given yet (bit `d` for day `d`).
    days: u32,
    /// BYMONTHDAY (±1 to ±28).
    month_days: Vec<i8>,
    /// BYDAY (0 for every such weekday of the month, else ±1 to ±4).
    weekdays: Vec<(i8, chrono::Weekday)>,
    bounds: Bounds,
}

/// A rule's BYMONTHDAY days counted from the end of the month (negative):
/// `rrule` keeps them apart, out of sight, once the rule is validated.
fn days_from_the_end(rule: &RRule<Unvalidated>) -> Vec<i8> {
    rule.get_by_month_day()
        .iter()
        .filter(|d| **d < 0)
        .copied()
        .collect()
}

impl Monthly {
    /// `from_end`: the rule's negative BYMONTHDAY days, as written
    /// ([`days_from_the_end`]).
    fn of(
        rule: &RRule<rrule::Validated>,
        from_end: &[i8],
        start: NaiveDateTime,
    ) -> Option<Monthly> {
        let other_filters = !rule.get_by_month().is_empty()
            || !rule.get_by_year_day().is_empty()
            || !rule.get_by_week_no().is_empty()
            || !rule.get_by_set_pos().is_empty();
        if rule.get_freq() != Frequency::Monthly || other_filters {
            return None;
        }
        let bounds = Bounds::of(rule, start)?;
        let mut month_days = rule.get_by_month_day().to_vec();
        month_days.extend_from_slice(from_end);
        let mut weekdays = Vec::with_capacity(rule.get_by_weekday().len());
        for d in rule.get_by_weekday() {
            weekdays.push(match *d {
                NWeekday::Every(wd) => (0, wd),
                NWeekday::Nth(n, wd) if n != 0 && (-4..=4).contains(&n) => (n as i8, wd),
                NWeekday::Nth(..) => return None,
            });
        }
        let every_month = month_days.iter().all(|d| *d != 0 && (-28..=28).contains(d));
        // Plain and numbered weekdays together filter each other in
        // `rrule` (as in dateutil: SA,-1SA is the last Saturday only).
        let mixed = weekdays.iter().any(|w| w.0 == 0) && weekdays.iter().any(|w| w.0 != 0);
        if !every_month || mixed || month_days.is_empty() == weekdays.is_empty() {
            return None;
        }
        let mut m = Monthly {
            month: month_index(start.date()),
            step: i64::from(rule.get_interval().max(1)),
            days: 0,
            month_days,
            weekdays,
            bounds,
        };
        m.days = m.days_of(m.month)?;
        Some(m)
    }

    /// The instance days of `month`, as bits.
    fn days_of(&self, month: i64) -> Option<u32> {
        use chrono::Datelike;
        let first = first_of_month(month)?;
        let len = first_of_month(month + 1)?
            .signed_duration_since(first)
            .num_days() as i32;
        let first_weekday = first.weekday().num_days_from_monday() as i32;
        let mut days = 0u32;
        for &d in &self.month_days {
            let d = i32::from(d);
            days |= 1 << if d > 0 { d } else { len + 1 + d };
        }
        for &(n, wd) in &self.weekdays {
            // The first day of the month that is `wd`, then every 7 days.
            // (Every month has at least four of each weekday.)
            let first_wd = 1 + (wd.num_days_from_monday() as i32 - first_weekday).rem_euclid(7);
            let last_wd = first_wd + 7 * ((len - first_wd) / 7);
            match i32::from(n) {
                0 => (first_wd..=len).step_by(7).for_each(|d| days |= 1 << d),
                n if n > 0 => days |= 1 << (first_wd + 7 * (n - 1)),
                n => days |= 1 << (last_wd + 7 * (n + 1)),
            }
        }
        Some(days)
    }
}

impl Iterator for Monthly {
    type Item = NaiveDateTime;

    fn next(&mut self) -> Option<NaiveDateTime> {
        use chrono::Datelike;
        while !self.bounds.ended() {
            // Every month holds an instance (`of`), so this ends.
            while self.days == 0 {
                self.month += self.step;
                self.days = self.days_of(self.month)?;
            }
            let day = self.days.trailing_zeros();
            self.days &= self.days - 1;
            match self.bounds.step(first_of_month(self.month)?.with_day(day)?) {
                Step::Skip => continue,
                Step::Stop => return None,
                Step::Give(t) => return Some(t),
            }
        }
        None
    }
}

/// Where a daily-or-finer series may start instead of DTSTART: shifting it
/// by whole periods keeps every later instance. With COUNT, only where
/// every period from DTSTART holds the same number of instances, which are
/// then taken off COUNT. Returns the start and the instances skipped.
fn fast_forward(
    rule: &RRule<Unvalidated>,
    count: Option<i64>,
    reach: &Reach,
) -> (NaiveDateTime, i64) {
    let per_period = per_period(rule);
    let unchanged = (reach.dtstart, 0);
    if (count.is_some() && per_period.is_none())
        || rule.get_until().is_some_and(|u| u.naive_utc() < reach.lo)
    {
        return unchanged;
    }
    if rule.get_freq() == Frequency::Monthly {
        return match count {
            None => monthly_start(rule, reach).map_or(unchanged, |s| (s, 0)),
            Some(_) => unchanged,
        };
    }
    let unit = match rule.get_freq() {
        Frequency::Weekly => Duration::weeks(1),
        Frequency::Daily => Duration::days(1),
        Frequency::Hourly => Duration::hours(1),
        Frequency::Minutely => Duration::minutes(1),
        Frequency::Secondly => Duration::seconds(1),
        _ => return unchanged,
    };
    let period = unit * i32::from(rule.get_interval().max(1));
    let gap = reach.lo - reach.dtstart;
    if gap <= period * 2 {
        return unchanged;
    }
    let k = gap.num_seconds() / period.num_seconds().max(1) - 1;
    match i32::try_from(k)
        .ok()
        .and_then(|k32| period.checked_mul(k32))
    {
        Some(shift) => (
            reach.dtstart + shift,
            k.saturating_mul(per_period.unwrap_or(0)),
        ),
        None => unchanged,
    }
}

/// Where a MONTHLY series without COUNT may start instead of DTSTART: the
/// first day of a month a whole number of intervals later, at DTSTART's
/// time, at least one interval before the month of `reach.lo`. Which days
/// of a month are instances depends only on the month and the rule (its
/// day defaults are pinned to DTSTART by [`pin_defaults`]); the instances
/// lost in the new first month are before `reach.lo`.
fn monthly_start(rule: &RRule<Unvalidated>, reach: &Reach) -> Option<NaiveDateTime> {
    if !rule.get_by_week_no().is_empty() || !rule.get_by_year_day().is_empty() {
        return None;
    }
    let interval = i64::from(rule.get_interval().max(1));
    let k = (month_index(reach.lo.date()) - month_index(reach.dtstart.date())) / interval - 1;
    if k < 1 {
        return None;
    }
    let m = month_index(reach.dtstart.date()) + k * interval;
    Some(first_of_month(m)?.and_time(reach.dtstart.time()))
}

/// A date's month, as months since year 0.
fn month_index(d: NaiveDate) -> i64 {
    use chrono::Datelike;
    i64::from(d.year()) * 12 + i64::from(d.month0())
}

/// The first day of a month given as months since year 0.
fn first_of_month(month: i64) -> Option<NaiveDate> {
    let year = i32::try_from(month.div_euclid(12)).ok()?;
    NaiveDate::from_ymd_opt(year, u32::try_from(month.rem_euclid(12)).ok()? + 1, 1)
}

/// What a walk over a rule's instances reports against.
struct Walker<'a, 'c> {
    /// The RRULE as written.
    s: &'a str,
    reach: &'a Reach,
    ctx: &'a Ctx<'c>,
    master: &'a Event,
}

impl Walker<'_, '_> {
    /// Walks the rule's instances up to `reach.hi`, under the calendar's
    /// `budget` and the per-event bounds, saying why it stopped early.
    fn walk(
        &self,
        mut iter: impl Iterator<Item = NaiveDateTime>,
        open_ended: bool,
        budget: &mut usize,
    ) -> Found {
        let Walker {
            s,
            reach,
            ctx,
            master,
        } = *self;
        let mut found = Found {
            walls: Vec::new(),
            note: None,
            full: false,
            cut_short: false,
        };
        let mut in_window = 0usize;
        let mut i = 0usize;
        loop {
            let Some(w) = iter.next() else {
                // The iterator ended on its own. Without COUNT or UNTIL that
                // means `rrule` gave up after its own loop limit (the rule
                // matches no date it can find): that work is charged too, so
                // such rules cannot add up, and it is said.
                if open_ended {
                    *budget = budget.saturating_sub(RRULE_EMPTY_LOOP_COST);
                    found.note = Some(if master.details.private {
                        format!("an RRULE of {} matches no date; ignored it", who(master))
                    } else {
                        format!(
                            "the RRULE {s:?} of {} matches no date (the search gave up); ignored it",
                            who(master)
                        )
                    });
                }
                return found;
            };
            i += 1;
            if w > reach.hi {
                return found;
            }
            if *budget == 0 {
                found.cut_short = true;
                found.note = Some(format!(
                    "{} was cut short: the calendar's recurrences exceed {MAX_ITERATIONS_PER_CALENDAR} instances in all",
                    who(master)
                ));
                return found;
            }
            *budget -= 1;
            if i > MAX_ITERATIONS_PER_EVENT {
                found.cut_short = true;
                found.note = Some(format!(
                    "{} recurs too densely to expand ({MAX_ITERATIONS_PER_EVENT} instances before the window end); stopped there",
                    who(master)
                ));
                return found;
            }
            if w >= reach.lo {
                found.walls.push(w);
                let (a, b) = ctx.span(w, None);
                if overlaps(a, b, reach.window) {
                    in_window += 1;
                    if in_window > MAX_OCCURRENCES_PER_EVENT {
                        found.full = true;
                        return found;
                    }
                }
            }
        }
    }
}

const UNTIL_BEFORE_START: &str = "UNTIL is before DTSTART";

/// How many instances every span of one period (INTERVAL days or weeks)
/// from DTSTART holds, for the rules where that is the same for every span:
/// DAILY without day filters and WEEKLY with plain BYDAY weekdays, each
/// with at most one BYHOUR, BYMINUTE and BYSECOND (defaults pinned). A span
/// starting at DTSTART ends at the same weekday and time, so it meets each
/// of the rule's weekdays once, whatever WKST and the interval.
fn per_period<S>(rule: &RRule<S>) -> Option<i64> {
    let filtered = !rule.get_by_month().is_empty()
        || !rule.get_by_month_day().is_empty()
        || !rule.get_by_year_day().is_empty()
        || !rule.get_by_week_no().is_empty()
        || !rule.get_by_set_pos().is_empty()
        || rule.get_by_hour().len() > 1
        || rule.get_by_minute().len() > 1
        || rule.get_by_second().len() > 1;
    if filtered {
        return None;
    }
    let days = rule.get_by_weekday();
    match rule.get_freq() {
        Frequency::Daily if days.is_empty() => Some(1),
        Frequency::Weekly => {
            let mut plain: Vec<chrono::Weekday> = Vec::with_capacity(days.len());
            for d in days {
                match d {
                    NWeekday::Every(wd) if !plain.contains(wd) => plain.push(*wd),
                    _ => return None,
                }
            }
            (!plain.is_empty()).then_some(plain.len() as i64)
        }
        _ => None,
    }
}

/// What `rrule` spends, in iterations, before it gives up on a rule that
/// never matches (its `MAX_ITER_LOOP`).
const RRULE_EMPTY_LOOP_COST: usize = 100_000;

/// Makes implicit BYxxx parts explicit from the original DTSTART so that a
/// shifted carrier start cannot change them.
fn pin_defaults(rule: RRule<Unvalidated>, dtstart: NaiveDateTime) -> RRule<Unvalidated> {
    use chrono::{Datelike, Timelike};
    let no_day_filters = rule.get_by_week_no().is_empty()
        && rule.get_by_year_day().is_empty()
        && rule.get_by_month_day().is_empty()
        && rule.get_by_weekday().is_empty();
    let mut rule = rule;
    if no_day_filters && rule.get_freq() == Frequency::Weekly {
        rule = rule.by_weekday(vec![NWeekday::Every(dtstart.weekday())]);
    }
    if no_day_filters && rule.get_freq() == Frequency::Monthly {
        rule = rule.by_month_day(vec![dtstart.day() as i8]);
    }
    let freq = rule.get_freq();
    if rule.get_by_hour().is_empty() && freq < Frequency::Hourly {
        rule = rule.by_hour(vec![dtstart.hour() as u8]);
    }
    if rule.get_by_minute().is_empty() && freq < Frequency::Minutely {
        rule = rule.by_minute(vec![dtstart.minute() as u8]);
    }
    if rule.get_by_second().is_empty() && freq < Frequency::Secondly {
        rule = rule.by_second(vec![dtstart.second() as u8]);
    }
    rule
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike, Days, NaiveDate, NaiveDateTime, Weekday};

    use super::*;
    use crate::calendar::parse;

    const DAYS: [(Weekday, &str); 7] = [
        (Weekday::Mon, "MO"),
        (Weekday::Tue, "TU"),
        (Weekday::Wed, "WE"),
        (Weekday::Thu, "TH"),
        (Weekday::Fri, "FR"),
        (Weekday::Sat, "SA"),
        (Weekday::Sun, "SU"),
    ];

    /// The instance starts of a DAILY (no `days`) or WEEKLY rule with
    /// COUNT, by walking every day from DTSTART; DTSTART itself too.
    fn brute(
        start: NaiveDateTime,
        days: &[Weekday],
        interval: i64,
        wkst: Weekday,
        count: usize,
    ) -> Vec<NaiveDateTime> {
        let week_of = |d: NaiveDate| {
            let back = (7 + d.weekday().num_days_from_monday() - wkst.num_days_from_monday()) % 7;
            d - Days::new(u64::from(back))
        };
        let w0 = week_of(start.date());
        let mut out = vec![start];
        let mut n = 0;
        let mut d = start.date();
        while n < count {
            let on = if days.is_empty() {
                (d - start.date()).num_days() % interval == 0
            } else {
                (week_of(d) - w0).num_days() / 7 % interval == 0 && days.contains(&d.weekday())
            };
            if on {
                n += 1;
                let t = d.and_time(start.time());
                if !out.contains(&t) {
                    out.push(t);
                }
            }
            d = d.succ_opt().unwrap();
        }
        out.sort();
        out
    }

    /// The starts, within `window`, of a 30-minute UTC series from `start`
    /// with RRULE `rule` (expanded without a problem).
    fn starts_of(start: NaiveDateTime, rule: &str, window: Window) -> Vec<NaiveDateTime> {
        let ics = format!(
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nDTSTART:{}Z\r\nDURATION:PT30M\r\nRRULE:{rule}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            start.format("%Y%m%dT%H%M%S")
        );
        let cal = parse(&ics).unwrap();
        let (occ, diags) = expand(&cal, &Zone::Utc, window);
        assert!(diags.is_empty(), "{ics}: {diags:?}");
        occ.iter().map(|o| o.start.naive_utc()).collect()
    }

    /// `days` days from midnight UTC of `from`.
    fn days_from(from: NaiveDate, days: u64) -> Window {
        let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).unwrap().and_utc();
        Window {
            from: midnight(from),
            to: midnight(from + Days::new(days)),
        }
    }

    /// COUNT series fast-forwarded to the window keep exactly the
    /// instances of the series walked from DTSTART.
    #[test]
    fn counted_series_shifted_to_the_window_keep_their_instances() {
        let from = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let window = days_from(from, 7);
        let mut checked = 0;
        for back in [20u64, 61, 200, 401] {
            for first in 0..7u64 {
                let start = (from - Days::new(back + first))
                    .and_hms_opt(9, 30, 0)
                    .unwrap();
                for (days, label) in [
                    (vec![], ""),
                    (vec![Weekday::Mon], "MO"),
                    (vec![Weekday::Tue, Weekday::Thu], "TU,TH"),
                    (
                        vec![
                            Weekday::Mon,
                            Weekday::Tue,
                            Weekday::Wed,
                            Weekday::Thu,
                            Weekday::Fri,
                        ],
                        "MO,TU,WE,TH,FR",
                    ),
                    (vec![Weekday::Sun, Weekday::Sat], "SU,SA"),
                ] {
                    for interval in [1, 2, 3] {
                        for wkst in [Weekday::Mon, Weekday::Sun, Weekday::Wed] {
                            for count in [1, 5, back as usize / 2, back as usize, back as usize + 9]
                            {
                                let freq = if days.is_empty() { "DAILY" } else { "WEEKLY" };
                                let wk = DAYS.iter().find(|d| d.0 == wkst).unwrap().1;
                                let byday = if label.is_empty() {
                                    String::new()
                                } else {
                                    format!(";BYDAY={label}")
                                };
                                let rule = format!(
                                    "FREQ={freq}{byday};INTERVAL={interval};WKST={wk};COUNT={count}"
                                );
                                let got = starts_of(start, &rule, window);
                                let want: Vec<NaiveDateTime> =
                                    brute(start, &days, interval, wkst, count)
                                        .into_iter()
                                        .filter(|t| {
                                            overlaps(
                                                t.and_utc(),
                                                t.and_utc() + Duration::minutes(30),
                                                window,
                                            )
                                        })
                                        .collect();
                                assert_eq!(got, want, "{start} {rule}");
                                checked += usize::from(!want.is_empty());
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 300, "{checked}");
    }

    /// Numbers below `n` from a xorshift generator, for generated rules.
    fn picker(mut seed: u64) -> impl FnMut(usize) -> usize {
        move |n| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        }
    }

    /// Appends to `rule` a time of day or none, then COUNT, UNTIL (up to
    /// `days` after `start`, on an instance's time or not) or neither.
    fn add_time_and_end(
        rule: &mut String,
        start: NaiveDateTime,
        days: usize,
        pick: &mut impl FnMut(usize) -> usize,
    ) {
        match pick(4) {
            0 => *rule += &format!(";BYHOUR={};BYMINUTE=15", pick(24)),
            1 => *rule += &format!(";BYMINUTE={}", pick(60)),
            _ => {}
        }
        match pick(3) {
            0 => *rule += &format!(";COUNT={}", 1 + pick(40)),
            1 => {
                let until = start
                    + Duration::days(pick(days) as i64)
                    + Duration::minutes([0, 1, 600][pick(3)]);
                *rule += &format!(";UNTIL={}Z", until.format("%Y%m%dT%H%M%S"));
            }
            _ => {}
        }
    }

    /// The first `n` instances `rrule` walks.
    fn rrule_walks(
        valid: &RRule<rrule::Validated>,
        start: NaiveDateTime,
        n: usize,
    ) -> Vec<NaiveDateTime> {
        RRuleSet::new(rrule::Tz::UTC.from_utc_datetime(&start))
            .rrule(valid.clone())
            .into_iter()
            .take(n)
            .map(|t| t.naive_utc())
            .collect()
    }

    /// The rules walked without `rrule` give exactly `rrule`'s instances:
    /// DAILY and WEEKLY, any INTERVAL and WKST, weekdays out of order or
    /// repeated, a time of day other than DTSTART's (before it on the first
    /// day too), COUNT, UNTIL (on an instance and between two) or neither.
    #[test]
    fn periodic_rules_walk_as_rrule_does() {
        let mut checked = 0;
        let mut pick = picker(0x9e37_79b9_7f4a_7c15);
        let start0 = NaiveDate::from_ymd_opt(2025, 12, 28).unwrap();
        let bydays = [
            "",
            "MO",
            "TU,TH",
            "TH,TU,TH",
            "SU,SA",
            "MO,TU,WE,TH,FR",
            "SU,MO,TU,WE,TH,FR,SA",
        ];
        for _ in 0..3000 {
            let start = (start0 + Days::new(pick(60) as u64))
                .and_hms_opt(pick(24) as u32, [0, 30, 45][pick(3)], 0)
                .unwrap();
            let byday = bydays[pick(bydays.len())];
            let mut rule = if byday.is_empty() {
                ["FREQ=DAILY", "FREQ=WEEKLY"][pick(2)].to_string()
            } else {
                format!("FREQ=WEEKLY;BYDAY={byday}")
            };
            rule += &format!(";INTERVAL={}", 1 + pick(4));
            rule += &format!(";WKST={}", DAYS[pick(7)].1);
            add_time_and_end(&mut rule, start, 120, &mut pick);
            let parsed: RRule<Unvalidated> = rule.parse().unwrap();
            let carrier = rrule::Tz::UTC.from_utc_datetime(&start);
            let valid = parsed.validate(carrier).unwrap();
            let ours: Vec<NaiveDateTime> = Periodic::of(&valid, start)
                .unwrap_or_else(|| panic!("{rule} is not walked here"))
                .take(80)
                .collect();
            let theirs = rrule_walks(&valid, start, 80);
            assert_eq!(ours, theirs, "{start} {rule}");
            checked += usize::from(theirs.len() > 1);
        }
        assert!(checked > 2000, "{checked}");
    }

    #[test]
    fn monthly_rules_walk_as_rrule_does() {
        let (mut walked, mut checked) = (0, 0);
        let mut pick = picker(0x2545_f491_4f6c_dd1d);
        let start0 = NaiveDate::from_ymd_opt(2023, 12, 1).unwrap();
        let days = [
            "",
            "BYDAY=MO",
            "BYDAY=2TU",
            "BYDAY=-1FR",
            "BYDAY=1MO,3MO",
            "BYDAY=4SU",
            "BYDAY=-4WE",
            "BYDAY=TU,TH",
            "BYDAY=-2FR,1MO,-2FR",
            "BYDAY=-1FR,2MO",
            "BYMONTHDAY=1",
            "BYMONTHDAY=28",
            "BYMONTHDAY=-1",
            "BYMONTHDAY=-28",
            "BYMONTHDAY=15,1,15",
            "BYMONTHDAY=-1,1",
        ];
        for _ in 0..3000 {
            // Days 1 to 31 of months of every length, leap Februaries too.
            let start = (start0 + Days::new(pick(900) as u64))
                .and_hms_opt(pick(24) as u32, [0, 30, 45][pick(3)], 0)
                .unwrap();
            let mut rule = "FREQ=MONTHLY".to_string();
            let by = days[pick(days.len())];
            if !by.is_empty() {
                rule += &format!(";{by}");
            }
            rule += &format!(";INTERVAL={}", 1 + pick(4));
            add_time_and_end(&mut rule, start, 700, &mut pick);
            let parsed: RRule<Unvalidated> = rule.parse().unwrap();
            let carrier = rrule::Tz::UTC.from_utc_datetime(&start);
            let from_end = days_from_the_end(&parsed);
            let valid = parsed.validate(carrier).unwrap();
            let theirs = rrule_walks(&valid, start, 60);
            let Some(ours) = Monthly::of(&valid, &from_end, start) else {
                // Only a default day of the month past the 28th is left to rrule.
                assert!(by.is_empty() && start.day() > 28, "{start} {rule}");
                continue;
            };
            let ours: Vec<NaiveDateTime> = ours.take(60).collect();
            assert_eq!(ours, theirs, "{start} {rule}");
            walked += 1;
            checked += usize::from(theirs.len() > 1);
        }
        assert!(walked > 2700 && checked > 2000, "{walked} {checked}");
        // Rules some months hold no instance of, or that filter further.
        for rule in [
            "FREQ=MONTHLY;BYDAY=5MO",
            "FREQ=MONTHLY;BYMONTHDAY=29",
            "FREQ=MONTHLY;BYMONTHDAY=-31",
            "FREQ=MONTHLY;BYDAY=MO;BYMONTHDAY=13",
            "FREQ=MONTHLY;BYDAY=SA,-1SA",
            "FREQ=MONTHLY;BYDAY=MO,TU;BYSETPOS=1",
            "FREQ=MONTHLY;BYMONTH=3;BYDAY=1MO",
            "FREQ=MONTHLY;BYDAY=1MO;BYHOUR=8,17",
            "FREQ=YEARLY;BYDAY=1MO",
        ] {
            let start = NaiveDate::from_ymd_opt(2026, 1, 5)
                .unwrap()
                .and_hms_opt(9, 0, 0)
                .unwrap();
            let carrier = rrule::Tz::UTC.from_utc_datetime(&start);
            let parsed = rule.parse::<RRule<Unvalidated>>().unwrap();
            let from_end = days_from_the_end(&parsed);
            let valid = parsed.validate(carrier).unwrap();
            assert!(Monthly::of(&valid, &from_end, start).is_none(), "{rule}");
        }
    }

    /// MONTHLY series started long before the window, walked from a later
    /// month, keep exactly the instances `rrule` finds walking from DTSTART.
    #[test]
    fn monthly_series_shifted_to_the_window_keep_their_instances() {
        let from = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let window = days_from(from, 40);
        let rules = [
            "FREQ=MONTHLY",
            "FREQ=MONTHLY;BYDAY=-1FR",
            "FREQ=MONTHLY;BYDAY=1MO",
            "FREQ=MONTHLY;BYMONTHDAY=31",
            "FREQ=MONTHLY;BYMONTHDAY=-1,15",
            "FREQ=MONTHLY;INTERVAL=2;BYDAY=2TU",
            "FREQ=MONTHLY;INTERVAL=3",
            "FREQ=MONTHLY;INTERVAL=5;BYDAY=-2WE",
            "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
            "FREQ=MONTHLY;BYMONTH=12,1;BYDAY=1MO",
            "FREQ=MONTHLY;BYDAY=SU;BYHOUR=8,17",
            "FREQ=MONTHLY;BYMONTHDAY=2;UNTIL=20261231T235959Z",
            "FREQ=MONTHLY;BYMONTHDAY=2;UNTIL=20261130T235959Z",
        ];
        let mut checked = 0;
        for months_back in [0u32, 1, 2, 3, 7, 13, 30] {
            for day in [1u32, 15, 28, 29, 30, 31] {
                let Some(start) = from
                    .checked_sub_months(chrono::Months::new(months_back))
                    .and_then(|d| d.with_day(day))
                    .map(|d| d.and_hms_opt(9, 30, 0).unwrap())
                else {
                    continue;
                };
                for rule in rules {
                    let got = starts_of(start, rule, window);
                    let set: RRuleSet =
                        format!("DTSTART:{}Z\nRRULE:{rule}", start.format("%Y%m%dT%H%M%S"))
                            .parse()
                            .unwrap();
                    // DTSTART is the first instance even off the rule.
                    let mut all: Vec<NaiveDateTime> = set
                        .into_iter()
                        .map(|t| t.naive_utc())
                        .take_while(|t| t.and_utc() < window.to)
                        .collect();
                    if !all.contains(&start) {
                        all.insert(0, start);
                    }
                    let want: Vec<NaiveDateTime> = all
                        .into_iter()
                        .filter(|t| {
                            overlaps(t.and_utc(), t.and_utc() + Duration::minutes(30), window)
                        })
                        .collect();
                    assert_eq!(got, want, "{start} {rule}");
                    checked += usize::from(!want.is_empty());
                }
            }
        }
        assert!(checked > 300, "{checked}");
    }
}
