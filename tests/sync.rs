//! `sync` against the loopback fake Graph: bodies, idempotence,
//! protect/restore, clearing, throttling within the budget, retries,
//! token renewal, a kill mid-pass, and no secret in the logs.

use std::path::PathBuf;
use std::time::Duration;

use calstatus::reconcile::{Decision, PersonalPolicy};
use calstatus::state::{JournalOutcome, SqliteStore, StateStore};
use calstatus::sync::{SyncOptions, SyncReport, run_pass};

use crate::support::fake_graph::{self, FakeGraph, Options};
use crate::support::{copy_dir, root, t};

pub fn guid(i: usize) -> String {
    format!("{i:08x}-0000-4000-8000-{i:012x}")
}

struct SyncOrg {
    dir: tempfile::TempDir,
    cfg: PathBuf,
    users: Vec<String>,
}

const MEETING: &str = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:sync-1\r\nDTSTART:20310310T090000Z\r\nDTEND:20310310T100000Z\r\nSUMMARY:Weekly sync\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

/// An org of `n` users, each in a 09:00–10:00 UTC meeting on 2031-03-10
/// (in the future: the fake, like Graph, expires messages by the real clock).
fn sync_org(fake: &FakeGraph, n: usize, graph_extra: &str, sync_extra: &str) -> SyncOrg {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("users")).unwrap();
    std::fs::create_dir_all(d.join("calendars")).unwrap();
    copy_dir(&root().join("rules"), &d.join("rules"));
    std::fs::write(d.join("secret.txt"), fake_graph::CLIENT_SECRET).unwrap();
    let mut users = Vec::new();
    for i in 1..=n {
        let id = guid(i);
        std::fs::write(d.join(format!("calendars/u{i}.ics")), MEETING).unwrap();
        std::fs::write(
            d.join(format!("users/u{i}.toml")),
            format!("user = \"{id}\"\ncalendars = [\"calendars/u{i}.ics\"]\ntimezone = \"UTC\"\n"),
        )
        .unwrap();
        users.push(id);
    }
    let graph = format!(
        "[graph]\ntenant_id = \"{}\"\nclient_id = \"{}\"\nclient_secret_file = \"secret.txt\"\ngraph_url = \"{url}\"\nlogin_url = \"{url}\"\n{graph_extra}\n",
        fake_graph::TENANT,
        fake_graph::CLIENT_ID,
        url = fake.url()
    );
    std::fs::write(
        d.join("calstatus.toml"),
        format!("[org]\ntimezone = \"UTC\"\n\n{graph}\n[state]\npath = \"state.db\"\n\n[sync]\n{sync_extra}\n"),
    )
    .unwrap();
    let cfg = d.join("calstatus.toml");
    SyncOrg { dir, cfg, users }
}

async fn fake_for(users: &[String]) -> FakeGraph {
    FakeGraph::start(Options {
        users: users.to_vec(),
        ..Options::default()
    })
    .await
}

fn ids(n: usize) -> Vec<String> {
    (1..=n).map(guid).collect()
}

async fn pass(org: &SyncOrg, at: &str, dry_run: bool) -> SyncReport {
    let o = calstatus::org::load(&org.cfg).unwrap();
    let settings = calstatus::graph::settings(&o.config).unwrap();
    let policy = o.config.file.sync.personal_message;
    let opts = SyncOptions {
        at: t(at),
        users: vec![],
        dry_run,
        lead_time: chrono::Duration::zero(),
        policy,
        scope: None,
    };
    run_pass(&o, settings, &opts).await.unwrap()
}

fn count(r: &SyncReport, d: Decision) -> usize {
    r.users.iter().filter(|u| u.decision == d).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_with_expiry_at_meeting_end_then_keeps() {
    let fake = fake_for(&ids(45)).await;
    let org = sync_org(&fake, 45, "", "");
    let r = pass(&org, "2031-03-10T09:05:00Z", false).await;
    assert_eq!(count(&r, Decision::Set), 45, "{r:#?}");
    assert!(r.failed.is_empty());
    assert_eq!(fake.set_count(), 45);
    let msgs = fake.messages();
    for u in &org.users {
        let p = msgs[u].clone().expect("published");
        assert_eq!(p.content, "In a meeting until 10:00");
        assert_eq!(p.expiry, Some(t("2031-03-10T10:00:00Z")));
    }
    // 45 writes in batches of 20 → 3 $batch requests (+1 presence read).
    assert_eq!(fake.http_requests(), 4);
    // The exact body Graph received.
    let body = fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("$batch"))
        .and_then(|r| r.body)
        .unwrap();
    let item = &body["requests"][0];
    assert_eq!(item["method"], "POST");
    assert_eq!(item["headers"]["Content-Type"], "application/json");
    assert_eq!(
        item["body"]["statusMessage"]["expiryDateTime"]["dateTime"],
        "2031-03-10T10:00:00.0000000"
    );
    assert_eq!(
        item["body"]["statusMessage"]["expiryDateTime"]["timeZone"],
        "UTC"
    );
    assert_eq!(
        item["body"]["statusMessage"]["message"]["contentType"],
        "text"
    );
    // The same pass again writes nothing.
    let again = pass(&org, "2031-03-10T09:05:00Z", false).await;
    assert_eq!(count(&again, Decision::Keep), 45);
    assert_eq!(fake.set_count(), 45);
    // The journal has an intent and an outcome per write.
    let store = SqliteStore::open(&org.dir.path().join("state.db")).unwrap();
    let journal = store.journal().await.unwrap();
    assert_eq!(
        journal
            .iter()
            .filter(|j| j.outcome == JournalOutcome::Ok)
            .count(),
        45
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_batching_each_write_is_its_own_request() {
    let fake = fake_for(&ids(5)).await;
    let org = sync_org(&fake, 5, "batch = false", "");
    let r = pass(&org, "2031-03-10T09:05:00Z", false).await;
    assert_eq!(count(&r, Decision::Set), 5);
    assert_eq!(fake.http_requests(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_shows_requests_and_writes_nothing() {
    let fake = fake_for(&ids(3)).await;
    let org = sync_org(&fake, 3, "", "");
    let listing = || {
        let mut v: Vec<String> = std::fs::read_dir(org.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = listing();
    let r = pass(&org, "2031-03-10T09:05:00Z", true).await;
    assert_eq!(count(&r, Decision::Set), 3);
    assert_eq!(fake.set_count(), 0);
    // No state database, no lock file: a dry run writes nothing at all.
    assert_eq!(listing(), before);
    let table = calstatus::sync::render_table(&r);
    assert!(
        table.contains("Summary: set=3; writes not sent: 3"),
        "{table}"
    );
    let req = r.users[0].request.as_ref().unwrap();
    assert_eq!(req.method, "POST");
    assert_eq!(
        req.path,
        format!("/v1.0/users/{}/presence/setStatusMessage", r.users[0].user)
    );
    assert_eq!(
        req.body["statusMessage"]["message"]["content"],
        "In a meeting until 10:00"
    );
    // Nothing recorded either: the real pass still sets.
    assert_eq!(
        count(
            &pass(&org, "2031-03-10T09:05:00Z", false).await,
            Decision::Set
        ),
        3
    );
    // A dry run beside a live pass (which holds the lock) is not refused,
    // reads what the live pass recorded, and creates nothing.
    let before = listing();
    let live = SqliteStore::open(&org.dir.path().join("state.db")).unwrap();
    let lease = live.acquire_lease().await.unwrap();
    let r = pass(&org, "2031-03-10T09:05:00Z", true).await;
    assert_eq!(count(&r, Decision::Keep), 3, "{r:#?}");
    drop((lease, live));
    assert_eq!(listing(), before);
}

/// Each name appears once in the summary line, even when a decision
/// (failed) and an outcome (a failed write) share a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_line_names_each_count_once() {
    let fake = fake_for(&ids(2)).await;
    let org = sync_org(&fake, 3, "max_attempts = 1", "");
    // u3 is unknown to Graph: its write fails with 404; u1 writes fine;
    // u2's calendar is broken: decision failed.
    std::fs::write(
        org.dir.path().join("calendars/u2.ics"),
        "<html>login</html>",
    )
    .unwrap();
    let r = pass(&org, "2031-03-10T09:05:00Z", false).await;
    let table = calstatus::sync::render_table(&r);
    let summary = table.lines().find(|l| l.starts_with("Summary:")).unwrap();
    assert_eq!(
        summary, "Summary: failed=1 set=2; writes applied=1 failed=1",
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_own_message_is_protected_or_restored() {
    let fake = fake_for(&ids(2)).await;
    let org = sync_org(&fake, 2, "", "");
    fake.set_user_message(&org.users[0], "Working from Lisbon", None);
    let r = pass(&org, "2031-03-10T09:05:00Z", false).await;
    assert_eq!(
        r.users
            .iter()
            .find(|u| u.user == org.users[0])
            .unwrap()
            .decision,
        Decision::Protect
    );
    assert_eq!(
        fake.messages()[&org.users[0]].as_ref().unwrap().content,
        "Working from Lisbon"
    );

    let fake = fake_for(&ids(1)).await;
    let org = sync_org(&fake, 1, "", "personal_message = \"restore\"");
    fake.set_user_message(&org.users[0], "Working from Lisbon", None);
    let r = pass(&org, "2031-03-10T09:05:00Z", false).await;
    assert_eq!(r.users[0].decision, Decision::Set);
    assert_eq!(
        fake.messages()[&org.users[0]].as_ref().unwrap().content,
        "In a meeting until 10:00"
    );
    // After the meeting: put back. (The fake expires by the real clock, so
    // simulate the expiry of our message as Teams would.)
    fake.set_user_message(&org.users[0], "", None);
    let r = pass(&org, "2031-03-10T10:05:00Z", false).await;
    assert_eq!(r.users[0].decision, Decision::Restore, "{r:#?}");
    assert_eq!(
        fake.messages()[&org.users[0]].as_ref().unwrap().content,
        "Working from Lisbon"
    );
    let r = pass(&org, "2031-03-10T10:06:00Z", false).await;
    assert_eq!(r.users[0].decision, Decision::Idle);
}

/// calstatus sets "Out of office"; the person puts their own message over
/// it until 07:05 (protected); after 07:05 Graph shows nothing. The person
/// never cleared ours — they superseded it — so the status still planned is
/// published again. Clearing ours by hand, on the other hand, is respected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_superseded_by_an_expired_personal_message_is_published_again() {
    let fake = fake_for(&ids(2)).await;
    let org = sync_org(&fake, 2, "", "");
    let (alice, bob) = (&org.users[0], &org.users[1]);
    let r = pass(&org, "2031-03-10T09:01:00Z", false).await;
    assert_eq!(count(&r, Decision::Set), 2, "{r:#?}");
    // Alice writes her own message over ours; Bob clears ours.
    fake.set_user_message(alice, "Dentist, back 09:30", None);
    fake.set_user_message(bob, "", None);
    let r = pass(&org, "2031-03-10T09:02:00Z", false).await;
    let line = |r: &SyncReport, u: &str| r.users.iter().find(|l| l.user == u).unwrap().clone();
    assert_eq!(line(&r, alice).decision, Decision::Protect);
    assert_eq!(line(&r, bob).decision, Decision::Protect);
    // Alice's message expires (Teams removes it: Graph shows none).
    fake.set_user_message(alice, "", None);
    let r = pass(&org, "2031-03-10T09:31:00Z", false).await;
    let a = line(&r, alice);
    assert_eq!(
        (a.decision, a.outcome.as_str()),
        (Decision::Set, "applied"),
        "{r:#?}"
    );
    assert_eq!(
        fake.messages()[alice].as_ref().map(|p| p.content.as_str()),
        Some("In a meeting until 10:00")
    );
    assert!(line(&r, bob).reason.contains("cleared"), "{r:#?}");
    assert_eq!(fake.messages()[bob], None);
    // 2 first writes + Alice's again; nothing for Bob.
    assert_eq!(fake.set_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_meeting_clears_our_message() {
    let fake = fake_for(&ids(1)).await;
    let org = sync_org(&fake, 1, "", "");
    pass(&org, "2031-03-10T09:05:00Z", false).await;
    let cal = org.dir.path().join("calendars/u1.ics");
    std::fs::write(
        &cal,
        MEETING.replace(
            "SUMMARY:Weekly sync",
            "SUMMARY:Weekly sync\r\nSTATUS:CANCELLED",
        ),
    )
    .unwrap();
    let r = pass(&org, "2031-03-10T09:10:00Z", false).await;
    assert_eq!(r.users[0].decision, Decision::Clear);
    assert_eq!(fake.messages()[&org.users[0]], None);
    let r = pass(&org, "2031-03-10T09:11:00Z", false).await;
    assert_eq!(r.users[0].decision, Decision::Idle);
    assert_eq!(fake.set_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_honoured_and_the_budget_never_exceeded() {
    let fake = fake_for(&ids(30)).await;
    // 12 presence operations per 2 s; 30 writes + 1 read must take ≥ 4 s.
    let org = sync_org(&fake, 30, "budget = 12\nbudget_window = \"2s\"", "");
    fake.throttle_next(4, 1);
    let started = std::time::Instant::now();
    let r = pass(&org, "2031-03-10T09:05:00Z", false).await;
    let took = started.elapsed();
    assert_eq!(count(&r, Decision::Set), 30, "{r:#?}");
    assert!(r.failed.is_empty());
    let log = fake.presence_ops_log();
    for (i, a) in log.iter().enumerate() {
        let in_window = log[i..]
            .iter()
            .take_while(|b| b.duration_since(*a) < Duration::from_secs(2))
            .count();
        assert!(
            in_window <= 12,
            "{in_window} presence operations within 2 s"
        );
    }
    assert!(took >= Duration::from_secs(4), "{took:?}");
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_and_hard_ones_reported() {
    let fake = fake_for(&ids(6)).await;
    let org = sync_org(&fake, 6, "", "");
    fake.fail_next(3, 503);
    fake.reset_next_connections(1);
    let r = pass(&org, "2031-03-10T09:05:00Z", false).await;
    assert_eq!(count(&r, Decision::Set), 6, "{r:#?}");
    assert!(r.failed.is_empty(), "{r:#?}");

    // A user Graph does not know: 404, reported with Graph's code; others fine.
    let mut known = ids(3);
    known.remove(1);
    let fake = fake_for(&known).await;
    let org = sync_org(&fake, 3, "", "");
    let r = pass(&org, "2031-03-10T09:05:00Z", false).await;
    assert_eq!(r.failed, vec![guid(2)]);
    let line = r.users.iter().find(|u| u.user == guid(2)).unwrap();
    assert!(line.error.as_deref().unwrap().contains("404"), "{line:?}");
    assert_eq!(fake.set_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_are_renewed_once() {
    let fake = fake_for(&ids(2)).await;
    let org = sync_org(&fake, 2, "", "");
    // The first pass gets a token; expire it behind the client's back.
    let o = calstatus::org::load(&org.cfg).unwrap();
    let settings = calstatus::graph::settings(&o.config).unwrap();
    let client = calstatus::graph::client::GraphClient::new(settings).unwrap();
    client.check_token().await.unwrap();
    fake.expire_all_tokens();
    let read = client.read_messages(&org.users).await;
    assert!(read.values().all(|r| r.is_ok()), "{read:?}");
    assert_eq!(fake.token_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_credentials_work() {
    let fake = fake_for(&ids(1)).await;
    let dir = fake_graph::fixtures_dir();
    let org = sync_org(
        &fake,
        1,
        &format!(
            "certificate = \"{}\"\nprivate_key = \"{}\"\n",
            dir.join("app-cert.pem").display(),
            dir.join("app-key.pem").display()
        ),
        "",
    );
    // Use the certificate instead of the secret file.
    let text = std::fs::read_to_string(&org.cfg)
        .unwrap()
        .replace("client_secret_file = \"secret.txt\"\n", "");
    std::fs::write(&org.cfg, text).unwrap();
    let r = pass(&org, "2031-03-10T09:05:00Z", false).await;
    assert_eq!(count(&r, Decision::Set), 1, "{r:#?}");
}

/// An admin behind a proxy overrides `graph_url`/`login_url` (every org in
/// these tests does): the token is still asked for the cloud's Graph
/// resource and a certificate assertion still names the cloud's token
/// endpoint. The fake, like Entra, refuses `{graph_url}/.default`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxied_national_cloud_asks_for_the_clouds_scope() {
    for (cloud, scope, login) in [
        (
            "usgov-l4",
            "https://graph.microsoft.us/.default",
            "https://login.microsoftonline.us",
        ),
        (
            "usgov-l5",
            "https://dod-graph.microsoft.us/.default",
            "https://login.microsoftonline.us",
        ),
    ] {
        let certs = fake_graph::fixtures_dir();
        for credential in [
            "client_secret_file = \"secret.txt\"\n".to_string(),
            format!(
                "certificate = \"{}\"\nprivate_key = \"{}\"\n",
                certs.join("app-cert.pem").display(),
                certs.join("app-key.pem").display()
            ),
        ] {
            let fake = FakeGraph::start(Options {
                users: ids(1),
                scope: scope.into(),
                login_root: login.into(),
                ..Options::default()
            })
            .await;
            let org = sync_org(&fake, 1, &format!("cloud = \"{cloud}\"\n"), "");
            let text = std::fs::read_to_string(&org.cfg)
                .unwrap()
                .replace("client_secret_file = \"secret.txt\"\n", &credential);
            std::fs::write(&org.cfg, text).unwrap();
            let r = pass(&org, "2031-03-10T09:05:00Z", false).await;
            assert_eq!(count(&r, Decision::Set), 1, "{cloud}: {r:#?}");
            let asked: Vec<String> = fake
                .requests()
                .iter()
                .filter(|r| r.path.ends_with("/oauth2/v2.0/token"))
                .map(|r| {
                    r.body.as_ref().unwrap()["scope"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect();
            assert_eq!(asked, [scope], "{cloud}");
        }
    }
}

/// Token requests go through the same retry policy as Graph calls: an
/// Entra outage (503) is retried, a refusal is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_outage_is_retried() {
    let fake = fake_for(&ids(1)).await;
    let org = sync_org(&fake, 1, "", "");
    fake.fail_next_token_requests(2);
    let r = pass(&org, "2031-03-10T09:05:00Z", false).await;
    assert_eq!(count(&r, Decision::Set), 1, "{r:#?}");
    assert_eq!(fake.token_requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_one_clear_sentence() {
    let fake = fake_for(&ids(1)).await;
    let org = sync_org(&fake, 1, "", "");
    std::fs::write(org.dir.path().join("secret.txt"), "wrong").unwrap();
    let o = calstatus::org::load(&org.cfg).unwrap();
    let settings = calstatus::graph::settings(&o.config).unwrap();
    let opts = SyncOptions {
        at: t("2031-03-10T09:05:00Z"),
        users: vec![],
        dry_run: false,
        lead_time: chrono::Duration::zero(),
        policy: PersonalPolicy::Protect,
        scope: None,
    };
    let err = run_pass(&o, settings, &opts)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("invalid_client")
            && err.contains("AADSTS7000215")
            && err.contains("secret is wrong"),
        "{err}"
    );
    assert!(!err.contains("wrong\""));
}

fn run_cli(cfg: &std::path::Path, at: &str) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_calstatus"))
        .args([
            "sync",
            "--config",
            cfg.to_str().unwrap(),
            "--at",
            at,
            "--format",
            "json",
        ])
        .env("RUST_LOG", "trace")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_mid_pass_is_finished_by_the_next_without_duplicates() {
    let n = 60;
    let fake = fake_for(&ids(n)).await;
    let org = sync_org(&fake, n, "batch = false\nconcurrency = 2", "");
    fake.set_latency(Duration::from_millis(100));
    let mut child = run_cli(&org.cfg, "2031-03-10T09:05:00Z");
    // Let some writes land, then kill.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while fake.set_count() < 10 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    let _ = child.wait();
    let before = fake.set_count();
    assert!(before >= 10 && before < n, "{before}");
    fake.set_latency(Duration::ZERO);
    let out = tokio::task::spawn_blocking({
        let cfg = org.cfg.clone();
        move || {
            run_cli(&cfg, "2031-03-10T09:05:00Z")
                .wait_with_output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every user exactly once: nothing lost, nothing sent twice.
    assert_eq!(fake.set_count(), n);
    assert!(fake.messages().values().all(|m| m.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_token_in_logs_or_reports() {
    let fake = fake_for(&ids(2)).await;
    let org = sync_org(&fake, 2, "", "");
    let out = tokio::task::spawn_blocking({
        let cfg = org.cfg.clone();
        move || {
            run_cli(&cfg, "2031-03-10T09:05:00Z")
                .wait_with_output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.len() > 1000, "trace logging should say something");
    assert!(
        !all.contains(fake_graph::CLIENT_SECRET),
        "the client secret leaked"
    );
    let tokens = fake.issued_tokens();
    assert!(!tokens.is_empty());
    for tok in tokens {
        assert!(!all.contains(&tok), "a bearer token leaked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upns_are_resolved_once_and_cached() {
    let fake = FakeGraph::start(Options::default()).await;
    let org = sync_org(&fake, 1, "", "");
    // Address the user by UPN instead of object id.
    let user_file = org.dir.path().join("users/u1.toml");
    let text = std::fs::read_to_string(&user_file)
        .unwrap()
        .replace(&guid(1), fake_graph::ALICE_UPN);
    std::fs::write(&user_file, text).unwrap();
    let r = pass(&org, "2031-03-10T09:05:00Z", false).await;
    assert_eq!(r.users[0].user, fake_graph::ALICE);
    assert_eq!(r.users[0].decision, Decision::Set, "{r:#?}");
    assert_eq!(
        fake.messages()[fake_graph::ALICE].as_ref().unwrap().content,
        "In a meeting until 10:00"
    );
    let lookups = |f: &FakeGraph| {
        f.requests()
            .iter()
            .filter(|q| q.path.contains("$select=id"))
            .count()
    };
    assert_eq!(lookups(&fake), 1);
    let r = pass(&org, "2031-03-10T09:06:00Z", false).await;
    assert_eq!(r.users[0].decision, Decision::Keep);
    assert_eq!(
        lookups(&fake),
        1,
        "the resolution is cached in the state database"
    );
}

/// A user file that names Alice by her UPN while Alice's own file gives
/// her object id: after resolution both would write to Alice, the
/// attacker's text last. Neither is applied; both are reported; everyone
/// else is synced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_upn_alias_cannot_hijack_another_users_status() {
    use fake_graph::{ALICE, ALICE_UPN, BOB};
    let fake = FakeGraph::start(Options {
        users: vec![ALICE.into(), BOB.into()],
        ..Options::default()
    })
    .await;
    let org = sync_org(&fake, 0, "", "");
    let d = org.dir.path();
    for (file, id) in [("alice", ALICE), ("bob", BOB)] {
        std::fs::write(d.join(format!("calendars/{file}.ics")), MEETING).unwrap();
        std::fs::write(
            d.join(format!("users/{file}.toml")),
            format!("user = \"{id}\"\ncalendars = [\"calendars/{file}.ics\"]\n"),
        )
        .unwrap();
    }
    std::fs::write(
        d.join("calendars/mallory.ics"),
        MEETING.replace("Weekly sync", "anything"),
    )
    .unwrap();
    std::fs::write(
        d.join("users/mallory.toml"),
        format!(
            "user = \"{}\"\ncalendars = [\"calendars/mallory.ics\"]\n\n[[rule]]\nname = \"x\"\nmessage = \"I quit\"\n",
            ALICE_UPN.to_uppercase()
        ),
    )
    .unwrap();
    let r = pass(&org, "2031-03-10T09:05:00Z", false).await;
    assert_eq!(fake.messages()[ALICE], None, "{r:#?}");
    assert_eq!(
        fake.messages()[BOB].as_ref().map(|p| p.content.as_str()),
        Some("In a meeting until 10:00")
    );
    let conflicts: Vec<_> = r
        .users
        .iter()
        .filter(|u| u.decision == Decision::Failed)
        .collect();
    assert_eq!(conflicts.len(), 2, "{r:#?}");
    for c in &conflicts {
        let e = c.error.as_deref().unwrap();
        assert!(
            e.contains("alice.toml") && e.contains("mallory.toml") && e.contains(ALICE),
            "{e}"
        );
    }
    assert_eq!(r.failed.len(), 2);
    assert!(
        !fake.requests().iter().any(|q| q
            .body
            .as_ref()
            .is_some_and(|b| b.to_string().contains("I quit"))),
        "the attacker's text reached Graph"
    );
}
