//! The shell around the pure core: load the org, fetch every calendar
//! (concurrently, each failure kept against its user), then parse, expand and
//! plan in parallel. `plan`, `sync` and the daemon all start here; dry-run
//! stops after the plan is rendered.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;

use crate::calendar::source::{Fetcher, Source, SourceError, scrub};
use crate::calendar::{Window, parse};
use crate::org::{Org, User};
use crate::par::par_map;
use crate::plan::{CalendarInput, Plan, Settings, SourceProblem, WindowReport, plan_user};

/// Users planned together (bounds the calendars held in memory at once).
pub const PLAN_CHUNK: usize = 512;

/// Errors that stop a whole run.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The HTTP client could not be built.
    #[error("cannot set up calendar fetching")]
    Fetcher(#[source] SourceError),
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

/// Fetches the texts of every distinct source of `users`.
pub async fn fetch_all(
    fetcher: &Fetcher,
    users: &[&User],
    concurrency: usize,
) -> HashMap<Source, Result<String, String>> {
    let mut seen = std::collections::HashSet::new();
    let mut unique: Vec<Source> = Vec::new();
    for u in users {
        for s in &u.sources {
            if seen.insert(s) {
                unique.push(s.clone());
            }
        }
    }
    fetch_sources(fetcher, unique, concurrency).await
}

/// Fetches the given sources concurrently.
pub async fn fetch_sources(
    fetcher: &Fetcher,
    unique: Vec<Source>,
    concurrency: usize,
) -> HashMap<Source, Result<String, String>> {
    futures::stream::iter(unique)
        .map(|s| async move {
            let r = fetcher.fetch(&s).await.map_err(|e| error_text(&s, &e));
            match &r {
                Ok(text) => {
                    tracing::debug!(message = "Read a calendar.", source = %s, bytes = text.len())
                }
                Err(e) => {
                    tracing::warn!(message = "Failed to load a calendar.", source = %s, error = %e)
                }
            }
            (s, r)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}

/// A fetch error as reported and logged: the source's secrets scrubbed
/// from the whole text (a last guard; `source` redacts as it builds errors).
fn error_text(source: &Source, e: &SourceError) -> String {
    match source {
        Source::Url(u) => scrub(&e.to_string(), &[u]),
        Source::File(_) => e.to_string(),
    }
}

/// Parses fetched texts (in parallel).
pub fn parse_all(texts: HashMap<Source, Result<String, String>>) -> HashMap<Source, CalendarInput> {
    let items: Vec<(Source, Result<String, String>)> = texts.into_iter().collect();
    let parsed = par_map(&items, |(s, r)| {
        let calendar = match r {
            Ok(text) => parse(text).map(Arc::new).map_err(|e| e.to_string()),
            Err(e) => Err(e.clone()),
        };
        (
            s.clone(),
            CalendarInput {
                label: s.to_string(),
                calendar,
            },
        )
    });
    parsed.into_iter().collect()
}

/// Plans the selected users from parsed calendars (in parallel). Pure.
///
/// A calendar a user lists more than once (under several spellings: sources
/// are canonical) is read once, with a warning.
pub fn plan_users(
    org: &Org,
    users: &[&User],
    calendars: &HashMap<Source, CalendarInput>,
    window: Window,
) -> Vec<crate::plan::UserPlan> {
    let settings = settings(org);
    par_map(users, |u| {
        let mut listed: Vec<(&Source, usize)> = Vec::with_capacity(u.sources.len());
        let mut at: HashMap<&Source, usize> = HashMap::with_capacity(u.sources.len());
        for s in &u.sources {
            match at.get(s) {
                Some(&i) => listed[i].1 += 1,
                None => {
                    at.insert(s, listed.len());
                    listed.push((s, 1));
                }
            }
        }
        let inputs: Vec<CalendarInput> = listed
            .iter()
            .map(|(s, _)| {
                calendars.get(*s).cloned().unwrap_or_else(|| CalendarInput {
                    label: s.to_string(),
                    calendar: Err("not fetched".into()),
                })
            })
            .collect();
        let mut plan = plan_user(u, &inputs, &org.rules, &settings, window);
        for (s, n) in listed.iter().filter(|(_, n)| *n > 1) {
            plan.warnings.push(SourceProblem {
                source: s.to_string(),
                message: format!(
                    "listed {n} times in this user's calendars (the same file or URL, spelt differently); read once"
                ),
            });
        }
        plan
    })
}

/// Loads, fetches and plans: the dry-run pipeline.
pub async fn build_plan(org: &Org, window: Window, ids: &[String]) -> Result<Plan, PipelineError> {
    let fetcher = Fetcher::new(org.policy.clone()).map_err(PipelineError::Fetcher)?;
    let (users, mut problems) = select_users(org, ids);
    // Users are planned in chunks so that memory stays bounded whatever the
    // org's size: a chunk's calendars are fetched, parsed (the texts are
    // dropped right there), planned, then released — except calendars that
    // later users also read, which are kept until their last reader.
    let mut readers: HashMap<&Source, usize> = HashMap::new();
    for u in &users {
        for s in &u.sources {
            *readers.entry(s).or_insert(0) += 1;
        }
    }
    // Each source is fetched with the first chunk that reads it; the next
    // chunk's files are fetched while this chunk is parsed and planned.
    let chunks: Vec<&[&User]> = users.chunks(PLAN_CHUNK).collect();
    let mut seen = std::collections::HashSet::new();
    let mut to_fetch: Vec<Vec<Source>> = chunks
        .iter()
        .map(|chunk| {
            chunk
                .iter()
                .flat_map(|u| u.sources.iter())
                .filter(|s| seen.insert(*s))
                .cloned()
                .collect()
        })
        .collect();
    let concurrency = org.config.file.fetch.concurrency;
    let spawn_fetch = |sources: Vec<Source>| {
        let f = fetcher.clone();
        tokio::spawn(async move { fetch_sources(&f, sources, concurrency).await })
    };
    let mut calendars: HashMap<Source, CalendarInput> = HashMap::new();
    let mut plans = Vec::with_capacity(users.len());
    let mut next = to_fetch.first_mut().map(|s| spawn_fetch(std::mem::take(s)));
    for (k, chunk) in chunks.iter().enumerate() {
        let texts = match next.take() {
            Some(h) => h.await.unwrap_or_default(),
            None => HashMap::new(),
        };
        next = to_fetch
            .get_mut(k + 1)
            .map(|s| spawn_fetch(std::mem::take(s)));
        calendars.extend(parse_all(texts));
        plans.extend(plan_users(org, chunk, &calendars, window));
        for u in chunk.iter() {
            for s in &u.sources {
                if let Some(n) = readers.get_mut(s) {
                    *n -= 1;
                    if *n == 0 {
                        calendars.remove(s);
                    }
                }
            }
        }
    }
    problems.extend(org.user_problems.iter().map(|p| SourceProblem {
        source: match p.line {
            Some(l) => format!("{}:{l}", p.file.display()),
            None => p.file.display().to_string(),
        },
        message: match &p.key {
            Some(k) => format!("{k}: {}", p.message),
            None => p.message.clone(),
        },
    }));
    Ok(Plan {
        window: WindowReport {
            from: window.from,
            to: window.to,
        },
        users: plans,
        problems,
    })
}
