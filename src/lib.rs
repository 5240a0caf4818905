//! calstatus: calendar-driven Microsoft Teams status messages for a whole
//! organisation.
//!
//! The functional core (`calendar::{ics, zones, expand}`, `rules`, `plan`,
//! `report`) is pure: functions of their inputs and `now`. The imperative
//! shell (`calendar::source`, `pipeline`, the CLI) does the IO. See
//! ARCHITECTURE.md.

#![warn(missing_docs, unreachable_pub)]

pub mod calendar;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod domain;
pub mod engine;
pub mod exit;
pub mod graph;
pub mod org;
pub mod pipeline;
pub mod plan;
pub mod reconcile;
pub mod report;
pub mod retry;
pub mod rules;
pub mod state;
pub mod sync;
pub mod text;
