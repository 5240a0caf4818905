//! One sync pass (the shell): plan around T → read what calstatus wrote
//! (state) and what Graph shows (presence) → reconcile → apply the writes
//! → record every outcome. `--dry-run` stops before the first write and
//! shows the exact requests. Users whose calendars failed to load are not
//! touched: their last good state stays.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::calendar::Window;
use crate::graph::GraphSettings;
use crate::graph::client::{GraphClient, Write};
use crate::graph::model::{set_status_body, set_status_path};
use crate::org::Org;
use crate::plan::{status_at, utc_secs};
use crate::reconcile::{Decision, Desired, PersonalPolicy, decide};
use crate::state::{Intent, StateError, Store};

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
    Client(String),
    /// A background task failed.
    #[error("internal error: {0}")]
    Internal(String),
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
    /// Show a progress bar (terminal only).
    pub progress: bool,
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

/// One user's line in the report.
#[derive(Clone, Debug, Serialize)]
pub struct UserSync {
    /// Object id.
    pub user: String,
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
    /// applied, failed, dry-run, none.
    pub outcome: String,
    /// Error, if any.
    pub error: Option<String>,
}

impl UserSync {
    /// A user left untouched because something failed.
    fn failed(user: &str, reason: &str, error: String) -> UserSync {
        UserSync {
            user: user.to_string(),
            decision: Decision::Failed,
            reason: reason.into(),
            message: None,
            expiry: None,
            request: None,
            outcome: "failed".into(),
            error: Some(error),
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
    pub counts: std::collections::BTreeMap<String, usize>,
    /// Users whose write or read failed.
    pub failed: Vec<String>,
}

fn decision_name(d: Decision) -> String {
    serde_json::to_value(d)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Runs one pass.
pub async fn run_pass(
    org: &Org,
    settings: GraphSettings,
    opts: &SyncOptions,
) -> Result<SyncReport, SyncError> {
    let pass_id = uuid::Uuid::new_v4().to_string();
    let at = opts.at;
    let window = Window {
        from: at - Duration::days(1),
        to: at + Duration::days(1) + opts.lead_time,
    };
    let plan = crate::pipeline::build_plan(org, window, &opts.users).await?;
    let client =
        GraphClient::new(settings.clone()).map_err(|e| SyncError::Client(e.to_string()))?;
    let state_path = org.config.resolve(&org.config.file.state.path);
    // A dry run reads what calstatus wrote, if anything, and writes nothing:
    // no database, no lock (it may run beside a live pass).
    let store = if opts.dry_run {
        Store::open_read_only(&state_path)?
    } else {
        Some(Store::open(&state_path)?)
    };
    client.check_token().await?;

    let mut lines: Vec<UserSync> = Vec::new();
    // Resolve UPNs (cached) to object ids.
    let mut ids: Vec<(usize, String)> = Vec::new();
    for (i, u) in plan.users.iter().enumerate() {
        if !u.errors.is_empty() {
            lines.push(UserSync::failed(
                &u.user,
                "a calendar failed to load; the current status is left as it is",
                u.errors
                    .iter()
                    .map(|e| format!("{}: {}", e.source, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            ));
            continue;
        }
        if u.user.contains('@') {
            let cached = match &store {
                Some(s) => s.cached_upn(&u.user)?,
                None => None,
            };
            let id = match cached {
                Some(id) => Ok(id),
                None => client.resolve_upn(&u.user).await.inspect(|id| {
                    if let Some(s) = store.as_ref().filter(|_| !opts.dry_run) {
                        let _ = s.cache_upn(&u.user, id, Utc::now());
                    }
                }),
            };
            match id {
                Ok(id) => ids.push((i, id)),
                Err(e) => lines.push(UserSync::failed(
                    &u.user,
                    "cannot resolve the UPN to an object id (needs User.Read.All)",
                    e.to_string(),
                )),
            }
        } else {
            ids.push((i, u.user.clone()));
        }
    }
    // Two files that resolve to one person (an object id in one, a UPN
    // alias in another): neither may write that person's status.
    let keys: Vec<String> = ids.iter().map(|(_, id)| id.to_ascii_lowercase()).collect();
    let mut conflicted = vec![false; ids.len()];
    for (id, members) in crate::org::conflicting_claims(&keys) {
        let claimants: Vec<String> = members
            .iter()
            .map(|&k| {
                let literal = &plan.users[ids[k].0].user;
                match org.users.iter().find(|u| &u.id == literal) {
                    Some(u) => format!("{} ({literal})", u.file.display()),
                    None => literal.clone(),
                }
            })
            .collect();
        for &k in &members {
            conflicted[k] = true;
            lines.push(UserSync::failed(
                &plan.users[ids[k].0].user,
                "several user files claim this person; none of them is applied",
                format!(
                    "{id} is claimed by {}; correct or remove the wrong file",
                    claimants.join(" and ")
                ),
            ));
        }
    }
    let mut flags = conflicted.into_iter();
    ids.retain(|_| !flags.next().unwrap_or(false));
    let id_list: Vec<String> = ids.iter().map(|(_, id)| id.clone()).collect();
    let actual = client.read_messages(&id_list).await;

    let store = Mutex::new(store);
    let mut writes: Vec<(Write, Intent, usize)> = Vec::new();
    for (i, id) in &ids {
        let u = &plan.users[*i];
        let desired = status_at(u, at + opts.lead_time).map(|s| Desired {
            message: s.message.clone(),
            expiry: s.end,
        });
        let record = match store
            .lock()
            .map_err(|e| SyncError::Internal(e.to_string()))?
            .as_ref()
        {
            Some(s) => s.record(id)?,
            None => None,
        };
        let line_idx = lines.len();
        let now_msg = match actual.get(id) {
            Some(Ok(m)) => m.clone(),
            Some(Err(e)) => {
                lines.push(UserSync::failed(
                    id,
                    "cannot read the current status message",
                    e.to_string(),
                ));
                continue;
            }
            None => None,
        };
        let v = decide(
            desired.as_ref(),
            record.as_ref(),
            now_msg.as_deref(),
            at,
            opts.policy,
        );
        if !opts.dry_run {
            let mut guard = store
                .lock()
                .map_err(|e| SyncError::Internal(e.to_string()))?;
            let s = guard
                .as_mut()
                .ok_or_else(|| SyncError::Internal("no state store".into()))?;
            if v.adopt_pending {
                s.adopt_pending(&pass_id, Utc::now(), id)?;
            }
            if v.forget {
                s.forget_message(id)?;
            }
        }
        let request = v.decision.writes().then(|| {
            let body = set_status_body(v.message.as_deref().unwrap_or(""), v.expiry);
            RequestPreview {
                method: "POST",
                path: format!("/v1.0{}", set_status_path(id)),
                body,
            }
        });
        if let Some(r) = &request {
            let occurrences = status_at(u, at + opts.lead_time)
                .map(|s| serde_json::to_string(&s.occurrences).unwrap_or_default())
                .unwrap_or_else(|| "[]".into());
            writes.push((
                Write {
                    user: id.clone(),
                    body: r.body.clone(),
                },
                Intent {
                    user: id.clone(),
                    decision: decision_name(v.decision),
                    message: v.message.clone(),
                    expiry: v.expiry,
                    occurrences,
                    save_personal: v.save_personal.clone(),
                    drop_saved: false,
                },
                line_idx,
            ));
        }
        lines.push(UserSync {
            user: id.clone(),
            decision: v.decision,
            reason: v.reason.clone(),
            message: v
                .message
                .clone()
                .or_else(|| desired.as_ref().map(|d| d.message.clone())),
            expiry: v.expiry,
            request,
            outcome: if v.decision.writes() {
                if opts.dry_run {
                    "dry-run".into()
                } else {
                    "pending".into()
                }
            } else {
                "none".into()
            },
            error: None,
        });
    }

    if !opts.dry_run && !writes.is_empty() {
        let intents: Vec<Intent> = writes.iter().map(|(_, i, _)| i.clone()).collect();
        store
            .lock()
            .map_err(|e| SyncError::Internal(e.to_string()))?
            .as_mut()
            .ok_or_else(|| SyncError::Internal("no state store".into()))?
            .record_intents(&pass_id, Utc::now(), &intents)?;
        let by_user: HashMap<String, (Intent, usize)> = writes
            .iter()
            .map(|(w, i, l)| (w.user.clone(), (i.clone(), *l)))
            .collect();
        let bar = (opts.progress && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(writes.len() as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {pos}/{len} statuses {wide_bar} {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        let record_errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
        let done = |user: &str, r: &Result<(), crate::graph::client::OpError>| {
            if let Some((intent, _)) = by_user.get(user) {
                let res = r.as_ref().map(|_| ()).map_err(|e| e.to_string());
                if let Ok(mut s) = store.lock()
                    && let Some(s) = s.as_mut()
                    && let Err(e) = s.record_outcome(&pass_id, Utc::now(), intent, res)
                    && let Ok(mut errs) = record_errors.lock()
                {
                    errs.push(e.to_string());
                }
            }
            if let Some(b) = &bar {
                b.inc(1);
            }
        };
        let results = client
            .apply(writes.into_iter().map(|(w, _, _)| w).collect(), &done)
            .await;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        if let Some(e) = record_errors.lock().ok().and_then(|e| e.first().cloned()) {
            return Err(SyncError::Internal(format!(
                "cannot record outcomes in the state store: {e}"
            )));
        }
        for (user, r) in results {
            if let Some((_, l)) = by_user.get(&user) {
                let line = &mut lines[*l];
                match r {
                    Ok(()) => line.outcome = "applied".into(),
                    Err(e) => {
                        tracing::warn!(message = "A status write failed; it is retried on the next pass.", user = %user, error = %e);
                        line.outcome = "failed".into();
                        line.error = Some(e.to_string());
                    }
                }
            }
        }
    }
    let mut counts = std::collections::BTreeMap::new();
    for l in &lines {
        *counts.entry(decision_name(l.decision)).or_insert(0) += 1;
    }
    let failed = lines
        .iter()
        .filter(|l| l.outcome == "failed")
        .map(|l| l.user.clone())
        .collect();
    Ok(SyncReport {
        at,
        dry_run: opts.dry_run,
        users: lines,
        counts,
        failed,
    })
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
            decision_name(u.decision).to_uppercase(),
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
        if u.outcome != "none" {
            out.push_str(&format!("\n    outcome: {}", term(&u.outcome)));
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
    let outcome = |o: &str| {
        r.users
            .iter()
            .filter(|u| u.request.is_some() && u.outcome == o)
            .count()
    };
    if r.dry_run {
        out.push_str(&format!("; writes not sent: {}", outcome("dry-run")));
    } else {
        out.push_str(&format!(
            "; writes applied={} failed={}",
            outcome("applied"),
            outcome("failed")
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
