//! The pieces of a pass, each timed on its own with the same inputs: where
//! the time of a pass goes.

use std::path::Path;
use std::time::{Duration, Instant};

use calstatus::graph::GraphSettings;
use calstatus::graph::client::{GraphClient, Write};
use calstatus::graph::model::set_status_body;
use calstatus::reconcile::{Decision, Intent};
use calstatus::state::{SqliteStore, StateStore, WriteResult};
use chrono::Utc;
use serde_json::{Value, json};

use crate::common::{secs, utc};
use crate::fake_graph::FakeGraph;
use crate::pass::start_fake;
use crate::{EXPIRY, FREE_BUDGET, PASS_AT, write_config};

/// `build_plan`, the state store and the Graph client, each alone, on the
/// first `ids`.
pub async fn isolated_stages(
    dir: &Path,
    ids: &[String],
    concurrency: usize,
    latency: Duration,
) -> Result<Value, String> {
    let n = ids.len();
    let fake = start_fake(ids, Duration::ZERO, None).await;
    let cfg = write_config(dir, "stages", &fake, true, concurrency, FREE_BUDGET, n)
        .map_err(|e| format!("writing the config: {e}"))?;
    let org = calstatus::org::load(&cfg).map_err(|p| format!("org::load: {p:?}"))?;
    let settings =
        calstatus::graph::settings(&org.config).map_err(|p| format!("graph settings: {p:?}"))?;
    let (plan_s, planned) = plan_stage(&org).await?;
    let mut out = state_stages(dir, ids).await?;
    let graph = graph_stages(&fake, &settings, ids, concurrency, latency).await?;
    out["users"] = json!(n);
    out["planned_users"] = json!(planned);
    out["build_plan_s"] = json!(plan_s);
    out["graph"] = json!(graph);
    Ok(out)
}

/// Planning, as `run_pass` does it: (seconds, users planned).
async fn plan_stage(org: &calstatus::org::Org) -> Result<(f64, usize), String> {
    let at = utc(PASS_AT);
    let window = calstatus::calendar::Window {
        from: at - chrono::Duration::days(1),
        to: at + chrono::Duration::days(1),
    };
    let t0 = Instant::now();
    let plan = calstatus::pipeline::build_plan(org, window, &[])
        .await
        .map_err(|e| format!("build_plan: {e}"))?;
    Ok((secs(t0.elapsed()), plan.users.len()))
}

/// The state store: the records of every user, the intents (one
/// transaction), then one transaction per batch of 20 outcomes (what
/// `engine::apply` does as each $batch comes back).
async fn state_stages(dir: &Path, ids: &[String]) -> Result<Value, String> {
    let n = ids.len();
    let t0 = Instant::now();
    let store = SqliteStore::open(&dir.join("state-stages.db")).map_err(|e| e.to_string())?;
    let open_s = secs(t0.elapsed());
    let t0 = Instant::now();
    store.records(ids).await.map_err(|e| e.to_string())?;
    let record_reads_s = secs(t0.elapsed());
    let intents: Vec<Intent> = ids
        .iter()
        .map(|id| Intent {
            user: id.clone(),
            decision: Decision::Set,
            message: Some("In a meeting until 10:00".into()),
            expiry: Some(utc(EXPIRY)),
            occurrences: "[]".into(),
            save_personal: None,
        })
        .collect();
    let t0 = Instant::now();
    store
        .record_intents("bench", Utc::now(), intents.clone(), None)
        .await
        .map_err(|e| e.to_string())?;
    let intents_s = secs(t0.elapsed());
    let t0 = Instant::now();
    for group in intents.chunks(20) {
        let outcomes = group
            .iter()
            .map(|i| WriteResult {
                intent: i.clone(),
                result: Ok(()),
            })
            .collect();
        store
            .record_outcomes("bench", Utc::now(), outcomes)
            .await
            .map_err(|e| e.to_string())?;
    }
    let outcomes_s = secs(t0.elapsed());
    Ok(json!({
        "state_open_s": open_s,
        "state_record_reads_s": record_reads_s,
        "state_record_intents_s": intents_s,
        "state_record_outcomes_s": outcomes_s,
        "state_outcome_us_each": outcomes_s * 1e6 / n.max(1) as f64,
    }))
}

/// Graph alone: reads and batched writes, no state, `done` a no-op; at the
/// given latency and concurrency, at twice the concurrency, and at zero
/// latency.
async fn graph_stages(
    fake: &FakeGraph,
    settings: &GraphSettings,
    ids: &[String],
    concurrency: usize,
    latency: Duration,
) -> Result<Vec<Value>, String> {
    let writes: Vec<Write> = ids
        .iter()
        .map(|id| Write {
            user: id.clone(),
            body: set_status_body("In a meeting until 10:00", Some(utc(EXPIRY))),
            epoch: None,
        })
        .collect();
    let mut graph = Vec::new();
    for (lat, conc) in [
        (latency, concurrency),
        (latency, concurrency * 2),
        (Duration::ZERO, concurrency),
    ] {
        fake.set_latency(lat);
        let mut st = settings.clone();
        st.concurrency = conc;
        let client = GraphClient::new(st).map_err(|e| e.to_string())?;
        client.check_token().await.map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let read = client.read_messages(ids).await;
        let reads_s = secs(t0.elapsed());
        let before = fake.http_requests();
        let t0 = Instant::now();
        let done = |_: calstatus::engine::WriteResults| {};
        let res = client.apply(writes.clone(), &done).await;
        let writes_s = secs(t0.elapsed());
        let ok = res.iter().filter(|(_, r)| r.is_ok()).count();
        let batches = fake.http_requests() - before;
        // The floor latency alone sets: ceil(batches / concurrency) round trips.
        let floor_s = batches.div_ceil(conc) as f64 * lat.as_secs_f64();
        graph.push(json!({
            "latency_ms": lat.as_millis() as u64,
            "concurrency": conc,
            "reads_s": reads_s,
            "read_users": read.len(),
            "writes_s": writes_s,
            "writes_ok": ok,
            "batches": batches,
            "latency_floor_s": floor_s,
            "extra_over_floor_s": writes_s - floor_s,
            "us_per_write": writes_s * 1e6 / ok.max(1) as f64,
        }));
    }
    Ok(graph)
}
