//! One user's calendar: ~30 events, about half recurring, with EXDATEs,
//! moved and cancelled overrides, all-day OOF, private, declined, tentative
//! and free events, written the way Outlook publishes them.
//!
//! The order of the draws from the user's [`Rng`] is part of the output:
//! change it and every generated org changes (bump `GENERATOR_VERSION`).

use chrono::{Duration, NaiveDate, NaiveDateTime, NaiveTime};

use super::GenStats;
use super::people::{MEETINGS, Person, person};
use super::rng::Rng;
use super::rules::GenRule;
use super::text::{GenEvent, GenWhen, outlook_uid, push_line, teams_blurb, write_event};
use super::zones::ZONES;

/// What kind of meeting a timed event is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Busy,
    Private,
    Declined,
    Tentative,
    Free,
    Focus,
}

fn pick_flavour(rng: &mut Rng) -> Flavour {
    match rng.range(0, 99) {
        0..=67 => Flavour::Busy,
        68..=74 => Flavour::Private,
        75..=81 => Flavour::Declined,
        82..=88 => Flavour::Tentative,
        89..=94 => Flavour::Free,
        _ => Flavour::Focus,
    }
}

/// Who appears in one user's calendar.
struct Cast<'a> {
    owner: &'a Person,
    /// The owner's Windows zone (index into [`ZONES`]).
    home: usize,
    colleagues: Vec<Person>,
    externals: Vec<Person>,
    /// Has a weekly all-day Friday OOF.
    part_timer: bool,
}

/// The first day of the window week and its last day.
fn window_days() -> (NaiveDate, NaiveDate) {
    (
        NaiveDate::from_ymd_opt(2026, 11, 30).expect("date"),
        NaiveDate::from_ymd_opt(2026, 12, 6).expect("date"),
    )
}

/// One user's calendar text (and its statistics).
pub fn gen_calendar(
    rng: &mut Rng,
    owner: &Person,
    home: usize,
    events: usize,
    detail: super::Detail,
    stats: &mut GenStats,
) -> String {
    let n_events = (events as i64 + rng.range(-(events as i64) / 5, (events as i64) / 5)).max(2);
    let n_rec = (n_events as f64 * (0.4 + rng.range(0, 20) as f64 / 100.0)).round() as i64;
    let mut evs: Vec<GenEvent> = Vec::new();
    let mut zones_used = [false; 6];
    zones_used[home] = true;
    let colleagues: Vec<Person> = (0..8).map(|_| person(rng, "contoso.com")).collect();
    let externals: Vec<Person> = (0..3).map(|_| person(rng, "fabrikam.com")).collect();
    let part_timer = rng.chance(0.05);
    let cast = Cast {
        owner,
        home,
        colleagues,
        externals,
        part_timer,
    };
    for k in 0..n_events {
        let (master, overrides) = gen_series(rng, &cast, k, k < n_rec, stats);
        zones_used[master.zone] = true;
        stats.masters += 1;
        stats.recurring += usize::from(master.rrule.is_some());
        stats.all_day += usize::from(master.all_day_flag);
        stats.overrides += overrides.len();
        evs.push(master);
        evs.extend(overrides);
    }
    let out = assemble(rng, owner, &zones_used, &evs, detail, stats);
    stats.vevents += evs.len();
    out
}

/// The VCALENDAR: Outlook's header, the VTIMEZONEs in use, the events.
fn assemble(
    rng: &mut Rng,
    owner: &Person,
    zones_used: &[bool; 6],
    evs: &[GenEvent],
    detail: super::Detail,
    stats: &mut GenStats,
) -> String {
    let mut out = String::with_capacity(48 * 1024);
    for l in [
        "BEGIN:VCALENDAR",
        "PRODID:-//Microsoft Corporation//Outlook 16.0 MIMEDIR//EN",
        "VERSION:2.0",
        "METHOD:PUBLISH",
        "X-MS-OLK-FORCEINSPECTOROPEN:TRUE",
    ] {
        push_line(&mut out, l);
    }
    push_line(&mut out, &format!("X-WR-CALNAME:{}", owner.name));
    push_line(
        &mut out,
        &format!("X-WR-RELCALID:{{0000002E-{}}}", rng.hex(20)),
    );
    push_line(&mut out, "X-PRIMARY-CALENDAR:TRUE");
    push_line(
        &mut out,
        &format!("X-OWNER;CN=\"{}\":mailto:{}", owner.name, owner.email),
    );
    for (i, used) in zones_used.iter().enumerate() {
        if *used {
            for l in ZONES[i].vtimezone {
                push_line(&mut out, l);
            }
            stats.vtimezones += 1;
            stats.vtimezones_dst += usize::from(ZONES[i].vtimezone.len() > 8);
        }
    }
    for ev in evs {
        write_event(&mut out, ev, detail);
    }
    push_line(&mut out, "END:VCALENDAR");
    out
}

/// When an event happens: its first day, time of day, length and rule.
struct Timing {
    first_day: NaiveDate,
    time: NaiveTime,
    minutes: i64,
    rule: Option<GenRule>,
}

/// The k-th event of a calendar (a series master or a single event) and
/// the overrides of its instances.
fn gen_series(
    rng: &mut Rng,
    cast: &Cast<'_>,
    k: i64,
    recurring: bool,
    stats: &mut GenStats,
) -> (GenEvent, Vec<GenEvent>) {
    let zone = if rng.chance(0.8) {
        cast.home
    } else {
        rng.range(0, 5) as usize
    };
    let mut flavour = pick_flavour(rng);
    let all_day_kind = pick_all_day(rng, recurring, k == 0 && cast.part_timer);
    if all_day_kind.is_some() {
        flavour = Flavour::Busy;
    }
    let timing = pick_timing(rng, recurring, all_day_kind.is_some());
    let summary = pick_summary(rng, all_day_kind, flavour, cast.part_timer, recurring);
    let mut master = gen_master(rng, cast, all_day_kind, flavour, &timing, summary);
    if !master.all_day_flag {
        master.zone = zone;
    }
    let overrides = match &timing.rule {
        Some(r) => exceptions(rng, r, &mut master, &timing, stats),
        None => Vec::new(),
    };
    (master, overrides)
}

/// All-day events: OOF (single, multi-day), working elsewhere, a
/// part-timer's Fridays.
fn pick_all_day(rng: &mut Rng, recurring: bool, part_time_series: bool) -> Option<&'static str> {
    if recurring {
        part_time_series.then_some("OOF")
    } else {
        match rng.range(0, 99) {
            0..=8 => Some("OOF"),
            9..=11 => Some("WORKINGELSEWHERE"),
            _ => None,
        }
    }
}

/// Length, time of day, rule and first day.
fn pick_timing(rng: &mut Rng, recurring: bool, all_day: bool) -> Timing {
    let minutes = *rng.pick(&[15i64, 30, 30, 45, 60, 60, 60, 90, 120]);
    let hour = rng.range(8, 17) as u32;
    let minute = *rng.pick(&[0u32, 0, 0, 15, 30, 30, 45]);
    let time = NaiveTime::from_hms_opt(hour, minute, 0).expect("time");
    let (wstart, _) = window_days();
    if recurring {
        let mut r = GenRule::pick(rng, all_day);
        let first_day = r.place(rng, wstart);
        return Timing {
            first_day,
            time,
            minutes,
            rule: Some(r),
        };
    }
    // Singles: mostly history, a quarter in the window week, some later.
    let first_day = match rng.range(0, 99) {
        0..=64 => wstart - Duration::days(rng.range(30, 540)),
        65..=89 => wstart + Duration::days(rng.range(0, 6)),
        _ => wstart + Duration::days(rng.range(7, 60)),
    };
    Timing {
        first_day,
        time,
        minutes,
        rule: None,
    }
}

fn pick_summary(
    rng: &mut Rng,
    all_day_kind: Option<&str>,
    flavour: Flavour,
    part_timer: bool,
    recurring: bool,
) -> String {
    match (all_day_kind, flavour) {
        (Some("OOF"), _) if part_timer && recurring => "Out of office (part-time)".to_string(),
        (Some("OOF"), _) => rng
            .pick(&[
                "Out of office",
                "Vacation",
                "Férias",
                "Annual leave",
                "Urlaub",
            ])
            .to_string(),
        (Some(_), _) => "Working from the Boston office".to_string(),
        (None, Flavour::Focus) => "Focus time".to_string(),
        (None, Flavour::Free) => format!("Hold: {}", rng.pick(&MEETINGS)),
        (None, Flavour::Private) => "Doctor appointment".to_string(),
        (None, _) => {
            if recurring && rng.chance(0.3) {
                "Daily stand-up".to_string()
            } else {
                rng.pick(&MEETINGS).to_string()
            }
        }
    }
}

/// Organizer, attendees (the owner's reply first) and Teams DESCRIPTION.
type Guests = (Person, Vec<(Person, &'static str)>, Option<String>);

fn pick_guests(
    rng: &mut Rng,
    cast: &Cast<'_>,
    all_day_kind: Option<&str>,
    flavour: Flavour,
) -> Guests {
    let organizer_is_owner = matches!(flavour, Flavour::Focus | Flavour::Private)
        || all_day_kind.is_some()
        || rng.chance(0.35);
    let organizer = if organizer_is_owner {
        cast.owner.clone()
    } else {
        rng.pick(&cast.colleagues).clone()
    };
    let mut attendees = Vec::new();
    if all_day_kind.is_none() && flavour != Flavour::Focus && flavour != Flavour::Private {
        let own = match flavour {
            Flavour::Declined => "DECLINED",
            Flavour::Tentative => "TENTATIVE",
            _ if !organizer_is_owner && rng.chance(0.05) => "NEEDS-ACTION",
            _ => "ACCEPTED",
        };
        attendees.push((cast.owner.clone(), own));
        for _ in 0..rng.range(1, 5) {
            attendees.push((rng.pick(&cast.colleagues).clone(), "ACCEPTED"));
        }
        if rng.chance(0.15) {
            attendees.push((rng.pick(&cast.externals).clone(), "NEEDS-ACTION"));
        }
    }
    let teams = (all_day_kind.is_none()
        && !matches!(flavour, Flavour::Focus | Flavour::Private)
        && rng.chance(0.6))
    .then(|| teams_blurb(rng));
    (organizer, attendees, teams)
}

/// The master (or single) event; its zone is the owner's until the caller
/// sets it (all-day events stay in the owner's zone).
fn gen_master(
    rng: &mut Rng,
    cast: &Cast<'_>,
    all_day_kind: Option<&str>,
    flavour: Flavour,
    timing: &Timing,
    summary: String,
) -> GenEvent {
    let (organizer, attendees, teams) = pick_guests(rng, cast, all_day_kind, flavour);
    let location = if teams.is_some() {
        "Microsoft Teams Meeting".to_string()
    } else if all_day_kind.is_some() || flavour == Flavour::Focus {
        String::new()
    } else {
        format!("Room {}.{:02}", rng.range(1, 6), rng.range(1, 40))
    };
    let (busy, transparent) = match (all_day_kind, flavour) {
        (Some("OOF"), _) => ("OOF", false),
        (Some(_), _) => ("WORKINGELSEWHERE", false),
        (None, Flavour::Free) => ("FREE", true),
        (None, Flavour::Tentative) => ("TENTATIVE", false),
        _ => ("BUSY", false),
    };
    let created = (timing.first_day - Duration::days(rng.range(1, 20)))
        .and_hms_opt(rng.range(6, 20) as u32, rng.range(0, 59) as u32, 0)
        .expect("time");
    let all_day = all_day_kind.is_some();
    let (start, end) = if all_day {
        let days = if timing.rule.is_some() {
            1
        } else {
            rng.range(1, 5)
        };
        (
            GenWhen::Date(timing.first_day),
            GenWhen::Date(timing.first_day + Duration::days(days)),
        )
    } else {
        let s = timing.first_day.and_time(timing.time);
        (
            GenWhen::Timed(s),
            GenWhen::Timed(s + Duration::minutes(timing.minutes)),
        )
    };
    GenEvent {
        uid: outlook_uid(rng),
        sequence: rng.range(0, 3) as u32,
        zone: cast.home,
        start,
        end,
        rrule: timing.rule.as_ref().map(|r| r.text(all_day)),
        exdates: Vec::new(),
        recurrence_id: None,
        summary,
        busy,
        transparent,
        private: flavour == Flavour::Private,
        cancelled: false,
        all_day_flag: all_day,
        organizer,
        attendees,
        teams,
        location,
        alarm: !all_day && rng.chance(0.5),
        created,
    }
}

/// EXDATEs (into `master`) and overrides, on instances near the window and
/// in recent history, away from UNTIL; each instance is taken once.
fn exceptions(
    rng: &mut Rng,
    r: &GenRule,
    master: &mut GenEvent,
    timing: &Timing,
    stats: &mut GenStats,
) -> Vec<GenEvent> {
    let (wstart, wend) = window_days();
    let inst: Vec<NaiveDate> = r
        .instances(timing.first_day, wend)
        .into_iter()
        .filter(|d| *d >= wstart - Duration::days(150))
        .filter(|d| r.until.is_none_or(|u| *d + Duration::days(2) < u))
        .collect();
    let in_window: Vec<NaiveDate> = inst.iter().copied().filter(|d| *d >= wstart).collect();
    let mut taken: Vec<NaiveDate> = Vec::new();
    let mut take = |rng: &mut Rng, prefer_window: bool| {
        let pool = if prefer_window && !in_window.is_empty() {
            &in_window
        } else {
            &inst
        };
        if pool.is_empty() {
            return None;
        }
        let d = *rng.pick(pool);
        if taken.contains(&d) {
            return None;
        }
        taken.push(d);
        Some(d)
    };
    let all_day = master.all_day_flag;
    if rng.chance(0.35) {
        for _ in 0..rng.range(1, 3) {
            let prefer = rng.chance(0.4);
            if let Some(d) = take(rng, prefer) {
                master.exdates.push(if all_day {
                    GenWhen::Date(d)
                } else {
                    GenWhen::Timed(d.and_time(timing.time))
                });
            }
        }
        stats.exdates += master.exdates.len();
    }
    let mut overrides = Vec::new();
    if !all_day && rng.chance(0.3) {
        for _ in 0..rng.range(1, 2) {
            let prefer = rng.chance(0.6);
            let Some(d) = take(rng, prefer) else {
                continue;
            };
            let ov = moved_instance(rng, master, d.and_time(timing.time), timing.minutes);
            stats.cancelled_overrides += usize::from(ov.cancelled);
            overrides.push(ov);
        }
    }
    overrides
}

/// An override of the instance at `orig`: cancelled, or moved by −1 h to
/// +1 day.
fn moved_instance(rng: &mut Rng, master: &GenEvent, orig: NaiveDateTime, minutes: i64) -> GenEvent {
    let cancelled = rng.chance(0.4);
    let shift = if cancelled {
        Duration::zero()
    } else {
        Duration::minutes(*rng.pick(&[60i64, 120, -60, 30, 24 * 60]))
    };
    let s = orig + shift;
    GenEvent {
        uid: master.uid.clone(),
        sequence: master.sequence + 1,
        zone: master.zone,
        start: GenWhen::Timed(s),
        end: GenWhen::Timed(s + Duration::minutes(minutes)),
        rrule: None,
        exdates: Vec::new(),
        recurrence_id: Some(GenWhen::Timed(orig)),
        summary: if cancelled {
            format!("Canceled: {}", master.summary)
        } else {
            format!("{} (moved)", master.summary)
        },
        busy: master.busy,
        transparent: master.transparent,
        private: master.private,
        cancelled,
        all_day_flag: false,
        organizer: master.organizer.clone(),
        attendees: master.attendees.clone(),
        teams: master.teams.clone(),
        location: master.location.clone(),
        alarm: master.alarm,
        created: master.created + Duration::days(rng.range(1, 30)),
    }
}
