//! The seams of the sync engine and the one place that applies a pass:
//! a planned pass (`reconcile::plan_pass`, pure data) goes out through a
//! [`PresenceWriter`], its outcomes into a [`StateStore`](crate::state::StateStore),
//! and progress to an [`Observer`] (the CLI's progress bar, the daemon's
//! metrics). `sync` and `run` share [`apply`]; tests drive it with an
//! in-memory writer and store. IO only through the traits.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::graph::client::{OpError, Write};
use crate::graph::model::set_status_body;
use crate::reconcile::{Intent, Step};
use crate::state::{Fence, StateError, StateStore, WriteResult};

/// The results of a group of writes that finished together (a `$batch`, or
/// one direct request): (object id, result).
pub type WriteResults = Vec<(String, Result<(), OpError>)>;

/// Reads what Graph shows and who people are.
#[async_trait]
pub trait PresenceReader: Send + Sync {
    /// The current status message per object id (`None`: no message).
    async fn read_messages(
        &self,
        ids: &[String],
    ) -> HashMap<String, Result<Option<String>, OpError>>;
    /// The object id of a UPN.
    async fn resolve_upn(&self, upn: &str) -> Result<String, OpError>;
}

/// Sends status writes.
#[async_trait]
pub trait PresenceWriter: Send + Sync {
    /// Sends every write; `done` gets each group of results as it comes
    /// back (so they can be recorded while the rest is still in flight).
    async fn write(&self, writes: Vec<Write>, done: &(dyn Fn(WriteResults) + Send + Sync));
}

/// Watches a pass being applied.
pub trait Observer: Send + Sync {
    /// `n` writes are about to be sent.
    fn writes_started(&self, _n: usize) {}
    /// One write finished; `due` is when its status was planned to appear.
    fn written(&self, _user: &str, _result: &Result<(), OpError>, _due: Option<DateTime<Utc>>) {}
    /// Every write finished.
    fn writes_finished(&self) {}
}

/// Observes nothing.
pub struct NoObserver;

impl Observer for NoObserver {}

/// The request body of an intent.
pub fn write_of(intent: &Intent) -> Write {
    Write {
        user: intent.user.clone(),
        body: set_status_body(intent.message.as_deref().unwrap_or(""), intent.expiry),
        epoch: None,
    }
}

/// Applies a planned pass: records what was observed and the intents (each
/// one transaction; the intents only while `fence` holds, on a shared
/// store), sends the writes, and records their outcomes group by group as
/// they come back. Returns each write's result by object id.
/// `due` gives, per object id, the instant its status was planned for (for
/// observers measuring lag). A store failure while recording outcomes does
/// not stop the writes in flight; it is returned at the end.
pub async fn apply<W, S>(
    pass_id: &str,
    steps: &[Step],
    due: &HashMap<String, DateTime<Utc>>,
    fence: Option<&Fence>,
    writer: &W,
    store: &S,
    observer: &dyn Observer,
) -> Result<HashMap<String, Result<(), OpError>>, StateError>
where
    W: PresenceWriter + ?Sized,
    S: StateStore + ?Sized,
{
    let observations = steps
        .iter()
        .flat_map(|s| s.observations.iter().cloned())
        .collect();
    store.observe(pass_id, Utc::now(), observations).await?;
    let intents: Vec<Intent> = steps.iter().filter_map(|s| s.intent.clone()).collect();
    if intents.is_empty() {
        return Ok(HashMap::new());
    }
    store
        .record_intents(pass_id, Utc::now(), intents.clone(), fence)
        .await?;
    observer.writes_started(intents.len());
    // Each write carries the epoch of the lease it was recorded under: sent
    // only while that lease lasts (not after a lapse and a new lease).
    let writes: Vec<Write> = intents
        .iter()
        .map(|i| Write {
            epoch: fence.and_then(|f| f.epoch_of(&i.user)),
            ..write_of(i)
        })
        .collect();
    let by_user: HashMap<&str, &Intent> = intents.iter().map(|i| (i.user.as_str(), i)).collect();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<WriteResults>();
    let send = async move {
        writer
            .write(writes, &|group| {
                let _ = tx.send(group);
            })
            .await;
        // `tx` is dropped here: the recording loop below ends.
    };
    let record = async {
        let mut results = HashMap::new();
        let mut first_error: Option<StateError> = None;
        while let Some(group) = rx.recv().await {
            let mut outcomes = Vec::with_capacity(group.len());
            for (user, r) in &group {
                observer.written(user, r, due.get(user).copied());
                if let Some(intent) = by_user.get(user.as_str()) {
                    outcomes.push(WriteResult {
                        intent: (*intent).clone(),
                        result: r.as_ref().map(|_| ()).map_err(ToString::to_string),
                    });
                }
            }
            if let Err(e) = store.record_outcomes(pass_id, Utc::now(), outcomes).await {
                first_error.get_or_insert(e);
            }
            results.extend(group);
        }
        (results, first_error)
    };
    let ((), (results, first_error)) = tokio::join!(send, record);
    observer.writes_finished();
    match first_error {
        Some(e) => Err(e),
        None => Ok(results),
    }
}

/// How long after `due` a write landed (zero when early).
pub fn lag(due: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - due).to_std().unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::reconcile::{Decision, Desired, PassInput, PersonalPolicy, plan_pass};
    use crate::state::memory::MemoryStore;
    use crate::state::{JournalOutcome, StateStore};

    /// Accepts every write but one user's, in groups of two.
    struct Writer {
        refuse: &'static str,
        sent: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl PresenceWriter for Writer {
        async fn write(&self, writes: Vec<Write>, done: &(dyn Fn(WriteResults) + Send + Sync)) {
            for group in writes.chunks(2) {
                let results = group
                    .iter()
                    .map(|w| {
                        self.sent.lock().unwrap().push(w.user.clone());
                        let r = if w.user == self.refuse {
                            Err(OpError {
                                status: Some(404),
                                code: "NotFound".into(),
                                message: "no such user".into(),
                                retry_after: None,
                            })
                        } else {
                            Ok(())
                        };
                        (w.user.clone(), r)
                    })
                    .collect();
                done(results);
            }
        }
    }

    #[derive(Default)]
    struct Count(AtomicUsize, AtomicUsize);

    impl Observer for Count {
        fn writes_started(&self, n: usize) {
            self.0.store(n, Ordering::SeqCst);
        }
        fn written(&self, _: &str, _: &Result<(), OpError>, _: Option<DateTime<Utc>>) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_pass_is_applied_through_the_seams() {
        let now = Utc::now();
        let inputs = ["a", "b", "c"]
            .into_iter()
            .map(|u| PassInput {
                user: u.into(),
                id: Ok(u.into()),
                desired: Ok(Some(Desired {
                    message: "In a meeting".into(),
                    expiry: now + chrono::Duration::hours(1),
                    occurrences: "[]".into(),
                })),
                record: None,
                presence: Ok(None),
            })
            .collect();
        let steps = plan_pass(now, PersonalPolicy::Protect, inputs);
        let store = MemoryStore::new();
        let writer = Writer {
            refuse: "b",
            sent: Mutex::new(Vec::new()),
        };
        let seen = Count::default();
        let results = apply("p", &steps, &HashMap::new(), None, &writer, &store, &seen)
            .await
            .unwrap();
        assert_eq!(results.len(), 3);
        assert!(results["a"].is_ok() && results["b"].is_err() && results["c"].is_ok());
        assert_eq!(
            (seen.0.load(Ordering::SeqCst), seen.1.load(Ordering::SeqCst)),
            (3, 3)
        );
        let records = store.records(&["a".into(), "b".into()]).await.unwrap();
        assert_eq!(records["a"].message.as_deref(), Some("In a meeting"));
        assert_eq!(
            (records["b"].message.as_deref(), records["b"].failures),
            (None, 1)
        );
        let journal = store.journal().await.unwrap();
        let outcomes: Vec<_> = journal.iter().map(|j| j.outcome).collect();
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| **o == JournalOutcome::Intent)
                .count(),
            3
        );
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| **o == JournalOutcome::Failed)
                .count(),
            1
        );
        // Applying the same pass again (the next pass would keep instead)
        // is what plan_pass prevents: the records now say "published".
        let again = plan_pass(
            now,
            PersonalPolicy::Protect,
            vec![PassInput {
                user: "a".into(),
                id: Ok("a".into()),
                desired: Ok(Some(Desired {
                    message: "In a meeting".into(),
                    expiry: now + chrono::Duration::hours(1),
                    occurrences: "[]".into(),
                })),
                record: records.get("a").cloned(),
                presence: Ok(Some("In a meeting".into())),
            }],
        );
        assert_eq!(again[0].decision, Decision::Keep);
    }
}
