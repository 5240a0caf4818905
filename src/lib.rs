//! calstatus: calendar-driven Microsoft Teams status messages for a whole
//! organisation.
//!
//! The functional core (`calendar::{ics, zones, expand}`, `rules`, `plan`,
//! `report`) is pure: functions of their inputs and `now`. The imperative
//! shell (`calendar::source`, `pipeline`, the CLI) does the IO. See
//! ARCHITECTURE.md.

pub mod calendar;
pub mod rules;
