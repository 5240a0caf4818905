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
mod json;

use comfy_table::{Cell, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};

use crate::plan::{Decision, Plan, SourceProblem, UserPlan, WindowReport, local, utc_secs};
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

/// Renders a plan: for every format but HTML, its [`head`], each user's
/// [`separator`] and [`user`] part, and its [`tail`].
pub fn render(plan: &Plan, format: Format) -> String {
    if !format.streams() {
        return html::render(plan);
    }
    let mut out = head(format, &plan.window);
    for (i, u) in plan.users.iter().enumerate() {
        out.push_str(separator(format, i));
        out.push_str(&user(format, u));
    }
    out.push_str(&tail(format, &plan.problems, plan.users.len()));
    out
}

impl Format {
    /// Whether the report can be written a user at a time, as users are
    /// planned ([`head`], [`user`], [`tail`]). The HTML page opens with
    /// totals over all users, so it is rendered from the whole plan.
    pub fn streams(self) -> bool {
        self != Format::Html
    }
}

/// The start of a report, before the first user (HTML: empty).
pub fn head(format: Format, window: &WindowReport) -> String {
    match format {
        Format::Table => table_head(window),
        Format::Json => json::head(window),
        Format::Csv => csv_head(),
        Format::Html => String::new(),
    }
}

/// What stands between user `i - 1` and user `i` (before the first: `i` = 0).
pub fn separator(format: Format, i: usize) -> &'static str {
    match format {
        Format::Json => json::separator(i),
        Format::Table | Format::Csv | Format::Html => "",
    }
}

/// One user's part of a report. Pure and independent of the other users,
/// so users can be rendered in parallel (HTML: empty).
pub fn user(format: Format, u: &UserPlan) -> String {
    match format {
        Format::Table => table_user(u),
        Format::Json => json::user(u),
        Format::Csv => csv_user(u),
        Format::Html => String::new(),
    }
}

/// The end of a report, after `users` users (HTML: empty).
pub fn tail(format: Format, problems: &[SourceProblem], users: usize) -> String {
    match format {
        Format::Table => table_tail(problems),
        Format::Json => json::tail(problems, users),
        Format::Csv | Format::Html => String::new(),
    }
}

/// The JSON contract (C1 and bidi controls `\u`-escaped, see
/// [`crate::text::for_json`]).
pub fn json(plan: &Plan) -> String {
    render(plan, Format::Json)
}

/// One row per status. Every cell is escaped like the table (so a row is
/// one line, safe to print) and a cell that starts with `=`, `+`, `-`, `@`,
/// a tab or a carriage return gets a leading `'`, in every column alike.
pub fn csv(plan: &Plan) -> String {
    render(plan, Format::Csv)
}

fn csv_records(records: impl FnOnce(&mut csv::Writer<Vec<u8>>)) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    records(&mut w);
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

fn csv_head() -> String {
    csv_records(|w| {
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
    })
}

fn csv_user(u: &UserPlan) -> String {
    fn cell(s: &str) -> String {
        csv_cell(&term(s)).into_owned()
    }
    csv_records(|w| {
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
    })
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
    render(plan, Format::Table)
}

fn table_head(window: &WindowReport) -> String {
    format!(
        "Dry run: what calstatus would publish from {} to {} (UTC). Nothing is sent.\n",
        utc_secs::fmt(&window.from),
        utc_secs::fmt(&window.to)
    )
}

fn table_user(u: &UserPlan) -> String {
    let mut out = String::new();
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
    out
}

fn table_tail(problems: &[SourceProblem]) -> String {
    let mut out = String::new();
    if !problems.is_empty() {
        out.push_str("\nProblems:\n");
        for p in problems {
            out.push_str(&format!("  {}: {}\n", term(&p.source), term(&p.message)));
        }
    }
    out
}
