//! The HTML report: one self-contained offline page.

use crate::plan::Plan;

/// Renders the page.
pub fn render(plan: &Plan) -> String {
    format!(
        "<!doctype html><meta charset=utf-8><title>calstatus plan</title><pre>{}</pre>",
        super::table(plan)
            .replace('&', "&amp;")
            .replace('<', "&lt;")
    )
}
