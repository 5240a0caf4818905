//! The `StateStore` contract: one suite, run against every backend —
//! SQLite, the in-memory store and PostgreSQL (a throwaway database on a
//! real server) — plus what only the shared store does: shard leases,
//! fencing, the clean hand-over of shards, migrations and `state migrate`.

use std::time::Duration;

use calstatus::reconcile::{Decision, Intent, Observation};
use calstatus::state::memory::MemoryStore;
use calstatus::state::postgres::{HAND_OVER, PgOptions, PgStore};
use calstatus::state::{
    Fence, JournalOutcome, SHARDS, Spend, SqliteStore, StateError, StateStore, WriteResult,
    shard_of,
};
use chrono::{DateTime, Utc};

use crate::support::pg::throwaway;
use crate::support::t;

fn intent(user: &str, decision: Decision, message: Option<&str>, save: Option<&str>) -> Intent {
    Intent {
        user: user.into(),
        decision,
        message: message.map(str::to_string),
        expiry: message.map(|_| t("2031-03-10T10:00:00Z")),
        occurrences: "[]".into(),
        save_personal: save.map(str::to_string),
    }
}

fn ok(i: &Intent) -> WriteResult {
    WriteResult {
        intent: i.clone(),
        result: Ok(()),
    }
}

/// What every backend must do.
async fn contract(store: &dyn StateStore, what: &str) {
    let at: DateTime<Utc> = t("2031-03-10T09:00:00Z");
    let users = vec!["a".to_string(), "b".to_string(), "c".to_string()];
    assert!(store.records(&users).await.unwrap().is_empty(), "{what}");
    // Intents: pending, with a personal message saved for restore.
    let set_a = intent("a", Decision::Set, Some("In a meeting"), None);
    let set_b = intent("b", Decision::Set, Some("Busy"), Some("Lisbon"));
    let set_c = intent("c", Decision::Set, Some("Review"), None);
    store
        .record_intents(
            "p1",
            at,
            vec![set_a.clone(), set_b.clone(), set_c.clone()],
            None,
        )
        .await
        .unwrap();
    let r = store.records(&users).await.unwrap();
    assert_eq!(
        r["a"].pending_message.as_deref(),
        Some("In a meeting"),
        "{what}"
    );
    assert_eq!(r["b"].saved_message.as_deref(), Some("Lisbon"), "{what}");
    assert_eq!(r["a"].message, None, "{what}");
    // Outcomes, one batch: a and b applied, c failed.
    store
        .record_outcomes(
            "p1",
            at,
            vec![
                ok(&set_a),
                ok(&set_b),
                WriteResult {
                    intent: set_c.clone(),
                    result: Err("HTTP 404".into()),
                },
            ],
        )
        .await
        .unwrap();
    let r = store.records(&users).await.unwrap();
    assert_eq!(r["a"].message.as_deref(), Some("In a meeting"), "{what}");
    assert_eq!(r["a"].expiry, Some(t("2031-03-10T10:00:00Z")), "{what}");
    assert_eq!(r["a"].pending_message, None, "{what}");
    assert_eq!(
        (r["c"].message.as_deref(), r["c"].failures),
        (None, 1),
        "{what}"
    );
    // Restore: the saved message goes, nothing of ours stays live.
    let restore = intent("b", Decision::Restore, Some("Lisbon"), None);
    store
        .record_intents("p2", at, vec![restore.clone()], None)
        .await
        .unwrap();
    store
        .record_outcomes("p2", at, vec![ok(&restore)])
        .await
        .unwrap();
    let r = store.records(&users).await.unwrap();
    assert_eq!(
        (r["b"].message.as_deref(), r["b"].saved_message.as_deref()),
        (None, None),
        "{what}"
    );
    // Observations: forget ours; adopt an interrupted write.
    store
        .observe("p3", at, vec![Observation::Forget("a".into())])
        .await
        .unwrap();
    let again = intent("c", Decision::Set, Some("Review"), None);
    store
        .record_intents("p3", at, vec![again], None)
        .await
        .unwrap();
    store
        .observe("p4", at, vec![Observation::AdoptPending("c".into())])
        .await
        .unwrap();
    let r = store.records(&users).await.unwrap();
    assert_eq!(r["a"].message, None, "{what}");
    assert_eq!(
        (r["c"].message.as_deref(), r["c"].pending_message.as_deref()),
        (Some("Review"), None),
        "{what}"
    );
    // UPN cache, case-insensitive.
    assert_eq!(store.cached_upn("Alice@Contoso.com").await.unwrap(), None);
    store
        .cache_upn("alice@contoso.com", "id-1", at)
        .await
        .unwrap();
    store
        .cache_upn("ALICE@contoso.com", "id-2", at)
        .await
        .unwrap();
    assert_eq!(
        store
            .cached_upn("alice@CONTOSO.com")
            .await
            .unwrap()
            .as_deref(),
        Some("id-2"),
        "{what}"
    );
    // The journal, in order.
    let j = store.journal().await.unwrap();
    let outcomes: Vec<JournalOutcome> = j.iter().map(|l| l.outcome).collect();
    assert_eq!(
        outcomes,
        [
            JournalOutcome::Intent,
            JournalOutcome::Intent,
            JournalOutcome::Intent,
            JournalOutcome::Ok,
            JournalOutcome::Ok,
            JournalOutcome::Failed,
            JournalOutcome::Intent,
            JournalOutcome::Ok,
            JournalOutcome::Intent,
            JournalOutcome::Adopted,
        ],
        "{what}"
    );
    assert_eq!(j[5].detail.as_deref(), Some("HTTP 404"), "{what}");
    assert_eq!(j[6].decision, Some(Decision::Restore), "{what}");
    // One pass at a time.
    let lease = store.acquire_lease().await.unwrap();
    assert!(
        store.acquire_lease().await.is_err(),
        "{what}: two pass leases"
    );
    drop(lease);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_holds_for_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    contract(&store, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_holds_for_memory() {
    contract(&MemoryStore::new(), "memory").await;
}

async fn pg(test: &str) -> Option<(crate::support::pg::TestDb, PgStore)> {
    let db = throwaway(test).await?;
    let store = PgStore::connect(&PgOptions {
        url: db.url.clone(),
        password: None,
        tls: calstatus::config::PgTls::Disable,
        ca_file: None,
    })
    .await
    .unwrap();
    Some((db, store))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_holds_for_postgres() {
    let Some((_db, store)) = pg("the_contract_holds_for_postgres").await else {
        return;
    };
    contract(&store, "postgres").await;
    // The pass lease gave its shards back when dropped.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = store
        .heartbeat("i1", Duration::from_secs(15), Spend::default())
        .await
        .unwrap();
    assert_eq!(held.shards.len(), usize::from(SHARDS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_spread_over_instances_and_change_hands_with_a_new_epoch() {
    let Some((_db, store)) = pg("shards_spread_over_instances").await else {
        return;
    };
    // Long enough to outlive the hand-over pauses below.
    let ttl = Duration::from_secs(5);
    // The first instance takes everything.
    let spent = Spend {
        ops: 40,
        window: Duration::from_secs(30),
    };
    let a = store.heartbeat("a", ttl, spent).await.unwrap();
    assert_eq!((a.shards.len(), a.live, a.others_spent), (64, 1, 0));
    // A second arrives: it gets nothing until the first gives its surplus
    // back, and learns what the first spent of the budget.
    let b = store.heartbeat("b", ttl, spent).await.unwrap();
    assert_eq!((b.shards.len(), b.live, b.others_spent), (0, 2, 40));
    let a = store.heartbeat("a", ttl, Spend::default()).await.unwrap();
    assert_eq!(a.shards.len(), 32);
    // Given back, but not takeable during the hand-over pause (a write
    // that passed a's gate just before lands first).
    let b = store.heartbeat("b", ttl, Spend::default()).await.unwrap();
    assert_eq!(b.shards.len(), 0, "taken during the hand-over pause");
    tokio::time::sleep(HAND_OVER).await;
    store.heartbeat("a", ttl, Spend::default()).await.unwrap();
    let b = store.heartbeat("b", ttl, Spend::default()).await.unwrap();
    assert_eq!(b.shards.len(), 32);
    assert!(b.taken_over.is_empty(), "given back, not taken over");
    // A third: 22, 21, 21.
    store.heartbeat("c", ttl, Spend::default()).await.unwrap();
    for h in ["a", "b"] {
        store.heartbeat(h, ttl, Spend::default()).await.unwrap();
    }
    tokio::time::sleep(HAND_OVER).await;
    let c = store.heartbeat("c", ttl, Spend::default()).await.unwrap();
    let a = store.heartbeat("a", ttl, Spend::default()).await.unwrap();
    let b = store.heartbeat("b", ttl, Spend::default()).await.unwrap();
    let mut all: Vec<u16> = [&a, &b, &c]
        .iter()
        .flat_map(|h| h.shards.keys().copied())
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 64, "every shard held once");
    for h in [&a, &b, &c] {
        assert!((21..=22).contains(&h.shards.len()), "{}", h.shards.len());
    }
    // The fence: b's intents for one of its shards are recorded; a stale
    // epoch, or a shard b does not hold, is refused and records nothing.
    let (&shard, &epoch) = b.shards.iter().next().unwrap();
    let user = (0..)
        .map(|i| format!("user-{i}"))
        .find(|u| shard_of(u) == shard)
        .unwrap();
    let i = intent(&user, Decision::Set, Some("In a meeting"), None);
    let fence = |holder: &str, e: i64| Fence {
        holder: holder.into(),
        shards: vec![(shard, e)],
    };
    let at = t("2031-03-10T09:00:00Z");
    store
        .record_intents("p", at, vec![i.clone()], Some(&fence("b", epoch)))
        .await
        .unwrap();
    for f in [fence("b", epoch - 1), fence("a", epoch)] {
        let e = store
            .record_intents("p2", at, vec![i.clone()], Some(&f))
            .await
            .unwrap_err();
        assert!(matches!(e, StateError::Fenced { .. }), "{e}");
    }
    assert_eq!(store.journal().await.unwrap().len(), 1);
    // b stops renewing: after the TTL its shards go to the others, with new
    // epochs, as takeovers; b's old epoch no longer records anything.
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    let a = store.heartbeat("a", ttl, Spend::default()).await.unwrap();
    let c = store.heartbeat("c", ttl, Spend::default()).await.unwrap();
    let a = if a.shards.len() < 32 {
        store.heartbeat("a", ttl, Spend::default()).await.unwrap()
    } else {
        a
    };
    assert_eq!(a.shards.len() + c.shards.len(), 64);
    assert!(!(a.taken_over.is_empty() && c.taken_over.is_empty()));
    let new_epoch = a
        .shards
        .get(&shard)
        .or(c.shards.get(&shard))
        .copied()
        .unwrap();
    assert!(new_epoch > epoch);
    assert!(matches!(
        store
            .record_intents("p3", at, vec![i], Some(&fence("b", epoch)))
            .await,
        Err(StateError::Fenced { .. })
    ));
    // A clean stop gives shards back at once.
    store.release("a").await.unwrap();
    let c = store.heartbeat("c", ttl, Spend::default()).await.unwrap();
    assert_eq!(c.shards.len(), 64);
    // A one-shot pass cannot run beside a live instance.
    assert!(matches!(
        store.acquire_lease().await,
        Err(StateError::InUse(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_versioned_and_a_newer_schema_is_refused() {
    let Some((db, store)) = pg("migrations_are_versioned").await else {
        return;
    };
    assert_eq!(
        store.schema_version().await.unwrap(),
        calstatus::state::postgres::SCHEMA_VERSION
    );
    // Connecting again migrates nothing twice (many instances at once).
    let options = PgOptions {
        url: db.url.clone(),
        password: None,
        tls: calstatus::config::PgTls::Disable,
        ca_file: None,
    };
    let (x, y) = tokio::join!(PgStore::connect(&options), PgStore::connect(&options));
    x.unwrap();
    y.unwrap();
    // A newer binary migrated it: this one refuses to start.
    let (c, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c.execute("INSERT INTO calstatus_schema (version) VALUES (99)", &[])
        .await
        .unwrap();
    let e = PgStore::connect(&options).await.err().unwrap();
    assert!(
        e.to_string().contains("schema version 99") && e.to_string().contains("upgrade calstatus"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqlite_state_is_migrated_into_postgres_idempotently() {
    let Some((_db, pg)) = pg("an_sqlite_state_is_migrated").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    contract(&sqlite, "sqlite").await;
    let first = pg.import(&sqlite).await.unwrap();
    let second = pg.import(&sqlite).await.unwrap();
    assert_eq!(first, second);
    let users = vec!["a".into(), "b".into(), "c".into()];
    let (from, to) = (
        sqlite.records(&users).await.unwrap(),
        pg.records(&users).await.unwrap(),
    );
    assert_eq!(from, to);
    assert_eq!(pg.journal().await.unwrap(), sqlite.journal().await.unwrap());
    assert_eq!(
        pg.cached_upn("alice@contoso.com").await.unwrap().as_deref(),
        Some("id-2")
    );
}
