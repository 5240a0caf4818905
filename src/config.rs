//! `calstatus.toml` → typed configuration, parsed once: durations are
//! `Duration`s, clouds, algorithms, policies and zones are enums or zones,
//! and every default lives in one `Default` impl per section. Unknown keys
//! are rejected. Every problem of the file is reported at once, each with
//! file, line and key; environment overrides `CALSTATUS__SECTION__KEY`
//! apply on top. Reading the file (and the environment) is the only IO here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::calendar::{Zone, parse_zone_name};
use crate::graph::{AssertionAlgorithm, Cloud};
use crate::reconcile::PersonalPolicy;
use crate::rules::model::{Problem, RawLocalized, line_of, toml_problem};

/// Durations as written in the file: `"30s"`, `"5m"`, `"1h 30m"`.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    /// Parses a human duration, or says why not.
    pub fn parse(s: &str) -> Result<Duration, String> {
        humantime::parse_duration(s.trim()).map_err(|e| {
            format!("invalid duration {s:?}: {e} (write e.g. \"30s\", \"5m\", \"1h 30m\")")
        })
    }

    /// Serde: a duration from its text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }
}

fn zone<'de, D: Deserializer<'de>>(d: D) -> Result<Zone, D::Error> {
    let s = String::deserialize(d)?;
    parse_zone_name(&s).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "unknown time zone {s:?}; use an IANA name (Europe/Lisbon) or a Windows name"
        ))
    })
}

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigFile {
    /// `[org]`.
    pub org: OrgSection,
    /// `[plan]`.
    pub plan: PlanSection,
    /// `[fetch]`.
    pub fetch: FetchSection,
    /// `[graph]`: only `sync` needs it.
    pub graph: Option<GraphSection>,
    /// `[state]`.
    pub state: StateSection,
    /// `[sync]`.
    pub sync: SyncSection,
    /// `[run]`: the daemon.
    pub run: RunSection,
}

/// `[org]`: where rules and users live, and org-wide defaults.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrgSection {
    /// Directory of org rule files, applied in file-name order.
    pub rules: String,
    /// Directory of per-user opt-in files.
    pub users: String,
    /// Zone for users who give none.
    #[serde(deserialize_with = "zone")]
    pub timezone: Zone,
    /// Language for users who give none.
    pub language: String,
    /// Email domains that count as internal (the `external` condition).
    pub internal_domains: Vec<String>,
    /// Whether user files may carry their own `[[rule]]`s.
    pub allow_personal_rules: bool,
    /// Whether users may choose their own text for private meetings.
    pub allow_personal_private_message: bool,
    /// What private/confidential meetings show instead of their details.
    pub private_message: RawLocalized,
}

impl Default for OrgSection {
    fn default() -> Self {
        OrgSection {
            rules: "rules".into(),
            users: "users".into(),
            timezone: Zone::Utc,
            language: "en".into(),
            internal_domains: Vec::new(),
            allow_personal_rules: true,
            allow_personal_private_message: true,
            private_message: RawLocalized::One("Busy until {end:%H:%M}".into()),
        }
    }
}

/// `[plan]`: how statuses are built.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlanSection {
    /// Merge back-to-back/overlapping meetings under the same rule.
    pub merge: bool,
    /// Largest gap still merged ("5m").
    #[serde(with = "duration")]
    pub merge_gap: Duration,
}

impl Default for PlanSection {
    fn default() -> Self {
        PlanSection {
            merge: true,
            merge_gap: Duration::ZERO,
        }
    }
}

/// `[fetch]`: what calendar sources may be read, and how.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchSection {
    /// Per-request timeout ("20s").
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Largest calendar accepted, in bytes.
    pub max_bytes: u64,
    /// Allow `http://` URLs.
    pub allow_http: bool,
    /// Allow URLs that resolve to loopback/private/link-local addresses.
    pub allow_private_networks: bool,
    /// Directories calendar files may be read from (default: the config's directory).
    pub file_roots: Vec<String>,
    /// Calendars fetched at once.
    pub concurrency: usize,
    /// Calendar files several users may list (team or holiday calendars).
    /// Any other calendar file may be listed by one user file only.
    pub shared_calendars: Vec<String>,
}

impl Default for FetchSection {
    fn default() -> Self {
        FetchSection {
            timeout: Duration::from_secs(20),
            max_bytes: 20 * 1024 * 1024,
            allow_http: false,
            allow_private_networks: false,
            file_roots: Vec::new(),
            concurrency: 16,
            shared_calendars: Vec::new(),
        }
    }
}

/// `[graph]`: the app registration and how calstatus talks to Graph.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSection {
    /// global | usgov-l4 | usgov-l5 ("china" is refused: no presence there).
    #[serde(default)]
    pub cloud: Cloud,
    /// Directory (tenant) id.
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// Environment variable holding the client secret.
    pub client_secret_env: Option<String>,
    /// File holding the client secret.
    pub client_secret_file: Option<String>,
    /// PEM with the certificate (and the private key unless `private_key` is given).
    pub certificate: Option<String>,
    /// PEM with the private key for `certificate`.
    pub private_key: Option<String>,
    /// PS256 (default) or RS256 for the client assertion.
    #[serde(default)]
    pub assertion_algorithm: AssertionAlgorithm,
    /// Override the cloud's Graph root (proxies, tests). http:// only for loopback.
    pub graph_url: Option<String>,
    /// Override the cloud's login host.
    pub login_url: Option<String>,
    /// Send writes in `$batch` envelopes of up to 20.
    #[serde(default = "GraphSection::default_batch")]
    pub batch: bool,
    /// Presence requests allowed per budget window (every batch item counts).
    #[serde(default = "GraphSection::default_budget")]
    pub budget: usize,
    /// The budget window ("30s").
    #[serde(default = "GraphSection::default_budget_window", with = "duration")]
    pub budget_window: Duration,
    /// Requests in flight at once.
    #[serde(default = "GraphSection::default_concurrency")]
    pub concurrency: usize,
    /// Attempts per write before the user is reported failed (retried next pass).
    #[serde(default = "GraphSection::default_max_attempts")]
    pub max_attempts: u32,
    /// Per-request timeout.
    #[serde(default = "GraphSection::default_timeout", with = "duration")]
    pub timeout: Duration,
}

/// Defaults of `[graph]`'s optional keys (the section itself has required ones).
impl GraphSection {
    fn default_batch() -> bool {
        true
    }
    fn default_budget() -> usize {
        1500
    }
    fn default_budget_window() -> Duration {
        Duration::from_secs(30)
    }
    fn default_concurrency() -> usize {
        8
    }
    fn default_max_attempts() -> u32 {
        6
    }
    fn default_timeout() -> Duration {
        Duration::from_secs(20)
    }
}

/// `[state]`: where calstatus remembers what it wrote — a SQLite file
/// (`path`, the default) or a shared PostgreSQL database (`url`) for
/// several instances.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateSection {
    /// SQLite file, relative to the config.
    pub path: String,
    /// PostgreSQL instead: `postgres://user@host:5432/db` (no password here).
    pub url: Option<String>,
    /// TLS to PostgreSQL.
    pub tls: PgTls,
    /// CA certificates (PEM) for `tls = "verify-full"` (default: the system's).
    pub ca_file: Option<String>,
    /// Environment variable holding the PostgreSQL password (else `PGPASSWORD`).
    pub password_env: Option<String>,
    /// File holding the PostgreSQL password.
    pub password_file: Option<String>,
    /// How long an instance's shards outlive its last heartbeat.
    #[serde(with = "duration")]
    pub lease_ttl: Duration,
}

impl Default for StateSection {
    fn default() -> Self {
        StateSection {
            path: "calstatus.db".into(),
            url: None,
            tls: PgTls::default(),
            ca_file: None,
            password_env: None,
            password_file: None,
            lease_ttl: Duration::from_secs(15),
        }
    }
}

/// TLS to PostgreSQL, as libpq's `sslmode` (rustls, no OpenSSL).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PgTls {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, unverified.
    #[default]
    Prefer,
    /// TLS or nothing; the certificate is not verified.
    Require,
    /// TLS, the certificate verified against the CA and the host name.
    VerifyFull,
}

/// `[sync]`: reconciliation policy.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncSection {
    /// Publish a status this long before its meeting starts ("2m").
    #[serde(with = "duration")]
    pub lead_time: Duration,
    /// What to do with a message the person wrote themselves: "protect"
    /// (leave it alone) or "restore" (save it, publish ours, put it back after).
    pub personal_message: PersonalPolicy,
}

/// `[run]`: how `calstatus run` keeps everyone's status right all day.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSection {
    /// How often calendars are re-read (URLs: conditional GET; files: when
    /// they changed), and configuration edits picked up.
    #[serde(with = "duration")]
    pub refresh: Duration,
    /// How far ahead the bot keeps a plan.
    #[serde(with = "duration")]
    pub horizon: Duration,
    /// `/healthz`, `/readyz` and `/metrics` on this address; none when absent.
    pub listen: Option<std::net::SocketAddr>,
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection {
            refresh: Duration::from_secs(300),
            horizon: Duration::from_secs(36 * 3600),
            listen: None,
        }
    }
}

/// A loaded configuration and where it came from.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file.
    pub path: PathBuf,
    /// Its directory: relative paths start here.
    pub dir: PathBuf,
    /// The values.
    pub file: ConfigFile,
}

impl Config {
    /// Resolves a path from the file relative to its directory.
    pub fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    /// A problem with one key of this file (no line: found after parsing).
    pub fn problem(&self, key: &str, message: String) -> Problem {
        Problem {
            file: self.path.clone(),
            line: None,
            key: Some(key.into()),
            message,
        }
    }
}

/// The prefix of environment overrides: `CALSTATUS__SECTION__KEY=value`.
pub const ENV_PREFIX: &str = "CALSTATUS__";

/// Loads the file plus environment overrides. Every problem found is returned.
pub fn load(path: &Path) -> Result<Config, Vec<Problem>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Problem {
            file: path.to_path_buf(),
            line: None,
            key: None,
            message: format!("cannot read the configuration: {e}"),
        }]
    })?;
    let file = parse(path, &text, std::env::vars())?;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = abs
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(Config {
        path: path.to_path_buf(),
        dir,
        file,
    })
}

/// Parses the text of `path`, then applies overrides from `env`. Pure.
pub fn parse(
    path: &Path,
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<ConfigFile, Vec<Problem>> {
    let file = parse_all_problems(path, text)?;
    let overrides: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    // The rules below hold for the values in force, overrides included.
    let (file, table) = if overrides.is_empty() {
        (file, text.parse().unwrap_or_default())
    } else {
        let table = merge_env(path, text, &overrides)?;
        let file = ConfigFile::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
            let vars: Vec<&str> = overrides.iter().map(|(k, _)| k.as_str()).collect();
            vec![Problem {
                file: path.to_path_buf(),
                line: None,
                key: Some(format!("environment {}", vars.join(", "))),
                message: e.message().trim().to_string(),
            }]
        })?;
        (file, table)
    };
    exclusive_keys(path, text, &table)?;
    check_bounds(path, text, &file)?;
    Ok(file)
}

/// The shortest and longest shard lease: renewed every second, a lease
/// must outlive a few missed heartbeats; beyond minutes, a crashed
/// instance's people wait too long for another to take over.
pub const LEASE_TTL: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(3)..=Duration::from_secs(300);

/// Values out of their range.
fn check_bounds(path: &Path, text: &str, file: &ConfigFile) -> Result<(), Vec<Problem>> {
    let ttl = file.state.lease_ttl;
    if !LEASE_TTL.contains(&ttl) {
        return Err(vec![Problem {
            file: path.to_path_buf(),
            line: text
                .lines()
                .position(|l| l.trim_start().starts_with("lease_ttl"))
                .map(|i| i + 1),
            key: Some("state.lease_ttl".into()),
            message: format!(
                "{} is out of range: between 3s and 5m (heartbeats are every second)",
                humantime::format_duration(ttl)
            ),
        }]);
    }
    Ok(())
}

/// A PostgreSQL URL calstatus accepts: `postgres://`, no password in it.
pub fn check_pg_url(url: &str) -> Result<(), &'static str> {
    match url::Url::parse(url) {
        Ok(u) if !matches!(u.scheme(), "postgres" | "postgresql") => {
            Err("use postgres://user@host:5432/database")
        }
        Ok(u) if u.password().is_some() => Err(
            "the password never goes in the file: use PGPASSWORD, state.password_env or state.password_file",
        ),
        Ok(_) => Ok(()),
        Err(_) => Err("not a URL: use postgres://user@host:5432/database"),
    }
}

/// Keys that may not be given together, and the state URL's rule, on the
/// values in force (`table`: the file with the environment's overrides).
fn exclusive_keys(path: &Path, text: &str, table: &toml::Table) -> Result<(), Vec<Problem>> {
    let state = table.get("state").and_then(toml::Value::as_table);
    let url_line = || {
        text.lines()
            .position(|l| l.trim_start().starts_with("url"))
            .map(|i| i + 1)
    };
    if let Some(url) = state
        .and_then(|s| s.get("url"))
        .and_then(toml::Value::as_str)
        && let Err(message) = check_pg_url(url)
    {
        return Err(vec![Problem {
            file: path.to_path_buf(),
            line: url_line(),
            key: Some("state.url".into()),
            message: message.into(),
        }]);
    }
    if state.is_some_and(|s| s.contains_key("path") && s.contains_key("url")) {
        return Err(vec![Problem {
            file: path.to_path_buf(),
            line: url_line(),
            key: Some("state.url".into()),
            message: "give either path (SQLite, one instance) or url (PostgreSQL, several instances), not both".into(),
        }]);
    }
    Ok(())
}

/// `toml` stops at the first problem; to report every one, the line of a
/// problem that belongs to one key (an unknown key, a bad value) is blanked
/// out and the text parsed again, keeping line numbers.
fn parse_all_problems(path: &Path, text: &str) -> Result<ConfigFile, Vec<Problem>> {
    let mut current = text.to_string();
    let mut problems: Vec<Problem> = Vec::new();
    let mut blanked: Vec<usize> = Vec::new();
    for _ in 0..64 {
        match toml::from_str::<ConfigFile>(&current) {
            Ok(f) if problems.is_empty() => return Ok(f),
            Ok(_) => break,
            Err(e) => {
                // Blanking keeps line numbers, not offsets: read the span in
                // the text that was parsed, and the key off its line.
                let mut p = toml_problem(path, &current, &e);
                let line = e.span().map(|s| line_of(&current, s.start));
                if p.key.is_none() {
                    p.key = line
                        .and_then(|l| text.lines().nth(l - 1))
                        .and_then(|l| l.split_once('='))
                        .map(|(k, _)| k.trim().trim_matches('"').to_string())
                        .filter(|k| !k.is_empty() && !k.starts_with('['));
                }
                // A missing key has no line of its own to blank out.
                let one_key = !e.message().starts_with("missing field");
                problems.push(p);
                match line {
                    Some(l) if one_key && !blanked.contains(&l) => {
                        blanked.push(l);
                        current = blank_line(&current, l);
                    }
                    _ => break,
                }
            }
        }
    }
    problems.sort_by_key(|p| p.line);
    Err(problems)
}

/// `text` with line `line` (1-based) emptied, line numbers unchanged.
fn blank_line(text: &str, line: usize) -> String {
    text.split_inclusive('\n')
        .enumerate()
        .map(|(i, l)| {
            if i + 1 == line {
                if l.ends_with('\n') { "\n" } else { "" }
            } else {
                l
            }
        })
        .collect()
}

/// Applies `CALSTATUS__SECTION__KEY=value` overrides (key names are
/// lower-cased; a value is read as TOML — a number, a boolean, an array —
/// and otherwise taken as a string).
fn merge_env(
    path: &Path,
    text: &str,
    overrides: &[(String, String)],
) -> Result<toml::Table, Vec<Problem>> {
    let problem = |var: &str, message: String| Problem {
        file: path.to_path_buf(),
        line: None,
        key: Some(format!("environment {var}")),
        message,
    };
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| vec![toml_problem(path, text, &e)])?;
    let mut problems = Vec::new();
    for (var, value) in overrides {
        let rest = &var[ENV_PREFIX.len()..];
        let Some((section, key)) = rest.split_once("__") else {
            problems.push(problem(var, "write CALSTATUS__SECTION__KEY".into()));
            continue;
        };
        // An empty value removes the key (e.g. to swap the file's
        // client_secret_env for a client_secret_file from the service
        // manager).
        let value = (!value.is_empty()).then(|| {
            format!("v = {value}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(value.clone()))
        });
        let section = table
            .entry(section.to_ascii_lowercase())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match (section.as_table_mut(), value) {
            (Some(t), Some(value)) => {
                t.insert(key.to_ascii_lowercase(), value);
            }
            (Some(t), None) => {
                t.remove(&key.to_ascii_lowercase());
            }
            (None, _) => problems.push(problem(var, "is not a section".into())),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<ConfigFile, Vec<Problem>> {
        parse(Path::new("c.toml"), text, Vec::new())
    }

    #[test]
    fn typed_values_and_defaults_from_one_place() {
        let f = parse_text(
            "[org]\ntimezone = \"W. Europe Standard Time\"\n[plan]\nmerge_gap = \"5m\"\n[sync]\nlead_time = \"2m\"\npersonal_message = \"restore\"\n",
        )
        .unwrap();
        assert_eq!(f.org.timezone.name(), "Europe/Berlin");
        assert_eq!(f.plan.merge_gap, Duration::from_secs(300));
        assert_eq!(f.sync.lead_time, Duration::from_secs(120));
        assert_eq!(f.sync.personal_message, PersonalPolicy::Restore);
        assert_eq!(f.fetch.timeout, Duration::from_secs(20));
        assert_eq!(f.fetch.concurrency, 16);
        assert!(f.graph.is_none());
        assert_eq!(f.run.refresh, Duration::from_secs(300));
        assert_eq!(f.run.horizon, Duration::from_secs(36 * 3600));
        assert_eq!(f.run.listen, None);
        let f = parse_text("[run]\nrefresh = \"5s\"\nlisten = \"127.0.0.1:9464\"\n").unwrap();
        assert_eq!(f.run.refresh, Duration::from_secs(5));
        assert_eq!(f.run.listen, Some("127.0.0.1:9464".parse().unwrap()));
        let f = parse_text("[state]\nurl = \"postgres://calstatus@db:5432/cs\"\ntls = \"verify-full\"\nlease_ttl = \"20s\"\n").unwrap();
        assert_eq!(f.state.tls, PgTls::VerifyFull);
        assert_eq!(f.state.lease_ttl, Duration::from_secs(20));
        // The rules hold for the environment's overrides too: a password
        // in a URL given by the environment is refused, and so is a url
        // beside the file's path.
        for (file, var) in [
            ("", "postgres://u:secret@db/cs"),
            ("[state]\npath = \"s.db\"\n", "postgres://u@db/cs"),
        ] {
            let e = parse(
                Path::new("c.toml"),
                file,
                [("CALSTATUS__STATE__URL".to_string(), var.to_string())],
            )
            .unwrap_err();
            assert_eq!(e[0].key.as_deref(), Some("state.url"), "{e:?}");
            assert!(!format!("{e:?}").contains("secret"));
        }
        let e =
            parse_text("[state]\nurl = \"postgres://calstatus@db:5432/cs\"\nlease_ttl = \"1s\"\n")
                .unwrap_err();
        assert_eq!(
            (e[0].key.as_deref(), e[0].line),
            (Some("state.lease_ttl"), Some(3))
        );
        let err = parse_text("[state]\npath = \"x.db\"\nurl = \"postgres://h/d\"\n").unwrap_err();
        assert!(
            err[0]
                .to_string()
                .contains("c.toml:3: state.url: give either path"),
            "{err:?}"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let text = "[org]\ntimezone = \"Mars/Base\"\nsumary = 1\n[plan]\nmerge_gap = \"soon\"\n[sync]\npersonal_message = \"overwrite\"\n";
        let problems = parse_text(text).unwrap_err();
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 4, "{shown:#?}");
        assert!(shown[0].starts_with("c.toml:2: timezone: unknown time zone \"Mars/Base\""));
        assert!(shown[1].starts_with("c.toml:3: sumary: unknown field"));
        assert!(shown[2].starts_with("c.toml:5: merge_gap: invalid duration \"soon\""));
        assert!(
            shown[3]
                .starts_with("c.toml:7: personal_message: \"overwrite\" is not protect or restore")
        );
    }

    #[test]
    fn environment_overrides_apply_on_top_and_are_checked() {
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let f = parse(
            Path::new("c.toml"),
            "[org]\ntimezone = \"UTC\"\n",
            env(&[
                ("CALSTATUS__ORG__TIMEZONE", "Europe/Lisbon"),
                ("CALSTATUS__FETCH__CONCURRENCY", "4"),
                ("CALSTATUS__FETCH__ALLOW_HTTP", "true"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(f.org.timezone.name(), "Europe/Lisbon");
        assert_eq!(f.fetch.concurrency, 4);
        assert!(f.fetch.allow_http);
        // An empty value removes a key: the secret comes from a file instead.
        let graph = "[graph]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret_env = \"S\"\n";
        let f = parse(
            Path::new("c.toml"),
            graph,
            env(&[
                ("CALSTATUS__GRAPH__CLIENT_SECRET_ENV", ""),
                (
                    "CALSTATUS__GRAPH__CLIENT_SECRET_FILE",
                    "/run/credentials/x/secret",
                ),
            ]),
        )
        .unwrap();
        let g = f.graph.unwrap();
        assert_eq!(g.client_secret_env, None);
        assert_eq!(
            g.client_secret_file.as_deref(),
            Some("/run/credentials/x/secret")
        );
        let err = parse(
            Path::new("c.toml"),
            "",
            env(&[("CALSTATUS__SYNC__LEAD_TIME", "a while")]),
        )
        .unwrap_err();
        assert!(
            err[0].to_string().contains("CALSTATUS__SYNC__LEAD_TIME")
                && err[0].to_string().contains("invalid duration"),
            "{err:?}"
        );
    }
}
