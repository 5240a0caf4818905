//! Renderers of a plan: `table` (a person at a terminal, local times),
//! `json` (the machine contract, see docs/plan-json.md), `csv` (one row per
//! status) and `html` (a self-contained page with a timeline per user).
//! Pure: a plan in, text out. Private meetings never show their summary.
//!
//! Everything in a plan that came from a calendar or a user file is hostile
//! text: the table escapes control characters and bidi overrides
//! ([`crate::text::for_terminal`]), CSV cells are escaped the same way and
//! never start like a formula ([`crate::text::csv_cell`]), the HTML page is
//! escaped by [`html::escape`] and JSON by serde (plus [`crate::text::for_json`]).

pub mod html;

use comfy_table::{Cell, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};

use crate::plan::{Decision, Plan, local, utc_secs};
use crate::text::{csv_cell, for_terminal as term};

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Local times per user, for a terminal.
    Table,
    /// The stable machine contract.
    Json,
    /// One row per status.
    Csv,
    /// One offline page with a timeline picture.
    Html,
}

/// Renders a plan.
pub fn render(plan: &Plan, format: Format) -> String {
    match format {
        Format::Table => table(plan),
        Format::Json => json(plan),
        Format::Csv => csv(plan),
        Format::Html => html::render(plan),
    }
}

/// The JSON contract (C1 and bidi controls `\u`-escaped, see
/// [`crate::text::for_json`]).
pub fn json(plan: &Plan) -> String {
    let s =
        serde_json::to_string_pretty(plan).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    let mut s = crate::text::for_json(&s).into_owned();
    s.push('\n');
    s
}

/// One row per status. Every cell is escaped like the table (so a row is
/// one line, safe to print) and a cell that starts with `=`, `+`, `-`, `@`,
/// a tab or a carriage return gets a leading `'`, in every column alike.
pub fn csv(plan: &Plan) -> String {
    fn cell(s: &str) -> String {
        csv_cell(&term(s)).into_owned()
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "user",
        "timezone",
        "start",
        "end",
        "local_start",
        "local_end",
        "rule",
        "message",
        "occurrences",
    ]);
    for u in &plan.users {
        for s in &u.statuses {
            let _ = w.write_record(
                [
                    u.user.as_str(),
                    u.timezone.as_str(),
                    &utc_secs::fmt(&s.start),
                    &utc_secs::fmt(&s.end),
                    &local(&u.zone, s.start).format("%Y-%m-%d %H:%M").to_string(),
                    &local(&u.zone, s.end).format("%Y-%m-%d %H:%M").to_string(),
                    s.rule.as_str(),
                    s.message.as_str(),
                    &s.occurrences.len().to_string(),
                ]
                .map(cell),
            );
        }
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// Human time span in a user's zone: "Fri 27 Nov 09:30–10:00".
pub fn local_span(
    zone: &crate::calendar::Zone,
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
) -> String {
    let s = local(zone, start);
    let e = local(zone, end);
    if s.date_naive() == e.date_naive() {
        format!(
            "{} {}–{}",
            s.format("%a %d %b"),
            s.format("%H:%M"),
            e.format("%H:%M")
        )
    } else {
        format!(
            "{} – {}",
            s.format("%a %d %b %H:%M"),
            e.format("%a %d %b %H:%M")
        )
    }
}

/// A summary fit to show: private ones are hidden.
pub fn shown_summary(summary: Option<&str>, private: bool) -> String {
    if private {
        "(private)".into()
    } else {
        summary.unwrap_or("(no title)").to_string()
    }
}

/// For a person at a terminal: every text from the plan goes through
/// [`term`], so no control character or bidi override reaches the screen.
pub fn table(plan: &Plan) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Dry run: what calstatus would publish from {} to {} (UTC). Nothing is sent.\n",
        utc_secs::fmt(&plan.window.from),
        utc_secs::fmt(&plan.window.to)
    ));
    for u in &plan.users {
        out.push('\n');
        out.push_str(&format!(
            "{} · {} · {}\n",
            term(&u.label),
            term(&u.user),
            term(&u.timezone)
        ));
        if u.statuses.is_empty() {
            out.push_str("  no status to publish in this window\n");
        } else {
            let mut t = Table::new();
            t.load_preset(UTF8_FULL_CONDENSED)
                .set_content_arrangement(ContentArrangement::Dynamic)
                .set_width(120)
                .set_header(["when (local)", "message", "rule"]);
            for s in &u.statuses {
                t.add_row([
                    Cell::new(local_span(&u.zone, s.start, s.end)),
                    Cell::new(term(&s.message)),
                    Cell::new(term(&s.rule)),
                ]);
            }
            out.push_str(&t.to_string());
            out.push('\n');
        }
        let skipped: Vec<_> = u
            .occurrences
            .iter()
            .filter(|o| o.decision == Decision::Skipped)
            .collect();
        if !skipped.is_empty() {
            out.push_str("  skipped:\n");
            for o in skipped {
                out.push_str(&format!(
                    "    {}  {}  ({})\n",
                    local_span(&u.zone, o.start, o.end),
                    term(&shown_summary(o.summary.as_deref(), o.private)),
                    term(o.reason.as_deref().unwrap_or(""))
                ));
            }
        }
        for e in &u.errors {
            out.push_str(&format!(
                "  error: {}: {}\n",
                term(&e.source),
                term(&e.message)
            ));
        }
        if !u.warnings.is_empty() {
            out.push_str(&format!(
                "  {} warning(s) while reading calendars (see --format json)\n",
                u.warnings.len()
            ));
        }
    }
    if !plan.problems.is_empty() {
        out.push_str("\nProblems:\n");
        for p in &plan.problems {
            out.push_str(&format!("  {}: {}\n", term(&p.source), term(&p.message)));
        }
    }
    out
}
