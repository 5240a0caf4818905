//! Integration tests: one binary (see Cargo.toml `autotests = false`).

mod support;

mod calendar;
mod calendar_edge;
mod cli;
mod fetch;
mod graph_fake;
mod hostile;
mod html;
mod output;
mod plan;
mod reference;
mod sync;
