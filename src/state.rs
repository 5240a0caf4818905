//! The state store: what calstatus wrote for each user, and an
//! append-only journal of every write attempt. Embedded SQLite (WAL),
//! versioned schema with migrations, transactional updates, and an
//! exclusive pass lock so two passes can never interleave on one database.
//! IO; called from async code through `spawn_blocking` or briefly inline.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

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
    /// Another pass holds the lock.
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
}

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

/// What calstatus remembers about one user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Object id.
    pub user_id: String,
    /// The message calstatus last published and still owns (None after a clear).
    pub message: Option<String>,
    /// Its expiry.
    pub expiry: Option<DateTime<Utc>>,
    /// The occurrences behind it (JSON).
    pub occurrences: String,
    /// A write that was about to be sent (crash recovery).
    pub pending_message: Option<String>,
    /// Its expiry.
    pub pending_expiry: Option<DateTime<Utc>>,
    /// The person's own message, saved for `restore`.
    pub saved_message: Option<String>,
    /// Consecutive failed writes.
    pub failures: i64,
}

/// One journal line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalEntry {
    /// Which pass.
    pub pass_id: String,
    /// Object id.
    pub user_id: String,
    /// set, clear, restore…
    pub decision: String,
    /// Message sent.
    pub message: Option<String>,
    /// Expiry sent.
    pub expiry: Option<DateTime<Utc>>,
    /// ok, failed, intent.
    pub outcome: String,
    /// Error text.
    pub detail: Option<String>,
}

/// The open store, holding the pass lock until dropped (a read-only store
/// holds none).
pub struct Store {
    conn: Connection,
    path: PathBuf,
    _lock: Option<std::fs::File>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn parse_ts(s: Option<String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|d| d.with_timezone(&Utc))
}

impl Store {
    /// Opens (creating and migrating) the database and takes the pass lock.
    pub fn open(path: &Path) -> Result<Store, StateError> {
        let lock_path = PathBuf::from(format!("{}.lock", path.display()));
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
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
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StateError::Busy(path.to_path_buf()));
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StateError::Lock {
                    path: lock_path,
                    source,
                });
            }
        }
        let sq = |source| StateError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(sq)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sq)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sq)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sq)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sq)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StateError::TooNew {
                path: path.to_path_buf(),
                found: version,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction().map_err(sq)?;
            tx.execute_batch(sql).map_err(sq)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(sq)?;
            tx.commit().map_err(sq)?;
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            _lock: Some(lock),
        })
    }

    /// Opens an existing database to read it only (`sync --dry-run`): no
    /// lock is taken, nothing is migrated, and no file is created — not the
    /// database, not its lock file, not WAL files. `None` when there is no
    /// database yet, or its schema is older than this binary's (the next
    /// live pass migrates it; until then nothing calstatus wrote is known).
    /// Works while a live pass holds the lock.
    pub fn open_read_only(path: &Path) -> Result<Option<Store>, StateError> {
        use rusqlite::OpenFlags;
        if !path.is_file() {
            return Ok(None);
        }
        let sq = |source| StateError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        // With a live writer the WAL files exist and a read-only connection
        // uses them; without one, `immutable` reads the file as it is
        // instead of creating -wal/-shm files next to it.
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        let shm = PathBuf::from(format!("{}-shm", path.display()));
        let mut uri =
            url::Url::from_file_path(std::path::absolute(path).map_err(|e| StateError::Lock {
                path: path.to_path_buf(),
                source: e,
            })?)
            .map_err(|()| StateError::Lock {
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
        .map_err(sq)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sq)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sq)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StateError::TooNew {
                path: path.to_path_buf(),
                found: version,
                known,
            });
        }
        if version < known {
            return Ok(None);
        }
        Ok(Some(Store {
            conn,
            path: path.to_path_buf(),
            _lock: None,
        }))
    }

    fn sq(&self) -> impl Fn(rusqlite::Error) -> StateError + '_ {
        |source| StateError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The schema version.
    pub fn schema_version(&self) -> Result<i64, StateError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(self.sq())
    }

    /// The record of a user, if any.
    pub fn record(&self, user: &str) -> Result<Option<Record>, StateError> {
        self.conn
            .query_row(
                "SELECT user_id, message, expiry, occurrences, pending_message, pending_expiry, saved_message, failures FROM users WHERE user_id = ?1",
                [user],
                |r| {
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
                },
            )
            .optional()
            .map_err(self.sq())
    }

    /// Records, before sending, the writes about to go out (one transaction).
    pub fn record_intents(
        &mut self,
        pass_id: &str,
        at: DateTime<Utc>,
        intents: &[Intent],
    ) -> Result<(), StateError> {
        let path = self.path.clone();
        let sq = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sq)?;
        for i in intents {
            tx.execute(
                "INSERT INTO users (user_id, pending_message, pending_expiry, pending_at, saved_message, saved_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, CASE WHEN ?5 IS NULL THEN NULL ELSE ?4 END)
                 ON CONFLICT(user_id) DO UPDATE SET pending_message = ?2, pending_expiry = ?3, pending_at = ?4,
                    saved_message = COALESCE(?5, saved_message),
                    saved_at = CASE WHEN ?5 IS NULL THEN saved_at ELSE ?4 END",
                params![i.user, i.message, i.expiry.map(ts), ts(at), i.save_personal],
            )
            .map_err(sq)?;
            tx.execute(
                "INSERT INTO journal (pass_id, at, user_id, decision, message, expiry, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'intent')",
                params![pass_id, ts(at), i.user, i.decision, i.message, i.expiry.map(ts)],
            )
            .map_err(sq)?;
        }
        tx.commit().map_err(sq)
    }

    /// Records the outcome of one write (one transaction).
    pub fn record_outcome(
        &mut self,
        pass_id: &str,
        at: DateTime<Utc>,
        intent: &Intent,
        result: Result<(), String>,
    ) -> Result<(), StateError> {
        let path = self.path.clone();
        let sq = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sq)?;
        match &result {
            Ok(()) => {
                // A clear or a restore leaves nothing of ours live.
                let ours = intent.decision == "set";
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
                        intent.decision == "restore" || intent.drop_saved,
                    ],
                )
                .map_err(sq)?;
            }
            Err(e) => {
                tx.execute(
                    "UPDATE users SET pending_message = NULL, pending_expiry = NULL, pending_at = NULL,
                        failures = failures + 1, last_error = ?2 WHERE user_id = ?1",
                    params![intent.user, e],
                )
                .map_err(sq)?;
            }
        }
        tx.execute(
            "INSERT INTO journal (pass_id, at, user_id, decision, message, expiry, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                pass_id,
                ts(at),
                intent.user,
                intent.decision,
                intent.message,
                intent.expiry.map(ts),
                if result.is_ok() { "ok" } else { "failed" },
                result.err()
            ],
        )
        .map_err(sq)?;
        tx.commit().map_err(sq)
    }

    /// Adopts a pending write that Graph shows as done (crash recovery).
    pub fn adopt_pending(
        &mut self,
        pass_id: &str,
        at: DateTime<Utc>,
        user: &str,
    ) -> Result<(), StateError> {
        let path = self.path.clone();
        let sq = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sq)?;
        tx.execute(
            "UPDATE users SET message = pending_message, expiry = pending_expiry, written_at = pending_at,
                pending_message = NULL, pending_expiry = NULL, pending_at = NULL WHERE user_id = ?1",
            [user],
        )
        .map_err(sq)?;
        tx.execute(
            "INSERT INTO journal (pass_id, at, user_id, decision, outcome, detail) VALUES (?1, ?2, ?3, 'adopt', 'ok', 'a write from an interrupted pass was found applied')",
            params![pass_id, ts(at), user],
        )
        .map_err(sq)?;
        tx.commit().map_err(sq)
    }

    /// Forgets our message (the person replaced it, or it expired).
    pub fn forget_message(&mut self, user: &str) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE users SET message = NULL, expiry = NULL WHERE user_id = ?1",
                [user],
            )
            .map(|_| ())
            .map_err(self.sq())
    }

    /// The journal, oldest first (for tests and audits).
    pub fn journal(&self) -> Result<Vec<JournalEntry>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT pass_id, user_id, decision, message, expiry, outcome, detail FROM journal ORDER BY id")
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(JournalEntry {
                    pass_id: r.get(0)?,
                    user_id: r.get(1)?,
                    decision: r.get(2)?,
                    message: r.get(3)?,
                    expiry: parse_ts(r.get(4)?),
                    outcome: r.get(5)?,
                    detail: r.get(6)?,
                })
            })
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// A cached UPN resolution.
    pub fn cached_upn(&self, upn: &str) -> Result<Option<String>, StateError> {
        self.conn
            .query_row(
                "SELECT object_id FROM upn_cache WHERE upn = ?1",
                [upn.to_ascii_lowercase()],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sq())
    }

    /// Caches a UPN resolution.
    pub fn cache_upn(&self, upn: &str, id: &str, at: DateTime<Utc>) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO upn_cache (upn, object_id, resolved_at) VALUES (?1, ?2, ?3)",
                params![upn.to_ascii_lowercase(), id, ts(at)],
            )
            .map(|_| ())
            .map_err(self.sq())
    }
}

/// A write about to be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    /// Object id.
    pub user: String,
    /// set, clear or restore.
    pub decision: String,
    /// The message sent ("" for a clear).
    pub message: Option<String>,
    /// The expiry sent.
    pub expiry: Option<DateTime<Utc>>,
    /// The occurrences behind it (JSON).
    pub occurrences: String,
    /// The person's message to save before overwriting it (restore policy).
    pub save_personal: Option<String>,
    /// Drop a saved personal message on success (the person replaced it).
    pub drop_saved: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_locks_and_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        // A second pass on the same database is refused while the first runs.
        assert!(matches!(Store::open(&path), Err(StateError::Busy(_))));
        let at = Utc::now();
        let intent = Intent {
            user: "u1".into(),
            decision: "set".into(),
            message: Some("In a meeting until 10:30".into()),
            expiry: Some(at),
            occurrences: "[]".into(),
            save_personal: None,
            drop_saved: false,
        };
        s.record_intents("p1", at, std::slice::from_ref(&intent))
            .unwrap();
        assert_eq!(
            s.record("u1").unwrap().unwrap().pending_message.as_deref(),
            Some("In a meeting until 10:30")
        );
        s.record_outcome("p1", at, &intent, Ok(())).unwrap();
        let r = s.record("u1").unwrap().unwrap();
        assert_eq!(r.message.as_deref(), Some("In a meeting until 10:30"));
        assert_eq!(r.pending_message, None);
        assert_eq!(s.journal().unwrap().len(), 2);
        // A read-only store works while the lock is held, and creates nothing.
        let before: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let ro = Store::open_read_only(&path).unwrap().unwrap();
        assert_eq!(
            ro.record("u1").unwrap().unwrap().message.as_deref(),
            Some("In a meeting until 10:30")
        );
        drop(ro);
        assert!(
            Store::open_read_only(&dir.path().join("none.db"))
                .unwrap()
                .is_none()
        );
        let mut after: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let mut before = before;
        before.sort();
        after.sort();
        assert_eq!(before, after);
        drop(s);
        // Reopening keeps everything and does not migrate twice.
        let s = Store::open(&path).unwrap();
        assert_eq!(
            s.record("u1").unwrap().unwrap().message.as_deref(),
            Some("In a meeting until 10:30")
        );
    }
}
