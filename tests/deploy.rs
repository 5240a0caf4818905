//! `examples/deploy/`: the example service configuration and the systemd
//! unit, parsed and held to the binary they run. The command line parses
//! as `calstatus run` and names the configuration where the unit installs
//! it; the configuration loads with the unit's environment; its state lies
//! in the unit's state directory; the secret reaches the variable
//! `client_secret_env` names; and the layout passes `calstatus check`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use calstatus::cli::{Cli, Command as Sub, LogFormat};
use calstatus::config::ConfigFile;
use calstatus::daemon::SHUTDOWN_GRACE;
use clap::Parser;

use crate::support::root;

const EXAMPLE_CONFIG: &str = "examples/deploy/calstatus.toml";
const UNIT: &str = "examples/deploy/systemd/calstatus.service";

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
    calstatus::config::parse(Path::new(EXAMPLE_CONFIG), text, env.to_vec()).unwrap_or_else(|p| {
        let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
        panic!(
            "the configuration does not load with {env:?}:\n{}",
            shown.join("\n")
        )
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
    vec![
        ("CALSTATUS__ORG__RULES".into(), moved(&cfg.org.rules)),
        ("CALSTATUS__ORG__USERS".into(), moved(&cfg.org.users)),
        ("CALSTATUS__STATE__PATH".into(), moved(&cfg.state.path)),
        (
            "CALSTATUS__FETCH__FILE_ROOTS".into(),
            format!("[{}]", roots.join(", ")),
        ),
    ]
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
    let out = Command::new(env!("CARGO_BIN_EXE_calstatus"))
        .args(["check", "--config", config.to_str().unwrap()])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("calstatus check: OK"));
}
