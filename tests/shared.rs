//! Several `calstatus run` instances on one PostgreSQL database, end to
//! end: real binaries, the machine's PostgreSQL server (a throwaway
//! database per test) and the fake Graph. The people are shared out by
//! shard; an instance killed mid-wave is taken over within the lease time
//! with no status written twice; a paused instance whose lease lapsed
//! writes nothing when it wakes; a database outage stops writes until it
//! is back; the tenant's budget holds across instances; a single
//! instance's SQLite state moves over with `calstatus state migrate`.

use std::process::Command;
use std::time::{Duration, Instant};

use calstatus::state::shard_of;
use chrono::{SubsecRound, Utc};

use crate::support::daemon::{
    Bot, RunOrg, each_written_once, eventually, fake_for, meeting, metric, writes_to,
};
use crate::support::pg::{Proxy, TestDb, restart_server, throwaway, throwaway_alone};

/// The `[state]` section of an instance on `url`.
fn pg_state(url: &str) -> String {
    format!("[state]\nurl = \"{url}\"\ntls = \"disable\"\nlease_ttl = \"3s\"\n")
}

const TTL: Duration = Duration::from_secs(3);

/// Starts `k` instances of `org` on `url`.
fn start_instances(org: &RunOrg, url: &str, k: usize) -> Vec<Bot> {
    (0..k)
        .map(|i| {
            let (cfg, port) = org.instance(&format!("i{i}.toml"), &pg_state(url));
            org.start_with(&cfg, port, &format!("i{i}.log"))
        })
        .collect()
}

/// The shards each bot reports holding (`None`: not answering).
async fn shards_held(bots: &[&Bot]) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for b in bots {
        out.push(
            b.get("/metrics")
                .await
                .map(|(_, text)| metric(&text, "calstatus_shards_held")),
        );
    }
    out
}

/// Waits until the bots hold all 64 shards between them, evenly.
async fn spread(bots: &[&Bot], within: Duration) -> Vec<f64> {
    let until = Instant::now() + within;
    let mut last = Vec::new();
    while Instant::now() < until {
        last = shards_held(bots).await;
        let held: Vec<f64> = last.iter().flatten().copied().collect();
        let fair = 64.0 / bots.len() as f64;
        if held.len() == bots.len()
            && held.iter().sum::<f64>() == 64.0
            && held.iter().all(|h| (h - fair).abs() < 1.0)
        {
            return held;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs: Vec<String> = bots.iter().map(|b| b.log()).collect();
    panic!(
        "the shards did not spread within {within:?}: {last:?}\n{}",
        logs.join("\n----\n")
    );
}

fn signal(bot: &Bot, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &bot.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// Shards some instance still holds, read in the database.
/// Which of `bots` holds the shards of most of `ids` (by the holder names
/// in the database, `host/pid/…`).
async fn busiest(db: &TestDb, bots: &[Bot], ids: &[String]) -> usize {
    let (c, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = c
        .query(
            "SELECT shard, holder FROM shards WHERE holder IS NOT NULL",
            &[],
        )
        .await
        .unwrap();
    let pid_of: std::collections::HashMap<i32, String> = rows
        .iter()
        .map(|r| {
            let holder: String = r.get(1);
            (r.get(0), holder.split('/').nth(1).unwrap_or("").to_string())
        })
        .collect();
    let mut count = vec![0usize; bots.len()];
    for id in ids {
        let pid = pid_of.get(&i32::from(shard_of(id)));
        if let Some(k) = bots
            .iter()
            .position(|b| Some(&b.child.id().to_string()) == pid)
        {
            count[k] += 1;
        }
    }
    (0..bots.len()).max_by_key(|&k| count[k]).unwrap()
}

async fn held_in_database(db: &TestDb) -> i64 {
    let (c, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c.query_one(
        "SELECT count(*) FROM shards WHERE holder IS NOT NULL AND expires_at > now()",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// The shards the instance with process id `pid` holds (holder names are
/// `host/pid/random`).
async fn shards_of_process(db: &TestDb, pid: u32) -> Vec<u16> {
    let (c, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c.query(
        "SELECT shard FROM shards WHERE split_part(holder, '/', 2) = $1",
        &[&pid.to_string()],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<_, i32>(0) as u16)
    .collect()
}

/// When the server last started.
async fn server_started(db: &TestDb) -> chrono::DateTime<Utc> {
    let (c, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c.query_one("SELECT pg_postmaster_start_time()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_the_people_and_a_killed_one_is_taken_over() {
    let Some(db) = throwaway("three_instances_share_the_people").await else {
        return;
    };
    let n = 45;
    let (fake, ids) = fake_for(n).await;
    // One write at a time per instance, 300 ms each: the wave takes ~5 s.
    fake.set_latency(Duration::from_millis(300));
    // Graph throttles past the tenant's budget; the instances share it.
    fake.set_budget(Some(120));
    let org = RunOrg::new(
        &fake,
        "refresh = \"1h\"",
        "batch = false\nconcurrency = 1\nbudget = 120",
    );
    let (start, end) = org.wave(n, 16);
    let mut bots = start_instances(&org, &db.url, 3);
    for b in &bots {
        b.ready(Duration::from_secs(20)).await;
    }
    let held = spread(&bots.iter().collect::<Vec<_>>(), Duration::from_secs(14)).await;
    assert!(Utc::now() < start, "spread too late for the test: {held:?}");
    // A one-shot pass cannot run beside live instances.
    let out = Command::new(env!("CARGO_BIN_EXE_calstatus"))
        .args(["sync", "--config", org.path("i0.toml").to_str().unwrap()])
        .env_remove("CALSTATUS_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("cannot run beside them"), "{stderr}");
    // Kill one instance in the middle of the wave.
    eventually(Duration::from_secs(30), "the wave started", || {
        fake.set_count() >= 6
    })
    .await;
    let victim = bots.remove(0);
    let written_before: std::collections::HashSet<String> =
        fake.writes().into_iter().map(|w| w.user).collect();
    let victims_shards = shards_of_process(&db, victim.child.id()).await;
    assert!(!victims_shards.is_empty());

    signal(&victim, "-KILL");
    let killed = Instant::now();
    let killed_at = Utc::now();
    let victim_log = victim.log();
    drop(victim);
    // Its people are taken over within the lease time (plus a heartbeat and
    // the writes themselves), and every status is right.
    let published = || fake.messages().values().filter(|m| m.is_some()).count();
    while published() < n && killed.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        published(),
        n,
        "not everyone published after the takeover:\n{victim_log}\n----\n{}\n----\n{}",
        bots[0].log(),
        bots[1].log()
    );
    let took = killed.elapsed();
    // The first status published for the dead instance's people: within
    // the lease time and 2 s (the rest follow at the fake's 300 ms pace).
    let first = fake
        .writes()
        .into_iter()
        .filter(|w| !written_before.contains(&w.user))
        .filter(|w| victims_shards.contains(&shard_of(&w.user)))
        // Not the dead instance's write that was in flight (300 ms).
        .filter(|w| w.at > killed_at + chrono::Duration::milliseconds(500))
        .map(|w| w.at)
        .min()
        .unwrap();
    let failover = (first - killed_at).to_std().unwrap_or_default();

    println!("failover: first takeover write {failover:?} after SIGKILL, everyone in {took:?}");
    assert!(
        failover <= TTL + Duration::from_secs(2),
        "the first takeover write came {failover:?} after the kill"
    );
    // Nobody's status was written twice: not by the dead instance and its
    // successor, not at the hand-overs when the instances joined.
    tokio::time::sleep(Duration::from_secs(2)).await;
    each_written_once(&fake, &ids, end);
    let mut takeovers = 0.0;
    for b in &bots {
        let (_, text) = b.get("/metrics").await.unwrap();
        takeovers += metric(&text, "calstatus_lease_takeovers_total");
    }
    assert!(takeovers >= 1.0, "no takeover counted:\n{victim_log}");
    // The two left share everything; the budget was never exceeded.
    spread(&bots.iter().collect::<Vec<_>>(), Duration::from_secs(10)).await;
    assert!(
        fake.requests().iter().all(|r| r.status != 429),
        "Graph throttled"
    );
    assert!(fake.max_presence_ops_in(Duration::from_secs(30)) <= 120);
    // A clean stop gives the shards back at once.
    for b in bots {
        let (code, _, log) = b.stop();
        assert_eq!(code, Some(0), "{log}");
    }
    assert_eq!(held_in_database(&db).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_instance_writes_nothing_once_its_lease_lapsed() {
    let Some(db) = throwaway("a_paused_instance_writes_nothing").await else {
        return;
    };
    let n = 24;
    let (fake, ids) = fake_for(n).await;
    // One write at a time per instance, 300 ms each: ~4 s of wave each.
    fake.set_latency(Duration::from_millis(300));
    let org = RunOrg::new(&fake, "refresh = \"1h\"", "batch = false\nconcurrency = 1");
    org.wave(n, 14);
    let bots = start_instances(&org, &db.url, 2);
    for b in &bots {
        b.ready(Duration::from_secs(20)).await;
    }
    spread(&bots.iter().collect::<Vec<_>>(), Duration::from_secs(10)).await;
    // A long GC pause, a frozen VM: the instance with the most people
    // stops in the middle of its wave — its intents recorded, most writes
    // not yet sent — and stays stopped well past its lease.
    let victim = busiest(&db, &bots, &ids).await;
    eventually(Duration::from_secs(20), "the wave started", || {
        fake.set_count() >= 4
    })
    .await;
    signal(&bots[victim], "-STOP");
    tokio::time::sleep(TTL + Duration::from_secs(3)).await;
    // The other took its people over and published everyone.
    eventually(Duration::from_secs(15), "everyone published", || {
        fake.messages().values().filter(|m| m.is_some()).count() == n
    })
    .await;
    // It wakes in the middle of its pass, its lease lapsed: the writes it
    // had left must not be sent (the successor sent them).
    signal(&bots[victim], "-CONT");
    spread(&bots.iter().collect::<Vec<_>>(), Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for id in &ids {
        let w = writes_to(&fake, id);
        let about = |b: &Bot| -> String {
            b.log()
                .lines()
                .filter(|l| l.contains(id.as_str()) || l.contains("shards") || l.contains("pass"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(
            w.len(),
            1,
            "{id} written {} times: {w:?}\n{}\n----\n{}",
            w.len(),
            about(&bots[victim]),
            about(&bots[1 - victim])
        );
    }
    // How it stopped: its own gate refused the writes left, or — when the
    // pause caught it inside a short transaction — the server had dropped
    // that idle session (idle_in_transaction_session_timeout) and the pass
    // ended there, before sending anything more.
    let log = bots[victim].log();
    let gated = log.contains("no longer holds the user's shard");
    let session_dropped = log
        .lines()
        .any(|l| l.contains("A pass failed") && l.contains("connection closed"));
    assert!(
        gated || session_dropped,
        "the resumed instance did not stop its writes:\n{log}"
    );
    for b in bots {
        let (code, _, log) = b.stop();
        assert_eq!(code, Some(0), "{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_stops_writes_until_it_is_back() {
    let Some(db) = throwaway("a_database_outage_stops_writes").await else {
        return;
    };
    let proxy = Proxy::start(&db).await;
    let n = 5;
    let (fake, ids) = fake_for(n).await;
    let org = RunOrg::new(&fake, "refresh = \"1h\"", "");
    let (start, _) = org.wave(n, 9);
    let bot = start_instances(&org, &proxy.url, 1).remove(0);
    bot.ready(Duration::from_secs(20)).await;
    spread(&[&bot], Duration::from_secs(5)).await;
    proxy.cut();
    // The instance says so, and keeps running.
    let until = Instant::now() + Duration::from_secs(8);
    loop {
        let h = bot.health().await;
        if h["database"] == "unreachable" {
            assert_eq!(h["status"], "degraded", "{h}");
            break;
        }
        assert!(Instant::now() < until, "outage not noticed: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The meeting starts during the outage: nothing is written without a
    // lease (nor could the intent be recorded).
    let wait = (start - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(3);
    tokio::time::sleep(wait).await;
    assert_eq!(fake.set_count(), 0, "written without a lease");
    // Back: the leases are taken again and the overdue statuses published.
    proxy.restore();
    eventually(
        Duration::from_secs(10),
        "published after the outage",
        || fake.messages().values().filter(|m| m.is_some()).count() == n,
    )
    .await;
    let h = bot.health().await;
    assert_eq!(h["database"], "ok", "{h}");
    for id in &ids {
        assert_eq!(writes_to(&fake, id).len(), 1);
    }
    let (code, _, log) = bot.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_migrate_moves_a_single_instance_onto_postgres() {
    let Some(db) = throwaway("state_migrate_moves_a_single_instance").await else {
        return;
    };
    let n = 3;
    let (fake, _) = fake_for(n).await;
    let org = RunOrg::new(&fake, "", "");
    let now = Utc::now().trunc_subsecs(0);
    org.meetings(
        n,
        now - chrono::Duration::minutes(5),
        now + chrono::Duration::hours(1),
    );
    let calstatus = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_calstatus"))
            .args(args)
            .env_remove("CALSTATUS_CONFIG")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // One instance on SQLite publishes everyone.
    let sqlite = org.cfg.to_str().unwrap().to_string();
    let (code, _, err) = calstatus(&["sync", "--config", &sqlite]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(fake.set_count(), n);
    // Its state moves to PostgreSQL (twice: the copy is idempotent).
    let (pg_cfg, _) = org.instance("pg.toml", &pg_state(&db.url));
    let pg = pg_cfg.to_str().unwrap().to_string();
    let from = org.path("state.db");
    // The second time by URL alone, as the README shows it.
    let nowhere = org.path("none.toml");
    for args in [["--config", pg.as_str()], ["--to", db.url.as_str()]] {
        let (code, out, err) = calstatus(
            &[
                &["state", "migrate", "--from", from.to_str().unwrap()],
                &args[..],
                &["--config", nowhere.to_str().unwrap()][..usize::from(args[0] == "--to") * 2],
            ]
            .concat(),
        );
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains(&format!("Copied {n} record(s)")), "{out}");
    }
    // A password in the URL is refused (it would end up in shell history).
    let (code, _, err) = calstatus(&[
        "state",
        "migrate",
        "--from",
        from.to_str().unwrap(),
        "--to",
        "postgres://calstatus:hunter2@127.0.0.1/x",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("never goes in the file") && !err.contains("hunter2"),
        "{err}"
    );
    // On PostgreSQL, calstatus knows what it wrote: nothing is sent again.
    let (code, out, err) = calstatus(&["sync", "--config", &pg]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(fake.set_count(), n, "{out}");
    // A file that is not a state, or a configuration without a url, is refused.
    let missing = org.path("missing.db");
    let (code, _, err) = calstatus(&[
        "state",
        "migrate",
        "--config",
        &pg,
        "--from",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("not a calstatus state file"), "{err}");
    let (code, _, err) = calstatus(&[
        "state",
        "migrate",
        "--config",
        &sqlite,
        "--from",
        from.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("no [state] url"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_reconnect_after_postgresql_restarts() {
    let Some(db) = throwaway_alone("instances_reconnect_after_postgresql_restarts").await else {
        return;
    };
    let n = 6;
    let (fake, ids) = fake_for(n).await;
    let org = RunOrg::new(&fake, "refresh = \"1s\"", "");
    let now = Utc::now().trunc_subsecs(0);
    let far = now + chrono::Duration::hours(5);
    org.meetings(n, far, far + chrono::Duration::hours(1));
    let bots = start_instances(&org, &db.url, 2);
    for b in &bots {
        b.ready(Duration::from_secs(20)).await;
    }
    spread(&bots.iter().collect::<Vec<_>>(), Duration::from_secs(10)).await;
    let before = server_started(&db).await;
    if let Err(why) = restart_server() {
        crate::support::skip("instances_reconnect_after_postgresql_restarts", &why);
        return;
    }
    // Both reconnect on their own, and share the shards again.
    let until = Instant::now() + Duration::from_secs(20);
    for b in &bots {
        loop {
            let h = b.health().await;
            if h["database"] == "ok" && h["status"] == "ok" {
                break;
            }
            assert!(Instant::now() < until, "not reconnected: {h}\n{}", b.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    spread(&bots.iter().collect::<Vec<_>>(), Duration::from_secs(15)).await;
    assert!(
        server_started(&db).await > before,
        "the server was not restarted"
    );
    // And go on: meetings moved to now are published, once each.
    let start = Utc::now().trunc_subsecs(0) + chrono::Duration::seconds(3);
    let end = start + chrono::Duration::hours(1);
    for i in 1..=n {
        org.calendar(&format!("u{i}.ics"), &meeting(&format!("m{i}"), start, end));
    }
    eventually(
        Duration::from_secs(15),
        "published after the restart",
        || fake.messages().values().filter(|m| m.is_some()).count() == n,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    each_written_once(&fake, &ids, end);
    for b in bots {
        let (code, _, log) = b.stop();
        assert_eq!(code, Some(0), "{log}");
    }
}
