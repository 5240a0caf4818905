//! The state store: what calstatus wrote for each person, an append-only
//! journal of every write attempt, cached UPN resolutions, and leases.
//! [`StateStore`] is the seam the sync engine writes through;
//! [`sqlite::SqliteStore`] is the default backend (one instance; its
//! blocking calls run off the async runtime), [`postgres::PgStore`] is
//! shared by several instances (people are divided into [`SHARDS`] held
//! under leases, and every intent is fenced by its shard's epoch), and
//! [`memory::MemoryStore`] is an in-memory one for tests. IO.

pub mod memory;
pub mod postgres;
pub mod sqlite;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use crate::domain::Record;
use crate::reconcile::Decision;
pub use crate::reconcile::{Intent, Observation};
pub use postgres::PgStore;
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
    /// PostgreSQL failed.
    #[error("state database {what}: {}", postgres::pg_detail(source))]
    Postgres {
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// No PostgreSQL connection could be had.
    #[error("cannot reach the state database: {0}")]
    Unreachable(String),
    /// A write was fenced off: a shard it needs is no longer held.
    #[error(
        "the lease on shard {shard} is no longer held (another instance took over); nothing was recorded"
    )]
    Fenced {
        /// The shard.
        shard: u16,
    },
    /// The shared database is in use by running instances.
    #[error("{0}")]
    InUse(String),
}

/// Opens the store `[state]` names: the SQLite file (`path`), or the
/// PostgreSQL database (`url`), migrated.
pub async fn open(
    config: &crate::config::Config,
) -> Result<std::sync::Arc<dyn StateStore>, StateError> {
    Ok(match pg_options(config)? {
        Some(o) => std::sync::Arc::new(PgStore::connect(&o).await?),
        None => std::sync::Arc::new(SqliteStore::open(&config.resolve(&config.file.state.path))?),
    })
}

/// Opens the store to read only (`sync --dry-run`): nothing is created,
/// migrated or locked; `None` when there is no state yet.
pub async fn open_read_only(
    config: &crate::config::Config,
) -> Result<Option<std::sync::Arc<dyn StateStore>>, StateError> {
    Ok(match pg_options(config)? {
        Some(o) => PgStore::connect_read_only(&o)
            .await?
            .map(|s| std::sync::Arc::new(s) as std::sync::Arc<dyn StateStore>),
        None => SqliteStore::open_read_only(&config.resolve(&config.file.state.path))?
            .map(|s| std::sync::Arc::new(s) as std::sync::Arc<dyn StateStore>),
    })
}

/// How to reach the PostgreSQL database, when `[state] url` names one.
pub fn pg_options(
    config: &crate::config::Config,
) -> Result<Option<postgres::PgOptions>, StateError> {
    let state = &config.file.state;
    let Some(url) = &state.url else {
        return Ok(None);
    };
    Ok(Some(postgres::PgOptions {
        url: url.clone(),
        password: postgres::password(state, &config.dir).map_err(StateError::Unreachable)?,
        tls: state.tls,
        ca_file: state.ca_file.as_ref().map(|f| config.resolve(f)),
    }))
}

/// People are divided into this many shards, by a stable hash of their
/// object id; an instance writes only for the shards it holds.
pub const SHARDS: u16 = 64;

/// The shard of an object id: stable across instances, versions and
/// restarts (SHA-256 of the lower-cased id).
pub fn shard_of(id: &str) -> u16 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(id.to_ascii_lowercase().as_bytes());
    u16::from_be_bytes([d[0], d[1]]) % SHARDS
}

/// What an instance holds after a heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// Shard → epoch (the fencing token: it grows at each change of holder).
    pub shards: BTreeMap<u16, i64>,
    /// Shards just taken from an instance that stopped renewing.
    pub taken_over: Vec<u16>,
    /// Live instances, this one included.
    pub live: usize,
    /// Presence operations the other instances reported spending within
    /// the budget window (a stopped one's last report counts for a window).
    pub others_spent: usize,
}

/// What an instance spent of the tenant's Graph budget: `ops` presence
/// operations within the last `window`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spend {
    /// Operations.
    pub ops: usize,
    /// The budget window.
    pub window: Duration,
}

impl Held {
    /// Every shard, for a store only one instance uses.
    pub fn all() -> Held {
        Held {
            shards: (0..SHARDS).map(|s| (s, 0)).collect(),
            taken_over: Vec::new(),
            live: 1,
            others_spent: 0,
        }
    }
}

/// The leases a pass's intents are recorded under: recording fails unless
/// every one still holds (same holder, same epoch, not expired by the
/// database's clock).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fence {
    /// The instance.
    pub holder: String,
    /// (shard, epoch) of the shards the intents belong to.
    pub shards: Vec<(u16, i64)>,
}

/// Whom this instance may write for, and under which fence: everyone (one
/// instance), or the people of the shards it holds now (several instances
/// on one database). A pass leaves out the people it does not hold.
pub trait Scope: Send + Sync + std::fmt::Debug {
    /// `true` when this instance may write for `id` (an object id; a file's
    /// literal for someone who could not be resolved) now.
    fn holds(&self, id: &str) -> bool;
    /// The fence for intents about these ids (`None`: not needed).
    fn fence(&self, ids: &[&str]) -> Option<Fence>;
}

impl Fence {
    /// The epoch this fence names for `id`'s shard.
    pub fn epoch_of(&self, id: &str) -> Option<i64> {
        let shard = shard_of(id);
        self.shards
            .iter()
            .find(|(s, _)| *s == shard)
            .map(|(_, e)| *e)
    }
}

/// A one-shot pass's lease: every shard it names, for the whole pass.
impl Scope for Fence {
    fn holds(&self, id: &str) -> bool {
        let shard = shard_of(id);
        self.shards.iter().any(|(s, _)| *s == shard)
    }

    fn fence(&self, _ids: &[&str]) -> Option<Fence> {
        Some(self.clone())
    }
}

/// The journal's decision and detail for a write found applied after an
/// interruption ([`Observation::AdoptPending`]).
pub(crate) const ADOPTION: (&str, &str) = (
    "adopt",
    "a write from an interrupted pass was found applied",
);

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
/// SQLite; every shard, taken while no instance runs, for a shared
/// database).
pub struct Lease {
    _held: Box<dyn Send + Sync>,
    /// What intents recorded under this lease are fenced with (shared stores).
    pub fence: Option<Fence>,
}

impl Lease {
    /// A lease that holds `guard` until dropped.
    pub fn new(guard: impl Send + Sync + 'static) -> Lease {
        Lease {
            _held: Box::new(guard),
            fence: None,
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
    /// Records, before sending, the writes about to go out — only while
    /// `fence` holds, when given (a shared store).
    async fn record_intents(
        &self,
        pass_id: &str,
        at: DateTime<Utc>,
        intents: Vec<Intent>,
        fence: Option<&Fence>,
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
    /// `true` when several instances share this store.
    fn shared(&self) -> bool {
        false
    }
    /// Renews `holder`'s shards and takes its fair share, by the store's
    /// clock, telling the others what it spent of the Graph budget. A
    /// store only one instance uses holds every shard.
    async fn heartbeat(
        &self,
        _holder: &str,
        _ttl: Duration,
        _spend: Spend,
    ) -> Result<Held, StateError> {
        Ok(Held::all())
    }
    /// Gives `holder`'s shards back at once (a clean stop).
    async fn release(&self, _holder: &str) -> Result<(), StateError> {
        Ok(())
    }
}
