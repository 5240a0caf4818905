//! What the sync benchmark prints, and its rows in the results file.

use serde_json::{Value, json};

use crate::FREE_BUDGET;
use crate::pass::Outcome;

/// The stages-in-isolation lines.
pub fn print_stages(v: &Value) {
    let f = |k: &str| v[k].as_f64().unwrap_or_default();
    println!(
        "\nstages in isolation ({} users):\n  build_plan {:.3} s | state: open {:.3} s, {} record() reads {:.3} s, record_intents {:.3} s, {} outcomes in batches of 20 {:.3} s ({:.0} µs each)",
        v["users"],
        f("build_plan_s"),
        f("state_open_s"),
        v["users"],
        f("state_record_reads_s"),
        f("state_record_intents_s"),
        v["users"],
        f("state_record_outcomes_s"),
        f("state_outcome_us_each"),
    );
    for g in v["graph"].as_array().into_iter().flatten() {
        let f = |k: &str| g[k].as_f64().unwrap_or_default();
        println!(
            "  graph client alone, latency {} ms, concurrency {}: reads {:.3} s; apply {} writes in {} batches {:.3} s (latency floor {:.3} s, +{:.3} s; {:.0} µs per write)",
            g["latency_ms"],
            g["concurrency"],
            f("reads_s"),
            g["writes_ok"],
            g["batches"],
            f("writes_s"),
            f("latency_floor_s"),
            f("extra_over_floor_s"),
            f("us_per_write"),
        );
    }
}

/// The scenarios' table, their stages and the binding budget's check.
pub fn print_table(rows: &[Outcome]) {
    print_rows(rows);
    print_stage_rows(rows);
    for r in rows.iter().filter(|r| r.scenario.budget < FREE_BUDGET) {
        print_budget(r);
    }
}

fn print_rows(rows: &[Outcome]) {
    println!(
        "\n{:<22} {:>6} {:>5} {:>5} {:>9} {:>8} {:>7} {:>6} {:>7} {:>4} {:>7}  wall s of every run",
        "scenario",
        "users",
        "batch",
        "conc",
        "budget",
        "wall s",
        "HTTP",
        "ops",
        "set",
        "all",
        "failed"
    );
    for r in rows {
        let s = &r.scenario;
        println!(
            "{:<22} {:>6} {:>5} {:>5} {:>9} {:>8.2} {:>7} {:>6} {:>7} {:>4} {:>7}  {}",
            s.name,
            s.users,
            if s.batch { "on" } else { "off" },
            s.concurrency,
            if s.budget >= FREE_BUDGET {
                "free".to_string()
            } else {
                format!("{}/30s", s.budget)
            },
            r.wall_s,
            r.http_requests,
            r.presence_ops,
            r.set_count,
            if r.all_set() { "yes" } else { "NO" },
            r.failed,
            r.wall_runs
                .iter()
                .map(|w| format!("{w:.2}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
}

fn print_stage_rows(rows: &[Outcome]) {
    println!(
        "\nstages, s (from the fake's operation log), and CPU during the pass, s: process CPU time;\nmain thread (drives run_pass) on a CPU / runnable but waiting for one; all threads waiting\n{:<22} {:>8} {:>8} {:>8} {:>9} {:>8} {:>6} {:>8} {:>6} {:>6} {:>6} {:>6}",
        "scenario",
        "load",
        "plan+",
        "reads",
        "reconcile",
        "writes",
        "tail",
        "ops/s",
        "cpu",
        "main",
        "m.wait",
        "wait"
    );
    for r in rows {
        let st = &r.stages;
        println!(
            "{:<22} {:>8.3} {:>8.3} {:>8.3} {:>9.3} {:>8.3} {:>6.3} {:>8.0} {:>6.2} {:>6.2} {:>6.2} {:>6.2}",
            r.scenario.name,
            r.load_s,
            st.before_reads_s,
            st.reads_s,
            st.reconcile_s,
            st.writes_s,
            st.tail_s,
            if st.writes_s > 0.0 {
                r.set_count as f64 / st.writes_s
            } else {
                0.0
            },
            r.cpu_s,
            r.sched.main_run,
            r.sched.main_wait,
            r.sched.all_wait,
        );
    }
}

fn print_budget(r: &Outcome) {
    let s = &r.scenario;
    println!(
        "\nbudget {}/30s, {} users: {} presence ops ({} reads + {} write attempts); floor (last op start) {:.0} s; first op at {:.2} s, last op at {:.2} s ({:.2} s after the first: +{:.2} s over the floor); wall {:.2} s\n  max ops in any rolling 30 s window: {} ({}); shortest span between op i and op i+{}: {}",
        s.budget,
        s.users,
        r.presence_ops,
        r.reads,
        r.presence_ops.saturating_sub(r.reads),
        r.budget_floor_s,
        r.stages.before_reads_s,
        r.last_op_s,
        r.last_op_s - r.stages.before_reads_s,
        r.last_op_s - r.stages.before_reads_s - r.budget_floor_s,
        r.wall_s,
        r.max_in_window,
        if r.max_in_window <= s.budget {
            "kept"
        } else {
            "EXCEEDED"
        },
        s.budget,
        r.min_gap_budget_ops_s
            .map(|g| format!("{g:.3} s"))
            .unwrap_or_else(|| "n/a".into()),
    );
}

/// One row of the results file.
pub fn to_json(r: &Outcome) -> Value {
    let s = &r.scenario;
    json!({
        "name": s.name,
        "users": s.users,
        "batch": s.batch,
        "concurrency": s.concurrency,
        "budget_per_30s": s.budget,
        "fake_budget_per_30s": s.fake_budget,
        "org_load_s": r.load_s,
        "wall_s": r.wall_s,
        "wall_s_all_runs": r.wall_runs,
        "process_cpu_s": r.cpu_s,
        "other_processes_cpu_s": r.others_cpu_s,
        "main_thread_on_cpu_s": r.sched.main_run,
        "main_thread_waiting_for_cpu_s": r.sched.main_wait,
        "threads_on_cpu_s": r.sched.all_run,
        "threads_waiting_for_cpu_s": r.sched.all_wait,
        "http_requests": r.http_requests,
        "token_requests": r.token_requests,
        "presence_ops": r.presence_ops,
        "presence_reads": r.reads,
        "presence_ops_not_accepted": r.presence_ops.saturating_sub(r.reads + r.set_count),
        "set_count": r.set_count,
        "users_with_message": r.users_with_message,
        "all_set": r.all_set(),
        "failed": r.failed,
        "decisions": r.counts,
        "stages_s": {
            "before_reads": r.stages.before_reads_s,
            "reads": r.stages.reads_s,
            "reconcile": r.stages.reconcile_s,
            "writes": r.stages.writes_s,
            "tail": r.stages.tail_s,
        },
        "max_ops_in_30s_window": r.max_in_window,
        "min_span_budget_ops_s": r.min_gap_budget_ops_s,
        "last_op_s": r.last_op_s,
        "budget_floor_s": (s.budget < FREE_BUDGET).then_some(r.budget_floor_s),
    })
}
