//! Domain values shared by the pure core and the shell: an opted-in person
//! and their working hours, what calstatus remembers having published for
//! a person, and a problem found in a file (with file, line and key). Plain
//! data, no IO: the core depends on this module, and the shell (org
//! loading, the state store) fills it in.

use std::path::PathBuf;

use chrono::{DateTime, NaiveTime, Utc, Weekday};

use crate::calendar::Zone;
use crate::calendar::address::Source;
use crate::rules::{Localized, Rule};

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

/// Working hours: meetings entirely outside them set nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkingHours {
    /// Working days.
    pub days: Vec<Weekday>,
    /// Start of day.
    pub start: NaiveTime,
    /// End of day.
    pub end: NaiveTime,
}

/// One opted-in person, checked.
#[derive(Clone, Debug)]
pub struct User {
    /// The user file.
    pub file: PathBuf,
    /// Entra object id (or a UPN to resolve).
    pub id: String,
    /// Email, lower-case.
    pub email: Option<String>,
    /// Calendar sources, in the order given.
    pub sources: Vec<Source>,
    /// Zone.
    pub zone: Zone,
    /// Language code.
    pub language: String,
    /// `enabled = true`.
    pub enabled: bool,
    /// Own text for private meetings (when the org allows it).
    pub private_message: Option<Localized>,
    /// Working hours, if given.
    pub working_hours: Option<WorkingHours>,
    /// Personal rules, evaluated before the org's.
    pub rules: Vec<Rule>,
}
