//! Reconciliation: what is wanted (the plan at T), what calstatus last
//! wrote (the state store) and what Graph shows now → one decision per
//! user ([`decide`]), and for a whole pass the decisions plus the writes
//! and state changes they imply ([`plan_pass`]): data, printable, applied
//! elsewhere. Pure; the invariants are in ARCHITECTURE.md:
//! a person's own message is never overwritten under `protect`, a message
//! calstatus no longer owns is never cleared, and a pass that finds its
//! previous write already applied adopts it instead of writing again.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::Record;

/// What to do with a person's own message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PersonalPolicy {
    /// Leave it alone while it is there.
    #[default]
    Protect,
    /// Save it, publish ours, put it back after.
    Restore,
}

impl<'de> serde::Deserialize<'de> for PersonalPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PersonalPolicy, D::Error> {
        let s = String::deserialize(d)?;
        PersonalPolicy::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not protect or restore")))
    }
}

impl PersonalPolicy {
    /// Parses `sync.personal_message`.
    pub fn parse(s: &str) -> Option<PersonalPolicy> {
        match s.trim().to_ascii_lowercase().as_str() {
            "protect" => Some(PersonalPolicy::Protect),
            "restore" => Some(PersonalPolicy::Restore),
            _ => None,
        }
    }
}

/// The decision for one user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Publish the planned message with expiry = meeting end.
    Set,
    /// Already published; nothing to do.
    Keep,
    /// calstatus's message is live but its meeting went away: clear it.
    Clear,
    /// The person's own message is there: leave it alone.
    Protect,
    /// Put the person's saved message back.
    Restore,
    /// Nothing planned, nothing of ours live.
    Idle,
    /// Could not decide (a calendar or Graph read failed): nothing is touched.
    Failed,
}

impl Decision {
    /// Every decision, in the order reports list them.
    pub const ALL: [Decision; 7] = [
        Decision::Set,
        Decision::Keep,
        Decision::Clear,
        Decision::Protect,
        Decision::Restore,
        Decision::Idle,
        Decision::Failed,
    ];

    /// `true` when the decision sends a write.
    pub fn writes(self) -> bool {
        matches!(self, Decision::Set | Decision::Clear | Decision::Restore)
    }

    /// Its name in reports, the journal and metrics (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Set => "set",
            Decision::Keep => "keep",
            Decision::Clear => "clear",
            Decision::Protect => "protect",
            Decision::Restore => "restore",
            Decision::Idle => "idle",
            Decision::Failed => "failed",
        }
    }

    /// Reads a name back.
    pub fn parse(s: &str) -> Option<Decision> {
        Decision::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The planned status at T.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// The text.
    pub message: String,
    /// Expiry = the meeting end.
    pub expiry: DateTime<Utc>,
    /// The occurrences behind it (JSON), remembered with the write.
    pub occurrences: String,
}

/// A write about to be sent, recorded before it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    /// Object id.
    pub user: String,
    /// Set, clear or restore.
    pub decision: Decision,
    /// The message sent ("" for a clear).
    pub message: Option<String>,
    /// The expiry sent.
    pub expiry: Option<DateTime<Utc>>,
    /// The occurrences behind it (JSON).
    pub occurrences: String,
    /// The person's message to save before overwriting it (restore policy).
    pub save_personal: Option<String>,
}

/// What a pass learnt about a person without writing anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// An interrupted pass's pending write is visible in Graph: it was applied.
    AdoptPending(String),
    /// The message we remember is no longer ours (expired, or the person's
    /// own message was seen over it).
    Forget(String),
}

/// Why a person cannot be reconciled in this pass: nothing of theirs is
/// touched, and the last good state stays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Why, in a few words.
    pub reason: String,
    /// The error behind it.
    pub error: String,
}

impl Failure {
    /// A failure.
    pub fn new(reason: impl Into<String>, error: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            error: error.into(),
        }
    }
}

/// What the shell gathered about one person for a pass.
#[derive(Clone, Debug)]
pub struct PassInput {
    /// The person as their file names them (object id or UPN).
    pub user: String,
    /// Their object id (a UPN resolved), or why there is none.
    pub id: Result<String, Failure>,
    /// The status planned at T (+ lead time), or why the plan failed.
    pub desired: Result<Option<Desired>, Failure>,
    /// What calstatus remembers.
    pub record: Option<Record>,
    /// The message Graph shows now (`None`: no message), or why it could
    /// not be read.
    pub presence: Result<Option<String>, Failure>,
}

/// One person's step of a pass: the decision and what it implies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The object id (as named when it could not be resolved).
    pub user: String,
    /// What to do.
    pub decision: Decision,
    /// Why.
    pub reason: String,
    /// The message sent, kept or planned.
    pub message: Option<String>,
    /// The expiry sent.
    pub expiry: Option<DateTime<Utc>>,
    /// The write to send, for set/clear/restore.
    pub intent: Option<Intent>,
    /// State changes learnt without writing.
    pub observations: Vec<Observation>,
    /// The error behind a failed step.
    pub error: Option<String>,
}

impl Step {
    fn failed(user: String, f: Failure) -> Step {
        Step {
            user,
            decision: Decision::Failed,
            reason: f.reason,
            message: None,
            expiry: None,
            intent: None,
            observations: Vec::new(),
            error: Some(f.error),
        }
    }
}

/// Plans a whole pass at `now`: one step per input, in input order. Pure.
pub fn plan_pass(now: DateTime<Utc>, policy: PersonalPolicy, inputs: Vec<PassInput>) -> Vec<Step> {
    inputs
        .into_iter()
        .map(|i| {
            let id = match i.id {
                Ok(id) => id,
                Err(f) => return Step::failed(i.user, f),
            };
            let desired = match i.desired {
                Ok(d) => d,
                Err(f) => return Step::failed(id, f),
            };
            let actual = match i.presence {
                Ok(a) => a,
                Err(f) => return Step::failed(id, f),
            };
            let v = decide(
                desired.as_ref(),
                i.record.as_ref(),
                actual.as_deref(),
                now,
                policy,
            );
            let mut observations = Vec::new();
            if v.adopt_pending {
                observations.push(Observation::AdoptPending(id.clone()));
            }
            if v.forget {
                observations.push(Observation::Forget(id.clone()));
            }
            let intent = v.decision.writes().then(|| Intent {
                user: id.clone(),
                decision: v.decision,
                message: v.message.clone(),
                expiry: v.expiry,
                occurrences: desired
                    .as_ref()
                    .filter(|_| v.decision == Decision::Set)
                    .map(|d| d.occurrences.clone())
                    .unwrap_or_else(|| "[]".into()),
                save_personal: v.save_personal.clone(),
            });
            Step {
                message: v.message.or_else(|| desired.map(|d| d.message)),
                user: id,
                decision: v.decision,
                reason: v.reason,
                expiry: v.expiry,
                intent,
                observations,
                error: None,
            }
        })
        .collect()
}

/// The outcome of reconciling one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The decision.
    pub decision: Decision,
    /// Message to send (Set/Restore: text; Clear: "").
    pub message: Option<String>,
    /// Expiry to send.
    pub expiry: Option<DateTime<Utc>>,
    /// Why, in a few words.
    pub reason: String,
    /// Save this personal message before overwriting it.
    pub save_personal: Option<String>,
    /// A previous pass's pending write is visible in Graph: adopt it.
    pub adopt_pending: bool,
    /// Forget the message we remember (it is no longer ours).
    pub forget: bool,
}

impl Verdict {
    fn new(decision: Decision, reason: &str) -> Verdict {
        Verdict {
            decision,
            message: None,
            expiry: None,
            reason: reason.into(),
            save_personal: None,
            adopt_pending: false,
            forget: false,
        }
    }
}

/// Normalises a message for comparison: Teams may XML-escape what it stores.
pub fn normalize(s: &str) -> String {
    let unescaped = s
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    unescaped.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A message calstatus owns, with its expiry.
type Owned = (String, Option<DateTime<Utc>>);

/// What a pass sees for one user: what calstatus owns, what Graph shows, and how they compare.
struct Seen<'a> {
    /// The message Graph shows, as read (`None`: no message).
    actual: Option<&'a str>,
    /// The same, normalised (`None`: no message or only blanks).
    actual_n: Option<String>,
    /// What we own: the message and its expiry.
    ours: Option<Owned>,
    /// What we own is a pending write that Graph shows as applied.
    adopt: bool,
    /// Graph shows what we own.
    actual_is_ours: bool,
    /// Graph shows a message that is not ours: the person's own.
    personal: bool,
    /// The person's message saved for restoring.
    saved: Option<String>,
}

impl<'a> Seen<'a> {
    /// Compares what calstatus remembers with what Graph shows at `now`.
    fn new(record: Option<&Record>, actual: Option<&'a str>, now: DateTime<Utc>) -> Seen<'a> {
        let actual_n = actual.map(normalize).filter(|a| !a.is_empty());
        let (ours, adopt) = owned(record, actual_n.as_deref(), now);
        let actual_is_ours =
            matches!((&ours, &actual_n), (Some((m, _)), Some(a)) if normalize(m) == *a);
        Seen {
            personal: actual_n.is_some() && !actual_is_ours,
            saved: record.and_then(|r| r.saved_message.clone()),
            actual,
            actual_n,
            ours,
            adopt,
            actual_is_ours,
        }
    }

    /// `true` when what we own is exactly the planned status.
    fn ours_is(&self, d: &Desired) -> bool {
        self.ours
            .as_ref()
            .is_some_and(|(m, e)| normalize(m) == normalize(&d.message) && *e == Some(d.expiry))
    }

    /// A verdict that leaves Graph alone and forgets what we own, if anything.
    fn leave(&self, decision: Decision, reason: &str) -> Verdict {
        let mut v = Verdict::new(decision, reason);
        v.forget = self.ours.is_some();
        v
    }
}

/// What we own at `now`, and whether it is a pending write that Graph shows as applied.
fn owned(
    record: Option<&Record>,
    actual_n: Option<&str>,
    now: DateTime<Utc>,
) -> (Option<Owned>, bool) {
    // A pending write from an interrupted pass that Graph (`actual_n`,
    // normalised) shows as applied; else our last write while it has not
    // expired.
    if let Some(r) = record
        && let (Some(p), Some(a)) = (&r.pending_message, actual_n)
        && normalize(p) == a
        && !p.is_empty()
    {
        return (Some((p.clone(), r.pending_expiry)), true);
    }
    let last = record
        .and_then(|r| r.message.clone().map(|m| (m, r.expiry)))
        .filter(|(_, e)| e.is_none_or(|e| e > now));
    (last, false)
}

/// A verdict that publishes the planned status.
fn publish(d: &Desired, reason: &str) -> Verdict {
    let mut v = Verdict::new(Decision::Set, reason);
    v.message = Some(d.message.clone());
    v.expiry = Some(d.expiry);
    v
}

/// A verdict that puts the person's saved message back.
fn put_back(saved: &str, reason: &str) -> Verdict {
    let mut v = Verdict::new(Decision::Restore, reason);
    v.message = Some(saved.to_string());
    v
}

/// Decides for one user. `actual` is the message Graph shows now (None: no message).
pub fn decide(
    desired: Option<&Desired>,
    record: Option<&Record>,
    actual: Option<&str>,
    now: DateTime<Utc>,
    policy: PersonalPolicy,
) -> Verdict {
    let seen = Seen::new(record, actual, now);
    let mut v = match desired {
        Some(d) => decide_planned(d, &seen, policy),
        None => decide_unplanned(&seen, policy),
    };
    v.adopt_pending = seen.adopt;
    v
}

/// Decides while a status is planned: keep, publish, or leave the person's message.
fn decide_planned(d: &Desired, seen: &Seen, policy: PersonalPolicy) -> Verdict {
    if seen.actual_is_ours && seen.ours_is(d) {
        Verdict::new(Decision::Keep, "already published")
    } else if seen.personal {
        planned_over_personal(d, seen, policy)
    } else if seen.actual_n.is_none() && !seen.adopt && seen.ours_is(d) {
        // We published exactly this and the person removed it.
        Verdict::new(
            Decision::Protect,
            "the person cleared this status; not published again",
        )
    } else if seen.actual_is_ours {
        publish(d, "the planned status changed")
    } else {
        publish(d, "meeting in progress")
    }
}

/// Decides while a status is planned and the person's own message is there.
fn planned_over_personal(d: &Desired, seen: &Seen, policy: PersonalPolicy) -> Verdict {
    match policy {
        // Ours was superseded, not cleared: once theirs is gone, a status
        // still planned is published again.
        PersonalPolicy::Protect => {
            seen.leave(Decision::Protect, "the person's own message is there")
        }
        PersonalPolicy::Restore => {
            let mut v = publish(d, "meeting starts; the person's message is saved for later");
            v.save_personal = seen.actual.map(str::to_string);
            v
        }
    }
}

/// Decides while nothing is planned: clear ours, restore theirs, or stay idle.
fn decide_unplanned(seen: &Seen, policy: PersonalPolicy) -> Verdict {
    let restorable = seen
        .saved
        .as_deref()
        .filter(|_| policy == PersonalPolicy::Restore);
    if seen.actual_is_ours {
        match restorable {
            Some(s) => put_back(s, "meeting gone; the person's message is put back"),
            None => {
                let mut v = Verdict::new(
                    Decision::Clear,
                    "calstatus's message is live but its meeting was cancelled, declined or removed",
                );
                v.message = Some(String::new());
                v
            }
        }
    } else if seen.personal {
        seen.leave(Decision::Idle, "the person's own message is there")
    } else if let Some(s) = restorable {
        put_back(s, "meeting over; the person's message is put back")
    } else {
        seen.leave(Decision::Idle, "nothing planned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn desired(m: &str, e: &str) -> Desired {
        Desired {
            message: m.into(),
            expiry: t(e),
            occurrences: "[]".into(),
        }
    }

    fn record(m: Option<&str>, e: Option<&str>) -> Record {
        Record {
            user_id: "u".into(),
            message: m.map(str::to_string),
            expiry: e.map(t),
            ..Default::default()
        }
    }

    const NOW: &str = "2026-11-27T10:00:00Z";
    const P: PersonalPolicy = PersonalPolicy::Protect;

    #[test]
    fn the_decision_table() {
        let d = desired("In a meeting until 10:30", "2026-11-27T10:30:00Z");
        let mine = record(
            Some("In a meeting until 10:30"),
            Some("2026-11-27T10:30:00Z"),
        );
        let now = t(NOW);
        // Nothing there yet: set.
        assert_eq!(decide(Some(&d), None, None, now, P).decision, Decision::Set);
        // Already published (Teams escaped nothing here): keep.
        assert_eq!(
            decide(
                Some(&d),
                Some(&mine),
                Some("In a meeting until 10:30"),
                now,
                P
            )
            .decision,
            Decision::Keep
        );
        // The person's own message: protect, or save and set under restore.
        assert_eq!(
            decide(Some(&d), None, Some("Working from Lisbon"), now, P).decision,
            Decision::Protect
        );
        let v = decide(
            Some(&d),
            None,
            Some("Working from Lisbon"),
            now,
            PersonalPolicy::Restore,
        );
        assert_eq!(
            (v.decision, v.save_personal.as_deref()),
            (Decision::Set, Some("Working from Lisbon"))
        );
        // Meeting cancelled while ours is live: clear with an empty message.
        let v = decide(None, Some(&mine), Some("In a meeting until 10:30"), now, P);
        assert_eq!(
            (v.decision, v.message.as_deref()),
            (Decision::Clear, Some(""))
        );
        // Meeting cancelled but the person replaced our message: leave theirs.
        assert_eq!(
            decide(None, Some(&mine), Some("Lunch"), now, P).decision,
            Decision::Idle
        );
        // Planned status changed (meeting extended): set again.
        let later = desired("In a meeting until 11:00", "2026-11-27T11:00:00Z");
        assert_eq!(
            decide(
                Some(&later),
                Some(&mine),
                Some("In a meeting until 10:30"),
                now,
                P
            )
            .decision,
            Decision::Set
        );
        // XML-escaped read-back still counts as ours.
        let amp = record(Some("R&D sync until 10:30"), Some("2026-11-27T10:30:00Z"));
        let d2 = desired("R&D sync until 10:30", "2026-11-27T10:30:00Z");
        assert_eq!(
            decide(
                Some(&d2),
                Some(&amp),
                Some("R&amp;D sync until 10:30"),
                now,
                P
            )
            .decision,
            Decision::Keep
        );
    }

    #[test]
    fn a_superseded_status_is_published_again_once_the_persons_message_is_gone() {
        let d = desired("Out of office until Monday", "2026-11-27T23:00:00Z");
        let mine = record(
            Some("Out of office until Monday"),
            Some("2026-11-27T23:00:00Z"),
        );
        let now = t(NOW);
        // The person's own message (until 07:05) replaced ours: protect it,
        // and forget ours — it is no longer what Teams shows.
        let v = decide(Some(&d), Some(&mine), Some("Dentist"), now, P);
        assert_eq!((v.decision, v.forget), (Decision::Protect, true));
        // After 07:05 Graph shows nothing; with ours forgotten, it is set again.
        let forgotten = record(None, None);
        let v = decide(Some(&d), Some(&forgotten), None, now, P);
        assert_eq!(
            (v.decision, v.message.as_deref()),
            (Decision::Set, Some("Out of office until Monday"))
        );
        // But when the person cleared ours (nothing seen over it), it stays cleared.
        assert_eq!(
            decide(Some(&d), Some(&mine), None, now, P).decision,
            Decision::Protect
        );
    }

    #[test]
    fn restore_puts_the_saved_message_back() {
        let mut r = record(None, None);
        r.saved_message = Some("Working from Lisbon".into());
        let v = decide(None, Some(&r), None, t(NOW), PersonalPolicy::Restore);
        assert_eq!(
            (v.decision, v.message.as_deref()),
            (Decision::Restore, Some("Working from Lisbon"))
        );
        assert_eq!(
            decide(None, Some(&r), None, t(NOW), P).decision,
            Decision::Idle
        );
    }

    #[test]
    fn an_interrupted_write_is_adopted_not_repeated() {
        let mut r = record(None, None);
        r.pending_message = Some("In a meeting until 10:30".into());
        r.pending_expiry = Some(t("2026-11-27T10:30:00Z"));
        let d = desired("In a meeting until 10:30", "2026-11-27T10:30:00Z");
        let v = decide(
            Some(&d),
            Some(&r),
            Some("In a meeting until 10:30"),
            t(NOW),
            P,
        );
        assert_eq!(v.decision, Decision::Keep);
        assert!(v.adopt_pending);
        // Not applied: send it.
        assert_eq!(
            decide(Some(&d), Some(&r), None, t(NOW), P).decision,
            Decision::Set
        );
    }

    #[test]
    fn a_pass_is_data_writes_and_observations_included() {
        let now = t(NOW);
        let d = desired("In a meeting until 10:30", "2026-11-27T10:30:00Z");
        let input = |user: &str, presence: Option<&str>, record: Option<Record>| PassInput {
            user: user.into(),
            id: Ok(user.into()),
            desired: Ok(Some(d.clone())),
            record,
            presence: Ok(presence.map(str::to_string)),
        };
        let mut mine = record(
            Some("In a meeting until 10:30"),
            Some("2026-11-27T10:30:00Z"),
        );
        mine.user_id = "b".into();
        let steps = plan_pass(
            now,
            P,
            vec![
                input("a", None, None),
                input("b", Some("Lunch"), Some(mine)),
                PassInput {
                    desired: Err(Failure::new("a calendar failed", "boom")),
                    ..input("c", None, None)
                },
                PassInput {
                    id: Err(Failure::new("cannot resolve", "404")),
                    ..input("d@x", None, None)
                },
            ],
        );
        let summary: Vec<(&str, Decision, bool, usize)> = steps
            .iter()
            .map(|s| {
                (
                    s.user.as_str(),
                    s.decision,
                    s.intent.is_some(),
                    s.observations.len(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("a", Decision::Set, true, 0),
                ("b", Decision::Protect, false, 1),
                ("c", Decision::Failed, false, 0),
                ("d@x", Decision::Failed, false, 0),
            ]
        );
        assert_eq!(steps[1].observations, [Observation::Forget("b".into())]);
        assert_eq!(steps[2].error.as_deref(), Some("boom"));
        let intent = steps[0].intent.as_ref().unwrap();
        assert_eq!(intent.message.as_deref(), Some("In a meeting until 10:30"));
        assert_eq!(intent.expiry, Some(t("2026-11-27T10:30:00Z")));
    }
}
