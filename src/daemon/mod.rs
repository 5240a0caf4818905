//! `calstatus run`: the always-on bot. It keeps a plan of every opted-in
//! person's statuses up to `[run] horizon` ahead and wakes exactly when
//! something is due — a status's start minus the lead time, its end, the
//! next refresh — to run a sync pass for the people concerned (the same
//! `sync::pass` and `engine::apply` as `calstatus sync`). Every `refresh` it
//! re-reads what changed (calendars by conditional GET, configuration and
//! user files by their metadata), re-plans whom that touches, and
//! reconciles those whose status now differs. A failed read, a broken edit
//! or a Graph outage never clears anyone's status: the last good copy
//! stays in force. The shell: clock, signals, IO.

pub mod calendars;
pub mod http;
pub mod metrics;
pub mod schedule;
pub mod shards;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use tokio_util::sync::CancellationToken;

use crate::calendar::source::{Fetcher, Source};
use crate::calendar::{Window, Zone};
use crate::engine::Observer;
use crate::exit::Exit;
use crate::graph::client::{Answered, Gate, GraphClient};
use crate::org::{Org, User};
use crate::pipeline::FetchLimits;
use crate::plan::{CalendarInput, Plan, UserPlan, WindowReport, status_at};
use crate::state::{Scope, StateStore};
use crate::sync::{SyncError, SyncOptions, SyncReport};

use calendars::{Calendars, Refreshed};
use http::Health;
use metrics::Metrics;
use schedule::Schedule;
use shards::Shards;

/// The longest the loop sleeps without looking at the wall clock again
/// (a suspended machine or a stepped clock is noticed within this).
pub const CLOCK_CHECK: StdDuration = StdDuration::from_secs(30);
/// A wall clock that moved this much more (or less) than the monotonic
/// clock has jumped.
pub const JUMP_TOLERANCE: StdDuration = StdDuration::from_secs(2);
/// On SIGTERM/SIGINT, writes in flight get this long to finish (the rest
/// stay recorded as pending, adopted or resent after a restart).
pub const SHUTDOWN_GRACE: StdDuration = StdDuration::from_secs(4);

/// Why a pass runs (logs).
#[derive(Clone, Copy, Debug)]
enum Why {
    Start,
    Due,
    Changed,
    Removed,
    ClockJump,
    Takeover,
}

/// The clocks the loop reads: wall time for the schedule, a monotonic
/// clock to tell time passing from the wall clock jumping. Tests drive
/// both on tokio's paused time.
pub trait Clock: Send + Sync {
    /// Wall time.
    fn now(&self) -> DateTime<Utc>;
    /// Monotonic time.
    fn mono(&self) -> tokio::time::Instant;
}

/// The machine's clocks.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn mono(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }
}

/// Everything the loop does IO through: the configuration, calendars,
/// Graph and the state store. [`LiveWorld`] is the real one; tests
/// simulate one.
#[async_trait::async_trait]
pub trait World: Send {
    /// The configuration in force.
    fn org(&self) -> Arc<Org>;
    /// Reloads the configuration if its files changed. `None` when nothing
    /// changed or the edit was rejected (`Err` then: why); `Some(left)`
    /// when a new configuration took effect, with the users who left.
    async fn reload(&mut self) -> Result<Option<Vec<String>>, Vec<String>>;
    /// Loads the kept copies of calendars (start-up, no network).
    fn load_cached(&mut self, sources: &[Source]);
    /// Re-reads the calendars of `users`.
    async fn refresh_calendars(&mut self, users: &[User], now: DateTime<Utc>) -> Refreshed;
    /// (calendars whose last read failed, oldest last good copy).
    fn staleness(&self) -> (usize, Option<DateTime<Utc>>);
    /// The calendars of these sources, for planning.
    fn inputs(&self, sources: &[&Source]) -> HashMap<Source, CalendarInput>;
    /// One sync pass over `plan`.
    async fn pass(
        &self,
        plan: &Plan,
        opts: &SyncOptions,
        observer: &dyn Observer,
    ) -> Result<SyncReport, SyncError>;
}

/// Cheap fingerprint of the configuration, rule and user files (names,
/// sizes, modification times): an edit changes it.
fn signature(org: &Org) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    let mut out = Vec::new();
    let mut add = |p: &Path| {
        if let Ok(m) = std::fs::metadata(p) {
            out.push((p.to_path_buf(), m.len(), m.modified().ok()));
        }
    };
    add(&org.config.path);
    for dir in [&org.config.file.org.rules, &org.config.file.org.users] {
        let dir = org.config.resolve(dir);
        add(&dir);
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.sort();
        for e in entries {
            add(&e);
        }
    }
    out
}

/// The real world: files, calendar URLs, Microsoft Graph, the state store
/// (SQLite, or PostgreSQL shared with other instances).
pub struct LiveWorld {
    config_path: PathBuf,
    org: Arc<Org>,
    signature: Vec<(PathBuf, u64, Option<std::time::SystemTime>)>,
    graph: Arc<GraphClient>,
    store: Arc<dyn StateStore>,
    calendars: Calendars,
    metrics: Arc<Metrics>,
    /// The shards held (a shared store): writes are gated on them.
    scope: Option<Arc<Shards>>,
    /// The tenant's budget (this instance's share follows the shards held).
    budget: Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait::async_trait]
impl World for LiveWorld {
    fn org(&self) -> Arc<Org> {
        self.org.clone()
    }

    async fn reload(&mut self) -> Result<Option<Vec<String>>, Vec<String>> {
        let sig = signature(&self.org);
        if sig == self.signature {
            return Ok(None);
        }
        self.signature = sig;
        let path = self.config_path.clone();
        let new = match tokio::task::spawn_blocking(move || crate::org::load(&path)).await {
            Ok(Ok(org)) => org,
            Ok(Err(problems)) => return Err(problems.iter().map(ToString::to_string).collect()),
            Err(e) => return Err(vec![format!("reloading failed: {e}")]),
        };
        if new.config.file.state != self.org.config.file.state {
            tracing::warn!(
                message = "[state] changed: it takes effect when calstatus is restarted; this instance keeps its database until then."
            );
        }
        let settings = crate::graph::settings(&new.config)
            .map_err(|p| p.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        let budget = settings.budget;
        // The limiter carries over: what was spent still counts.
        let limiter = self.graph.limiter().clone();
        let graph = graph_client(settings, &self.metrics, self.scope.as_ref())
            .map_err(|e| vec![e.to_string()])?
            .with_limiter(limiter.clone());
        self.budget
            .store(budget, std::sync::atomic::Ordering::SeqCst);
        if self.scope.is_none() {
            limiter.set_budget(budget);
        }
        let fetcher = Fetcher::new(new.policy.clone());
        let limits = FetchLimits::new(new.config.file.fetch.concurrency, new.policy.timeout);
        self.calendars.set_fetcher(fetcher, limits);
        self.graph = Arc::new(graph);
        let (org, left) = adopt(&self.org, new);
        self.org = Arc::new(org);
        Ok(Some(left))
    }

    fn load_cached(&mut self, sources: &[Source]) {
        self.calendars.load_cached(sources);
    }

    async fn refresh_calendars(&mut self, users: &[User], now: DateTime<Utc>) -> Refreshed {
        let refs: Vec<&User> = users.iter().collect();
        let r = self.calendars.refresh(&refs, now).await;
        let used: HashSet<&Source> = users.iter().flat_map(|u| u.sources.iter()).collect();
        self.calendars.retain(&used);
        r
    }

    fn staleness(&self) -> (usize, Option<DateTime<Utc>>) {
        self.calendars.staleness()
    }

    fn inputs(&self, sources: &[&Source]) -> HashMap<Source, CalendarInput> {
        self.calendars.inputs(sources.iter().copied())
    }

    async fn pass(
        &self,
        plan: &Plan,
        opts: &SyncOptions,
        observer: &dyn Observer,
    ) -> Result<SyncReport, SyncError> {
        crate::sync::pass(&self.org, plan, &*self.graph, &*self.store, opts, observer).await
    }
}

/// A newly loaded configuration, taking over from `old`: a user whose file
/// broke keeps their last good file. Returns it with the users who left
/// (file removed, or `enabled = false`).
pub fn adopt(old: &Org, mut new: Org) -> (Org, Vec<String>) {
    let broken: HashSet<&Path> = new.user_problems.iter().map(|p| p.file.as_path()).collect();
    let kept: Vec<User> = old
        .users
        .iter()
        .filter(|u| broken.contains(u.file.as_path()))
        .filter(|u| !new.users.iter().any(|n| n.id.eq_ignore_ascii_case(&u.id)))
        .cloned()
        .collect();
    new.users.extend(kept);
    let enabled = |o: &Org| -> HashSet<String> {
        o.users
            .iter()
            .filter(|u| u.enabled)
            .map(|u| u.id.to_ascii_lowercase())
            .collect()
    };
    let now_in = enabled(&new);
    let left = old
        .users
        .iter()
        .filter(|u| u.enabled && !now_in.contains(&u.id.to_ascii_lowercase()))
        .map(|u| u.id.clone())
        .collect();
    (new, left)
}

/// Runs the daemon until SIGTERM/SIGINT.
pub async fn run(config_path: &Path) -> anyhow::Result<Exit> {
    // First: a signal while starting up ends the start-up cleanly too.
    let stop = CancellationToken::new();
    spawn_signal_handler(stop.clone());
    let (org, settings) = match startup_config(config_path) {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let metrics = Metrics::new(settings.certificate_expiry());
    let health = Health::new(metrics.clone());
    if let Some(addr) = org.config.file.run.listen {
        let bound = http::serve(addr, health.clone(), stop.clone()).await?;
        tracing::info!(message = "Serving /healthz, /readyz and /metrics.", address = %bound);
    }
    let store = crate::state::open(&org.config).await?;
    // One instance on its own store holds it all, locked; several on one
    // database share the people by shard leases, renewed by a heartbeat.
    let (_lease, shards) = if store.shared() {
        (None, Some(Shards::shared(&holder_name())))
    } else {
        metrics.set_shards(usize::from(crate::state::SHARDS));
        (Some(store.acquire_lease().await?), None)
    };
    let budget = Arc::new(std::sync::atomic::AtomicUsize::new(settings.budget));
    let graph = Arc::new(graph_client(settings, &metrics, shards.as_ref())?);
    if let Some(code) = first_token(&graph, &stop).await {
        return Ok(code);
    }
    let fetcher = Fetcher::new(org.policy.clone());
    let limits = FetchLimits::new(org.config.file.fetch.concurrency, org.policy.timeout);
    let cache = calendar_cache(&org.config);
    let world = LiveWorld {
        config_path: config_path.to_path_buf(),
        signature: signature(&org),
        org: Arc::new(org),
        graph,
        store,
        calendars: Calendars::new(fetcher, limits, Some(cache)),
        metrics: metrics.clone(),
        scope: shards.clone(),
        budget,
    };
    // The heartbeat outlives the loop: the shards are given back only once
    // the writes in flight have finished.
    let beat_stop = CancellationToken::new();
    let started = shards.map(|s| {
        let beat = start_heartbeat(&world, s.clone(), &health, beat_stop.clone());
        (s, beat)
    });
    let mut d = Daemon::new(world, Arc::new(SystemClock), health.clone(), metrics);
    let mut beat = None;
    if let Some((s, (handle, takeovers))) = started {
        d = d.shared(s, takeovers);
        beat = Some(handle);
    }
    let outcome = d.run(&stop).await;
    health.set_dead();
    stop.cancel();
    beat_stop.cancel();
    if let Some(beat) = beat {
        let _ = beat.await;
    }
    outcome?;
    tracing::info!(message = "Stopped.");
    Ok(Exit::Ok)
}

/// The organisation and the Graph settings at start-up; on a problem, it
/// is printed and the exit code returned (nothing is started).
fn startup_config(config_path: &Path) -> Result<(Org, crate::graph::GraphSettings), Exit> {
    let org = match crate::org::load(config_path) {
        Ok(org) => org,
        Err(problems) => {
            eprintln!(
                "calstatus: the configuration has {} problem(s); not started:",
                problems.len()
            );
            for p in &problems {
                eprintln!("  {}", crate::text::Escaped(p));
            }
            return Err(Exit::Config);
        }
    };
    for p in &org.user_problems {
        tracing::warn!(message = "A user file has problems; that user is left out.", problem = %p);
    }
    match crate::graph::settings(&org.config) {
        Ok(s) => Ok((org, s)),
        Err(problems) => {
            for p in &problems {
                eprintln!("calstatus: {}", crate::text::Escaped(p));
            }
            Err(Exit::Config)
        }
    }
}

/// Gets a first token before anything runs: `None` to go on. On failure it
/// says why and returns the exit code (a wrong secret is a configuration
/// problem; an unreachable Entra is a failure a restart may get past);
/// stopped meanwhile, `Exit::Ok`.
async fn first_token(graph: &GraphClient, stop: &CancellationToken) -> Option<Exit> {
    let token = tokio::select! {
        r = graph.check_token() => r,
        _ = stop.cancelled() => return Some(Exit::Ok),
    };
    let e = token.err()?;
    eprintln!(
        "calstatus: cannot get a token for Microsoft Graph: {}",
        crate::text::Escaped(&e)
    );
    Some(if e.is_configuration() {
        Exit::Config
    } else {
        Exit::Failure
    })
}

/// Starts the heartbeat of a shared store for `world`; returns its task and
/// where it says which shards were newly taken.
fn start_heartbeat(
    world: &LiveWorld,
    shards: Arc<Shards>,
    health: &Arc<Health>,
    stop: CancellationToken,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::mpsc::UnboundedReceiver<Vec<u16>>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let beat = shards::Heartbeat {
        store: world.store.clone(),
        shards,
        ttl: world.org.config.file.state.lease_ttl,
        limiter: world.graph.limiter().clone(),
        budget: world.budget.clone(),
        taken: tx,
        health: health.clone(),
        metrics: world.metrics.clone(),
    };
    (tokio::spawn(beat.run(stop)), rx)
}

/// The Graph client: its answers counted in the metrics, and (several
/// instances) each write sent only while this instance holds its shard.
fn graph_client(
    settings: crate::graph::GraphSettings,
    metrics: &Arc<Metrics>,
    shards: Option<&Arc<Shards>>,
) -> anyhow::Result<GraphClient> {
    let m = metrics.clone();
    let client = GraphClient::new(settings)?.watch(Arc::new(move |a| match a {
        Answered::Http(status) => {
            m.graph_answer(status);
            if status == 429 {
                m.throttled();
            }
        }
        Answered::BatchItem(429) => m.throttled(),
        Answered::BatchItem(_) => {}
    }));
    Ok(match shards {
        Some(s) => {
            let s = s.clone();
            let gate: Arc<Gate> =
                Arc::new(move |w: &crate::graph::client::Write| s.holds_under(&w.user, w.epoch));
            client.gate(gate)
        }
        None => client,
    })
}

/// This instance's name in the shard leases: host, process, and a random
/// part (a restarted process is a new holder).
fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "calstatus".into());
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}/{}/{}", std::process::id(), &id[..8])
}

/// Where the calendars' last good copies are kept: beside the SQLite file;
/// with PostgreSQL (whose instances often have no writable volume), in the
/// temporary directory, one per database and configuration.
fn calendar_cache(config: &crate::config::Config) -> PathBuf {
    let state = &config.file.state;
    match &state.url {
        None => PathBuf::from(format!(
            "{}.calendars",
            config.resolve(&state.path).display()
        )),
        Some(url) => {
            use sha2::Digest;
            let key = format!("{url}\n{}", config.path.display());
            let hash = sha2::Sha256::digest(key.as_bytes());
            let hex: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
            std::env::temp_dir().join(format!("calstatus-calendars-{hex}"))
        }
    }
}

/// Cancels `stop` on SIGTERM or SIGINT.
fn spawn_signal_handler(stop: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!(message = "Stopping: finishing the writes in flight.");
        stop.cancel();
    });
}

/// The loop: the plans, the schedule, who failed; the world it acts on.
pub struct Daemon<W: World> {
    world: W,
    clock: Arc<dyn Clock>,
    /// The plan of each planned person, by the id their file gives.
    plans: HashMap<String, UserPlan>,
    /// Until when the plans reach.
    planned_to: DateTime<Utc>,
    schedule: Schedule,
    /// People whose last step failed: tried again at each refresh.
    failed: HashSet<String>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    /// Whom this instance writes for (several instances; `None`: everyone).
    scope: Option<Arc<dyn Scope>>,
    /// Shards newly held (a takeover, a first share): their people need a pass.
    takeovers: Option<tokio::sync::mpsc::UnboundedReceiver<Vec<u16>>>,
}

impl<W: World> Daemon<W> {
    /// A loop over `world`, reading `clock`.
    pub fn new(
        world: W,
        clock: Arc<dyn Clock>,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
    ) -> Daemon<W> {
        let planned_to = clock.now();
        Daemon {
            world,
            clock,
            plans: HashMap::new(),
            planned_to,
            schedule: Schedule::new(),
            failed: HashSet::new(),
            health,
            metrics,
            scope: None,
            takeovers: None,
        }
    }

    /// Writes only for the people `scope` holds (several instances on one
    /// database); shards arriving on `takeovers` get a pass at once.
    pub fn shared(
        mut self,
        scope: Arc<dyn Scope>,
        takeovers: tokio::sync::mpsc::UnboundedReceiver<Vec<u16>>,
    ) -> Daemon<W> {
        self.scope = Some(scope);
        self.takeovers = Some(takeovers);
        self
    }

    /// The world (tests look at it).
    pub fn world(&self) -> &W {
        &self.world
    }

    /// Runs until `stop` is cancelled.
    pub async fn run(&mut self, stop: &CancellationToken) -> anyhow::Result<()> {
        let refresh = Duration::from_std(self.world.org().config.file.run.refresh)?;
        // Start: yesterday's copies first (no network needed to know
        // today's meetings), then what changed since.
        let users = self.enabled_users();
        let all: Vec<Source> = users.iter().flat_map(|u| u.sources.clone()).collect();
        self.world.load_cached(&all);
        let now = self.clock.now();
        self.refresh_calendars(now).await;
        self.replan(None, now).await;
        self.health.set_ready();
        tracing::info!(message = "Ready.", users = self.plans.len());
        let everyone: Vec<String> = self.plans.keys().cloned().collect();
        if self.reconcile(Why::Start, everyone, stop).await {
            return Ok(());
        }
        let mut next_refresh = self.clock.now() + refresh;
        let (mut wall, mut mono) = (self.clock.now(), self.clock.mono());
        loop {
            let wake = self
                .schedule
                .next()
                .map_or(next_refresh, |t| t.min(next_refresh));
            let taken = tokio::select! {
                stopped = sleep_until(&*self.clock, wake, stop) => {
                    if stopped {
                        return Ok(());
                    }
                    None
                }
                Some(shards) = next_takeover(&mut self.takeovers) => Some(shards),
            };
            if let Some(shards) = taken {
                // Their people's statuses may be anything: the previous
                // holder may have stopped half-way. The pass looks.
                tracing::info!(
                    message = "New shards held; reconciling their people.",
                    shards = shards.len()
                );
                let everyone: Vec<String> = self.plans.keys().cloned().collect();
                if self.reconcile(Why::Takeover, everyone, stop).await {
                    return Ok(());
                }
            }
            let now = self.clock.now();
            let jump = schedule::clock_jump(
                wall,
                mono.into_std(),
                now,
                self.clock.mono().into_std(),
                JUMP_TOLERANCE,
            );
            if let Some(jump) = jump {
                tracing::warn!(
                    message = "The clock jumped; reconciling everyone at the new time.",
                    seconds = jump.num_seconds()
                );
                self.metrics.clock_jump();
                self.replan(None, now).await;
                let everyone: Vec<String> = self.plans.keys().cloned().collect();
                if self.reconcile(Why::ClockJump, everyone, stop).await {
                    return Ok(());
                }
                next_refresh = now + refresh;
            } else if now >= next_refresh {
                if self.refresh(now, stop).await {
                    return Ok(());
                }
                next_refresh = self.clock.now() + refresh;
            }
            let due: Vec<String> = self
                .schedule
                .take_due(self.clock.now())
                .into_iter()
                .map(|(_, u)| u)
                .collect();
            if !due.is_empty() && self.reconcile(Why::Due, due, stop).await {
                return Ok(());
            }
            (wall, mono) = (self.clock.now(), self.clock.mono());
            self.health.beat();
        }
    }

    fn enabled_users(&self) -> Vec<User> {
        self.world
            .org()
            .users
            .iter()
            .filter(|u| u.enabled)
            .cloned()
            .collect()
    }

    /// One refresh: configuration edits, calendars, re-planning, and a pass
    /// for whoever's status now differs. `true` when stopped.
    async fn refresh(&mut self, now: DateTime<Utc>, stop: &CancellationToken) -> bool {
        let reloaded = match self.world.reload().await {
            Ok(r) => r,
            Err(problems) => {
                self.reject_edit(problems);
                None
            }
        };
        if let Some(left) = &reloaded {
            let problems: Vec<String> = self
                .world
                .org()
                .user_problems
                .iter()
                .map(ToString::to_string)
                .collect();
            if !problems.is_empty() {
                self.metrics.reload_error();
            }
            tracing::info!(
                message = "Configuration reloaded.",
                problems = problems.len(),
                left = left.len()
            );
            self.health.update(|h| h.config_errors = problems);
            if !left.is_empty() {
                // Their live message from calstatus is cleared (never their own).
                let gone: Vec<UserPlan> = left.iter().map(|id| nothing_planned(id)).collect();
                for g in &gone {
                    self.plans.remove(&g.user);
                    self.schedule.remove(&g.user);
                    self.failed.remove(&g.user);
                }
                if self.pass(Why::Removed, gone, stop).await {
                    return true;
                }
            }
        }
        let changed = self.refresh_calendars(now).await;
        // Everyone is re-planned after a configuration edit, and when the
        // plans' end comes within half the horizon.
        let half =
            Duration::from_std(self.world.org().config.file.run.horizon / 2).unwrap_or_default();
        let everyone = reloaded.is_some() || self.planned_to - now < half;
        let mut again = self.replan((!everyone).then_some(changed), now).await;
        again.extend(self.failed.iter().cloned());
        again.sort();
        again.dedup();
        !again.is_empty() && self.reconcile(Why::Changed, again, stop).await
    }

    fn reject_edit(&self, problems: Vec<String>) {
        for p in &problems {
            tracing::error!(message = "A configuration edit was rejected; the last good configuration stays in force.", problem = %p);
        }
        self.metrics.reload_error();
        self.health.update(|h| h.config_errors = problems);
    }

    /// Re-reads the calendars: the sources whose calendar changed.
    async fn refresh_calendars(&mut self, now: DateTime<Utc>) -> HashSet<Source> {
        let users = self.enabled_users();
        let r = self.world.refresh_calendars(&users, now).await;
        for _ in 0..r.errors {
            self.metrics.fetch_error();
        }
        let (stale, oldest) = self.world.staleness();
        self.health.set_oldest_good(oldest);
        self.health.update(|h| {
            h.last_refresh = Some(now);
            h.stale_calendars = stale;
            h.fetch_errors = r.errors;
        });
        self.metrics.set_users("opted-in", users.len());
        r.changed
    }

    /// Plans the people whose calendars are among `changed` (everyone when
    /// `None`) over [now − 1 day, now + horizon], off the async runtime.
    /// Returns those whose status at now (+ lead time) changed.
    async fn replan(
        &mut self,
        changed: Option<HashSet<Source>>,
        now: DateTime<Utc>,
    ) -> Vec<String> {
        let users: Vec<User> = self
            .enabled_users()
            .into_iter()
            .filter(|u| match &changed {
                None => true,
                Some(c) => u.sources.iter().any(|s| c.contains(s)),
            })
            .collect();
        if users.is_empty() {
            return Vec::new();
        }
        let org = self.world.org();
        let horizon =
            Duration::from_std(org.config.file.run.horizon).unwrap_or(Duration::hours(36));
        let window = Window {
            from: now - Duration::days(1),
            to: now + horizon,
        };
        let sources: Vec<&Source> = users.iter().flat_map(|u| u.sources.iter()).collect();
        let inputs = self.world.inputs(&sources);
        let planned = tokio::task::spawn_blocking(move || {
            let refs: Vec<&User> = users.iter().collect();
            crate::pipeline::plan_users(&org, &refs, &inputs, window)
        })
        .await
        .unwrap_or_default();
        if changed.is_none() {
            self.planned_to = window.to;
        }
        let lead = self.lead();
        let mut differs = Vec::new();
        for p in planned {
            let at = now + lead;
            let before = self
                .plans
                .get(&p.user)
                .and_then(|old| status_at(old, at).map(|s| (s.message.clone(), s.end)));
            let after = status_at(&p, at).map(|s| (s.message.clone(), s.end));
            if before != after || !p.errors.is_empty() {
                differs.push(p.user.clone());
            }
            self.schedule
                .set(&p.user, schedule::instants(&p, lead, now));
            self.plans.insert(p.user.clone(), p);
        }
        self.metrics.set_users("planned", self.plans.len());
        differs
    }

    fn lead(&self) -> Duration {
        Duration::from_std(self.world.org().config.file.sync.lead_time).unwrap_or_default()
    }

    /// A pass for these people (by the id their file gives). `true` when stopped.
    async fn reconcile(&mut self, why: Why, users: Vec<String>, stop: &CancellationToken) -> bool {
        let plans: Vec<UserPlan> = users
            .iter()
            .filter_map(|u| self.plans.get(u).cloned())
            .collect();
        if plans.is_empty() {
            return false;
        }
        self.pass(why, plans, stop).await
    }

    /// Runs one sync pass over `plans` at now; on a stop, writes in flight
    /// get [`SHUTDOWN_GRACE`]. `true` when stopped.
    async fn pass(&mut self, why: Why, plans: Vec<UserPlan>, stop: &CancellationToken) -> bool {
        let now = self.clock.now();
        let n = plans.len();
        let plan = Plan {
            window: WindowReport { from: now, to: now },
            users: plans,
            problems: Vec::new(),
        };
        let org = self.world.org();
        let opts = SyncOptions {
            at: now,
            users: Vec::new(),
            dry_run: false,
            lead_time: self.lead(),
            policy: org.config.file.sync.personal_message,
            scope: self.scope.clone(),
        };
        let span = tracing::info_span!("pass", why = ?why, users = n);
        let _enter = span.enter();
        let (result, stopped) = {
            // The health endpoint hears of every write (its heartbeat) and
            // passes it on to the metrics.
            let observer: &dyn Observer = &*self.health;
            let work = self.world.pass(&plan, &opts, observer);
            tokio::pin!(work);
            tokio::select! {
                r = &mut work => (Some(r), false),
                _ = stop.cancelled() => match tokio::time::timeout(SHUTDOWN_GRACE, &mut work).await {
                    Ok(r) => (Some(r), true),
                    Err(_) => {
                        tracing::warn!(message = "Stopped with writes in flight; they are recorded as pending and settled after a restart.");
                        (None, true)
                    }
                },
            }
        };
        match result {
            Some(Ok(report)) => self.settle(&plan, &report),
            Some(Err(e)) => {
                tracing::error!(message = "A pass failed; everyone keeps their current status.", error = %e);
                self.failed
                    .extend(plan.users.iter().map(|u| u.user.clone()));
            }
            None => {}
        }
        self.health.update(|h| h.last_pass = Some(Utc::now()));
        stopped
    }

    /// Remembers who failed (tried again at the next refresh) and logs the
    /// writes. People the pass left out (another instance's) are not ours
    /// to retry.
    fn settle(&mut self, plan: &Plan, report: &SyncReport) {
        for p in &plan.users {
            self.failed.remove(&p.user);
        }
        for u in &report.users {
            if u.request.is_some() || u.error.is_some() {
                tracing::info!(message = "Status step.", user = %u.user, decision = %u.decision, outcome = u.outcome.as_str(), reason = %u.reason);
            }
            if u.outcome == crate::sync::Outcome::Failed {
                self.failed.insert(u.named.clone());
            }
        }
        self.metrics.set_users("failed", self.failed.len());
    }
}

/// A plan with nothing in it (someone who left: calstatus's live message
/// is cleared, theirs is left alone).
fn nothing_planned(id: &str) -> UserPlan {
    UserPlan {
        user: id.to_string(),
        timezone: "UTC".into(),
        statuses: Vec::new(),
        occurrences: Vec::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
        zone: Zone::Utc,
        label: String::new(),
    }
}

/// The next shards newly held (never, without a shared store).
async fn next_takeover(
    rx: &mut Option<tokio::sync::mpsc::UnboundedReceiver<Vec<u16>>>,
) -> Option<Vec<u16>> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until the wall clock reads `until` (never early), looking at the
/// clock at least every [`CLOCK_CHECK`] (the caller checks for a jump
/// then). `true` when stopped.
async fn sleep_until(clock: &dyn Clock, until: DateTime<Utc>, stop: &CancellationToken) -> bool {
    loop {
        let left = (until - clock.now()).to_std().unwrap_or(StdDuration::ZERO);
        if left.is_zero() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(left.min(CLOCK_CHECK)) => {}
            _ = stop.cancelled() => return true,
        }
        if left > CLOCK_CHECK {
            return false;
        }
    }
}
