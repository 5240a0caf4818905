//! An in-memory state store with the same semantics as the SQLite one, for
//! tests of the sync engine (no files, no blocking pool). Not for
//! production: nothing survives the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    Fence, Intent, JournalEntry, JournalOutcome, Lease, Observation, Record, StateError,
    StateStore, WriteResult,
};
use crate::reconcile::Decision;

/// The store; clones share the same data.
#[derive(Clone, Default)]
pub struct MemoryStore {
    data: Arc<Mutex<Data>>,
}

#[derive(Default)]
struct Data {
    records: HashMap<String, Record>,
    journal: Vec<JournalEntry>,
    upns: HashMap<String, String>,
    leased: bool,
}

/// Gives the lease back when dropped.
struct Held(Arc<Mutex<Data>>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Ok(mut d) = self.0.lock() {
            d.leased = false;
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn line(
    pass_id: &str,
    user: &str,
    intent: Option<&Intent>,
    outcome: JournalOutcome,
) -> JournalEntry {
    JournalEntry {
        pass_id: pass_id.to_string(),
        user_id: user.to_string(),
        decision: intent.map(|i| i.decision),
        message: intent.and_then(|i| i.message.clone()),
        expiry: intent.and_then(|i| i.expiry),
        outcome,
        detail: None,
    }
}

#[async_trait]
impl StateStore for MemoryStore {
    async fn acquire_lease(&self) -> Result<Lease, StateError> {
        let mut d = self.data();
        if d.leased {
            return Err(StateError::Busy("memory".into()));
        }
        d.leased = true;
        Ok(Lease::new(Held(self.data.clone())))
    }

    async fn records(&self, users: &[String]) -> Result<HashMap<String, Record>, StateError> {
        let d = self.data();
        Ok(users
            .iter()
            .filter_map(|u| d.records.get(u).map(|r| (u.clone(), r.clone())))
            .collect())
    }

    async fn observe(
        &self,
        pass_id: &str,
        _at: DateTime<Utc>,
        observations: Vec<Observation>,
    ) -> Result<(), StateError> {
        let mut d = self.data();
        for o in observations {
            match o {
                Observation::AdoptPending(user) => {
                    if let Some(r) = d.records.get_mut(&user) {
                        r.message = r.pending_message.take();
                        r.expiry = r.pending_expiry.take();
                    }
                    d.journal
                        .push(line(pass_id, &user, None, JournalOutcome::Adopted));
                }
                Observation::Forget(user) => {
                    if let Some(r) = d.records.get_mut(&user) {
                        r.message = None;
                        r.expiry = None;
                    }
                }
            }
        }
        Ok(())
    }

    async fn record_intents(
        &self,
        pass_id: &str,
        _at: DateTime<Utc>,
        intents: Vec<Intent>,
        _fence: Option<&Fence>,
    ) -> Result<(), StateError> {
        let mut d = self.data();
        for i in intents {
            let r = d.records.entry(i.user.clone()).or_insert_with(|| Record {
                user_id: i.user.clone(),
                occurrences: "[]".into(),
                ..Record::default()
            });
            r.pending_message = i.message.clone();
            r.pending_expiry = i.expiry;
            if i.save_personal.is_some() {
                r.saved_message = i.save_personal.clone();
            }
            d.journal
                .push(line(pass_id, &i.user, Some(&i), JournalOutcome::Intent));
        }
        Ok(())
    }

    async fn record_outcomes(
        &self,
        pass_id: &str,
        _at: DateTime<Utc>,
        outcomes: Vec<WriteResult>,
    ) -> Result<(), StateError> {
        let mut d = self.data();
        for WriteResult { intent, result } in outcomes {
            if let Some(r) = d.records.get_mut(&intent.user) {
                r.pending_message = None;
                r.pending_expiry = None;
                match &result {
                    Ok(()) => {
                        let ours = intent.decision == Decision::Set;
                        r.message = intent.message.clone().filter(|_| ours);
                        r.expiry = intent.expiry.filter(|_| ours);
                        r.occurrences = intent.occurrences.clone();
                        if intent.decision == Decision::Restore {
                            r.saved_message = None;
                        }
                        r.failures = 0;
                    }
                    Err(_) => r.failures += 1,
                }
            }
            let mut l = line(
                pass_id,
                &intent.user,
                Some(&intent),
                if result.is_ok() {
                    JournalOutcome::Ok
                } else {
                    JournalOutcome::Failed
                },
            );
            l.detail = result.err();
            d.journal.push(l);
        }
        Ok(())
    }

    async fn cached_upn(&self, upn: &str) -> Result<Option<String>, StateError> {
        Ok(self.data().upns.get(&upn.to_ascii_lowercase()).cloned())
    }

    async fn cache_upn(&self, upn: &str, id: &str, _at: DateTime<Utc>) -> Result<(), StateError> {
        self.data()
            .upns
            .insert(upn.to_ascii_lowercase(), id.to_string());
        Ok(())
    }

    async fn journal(&self) -> Result<Vec<JournalEntry>, StateError> {
        Ok(self.data().journal.clone())
    }
}
