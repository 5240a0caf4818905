//! The state store: what calstatus wrote for each person, an append-only
//! journal of every write attempt, cached UPN resolutions, and the pass
//! lease. [`StateStore`] is the seam the sync engine writes through;
//! [`sqlite::SqliteStore`] is the default backend (its blocking calls run
//! off the async runtime) and [`memory::MemoryStore`] an in-memory one for
//! tests of the engine. IO.

pub mod memory;
pub mod sqlite;

use std::path::PathBuf;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use crate::domain::Record;
use crate::reconcile::Decision;
pub use crate::reconcile::{Intent, Observation};
pub use sqlite::SqliteStore;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// SQLite failed.
    #[error("state database {path}: {source}")]
    Sqlite {
        /// The database.
        path: PathBuf,
        /// The error.
        source: rusqlite::Error,
    },
    /// Another pass holds the lease.
    #[error(
        "another calstatus pass is running on {0} (lock file {0}.lock is held); try again when it ends"
    )]
    Busy(PathBuf),
    /// The lock file could not be opened.
    #[error("cannot open the lock file {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The database is newer than this binary.
    #[error(
        "state database {path} has schema version {found}, newer than this calstatus understands ({known}); upgrade calstatus"
    )]
    TooNew {
        /// The database.
        path: PathBuf,
        /// Found.
        found: i64,
        /// Known.
        known: i64,
    },
    /// A write was asked of a store opened to read only (`--dry-run`).
    #[error("the state store was opened read-only")]
    ReadOnly,
    /// The blocking task that ran a query died.
    #[error("a state store task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// How a journal line ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalOutcome {
    /// Recorded before sending.
    Intent,
    /// Graph accepted it.
    Ok,
    /// It failed (retried next pass).
    Failed,
    /// Found applied after an interruption.
    Adopted,
}

impl JournalOutcome {
    /// Its name in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            JournalOutcome::Intent => "intent",
            JournalOutcome::Ok => "ok",
            JournalOutcome::Failed => "failed",
            JournalOutcome::Adopted => "adopted",
        }
    }

    /// Reads a journal name back.
    pub fn parse(s: &str) -> Option<JournalOutcome> {
        Some(match s {
            "intent" => JournalOutcome::Intent,
            "ok" => JournalOutcome::Ok,
            "failed" => JournalOutcome::Failed,
            "adopted" | "adopt" => JournalOutcome::Adopted,
            _ => return None,
        })
    }
}

/// One journal line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalEntry {
    /// Which pass.
    pub pass_id: String,
    /// Object id.
    pub user_id: String,
    /// The decision written (None for an adoption).
    pub decision: Option<Decision>,
    /// Message sent.
    pub message: Option<String>,
    /// Expiry sent.
    pub expiry: Option<DateTime<Utc>>,
    /// How it ended.
    pub outcome: JournalOutcome,
    /// Error text.
    pub detail: Option<String>,
}

/// The outcome of one write, as the store records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteResult {
    /// What was sent.
    pub intent: Intent,
    /// `Err(reason)` when it failed.
    pub result: Result<(), String>,
}

/// Held while a pass (or a daemon) owns the right to write; released when
/// dropped. Each backend decides what holding means (a lock file for
/// SQLite; a row with an expiry renewed by heartbeat for a shared database).
pub struct Lease {
    _held: Box<dyn Send + Sync>,
}

impl Lease {
    /// A lease that holds `guard` until dropped.
    pub fn new(guard: impl Send + Sync + 'static) -> Lease {
        Lease {
            _held: Box::new(guard),
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lease")
    }
}

/// Where calstatus remembers what it wrote. Every method is one
/// transaction: a batch of intents or outcomes is all or nothing.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// The exclusive right to write (one pass at a time per store).
    async fn acquire_lease(&self) -> Result<Lease, StateError>;
    /// The records of these users (absent: nothing remembered).
    async fn records(
        &self,
        users: &[String],
    ) -> Result<std::collections::HashMap<String, Record>, StateError>;
    /// Applies what a pass observed (adoptions, forgotten messages).
    async fn observe(
        &self,
        pass_id: &str,
        at: DateTime<Utc>,
        observations: Vec<Observation>,
    ) -> Result<(), StateError>;
    /// Records, before sending, the writes about to go out.
    async fn record_intents(
        &self,
        pass_id: &str,
        at: DateTime<Utc>,
        intents: Vec<Intent>,
    ) -> Result<(), StateError>;
    /// Records the outcomes of writes (one batch).
    async fn record_outcomes(
        &self,
        pass_id: &str,
        at: DateTime<Utc>,
        outcomes: Vec<WriteResult>,
    ) -> Result<(), StateError>;
    /// A cached UPN → object id resolution.
    async fn cached_upn(&self, upn: &str) -> Result<Option<String>, StateError>;
    /// Caches a UPN resolution.
    async fn cache_upn(&self, upn: &str, id: &str, at: DateTime<Utc>) -> Result<(), StateError>;
    /// The journal, oldest first (audits, tests).
    async fn journal(&self) -> Result<Vec<JournalEntry>, StateError>;
}
