//! The daemon's calendars: every source read once and kept — its parsed
//! calendar, its validators and when it was last read well. A refresh asks
//! each source whether it changed (a conditional GET; a file's length,
//! time and inode) and parses only what did. A failed read keeps the last
//! good copy (never clearing anyone's status) and counts as stale. The last
//! good text of each source is also kept on disk next to the state store,
//! so a restart knows today's meetings without the network. IO.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use rayon::prelude::*;
use sha2::Digest;

use crate::calendar::source::{Fetcher, Read, Source, Validators};
use crate::calendar::{Calendar, ZoneCache, parse_with};
use crate::org::User;
use crate::pipeline::{FetchError, FetchLimits, ReadFn, UserSources, fetch_users_with, log_read};
use crate::plan::{CalendarInput, LoadError};

/// What is known of one source.
struct Entry {
    /// The last good parse, or why there was none yet.
    calendar: Result<Arc<Calendar>, LoadError>,
    /// What to ask next time.
    validators: Validators,
    /// When it was last read well (or found unchanged).
    good_at: Option<DateTime<Utc>>,
    /// The last read failed (the last good copy is kept).
    failing: bool,
}

/// What one refresh did.
#[derive(Clone, Debug, Default)]
pub struct Refreshed {
    /// Sources whose calendar changed (new text, or first read).
    pub changed: HashSet<Source>,
    /// Reads that failed in this refresh.
    pub errors: usize,
}

/// The daemon's calendars.
pub struct Calendars {
    fetcher: Fetcher,
    limits: FetchLimits,
    cache: Option<PathBuf>,
    zones: ZoneCache,
    entries: HashMap<Source, Entry>,
}

/// On-disk header of a cached calendar (one JSON line before the text).
#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    source: String,
    validators: Validators,
    read_at: DateTime<Utc>,
}

impl Calendars {
    /// Calendars read through `fetcher`, cached under `cache` (created
    /// owner-only: calendars hold private meetings) when given. The cache
    /// is loaded lazily, the first time a source is needed.
    pub fn new(fetcher: Fetcher, limits: FetchLimits, cache: Option<PathBuf>) -> Calendars {
        if let Some(dir) = &cache {
            let _ = create_private_dir(dir);
        }
        Calendars {
            fetcher,
            limits,
            cache,
            zones: ZoneCache::default(),
            entries: HashMap::new(),
        }
    }

    /// Replaces how sources are read (a configuration edit).
    pub fn set_fetcher(&mut self, fetcher: Fetcher, limits: FetchLimits) {
        self.fetcher = fetcher;
        self.limits = limits;
    }

    /// Loads the disk copies of `sources` not yet known (at start-up).
    pub fn load_cached(&mut self, sources: &[Source]) -> HashSet<Source> {
        let Some(dir) = self.cache.clone() else {
            return HashSet::new();
        };
        let wanted: Vec<&Source> = sources
            .iter()
            .filter(|s| !self.entries.contains_key(*s))
            .collect();
        let zones = &self.zones;
        let loaded: Vec<(Source, Header, Result<Calendar, LoadError>)> = wanted
            .par_iter()
            .filter_map(|s| {
                let (header, text) = read_cached(&dir, s)?;
                let cal = parse_with(&text, zones).map_err(|e| Arc::new(e) as LoadError);
                Some(((*s).clone(), header, cal))
            })
            .collect();
        let mut changed = HashSet::new();
        for (s, header, cal) in loaded {
            self.entries.insert(
                s.clone(),
                Entry {
                    calendar: cal.map(Arc::new),
                    validators: header.validators,
                    good_at: Some(header.read_at),
                    failing: false,
                },
            );
            changed.insert(s);
        }
        changed
    }

    /// Reads every source of `users` that may have changed, fairly and
    /// within the per-user deadline; parses what changed.
    pub async fn refresh(&mut self, users: &[&User], now: DateTime<Utc>) -> Refreshed {
        let known: Arc<HashMap<Source, Validators>> = Arc::new(
            self.entries
                .iter()
                .filter(|(_, e)| e.calendar.is_ok())
                .map(|(s, e)| (s.clone(), e.validators.clone()))
                .collect(),
        );
        let fetcher = self.fetcher.clone();
        let read: Box<ReadFn<Read>> = Box::new(move |s: Source| {
            let fetcher = fetcher.clone();
            let known = known.clone();
            async move {
                let r = fetcher.fetch_if_changed(&s, known.get(&s)).await;
                log_read(
                    &s,
                    r.as_ref().map(|r| match r {
                        Read::Text { text, .. } => Some(text.len()),
                        Read::Unchanged => None,
                    }),
                );
                r.map_err(|e| FetchError::Read {
                    what: s,
                    error: Arc::new(e),
                })
            }
            .boxed()
        });
        let lists = users.iter().map(|u| UserSources::of(u)).collect();
        let (reads, abandoned) =
            fetch_users_with(&*read, self.fetcher.policy().timeout, lists, self.limits).await;
        let mut out = Refreshed::default();
        let mut fresh: Vec<(Source, Arc<Read>)> = Vec::new();
        for (s, r) in reads {
            match r {
                Ok(r) => match &*r {
                    Read::Unchanged => self.mark_good(&s, now),
                    Read::Text { .. } => fresh.push((s, r)),
                },
                Err(e) => self.mark_failed(&s, Arc::new(e), &mut out),
            }
        }
        for (s, e) in abandoned {
            self.mark_failed(&s, Arc::new(e), &mut out);
        }
        self.parse_fresh(fresh, now, &mut out);
        out
    }

    fn mark_good(&mut self, s: &Source, now: DateTime<Utc>) {
        if let Some(e) = self.entries.get_mut(s) {
            e.good_at = Some(now);
            e.failing = false;
        }
    }

    fn mark_failed(&mut self, s: &Source, error: LoadError, out: &mut Refreshed) {
        out.errors += 1;
        match self.entries.get_mut(s) {
            // The last good copy stays in force.
            Some(e) if e.calendar.is_ok() => e.failing = true,
            Some(e) => {
                e.calendar = Err(error);
                e.failing = true;
            }
            None => {
                self.entries.insert(
                    s.clone(),
                    Entry {
                        calendar: Err(error),
                        validators: Validators::default(),
                        good_at: None,
                        failing: true,
                    },
                );
                out.changed.insert(s.clone());
            }
        }
    }

    /// Parses new texts (in parallel) and keeps them, on disk too.
    fn parse_fresh(
        &mut self,
        fresh: Vec<(Source, Arc<Read>)>,
        now: DateTime<Utc>,
        out: &mut Refreshed,
    ) {
        let zones = &self.zones;
        let cache = self.cache.as_deref();
        let parsed: Vec<(Source, Validators, Result<Calendar, LoadError>)> = fresh
            .par_iter()
            .filter_map(|(s, r)| match &**r {
                Read::Text { text, validators } => {
                    let cal = parse_with(text, zones).map_err(|e| Arc::new(e) as LoadError);
                    if let (Some(dir), Ok(_)) = (cache, &cal) {
                        write_cached(dir, s, validators, now, text);
                    }
                    Some((s.clone(), validators.clone(), cal))
                }
                Read::Unchanged => None,
            })
            .collect();
        for (s, validators, cal) in parsed {
            out.changed.insert(s.clone());
            self.entries.insert(
                s,
                Entry {
                    calendar: cal.map(Arc::new),
                    validators,
                    good_at: Some(now),
                    failing: false,
                },
            );
        }
    }

    /// The calendars of these sources, as planning wants them.
    pub fn inputs<'a>(
        &self,
        sources: impl IntoIterator<Item = &'a Source>,
    ) -> HashMap<Source, CalendarInput> {
        sources
            .into_iter()
            .filter_map(|s| {
                self.entries.get(s).map(|e| {
                    (
                        s.clone(),
                        CalendarInput {
                            label: s.to_string(),
                            calendar: e.calendar.clone(),
                        },
                    )
                })
            })
            .collect()
    }

    /// Sources whose last read failed, and the oldest last good copy among
    /// the sources in use.
    pub fn staleness(&self) -> (usize, Option<DateTime<Utc>>) {
        let stale = self.entries.values().filter(|e| e.failing).count();
        let oldest = self.entries.values().filter_map(|e| e.good_at).min();
        (stale, oldest)
    }

    /// Forgets sources nobody reads any more.
    pub fn retain(&mut self, used: &HashSet<&Source>) {
        self.entries.retain(|s, _| used.contains(s));
    }
}

/// The disk cache's file for a source (named by a hash: no secret of a
/// URL ends up in a file name).
fn cache_file(dir: &Path, s: &Source) -> PathBuf {
    let key = match s {
        Source::File(p) => format!("file:{}", p.display()),
        Source::Url(u) => format!("url:{}", u.as_str()),
    };
    let digest = sha2::Sha256::digest(key.as_bytes());
    let name: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{name}.ics"))
}

fn read_cached(dir: &Path, s: &Source) -> Option<(Header, String)> {
    let text = std::fs::read_to_string(cache_file(dir, s)).ok()?;
    let (head, body) = text.split_once('\n')?;
    let header: Header = serde_json::from_str(head).ok()?;
    Some((header, body.to_string()))
}

fn write_cached(dir: &Path, s: &Source, validators: &Validators, at: DateTime<Utc>, text: &str) {
    let header = Header {
        source: s.to_string(),
        validators: validators.clone(),
        read_at: at,
    };
    let Ok(head) = serde_json::to_string(&header) else {
        return;
    };
    let file = cache_file(dir, s);
    // Several instances may share the directory: each writes its own
    // temporary file, and the rename is atomic.
    let tmp = file.with_extension(format!("{}.tmp", std::process::id()));
    let written = write_private(&tmp, format!("{head}\n{text}").as_bytes())
        .and_then(|()| std::fs::rename(&tmp, &file));
    if let Err(e) = written {
        tracing::warn!(message = "Cannot keep a calendar's copy on disk.", source = %s, error = %e);
    }
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    std::io::Write::write_all(&mut o.open(path)?, bytes)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}
