//! `examples/deploy/`: the systemd unit and the Dockerfile, parsed and held
//! to the binary they run. Every command line parses as `calstatus run` and
//! names the configuration where that deployment puts it; the example
//! configuration loads with each deployment's environment; its port is the
//! one exposed; its state lies on the writable volume; the secret reaches
//! the variable `client_secret_env` names. The systemd layout passes
//! `calstatus check`.

use std::collections::{BTreeMap, BTreeSet};
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
const DOCKERFILE: &str = "examples/deploy/Dockerfile";

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
