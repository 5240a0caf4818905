//! The default state store: embedded SQLite in WAL mode, a versioned schema
//! with migrations, one transaction per batch, and a lock file as the pass
//! lease. Every query runs on tokio's blocking pool, never on the async
//! runtime's threads. IO.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    Fence, Intent, JournalEntry, JournalOutcome, Lease, Observation, Record, StateError,
    StateStore, WriteResult,
};
use crate::reconcile::Decision;

/// Migrations, in order; index + 1 is the schema version they produce.
const MIGRATIONS: &[&str] = &[
    // 1: per-user record and the journal.
    "CREATE TABLE users (
        user_id TEXT PRIMARY KEY,
        message TEXT,
        expiry TEXT,
        occurrences TEXT NOT NULL DEFAULT '[]',
        written_at TEXT,
        pending_message TEXT,
        pending_expiry TEXT,
        pending_at TEXT,
        saved_message TEXT,
        saved_at TEXT,
        failures INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
     );
     CREATE TABLE journal (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        pass_id TEXT NOT NULL,
        at TEXT NOT NULL,
        user_id TEXT NOT NULL,
        decision TEXT NOT NULL,
        message TEXT,
        expiry TEXT,
        outcome TEXT NOT NULL,
        detail TEXT
     );
     CREATE INDEX journal_user ON journal(user_id, id);",
    // 2: cached UPN → object id resolutions.
    "CREATE TABLE upn_cache (upn TEXT PRIMARY KEY, object_id TEXT NOT NULL, resolved_at TEXT NOT NULL);",
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// A SQLite state store. Cheap to clone (one shared connection).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    path: PathBuf,
    read_only: bool,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn parse_ts(s: Option<String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|d| d.with_timezone(&Utc))
}

fn sqlite_error(path: &Path) -> impl Fn(rusqlite::Error) -> StateError + '_ {
    move |source| StateError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

impl SqliteStore {
    /// Opens (creating and migrating) the database. Takes no lease.
    pub fn open(path: &Path) -> Result<SqliteStore, StateError> {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let sq = sqlite_error(path);
        let mut conn = Connection::open(path).map_err(&sq)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(&sq)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(&sq)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(&sq)?;
        // No temporary files (a container's root may be read-only).
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(&sq)?;
        let version = schema_version(&conn, path)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction().map_err(&sq)?;
            tx.execute_batch(sql).map_err(&sq)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(&sq)?;
            tx.commit().map_err(&sq)?;
        }
        Ok(SqliteStore::from_conn(conn, path, false))
    }

    /// Opens an existing database to read it only (`sync --dry-run`): no
    /// lease can be taken, nothing is migrated, and no file is created —
    /// not the database, not its lock file, not WAL files. `None` when there
    /// is no database yet, or its schema is older than this binary's (the
    /// next live pass migrates it; until then nothing calstatus wrote is
    /// known). Works while a live pass holds the lease.
    pub fn open_read_only(path: &Path) -> Result<Option<SqliteStore>, StateError> {
        use rusqlite::OpenFlags;
        if !path.is_file() {
            return Ok(None);
        }
        let sq = sqlite_error(path);
        // With a live writer the WAL files exist and a read-only connection
        // uses them; without one, `immutable` reads the file as it is
        // instead of creating -wal/-shm files next to it.
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        let shm = PathBuf::from(format!("{}-shm", path.display()));
        let absolute = std::path::absolute(path).map_err(|source| StateError::Lock {
            path: path.to_path_buf(),
            source,
        })?;
        let mut uri = url::Url::from_file_path(&absolute).map_err(|()| StateError::Lock {
            path: path.to_path_buf(),
            source: std::io::Error::other("not an absolute path"),
        })?;
        if wal.exists() && shm.exists() {
            uri.set_query(Some("mode=ro"));
        } else {
            uri.set_query(Some("mode=ro&immutable=1"));
        }
        let conn = Connection::open_with_flags(
            uri.as_str(),
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(&sq)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(&sq)?;
        if schema_version(&conn, path)? < SCHEMA_VERSION {
            return Ok(None);
        }
        Ok(Some(SqliteStore::from_conn(conn, path, true)))
    }

    fn from_conn(conn: Connection, path: &Path, read_only: bool) -> SqliteStore {
        SqliteStore {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                path: path.to_path_buf(),
                read_only,
            }),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The schema version of the open database.
    pub async fn schema_version(&self) -> Result<i64, StateError> {
        self.run(|conn, path| schema_version(conn, path)).await
    }

    /// Runs `f` on the connection on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &Path) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn, &inner.path)
        })
        .await?
    }

    /// Like [`SqliteStore::run`], for writes: refused on a read-only store.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &Path) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        if self.inner.read_only {
            return Err(StateError::ReadOnly);
        }
        self.run(f).await
    }
}

/// Everything a SQLite state holds, for `calstatus state migrate`.
pub struct Dump {
    /// Every record.
    pub records: Vec<Record>,
    /// Every journal line: (row id, time, line).
    pub journal: Vec<(i64, DateTime<Utc>, JournalEntry)>,
    /// Every cached UPN: (UPN, object id, resolved at).
    pub upns: Vec<(String, String, DateTime<Utc>)>,
}

impl SqliteStore {
    /// Reads everything (one read transaction).
    pub async fn dump(&self) -> Result<Dump, StateError> {
        self.run(|conn, path| {
            let sq = sqlite_error(path);
            let tx = conn.transaction().map_err(&sq)?;
            let records = tx
                .prepare("SELECT user_id, message, expiry, occurrences, pending_message, pending_expiry, saved_message, failures FROM users ORDER BY user_id")
                .map_err(&sq)?
                .query_map([], |r| {
                    Ok(Record {
                        user_id: r.get(0)?,
                        message: r.get(1)?,
                        expiry: parse_ts(r.get(2)?),
                        occurrences: r.get(3)?,
                        pending_message: r.get(4)?,
                        pending_expiry: parse_ts(r.get(5)?),
                        saved_message: r.get(6)?,
                        failures: r.get(7)?,
                    })
                })
                .map_err(&sq)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(&sq)?;
            let journal = tx
                .prepare("SELECT id, at, pass_id, user_id, decision, message, expiry, outcome, detail FROM journal ORDER BY id")
                .map_err(&sq)?
                .query_map([], |r| {
                    let decision: String = r.get(4)?;
                    let outcome: String = r.get(7)?;
                    Ok((
                        r.get::<_, i64>(0)?,
                        parse_ts(r.get(1)?).unwrap_or_default(),
                        JournalEntry {
                            pass_id: r.get(2)?,
                            user_id: r.get(3)?,
                            decision: Decision::parse(&decision),
                            message: r.get(5)?,
                            expiry: parse_ts(r.get(6)?),
                            outcome: JournalOutcome::parse(&outcome)
                                .unwrap_or(JournalOutcome::Failed),
                            detail: r.get(8)?,
                        },
                    ))
                })
                .map_err(&sq)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(&sq)?;
            let upns = tx
                .prepare("SELECT upn, object_id, resolved_at FROM upn_cache ORDER BY upn")
                .map_err(&sq)?
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        parse_ts(r.get(2)?).unwrap_or_default(),
                    ))
                })
                .map_err(&sq)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(&sq)?;
            Ok(Dump {
                records,
                journal,
                upns,
            })
        })
        .await
    }
}

fn schema_version(conn: &Connection, path: &Path) -> Result<i64, StateError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sqlite_error(path))?;
    if version > SCHEMA_VERSION {
        return Err(StateError::TooNew {
            path: path.to_path_buf(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    Ok(version)
}

/// One journal line about to be written.
struct Line<'a> {
    pass_id: &'a str,
    at: DateTime<Utc>,
    user: &'a str,
    decision: &'a str,
    message: Option<&'a str>,
    expiry: Option<DateTime<Utc>>,
    outcome: JournalOutcome,
    detail: Option<&'a str>,
}

impl Line<'_> {
    fn insert(&self, tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<usize> {
        tx.execute(
            "INSERT INTO journal (pass_id, at, user_id, decision, message, expiry, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                self.pass_id,
                ts(self.at),
                self.user,
                self.decision,
                self.message,
                self.expiry.map(ts),
                self.outcome.as_str(),
                self.detail
            ],
        )
    }
}

#[async_trait]
impl StateStore for SqliteStore {
    async fn acquire_lease(&self) -> Result<Lease, StateError> {
        if self.inner.read_only {
            return Err(StateError::ReadOnly);
        }
        let path = self.inner.path.clone();
        let lock_path = PathBuf::from(format!("{}.lock", path.display()));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| StateError::Lock {
                path: lock_path.clone(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => Ok(Lease::new(lock)),
            Err(std::fs::TryLockError::WouldBlock) => Err(StateError::Busy(path)),
            Err(std::fs::TryLockError::Error(source)) => Err(StateError::Lock {
                path: lock_path,
                source,
            }),
        }
    }

    async fn records(&self, users: &[String]) -> Result<HashMap<String, Record>, StateError> {
        let users = users.to_vec();
        self.run(move |conn, path| {
            let sq = sqlite_error(path);
            let mut stmt = conn
                .prepare_cached(
                    "SELECT user_id, message, expiry, occurrences, pending_message, pending_expiry, saved_message, failures FROM users WHERE user_id = ?1",
                )
                .map_err(&sq)?;
            let mut out = HashMap::new();
            for u in users {
                let r = stmt
                    .query_row([&u], |r| {
                        Ok(Record {
                            user_id: r.get(0)?,
                            message: r.get(1)?,
                            expiry: parse_ts(r.get(2)?),
                            occurrences: r.get(3)?,
                            pending_message: r.get(4)?,
                            pending_expiry: parse_ts(r.get(5)?),
                            saved_message: r.get(6)?,
                            failures: r.get(7)?,
                        })
                    })
                    .optional()
                    .map_err(&sq)?;
                if let Some(r) = r {
                    out.insert(u, r);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn observe(
        &self,
        pass_id: &str,
        at: DateTime<Utc>,
        observations: Vec<Observation>,
    ) -> Result<(), StateError> {
        if observations.is_empty() {
            return Ok(());
        }
        let pass_id = pass_id.to_string();
        self.write(move |conn, path| {
            let sq = sqlite_error(path);
            let tx = conn.transaction().map_err(&sq)?;
            for o in &observations {
                match o {
                    Observation::AdoptPending(user) => {
                        tx.execute(
                            "UPDATE users SET message = pending_message, expiry = pending_expiry, written_at = pending_at,
                                pending_message = NULL, pending_expiry = NULL, pending_at = NULL WHERE user_id = ?1",
                            [user],
                        )
                        .map_err(&sq)?;
                        Line {
                            pass_id: &pass_id,
                            at,
                            user,
                            decision: super::ADOPTION.0,
                            message: None,
                            expiry: None,
                            outcome: JournalOutcome::Adopted,
                            detail: Some(super::ADOPTION.1),
                        }
                        .insert(&tx)
                        .map_err(&sq)?;
                    }
                    Observation::Forget(user) => {
                        tx.execute(
                            "UPDATE users SET message = NULL, expiry = NULL WHERE user_id = ?1",
                            [user],
                        )
                        .map_err(&sq)?;
                    }
                }
            }
            tx.commit().map_err(&sq)
        })
        .await
    }

    async fn record_intents(
        &self,
        pass_id: &str,
        at: DateTime<Utc>,
        intents: Vec<Intent>,
        _fence: Option<&Fence>,
    ) -> Result<(), StateError> {
        if intents.is_empty() {
            return Ok(());
        }
        let pass_id = pass_id.to_string();
        self.write(move |conn, path| {
            let sq = sqlite_error(path);
            let tx = conn.transaction().map_err(&sq)?;
            for i in &intents {
                tx.execute(
                    "INSERT INTO users (user_id, pending_message, pending_expiry, pending_at, saved_message, saved_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, CASE WHEN ?5 IS NULL THEN NULL ELSE ?4 END)
                     ON CONFLICT(user_id) DO UPDATE SET pending_message = ?2, pending_expiry = ?3, pending_at = ?4,
                        saved_message = COALESCE(?5, saved_message),
                        saved_at = CASE WHEN ?5 IS NULL THEN saved_at ELSE ?4 END",
                    params![i.user, i.message, i.expiry.map(ts), ts(at), i.save_personal],
                )
                .map_err(&sq)?;
                Line {
                    pass_id: &pass_id,
                    at,
                    user: &i.user,
                    decision: i.decision.as_str(),
                    message: i.message.as_deref(),
                    expiry: i.expiry,
                    outcome: JournalOutcome::Intent,
                    detail: None,
                }
                .insert(&tx)
                .map_err(&sq)?;
            }
            tx.commit().map_err(&sq)
        })
        .await
    }

    async fn record_outcomes(
        &self,
        pass_id: &str,
        at: DateTime<Utc>,
        outcomes: Vec<WriteResult>,
    ) -> Result<(), StateError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let pass_id = pass_id.to_string();
        self.write(move |conn, path| {
            let sq = sqlite_error(path);
            let tx = conn.transaction().map_err(&sq)?;
            for WriteResult { intent, result } in &outcomes {
                match result {
                    Ok(()) => {
                        // A clear or a restore leaves nothing of ours live.
                        let ours = intent.decision == Decision::Set;
                        tx.execute(
                            "UPDATE users SET message = ?2, expiry = ?3, occurrences = ?4, written_at = ?5,
                                pending_message = NULL, pending_expiry = NULL, pending_at = NULL,
                                saved_message = CASE WHEN ?6 THEN NULL ELSE saved_message END,
                                failures = 0, last_error = NULL
                             WHERE user_id = ?1",
                            params![
                                intent.user,
                                if ours { intent.message.clone() } else { None },
                                if ours { intent.expiry.map(ts) } else { None },
                                intent.occurrences,
                                ts(at),
                                intent.decision == Decision::Restore,
                            ],
                        )
                        .map_err(&sq)?;
                    }
                    Err(e) => {
                        tx.execute(
                            "UPDATE users SET pending_message = NULL, pending_expiry = NULL, pending_at = NULL,
                                failures = failures + 1, last_error = ?2 WHERE user_id = ?1",
                            params![intent.user, e],
                        )
                        .map_err(&sq)?;
                    }
                }
                Line {
                    pass_id: &pass_id,
                    at,
                    user: &intent.user,
                    decision: intent.decision.as_str(),
                    message: intent.message.as_deref(),
                    expiry: intent.expiry,
                    outcome: if result.is_ok() {
                        JournalOutcome::Ok
                    } else {
                        JournalOutcome::Failed
                    },
                    detail: result.as_ref().err().map(String::as_str),
                }
                .insert(&tx)
                .map_err(&sq)?;
            }
            tx.commit().map_err(&sq)
        })
        .await
    }

    async fn cached_upn(&self, upn: &str) -> Result<Option<String>, StateError> {
        let upn = upn.to_ascii_lowercase();
        self.run(move |conn, path| {
            conn.query_row(
                "SELECT object_id FROM upn_cache WHERE upn = ?1",
                [upn],
                |r| r.get(0),
            )
            .optional()
            .map_err(sqlite_error(path))
        })
        .await
    }

    async fn cache_upn(&self, upn: &str, id: &str, at: DateTime<Utc>) -> Result<(), StateError> {
        let (upn, id) = (upn.to_ascii_lowercase(), id.to_string());
        self.write(move |conn, path| {
            conn.execute(
                "INSERT OR REPLACE INTO upn_cache (upn, object_id, resolved_at) VALUES (?1, ?2, ?3)",
                params![upn, id, ts(at)],
            )
            .map(|_| ())
            .map_err(sqlite_error(path))
        })
        .await
    }

    async fn journal(&self) -> Result<Vec<JournalEntry>, StateError> {
        self.run(|conn, path| {
            let sq = sqlite_error(path);
            let mut stmt = conn
                .prepare("SELECT pass_id, user_id, decision, message, expiry, outcome, detail FROM journal ORDER BY id")
                .map_err(&sq)?;
            let rows = stmt
                .query_map([], |r| {
                    let decision: String = r.get(2)?;
                    let outcome: String = r.get(5)?;
                    Ok(JournalEntry {
                        pass_id: r.get(0)?,
                        user_id: r.get(1)?,
                        decision: Decision::parse(&decision),
                        message: r.get(3)?,
                        expiry: parse_ts(r.get(4)?),
                        outcome: JournalOutcome::parse(&outcome).unwrap_or(JournalOutcome::Failed),
                        detail: r.get(6)?,
                    })
                })
                .map_err(&sq)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(&sq)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn migrates_leases_and_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().await.unwrap(), SCHEMA_VERSION);
        let lease = s.acquire_lease().await.unwrap();
        // A second pass on the same database is refused while the first runs.
        let other = SqliteStore::open(&path).unwrap();
        assert!(matches!(
            other.acquire_lease().await,
            Err(StateError::Busy(_))
        ));
        let at = Utc::now();
        let intent = Intent {
            user: "u1".into(),
            decision: Decision::Set,
            message: Some("In a meeting until 10:30".into()),
            expiry: Some(at),
            occurrences: "[]".into(),
            save_personal: None,
        };
        s.record_intents("p1", at, vec![intent.clone()], None)
            .await
            .unwrap();
        let r = s.records(&["u1".into()]).await.unwrap();
        assert_eq!(
            r["u1"].pending_message.as_deref(),
            Some("In a meeting until 10:30")
        );
        s.record_outcomes(
            "p1",
            at,
            vec![WriteResult {
                intent,
                result: Ok(()),
            }],
        )
        .await
        .unwrap();
        let r = &s.records(&["u1".into()]).await.unwrap()["u1"];
        assert_eq!(r.message.as_deref(), Some("In a meeting until 10:30"));
        assert_eq!(r.pending_message, None);
        let journal = s.journal().await.unwrap();
        assert_eq!(
            journal.iter().map(|j| j.outcome).collect::<Vec<_>>(),
            [JournalOutcome::Intent, JournalOutcome::Ok]
        );
        assert_eq!(journal[0].decision, Some(Decision::Set));
        // A read-only store works while the lease is held, and creates nothing.
        let listing = || {
            let mut v: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            v.sort();
            v
        };
        let before = listing();
        let ro = SqliteStore::open_read_only(&path).unwrap().unwrap();
        assert_eq!(
            ro.records(&["u1".into()]).await.unwrap()["u1"]
                .message
                .as_deref(),
            Some("In a meeting until 10:30")
        );
        assert!(matches!(
            ro.cache_upn("a@b", "x", at).await,
            Err(StateError::ReadOnly)
        ));
        drop(ro);
        assert!(
            SqliteStore::open_read_only(&dir.path().join("none.db"))
                .unwrap()
                .is_none()
        );
        assert_eq!(listing(), before);
        drop((lease, s, other));
        // Reopening keeps everything and does not migrate twice.
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().await.unwrap(), SCHEMA_VERSION);
        assert_eq!(
            s.records(&["u1".into()]).await.unwrap()["u1"]
                .message
                .as_deref(),
            Some("In a meeting until 10:30")
        );
    }
}
