//! One sync pass (the shell): plan around T → resolve who is who → read
//! what calstatus wrote (state) and what Graph shows (presence) → plan the
//! pass (`reconcile::plan_pass`, pure) → apply it (`engine::apply`) →
//! report. `--dry-run` stops after planning the pass and shows the exact
//! requests. Users whose calendars failed to load are not touched: their
//! last good state stays.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::calendar::Window;
use crate::domain::Record;
use crate::engine::{NoObserver, Observer, PresenceReader, PresenceWriter, apply, write_of};
use crate::graph::GraphSettings;
use crate::graph::client::{GraphClient, OpError};
use crate::graph::model::set_status_path;
use crate::org::Org;
use crate::plan::{Plan, Status, UserPlan, status_at, utc_secs};
use crate::reconcile::{Decision, Desired, Failure, PassInput, PersonalPolicy, Step, plan_pass};
use crate::state::memory::MemoryStore;
use crate::state::{Scope, StateError, StateStore};

/// Why a pass could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The state store.
    #[error(transparent)]
    State(#[from] StateError),
    /// The planning pipeline.
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    /// No token could be had.
    #[error(transparent)]
    Auth(#[from] crate::graph::auth::AuthError),
    /// The Graph client could not be built.
    #[error("cannot set up the Graph client: {0}")]
    Client(#[source] OpError),
}

/// Options of one pass.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// The instant the pass is for.
    pub at: DateTime<Utc>,
    /// Only these users (empty: all enabled).
    pub users: Vec<String>,
    /// Show, don't write.
    pub dry_run: bool,
    /// Publish statuses this early.
    pub lead_time: Duration,
    /// Personal-message policy.
    pub policy: PersonalPolicy,
    /// Whom this instance writes for, and the fence its intents are
    /// recorded under (a shared store); `None`: everyone, unfenced.
    pub scope: Option<Arc<dyn Scope>>,
}

/// The request a write sends (for `--dry-run`).
#[derive(Clone, Debug, Serialize)]
pub struct RequestPreview {
    /// Method.
    pub method: &'static str,
    /// Path under the Graph root.
    pub path: String,
    /// JSON body.
    pub body: serde_json::Value,
}

/// What became of a user's step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Nothing to send.
    None,
    /// A write that a dry run did not send.
    DryRun,
    /// A write that was not answered (the pass was interrupted).
    Pending,
    /// Graph accepted the write.
    Applied,
    /// The write, or the step, failed (retried on the next pass).
    Failed,
}

impl Outcome {
    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::None => "none",
            Outcome::DryRun => "dry-run",
            Outcome::Pending => "pending",
            Outcome::Applied => "applied",
            Outcome::Failed => "failed",
        }
    }
}

/// One user's line in the report.
#[derive(Clone, Debug, Serialize)]
pub struct UserSync {
    /// Object id (as named in the user file when it could not be resolved).
    pub user: String,
    /// The person as their file names them (a UPN or an object id).
    #[serde(skip)]
    pub named: String,
    /// Decision.
    pub decision: Decision,
    /// Why.
    pub reason: String,
    /// Message sent or kept.
    pub message: Option<String>,
    /// Expiry sent.
    #[serde(with = "utc_secs::option")]
    pub expiry: Option<DateTime<Utc>>,
    /// The request (writes only).
    pub request: Option<RequestPreview>,
    /// What became of it.
    pub outcome: Outcome,
    /// Error, if any.
    pub error: Option<String>,
}

impl UserSync {
    fn of(step: &Step, dry_run: bool) -> UserSync {
        let request = step.intent.as_ref().map(|i| RequestPreview {
            method: "POST",
            path: format!("/v1.0{}", set_status_path(&i.user)),
            body: write_of(i).body,
        });
        let outcome = match (step.decision, &request) {
            (Decision::Failed, _) => Outcome::Failed,
            (_, None) => Outcome::None,
            (_, Some(_)) if dry_run => Outcome::DryRun,
            (_, Some(_)) => Outcome::Pending,
        };
        UserSync {
            user: step.user.clone(),
            named: step.user.clone(),
            decision: step.decision,
            reason: step.reason.clone(),
            message: step.message.clone(),
            expiry: step.expiry,
            request,
            outcome,
            error: step.error.clone(),
        }
    }
}

/// The pass's report.
#[derive(Clone, Debug, Serialize)]
pub struct SyncReport {
    /// T.
    #[serde(with = "utc_secs")]
    pub at: DateTime<Utc>,
    /// Dry run.
    pub dry_run: bool,
    /// Per user.
    pub users: Vec<UserSync>,
    /// Count per decision.
    pub counts: BTreeMap<&'static str, usize>,
    /// Users whose step or write failed.
    pub failed: Vec<String>,
}

impl SyncReport {
    fn new(at: DateTime<Utc>, dry_run: bool, users: Vec<UserSync>) -> SyncReport {
        let mut counts = BTreeMap::new();
        for l in &users {
            *counts.entry(l.decision.as_str()).or_insert(0) += 1;
        }
        let failed = users
            .iter()
            .filter(|l| l.outcome == Outcome::Failed)
            .map(|l| l.user.clone())
            .collect();
        SyncReport {
            at,
            dry_run,
            users,
            counts,
            failed,
        }
    }
}

/// Runs one pass.
pub async fn run_pass(
    org: &Org,
    settings: GraphSettings,
    opts: &SyncOptions,
) -> Result<SyncReport, SyncError> {
    run_pass_with(org, settings, opts, &NoObserver).await
}

/// Runs one pass, reporting the writes to `observer`.
pub async fn run_pass_with(
    org: &Org,
    settings: GraphSettings,
    opts: &SyncOptions,
    observer: &dyn Observer,
) -> Result<SyncReport, SyncError> {
    let window = Window {
        from: opts.at - Duration::days(1),
        to: opts.at + Duration::days(1) + opts.lead_time,
    };
    let plan = crate::pipeline::build_plan(org, window, &opts.users).await?;
    let client = GraphClient::new(settings).map_err(SyncError::Client)?;
    if opts.dry_run {
        // A dry run reads what calstatus wrote, if anything, and writes
        // nothing: no database, no lock (it may run beside a live pass).
        client.check_token().await?;
        let store: std::sync::Arc<dyn StateStore> =
            match crate::state::open_read_only(&org.config).await? {
                Some(s) => s,
                None => std::sync::Arc::new(MemoryStore::new()),
            };
        return pass(org, &plan, &client, store.as_ref(), opts, observer).await;
    }
    let store = crate::state::open(&org.config).await?;
    let lease = store.acquire_lease().await?;
    client.check_token().await?;
    let opts = SyncOptions {
        scope: lease
            .fence
            .clone()
            .map(|f| Arc::new(f) as Arc<dyn Scope>)
            .or_else(|| opts.scope.clone()),
        ..opts.clone()
    };
    pass(org, &plan, &client, store.as_ref(), &opts, observer).await
}

/// One pass over a plan, through any Graph and any store.
pub async fn pass<G>(
    org: &Org,
    plan: &Plan,
    graph: &G,
    store: &dyn StateStore,
    opts: &SyncOptions,
    observer: &dyn Observer,
) -> Result<SyncReport, SyncError>
where
    G: PresenceReader + PresenceWriter,
{
    let at = opts.at;
    let ids = resolve_ids(org, plan, graph, store, opts.dry_run).await?;
    let (users, ids) = held(plan, ids, opts.scope.as_deref());
    let reads = read_current(&users, &ids, graph, store).await?;
    let fence = opts.scope.as_ref().and_then(|s| {
        let owned: Vec<&str> = ids.iter().filter_map(|i| i.as_deref().ok()).collect();
        s.fence(&owned)
    });
    let (inputs, due) = pass_inputs(&users, ids, reads, opts);
    let steps = plan_pass(at, opts.policy, inputs);
    let mut lines = report_lines(&steps, &users, opts.dry_run);
    if opts.dry_run {
        return Ok(SyncReport::new(at, true, lines));
    }
    let pass_id = uuid::Uuid::new_v4().to_string();
    let results = apply(
        &pass_id,
        &steps,
        &due,
        fence.as_ref(),
        graph,
        store,
        observer,
    )
    .await?;
    record_outcomes(&mut lines, &results);
    Ok(SyncReport::new(at, false, lines))
}

/// The planned users this instance holds (everyone without a scope), with their ids.
fn held<'p>(
    plan: &'p Plan,
    ids: Vec<Result<String, Failure>>,
    scope: Option<&dyn Scope>,
) -> (Vec<&'p UserPlan>, Vec<Result<String, Failure>>) {
    // Several instances: only the people of the shards this one holds (an
    // unresolved person by the literal, so that one instance reports them).
    plan.users
        .iter()
        .zip(ids)
        .filter(|(u, id)| {
            scope.is_none_or(|s| {
                s.holds(match id {
                    Ok(id) => id,
                    Err(_) => &u.user,
                })
            })
        })
        .unzip()
}

/// What a pass reads before deciding, by object id.
struct Reads {
    /// What calstatus remembers writing.
    records: HashMap<String, Record>,
    /// The message Graph shows now, or why it could not be read.
    presence: HashMap<String, Result<Option<String>, OpError>>,
}

/// Reads records and current messages of the users whose calendars loaded and ids resolved.
async fn read_current<G: PresenceReader>(
    users: &[&UserPlan],
    ids: &[Result<String, Failure>],
    graph: &G,
    store: &dyn StateStore,
) -> Result<Reads, StateError> {
    let readable: Vec<String> = ids
        .iter()
        .zip(users)
        .filter(|(_, u)| u.errors.is_empty())
        .filter_map(|(id, _)| id.as_ref().ok().cloned())
        .collect();
    let records = store.records(&readable).await?;
    let presence = graph.read_messages(&readable).await;
    Ok(Reads { records, presence })
}

/// Each user's input to [`plan_pass`], and when each planned status is due (by object id).
fn pass_inputs(
    users: &[&UserPlan],
    ids: Vec<Result<String, Failure>>,
    mut reads: Reads,
    opts: &SyncOptions,
) -> (Vec<PassInput>, HashMap<String, DateTime<Utc>>) {
    let mut due = HashMap::new();
    let mut inputs = Vec::with_capacity(users.len());
    for (u, id) in users.iter().zip(ids) {
        let status = status_at(u, opts.at + opts.lead_time);
        let key = id.as_ref().ok().cloned().unwrap_or_default();
        if let Some(s) = status {
            due.insert(key.clone(), s.start - opts.lead_time);
        }
        inputs.push(PassInput {
            user: u.user.clone(),
            desired: desired_of(u, status),
            presence: presence_of(reads.presence.remove(&key)),
            record: reads.records.remove(&key),
            id,
        });
    }
    (inputs, due)
}

/// The status planned for `u` as reconciliation wants it, or why a failed calendar voids it.
fn desired_of(u: &UserPlan, status: Option<&Status>) -> Result<Option<Desired>, Failure> {
    if !u.errors.is_empty() {
        return Err(Failure::new(
            "a calendar failed to load; the current status is left as it is",
            u.errors
                .iter()
                .map(|e| format!("{}: {}", e.source, e.message))
                .collect::<Vec<_>>()
                .join("; "),
        ));
    }
    Ok(status.map(|s| Desired {
        message: s.message.clone(),
        expiry: s.end,
        occurrences: serde_json::to_string(&s.occurrences).unwrap_or_else(|_| "[]".into()),
    }))
}

/// The message read for a user, or why it could not be read.
fn presence_of(read: Option<Result<Option<String>, OpError>>) -> Result<Option<String>, Failure> {
    match read {
        Some(Ok(m)) => Ok(m),
        Some(Err(e)) => Err(Failure::new(
            "cannot read the current status message",
            e.to_string(),
        )),
        // Not read: a failed calendar or id decides first.
        None => Ok(None),
    }
}

/// The report's line for each step, with the person as their file names them.
fn report_lines(steps: &[Step], users: &[&UserPlan], dry_run: bool) -> Vec<UserSync> {
    steps
        .iter()
        .zip(users)
        .map(|(s, u)| UserSync {
            named: u.user.clone(),
            ..UserSync::of(s, dry_run)
        })
        .collect()
}

/// Marks each write's line applied or failed, as `apply` answered.
fn record_outcomes(lines: &mut [UserSync], results: &HashMap<String, Result<(), OpError>>) {
    for line in lines.iter_mut().filter(|l| l.request.is_some()) {
        match results.get(&line.user) {
            Some(Ok(())) => line.outcome = Outcome::Applied,
            Some(Err(e)) => {
                tracing::warn!(message = "A status write failed; it is retried on the next pass.", user = %line.user, error = %e);
                line.outcome = Outcome::Failed;
                line.error = Some(e.to_string());
            }
            None => {}
        }
    }
}

/// The object id of each planned user: given, or a UPN resolved (cached in
/// the store). Two files that resolve to one person (an object id in one,
/// a UPN alias in another) both fail: neither may write that person's status.
async fn resolve_ids<G: PresenceReader>(
    org: &Org,
    plan: &Plan,
    graph: &G,
    store: &dyn StateStore,
    dry_run: bool,
) -> Result<Vec<Result<String, Failure>>, StateError> {
    let mut ids = Vec::with_capacity(plan.users.len());
    for u in &plan.users {
        if !u.user.contains('@') || !u.errors.is_empty() {
            ids.push(Ok(u.user.clone()));
            continue;
        }
        let id = match store.cached_upn(&u.user).await? {
            Some(id) => Ok(id),
            None => match graph.resolve_upn(&u.user).await {
                Ok(id) => {
                    if !dry_run {
                        store.cache_upn(&u.user, &id, Utc::now()).await?;
                    }
                    Ok(id)
                }
                Err(e) => Err(Failure::new(
                    "cannot resolve the UPN to an object id (needs User.Read.All)",
                    e.to_string(),
                )),
            },
        };
        ids.push(id);
    }
    let keys: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| match id {
            Ok(id) => id.to_ascii_lowercase(),
            // Never equal to another key: failures do not conflict.
            Err(_) => format!("\u{0}{i}"),
        })
        .collect();
    for (id, members) in crate::org::conflicting_claims(&keys) {
        let claimants: Vec<String> = members
            .iter()
            .map(|&k| {
                let literal = &plan.users[k].user;
                match org.users.iter().find(|u| &u.id == literal) {
                    Some(u) => format!("{} ({literal})", u.file.display()),
                    None => literal.clone(),
                }
            })
            .collect();
        for &k in &members {
            ids[k] = Err(Failure::new(
                "several user files claim this person; none of them is applied",
                format!(
                    "{id} is claimed by {}; correct or remove the wrong file",
                    claimants.join(" and ")
                ),
            ));
        }
    }
    Ok(ids)
}

/// The report for a terminal. Messages and errors carry calendar text and
/// Graph answers: every value goes through [`crate::text::for_terminal`]
/// (no control character or bidi override reaches the screen), the request
/// body through [`crate::text::for_json`] (still JSON).
pub fn render_table(r: &SyncReport) -> String {
    use crate::text::for_terminal as term;
    let mut out = String::new();
    out.push_str(&format!(
        "{} at {}\n",
        if r.dry_run {
            "Sync dry run (nothing written)"
        } else {
            "Sync pass"
        },
        utc_secs::fmt(&r.at)
    ));
    for u in &r.users {
        out.push_str(&format!(
            "\n{}  {}  ({})",
            term(&u.user),
            u.decision.as_str().to_uppercase(),
            term(&u.reason)
        ));
        if let Some(m) = &u.message
            && !m.is_empty()
        {
            out.push_str(&format!("\n    message: {}", term(m)));
        }
        if let Some(req) = &u.request {
            out.push_str(&format!(
                "\n    {} {}\n    {}",
                req.method,
                term(&req.path),
                crate::text::for_json(&req.body.to_string())
            ));
        }
        if u.outcome != Outcome::None {
            out.push_str(&format!("\n    outcome: {}", u.outcome.as_str()));
        }
        if let Some(e) = &u.error {
            out.push_str(&format!("\n    error: {}", term(e)));
        }
        out.push('\n');
    }
    // Decisions, then what became of the writes: each name appears once.
    out.push_str("\nSummary:");
    for (k, v) in &r.counts {
        out.push_str(&format!(" {k}={v}"));
    }
    let outcome = |o: Outcome| {
        r.users
            .iter()
            .filter(|u| u.request.is_some() && u.outcome == o)
            .count()
    };
    if r.dry_run {
        out.push_str(&format!("; writes not sent: {}", outcome(Outcome::DryRun)));
    } else {
        out.push_str(&format!(
            "; writes applied={} failed={}",
            outcome(Outcome::Applied),
            outcome(Outcome::Failed)
        ));
    }
    out.push('\n');
    if !r.failed.is_empty() {
        out.push_str(&format!(
            "Failed users (retried on the next pass): {}\n",
            term(&r.failed.join(", "))
        ));
    }
    out
}
