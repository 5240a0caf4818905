//! The daemon's loop on tokio's paused time, against a simulated world
//! (calendars in memory, an in-memory Graph that expires messages like
//! Teams does, the in-memory state store): wakes at status start minus lead
//! time and at status ends, refreshes, clock jumps forward and back,
//! configuration reloads, and budget-bound waves served earliest-deadline
//! first.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use calstatus::calendar::source::Source;
use calstatus::daemon::calendars::Refreshed;
use calstatus::daemon::http::Health;
use calstatus::daemon::metrics::Metrics;
use calstatus::daemon::{Clock, Daemon, World};
use calstatus::engine::{Observer, PresenceReader, PresenceWriter, WriteResults};
use calstatus::graph::client::{OpError, Write};
use calstatus::org::{Org, User};
use calstatus::plan::{CalendarInput, Plan};
use calstatus::state::memory::MemoryStore;
use calstatus::sync::{SyncError, SyncOptions, SyncReport};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::support::{copy_dir, root, t};

/// Wall time that follows tokio's (paused) clock, plus jumps the test makes.
struct TestClock {
    base: DateTime<Utc>,
    start: tokio::time::Instant,
    offset: Mutex<chrono::Duration>,
}

impl TestClock {
    fn new(base: &str) -> Arc<TestClock> {
        Arc::new(TestClock {
            base: t(base),
            start: tokio::time::Instant::now(),
            offset: Mutex::new(chrono::Duration::zero()),
        })
    }

    fn jump(&self, by: chrono::Duration) {
        *self.offset.lock().unwrap() += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.start.elapsed()).unwrap();
        self.base + elapsed + *self.offset.lock().unwrap()
    }
    fn mono(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }
}

/// A message as the simulated Graph keeps it: (text, expiry).
type Stored = (String, Option<DateTime<Utc>>);

/// The next configuration the test stages: a new org, or why it is rejected.
type NextOrg = Arc<Mutex<Option<Result<Org, Vec<String>>>>>;

/// One write the simulated Graph accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Written {
    at: DateTime<Utc>,
    user: String,
    content: String,
    expiry: Option<DateTime<Utc>>,
}

/// Microsoft Graph in memory: messages expire at their expiry (by the test
/// clock); each write takes `per_write` (a binding budget), one at a time.
struct SimGraph {
    clock: Arc<TestClock>,
    messages: Mutex<HashMap<String, Stored>>,
    log: Mutex<Vec<Written>>,
    per_write: Duration,
}

#[async_trait]
impl PresenceReader for SimGraph {
    async fn read_messages(
        &self,
        ids: &[String],
    ) -> HashMap<String, Result<Option<String>, OpError>> {
        let now = self.clock.now();
        let m = self.messages.lock().unwrap();
        ids.iter()
            .map(|id| {
                let live = m
                    .get(id)
                    .filter(|(c, e)| !c.is_empty() && e.is_none_or(|e| e > now))
                    .map(|(c, _)| c.clone());
                (id.clone(), Ok(live))
            })
            .collect()
    }

    async fn resolve_upn(&self, upn: &str) -> Result<String, OpError> {
        Err(OpError::other("NotFound", upn))
    }
}

#[async_trait]
impl PresenceWriter for SimGraph {
    async fn write(&self, writes: Vec<Write>, done: &(dyn Fn(WriteResults) + Send + Sync)) {
        for w in writes {
            if !self.per_write.is_zero() {
                tokio::time::sleep(self.per_write).await;
            }
            let m = &w.body["statusMessage"];
            let content = m["message"]["content"].as_str().unwrap_or("").to_string();
            let expiry = m["expiryDateTime"]["dateTime"].as_str().map(|d| {
                chrono::NaiveDateTime::parse_from_str(d, "%Y-%m-%dT%H:%M:%S%.f")
                    .unwrap()
                    .and_utc()
            });
            self.log.lock().unwrap().push(Written {
                at: self.clock.now(),
                user: w.user.clone(),
                content: content.clone(),
                expiry,
            });
            self.messages
                .lock()
                .unwrap()
                .insert(w.user.clone(), (content, expiry));
            done(vec![(w.user, Ok(()))]);
        }
    }
}

/// Calendars in memory (by the source users name), the simulated Graph and
/// the in-memory store; the next configuration, when the test stages one.
struct SimWorld {
    org: Arc<Org>,
    texts: Arc<Mutex<HashMap<Source, String>>>,
    parsed: HashMap<Source, (String, Arc<calstatus::calendar::Calendar>)>,
    graph: Arc<SimGraph>,
    store: MemoryStore,
    next_org: NextOrg,
}

#[async_trait]
impl World for SimWorld {
    fn org(&self) -> Arc<Org> {
        self.org.clone()
    }

    async fn reload(&mut self) -> Result<Option<Vec<String>>, Vec<String>> {
        match self.next_org.lock().unwrap().take() {
            None => Ok(None),
            Some(Err(e)) => Err(e),
            Some(Ok(new)) => {
                let (org, left) = calstatus::daemon::adopt(&self.org, new);
                self.org = Arc::new(org);
                Ok(Some(left))
            }
        }
    }

    fn load_cached(&mut self, _sources: &[Source]) {}

    async fn refresh_calendars(&mut self, users: &[User], _now: DateTime<Utc>) -> Refreshed {
        let texts = self.texts.lock().unwrap().clone();
        let mut out = Refreshed::default();
        for s in users.iter().flat_map(|u| u.sources.iter()) {
            let Some(text) = texts.get(s) else { continue };
            if self.parsed.get(s).is_some_and(|(old, _)| old == text) {
                continue;
            }
            let cal = calstatus::calendar::parse(text).unwrap();
            self.parsed.insert(s.clone(), (text.clone(), Arc::new(cal)));
            out.changed.insert(s.clone());
        }
        out
    }

    fn staleness(&self) -> (usize, Option<DateTime<Utc>>) {
        (0, None)
    }

    fn inputs(&self, sources: &[&Source]) -> HashMap<Source, CalendarInput> {
        sources
            .iter()
            .filter_map(|s| {
                self.parsed.get(*s).map(|(_, c)| {
                    (
                        (*s).clone(),
                        CalendarInput {
                            label: s.to_string(),
                            calendar: Ok(c.clone()),
                        },
                    )
                })
            })
            .collect()
    }

    async fn pass(
        &self,
        plan: &Plan,
        opts: &SyncOptions,
        observer: &dyn Observer,
    ) -> Result<SyncReport, SyncError> {
        calstatus::sync::pass(&self.org, plan, &*self.graph, &self.store, opts, observer).await
    }
}

fn guid(i: usize) -> String {
    format!("{i:08x}-0000-4000-8000-{i:012x}")
}

/// An org on disk (rules, users, `[run]`/`[sync]` as given) whose calendars
/// the simulation serves from memory.
struct Sim {
    dir: tempfile::TempDir,
    texts: Arc<Mutex<HashMap<Source, String>>>,
    clock: Arc<TestClock>,
    graph: Arc<SimGraph>,
    next_org: NextOrg,
    health: Arc<Health>,
}

impl Sim {
    fn new(start: &str, config_extra: &str, per_write: Duration) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("users")).unwrap();
        copy_dir(&root().join("rules"), &dir.path().join("rules"));
        std::fs::write(
            dir.path().join("calstatus.toml"),
            format!("[org]\ntimezone = \"UTC\"\n{config_extra}\n"),
        )
        .unwrap();
        let clock = TestClock::new(start);
        Sim {
            dir,
            texts: Arc::default(),
            graph: Arc::new(SimGraph {
                clock: clock.clone(),
                messages: Mutex::default(),
                log: Mutex::default(),
                per_write,
            }),
            clock,
            next_org: Arc::default(),
            health: Health::new(Metrics::new(None)),
        }
    }

    fn cfg(&self) -> PathBuf {
        self.dir.path().join("calstatus.toml")
    }

    /// User `i` with `meetings` (start, end, summary).
    fn user(&self, i: usize, meetings: &[(&str, &str, &str)]) {
        let file = format!("calendars/u{i}.ics");
        std::fs::write(
            self.dir.path().join(format!("users/u{i}.toml")),
            format!("user = \"{}\"\ncalendars = [\"{file}\"]\n", guid(i)),
        )
        .unwrap();
        self.calendar(i, meetings);
    }

    fn calendar(&self, i: usize, meetings: &[(&str, &str, &str)]) {
        let mut ics = String::from("BEGIN:VCALENDAR\r\n");
        for (k, (s, e, summary)) in meetings.iter().enumerate() {
            let f = |x: &str| t(x).format("%Y%m%dT%H%M%SZ").to_string();
            ics.push_str(&format!(
                "BEGIN:VEVENT\r\nUID:u{i}-{k}\r\nDTSTART:{}\r\nDTEND:{}\r\nSUMMARY:{summary}\r\nEND:VEVENT\r\n",
                f(s),
                f(e)
            ));
        }
        ics.push_str("END:VCALENDAR\r\n");
        let source = Source::File(self.dir.path().join(format!("calendars/u{i}.ics")));
        self.texts.lock().unwrap().insert(source, ics);
    }

    /// Starts the loop; returns what stops it.
    fn start(&self) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let org = calstatus::org::load(&self.cfg()).unwrap();
        let world = SimWorld {
            org: Arc::new(org),
            texts: self.texts.clone(),
            parsed: HashMap::new(),
            graph: self.graph.clone(),
            store: MemoryStore::new(),
            next_org: self.next_org.clone(),
        };
        let mut d = Daemon::new(
            world,
            self.clock.clone(),
            self.health.clone(),
            Metrics::new(None),
        );
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            d.run(&s).await.unwrap();
        });
        (stop, task)
    }

    /// Lets virtual time run until the test clock reads `until`.
    async fn until(&self, until: &str) {
        let left = (t(until) - self.clock.now()).to_std().unwrap_or_default();
        tokio::time::sleep(left).await;
    }

    fn log(&self) -> Vec<Written> {
        self.graph.log.lock().unwrap().clone()
    }

    fn log_of(&self, i: usize) -> Vec<Written> {
        self.log()
            .into_iter()
            .filter(|w| w.user == guid(i))
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn wakes_at_start_minus_lead_time_and_at_ends_never_early() {
    let sim = Sim::new(
        "2031-03-10T08:50:00Z",
        "[sync]\nlead_time = \"2m\"\n[run]\nrefresh = \"5m\"",
        Duration::ZERO,
    );
    sim.user(
        1,
        &[
            ("2031-03-10T09:00:00Z", "2031-03-10T09:30:00Z", "Sync"),
            ("2031-03-10T10:00:00Z", "2031-03-10T11:00:00Z", "Review"),
        ],
    );
    let (stop, task) = sim.start();
    sim.until("2031-03-10T08:57:59Z").await;
    assert!(sim.log().is_empty(), "published early: {:?}", sim.log());
    sim.until("2031-03-10T08:58:01Z").await;
    let w = sim.log_of(1);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].at, t("2031-03-10T08:58:00Z"));
    assert_eq!(w[0].content, "In a meeting until 09:30");
    assert_eq!(w[0].expiry, Some(t("2031-03-10T09:30:00Z")));
    // 09:30: ours expires with the meeting; nothing to write. 09:58: the next.
    sim.until("2031-03-10T09:58:00.500Z").await;
    let w = sim.log_of(1);
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!(
        (w[1].at, w[1].content.as_str()),
        (t("2031-03-10T09:58:00Z"), "In a meeting until 11:00")
    );
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_refresh_picks_up_an_edit_to_the_running_meeting() {
    let sim = Sim::new(
        "2031-03-10T08:59:00Z",
        "[run]\nrefresh = \"5m\"",
        Duration::ZERO,
    );
    sim.user(
        1,
        &[("2031-03-10T09:00:00Z", "2031-03-10T09:30:00Z", "Sync")],
    );
    let (stop, task) = sim.start();
    sim.until("2031-03-10T09:10:00Z").await;
    // Extended until 10:00 at 09:10; the refresh at 09:14 (every 5 m from
    // 08:59) publishes it.
    sim.calendar(
        1,
        &[("2031-03-10T09:00:00Z", "2031-03-10T10:00:00Z", "Sync")],
    );
    sim.until("2031-03-10T09:15:00Z").await;
    let w = sim.log_of(1);
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!(w[1].at, t("2031-03-10T09:14:00Z"));
    assert_eq!(w[1].expiry, Some(t("2031-03-10T10:00:00Z")));
    // Cancelled: cleared at the next refresh.
    sim.calendar(1, &[]);
    sim.until("2031-03-10T09:20:00Z").await;
    let w = sim.log_of(1);
    assert_eq!((w.len(), w[2].content.as_str()), (3, ""), "{w:?}");
    assert_eq!(w[2].at, t("2031-03-10T09:19:00Z"));
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_clock_jump_reconciles_at_the_new_time_without_replaying() {
    let sim = Sim::new(
        "2031-03-10T08:50:00Z",
        "[run]\nrefresh = \"1h\"",
        Duration::ZERO,
    );
    sim.user(
        1,
        &[
            ("2031-03-10T09:00:00Z", "2031-03-10T09:30:00Z", "Sync"),
            ("2031-03-10T10:00:00Z", "2031-03-10T11:00:00Z", "Review"),
        ],
    );
    let (stop, task) = sim.start();
    sim.until("2031-03-10T08:55:00Z").await;
    // Suspended for two hours: the machine wakes at 10:55.
    sim.clock.jump(chrono::Duration::hours(2));
    tokio::time::sleep(Duration::from_secs(31)).await;
    let w = sim.log_of(1);
    assert_eq!(w.len(), 1, "replayed or skipped: {w:?}");
    assert_eq!(w[0].content, "In a meeting until 11:00");
    assert!(w[0].at >= t("2031-03-10T10:55:00Z"), "{w:?}");
    // NTP steps the clock back to 09:05: the review has not started, and
    // our message is cleared; the sync (09:00–09:30) is running: published.
    sim.clock.jump(chrono::Duration::minutes(-111));
    tokio::time::sleep(Duration::from_secs(31)).await;
    let w = sim.log_of(1);
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!(w[1].content, "In a meeting until 09:30");
    // And the schedule goes on from there: the review at 10:00.
    sim.until("2031-03-10T10:00:01Z").await;
    let w = sim.log_of(1);
    assert_eq!(
        w.last().unwrap().content,
        "In a meeting until 11:00",
        "{w:?}"
    );
    assert_eq!(w.last().unwrap().at, t("2031-03-10T10:00:00Z"));
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_reload_takes_effect_at_the_next_refresh_and_a_rejected_one_does_not() {
    let sim = Sim::new(
        "2031-03-10T09:10:00Z",
        "[run]\nrefresh = \"5m\"",
        Duration::ZERO,
    );
    sim.user(
        1,
        &[("2031-03-10T09:00:00Z", "2031-03-10T10:00:00Z", "Sync")],
    );
    sim.user(
        2,
        &[("2031-03-10T09:00:00Z", "2031-03-10T10:00:00Z", "Sync")],
    );
    let (stop, task) = sim.start();
    sim.until("2031-03-10T09:11:00Z").await;
    assert_eq!(sim.log().len(), 2);
    // A rejected edit: reported, nothing changes.
    *sim.next_org.lock().unwrap() = Some(Err(vec!["rules/x.toml:3: sumary: unknown field".into()]));
    sim.until("2031-03-10T09:16:00Z").await;
    assert_eq!(sim.log().len(), 2);
    let h = sim.health.report();
    assert_eq!((h.status, h.config_errors.len()), ("degraded", 1));
    // A good edit: new org rules say something else; user 2 left.
    std::fs::write(
        sim.dir.path().join("rules/00-first.toml"),
        "[[rule]]\nname = \"busy\"\nmessage = \"Busy until {end:%H:%M}\"\n",
    )
    .unwrap();
    std::fs::remove_file(sim.dir.path().join("users/u2.toml")).unwrap();
    *sim.next_org.lock().unwrap() = Some(Ok(calstatus::org::load(&sim.cfg()).unwrap()));
    sim.until("2031-03-10T09:21:00Z").await;
    let u1 = sim.log_of(1);
    assert_eq!(u1.last().unwrap().content, "Busy until 10:00", "{u1:?}");
    assert_eq!(u1.last().unwrap().at, t("2031-03-10T09:20:00Z"));
    let u2 = sim.log_of(2);
    assert_eq!(
        u2.last().unwrap().content,
        "",
        "the leaver is cleared: {u2:?}"
    );
    assert!(sim.health.report().config_errors.is_empty());
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_budget_bound_wave_is_served_earliest_deadline_first() {
    // Each write takes 10 s (a binding budget). 12 people start at 09:00;
    // five more at 09:00:20, 09:00:40, … in reverse order of their ids.
    let sim = Sim::new(
        "2031-03-10T08:59:00Z",
        "[run]\nrefresh = \"1h\"",
        Duration::from_secs(10),
    );
    for i in 1..=12 {
        sim.user(
            i,
            &[("2031-03-10T09:00:00Z", "2031-03-10T10:00:00Z", "Wave")],
        );
    }
    let later: Vec<usize> = (13..=17).rev().collect();
    for (k, i) in later.iter().enumerate() {
        let start = t("2031-03-10T09:00:00Z") + chrono::Duration::seconds(20 * (k as i64 + 1));
        let s = start.to_rfc3339();
        sim.user(*i, &[(&s, "2031-03-10T10:00:00Z", "Late")]);
    }
    let (stop, task) = sim.start();
    sim.until("2031-03-10T09:05:00Z").await;
    let log = sim.log();
    assert_eq!(log.len(), 17, "{log:?}");
    // The wave first, then the later ones by their start, not their id.
    let order: Vec<String> = log.iter().skip(12).map(|w| w.user.clone()).collect();
    let expected: Vec<String> = later.iter().map(|i| guid(*i)).collect();
    assert_eq!(order, expected);
    // Never a write before its status starts.
    for w in &log {
        let i = (1..=17).find(|i| guid(*i) == w.user).unwrap();
        let start = if i <= 12 {
            t("2031-03-10T09:00:00Z")
        } else {
            let k = later.iter().position(|x| *x == i).unwrap();
            t("2031-03-10T09:00:00Z") + chrono::Duration::seconds(20 * (k as i64 + 1))
        };
        assert!(w.at >= start, "{w:?} before {start}");
    }
    stop.cancel();
    task.await.unwrap();
}
