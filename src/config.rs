//! `calstatus.toml` → typed configuration, with `CALSTATUS__SECTION__KEY`
//! environment overrides (the `config` crate). Unknown keys are rejected with
//! file and line. Reading the file is the only IO here.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::rules::model::{Problem, RawLocalized, toml_problem};

fn d_rules() -> String {
    "rules".into()
}
fn d_users() -> String {
    "users".into()
}
fn d_utc() -> String {
    "UTC".into()
}
fn d_en() -> String {
    "en".into()
}
fn d_true() -> bool {
    true
}
fn d_private() -> RawLocalized {
    RawLocalized::One("Busy until {end:%H:%M}".into())
}
fn d_zero() -> String {
    "0s".into()
}
fn d_timeout() -> String {
    "20s".into()
}
fn d_max_bytes() -> u64 {
    20 * 1024 * 1024
}
fn d_concurrency() -> usize {
    16
}

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[org]`.
    pub org: OrgSection,
    /// `[plan]`.
    #[serde(default)]
    pub plan: PlanSection,
    /// `[fetch]`.
    #[serde(default)]
    pub fetch: FetchSection,
    /// `[graph]`: only `sync` needs it.
    pub graph: Option<GraphSection>,
    /// `[state]`.
    #[serde(default)]
    pub state: StateSection,
    /// `[sync]`.
    #[serde(default)]
    pub sync: SyncSection,
}

fn d_cloud() -> String {
    "global".into()
}
fn d_budget() -> usize {
    1500
}
fn d_window() -> String {
    "30s".into()
}
fn d_graph_concurrency() -> usize {
    8
}
fn d_attempts() -> u32 {
    6
}
fn d_alg() -> String {
    "PS256".into()
}
fn d_state_path() -> String {
    "calstatus.db".into()
}
fn d_personal() -> String {
    "protect".into()
}

/// `[graph]`: the app registration and how calstatus talks to Graph.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSection {
    /// global | usgov-l4 | usgov-l5 ("china" is refused: no presence there).
    #[serde(default = "d_cloud")]
    pub cloud: String,
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
    #[serde(default = "d_alg")]
    pub assertion_algorithm: String,
    /// Override the cloud's Graph root (proxies, tests). http:// only for loopback.
    pub graph_url: Option<String>,
    /// Override the cloud's login host.
    pub login_url: Option<String>,
    /// Send writes in `$batch` envelopes of up to 20.
    #[serde(default = "d_true")]
    pub batch: bool,
    /// Presence requests allowed per budget window (every batch item counts).
    #[serde(default = "d_budget")]
    pub budget: usize,
    /// The budget window ("30s").
    #[serde(default = "d_window")]
    pub budget_window: String,
    /// Requests in flight at once.
    #[serde(default = "d_graph_concurrency")]
    pub concurrency: usize,
    /// Attempts per write before the user is reported failed (retried next pass).
    #[serde(default = "d_attempts")]
    pub max_attempts: u32,
    /// Per-request timeout.
    #[serde(default = "d_timeout")]
    pub timeout: String,
}

/// `[state]`: where calstatus remembers what it wrote.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    /// SQLite file, relative to the config.
    #[serde(default = "d_state_path")]
    pub path: String,
}

impl Default for StateSection {
    fn default() -> Self {
        StateSection {
            path: d_state_path(),
        }
    }
}

/// `[sync]`: reconciliation policy.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSection {
    /// Publish a status this long before its meeting starts ("2m").
    #[serde(default = "d_zero")]
    pub lead_time: String,
    /// What to do with a message the person wrote themselves: "protect"
    /// (leave it alone) or "restore" (save it, publish ours, put it back after).
    #[serde(default = "d_personal")]
    pub personal_message: String,
}

impl Default for SyncSection {
    fn default() -> Self {
        SyncSection {
            lead_time: d_zero(),
            personal_message: d_personal(),
        }
    }
}

/// `[org]`: where rules and users live, and org-wide defaults.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgSection {
    /// Directory of org rule files, applied in file-name order.
    #[serde(default = "d_rules")]
    pub rules: String,
    /// Directory of per-user opt-in files.
    #[serde(default = "d_users")]
    pub users: String,
    /// Zone for users who give none.
    #[serde(default = "d_utc")]
    pub timezone: String,
    /// Language for users who give none.
    #[serde(default = "d_en")]
    pub language: String,
    /// Email domains that count as internal (the `external` condition).
    #[serde(default)]
    pub internal_domains: Vec<String>,
    /// Whether user files may carry their own `[[rule]]`s.
    #[serde(default = "d_true")]
    pub allow_personal_rules: bool,
    /// Whether users may choose their own text for private meetings.
    #[serde(default = "d_true")]
    pub allow_personal_private_message: bool,
    /// What private/confidential meetings show instead of their details.
    #[serde(default = "d_private")]
    pub private_message: RawLocalized,
}

/// `[plan]`: how statuses are built.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSection {
    /// Merge back-to-back/overlapping meetings under the same rule.
    #[serde(default = "d_true")]
    pub merge: bool,
    /// Largest gap still merged ("5m").
    #[serde(default = "d_zero")]
    pub merge_gap: String,
}

impl Default for PlanSection {
    fn default() -> Self {
        PlanSection {
            merge: true,
            merge_gap: d_zero(),
        }
    }
}

/// `[fetch]`: what calendar sources may be read, and how.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchSection {
    /// Per-request timeout ("20s").
    #[serde(default = "d_timeout")]
    pub timeout: String,
    /// Largest calendar accepted, in bytes.
    #[serde(default = "d_max_bytes")]
    pub max_bytes: u64,
    /// Allow `http://` URLs.
    #[serde(default)]
    pub allow_http: bool,
    /// Allow URLs that resolve to loopback/private/link-local addresses.
    #[serde(default)]
    pub allow_private_networks: bool,
    /// Directories calendar files may be read from (default: the config's directory).
    #[serde(default)]
    pub file_roots: Vec<String>,
    /// Calendars fetched at once.
    #[serde(default = "d_concurrency")]
    pub concurrency: usize,
    /// Calendar files several users may list (team or holiday calendars).
    /// Any other calendar file may be listed by one user file only.
    #[serde(default)]
    pub shared_calendars: Vec<String>,
}

impl Default for FetchSection {
    fn default() -> Self {
        FetchSection {
            timeout: d_timeout(),
            max_bytes: d_max_bytes(),
            allow_http: false,
            allow_private_networks: false,
            file_roots: Vec::new(),
            concurrency: d_concurrency(),
            shared_calendars: Vec::new(),
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
}

/// Loads the file plus environment overrides. Every problem found is returned.
pub fn load(path: &Path) -> Result<Config, Vec<Problem>> {
    let problem = |message: String| Problem {
        file: path.to_path_buf(),
        line: None,
        key: None,
        message,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![problem(format!("cannot read the configuration: {e}"))])?;
    // Parse the file alone first: its errors carry line numbers.
    if let Err(e) = toml::from_str::<ConfigFile>(&text) {
        return Err(vec![toml_problem(path, &text, &e)]);
    }
    let merged = config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("CALSTATUS")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        )
        .build()
        .and_then(|c| c.try_deserialize::<ConfigFile>())
        .map_err(|e| vec![problem(format!("environment override (CALSTATUS__…): {e}"))])?;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = abs
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(Config {
        path: path.to_path_buf(),
        dir,
        file: merged,
    })
}
