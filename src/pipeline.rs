//! The shell around the pure core: fetch every calendar of the selected
//! users (concurrently, each failure kept against its user), then parse,
//! expand and plan in parallel (rayon). `plan`, `check` and `sync` start
//! here; a dry run stops after the plan is rendered.
//!
//! Fetching is fair and bounded ([`fetch_users`]): each distinct source is
//! read once per pass (every spelling of it, and every symbolic link to one
//! file, is one read) and its result is shared by all its readers; at most
//! `fetch.concurrency` reads run at once, one user never has more than a
//! quarter of them, and a user's calendars share one deadline of
//! 2 × `fetch.timeout` from the moment the user's reads start. A source
//! still pending when the deadline of every user waiting for it has passed
//! fails for those users with a "per-user deadline" error (and is tried
//! afresh for a later reader); a user who waits for a source another user
//! started waits under their own deadline.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt, Shared, WeakShared};

use rayon::prelude::*;

use crate::calendar::source::{Fetcher, Source, SourceError, scrub};
use crate::calendar::{Window, ZoneCache, parse_with};
use crate::org::{Org, User};
use crate::plan::{
    CalendarInput, LoadError, Plan, Settings, SourceProblem, UserPlan, WindowReport, plan_user,
};

/// Users planned together (bounds the calendars held in memory at once).
pub const PLAN_CHUNK: usize = 512;

/// The first chunk's size. Nothing is parsed before the first chunk's
/// files are read, so the chunks start small and double up to
/// [`PLAN_CHUNK`]: parsing starts after 32 files instead of 512, while the
/// next (larger) chunk is read.
const FIRST_CHUNK: usize = 32;

/// `users` in chunks of [`FIRST_CHUNK`], twice that, ... up to [`PLAN_CHUNK`].
fn plan_chunks<T>(mut users: &[T]) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    let mut size = FIRST_CHUNK;
    while !users.is_empty() {
        let (chunk, rest) = users.split_at(size.min(users.len()));
        chunks.push(chunk);
        users = rest;
        size = (size * 2).min(PLAN_CHUNK);
    }
    chunks
}

/// Errors that stop a whole run.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A fetch task died (a bug): nothing is planned rather than planning
    /// everyone without calendars.
    #[error("a calendar fetch task failed")]
    FetchTask(#[source] tokio::task::JoinError),
}

/// Why a source has no text. Cheap to clone: one result is shared by every
/// reader of the source.
#[derive(Clone, Debug, thiserror::Error)]
pub enum FetchError {
    /// Reading it failed.
    #[error("{}", error_text(.what, .error))]
    Read {
        /// What was read.
        what: Source,
        /// Why it failed.
        error: Arc<SourceError>,
    },
    /// Every reader's per-user deadline passed before it was read.
    #[error(
        "not read: this user's per-user deadline passed first (all of one user's calendars are read within {}, {} × fetch.timeout, {} at a time)",
        humantime::format_duration(*.deadline),
        USER_DEADLINE_TIMEOUTS,
        .per_user
    )]
    Deadline {
        /// The deadline.
        deadline: Duration,
        /// Reads at a time per user.
        per_user: usize,
    },
    /// It was not fetched for this user (a bug if it ever shows).
    #[error("not fetched")]
    NotFetched,
}

/// Which users to plan: all enabled ones, or the ids given.
pub fn select_users<'a>(org: &'a Org, ids: &[String]) -> (Vec<&'a User>, Vec<SourceProblem>) {
    let mut problems = Vec::new();
    let selected: Vec<&User> = org
        .users
        .iter()
        .filter(|u| u.enabled)
        .filter(|u| ids.is_empty() || ids.iter().any(|i| i.eq_ignore_ascii_case(&u.id)))
        .collect();
    for id in ids {
        if !selected.iter().any(|u| u.id.eq_ignore_ascii_case(id)) {
            let why = if org.users.iter().any(|u| u.id.eq_ignore_ascii_case(id)) {
                "this user's file has enabled = false"
            } else {
                "no valid user file opts this user in"
            };
            problems.push(SourceProblem {
                source: id.clone(),
                message: why.into(),
            });
        }
    }
    (selected, problems)
}

/// The org's planning settings.
pub fn settings(org: &Org) -> Settings {
    Settings {
        merge: org.config.file.plan.merge,
        merge_gap: org.merge_gap,
        private_message: org.private_message.clone(),
        internal_domains: org.internal_domains.clone(),
    }
}

/// One user reads at most `concurrency / PER_USER_SHARE` sources at once
/// (at least one).
pub const PER_USER_SHARE: usize = 4;

/// A user's calendars are all read within this many `fetch.timeout`s.
pub const USER_DEADLINE_TIMEOUTS: u32 = 2;

/// The bounds of a fetch stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchLimits {
    /// Reads in flight at once (`fetch.concurrency`).
    pub concurrency: usize,
    /// Reads in flight at once for one user.
    pub per_user: usize,
    /// All of one user's reads end within this, from when they start.
    pub user_deadline: Duration,
}

impl FetchLimits {
    /// The limits for `fetch.concurrency` and `fetch.timeout`.
    pub fn new(concurrency: usize, timeout: Duration) -> FetchLimits {
        let concurrency = concurrency.max(1);
        FetchLimits {
            concurrency,
            per_user: (concurrency / PER_USER_SHARE).max(1),
            user_deadline: timeout * USER_DEADLINE_TIMEOUTS,
        }
    }

    /// The error of a source given up at a user's deadline.
    fn deadline_error(&self) -> FetchError {
        FetchError::Deadline {
            deadline: self.user_deadline,
            per_user: self.per_user,
        }
    }
}

/// A source's text (shared by every spelling and reader of it), or why not.
pub type Text = Result<Arc<String>, FetchError>;

/// What a fetch stage read.
#[derive(Debug, Default)]
pub struct Fetched {
    /// Every source that was read or failed, under the spellings users gave.
    pub texts: HashMap<Source, Text>,
    /// Sources given up at the deadline of every user waiting for them,
    /// with the error those users get. A later reader may try them again.
    pub abandoned: HashMap<Source, FetchError>,
}

/// One user's sources for a fetch stage.
#[derive(Clone, Debug)]
pub struct UserSources {
    /// Who (the user file), for logs.
    pub label: String,
    /// What to read.
    pub sources: Vec<Source>,
}

impl UserSources {
    /// Every source of `u`.
    pub fn of(u: &User) -> UserSources {
        UserSources {
            label: u.file.display().to_string(),
            sources: u.sources.clone(),
        }
    }
}

/// Fetches the texts of every distinct source of `users` (see
/// [`fetch_users`]); sources given up at a user's deadline carry the
/// deadline error.
pub async fn fetch_all(
    fetcher: &Fetcher,
    users: &[&User],
    concurrency: usize,
) -> HashMap<Source, Text> {
    let limits = FetchLimits::new(concurrency, fetcher.policy().timeout);
    let lists = users.iter().map(|u| UserSources::of(u)).collect();
    let fetched = fetch_users(fetcher, lists, limits).await;
    let mut out = fetched.texts;
    out.extend(fetched.abandoned.into_iter().map(|(s, e)| (s, Err(e))));
    out
}

/// One read of one source, shared by all who wait for it.
type Pending<R> = Shared<BoxFuture<'static, Outcome<R>>>;

/// What a read produced (shared by every reader), or why it failed.
pub type Outcome<R> = Result<Arc<R>, FetchError>;

/// How a fetch stage reads one source.
pub type ReadFn<R> = dyn Fn(Source) -> BoxFuture<'static, Result<R, FetchError>> + Send + Sync;

/// A lock that is never held across a panic (nothing here panics holding
/// it), taken even so if it was.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One fetch stage's shared state.
struct Stage<'a, R> {
    read: &'a ReadFn<R>,
    limits: FetchLimits,
    /// Fetch slots (`limits.concurrency`); a user holds up to `per_user`.
    slots: tokio::sync::Semaphore,
    /// Finished reads, by what was read.
    done: Mutex<HashMap<Source, Outcome<R>>>,
    /// Reads under way. Weak: a read nobody waits for any more is dropped
    /// (its connection closed) and started afresh by its next reader.
    running: Mutex<HashMap<Source, WeakShared<BoxFuture<'static, Outcome<R>>>>>,
}

impl<R: Send + Sync + 'static> Stage<'_, R> {
    fn finished(&self, key: &Source) -> bool {
        lock(&self.done).contains_key(key)
    }

    /// The read of `key`: the one under way, or a new one.
    fn start(&self, key: &Source) -> Pending<R> {
        let mut running = lock(&self.running);
        if let Some(p) = running.get(key).and_then(WeakShared::upgrade) {
            return p;
        }
        let read = (self.read)(key.clone());
        let p = async move { read.await.map(Arc::new) }.boxed().shared();
        if let Some(w) = p.downgrade() {
            running.insert(key.clone(), w);
        }
        p
    }

    /// Waits for `key`'s read (joining one under way) and keeps its result.
    async fn wait(&self, key: Source) {
        let r = self.start(&key).await;
        lock(&self.done).entry(key).or_insert(r);
    }

    /// One user's reads: up to `per_user` at once, all within the deadline.
    async fn user(&self, label: String, keys: Vec<Source>) {
        let todo: Vec<Source> = keys.into_iter().filter(|k| !self.finished(k)).collect();
        if todo.is_empty() {
            return;
        }
        let width = todo.len().min(self.limits.per_user);
        // FIFO: users get their slots in order; the deadline starts with them.
        let Ok(_slots) = self.slots.acquire_many(width as u32).await else {
            return;
        };
        let reads = futures::stream::iter(todo.iter().cloned())
            .map(|k| self.wait(k))
            .buffer_unordered(width)
            .collect::<Vec<()>>();
        if tokio::time::timeout(self.limits.user_deadline, reads)
            .await
            .is_err()
        {
            let left = todo.iter().filter(|k| !self.finished(k)).count();
            tracing::warn!(
                message = "A user's calendars ran out of time.",
                user = %label,
                unread = left,
                deadline = %humantime::format_duration(self.limits.user_deadline)
            );
        }
    }
}

/// Reads a source's text with `fetcher`, logging the outcome.
fn read_text(
    fetcher: &Fetcher,
) -> impl Fn(Source) -> BoxFuture<'static, Result<String, FetchError>> + Send + Sync + use<> {
    let fetcher = fetcher.clone();
    move |s: Source| {
        let fetcher = fetcher.clone();
        async move {
            let r = fetcher.fetch(&s).await;
            log_read(&s, r.as_ref().map(String::len));
            r.map_err(|e| FetchError::Read {
                what: s,
                error: Arc::new(e),
            })
        }
        .boxed()
    }
}

/// Logs how a read went: bytes read (`Ok(None)`: unchanged), or the error.
pub fn log_read<E: std::fmt::Display>(s: &Source, r: Result<impl Into<Option<usize>>, &E>) {
    match r.map(Into::into) {
        Ok(Some(bytes)) => tracing::debug!(message = "Read a calendar.", source = %s, bytes),
        Ok(None) => tracing::debug!(message = "A calendar is unchanged.", source = %s),
        Err(e) => {
            let error = match s {
                Source::Url(u) => scrub(&e.to_string(), &[u]),
                Source::File(_) => e.to_string(),
            };
            tracing::warn!(message = "Failed to load a calendar.", source = %s, error = %error)
        }
    }
}

/// Fetches the sources of `users` fairly and within bounds: each distinct
/// source once (the same file through different symbolic links too), at
/// most `limits.concurrency` at once and `limits.per_user` for one user,
/// and all of one user's within `limits.user_deadline` of their start.
/// Users are served in order.
pub async fn fetch_users(
    fetcher: &Fetcher,
    users: Vec<UserSources>,
    limits: FetchLimits,
) -> Fetched {
    let read = read_text(fetcher);
    let (texts, abandoned) = fetch_users_with(&read, fetcher.policy().timeout, users, limits).await;
    Fetched { texts, abandoned }
}

/// [`fetch_users`] with any way of reading a source (`read`): the daemon
/// reads conditionally. `resolve_within` bounds resolving file paths.
#[allow(clippy::type_complexity)]
pub async fn fetch_users_with<R: Send + Sync + 'static>(
    read: &ReadFn<R>,
    resolve_within: Duration,
    users: Vec<UserSources>,
    limits: FetchLimits,
) -> (HashMap<Source, Outcome<R>>, HashMap<Source, FetchError>) {
    // What each source reads: files by their real path.
    let mut distinct: Vec<Source> = Vec::new();
    let mut seen: HashSet<&Source> = HashSet::new();
    for u in &users {
        for s in &u.sources {
            if seen.insert(s) {
                distinct.push(s.clone());
            }
        }
    }
    let keys = read_keys(&distinct, resolve_within).await;
    let key = |s: &Source| keys.get(s).cloned().unwrap_or_else(|| s.clone());
    let stage = Stage {
        read,
        limits,
        slots: tokio::sync::Semaphore::new(limits.concurrency),
        done: Mutex::new(HashMap::new()),
        running: Mutex::new(HashMap::new()),
    };
    let stage = &stage;
    futures::stream::iter(users)
        .map(|u| {
            let mut mine: Vec<Source> = Vec::with_capacity(u.sources.len());
            let mut own: HashSet<Source> = HashSet::new();
            for s in &u.sources {
                let k = key(s);
                if own.insert(k.clone()) {
                    mine.push(k);
                }
            }
            stage.user(u.label, mine)
        })
        .buffer_unordered(limits.concurrency)
        .collect::<Vec<()>>()
        .await;
    let done = std::mem::take(&mut *lock(&stage.done));
    let mut texts = HashMap::new();
    let mut abandoned = HashMap::new();
    for s in distinct {
        match done.get(&key(&s)) {
            Some(t) => {
                texts.insert(s, t.clone());
            }
            None => {
                abandoned.insert(s, limits.deadline_error());
            }
        }
    }
    (texts, abandoned)
}

/// What each source reads: a file's real path (so symbolic links to one
/// file are one read), a URL itself. Files that cannot be resolved (they
/// will fail to read, with the reason) stay as they are.
async fn read_keys(sources: &[Source], within: Duration) -> HashMap<Source, Source> {
    let files: Vec<Source> = sources
        .iter()
        .filter(|s| matches!(s, Source::File(_)))
        .cloned()
        .collect();
    if files.is_empty() {
        return HashMap::new();
    }
    let resolve = tokio::task::spawn_blocking(move || {
        let mut real = crate::calendar::source::RealPaths::default();
        files
            .into_iter()
            .filter_map(|s| match &s {
                Source::File(p) => real
                    .resolve(p)
                    .ok()
                    .map(|real| (s.clone(), Source::File(real))),
                Source::Url(_) => None,
            })
            .collect::<HashMap<Source, Source>>()
    });
    match tokio::time::timeout(within, resolve).await {
        Ok(Ok(keys)) => keys,
        _ => HashMap::new(),
    }
}

/// A fetch error as reported and logged: the source's secrets scrubbed
/// from the whole text (a last guard; `source` redacts as it builds errors).
fn error_text(source: &Source, e: &SourceError) -> String {
    match source {
        Source::Url(u) => scrub(&e.to_string(), &[u]),
        Source::File(_) => e.to_string(),
    }
}

/// Parses fetched texts (in parallel), each distinct text once: sources
/// sharing one text (links to one file) share the parsed calendar, and the
/// files of a run share their compiled VTIMEZONE blocks (`zones`).
pub fn parse_fetched(
    texts: HashMap<Source, Text>,
    zones: &ZoneCache,
) -> HashMap<Source, CalendarInput> {
    let mut distinct: Vec<Arc<String>> = Vec::new();
    let mut index: HashMap<*const String, usize> = HashMap::new();
    for t in texts.values().flatten() {
        index.entry(Arc::as_ptr(t)).or_insert_with(|| {
            distinct.push(t.clone());
            distinct.len() - 1
        });
    }
    let parsed: Vec<Result<Arc<crate::calendar::Calendar>, LoadError>> = distinct
        .par_iter()
        .map(|t| {
            parse_with(t, zones)
                .map(Arc::new)
                .map_err(|e| Arc::new(e) as LoadError)
        })
        .collect();
    drop(distinct);
    texts
        .into_iter()
        .map(|(s, t)| {
            let calendar = match t {
                Ok(text) => parsed[index[&Arc::as_ptr(&text)]].clone(),
                Err(e) => Err(Arc::new(e) as LoadError),
            };
            let label = s.to_string();
            (s, CalendarInput { label, calendar })
        })
        .collect()
}

/// Plans the selected users from parsed calendars (in parallel). Pure.
///
/// A calendar a user lists more than once — under several spellings
/// (sources are canonical), or as several links to one file (they share
/// one parsed calendar) — is read once, with a warning.
pub fn plan_users(
    org: &Org,
    users: &[&User],
    calendars: &HashMap<Source, CalendarInput>,
    window: Window,
) -> Vec<UserPlan> {
    plan_users_with(org, users, calendars, window, &|p| p)
}

/// [`plan_users`], each plan mapped by `each` on the thread that made it
/// (rendering a user's report there, in parallel with the others).
pub fn plan_users_with<T: Send>(
    org: &Org,
    users: &[&User],
    calendars: &HashMap<Source, CalendarInput>,
    window: Window,
    each: &(dyn Fn(UserPlan) -> T + Sync),
) -> Vec<T> {
    let settings = settings(org);
    users.par_iter().map(|u| {
        let mut inputs: Vec<CalendarInput> = Vec::with_capacity(u.sources.len());
        // How often each source is listed, and which input it went to.
        let mut listed: Vec<(&Source, usize)> = Vec::new();
        let mut at: HashMap<&Source, usize> = HashMap::with_capacity(u.sources.len());
        let mut same_file: Vec<SourceProblem> = Vec::new();
        let mut by_calendar: HashMap<*const crate::calendar::Calendar, usize> = HashMap::new();
        for s in &u.sources {
            if let Some(&i) = at.get(s) {
                listed[i].1 += 1;
                continue;
            }
            at.insert(s, listed.len());
            listed.push((s, 1));
            let input = calendars.get(s).cloned().unwrap_or_else(|| CalendarInput {
                label: s.to_string(),
                calendar: Err(Arc::new(FetchError::NotFetched)),
            });
            if let Ok(cal) = &input.calendar {
                match by_calendar.get(&Arc::as_ptr(cal)) {
                    Some(&i) => {
                        same_file.push(SourceProblem {
                            source: input.label.clone(),
                            message: format!(
                                "the same file as {} (a link to it); read once",
                                inputs[i].label
                            ),
                        });
                        continue;
                    }
                    None => {
                        by_calendar.insert(Arc::as_ptr(cal), inputs.len());
                    }
                }
            }
            inputs.push(input);
        }
        let mut plan = plan_user(u, &inputs, &org.rules, &settings, window);
        for (s, n) in listed.iter().filter(|(_, n)| *n > 1) {
            plan.warnings.push(SourceProblem {
                source: s.to_string(),
                message: format!(
                    "listed {n} times in this user's calendars (the same file or URL, spelt differently); read once"
                ),
            });
        }
        plan.warnings.extend(same_file);
        each(plan)
    })
    .collect()
}

/// Loads, fetches and plans: the dry-run pipeline.
pub async fn build_plan(org: &Org, window: Window, ids: &[String]) -> Result<Plan, PipelineError> {
    let mut users = Vec::new();
    let problems = build_plan_with(org, window, ids, &|p| p, |chunk| users.extend(chunk)).await?;
    Ok(Plan {
        window: WindowReport {
            from: window.from,
            to: window.to,
        },
        users,
        problems,
    })
}

/// [`build_plan`] without keeping the plans: users are planned in chunks,
/// each plan is mapped by `each` where it is made (in parallel), and every
/// chunk goes to `sink` in user order as soon as it is planned, so a report
/// can be written while later users are still being planned. Returns the
/// run's problems (`--user` ids not found, user files not loaded).
pub async fn build_plan_with<T: Send>(
    org: &Org,
    window: Window,
    ids: &[String],
    each: &(dyn Fn(UserPlan) -> T + Sync),
    mut sink: impl FnMut(Vec<T>),
) -> Result<Vec<SourceProblem>, PipelineError> {
    let fetcher = Fetcher::new(org.policy.clone());
    let (users, mut problems) = select_users(org, ids);
    // Users are planned in chunks so that memory stays bounded whatever the
    // org's size: a chunk's calendars are fetched, parsed (the texts are
    // dropped right there), planned, then released — except calendars that
    // later users also read, which are kept until their last reader.
    let mut readers = readers_of(&users);
    // Each source is fetched with the first chunk that reads it; the next
    // chunk's files are fetched while this chunk is parsed and planned. A
    // source given up at the deadlines of this chunk's readers is tried
    // again for a later reader, who gets their own deadline.
    let chunks: Vec<&[&User]> = plan_chunks(&users);
    let limits = FetchLimits::new(org.config.file.fetch.concurrency, fetcher.policy().timeout);
    let spawn_fetch = |chunk: &[&User], known: &HashSet<Source>| {
        let lists: Vec<UserSources> = chunk
            .iter()
            .map(|u| UserSources {
                label: u.file.display().to_string(),
                sources: u
                    .sources
                    .iter()
                    .filter(|s| !known.contains(*s))
                    .cloned()
                    .collect(),
            })
            .collect();
        let f = fetcher.clone();
        tokio::spawn(async move { fetch_users(&f, lists, limits).await })
    };
    let zones = ZoneCache::default();
    let mut calendars: HashMap<Source, CalendarInput> = HashMap::new();
    let mut next = chunks.first().map(|c| spawn_fetch(c, &HashSet::new()));
    for (k, chunk) in chunks.iter().enumerate() {
        let fetched = match next.take() {
            Some(h) => h.await.map_err(PipelineError::FetchTask)?,
            None => Fetched::default(),
        };
        let known: HashSet<Source> = calendars
            .keys()
            .chain(fetched.texts.keys())
            .cloned()
            .collect();
        next = chunks.get(k + 1).map(|c| spawn_fetch(c, &known));
        calendars.extend(parse_fetched(fetched.texts, &zones));
        calendars.extend(fetched.abandoned.iter().map(|(s, e)| {
            let input = CalendarInput {
                label: s.to_string(),
                calendar: Err(Arc::new(e.clone())),
            };
            (s.clone(), input)
        }));
        sink(plan_users_with(org, chunk, &calendars, window, each));
        for s in fetched.abandoned.keys() {
            calendars.remove(s);
        }
        release_read(chunk, &mut readers, &mut calendars);
    }
    problems.extend(org.user_problems.iter().map(SourceProblem::of_user_file));
    Ok(problems)
}

/// How many users read each source.
fn readers_of<'u>(users: &[&'u User]) -> HashMap<&'u Source, usize> {
    let mut readers: HashMap<&Source, usize> = HashMap::new();
    for u in users {
        for s in &u.sources {
            *readers.entry(s).or_insert(0) += 1;
        }
    }
    readers
}

/// Counts `chunk`'s reads off `readers` and drops the calendars nobody
/// later reads. Freeing a chunk's parsed calendars (every event's strings)
/// is a rayon task of its own, so that it runs beside the next chunk's
/// parsing instead of holding up the loop while the pool waits.
fn release_read(
    chunk: &[&User],
    readers: &mut HashMap<&Source, usize>,
    calendars: &mut HashMap<Source, CalendarInput>,
) {
    let mut released = Vec::new();
    for u in chunk {
        for s in &u.sources {
            if let Some(n) = readers.get_mut(s) {
                *n -= 1;
                if *n == 0 {
                    released.extend(calendars.remove(s));
                }
            }
        }
    }
    if !released.is_empty() {
        rayon::spawn(move || drop(released));
    }
}

impl SourceProblem {
    /// A user file's problem, as the report lists it (`file:line`, `key: message`).
    fn of_user_file(p: &crate::domain::Problem) -> SourceProblem {
        SourceProblem {
            source: match p.line {
                Some(l) => format!("{}:{l}", p.file.display()),
                None => p.file.display().to_string(),
            },
            message: match &p.key {
                Some(k) => format!("{k}: {}", p.message),
                None => p.message.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_double_up_to_the_limit_and_keep_every_user_in_order() {
        let users: Vec<usize> = (0..3000).collect();
        let chunks = plan_chunks(&users);
        let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [32, 64, 128, 256, 512, 512, 512, 512, 472]);
        assert_eq!(chunks.concat(), users);
        assert_eq!(plan_chunks(&users[..20]), [&users[..20]]);
        assert!(plan_chunks::<usize>(&[]).is_empty());
    }
}
