//! Domain values shared by the pure core and the shell: what calstatus
//! remembers having published for a person, and a problem found in a file
//! (with file, line and key). Plain data, no IO: the core depends on this
//! module, and the shell (state store, org loading) fills it in.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

/// A problem in a configuration, rule or user file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The key concerned, when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": {k}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What calstatus remembers about one person's status message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Object id.
    pub user_id: String,
    /// The message calstatus last published and still owns (None after a
    /// clear, or once the person's own message was seen over it).
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
