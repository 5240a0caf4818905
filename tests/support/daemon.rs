//! `calstatus run` as a process, for end-to-end tests: an org directory
//! against the fake Graph, the running bot, and what to wait for.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};

use super::fake_graph::{self, Accepted, FakeGraph};
use super::{copy_dir, root};

/// An object id for test user `i`.
pub fn guid(i: usize) -> String {
    format!("{i:08x}-0000-4000-8000-{i:012x}")
}

/// ICS time.
pub fn ics(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// A calendar with one meeting.
pub fn meeting(uid: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:{uid}\r\nDTSTART:{}\r\nDTEND:{}\r\nSUMMARY:Sync\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        ics(start),
        ics(end)
    )
}

/// The fake Graph with users 1..=`n` (their object ids returned too).
pub async fn fake_for(n: usize) -> (FakeGraph, Vec<String>) {
    let ids: Vec<String> = (1..=n).map(guid).collect();
    let fake = FakeGraph::start(fake_graph::Options {
        users: ids.clone(),
        ..fake_graph::Options::default()
    })
    .await;
    (fake, ids)
}

/// A port nobody listens on (for the health endpoint).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An org directory for the daemon against `fake`.
pub struct RunOrg {
    /// The org directory.
    pub dir: tempfile::TempDir,
    /// Its configuration.
    pub cfg: PathBuf,
    /// The health endpoint's port.
    pub port: u16,
    graph: String,
    run: String,
    graph_extra: String,
}

impl RunOrg {
    pub fn new(fake: &FakeGraph, run: &str, graph_extra: &str) -> RunOrg {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("users")).unwrap();
        std::fs::create_dir_all(d.join("calendars")).unwrap();
        copy_dir(&root().join("rules"), &d.join("rules"));
        std::fs::write(d.join("secret.txt"), fake_graph::CLIENT_SECRET).unwrap();
        let mut org = RunOrg {
            cfg: d.join("calstatus.toml"),
            dir,
            port: 0,
            graph: fake.url(),
            run: run.into(),
            graph_extra: graph_extra.into(),
        };
        let (cfg, port) = org.instance("calstatus.toml", "[state]\npath = \"state.db\"\n");
        (org.cfg, org.port) = (cfg, port);
        org
    }

    /// Writes another configuration of the org (`name`), with its own
    /// health port and this `[state]` section: (path, port).
    pub fn instance(&self, name: &str, state: &str) -> (PathBuf, u16) {
        let port = free_port();
        let cfg = self.dir.path().join(name);
        std::fs::write(
            &cfg,
            format!(
                "[org]\ntimezone = \"UTC\"\n\n[fetch]\nallow_http = true\nallow_private_networks = true\ntimeout = \"2s\"\n\n[graph]\ntenant_id = \"{}\"\nclient_id = \"{}\"\nclient_secret_file = \"secret.txt\"\ngraph_url = \"{url}\"\nlogin_url = \"{url}\"\n{}\n\n{state}\n[run]\nlisten = \"127.0.0.1:{port}\"\n{}\n",
                fake_graph::TENANT,
                fake_graph::CLIENT_ID,
                self.graph_extra,
                self.run,
                url = self.graph
            ),
        )
        .unwrap();
        (cfg, port)
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// User `i` reading `calendar` (a file under calendars/ or a URL).
    pub fn user(&self, i: usize, calendar: &str) {
        std::fs::write(
            self.path(&format!("users/u{i}.toml")),
            format!("user = \"{}\"\ncalendars = [\"{calendar}\"]\n", guid(i)),
        )
        .unwrap();
    }

    /// Users 1..=`n`, each with a calendar `u{i}.ics` holding one meeting
    /// from `start` to `end`.
    pub fn meetings(&self, n: usize, start: DateTime<Utc>, end: DateTime<Utc>) {
        for i in 1..=n {
            self.calendar(&format!("u{i}.ics"), &meeting(&format!("m{i}"), start, end));
            self.user(i, &format!("calendars/u{i}.ics"));
        }
    }

    /// A wave: users 1..=`n`, each with an hour-long meeting starting
    /// `lead_s` whole seconds from now; returns its start and end.
    pub fn wave(&self, n: usize, lead_s: i64) -> (DateTime<Utc>, DateTime<Utc>) {
        let start = Utc::now().trunc_subsecs(0) + chrono::Duration::seconds(lead_s);
        let end = start + chrono::Duration::hours(1);
        self.meetings(n, start, end);
        (start, end)
    }

    pub fn calendar(&self, name: &str, text: &str) {
        // Written next to the target, then renamed, as editors do.
        let tmp = self.path(&format!("calendars/.{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.path(&format!("calendars/{name}"))).unwrap();
    }

    pub fn start(&self) -> Bot {
        self.start_with(&self.cfg, self.port, "bot.log")
    }

    /// Starts `calstatus run` on another configuration of the org.
    pub fn start_with(&self, cfg: &Path, port: u16, log: &str) -> Bot {
        let log = self.path(log);
        let child = Command::new(env!("CARGO_BIN_EXE_calstatus"))
            .args(["run", "--config", cfg.to_str().unwrap()])
            .env("RUST_LOG", "calstatus=debug")
            .env_remove("CALSTATUS_CONFIG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Bot { child, log, port }
    }
}

pub struct Bot {
    /// The process.
    pub child: Child,
    log: PathBuf,
    /// Its health port.
    pub port: u16,
}

impl Bot {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = fake_graph::http_client()
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.ok()?))
    }

    pub async fn health(&self) -> serde_json::Value {
        let (_, body) = self.get("/healthz").await.expect("healthz answers");
        serde_json::from_str(&body).unwrap()
    }

    pub async fn ready(&self, within: Duration) {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Some((200, _)) = self.get("/readyz").await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("not ready within {within:?}:\n{}", self.log());
    }

    /// SIGTERM; the exit code and how long it took.
    pub fn stop(mut self) -> (Option<i32>, Duration, String) {
        let started = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = self.child.kill();
                break self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (status.code(), started.elapsed(), self.log())
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `cond` holds (polling), or panics with `what`.
pub async fn eventually(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: not within {within:?}");
}

pub fn writes_to(fake: &FakeGraph, user: &str) -> Vec<Accepted> {
    fake.writes()
        .into_iter()
        .filter(|w| w.user == user)
        .collect()
}

/// Asserts that each of `ids` was written exactly once, expiring at `end`.
pub fn each_written_once(fake: &FakeGraph, ids: &[String], end: DateTime<Utc>) {
    for id in ids {
        let w = writes_to(fake, id);
        assert_eq!(w.len(), 1, "{id} written {} times: {w:?}", w.len());
        assert_eq!(w[0].expiry, Some(end));
    }
}

/// The value of one sample line of a Prometheus text exposition, after
/// checking that every line is a comment or `name{labels} value`.
pub fn metric(text: &str, sample: &str) -> f64 {
    let line_ok = regex::Regex::new(
        r#"^(# (HELP|TYPE|UNIT|EOF).*|[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})? -?[0-9.eE+-]+|[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? (NaN|\+Inf|-Inf))$"#,
    )
    .unwrap();
    for l in text.lines() {
        assert!(line_ok.is_match(l), "not exposition format: {l:?}");
    }
    text.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}
