//! `examples/deploy/`: the systemd unit, the Dockerfile and the Kubernetes
//! manifests, parsed and held to the binary they run. Every command line
//! parses as `calstatus run` and names the configuration where that
//! deployment puts it; the example configuration loads with each
//! deployment's environment; its port is the one probed, exposed and
//! scraped; its state lies on the writable volume; the secret reaches the
//! variable `client_secret_env` names. The systemd layout passes
//! `calstatus check`, and the Kubernetes pod is started for real (its
//! arguments, environment and ConfigMaps as files, the fake Graph), probed
//! the way the kubelet probes it, and stopped with SIGTERM. The overlay
//! for several replicas on PostgreSQL is built from the base as kustomize
//! builds it (and compared with `kubectl kustomize`), held to the same
//! rules and to its own, and its pods started together on a throwaway
//! database, where they share the 64 shards.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use calstatus::cli::{Cli, Command as Sub, LogFormat};
use calstatus::config::{ConfigFile, PgTls};
use calstatus::daemon::SHUTDOWN_GRACE;
use clap::Parser;
use serde::Deserialize;
use serde_json::Value;

use crate::support::daemon::{free_port, metric};
use crate::support::fake_graph::{self, FakeGraph, Options};
use crate::support::pg::{TestDb, throwaway};
use crate::support::root;

const EXAMPLE_CONFIG: &str = "examples/deploy/calstatus.toml";
const UNIT: &str = "examples/deploy/systemd/calstatus.service";
const DOCKERFILE: &str = "examples/deploy/Dockerfile";
const KUBERNETES: &str = "examples/deploy/kubernetes";
const KUBERNETES_HA: &str = "examples/deploy/kubernetes-ha";

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// How long the daemon takes at most to stop after SIGTERM: the grace of
/// the writes in flight, and a second to close.
fn stop_budget() -> Duration {
    SHUTDOWN_GRACE + Duration::from_secs(1)
}

/// What a supervisor must wait after SIGTERM before it kills: twice the budget.
fn min_stop_timeout() -> Duration {
    2 * stop_budget()
}

/// The example configuration with a deployment's environment overrides.
fn config_with(text: &str, env: &[(String, String)]) -> ConfigFile {
    config_of(EXAMPLE_CONFIG, text, env)
}

/// A configuration (`what` names it in messages) with environment overrides.
fn config_of(what: &str, text: &str, env: &[(String, String)]) -> ConfigFile {
    calstatus::config::parse(Path::new(what), text, env.to_vec()).unwrap_or_else(|p| {
        let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
        panic!("{what} does not load with {env:?}:\n{}", shown.join("\n"))
    })
}

/// A path of the configuration as the daemon resolves it.
fn resolved(config_path: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        config_path.parent().unwrap_or(Path::new("/")).join(p)
    }
}

/// Parses `argv` (program first) as the binary does: it must be `calstatus
/// run` with an explicit `--config`. The configuration and log format.
fn run_invocation(what: &str, argv: &[String]) -> (PathBuf, LogFormat) {
    assert!(
        argv.iter()
            .any(|a| a == "--config" || a.starts_with("--config=")),
        "{what}: name the configuration with --config, not through the working directory: {argv:?}"
    );
    let cli = Cli::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("{what}: {argv:?} is not a calstatus command line:\n{e}"));
    match cli.command {
        Sub::Run { config } => (config.config, cli.log_format),
        other => panic!("{what}: {argv:?} must be `calstatus run`, not {other:?}"),
    }
}

/// Overrides that move every absolute path of `cfg` below `sandbox`.
fn into_sandbox(cfg: &ConfigFile, sandbox: &Path) -> Vec<(String, String)> {
    let moved = |p: &str| {
        let p = Path::new(p);
        match p.strip_prefix("/") {
            Ok(rel) => sandbox.join(rel),
            Err(_) => p.to_path_buf(),
        }
        .display()
        .to_string()
    };
    let roots: Vec<String> = cfg
        .fetch
        .file_roots
        .iter()
        .map(|r| format!("{:?}", moved(r)))
        .collect();
    let mut env = vec![
        ("CALSTATUS__ORG__RULES".into(), moved(&cfg.org.rules)),
        ("CALSTATUS__ORG__USERS".into(), moved(&cfg.org.users)),
        (
            "CALSTATUS__FETCH__FILE_ROOTS".into(),
            format!("[{}]", roots.join(", ")),
        ),
    ];
    // On PostgreSQL, `path` is not used (and the file gives none).
    if cfg.state.url.is_none() {
        env.push(("CALSTATUS__STATE__PATH".into(), moved(&cfg.state.path)));
    }
    env
}

/// `path` below `sandbox`.
fn sandboxed(sandbox: &Path, path: &Path) -> PathBuf {
    sandbox.join(path.strip_prefix("/").unwrap_or(path))
}

/// Splits a command line into words (double and single quotes group).
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut quoted = false;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                quoted = true;
            }
            None if c.is_whitespace() => {
                if quoted || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    quoted = false;
                }
            }
            None => cur.push(c),
        }
    }
    if quoted || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `KEY=VALUE` words as pairs.
fn assignments(ws: &[String]) -> Vec<(String, String)> {
    ws.iter()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// systemd

/// A unit file: (section, key, value) in order, continuations joined.
struct Unit(Vec<(String, String, String)>);

impl Unit {
    fn parse(text: &str) -> Unit {
        let mut section = String::new();
        let mut entries = Vec::new();
        let mut pending = String::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
                assert!(
                    pending.is_empty(),
                    "{UNIT}:{}: a continued line ends here",
                    n + 1
                );
                continue;
            }
            if let Some(head) = line.strip_suffix('\\') {
                pending.push_str(head);
                pending.push(' ');
                continue;
            }
            let line = format!("{}{line}", std::mem::take(&mut pending));
            if let Some(name) = line.strip_prefix('[') {
                section = name
                    .strip_suffix(']')
                    .unwrap_or_else(|| panic!("{UNIT}:{}: bad section {line:?}", n + 1))
                    .to_string();
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{UNIT}:{}: not KEY=VALUE: {line:?}", n + 1));
            assert!(!section.is_empty(), "{UNIT}:{}: outside a section", n + 1);
            entries.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        }
        Unit(entries)
    }

    fn all(&self, section: &str, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    fn last(&self, section: &str, key: &str) -> Option<&str> {
        self.all(section, key).last().copied()
    }

    /// A boolean setting is set and true.
    fn yes(&self, key: &str) -> bool {
        self.last("Service", key)
            .is_some_and(|v| matches!(v, "yes" | "true" | "on" | "1"))
    }

    /// `Environment=` assignments, in order.
    fn environment(&self) -> Vec<(String, String)> {
        self.all("Service", "Environment")
            .into_iter()
            .flat_map(|v| assignments(&words(v)))
            .collect()
    }
}

/// A systemd time span ("15s", "1min 30s", or plain seconds).
fn span(v: &str) -> Duration {
    v.parse::<u64>()
        .map(Duration::from_secs)
        .or_else(|_| humantime::parse_duration(v))
        .unwrap_or_else(|e| panic!("not a time span: {v:?}: {e}"))
}

/// `KEY=VALUE` lines of an environment file (comments and blanks skipped).
fn env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Every directive the unit may use: a misspelt one is ignored by systemd
/// with a warning, and its protection silently missing.
const KNOWN_DIRECTIVES: &[(&str, &[&str])] = &[
    (
        "Unit",
        &[
            "Description",
            "Documentation",
            "Wants",
            "Requires",
            "After",
            "Before",
            "StartLimitIntervalSec",
            "StartLimitBurst",
        ],
    ),
    (
        "Service",
        &[
            "Type",
            "ExecStart",
            "Environment",
            "EnvironmentFile",
            "LoadCredential",
            "LoadCredentialEncrypted",
            "Restart",
            "RestartSec",
            "TimeoutStartSec",
            "TimeoutStopSec",
            "KillSignal",
            "KillMode",
            "DynamicUser",
            "User",
            "Group",
            "StateDirectory",
            "StateDirectoryMode",
            "CacheDirectory",
            "ConfigurationDirectory",
            "ConfigurationDirectoryMode",
            "WorkingDirectory",
            "UMask",
            "NoNewPrivileges",
            "CapabilityBoundingSet",
            "AmbientCapabilities",
            "ProtectSystem",
            "ProtectHome",
            "PrivateTmp",
            "PrivateDevices",
            "PrivateUsers",
            "ProtectKernelTunables",
            "ProtectKernelModules",
            "ProtectKernelLogs",
            "ProtectControlGroups",
            "ProtectClock",
            "ProtectHostname",
            "ProtectProc",
            "ProcSubset",
            "RestrictAddressFamilies",
            "RestrictNamespaces",
            "RestrictRealtime",
            "RestrictSUIDSGID",
            "LockPersonality",
            "MemoryDenyWriteExecute",
            "RemoveIPC",
            "KeyringMode",
            "SystemCallArchitectures",
            "SystemCallFilter",
            "SystemCallErrorNumber",
            "IPAddressAllow",
            "IPAddressDeny",
            "DevicePolicy",
            "LimitNOFILE",
            "MemoryMax",
            "TasksMax",
        ],
    ),
    ("Install", &["WantedBy"]),
];

/// Boolean hardening settings that must be on.
const HARDENING_ON: &[&str] = &[
    "NoNewPrivileges",
    "PrivateTmp",
    "PrivateDevices",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "RestrictNamespaces",
    "RestrictRealtime",
    "RestrictSUIDSGID",
    "LockPersonality",
    "MemoryDenyWriteExecute",
];

/// Settings with one required value.
const HARDENING_VALUES: &[(&str, &str)] = &[
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("ProtectProc", "invisible"),
    ("ProcSubset", "pid"),
    ("SystemCallArchitectures", "native"),
    ("UMask", "0077"),
];

#[test]
fn systemd_unit_runs_the_daemon_hardened_with_its_files_where_the_config_says() {
    let unit = Unit::parse(&read(UNIT));
    let s = "Service";
    for (section, key, _) in &unit.0 {
        let known = KNOWN_DIRECTIVES
            .iter()
            .find(|(sec, _)| sec == section)
            .is_some_and(|(_, keys)| keys.contains(&key.as_str()));
        assert!(
            known,
            "{UNIT}: [{section}] {key}= is not a directive this unit should use (misspelt?)"
        );
    }

    // calstatus never notifies systemd: Type=notify would never finish starting.
    let ty = unit.last(s, "Type").unwrap_or("simple");
    assert!(
        matches!(ty, "exec" | "simple"),
        "Type={ty}: calstatus does not send sd_notify; use Type=exec"
    );
    let exec = unit.all(s, "ExecStart");
    assert_eq!(exec.len(), 1, "one ExecStart= line: {exec:?}");
    let argv = words(exec[0]);
    assert!(
        argv[0].starts_with('/'),
        "ExecStart= names the binary by absolute path: {argv:?}"
    );
    let (config_path, _) = run_invocation("ExecStart=", &argv);
    let conf_dir = Path::new("/etc").join(
        unit.last(s, "ConfigurationDirectory")
            .expect("ConfigurationDirectory="),
    );
    assert!(
        config_path.starts_with(&conf_dir),
        "--config {} is not in ConfigurationDirectory= ({})",
        config_path.display(),
        conf_dir.display()
    );

    // The example configuration with the unit's environment.
    let env = unit.environment();
    let cfg = config_with(&read(EXAMPLE_CONFIG), &env);
    let state_dir =
        Path::new("/var/lib").join(unit.last(s, "StateDirectory").expect("StateDirectory="));
    let state = resolved(&config_path, &cfg.state.path);
    assert!(
        state.starts_with(&state_dir),
        "[state] path {} (and its .lock and .calendars/ next to it) must be in StateDirectory= ({}): with ProtectSystem=strict nothing else is writable",
        state.display(),
        state_dir.display()
    );
    let listen = cfg
        .run
        .listen
        .expect("[run] listen: the health endpoint is how the service is watched");
    assert!(
        listen.ip().is_loopback(),
        "the unit serves the unauthenticated endpoint on loopback, not {listen}"
    );

    // The secret: from EnvironmentFile= (client_secret_env) or a credential (client_secret_file).
    let graph = cfg.graph.as_ref().expect("[graph]");
    match (&graph.client_secret_env, &graph.client_secret_file) {
        (Some(var), None) => {
            assert!(
                !env.iter().any(|(k, _)| k == var),
                "{var} must not be in Environment= (world-readable via D-Bus); use EnvironmentFile="
            );
            let files = unit.all(s, "EnvironmentFile");
            assert!(!files.is_empty(), "{var} comes from EnvironmentFile=");
            let provided = files.iter().any(|f| {
                let f = Path::new(f.trim_start_matches('-'));
                assert!(
                    f.starts_with(&conf_dir),
                    "EnvironmentFile={} is outside {}",
                    f.display(),
                    conf_dir.display()
                );
                let name = f.file_name().unwrap().to_string_lossy();
                let example = format!("examples/deploy/systemd/{name}.example");
                env_file(&read(&example)).iter().any(|(k, _)| k == var)
            });
            assert!(
                provided,
                "no EnvironmentFile='s example sets {var} ([graph] client_secret_env)"
            );
        }
        (None, Some(file)) => {
            let id = file
                .strip_prefix("%d/")
                .unwrap_or_else(|| panic!("client_secret_file {file:?}: use %d/<credential>"));
            assert!(
                unit.all(s, "LoadCredential")
                    .iter()
                    .any(|c| c.split(':').next() == Some(id)),
                "no LoadCredential={id}:… for client_secret_file"
            );
        }
        other => {
            panic!("the unit gives the secret by environment file or credential, not {other:?}")
        }
    }

    // Identity and hardening.
    assert!(
        unit.yes("DynamicUser")
            || unit
                .last(s, "User")
                .is_some_and(|u| u != "root" && u != "0"),
        "run as DynamicUser=yes or a dedicated User="
    );
    for key in HARDENING_ON {
        assert!(unit.yes(key), "{key}=yes is missing");
    }
    for (key, value) in HARDENING_VALUES {
        assert_eq!(unit.last(s, key), Some(*value), "{key}={value}");
    }
    assert_eq!(
        unit.all(s, "CapabilityBoundingSet"),
        vec![""],
        "CapabilityBoundingSet= (empty: no capabilities at all)"
    );
    let families: BTreeSet<String> = unit
        .all(s, "RestrictAddressFamilies")
        .iter()
        .flat_map(|v| words(v))
        .collect();
    let allowed: BTreeSet<String> = ["AF_INET", "AF_INET6", "AF_UNIX"].map(String::from).into();
    assert_eq!(
        families, allowed,
        "RestrictAddressFamilies=: IP for Graph, calendars and the endpoint; AF_UNIX for name lookups"
    );
    let filters = unit.all(s, "SystemCallFilter");
    assert!(
        filters
            .first()
            .is_some_and(|f| words(f).contains(&"@system-service".to_string())),
        "SystemCallFilter=@system-service first: {filters:?}"
    );

    // Restarts and stopping.
    assert!(
        matches!(unit.last(s, "Restart"), Some("on-failure" | "always")),
        "Restart=on-failure"
    );
    let restart = span(unit.last(s, "RestartSec").expect("RestartSec="));
    assert!(restart >= Duration::from_secs(1), "RestartSec={restart:?}");
    let stop = span(unit.last(s, "TimeoutStopSec").expect("TimeoutStopSec="));
    assert!(
        stop >= min_stop_timeout(),
        "TimeoutStopSec={stop:?}: calstatus needs up to {:?} after SIGTERM",
        stop_budget()
    );
    assert!(
        matches!(
            unit.last(s, "KillSignal"),
            None | Some("SIGTERM" | "SIGINT")
        ),
        "calstatus stops cleanly on SIGTERM or SIGINT"
    );
    for key in ["Wants", "After"] {
        assert!(
            unit.all("Unit", key)
                .iter()
                .any(|v| words(v).contains(&"network-online.target".to_string())),
            "{key}=network-online.target: the first token request needs the network"
        );
    }
    assert_eq!(unit.last("Install", "WantedBy"), Some("multi-user.target"));
}

#[test]
fn systemd_layout_passes_calstatus_check() {
    // /etc/calstatus as the unit's install steps lay it out, the
    // environment the unit gives, every path moved into a sandbox.
    let unit = Unit::parse(&read(UNIT));
    let (config_path, _) = run_invocation(
        "ExecStart=",
        &words(unit.last("Service", "ExecStart").unwrap()),
    );
    let sandbox = tempfile::tempdir().unwrap();
    let text = read(EXAMPLE_CONFIG);
    let mut env = unit.environment();
    for f in unit.all("Service", "EnvironmentFile") {
        let name = Path::new(f.trim_start_matches('-'))
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        env.extend(env_file(&read(&format!(
            "examples/deploy/systemd/{name}.example"
        ))));
    }
    let cfg = config_with(&text, &env);
    let config = sandboxed(sandbox.path(), &config_path);
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, &text).unwrap();
    let rules = sandboxed(sandbox.path(), &resolved(&config_path, &cfg.org.rules));
    crate::support::copy_dir(&root().join("rules"), &rules);
    std::fs::create_dir_all(sandboxed(
        sandbox.path(),
        &resolved(&config_path, &cfg.org.users),
    ))
    .unwrap();
    env.extend(into_sandbox(&cfg, sandbox.path()));
    check_passes(&["--config".into(), config.display().to_string()], &env);
}

// ---------------------------------------------------------------------------------------------
// Docker

/// One build stage: its base image, name and instructions.
struct Stage {
    from: String,
    name: Option<String>,
    body: Vec<(String, String)>,
}

impl Stage {
    fn all(&self, instruction: &str) -> Vec<&str> {
        self.body
            .iter()
            .filter(|(i, _)| i == instruction)
            .map(|(_, a)| a.as_str())
            .collect()
    }

    fn last(&self, instruction: &str) -> Option<&str> {
        self.all(instruction).last().copied()
    }

    /// `ENV` pairs (`KEY=VALUE` form).
    fn env(&self) -> Vec<(String, String)> {
        self.all("ENV")
            .iter()
            .flat_map(|a| assignments(&words(a)))
            .collect()
    }
}

/// A Dockerfile: its stages, with the `ARG`s before the first `FROM`
/// substituted into the `FROM` lines.
fn dockerfile() -> Vec<Stage> {
    let text = read(DOCKERFILE);
    let mut lines = Vec::new();
    let mut cur = String::new();
    for raw in text.lines() {
        let t = raw.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        match raw.trim_end().strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head);
                cur.push(' ');
            }
            None => {
                cur.push_str(t);
                lines.push(std::mem::take(&mut cur));
            }
        }
    }
    let mut args: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    for line in lines {
        let (instruction, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let instruction = instruction.to_ascii_uppercase();
        let rest = rest.trim().to_string();
        match (instruction.as_str(), stages.last_mut()) {
            ("ARG", None) => {
                let (k, v) = rest.split_once('=').unwrap_or((&rest, ""));
                args.insert(k.to_string(), v.to_string());
            }
            ("FROM", _) => {
                let mut from = rest.clone();
                for (k, v) in &args {
                    from = from
                        .replace(&format!("${{{k}}}"), v)
                        .replace(&format!("${k}"), v);
                }
                let w = words(&from);
                let name = (w.len() == 3 && w[1].eq_ignore_ascii_case("as")).then(|| w[2].clone());
                stages.push(Stage {
                    from: w[0].clone(),
                    name,
                    body: Vec::new(),
                });
            }
            (_, Some(stage)) => stage.body.push((instruction, rest)),
            (other, None) => panic!("{DOCKERFILE}: {other} before FROM"),
        }
    }
    stages
}

/// An exec-form (JSON) instruction's words; shell form is refused: `sh -c`
/// would be PID 1 and not pass SIGTERM on.
fn exec_form(what: &str, args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|_| {
        panic!("{what} must be in exec (JSON) form so calstatus gets SIGTERM: {args}")
    })
}

/// The Debian release named by an image reference.
fn debian_release(image: &str) -> &'static str {
    ["bookworm", "trixie", "bullseye"]
        .into_iter()
        .find(|r| image.contains(r))
        .unwrap_or_else(|| panic!("{image}: name the Debian release in the tag"))
}

/// (major, minor) of "1.95" or "1.95.0".
fn rust_version(v: &str) -> (u32, u32) {
    let mut parts = v
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or_else(|_| panic!("version {v:?}")));
    (parts.next().unwrap(), parts.next().unwrap_or(0))
}

/// The runtime image's command line (ENTRYPOINT + CMD) and its config path.
fn image_argv(stages: &[Stage]) -> (Vec<String>, Vec<String>) {
    let runtime = stages.last().unwrap();
    let entry = exec_form(
        "ENTRYPOINT",
        runtime.last("ENTRYPOINT").expect("ENTRYPOINT"),
    );
    let cmd = exec_form("CMD", runtime.last("CMD").expect("CMD"));
    (entry, cmd)
}

/// The numeric user of the runtime image.
fn image_uid(stages: &[Stage]) -> u32 {
    let user = stages.last().unwrap().last("USER").expect("USER");
    user.split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("USER {user}: give a numeric uid, so runAsNonRoot can verify it"))
}

#[test]
fn dockerfile_builds_in_stages_without_a_tls_library_and_runs_the_daemon_unprivileged() {
    let text = read(DOCKERFILE).to_ascii_lowercase();
    for word in ["openssl", "libssl"] {
        assert!(
            !text.contains(word),
            "{DOCKERFILE} mentions {word}: TLS is rustls"
        );
    }
    let lock = read("Cargo.lock");
    for package in ["openssl", "openssl-sys", "native-tls"] {
        assert!(
            !lock.contains(&format!("name = \"{package}\"\n")),
            "Cargo.lock has {package}: the image would need a TLS library"
        );
    }

    let stages = dockerfile();
    assert!(
        stages.len() >= 2,
        "multi-stage: build, then a runtime image"
    );
    let builder = stages
        .iter()
        .position(|s| s.all("RUN").iter().any(|r| r.contains("cargo build")))
        .expect("a stage runs cargo build");
    let run = stages[builder]
        .all("RUN")
        .into_iter()
        .find(|r| r.contains("cargo build"))
        .unwrap();
    assert!(
        run.contains("--release") && run.contains("--locked"),
        "cargo build --release --locked: {run}"
    );
    let from = &stages[builder].from;
    let tag = from
        .strip_prefix("rust:")
        .unwrap_or_else(|| panic!("build on the rust image, not {from}"));
    let manifest: toml::Table = read("Cargo.toml").parse().unwrap();
    let msrv = manifest["package"]["rust-version"].as_str().unwrap();
    assert!(
        rust_version(tag.split('-').next().unwrap()) >= rust_version(msrv),
        "{from} is older than rust-version {msrv}"
    );
    let runtime = stages.last().unwrap();
    assert_ne!(
        builder,
        stages.len() - 1,
        "the last stage is the runtime, not the build"
    );
    assert!(
        !runtime.from.starts_with("rust:"),
        "the runtime image carries no toolchain"
    );
    assert_eq!(
        debian_release(from),
        debian_release(&runtime.from),
        "builder and runtime share a Debian release (the binary links that glibc)"
    );

    let uid = image_uid(&stages);
    assert_ne!(uid, 0, "USER must not be root");
    let (entry, cmd) = image_argv(&stages);
    let argv: Vec<String> = entry.iter().chain(&cmd).cloned().collect();
    let (config_path, log) = run_invocation("ENTRYPOINT + CMD", &argv);
    assert_eq!(log, LogFormat::Json, "containers log JSON lines");
    let builder_name = stages[builder].name.as_deref().unwrap_or("0");
    assert!(
        runtime.all("COPY").iter().any(|c| {
            let w = words(c);
            w.contains(&format!("--from={builder_name}")) && w.last() == Some(&entry[0])
        }),
        "the runtime stage copies the binary from {builder_name} to {}",
        entry[0]
    );
    let env = runtime.env();
    if let Some((_, v)) = env.iter().find(|(k, _)| k == "CALSTATUS_CONFIG") {
        assert_eq!(
            Path::new(v),
            config_path,
            "ENV CALSTATUS_CONFIG and --config agree"
        );
    }

    // The image runs the example configuration as it is (no overrides).
    let cfg = config_with(&read(EXAMPLE_CONFIG), &env);
    let listen = cfg.run.listen.expect("[run] listen");
    assert!(
        listen.ip().is_unspecified(),
        "in a container calstatus must listen on 0.0.0.0, or no probe or scraper reaches {listen}"
    );
    let exposed: Vec<u16> = runtime
        .all("EXPOSE")
        .iter()
        .flat_map(|e| words(e))
        .map(|p| p.trim_end_matches("/tcp").parse().expect("EXPOSE port"))
        .collect();
    assert!(
        exposed.contains(&listen.port()),
        "EXPOSE {exposed:?} does not include [run] listen's port {}",
        listen.port()
    );
    let state = resolved(&config_path, &cfg.state.path);
    let state_dir = state.parent().unwrap().display().to_string();
    let volumes: Vec<String> = runtime
        .all("VOLUME")
        .iter()
        .flat_map(|v| serde_json::from_str::<Vec<String>>(v).unwrap_or_else(|_| words(v)))
        .collect();
    assert!(
        volumes.contains(&state_dir),
        "VOLUME {volumes:?} must hold the state directory {state_dir}"
    );
    assert!(
        runtime
            .all("RUN")
            .iter()
            .any(|r| r.contains(&state_dir) && r.contains(&uid.to_string())),
        "the runtime stage gives {state_dir} to uid {uid}, or the database cannot be created"
    );
    assert!(
        matches!(
            runtime.last("STOPSIGNAL"),
            None | Some("SIGTERM" | "SIGINT")
        ),
        "calstatus stops cleanly on SIGTERM"
    );
}

#[test]
fn docker_context_has_what_the_build_copies_and_leaves_target_out() {
    let patterns: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_matches('/').to_string())
        .collect();
    for needed in ["target", ".git"] {
        assert!(
            patterns.iter().any(|p| p == needed),
            ".dockerignore must leave {needed}/ out of the build context"
        );
    }
    let ignored = |src: &str| {
        patterns.iter().any(|p| match p.strip_prefix("**/") {
            Some(any) => src.split('/').any(|c| c == any),
            None => src == p || src.starts_with(&format!("{p}/")),
        })
    };
    let stages = dockerfile();
    let mut sources = Vec::new();
    for stage in &stages {
        for c in stage.all("COPY") {
            let w = words(c);
            if w.iter().any(|x| x.starts_with("--from=")) {
                continue;
            }
            let paths: Vec<&String> = w.iter().filter(|x| !x.starts_with("--")).collect();
            for src in &paths[..paths.len() - 1] {
                let src = src.trim_end_matches('/').trim_start_matches("./");
                assert!(
                    root().join(src).exists(),
                    "COPY {src}: not in the repository"
                );
                assert!(!ignored(src), "COPY {src}: excluded by .dockerignore");
                sources.push(src.to_string());
            }
        }
    }
    // Cargo refuses a manifest whose declared targets are missing.
    let manifest: toml::Table = read("Cargo.toml").parse().unwrap();
    let mut targets = vec!["src/main.rs".to_string(), "src/lib.rs".to_string()];
    for (kind, dir) in [("test", "tests"), ("bench", "benches")] {
        for t in manifest
            .get(kind)
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            targets.push(match t.get("path").and_then(|p| p.as_str()) {
                Some(p) => p.to_string(),
                None => format!("{dir}/{}.rs", t["name"].as_str().unwrap()),
            });
        }
    }
    for t in targets {
        assert!(
            sources
                .iter()
                .any(|s| t == *s || t.starts_with(&format!("{s}/"))),
            "Cargo.toml declares {t}, which the Dockerfile does not COPY (sources: {sources:?})"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Kubernetes

/// Every object of the manifests, with the file it is in.
struct Manifests(Vec<(String, Value)>);

/// The YAML documents of a file of the repository (empty ones left out).
fn yaml_docs(rel: &str) -> Vec<Value> {
    let text = read(rel);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

impl Manifests {
    /// Every `*.yaml` of the base directory but its kustomization.
    fn load() -> Manifests {
        let dir = root().join(KUBERNETES);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .filter(|p| !p.ends_with("kustomization.yaml"))
            .collect();
        files.sort();
        let mut objects = Vec::new();
        for f in files {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            for v in yaml_docs(&format!("{KUBERNETES}/{name}")) {
                objects.push((name.clone(), v));
            }
        }
        Manifests(objects)
    }

    /// The objects `kubectl kustomize dir` builds, for the part of
    /// kustomize these examples use: `resources` (files, and directories
    /// holding a kustomization) and `patches` given by `path`, which are
    /// strategic merge patches (maps merged, lists of items with a merge
    /// key merged by it, `$patch: delete` on an object or a list item).
    /// Anything else is refused rather than built wrong;
    /// `kubernetes_manifests_build_as_kubectl_builds_them` holds this to
    /// kubectl's own kustomize.
    fn build(dir: &str) -> Manifests {
        let k = yaml_docs(&format!("{dir}/kustomization.yaml")).remove(0);
        for key in k.as_object().expect("a kustomization").keys() {
            assert!(
                ["apiVersion", "kind", "resources", "patches"].contains(&key.as_str()),
                "{dir}/kustomization.yaml: {key} is not built by these tests (teach Manifests::build)"
            );
        }
        let mut objects = Vec::new();
        for r in strings(&k["resources"]) {
            let rel = normalized(&format!("{dir}/{r}"));
            if root().join(&rel).is_dir() {
                objects.extend(Manifests::build(&rel).0);
            } else {
                objects.extend(yaml_docs(&rel).into_iter().map(|v| (rel.clone(), v)));
            }
        }
        for patch in k["patches"].as_array().into_iter().flatten() {
            let keys: Vec<&String> = patch.as_object().expect("a patch").keys().collect();
            assert_eq!(
                keys,
                ["path"],
                "{dir}: only patches given by path are built by these tests"
            );
            let rel = normalized(&format!("{dir}/{}", patch["path"].as_str().unwrap()));
            for p in yaml_docs(&rel) {
                let target = |v: &Value| {
                    v["kind"] == p["kind"]
                        && v["metadata"]["name"] == p["metadata"]["name"]
                        && (p["metadata"]["namespace"].is_null()
                            || v["metadata"]["namespace"] == p["metadata"]["namespace"])
                };
                let at = objects
                    .iter()
                    .position(|(_, v)| target(v))
                    .unwrap_or_else(|| {
                        panic!("{rel}: no {} {} to patch", p["kind"], p["metadata"]["name"])
                    });
                match p.get("$patch").and_then(Value::as_str) {
                    Some("delete") => {
                        objects.remove(at);
                    }
                    Some(other) => panic!("{rel}: $patch: {other} is not built by these tests"),
                    None => merge(&mut objects[at].1, &p, "", &rel),
                }
            }
        }
        Manifests(objects)
    }

    fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.0
            .iter()
            .map(|(_, v)| v)
            .find(|v| v["kind"] == kind && v["metadata"]["name"] == name)
    }

    fn get(&self, kind: &str, name: &str) -> &Value {
        self.find(kind, name)
            .unwrap_or_else(|| panic!("no {kind} {name} among the manifests"))
    }

    /// The one Deployment's pod spec and container.
    fn pod(&self) -> (&Value, &Value, &Value) {
        let deployments: Vec<&Value> = self
            .0
            .iter()
            .map(|(_, v)| v)
            .filter(|v| v["kind"] == "Deployment")
            .collect();
        assert_eq!(deployments.len(), 1, "one Deployment");
        let pod = &deployments[0]["spec"]["template"]["spec"];
        let containers = pod["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 1, "one container");
        (deployments[0], pod, &containers[0])
    }
}

/// A repository path with its `..` and `.` resolved.
fn normalized(rel: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in rel.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop().expect("inside the repository");
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// The merge key of the lists a strategic merge patch merges item by item
/// (the `patchMergeKey` of the Kubernetes API types these examples patch);
/// other lists are replaced whole.
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "env" | "volumes" | "imagePullSecrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        _ => None,
    }
}

/// Applies the strategic merge patch `patch` (of `field`) to `base`.
fn merge(base: &mut Value, patch: &Value, field: &str, what: &str) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                assert!(
                    !k.starts_with('$'),
                    "{what}: {k} in {field} is not built by these tests"
                );
                match (b.get_mut(k), v) {
                    (_, Value::Null) => {
                        b.remove(k);
                    }
                    (Some(old), _) => merge(old, v, k, what),
                    (None, _) => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(b), Value::Array(p)) if merge_key(field).is_some() => {
            let key = merge_key(field).unwrap();
            for item in p {
                let id = &item[key];
                assert!(!id.is_null(), "{what}: an item of {field} without {key}");
                let at = b.iter().position(|x| &x[key] == id);
                match (item.get("$patch").and_then(Value::as_str), at) {
                    (Some("delete"), Some(at)) => {
                        b.remove(at);
                    }
                    (Some("delete"), None) => panic!("{what}: no {field} item {id} to delete"),
                    (Some(other), _) => {
                        panic!("{what}: $patch: {other} is not built by these tests")
                    }
                    (None, Some(at)) => merge(&mut b[at], item, field, what),
                    (None, None) => b.push(item.clone()),
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("a string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The container's command line: `command` or the image's ENTRYPOINT,
/// then `args` or the image's CMD.
fn container_argv(c: &Value) -> Vec<String> {
    let (entry, cmd) = image_argv(&dockerfile());
    let command = if c["command"].is_null() {
        entry
    } else {
        strings(&c["command"])
    };
    let args = if c["args"].is_null() {
        cmd
    } else {
        strings(&c["args"])
    };
    command.into_iter().chain(args).collect()
}

/// The container's plain `env` values.
fn plain_env(c: &Value) -> Vec<(String, String)> {
    c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["value"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// The volume mount `path` lies on (the deepest one), and its volume.
fn mount_for<'a>(pod: &'a Value, c: &'a Value, path: &Path) -> Option<(&'a Value, &'a Value)> {
    let mount = c["volumeMounts"]
        .as_array()?
        .iter()
        .filter(|m| path.starts_with(m["mountPath"].as_str().unwrap_or("")))
        .max_by_key(|m| m["mountPath"].as_str().unwrap_or("").len())?;
    let volume = pod["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("volumeMount {} has no volume", mount["name"]));
    Some((mount, volume))
}

/// The ConfigMap and key a file of a configMap volume comes from.
fn configmap_key<'a>(pod: &'a Value, c: &'a Value, file: &Path) -> (&'a str, String) {
    let (mount, volume) =
        mount_for(pod, c, file).unwrap_or_else(|| panic!("{} is on no volume", file.display()));
    let name = volume["configMap"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("{} is not on a configMap volume: {volume}", file.display()));
    let rel = file
        .strip_prefix(mount["mountPath"].as_str().unwrap())
        .unwrap()
        .display()
        .to_string();
    let key = match volume["configMap"]["items"].as_array() {
        Some(items) => items
            .iter()
            .find(|i| i["path"] == rel.as_str())
            .and_then(|i| i["key"].as_str())
            .unwrap_or_else(|| panic!("configMap {name} has no item for {rel}"))
            .to_string(),
        None => rel,
    };
    (name, key)
}

/// A probe's or Service's port (a number or a container port's name).
fn port_number(port: &Value, c: &Value) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name = port.as_str().expect("a port number or name");
    c["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

#[test]
fn kustomization_lists_every_manifest() {
    let k: Value =
        serde_yaml_ng::from_str(&read(&format!("{KUBERNETES}/kustomization.yaml"))).unwrap();
    let listed: BTreeSet<String> = strings(&k["resources"]).into_iter().collect();
    let files: BTreeSet<String> = std::fs::read_dir(root().join(KUBERNETES))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    assert_eq!(listed, files, "kustomization.yaml resources");
    let m = Manifests::load();
    let namespace =
        m.0.iter()
            .find(|(_, v)| v["kind"] == "Namespace")
            .map(|(_, v)| v["metadata"]["name"].clone())
            .expect("a Namespace");
    for (file, v) in &m.0 {
        if v["kind"] != "Namespace" {
            assert_eq!(
                v["metadata"]["namespace"], namespace,
                "{file}: {} namespace",
                v["kind"]
            );
        }
    }
}

/// One port: [run] listen (on every address, for the kubelet) is the
/// container's port, the one the probes probe (plain HTTP, /readyz and
/// /healthz) and the one the Service selects, targets and scrapes.
fn check_one_port(m: &Manifests, deployment: &Value, c: &Value, cfg: &ConfigFile) {
    let listen = cfg.run.listen.expect("[run] listen: the probes need it");
    assert!(
        listen.ip().is_unspecified(),
        "in a pod calstatus must listen on 0.0.0.0, or the kubelet cannot probe {listen}"
    );
    let port = u64::from(listen.port());
    assert!(
        c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["containerPort"] == port),
        "no containerPort {port}"
    );
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(port_number(&get["port"], c), port, "{probe} port");
        assert!(
            get["scheme"].is_null() || get["scheme"] == "HTTP",
            "{probe}: the endpoint is plain HTTP"
        );
    }
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let service = m.get("Service", "calstatus");
    for (k, v) in service["spec"]["selector"].as_object().expect("selector") {
        assert_eq!(&labels[k], v, "the Service selects the pod");
    }
    for p in service["spec"]["ports"].as_array().unwrap() {
        assert_eq!(port_number(&p["targetPort"], c), port, "Service targetPort");
    }
    if let Some(scrape) = service["metadata"]["annotations"]["prometheus.io/port"].as_str() {
        assert_eq!(scrape, port.to_string(), "prometheus.io/port");
    }
}

/// The container sets `var` (what the configuration's `key` names) from
/// a key of a Secret of the manifests; the Secret and the key.
fn secret_for<'a>(m: &'a Manifests, c: &'a Value, var: &str, key: &str) -> (&'a Value, &'a str) {
    let entry = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == var)
        .unwrap_or_else(|| panic!("the container sets no {var} ({key})"));
    let reference = &entry["valueFrom"]["secretKeyRef"];
    let name = reference["name"]
        .as_str()
        .unwrap_or_else(|| panic!("{var} ({key}) must come from a Secret: {entry}"));
    let secret = m.get("Secret", name);
    let k = reference["key"].as_str().unwrap();
    assert!(
        !secret["stringData"][k].is_null() || !secret["data"][k].is_null(),
        "Secret {name} has no key {k}"
    );
    (secret, k)
}

/// Unprivileged, read-only, as the image's user, with a writable /tmp;
/// time to stop after SIGTERM; resources.
fn check_hardened(pod: &Value, c: &Value) {
    let psc = &pod["securityContext"];
    let csc = &c["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true, "runAsNonRoot");
    assert_eq!(
        psc["runAsUser"],
        image_uid(&dockerfile()),
        "the pod runs as the image's USER"
    );
    assert!(
        psc["seccompProfile"]["type"] == "RuntimeDefault"
            || csc["seccompProfile"]["type"] == "RuntimeDefault",
        "seccompProfile RuntimeDefault"
    );
    assert_eq!(
        csc["allowPrivilegeEscalation"], false,
        "allowPrivilegeEscalation"
    );
    assert_eq!(
        csc["readOnlyRootFilesystem"], true,
        "readOnlyRootFilesystem"
    );
    assert!(
        strings(&csc["capabilities"]["drop"]).contains(&"ALL".to_string()),
        "drop ALL capabilities"
    );
    let (tmp, volume) = mount_for(pod, c, Path::new("/tmp/x")).expect("/tmp");
    assert!(
        tmp["mountPath"] == "/tmp" && tmp["readOnly"] != true && !volume["emptyDir"].is_null(),
        "a read-only root needs a writable /tmp (SQLite's scratch files; with PostgreSQL, the calendars' cache)"
    );

    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    assert!(
        Duration::from_secs(grace) >= min_stop_timeout(),
        "terminationGracePeriodSeconds {grace}: calstatus needs up to {:?} after SIGTERM",
        stop_budget()
    );
    for r in ["/requests/cpu", "/requests/memory", "/limits/memory"] {
        assert!(c["resources"].pointer(r).is_some(), "resources{r}");
    }
}

/// The configuration the container runs, from its ConfigMap: the text,
/// its path in the pod, and the ConfigMap's name.
fn pod_config<'a>(m: &'a Manifests, pod: &'a Value, c: &'a Value) -> (&'a str, PathBuf, &'a str) {
    let (config_path, log) = run_invocation("the container", &container_argv(c));
    assert_eq!(log, LogFormat::Json, "containers log JSON lines");
    let (cm, key) = configmap_key(pod, c, &config_path);
    let text = m.get("ConfigMap", cm)["data"][&key]
        .as_str()
        .unwrap_or_else(|| panic!("ConfigMap {cm} has no key {key}"));
    (text, config_path, cm)
}

/// Rules and users: read-only ConfigMap (or other) volumes, each mounted
/// at the directory the configuration names; the rules are the
/// repository's.
fn check_org_volumes(m: &Manifests, pod: &Value, c: &Value, config_path: &Path, cfg: &ConfigFile) {
    let rules = resolved(config_path, &cfg.org.rules);
    let (mount, volume) = mount_for(pod, c, &rules).expect("rules volume");
    assert_eq!(
        Path::new(mount["mountPath"].as_str().unwrap()),
        rules,
        "rules mount"
    );
    let rules_cm = m.get(
        "ConfigMap",
        volume["configMap"]["name"]
            .as_str()
            .expect("rules ConfigMap"),
    );
    let rules_data = rules_cm["data"].as_object().unwrap();
    assert!(
        rules_data.keys().all(|k| k.ends_with(".toml")),
        "rule files are *.toml"
    );
    assert!(
        rules_data["default.toml"] == read("rules/default.toml").as_str(),
        "the rules ConfigMap's default.toml differs from rules/default.toml: copy it again"
    );
    let users = resolved(config_path, &cfg.org.users);
    let (mount, volume) = mount_for(pod, c, &users).expect("users volume");
    assert_eq!(
        Path::new(mount["mountPath"].as_str().unwrap()),
        users,
        "users mount"
    );
    if let Some(name) = volume["configMap"]["name"].as_str() {
        m.get("ConfigMap", name);
    }
}

#[test]
fn kubernetes_deployment_is_one_hardened_pod_consistent_with_the_config() {
    let m = Manifests::load();
    let (deployment, pod, c) = m.pod();
    assert_eq!(
        deployment["spec"]["replicas"], 1,
        "one replica: one writer per state database"
    );
    assert_eq!(
        deployment["spec"]["strategy"]["type"], "Recreate",
        "Recreate: the old pod releases the database and its lock before the new one starts"
    );

    // The command line, and the configuration it names: the example's copy.
    let (text, config_path, cm) = pod_config(&m, pod, c);
    assert!(
        text == read(EXAMPLE_CONFIG),
        "ConfigMap {cm} differs from {EXAMPLE_CONFIG}: copy it again"
    );
    let cfg = config_with(text, &plain_env(c));
    check_one_port(&m, deployment, c, &cfg);
    check_org_volumes(&m, pod, c, &config_path, &cfg);

    // State: a writable PersistentVolumeClaim, one node at a time.
    let state = resolved(&config_path, &cfg.state.path);
    let (mount, volume) = mount_for(pod, c, &state).expect("state volume");
    assert_ne!(mount["readOnly"], true, "the state volume is writable");
    let claim = volume["persistentVolumeClaim"]["claimName"]
        .as_str()
        .unwrap_or_else(|| {
            panic!(
                "{} must be on a PersistentVolumeClaim: {volume}",
                state.display()
            )
        });
    let pvc = m.get("PersistentVolumeClaim", claim);
    assert!(
        strings(&pvc["spec"]["accessModes"])
            .iter()
            .all(|a| a == "ReadWriteOnce" || a == "ReadWriteOncePod"),
        "the state volume is mounted by one node at a time"
    );

    // The secret reaches the variable client_secret_env names.
    let graph = cfg.graph.as_ref().expect("[graph]");
    let var = graph
        .client_secret_env
        .as_deref()
        .expect("client_secret_env");
    secret_for(&m, c, var, "[graph] client_secret_env");

    check_hardened(pod, c);
}

/// A child process killed when the test ends, passed or not.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The pod laid out below `sandbox` as the kubelet lays it out: its
/// ConfigMap volumes as files, its other volumes as empty directories.
/// Its command line, `--config` moved into the sandbox, and the
/// configuration loaded as the pod's environment gives it.
fn lay_out_pod(m: &Manifests, pod: &Value, c: &Value, sandbox: &Path) -> (Vec<String>, ConfigFile) {
    for mount in c["volumeMounts"].as_array().unwrap() {
        let dir = sandboxed(sandbox, Path::new(mount["mountPath"].as_str().unwrap()));
        std::fs::create_dir_all(&dir).unwrap();
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap();
        if let Some(name) = volume["configMap"]["name"].as_str() {
            for (key, text) in m.get("ConfigMap", name)["data"].as_object().unwrap() {
                std::fs::write(dir.join(key), text.as_str().unwrap()).unwrap();
            }
        }
    }
    let mut argv = container_argv(c);
    let at = argv.iter().position(|a| a == "--config").unwrap() + 1;
    let (config_path, _) = run_invocation("the container", &argv);
    let config = sandboxed(sandbox, &config_path);
    argv[at] = config.display().to_string();
    let text = std::fs::read_to_string(&config).unwrap();
    let cfg = config_of(&argv[at], &text, &plain_env(c));
    (argv, cfg)
}

/// The container's environment in `sandbox`: its plain values as they
/// are; each Secret key as the manifest's Secret holds it (a
/// placeholder); the configuration's paths and the temporary directory
/// (the pod's /tmp) moved into the sandbox. To run against `fake`,
/// serving on `port`: the client secret is the fake's, Graph is the fake.
fn pod_env(
    m: &Manifests,
    c: &Value,
    cfg: &ConfigFile,
    sandbox: &Path,
    run: Option<(&FakeGraph, u16)>,
) -> Vec<(String, String)> {
    let client_secret = cfg
        .graph
        .as_ref()
        .and_then(|g| g.client_secret_env.as_deref());
    let mut env = plain_env(c);
    for e in c["env"].as_array().unwrap() {
        let reference = &e["valueFrom"]["secretKeyRef"];
        if reference.is_null() {
            continue;
        }
        let name = e["name"].as_str().unwrap();
        let value = if run.is_some() && Some(name) == client_secret {
            fake_graph::CLIENT_SECRET.to_string()
        } else {
            let secret = m.get("Secret", reference["name"].as_str().unwrap());
            let key = reference["key"].as_str().unwrap();
            secret["stringData"][key]
                .as_str()
                .expect("the Secret's placeholder in stringData")
                .to_string()
        };
        env.push((name.to_string(), value));
    }
    env.extend(into_sandbox(cfg, sandbox));
    let tmp = plain_env(c)
        .into_iter()
        .find(|(k, _)| k == "TMPDIR")
        .map_or_else(|| "/tmp".to_string(), |(_, v)| v);
    env.push((
        "TMPDIR".into(),
        sandboxed(sandbox, Path::new(&tmp)).display().to_string(),
    ));
    let Some((fake, port)) = run else {
        return env;
    };
    for (k, v) in [
        (
            "CALSTATUS__GRAPH__TENANT_ID",
            fake_graph::TENANT.to_string(),
        ),
        (
            "CALSTATUS__GRAPH__CLIENT_ID",
            fake_graph::CLIENT_ID.to_string(),
        ),
        ("CALSTATUS__GRAPH__GRAPH_URL", fake.url()),
        ("CALSTATUS__GRAPH__LOGIN_URL", fake.url()),
        ("CALSTATUS__RUN__LISTEN", format!("127.0.0.1:{port}")),
    ] {
        env.push((k.to_string(), v));
    }
    env
}

/// `calstatus COMMAND --config` (the config of `argv`) with exactly the
/// environment `env`.
fn with_env_of(argv: &[String], env: &[(String, String)], command: &str) -> std::process::Output {
    let at = argv.iter().position(|a| a == "--config").unwrap() + 1;
    Command::new(env!("CARGO_BIN_EXE_calstatus"))
        .args([command, "--config", &argv[at]])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}

/// `calstatus check` on the files of `argv`'s `--config` with exactly the
/// environment `env`: exit 0.
fn check_passes(argv: &[String], env: &[(String, String)]) {
    let out = with_env_of(argv, env, "check");
    assert_eq!(
        out.status.code(),
        Some(0),
        "calstatus check with that environment:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("calstatus check: OK"));
}

/// A pod's calstatus running: the process, its log, its port.
struct PodProcess {
    child: Killed,
    log: PathBuf,
    port: u16,
}

impl PodProcess {
    /// Starts the pod's command line with its environment only.
    fn start(argv: &[String], env: &[(String, String)], log: PathBuf, port: u16) -> PodProcess {
        let child = Killed(
            Command::new(env!("CARGO_BIN_EXE_calstatus"))
                .args(&argv[1..])
                .env_clear()
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        PodProcess { child, log, port }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A GET as the kubelet or Prometheus sends it: status and body.
    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = fake_graph::http_client()
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.unwrap_or_default()))
    }

    /// Waits until `path` answers 200 (panics if the process exits).
    async fn until_ok(&mut self, path: &str, within: Duration) {
        let until = Instant::now() + within;
        loop {
            if let Some((200, _)) = self.get(path).await {
                return;
            }
            if let Some(status) = self.child.0.try_wait().unwrap() {
                panic!("the pod's calstatus exited with {status}:\n{}", self.logs());
            }
            assert!(
                Instant::now() < until,
                "{path} never answered 200:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then the exit status and how long it took (killed after `grace`).
    fn terminate(&mut self, grace: Duration) -> (std::process::ExitStatus, Duration) {
        let child = &mut self.child.0;
        let started = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return (s, started.elapsed());
            }
            if started.elapsed() > grace {
                let _ = child.kill();
                panic!("still running {grace:?} after SIGTERM:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_pod_starts_answers_its_probes_and_stops_on_sigterm() {
    let m = Manifests::load();
    let (_, pod, c) = m.pod();
    let fake = FakeGraph::start(Options::default()).await;
    let sandbox = tempfile::tempdir().unwrap();
    let (argv, cfg) = lay_out_pod(&m, pod, c, sandbox.path());
    let port = free_port();
    let env = pod_env(&m, c, &cfg, sandbox.path(), Some((&fake, port)));
    // What `calstatus check` says of that pod's files (user files too:
    // a broken one only warns in the daemon's log).
    check_passes(&argv, &env);

    let mut p = PodProcess::start(&argv, &env, sandbox.path().join("pod.log"), port);
    // The probes, as the kubelet sends them.
    let readiness = c["readinessProbe"]["httpGet"]["path"].as_str().unwrap();
    let liveness = c["livenessProbe"]["httpGet"]["path"].as_str().unwrap();
    p.until_ok(readiness, Duration::from_secs(30)).await;
    let (status, body) = p.get(liveness).await.expect("the liveness probe answers");
    assert_eq!(status, 200, "{liveness}: {body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok", "{body}");
    let (status, metrics) = p.get("/metrics").await.expect("/metrics answers");
    assert_eq!(status, 200);
    assert!(metrics.contains("calstatus_users"), "{metrics}");
    // JSON logs, as the container's --log-format asks.
    assert!(
        p.logs()
            .lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "every log line is JSON:\n{}",
        p.logs()
    );

    // Termination: SIGTERM, then exit 0 well within the grace period.
    let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30));
    let (status, took) = p.terminate(grace);
    assert_eq!(status.code(), Some(0), "{}", p.logs());
    assert!(took <= stop_budget(), "stopped in {took:?}");
}

// ---------------------------------------------------------------------------------------------
// Kubernetes, several replicas on PostgreSQL (the kustomize overlay)

/// The objects as comparable values: by kind and name, lists of objects
/// in a fixed order (kustomize may put merged list items first).
fn comparable(m: &Manifests) -> BTreeMap<(String, String), Value> {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(o) => {
                Value::Object(o.iter().map(|(k, v)| (k.clone(), sorted(v))).collect())
            }
            Value::Array(a) => {
                let mut items: Vec<Value> = a.iter().map(sorted).collect();
                if items.iter().all(Value::is_object) {
                    items.sort_by_key(ToString::to_string);
                }
                Value::Array(items)
            }
            v => v.clone(),
        }
    }
    m.0.iter()
        .map(|(_, v)| {
            let id = (
                v["kind"].as_str().unwrap().to_string(),
                v["metadata"]["name"].as_str().unwrap().to_string(),
            );
            (id, sorted(v))
        })
        .collect()
}

#[test]
fn kubernetes_manifests_build_as_kubectl_builds_them() {
    // kubectl (with its kustomize) is on the project's machines but in no
    // registry .ci/run can install from.
    if Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_err()
    {
        // Said loudly, but not a CI failure (CALSTATUS_NO_SKIP): the
        // static checks above still hold the manifests.
        println!(
            "SKIPPED kubernetes_manifests_build_as_kubectl_builds_them: no kubectl to compare Manifests::build with"
        );
        return;
    }
    for dir in [KUBERNETES, KUBERNETES_HA] {
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(root().join(dir))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl kustomize {dir}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let theirs = Manifests(
            serde_yaml_ng::Deserializer::from_str(&text)
                .map(|d| ("kubectl".to_string(), Value::deserialize(d).unwrap()))
                .collect(),
        );
        let (ours, theirs) = (comparable(&Manifests::build(dir)), comparable(&theirs));
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "{dir}: the objects built"
        );
        for (id, v) in &ours {
            assert!(
                *v == theirs[id],
                "{dir}: {id:?} as built here:\n{v:#}\nas kubectl builds it:\n{:#}",
                theirs[id]
            );
        }
    }
    // The base as kustomize builds it is its files as they are.
    assert_eq!(
        comparable(&Manifests::build(KUBERNETES)),
        comparable(&Manifests::load())
    );
}

#[test]
fn kubernetes_ha_overlay_is_the_base_without_its_volume_plus_its_own_files() {
    let k = yaml_docs(&format!("{KUBERNETES_HA}/kustomization.yaml")).remove(0);
    let resources = strings(&k["resources"]);
    let patches: Vec<String> = k["patches"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p["path"].as_str().expect("patches by path").to_string())
        .collect();
    // `kubectl apply -k` on either directory: the overlay lies beside the
    // base (kustomize refuses an overlay inside its base).
    let bases: Vec<&String> = resources
        .iter()
        .filter(|r| root().join(KUBERNETES_HA).join(r).is_dir())
        .collect();
    assert_eq!(
        bases
            .iter()
            .map(|b| normalized(&format!("{KUBERNETES_HA}/{b}")))
            .collect::<Vec<_>>(),
        [KUBERNETES],
        "the overlay builds on the base"
    );
    let listed: BTreeSet<String> = resources
        .iter()
        .filter(|r| !bases.contains(r))
        .chain(&patches)
        .cloned()
        .collect();
    let files: BTreeSet<String> = std::fs::read_dir(root().join(KUBERNETES_HA))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed, files,
        "{KUBERNETES_HA}/kustomization.yaml lists every file"
    );

    // What it builds: the base's objects but the volume claim, and its own.
    let base = comparable(&Manifests::load());
    let built = Manifests::build(KUBERNETES_HA);
    let ha = comparable(&built);
    let pvc = (
        "PersistentVolumeClaim".to_string(),
        "calstatus-state".to_string(),
    );
    assert!(base.contains_key(&pvc) && !ha.contains_key(&pvc));
    for id in base.keys().filter(|id| **id != pvc) {
        assert!(ha.contains_key(id), "the overlay keeps the base's {id:?}");
    }
    let added: Vec<&(String, String)> = ha.keys().filter(|id| !base.contains_key(id)).collect();
    assert_eq!(
        added
            .iter()
            .map(|(kind, _)| kind.as_str())
            .collect::<BTreeSet<_>>(),
        ["PodDisruptionBudget", "Secret"].into(),
        "added: {added:?}"
    );
    let namespace =
        base[&("Namespace".to_string(), "calstatus".to_string())]["metadata"]["name"].clone();
    for (file, v) in &built.0 {
        if v["kind"] != "Namespace" {
            assert_eq!(
                v["metadata"]["namespace"], namespace,
                "{file}: {} namespace",
                v["kind"]
            );
        }
    }
    // Only the Deployment, the configuration and the claim are patched.
    for (id, v) in &base {
        if ![
            ("Deployment", "calstatus"),
            ("ConfigMap", "calstatus-config"),
        ]
        .contains(&(id.0.as_str(), id.1.as_str()))
            && *id != pvc
        {
            assert_eq!(v, &ha[id], "the overlay leaves {id:?} as the base has it");
        }
    }
}

/// A Kubernetes quantity of bytes ("64Mi", "1Gi", "500M", "1024").
fn quantity(q: &str) -> u64 {
    let units: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let (number, unit) = units
        .iter()
        .find_map(|(suffix, unit)| q.strip_suffix(suffix).map(|n| (n, *unit)))
        .unwrap_or((q, 1));
    number
        .parse::<u64>()
        .unwrap_or_else(|_| panic!("not a quantity: {q}"))
        * unit
}

/// The text of each `[section]` of a TOML file ("" for what comes first).
fn sections(text: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_string();
        }
        let s = out.entry(current.clone()).or_default();
        s.push_str(line);
        s.push('\n');
    }
    out
}

#[test]
fn kubernetes_ha_deployment_is_three_spread_pods_on_postgresql_consistent_with_the_config() {
    let m = Manifests::build(KUBERNETES_HA);
    let (deployment, pod, c) = m.pod();
    let replicas = deployment["spec"]["replicas"].as_u64().expect("replicas");
    assert_eq!(replicas, 3, "three replicas");
    let strategy = &deployment["spec"]["strategy"];
    assert_eq!(
        strategy["type"], "RollingUpdate",
        "several instances may overlap on one database: no need to stop them all"
    );
    let unavailable = strategy["rollingUpdate"]["maxUnavailable"]
        .as_u64()
        .expect("maxUnavailable, a number");
    assert!(unavailable >= 1 && !strategy["rollingUpdate"]["maxSurge"].is_null());
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let selects = |selector: &Value| {
        let wanted = selector["matchLabels"].as_object().expect("matchLabels");
        !wanted.is_empty() && wanted.iter().all(|(k, v)| &labels[k] == v)
    };

    // Spread over nodes (topology spread or anti-affinity by host name).
    let spread = pod["topologySpreadConstraints"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| t["topologyKey"] == "kubernetes.io/hostname" && selects(&t["labelSelector"]));
    let anti = [
        "requiredDuringSchedulingIgnoredDuringExecution",
        "preferredDuringSchedulingIgnoredDuringExecution",
    ]
    .iter()
    .flat_map(|k| {
        pod["affinity"]["podAntiAffinity"][k]
            .as_array()
            .into_iter()
            .flatten()
    })
    .map(|t| {
        if t["podAffinityTerm"].is_null() {
            t
        } else {
            &t["podAffinityTerm"]
        }
    })
    .any(|t| t["topologyKey"] == "kubernetes.io/hostname" && selects(&t["labelSelector"]));
    assert!(
        spread || anti,
        "the pods are spread over nodes (kubernetes.io/hostname)"
    );

    // Voluntary disruptions leave a majority, and a rolling update fits in them.
    let pdbs: Vec<&Value> =
        m.0.iter()
            .map(|(_, v)| v)
            .filter(|v| v["kind"] == "PodDisruptionBudget")
            .collect();
    assert_eq!(pdbs.len(), 1, "a PodDisruptionBudget");
    let pdb = pdbs[0];
    assert_eq!(pdb["apiVersion"], "policy/v1");
    let min = pdb["spec"]["minAvailable"]
        .as_u64()
        .expect("minAvailable, a number");
    assert!(
        min >= 1 && min < replicas,
        "minAvailable {min} with {replicas} replicas: a drain must be able to evict one"
    );
    assert!(
        replicas - unavailable >= min,
        "a rolling update (maxUnavailable {unavailable}) stays within the budget (minAvailable {min})"
    );
    assert!(
        selects(&pdb["spec"]["selector"]),
        "the budget selects the pods"
    );
    assert_eq!(
        pdb["spec"]["selector"], deployment["spec"]["selector"],
        "the budget selects what the Deployment selects"
    );

    // No state volume: nothing claims one, nothing is left to claim.
    assert!(m.find("PersistentVolumeClaim", "calstatus-state").is_none());
    for v in pod["volumes"].as_array().unwrap() {
        assert!(v["persistentVolumeClaim"].is_null(), "a volume claim: {v}");
        assert!(
            c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|mt| mt["name"] == v["name"]),
            "volume {} is mounted nowhere",
            v["name"]
        );
    }
    for mt in c["volumeMounts"].as_array().unwrap() {
        assert!(
            pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["name"] == mt["name"]),
            "volumeMount {} has no volume",
            mt["name"]
        );
    }

    // The configuration: the base's, on PostgreSQL.
    let (text, config_path, cm) = pod_config(&m, pod, c);
    let cfg = config_of(&format!("ConfigMap {cm}"), text, &plain_env(c));
    let base = sections(&read(EXAMPLE_CONFIG));
    let ours = sections(text);
    assert_eq!(
        base.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>(),
        "the same sections as {EXAMPLE_CONFIG}"
    );
    for (name, section) in &base {
        if !name.is_empty() && name != "state" {
            assert!(
                ours[name] == *section,
                "[{name}] differs from {EXAMPLE_CONFIG}'s: copy it again"
            );
        }
    }
    let table: toml::Table = text.parse().unwrap();
    assert!(
        !table["state"].as_table().unwrap().contains_key("path"),
        "[state] names the database, not a SQLite path"
    );
    let state = &cfg.state;
    let url: url::Url = state.url.as_deref().expect("[state] url").parse().unwrap();
    assert!(matches!(url.scheme(), "postgres" | "postgresql"), "{url}");
    assert!(url.password().is_none(), "no password in [state] url");
    assert!(!url.username().is_empty(), "[state] url names the role");
    assert!(
        matches!(state.tls, PgTls::Require | PgTls::VerifyFull),
        "the password crosses the network: tls require or verify-full, not {:?}",
        state.tls
    );
    assert!(
        state.password_file.is_none(),
        "the password comes from the Secret"
    );
    let var = state.password_env.as_deref().expect("[state] password_env");
    let (secret, key) = secret_for(&m, c, var, "[state] password_env");
    assert_eq!(secret["metadata"]["name"], "calstatus-postgres");
    assert_eq!(key, "password");
    assert!(calstatus::config::LEASE_TTL.contains(&state.lease_ttl));

    // What did not change: port and probes, rules and users, the client
    // secret, hardening.
    check_one_port(&m, deployment, c, &cfg);
    check_org_volumes(&m, pod, c, &config_path, &cfg);
    let graph = cfg.graph.as_ref().expect("[graph]");
    secret_for(
        &m,
        c,
        graph
            .client_secret_env
            .as_deref()
            .expect("client_secret_env"),
        "[graph] client_secret_env",
    );
    check_hardened(pod, c);
    // The calendars' cache goes to the temporary directory: a writable
    // emptyDir with room for it (the base's 64 Mi is for SQLite scratch).
    let tmp = plain_env(c)
        .into_iter()
        .find(|(k, _)| k == "TMPDIR")
        .map_or_else(|| "/tmp".to_string(), |(_, v)| v);
    let (mount, volume) = mount_for(pod, c, &Path::new(&tmp).join("calstatus-calendars-0"))
        .expect("a volume at $TMPDIR");
    assert!(
        mount["readOnly"] != true && !volume["emptyDir"].is_null(),
        "$TMPDIR ({tmp}) is a writable emptyDir"
    );
    if let Some(limit) = volume["emptyDir"]["sizeLimit"].as_str() {
        assert!(
            quantity(limit) >= 1 << 30,
            "$TMPDIR holds every calendar's last good copy (up to [fetch] max_bytes each): sizeLimit {limit} is small"
        );
    }

    // `calstatus check` on the pod's files, as it would run in the pod: it
    // does not connect to the database (whose name does not resolve here).
    let sandbox = tempfile::tempdir().unwrap();
    let (argv, cfg) = lay_out_pod(&m, pod, c, sandbox.path());
    check_passes(&argv, &pod_env(&m, c, &cfg, sandbox.path(), None));
}

/// The `[state] tls` override for the test server: none when it offers
/// TLS (Debian's PostgreSQL does, with its snakeoil certificate), so the
/// pods connect as the overlay says; `disable` when it does not.
async fn tls_override(db: &TestDb) -> Option<(String, String)> {
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let ssl: String = client.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    (ssl != "on").then(|| {
        println!("note: the test server offers no TLS; the pods connect without it");
        ("CALSTATUS__STATE__TLS".into(), "disable".into())
    })
}

/// `calstatus sync` with the pod's files and environment: exit code, output.
fn one_shot_sync(argv: &[String], env: &[(String, String)]) -> (Option<i32>, String) {
    let out = with_env_of(argv, env, "sync");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_ha_pods_share_the_shards_on_postgresql_and_give_them_back_on_sigterm() {
    let test = "kubernetes_ha_pods_share_the_shards_on_postgresql_and_give_them_back_on_sigterm";
    let Some(db) = throwaway(test).await else {
        return;
    };
    let m = Manifests::build(KUBERNETES_HA);
    let (deployment, pod, c) = m.pod();
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap() as usize;
    let fake = FakeGraph::start(Options::default()).await;
    let tls = tls_override(&db).await;

    // Each replica: its own files and /tmp, the overlay's environment (the
    // database password from the Secret's placeholder), the test's database.
    let mut sandboxes = Vec::new();
    let mut pods = Vec::new();
    let mut sync_argv = Vec::new();
    let mut sync_env = Vec::new();
    for i in 0..replicas {
        let sandbox = tempfile::tempdir().unwrap();
        let (argv, cfg) = lay_out_pod(&m, pod, c, sandbox.path());
        let port = free_port();
        let mut env = pod_env(&m, c, &cfg, sandbox.path(), Some((&fake, port)));
        env.push(("CALSTATUS__STATE__URL".into(), db.url.clone()));
        env.extend(tls.clone());
        let log = sandbox.path().join(format!("pod{i}.log"));
        pods.push(PodProcess::start(&argv, &env, log, port));
        (sync_argv, sync_env) = (argv, env);
        sandboxes.push(sandbox);
    }
    let readiness = c["readinessProbe"]["httpGet"]["path"].as_str().unwrap();
    for p in &mut pods {
        p.until_ok(readiness, Duration::from_secs(30)).await;
    }

    // What to watch: the shards held, summed over the pods, are all 64,
    // each pod holding some; every pod reaches the database.
    let until = Instant::now() + Duration::from_secs(30);
    let held = loop {
        let mut held = Vec::new();
        for p in &pods {
            if let Some((200, text)) = p.get("/metrics").await {
                held.push(metric(&text, "calstatus_shards_held"));
            }
        }
        if held.len() == replicas
            && held.iter().sum::<f64>() == 64.0
            && held.iter().all(|h| *h > 0.0)
        {
            break held;
        }
        assert!(
            Instant::now() < until,
            "the pods never shared the 64 shards: {held:?}\n{}",
            pods.iter()
                .map(PodProcess::logs)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let liveness = c["livenessProbe"]["httpGet"]["path"].as_str().unwrap();
    for p in &pods {
        let (status, body) = p.get(liveness).await.expect("the liveness probe answers");
        assert_eq!(status, 200, "{body}");
        let health: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(health["database"], "ok", "{body}");
        assert_eq!(health["status"], "ok", "{body}");
    }

    // A one-shot pass refuses to run beside them.
    let (code, out) = one_shot_sync(&sync_argv, &sync_env);
    assert_ne!(
        code,
        Some(0),
        "calstatus sync ran beside the pods ({held:?}):\n{out}"
    );
    assert!(out.contains("hold") && out.contains("shard"), "{out}");

    // SIGTERM: each exits 0 in time and gives its shards back, so a
    // one-shot pass may run at once.
    let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30));
    for p in &mut pods {
        let (status, took) = p.terminate(grace);
        assert_eq!(status.code(), Some(0), "{}", p.logs());
        assert!(took <= stop_budget(), "stopped in {took:?}");
    }
    let (code, out) = one_shot_sync(&sync_argv, &sync_env);
    assert_eq!(
        code,
        Some(0),
        "calstatus sync once the pods stopped:\n{out}"
    );
}

#[test]
fn kubernetes_ha_comments_name_what_the_binary_reports() {
    use calstatus::daemon::http::Health;
    use calstatus::daemon::metrics::Metrics;
    // Every metric the overlay and the deployment README tell to watch.
    let metrics = Metrics::new(None).encode();
    let name = regex::Regex::new(r"\bcalstatus_[a-z_]+\b").unwrap();
    let mut texts = vec![(
        "examples/deploy/README.md".to_string(),
        read("examples/deploy/README.md"),
    )];
    for e in std::fs::read_dir(root().join(KUBERNETES_HA)).unwrap() {
        let f = format!(
            "{KUBERNETES_HA}/{}",
            e.unwrap().file_name().to_string_lossy()
        );
        texts.push((f.clone(), read(&f)));
    }
    let mut named = BTreeSet::new();
    for (file, text) in &texts {
        for m in name.find_iter(text) {
            let metric = m.as_str();
            assert!(
                metrics.lines().any(|l| l.starts_with(&format!("{metric} "))
                    || l.starts_with(&format!("{metric}{{"))),
                "{file} names {metric}, which /metrics does not have:\n{metrics}"
            );
            named.insert(metric.to_string());
        }
    }
    for watched in [
        "calstatus_shards_held",
        "calstatus_lease_takeovers_total",
        "calstatus_lease_renewals_total",
    ] {
        assert!(
            named.contains(watched),
            "the overlay tells to watch {watched}"
        );
    }
    // And /healthz's "database".
    let health = Health::new(Metrics::new(None));
    health.update(|r| r.database = "unreachable");
    let body = serde_json::to_value(health.report()).unwrap();
    assert_eq!(body["database"], "unreachable");
    assert_eq!(body["status"], "degraded");
    let overlay = read(&format!("{KUBERNETES_HA}/kustomization.yaml"));
    for said in [
        "\"database\": \"unreachable\"",
        "\"degraded\"",
        "calstatus sync",
    ] {
        assert!(
            overlay.contains(said),
            "the overlay's kustomization.yaml says {said}"
        );
    }
}
