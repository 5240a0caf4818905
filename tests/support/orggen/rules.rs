//! Recurrence rules the generator writes, and its own enumerator of their
//! instances (so that EXDATEs and overrides always fall on real instances).

use std::fmt::Write as _;

use chrono::{Datelike, NaiveDate, Weekday};

use super::rng::Rng;
use super::text::fmt_date;

#[derive(Clone, Copy, PartialEq, Eq)]
/// The rule kinds the generator writes.
pub enum Freq {
    Daily,
    Weekly,
    /// `FREQ=MONTHLY;BYDAY=-1FR`.
    MonthlyLastFriday,
    /// `FREQ=MONTHLY;BYDAY=1MO`.
    MonthlyFirstMonday,
    /// `FREQ=MONTHLY;BYMONTHDAY=n`.
    MonthlyDay(u32),
}

#[derive(Clone)]
/// One RRULE.
pub struct GenRule {
    pub freq: Freq,
    pub interval: i64,
    pub days: Vec<Weekday>,
    pub count: Option<usize>,
    pub until: Option<NaiveDate>,
}

fn wd_code(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "MO",
        Weekday::Tue => "TU",
        Weekday::Wed => "WE",
        Weekday::Thu => "TH",
        Weekday::Fri => "FR",
        Weekday::Sat => "SA",
        Weekday::Sun => "SU",
    }
}

fn month_len(d: NaiveDate) -> u32 {
    let (y, m) = (d.year(), d.month());
    let next = if m == 12 {
        NaiveDate::from_ymd_opt(y + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(y, m + 1, 1)
    };
    next.and_then(|n| n.pred_opt())
        .map(|l| l.day())
        .unwrap_or(28)
}

impl GenRule {
    /// Whether day `d` is an instance of a series starting on `start` (COUNT/UNTIL aside).
    pub fn matches(&self, start: NaiveDate, d: NaiveDate) -> bool {
        if d < start {
            return false;
        }
        match self.freq {
            Freq::Daily => (d - start).num_days() % self.interval == 0,
            Freq::Weekly => {
                let week0 =
                    start - chrono::Duration::days(start.weekday().num_days_from_monday().into());
                let weeks = (d - week0).num_days() / 7;
                weeks % self.interval == 0 && self.days.contains(&d.weekday())
            }
            Freq::MonthlyLastFriday => d.weekday() == Weekday::Fri && d.day() + 7 > month_len(d),
            Freq::MonthlyFirstMonday => d.weekday() == Weekday::Mon && d.day() <= 7,
            Freq::MonthlyDay(n) => d.day() == n,
        }
    }

    /// Instance days from `start` through `upto`, honouring COUNT and UNTIL.
    pub fn instances(&self, start: NaiveDate, upto: NaiveDate) -> Vec<NaiveDate> {
        let mut out = Vec::new();
        let mut d = start;
        let mut n = 0usize;
        while d <= upto {
            if self.until.is_some_and(|u| d > u) {
                break;
            }
            if self.matches(start, d) {
                n += 1;
                if self.count.is_some_and(|c| n > c) {
                    break;
                }
                out.push(d);
            }
            d = match d.succ_opt() {
                Some(x) => x,
                None => break,
            };
        }
        out
    }

    /// The RRULE value.
    pub fn text(&self, all_day: bool) -> String {
        let mut s = match self.freq {
            Freq::Daily => "FREQ=DAILY".to_string(),
            Freq::Weekly => format!(
                "FREQ=WEEKLY;BYDAY={}",
                self.days
                    .iter()
                    .map(|d| wd_code(*d))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Freq::MonthlyLastFriday => "FREQ=MONTHLY;BYDAY=-1FR".into(),
            Freq::MonthlyFirstMonday => "FREQ=MONTHLY;BYDAY=1MO".into(),
            Freq::MonthlyDay(n) => format!("FREQ=MONTHLY;BYMONTHDAY={n}"),
        };
        if self.interval > 1 {
            let _ = write!(s, ";INTERVAL={}", self.interval);
        }
        if let Some(c) = self.count {
            let _ = write!(s, ";COUNT={c}");
        }
        if let Some(u) = self.until {
            if all_day {
                let _ = write!(s, ";UNTIL={}", fmt_date(u));
            } else {
                let _ = write!(s, ";UNTIL={}T235959Z", fmt_date(u));
            }
        }
        s
    }
}

// ---------------------------------------------------------------------------
// Calendar text

/// Weekdays a working-week rule picks from.
const WORKDAYS: [Weekday; 5] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
];

impl GenRule {
    fn open(freq: Freq, interval: i64, days: Vec<Weekday>) -> GenRule {
        GenRule {
            freq,
            interval,
            days,
            count: None,
            until: None,
        }
    }

    /// A rule for a recurring event: a weekly Friday for an all-day one,
    /// otherwise stand-ups, dailies, weeklies, fortnightlies and monthlies.
    pub fn pick(rng: &mut Rng, all_day: bool) -> GenRule {
        if all_day {
            return GenRule::open(Freq::Weekly, 1, vec![Weekday::Fri]);
        }
        match rng.range(0, 99) {
            0..=24 => GenRule::open(Freq::Weekly, 1, WORKDAYS.to_vec()),
            25..=34 => GenRule::open(Freq::Daily, 1, vec![]),
            35..=59 => GenRule::open(Freq::Weekly, 1, vec![*rng.pick(&WORKDAYS)]),
            60..=71 => GenRule::open(Freq::Weekly, 2, vec![*rng.pick(&WORKDAYS)]),
            72..=83 => GenRule::open(
                Freq::Weekly,
                1,
                rng.pick(&[
                    [Weekday::Tue, Weekday::Thu],
                    [Weekday::Mon, Weekday::Wed],
                    [Weekday::Mon, Weekday::Thu],
                ])
                .to_vec(),
            ),
            84..=91 => GenRule::open(Freq::MonthlyLastFriday, 1, vec![]),
            92..=95 => GenRule::open(Freq::MonthlyFirstMonday, 1, vec![]),
            _ => GenRule::open(Freq::MonthlyDay(rng.range(1, 28) as u32), 1, vec![]),
        }
    }

    /// DTSTART 1–18 months before `wstart`, moved forward onto the rule;
    /// then an ending: none, COUNT or UNTIL (some before the window, some
    /// after). Returns the first day.
    pub fn place(&mut self, rng: &mut Rng, wstart: NaiveDate) -> NaiveDate {
        let mut d = wstart - chrono::Duration::days(rng.range(30, 540));
        let probe = GenRule {
            count: None,
            until: None,
            ..self.clone()
        };
        while !probe.matches(d, d)
            || (probe.freq == Freq::Weekly && !probe.days.contains(&d.weekday()))
        {
            d = d.succ_opt().expect("date");
        }
        let first_day = d;
        let n_to_window = probe.instances(first_day, wstart).len().max(1);
        match rng.range(0, 99) {
            0..=54 => {}
            55..=79 => {
                self.count = Some(if rng.chance(0.35) {
                    rng.range(1, n_to_window as i64) as usize
                } else {
                    n_to_window + rng.range(1, 40) as usize
                })
            }
            _ => {
                let u = wstart + chrono::Duration::days(rng.range(-200, 400));
                self.until = Some(u.max(first_day + chrono::Duration::days(7)));
            }
        }
        first_day
    }
}
