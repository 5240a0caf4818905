//! Calendars: naming sources, ICS parsing, time zones and recurrence
//! expansion (pure), plus reading sources from files and URLs (the only IO
//! here, in `source`).

pub mod address;
pub mod expand;
pub mod ics;
pub mod source;
pub mod zones;

pub use expand::{Occurrence, Window, expand};
pub use ics::{Calendar, Diag, MAX_DIAGNOSTICS, MAX_NESTING_DEPTH, ZoneCache, parse, parse_with};
pub use zones::{Zone, parse_zone_name};
