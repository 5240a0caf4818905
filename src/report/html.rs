//! The HTML report: one self-contained offline page.
//!
//! Layout: a header (window, counts, legend, top-level problems), a sticky
//! time axis in UTC, then one row per user: who they are, and an inline SVG
//! timeline spanning the whole window with hour ticks in the user's local
//! time, statuses as bars coloured by rule and skipped occurrences as thin
//! hatched bars in a second lane. Every bar has a tooltip; the details sit in
//! a collapsed `<details>` table per user. Positions are percentages of the
//! window, so the page reflows without script; a few lines of inline script
//! only add a filter box. Everything taken from the plan is escaped, and
//! private meetings show "(private)", never their summary.

use std::collections::BTreeSet;
use std::fmt::{self, Display, Write as _};

use chrono::{DateTime, Datelike, Timelike, Utc};

use super::{local_span, shown_summary};
use crate::calendar::Zone;
use crate::plan::{
    OccurrenceDecision, OccurrenceReport, Plan, SourceProblem, UserPlan, local, utc_secs,
};

/// Escapes text for HTML element content and quoted attribute values;
/// control characters, bidi overrides and line breaks become the visible
/// escapes of [`crate::text::for_terminal`] (`\x00`, `\n`, `\u{202e}`).
pub fn escape(s: &str) -> String {
    Esc(s).to_string()
}

/// Displays a string HTML-escaped, without an intermediate allocation.
struct Esc<'a>(&'a str);

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let mut last = 0;
        for (i, c) in s.char_indices() {
            let rep = match c {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&#39;",
                // Like the terminal (see `crate::text`): the page may be printed
                // to one, and a line break in a value would forge a tooltip line.
                c if crate::text::is_unsafe(c) => {
                    f.write_str(&s[last..i])?;
                    crate::text::write_escape(f, c)?;
                    last = i + c.len_utf8();
                    continue;
                }
                _ => continue,
            };
            f.write_str(&s[last..i])?;
            f.write_str(rep)?;
            last = i + c.len_utf8();
        }
        f.write_str(&s[last..])
    }
}

/// A percentage with at most two decimals, trailing zeros trimmed: "37.5%".
struct Pct(f64);

impl Display for Pct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = format!("{:.2}", self.0);
        let s = s.trim_end_matches('0').trim_end_matches('.');
        let s = if s == "-0" { "0" } else { s };
        write!(f, "{s}%")
    }
}

/// A stable hue (0–359) for a rule name: FNV-1a, so colours never change
/// between runs or machines.
fn hue(rule: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in rule.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % 360
}

/// The window mapped to 0–100 % of the timeline's width.
#[derive(Clone, Copy)]
struct Axis {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    secs: f64,
}

impl Axis {
    fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Axis {
        let secs = (to - from).num_seconds().max(1) as f64;
        Axis { from, to, secs }
    }

    fn pos(&self, t: DateTime<Utc>) -> f64 {
        ((t - self.from).num_seconds() as f64 / self.secs * 100.0).clamp(0.0, 100.0)
    }

    /// `[start, end)` clipped to the window as (x, width) percentages, or
    /// None when it lies outside. Very short spans keep a visible width.
    fn span(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Option<(f64, f64)> {
        let outside = start > self.to
            || end < self.from
            || (start < end && (end <= self.from || start >= self.to));
        if outside {
            return None;
        }
        let x = self.pos(start).min(99.85);
        Some((x, (self.pos(end) - x).max(0.15)))
    }

    /// Hours between labelled ticks: at most 26 hour labels, or 16 day
    /// labels (which are wider) across the window.
    fn step_hours(&self) -> i64 {
        let hours = self.secs / 3600.0;
        for step in [1, 2, 3, 4, 6, 12] {
            if hours / step as f64 <= 26.0 {
                return step;
            }
        }
        for days in [1, 2, 7, 14] {
            if hours / (24 * days) as f64 <= 16.0 {
                return 24 * days;
            }
        }
        ((hours / 16.0 / 24.0).ceil() as i64).max(1) * 24
    }
}

/// A tick on a time axis.
struct Tick {
    x: f64,
    label: String,
    /// Local midnight.
    major: bool,
    /// CSS class of the label: "d" (a day), "n" (right after a day label,
    /// hidden on narrow screens), "o" (every other hour, hidden on very
    /// narrow screens) or "".
    class: &'static str,
}

/// Ticks at local hour boundaries in `zone` (every `step` hours, aligned to
/// local midnight), labelled with the local hour, or the day at midnight.
fn ticks(axis: &Axis, zone: &Zone) -> Vec<Tick> {
    let step = axis.step_hours();
    let mut out = Vec::new();
    let to = axis.to.timestamp();
    let first = axis.from.timestamp();
    let off = i64::from(zone.offset_at(axis.from.naive_utc()));
    let r = (first + off).rem_euclid(3600);
    let mut ts = if r == 0 { first } else { first + 3600 - r };
    let mut guard = 0;
    while ts < to && guard < 50_000 {
        guard += 1;
        let Some(t) = DateTime::<Utc>::from_timestamp(ts, 0) else {
            break;
        };
        let l = local(zone, t);
        let midnight = l.hour() == 0 && l.minute() == 0;
        let keep = if step < 24 {
            i64::from(l.hour()) % step == 0 && l.minute() == 0
        } else {
            midnight && i64::from(l.date_naive().num_days_from_ce()) % (step / 24) == 0
        };
        if keep {
            let label = if step >= 24 {
                l.format("%d %b").to_string()
            } else if midnight {
                l.format("%a %d").to_string()
            } else {
                l.format("%H").to_string()
            };
            out.push(Tick {
                x: axis.pos(t),
                label,
                major: midnight,
                class: if midnight {
                    "d"
                } else if out.last().is_some_and(|p: &Tick| p.major) {
                    "n"
                } else if (i64::from(l.hour()) / step) % 2 == 1 {
                    "o"
                } else {
                    ""
                },
            });
        }
        // The next local hour boundary (offsets need not be whole hours).
        let off = i64::from(zone.offset_at(t.naive_utc()));
        let mut next = ts + 3600 - (ts + off).rem_euclid(3600);
        if step >= 24 && midnight {
            // Skip most of the day; DST moves midnight by at most an hour.
            next = ts + 22 * 3600;
            let off = i64::from(
                zone.offset_at(
                    DateTime::<Utc>::from_timestamp(next, 0)
                        .unwrap_or(t)
                        .naive_utc(),
                ),
            );
            let r = (next + off).rem_euclid(3600);
            if r != 0 {
                next += 3600 - r;
            }
        }
        ts = next.max(ts + 60);
    }
    out
}

/// Height of a user's timeline, in CSS pixels.
const H: u32 = 56;
/// Status lane.
const STATUS_Y: u32 = 16;
const STATUS_H: u32 = 22;
/// Skipped lane.
const SKIP_Y: u32 = 43;
const SKIP_H: u32 = 8;

/// Writes grid lines and tick labels. The lines are one path each (minor,
/// midnight) in a viewport stretched over the window, so a day of hourly
/// ticks costs a few hundred bytes.
fn write_ticks(out: &mut String, ticks: &[Tick]) {
    out.push_str("<svg class=\"g\" viewBox=\"0 0 10000 1\" preserveAspectRatio=\"none\">");
    for major in [false, true] {
        let mut d = String::new();
        for t in ticks.iter().filter(|t| t.major == major) {
            let _ = write!(d, "M{:.0} 0v1", t.x * 100.0);
        }
        if !d.is_empty() {
            let _ = write!(
                out,
                "<path{} d=\"{d}\"/>",
                if major { " class=\"m\"" } else { "" }
            );
        }
    }
    out.push_str("</svg><g class=\"tl\" transform=\"translate(3 11)\">");
    // Labels sit right of their tick; drop those that would be cut off.
    for t in ticks
        .iter()
        .filter(|t| t.x < if t.major { 96.5 } else { 98.5 })
    {
        let _ = write!(
            out,
            "<text x=\"{}\"{}{}{}>{}</text>",
            Pct(t.x),
            if t.class.is_empty() { "" } else { " class=\"" },
            t.class,
            if t.class.is_empty() { "" } else { "\"" },
            Esc(&t.label)
        );
    }
    out.push_str("</g>");
}

const CSS: &str = r#"
:root{--fg:#1d2125;--muted:#626b75;--line:#e3e6ea;--bg:#f6f7f9;--err:#b3261e;--who:270px}
*{box-sizing:border-box}
body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","DejaVu Sans",sans-serif;color:var(--fg);background:var(--bg)}
header.top{padding:16px 20px 8px;background:#fff;border-bottom:1px solid var(--line)}
h1{margin:0 0 2px;font-size:20px}
.sub{color:var(--muted);margin:0 0 10px}
.stats{display:flex;flex-wrap:wrap;gap:8px;margin:0 0 10px;padding:0;list-style:none}
.stats li{background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:3px 10px}
.stats b{font-size:16px;margin-right:4px}
.stats .bad{border-color:#f1b5b0;background:#fdecea;color:var(--err)}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;margin:0;padding:0;list-style:none;color:var(--muted);font-size:12.5px}
.legend li{display:flex;align-items:center;gap:5px}
.sw{display:inline-block;width:22px;height:12px;border-radius:3px;background:hsl(var(--h) 70% 84%);border:1px solid hsl(var(--h) 50% 40%);vertical-align:-1px}
.sw.sk{height:7px;background:repeating-linear-gradient(45deg,#9aa0a6 0 2px,#e8eaed 2px 5px);border-color:#8a9097}
.sw.mid{width:2px;height:14px;border:0;background:#6b7580;border-radius:0}
.problems{margin:12px 20px 0;padding:8px 14px;border:1px solid #f1b5b0;background:#fdecea;color:var(--err);border-radius:6px}
.problems h2{font-size:14px;margin:0 0 4px}
.problems ul,.err{margin:0;padding-left:18px}
.axis{position:sticky;top:0;z-index:2;display:grid;grid-template-columns:var(--who) 1fr;align-items:end;background:#fff;border-bottom:1px solid var(--line);padding:6px 31px 0 33px;box-shadow:0 1px 3px rgba(0,0,0,.06)}
.axis .lab{font-size:12px;color:var(--muted);padding:0 12px 6px 0}
.axis input{width:100%;font:inherit;font-size:13px;padding:3px 8px;margin-bottom:4px;border:1px solid #c4c9cf;border-radius:5px}
main{padding:6px 20px 20px}
.u{display:grid;grid-template-columns:var(--who) 1fr;column-gap:0;background:#fff;border:1px solid var(--line);border-radius:8px;margin:6px 0;padding:6px 10px 4px 12px}
.u[hidden]{display:none}
.u.e{box-shadow:inset 4px 0 0 var(--err);border-color:#f1b5b0}
.who{grid-row:span 3;padding-right:12px;min-width:0;overflow:hidden}
.who b{font-size:15px}
.who .id{display:block;font:11px/1.3 ui-monospace,"SFMono-Regular",Menlo,Consolas,"DejaVu Sans Mono",monospace;color:var(--muted);white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.who .tz{color:var(--muted);font-size:12.5px}
.who .ne{color:var(--err);font-weight:600;font-size:12.5px}
.who .nw{color:var(--muted);font-size:12.5px}
svg.timeline,svg.ut{display:block;width:100%;overflow:hidden}
svg.timeline{background:linear-gradient(#fff 0 14px,#fafbfc 14px)}
.g path{stroke:#e6e8eb;stroke-width:1;vector-effect:non-scaling-stroke;fill:none}
.g path.m{stroke:#8d959e}
.tl text{font-size:10.5px;fill:#7b838c}
.tl text.d{fill:#2f3439;font-weight:600}
.status rect{fill:hsl(var(--h) 70% 84%);stroke:hsl(var(--h) 50% 40%);stroke-width:1}
.bt{font-size:11.5px;line-height:22px;padding:0 6px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;color:#1d2125;pointer-events:none}
.skipped{fill:url(#hatch);stroke:#8a9097;stroke-width:.6}
.none{font-size:11.5px;fill:#9aa0a6;font-style:italic}
.err{grid-column:2;color:var(--err);background:#fdecea;border-radius:5px;padding:4px 8px 4px 24px;margin:4px 0 0;font-size:13px}
.err code{font-size:12px}
details{grid-column:2;font-size:12.5px;margin-top:2px}
summary{cursor:pointer;color:var(--muted);width:max-content}
summary .w{color:#8a9097}
table{border-collapse:collapse;margin:4px 0 6px;font-size:12.5px}
th,td{text-align:left;padding:2px 12px 2px 0;vertical-align:top;border-bottom:1px solid #eef0f2}
th{color:var(--muted);font-weight:600}
td.t{white-space:nowrap;font-variant-numeric:tabular-nums}
tr.sk td{color:var(--muted)}
tr.sk td:nth-child(2){font-style:italic}
.warn{color:var(--muted);margin:2px 0 6px;padding-left:18px}
footer{color:var(--muted);font-size:12px;padding:0 20px 20px}
@media (max-width:1250px){.tl .n{display:none}}
@media (max-width:900px){:root{--who:190px}.tl .o{display:none}}
"#;

const SCRIPT: &str = r#"
(function(){var f=document.getElementById('filter'),n=document.getElementById('shown');if(!f)return;f.hidden=false;
var rows=[].slice.call(document.querySelectorAll('section.u'));
f.addEventListener('input',function(){var q=f.value.trim().toLowerCase(),c=0;
rows.forEach(function(r){var k=(r.getAttribute('data-user')+' '+r.querySelector('.who b').textContent).toLowerCase();
var m=!q||k.indexOf(q)>=0||(q==='!error'&&r.classList.contains('e'));r.hidden=!m;if(m)c++;});
n.textContent=q?c+' of '+rows.length+' users shown · ':'';});})();
"#;

/// Renders the page.
pub fn render(plan: &Plan) -> String {
    let axis = Axis::new(plan.window.from, plan.window.to);
    // Rough size: a few KB per user.
    let mut out = String::with_capacity(8_000 + plan.users.len() * 4_000);
    out.push_str(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>calstatus plan</title>\n<style>",
    );
    out.push_str(CSS);
    out.push_str("</style>\n</head>\n<body>\n");
    // Shared SVG definitions (a zero-size, not display:none, SVG so the
    // pattern stays usable from every timeline).
    out.push_str(
        "<svg width=\"0\" height=\"0\" style=\"position:absolute\" aria-hidden=\"true\"><defs>\
         <pattern id=\"hatch\" width=\"5\" height=\"5\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
         <rect width=\"5\" height=\"5\" fill=\"#e8eaed\"/><rect width=\"2\" height=\"5\" fill=\"#9aa0a6\"/>\
         </pattern></defs></svg>\n",
    );
    header(&mut out, plan);
    problems(&mut out, plan);
    // Sticky UTC axis, aligned with the timelines.
    out.push_str(
        "<div class=\"axis\"><div class=\"lab\">\
         <input id=\"filter\" type=\"search\" placeholder=\"Filter by name or id (!error)\" \
         aria-label=\"Filter users\" hidden><span id=\"shown\"></span> Time axis: UTC</div>",
    );
    let _ = write!(
        out,
        "<svg class=\"ut\" height=\"18\" aria-label=\"UTC time axis\">"
    );
    write_ticks(&mut out, &ticks(&axis, &Zone::Utc));
    out.push_str("</svg></div>\n<main>\n");
    for u in &plan.users {
        user_row(&mut out, u, &axis);
    }
    if plan.users.is_empty() {
        out.push_str("<p>No users were planned.</p>\n");
    }
    out.push_str("</main>\n<footer>Generated by calstatus. Times in tables and tooltips are each user's local time.</footer>\n<script>");
    out.push_str(SCRIPT);
    out.push_str("</script>\n</body>\n</html>\n");
    out
}

/// The page header: the window, the counts, and the legend of rules.
fn header(out: &mut String, plan: &Plan) {
    let statuses: usize = plan.users.iter().map(|u| u.statuses.len()).sum();
    let skipped: usize = plan
        .users
        .iter()
        .map(|u| {
            u.occurrences
                .iter()
                .filter(|o| o.decision == OccurrenceDecision::Skipped)
                .count()
        })
        .sum();
    let with_errors = plan.users.iter().filter(|u| !u.errors.is_empty()).count();
    let rules: BTreeSet<&str> = plan
        .users
        .iter()
        .flat_map(|u| u.statuses.iter().map(|s| s.rule.as_str()))
        .collect();
    let hours = format!(
        "{:.2}",
        (plan.window.to - plan.window.from).num_minutes() as f64 / 60.0
    );
    let hours = hours.trim_end_matches('0').trim_end_matches('.');

    // Header.
    let _ = write!(
        out,
        "<header class=\"top\">\n<h1>calstatus plan</h1>\n\
         <p class=\"sub\">Dry run — what calstatus would publish. Nothing is sent. \
         Window <b>{}</b> → <b>{}</b> (UTC, {} h).</p>\n<ul class=\"stats\">\
         <li><b>{}</b>users</li><li><b>{}</b>statuses</li>\
         <li><b>{}</b>skipped occurrences</li><li{}><b>{}</b>users with errors</li>",
        Esc(&utc_secs::fmt(&plan.window.from)),
        Esc(&utc_secs::fmt(&plan.window.to)),
        hours,
        plan.users.len(),
        statuses,
        skipped,
        if with_errors > 0 {
            " class=\"bad\""
        } else {
            ""
        },
        with_errors,
    );
    if !plan.problems.is_empty() {
        let _ = write!(
            out,
            "<li class=\"bad\"><b>{}</b>user files not loaded</li>",
            plan.problems.len()
        );
    }
    out.push_str("</ul>\n<ul class=\"legend\">");
    for r in &rules {
        let _ = write!(
            out,
            "<li><span class=\"sw\" style=\"--h:{}\"></span>{}</li>",
            hue(r),
            Esc(r)
        );
    }
    out.push_str(
        "<li><span class=\"sw sk\"></span>skipped occurrence (hover for the reason)</li>\
         <li><span class=\"sw mid\"></span>local midnight</li>\
         <li>Tick labels: each user's local hours; top axis: UTC. Hover a bar for details.</li>\
         </ul>\n</header>\n",
    );
}

/// The user files that were not loaded, when there are any.
fn problems(out: &mut String, plan: &Plan) {
    if !plan.problems.is_empty() {
        out.push_str(
            "<section class=\"problems\"><h2>Problems (these users were not planned)</h2><ul>",
        );
        problem_items(out, &plan.problems);
        out.push_str("</ul></section>\n");
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// One user's row: who, timeline, errors, details.
fn user_row(out: &mut String, u: &UserPlan, axis: &Axis) {
    let skipped: Vec<&OccurrenceReport> = u
        .occurrences
        .iter()
        .filter(|o| o.decision == OccurrenceDecision::Skipped)
        .collect();
    user_header(out, u);
    user_timeline(out, u, &skipped, axis);
    problem_list(out, "err", &u.errors);
    user_details(out, u, &skipped);
    out.push_str("</section>\n");
}

/// The person's name, id, zone and counts of problems.
fn user_header(out: &mut String, u: &UserPlan) {
    let _ = write!(
        out,
        "<section class=\"u{}\" data-user=\"{}\">\n<div class=\"who\"><b>{}</b>\
         <span class=\"id\">{}</span><span class=\"tz\">{}</span>",
        if u.errors.is_empty() { "" } else { " e" },
        Esc(&u.user),
        Esc(if u.label.is_empty() {
            &u.user
        } else {
            &u.label
        }),
        Esc(&u.user),
        Esc(&u.timezone),
    );
    if !u.errors.is_empty() {
        let _ = write!(
            out,
            " · <span class=\"ne\">{}</span>",
            plural(u.errors.len(), "error", "errors")
        );
    }
    if !u.warnings.is_empty() {
        let _ = write!(
            out,
            " · <span class=\"nw\">{}</span>",
            plural(u.warnings.len(), "warning", "warnings")
        );
    }
    out.push_str("</div>\n");
}

/// Why an occurrence was skipped, with its rule when that says more.
fn skip_reason(o: &OccurrenceReport, default: &str) -> String {
    let reason = o.reason.as_deref().unwrap_or(default);
    match o.rule.as_deref() {
        Some(r) if r != reason => format!("{} (rule {})", Esc(reason), Esc(r)),
        _ => Esc(reason).to_string(),
    }
}

/// The SVG timeline: statuses as bars, skipped meetings as thin marks.
fn user_timeline(out: &mut String, u: &UserPlan, skipped: &[&OccurrenceReport], axis: &Axis) {
    let _ = write!(
        out,
        "<svg class=\"timeline\" height=\"{H}\" role=\"img\" aria-label=\"timeline of {}\">",
        Esc(&u.label)
    );
    write_ticks(out, &ticks(axis, &u.zone));
    for s in &u.statuses {
        let Some((x, w)) = axis.span(s.start, s.end) else {
            continue;
        };
        let _ = write!(
            out,
            "<g class=\"status\" style=\"--h:{}\"><title>{}\n{}\nrule: {}</title>\
             <rect x=\"{}\" y=\"{STATUS_Y}\" width=\"{}\" height=\"{STATUS_H}\" rx=\"3\"/>",
            hue(&s.rule),
            Esc(&local_span(&u.zone, s.start, s.end)),
            Esc(&s.message),
            Esc(&s.rule),
            Pct(x),
            Pct(w),
        );
        // The message inside the bar when there is room: an HTML box, so
        // the browser clips it with an ellipsis at whatever width it has.
        if w >= 6.5 {
            let _ = write!(
                out,
                "<foreignObject x=\"{}\" y=\"{STATUS_Y}\" width=\"{}\" height=\"{STATUS_H}\">\
                 <div class=\"bt\">{}</div></foreignObject>",
                Pct(x),
                Pct(w),
                Esc(&s.message)
            );
        }
        out.push_str("</g>");
    }
    for o in skipped {
        let Some((x, w)) = axis.span(o.start, o.end) else {
            continue;
        };
        let _ = write!(
            out,
            "<rect class=\"skipped\" x=\"{}\" y=\"{SKIP_Y}\" width=\"{}\" height=\"{SKIP_H}\">\
             <title>skipped: {}\n{}\n{}</title></rect>",
            Pct(x),
            Pct(w),
            skip_reason(o, "skipped"),
            Esc(&local_span(&u.zone, o.start, o.end)),
            Esc(&shown_summary(o.summary.as_deref(), o.private)),
        );
    }
    if u.statuses.is_empty() {
        let _ = write!(
            out,
            "<text class=\"none\" x=\"8\" y=\"{}\">no status to publish in this window</text>",
            STATUS_Y + 15
        );
    }
    out.push_str("</svg>\n");
}

/// A list of source problems (errors or warnings).
fn problem_list(out: &mut String, class: &str, items: &[SourceProblem]) {
    if items.is_empty() {
        return;
    }
    let _ = write!(out, "<ul class=\"{class}\">");
    problem_items(out, items);
    out.push_str("</ul>\n");
}

/// Source problems as list items: the source, then what is wrong.
fn problem_items(out: &mut String, items: &[SourceProblem]) {
    for p in items {
        let _ = write!(
            out,
            "<li><code>{}</code>: {}</li>",
            Esc(&p.source),
            Esc(&p.message)
        );
    }
}

/// The collapsible table: statuses and skipped occurrences in time order,
/// then the warnings.
fn user_details(out: &mut String, u: &UserPlan, skipped: &[&OccurrenceReport]) {
    let _ = write!(
        out,
        "<details><summary>{}, {} skipped{}</summary>",
        plural(u.statuses.len(), "status", "statuses"),
        skipped.len(),
        if u.warnings.is_empty() {
            String::new()
        } else {
            format!(
                " <span class=\"w\">· {}</span>",
                plural(u.warnings.len(), "warning", "warnings")
            )
        }
    );
    if !u.statuses.is_empty() || !skipped.is_empty() {
        out.push_str(
            "<table><thead><tr><th>when (local)</th><th>message / meeting</th>\
             <th>rule / reason</th></tr></thead><tbody>",
        );
        let (mut i, mut j) = (0, 0);
        while i < u.statuses.len() || j < skipped.len() {
            let take_status = match (u.statuses.get(i), skipped.get(j)) {
                (Some(s), Some(o)) => s.start <= o.start,
                (Some(_), None) => true,
                _ => false,
            };
            if take_status {
                let s = &u.statuses[i];
                i += 1;
                let _ = write!(
                    out,
                    "<tr><td class=\"t\">{}</td><td><span class=\"sw\" style=\"--h:{}\"></span> {}</td><td>{}</td></tr>",
                    Esc(&local_span(&u.zone, s.start, s.end)),
                    hue(&s.rule),
                    Esc(&s.message),
                    Esc(&s.rule)
                );
            } else {
                let o = skipped[j];
                j += 1;
                let _ = write!(
                    out,
                    "<tr class=\"sk\"><td class=\"t\">{}</td><td>{}</td><td>skipped: {}</td></tr>",
                    Esc(&local_span(&u.zone, o.start, o.end)),
                    Esc(&shown_summary(o.summary.as_deref(), o.private)),
                    skip_reason(o, ""),
                );
            }
        }
        out.push_str("</tbody></table>");
    }
    problem_list(out, "warn", &u.warnings);
    out.push_str("</details>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">Tom & 'Jerry'</a>"),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("plain ü"), "plain ü");
    }

    #[test]
    fn escapes_control_characters_like_the_terminal() {
        // NUL, ESC/OSC, C1, bidi overrides and line breaks become visible
        // escapes: an HTML parser would drop or replace them, a line break
        // would forge a tooltip line, and the page may be printed to a terminal.
        assert_eq!(
            escape("a\0b\x1b]0;t\x07<c>\u{9b}\u{202e}d\te\nrule: x\r"),
            r"a\x00b\x1b]0;t\x07&lt;c&gt;\u{9b}\u{202e}d\te\nrule: x\r"
        );
    }

    #[test]
    fn percentages_are_compact() {
        assert_eq!(Pct(37.5).to_string(), "37.5%");
        assert_eq!(Pct(0.0).to_string(), "0%");
        assert_eq!(Pct(100.0).to_string(), "100%");
        assert_eq!(Pct(4.16666).to_string(), "4.17%");
    }
}
