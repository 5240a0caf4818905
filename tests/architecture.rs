//! The architecture's first invariant, checked: the functional core does no
//! IO, reads no clock and keeps no process-wide mutable state — it does not
//! import the shell (org loading, fetching, Graph, the state store, the
//! sync engine, the daemon, the CLI) nor the crates and std modules that do
//! IO. The list of core modules is ARCHITECTURE.md's.

use crate::support::root;

/// The pure core (ARCHITECTURE.md, "Code map").
const CORE: &[&str] = &[
    "src/domain.rs",
    "src/calendar/address.rs",
    "src/calendar/ics.rs",
    "src/calendar/zones.rs",
    "src/calendar/expand.rs",
    "src/rules/mod.rs",
    "src/rules/model.rs",
    "src/rules/eval.rs",
    "src/rules/template.rs",
    "src/plan.rs",
    "src/report/mod.rs",
    "src/report/html.rs",
    "src/reconcile.rs",
    "src/text.rs",
    "src/daemon/schedule.rs",
];

/// What the core may not name (outside its tests).
const FORBIDDEN: &[&str] = &[
    "crate::org",
    "crate::config",
    "crate::pipeline",
    "crate::graph",
    "crate::state",
    "crate::sync",
    "crate::engine",
    "crate::daemon",
    "crate::cli",
    "calendar::source",
    "super::source",
    "std::fs",
    "std::net",
    "std::env",
    "std::process",
    "tokio",
    "reqwest",
    "rusqlite",
    "rayon",
    "tracing::",
    "Utc::now",
    "SystemTime::now",
    "Instant::now",
    "Local::now",
    "println!",
    "eprintln!",
];

#[test]
fn the_core_does_no_io_and_imports_no_shell() {
    let mut found = Vec::new();
    for file in CORE {
        let text = std::fs::read_to_string(root().join(file))
            .unwrap_or_else(|e| panic!("{file}: {e} (update CORE and ARCHITECTURE.md together)"));
        // Unit tests may use anything.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (no, line) in code.lines().enumerate() {
            let l = line.trim_start();
            if l.starts_with("//") {
                continue;
            }
            for f in FORBIDDEN {
                if l.contains(f) {
                    found.push(format!("{file}:{}: {f}: {l}", no + 1));
                }
            }
            // Process-wide mutable state.
            if l.starts_with("static ")
                && (l.contains("Mutex") || l.contains("RwLock") || l.contains("Cell<"))
            {
                found.push(format!("{file}:{}: mutable static: {l}", no + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the core reaches into the shell:\n{}",
        found.join("\n")
    );
}

/// Every module of `src/` is either core or shell: a new module must be
/// placed (here and in ARCHITECTURE.md) on purpose.
#[test]
fn every_module_is_placed() {
    const SHELL: &[&str] = &[
        "src/lib.rs",
        "src/main.rs",
        "src/cli.rs",
        "src/config.rs",
        "src/exit.rs",
        "src/org.rs",
        "src/pipeline.rs",
        "src/engine.rs",
        "src/retry.rs",
        "src/sync.rs",
        "src/calendar/mod.rs",
        "src/calendar/source.rs",
        "src/graph/mod.rs",
        "src/graph/auth.rs",
        "src/graph/client.rs",
        "src/graph/limiter.rs",
        "src/graph/model.rs",
        "src/state/mod.rs",
        "src/state/sqlite.rs",
        "src/state/memory.rs",
        "src/state/postgres.rs",
        "src/daemon/mod.rs",
        "src/daemon/calendars.rs",
        "src/daemon/http.rs",
        "src/daemon/metrics.rs",
        "src/daemon/shards.rs",
    ];
    let mut files = Vec::new();
    let mut stack = vec![root().join("src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(
                    p.strip_prefix(root())
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    files.sort();
    let unplaced: Vec<&String> = files
        .iter()
        .filter(|f| !CORE.contains(&f.as_str()) && !SHELL.contains(&f.as_str()))
        .collect();
    assert!(
        unplaced.is_empty(),
        "not placed as core or shell: {unplaced:?}"
    );
    let architecture = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    for f in CORE {
        let module = f
            .trim_start_matches("src/")
            .trim_end_matches(".rs")
            .trim_end_matches("/mod");
        let name = format!("`{}`", f.rsplit('/').next().unwrap_or(f));
        assert!(
            architecture.contains(module) || architecture.contains(&name),
            "ARCHITECTURE.md does not mention core module {module}"
        );
    }
}
