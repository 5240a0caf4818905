//! `calstatus run` end to end: the real binary, the loopback fake Graph and
//! a loopback calendar server. Meetings that start seconds after launch,
//! calendar edits and outages, configuration edits, SIGTERM mid-wave and a
//! restart, `/healthz`, `/readyz` and `/metrics`.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{SubsecRound, Utc};

use crate::support::daemon::{
    RunOrg, each_written_once, eventually, fake_for, free_port, guid, meeting, metric, writes_to,
};
use crate::support::fake_graph::{self, FakeGraph, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meetings_starting_after_launch_are_published_on_time() {
    let fake = FakeGraph::start(Options {
        users: vec![guid(1), guid(2)],
        ..Options::default()
    })
    .await;
    let org = RunOrg::new(&fake, "refresh = \"1h\"", "");
    let now = Utc::now().trunc_subsecs(0);
    let start = now + chrono::Duration::seconds(8);
    let end = now + chrono::Duration::minutes(20);
    // u1's meeting starts seconds after launch; u2's is already running.
    org.calendar("u1.ics", &meeting("m1", start, end));
    org.calendar(
        "u2.ics",
        &meeting("m2", now - chrono::Duration::minutes(5), end),
    );
    org.user(1, "calendars/u1.ics");
    org.user(2, "calendars/u2.ics");
    let bot = org.start();
    bot.ready(Duration::from_secs(20)).await;
    let (u1, u2) = (guid(1), guid(2));
    eventually(
        Duration::from_secs(5),
        "the running meeting published",
        || !writes_to(&fake, &u2).is_empty(),
    )
    .await;
    eventually(Duration::from_secs(20), "the new meeting published", || {
        !writes_to(&fake, &u1).is_empty()
    })
    .await;
    let w = writes_to(&fake, &u1).remove(0);
    let lag = w.at - start;
    eprintln!("publish lag for a meeting starting after launch: {lag}");
    assert!(lag >= chrono::Duration::zero(), "published early: {lag}");
    assert!(lag < chrono::Duration::seconds(2), "published late: {lag}");
    assert_eq!(w.expiry, Some(end));
    assert_eq!(
        w.content,
        format!("In a meeting until {}", end.format("%H:%M"))
    );
    // Nothing is written twice.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(fake.set_count(), 2);
    // /metrics: Prometheus text whose write count is what the fake accepted.
    let (code, text) = bot.get("/metrics").await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        metric(&text, "calstatus_writes_total{outcome=\"applied\"}"),
        fake.set_count() as f64
    );
    assert!(
        metric(&text, "calstatus_publish_lag_seconds_count") >= 2.0,
        "{text}"
    );
    assert_eq!(metric(&text, "calstatus_users{state=\"planned\"}"), 2.0);
    let h = bot.health().await;
    assert_eq!(h["status"], "ok", "{h}");
    let (code, took, log) = bot.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// A loopback calendar server whose answer can be changed, made to fail
/// (503) or taken away (connection refused).
struct CalendarServer {
    port: u16,
    text: Arc<Mutex<String>>,
    status: Arc<Mutex<u16>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl CalendarServer {
    async fn start(text: &str) -> CalendarServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut s = CalendarServer {
            port,
            text: Arc::new(Mutex::new(text.to_string())),
            status: Arc::new(Mutex::new(200)),
            task: None,
        };
        s.serve(listener);
        s
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (text, status) = (self.text.clone(), self.status.clone());
        let app = axum::Router::new().fallback(move || {
            let (text, status) = (text.clone(), status.clone());
            async move {
                let code = *status.lock().unwrap();
                let body = text.lock().unwrap().clone();
                (
                    axum::http::StatusCode::from_u16(code).unwrap(),
                    [("content-type", "text/calendar")],
                    body,
                )
            }
        });
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/cal.ics", self.port)
    }

    fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_outages_and_reloads_while_running() {
    let ids: Vec<String> = (1..=3).map(guid).collect();
    let fake = FakeGraph::start(Options {
        users: ids.clone(),
        ..Options::default()
    })
    .await;
    let now = Utc::now().trunc_subsecs(0);
    let started = now - chrono::Duration::minutes(10);
    let end = now + chrono::Duration::hours(1);
    let mut server = CalendarServer::start(&meeting("m1", started, end)).await;
    let org = RunOrg::new(&fake, "refresh = \"1s\"", "");
    org.user(1, &server.url());
    org.calendar("u2.ics", &meeting("m2", started, end));
    org.user(2, "calendars/u2.ics");
    let bot = org.start();
    bot.ready(Duration::from_secs(20)).await;
    let (u1, u2, u3) = (&ids[0], &ids[1], &ids[2]);
    eventually(Duration::from_secs(5), "both published", || {
        !writes_to(&fake, u1).is_empty() && !writes_to(&fake, u2).is_empty()
    })
    .await;

    // The meeting running now is extended: the next refresh publishes the new end.
    let later = now + chrono::Duration::hours(2);
    *server.text.lock().unwrap() = meeting("m1", started, later);
    eventually(Duration::from_secs(6), "the extension published", || {
        writes_to(&fake, u1).last().and_then(|w| w.expiry) == Some(later)
    })
    .await;

    // An outage (503, then connection refused) changes nobody's status.
    let before = fake.set_count();
    *server.status.lock().unwrap() = 503;
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fake.set_count(), before, "{}", bot.log());
    let h = bot.health().await;
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(h["stale_calendars"].as_u64().unwrap() >= 1, "{h}");
    let (_, text) = bot.get("/metrics").await.unwrap();
    assert!(metric(&text, "calstatus_calendar_fetch_errors_total") >= 2.0);
    assert!(
        metric(&text, "calstatus_calendar_stale_seconds") >= 2.0,
        "{text}"
    );
    assert_eq!(
        fake.messages()[u1.as_str()].as_ref().unwrap().expiry,
        Some(later)
    );

    // A new user file is picked up without a restart.
    org.calendar("u3.ics", &meeting("m3", started, end));
    org.user(3, "calendars/u3.ics");
    eventually(Duration::from_secs(6), "the new user published", || {
        !writes_to(&fake, u3).is_empty()
    })
    .await;

    // A broken rule file is reported and the last good rules stay in force.
    let count = fake.set_count();
    std::fs::write(
        org.path("rules/zz-broken.toml"),
        "[[rule]]\nname = \"x\"\nsumary = 1\n",
    )
    .unwrap();
    let mut h = serde_json::Value::Null;
    for _ in 0..60 {
        h = bot.health().await;
        if !h["config_errors"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        h["config_errors"].to_string().contains("zz-broken.toml"),
        "{h}"
    );
    let (_, text) = bot.get("/metrics").await.unwrap();
    assert!(metric(&text, "calstatus_config_reload_errors_total") >= 1.0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.set_count(), count, "{}", bot.log());
    std::fs::remove_file(org.path("rules/zz-broken.toml")).unwrap();

    // A user who leaves gets calstatus's message cleared.
    std::fs::remove_file(org.path("users/u2.toml")).unwrap();
    eventually(
        Duration::from_secs(6),
        "the leaver's message cleared",
        || {
            writes_to(&fake, u2)
                .last()
                .is_some_and(|w| w.content.is_empty())
        },
    )
    .await;
    // And the others were never touched by the edits.
    assert_eq!(writes_to(&fake, u3).len(), 1);
    let (code, took, log) = bot.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(took < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_wave_then_restart_finishes_without_duplicates() {
    let n = 40;
    let (fake, ids) = fake_for(n).await;
    // One write at a time, 250 ms each: the wave takes ~10 s.
    fake.set_latency(Duration::from_millis(250));
    let org = RunOrg::new(&fake, "refresh = \"1h\"", "batch = false\nconcurrency = 1");
    let (_, end) = org.wave(n, 6);
    let bot = org.start();
    bot.ready(Duration::from_secs(20)).await;
    eventually(Duration::from_secs(20), "the wave started", || {
        fake.set_count() >= 3
    })
    .await;
    let (code, took, log) = bot.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let written = fake.set_count();
    assert!(written < n, "the wave was not interrupted: {written}");
    // The state store is consistent and the restart finishes the wave.
    let bot = org.start();
    bot.ready(Duration::from_secs(20)).await;
    eventually(Duration::from_secs(30), "the wave finished", || {
        fake.messages().values().filter(|m| m.is_some()).count() == n
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    each_written_once(&fake, &ids, end);
    let (code, _, log) = bot.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_validates_run() {
    let fake = FakeGraph::start(Options::default()).await;
    let server = CalendarServer::start(&meeting("m", Utc::now(), Utc::now())).await;
    let org = RunOrg::new(&fake, "refresh = \"10s\"", "");
    org.user(1, &server.url());
    let check = |org: &RunOrg| {
        let out = Command::new(env!("CARGO_BIN_EXE_calstatus"))
            .args(["check", "--config", org.cfg.to_str().unwrap()])
            .env_remove("CALSTATUS_CONFIG")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    // Under a minute with URLs: a warning, not a failure.
    let (code, out) = check(&org);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("warning") && out.contains("run.refresh") && out.contains("under a minute"),
        "{out}"
    );
    // Zero, or a horizon shorter than the lead time: problems.
    let text = std::fs::read_to_string(&org.cfg)
        .unwrap()
        .replace("refresh = \"10s\"", "refresh = \"0s\"\nhorizon = \"1m\"");
    std::fs::write(&org.cfg, format!("{text}\n[sync]\nlead_time = \"2m\"\n")).unwrap();
    let (code, out) = check(&org);
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("run.refresh: must be longer than zero"),
        "{out}"
    );
    assert!(out.contains("run.horizon"), "{out}");
    // An unknown key in [run] is a problem with its line.
    std::fs::write(&org.cfg, format!("{text}\nlisten_on = 1\n")).unwrap();
    let (code, out) = check(&org);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("listen_on: unknown field"), "{out}");
}

/// A refused token is the admin's to fix (exit 3); an unreachable Entra is
/// a failure a restart may get past (exit 4), for `run` and `sync` alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_failures_at_start_tell_configuration_from_outage() {
    let fake = FakeGraph::start(Options::default()).await;
    let org = RunOrg::new(&fake, "", "max_attempts = 1");
    org.calendar("u1.ics", &meeting("m", Utc::now(), Utc::now()));
    org.user(1, "calendars/u1.ics");
    let cfg = org.cfg.to_str().unwrap().to_string();
    let exit = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_calstatus"))
            .args(args)
            .env_remove("CALSTATUS_CONFIG")
            .output()
            .unwrap()
            .status
            .code()
    };
    std::fs::write(org.path("secret.txt"), "wrong").unwrap();
    assert_eq!(exit(&["sync", "--config", &cfg]), Some(3));
    assert_eq!(exit(&["run", "--config", &cfg]), Some(3));
    std::fs::write(org.path("secret.txt"), fake_graph::CLIENT_SECRET).unwrap();
    let closed = free_port();
    let text = std::fs::read_to_string(&org.cfg).unwrap().replace(
        &format!("login_url = \"{}\"", fake.url()),
        &format!("login_url = \"http://127.0.0.1:{closed}\""),
    );
    std::fs::write(&org.cfg, text).unwrap();
    assert_eq!(exit(&["sync", "--config", &cfg]), Some(4));
    assert_eq!(exit(&["run", "--config", &cfg]), Some(4));
}
