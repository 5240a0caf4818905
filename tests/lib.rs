//! Integration tests: one binary (see Cargo.toml `autotests = false`).

mod support;

mod architecture;
mod calendar;
mod calendar_edge;
mod cli;
mod daemon_loop;
mod deploy;
mod fetch;
mod fetch_deadline;
mod fetch_dedup;
mod fetch_files;
mod fetch_secrets;
mod generated;
mod graph_fake;
mod hostile;
mod html;
mod output;
mod plan;
mod reference;
mod run;
mod shared;
mod state_contract;
mod sync;
