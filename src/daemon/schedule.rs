//! When the daemon wakes: the instants that matter for each person — every
//! status's start minus the lead time (publish) and its end (clear or put
//! back) — kept in time order so the loop sleeps until exactly the next
//! one. Due users come out earliest-deadline first. Also the clock-jump
//! check. Pure: instants in, instants out; the loop owns the clock.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};

use crate::plan::UserPlan;

/// Who needs a pass when.
#[derive(Clone, Debug, Default)]
pub struct Schedule {
    by_time: BTreeMap<DateTime<Utc>, BTreeSet<String>>,
    by_user: HashMap<String, Vec<DateTime<Utc>>>,
}

impl Schedule {
    /// An empty schedule.
    pub fn new() -> Schedule {
        Schedule::default()
    }

    /// Replaces `user`'s instants.
    pub fn set(&mut self, user: &str, instants: impl IntoIterator<Item = DateTime<Utc>>) {
        self.remove(user);
        let mut mine: Vec<DateTime<Utc>> = instants.into_iter().collect();
        mine.sort();
        mine.dedup();
        for t in &mine {
            self.by_time.entry(*t).or_default().insert(user.to_string());
        }
        if !mine.is_empty() {
            self.by_user.insert(user.to_string(), mine);
        }
    }

    /// Forgets `user`.
    pub fn remove(&mut self, user: &str) {
        for t in self.by_user.remove(user).unwrap_or_default() {
            if let Some(set) = self.by_time.get_mut(&t) {
                set.remove(user);
                if set.is_empty() {
                    self.by_time.remove(&t);
                }
            }
        }
    }

    /// The next instant anyone needs a pass.
    pub fn next(&self) -> Option<DateTime<Utc>> {
        self.by_time.keys().next().copied()
    }

    /// Takes everyone due at or before `now`, earliest deadline first
    /// (each user once, at their earliest due instant).
    pub fn take_due(&mut self, now: DateTime<Utc>) -> Vec<(DateTime<Utc>, String)> {
        let later = self.by_time.split_off(&(now + Duration::nanoseconds(1)));
        let due = std::mem::replace(&mut self.by_time, later);
        let mut out: Vec<(DateTime<Utc>, String)> = Vec::new();
        let mut seen = BTreeSet::new();
        for (t, users) in due {
            for u in users {
                if let Some(mine) = self.by_user.get_mut(&u) {
                    mine.retain(|x| *x > now);
                    if mine.is_empty() {
                        self.by_user.remove(&u);
                    }
                }
                if seen.insert(u.clone()) {
                    out.push((t, u));
                }
            }
        }
        out
    }

    /// How many instants are scheduled.
    pub fn len(&self) -> usize {
        self.by_time.values().map(BTreeSet::len).sum()
    }

    /// `true` when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.by_time.is_empty()
    }
}

/// The instants after `after` at which `plan`'s person needs a pass: each
/// status's start minus `lead`, and its end.
pub fn instants(plan: &UserPlan, lead: Duration, after: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    plan.statuses
        .iter()
        .flat_map(|s| [s.start - lead, s.end])
        .filter(|t| *t > after)
        .collect()
}

/// A wall-clock jump between two readings of both clocks: how far the wall
/// clock moved beyond (or short of) the monotonic clock, when that is more
/// than `tolerance`. Suspend/resume and NTP steps show up here.
pub fn clock_jump(
    wall_before: DateTime<Utc>,
    mono_before: std::time::Instant,
    wall_now: DateTime<Utc>,
    mono_now: std::time::Instant,
    tolerance: std::time::Duration,
) -> Option<Duration> {
    let mono = Duration::from_std(mono_now.saturating_duration_since(mono_before)).ok()?;
    let drift = (wall_now - wall_before) - mono;
    let tolerance = Duration::from_std(tolerance).ok()?;
    (drift.abs() > tolerance).then_some(drift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn due_users_come_out_earliest_deadline_first_once() {
        let mut s = Schedule::new();
        s.set("b", [t("2026-12-01T09:00:00Z"), t("2026-12-01T10:00:00Z")]);
        s.set("a", [t("2026-12-01T08:58:00Z"), t("2026-12-01T09:30:00Z")]);
        s.set("c", [t("2026-12-01T09:00:00Z")]);
        assert_eq!(s.next(), Some(t("2026-12-01T08:58:00Z")));
        assert!(s.take_due(t("2026-12-01T08:57:59Z")).is_empty());
        let due = s.take_due(t("2026-12-01T09:45:00Z"));
        let order: Vec<&str> = due.iter().map(|(_, u)| u.as_str()).collect();
        assert_eq!(order, ["a", "b", "c"]);
        assert_eq!(s.next(), Some(t("2026-12-01T10:00:00Z")));
        // Replacing a user's instants drops the old ones.
        s.set("b", [t("2026-12-01T11:00:00Z")]);
        assert_eq!(s.next(), Some(t("2026-12-01T11:00:00Z")));
        assert_eq!(s.len(), 1);
        s.remove("b");
        assert!(s.is_empty());
    }

    #[test]
    fn clock_jumps_are_told_from_time_passing() {
        let mono = std::time::Instant::now();
        let later = mono + std::time::Duration::from_secs(60);
        let tol = std::time::Duration::from_secs(2);
        let w = t("2026-12-01T09:00:00Z");
        assert_eq!(
            clock_jump(w, mono, w + Duration::seconds(61), later, tol),
            None
        );
        // Suspended for two hours: the monotonic clock saw one minute.
        assert_eq!(
            clock_jump(w, mono, w + Duration::hours(2), later, tol),
            Some(Duration::hours(2) - Duration::seconds(60))
        );
        // NTP stepped back ten minutes.
        assert_eq!(
            clock_jump(w, mono, w - Duration::minutes(9), later, tol),
            Some(-Duration::minutes(10))
        );
    }
}
