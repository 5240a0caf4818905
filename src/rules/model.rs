//! The rule schema (`rules/*.toml`, `[[rule]]` in user files) and its
//! checked form. Loading collects every problem of a file at once, each with
//! file, line and key. Pure: takes text, returns rules or problems.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{NaiveTime, Weekday};
use regex::Regex;
use serde::Deserialize;

use super::template::Template;
use crate::calendar::ics::Busy;

pub use crate::domain::Problem;

/// Text that may be given in several languages.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum RawLocalized {
    /// One text for everyone.
    One(String),
    /// Language code → text.
    Many(BTreeMap<String, String>),
}

/// A string or a list of strings.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A rule as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Name, reported in plans.
    pub name: String,
    /// Higher wins where statuses overlap (default 0).
    #[serde(default)]
    pub priority: i32,
    /// Case-insensitive substring(s) of SUMMARY (any).
    pub summary: Option<OneOrMany>,
    /// Regex on SUMMARY.
    pub summary_regex: Option<String>,
    /// Substring(s) of LOCATION.
    pub location: Option<OneOrMany>,
    /// Regex on LOCATION.
    pub location_regex: Option<String>,
    /// Substring(s) of DESCRIPTION.
    pub description: Option<OneOrMany>,
    /// Regex on DESCRIPTION.
    pub description_regex: Option<String>,
    /// Substring(s) of any CATEGORY.
    pub categories: Option<OneOrMany>,
    /// Regex on any CATEGORY.
    pub categories_regex: Option<String>,
    /// Busy statuses (any).
    pub busy: Option<Vec<String>>,
    /// The user's replies (any): accepted, declined, tentative, needs-action, none.
    pub response: Option<Vec<String>>,
    /// `STATUS:CANCELLED`.
    pub cancelled: Option<bool>,
    /// All-day or not.
    pub all_day: Option<bool>,
    /// Private/confidential or not.
    pub private: Option<bool>,
    /// Shortest duration, e.g. "15m".
    pub min_duration: Option<String>,
    /// Longest duration, e.g. "8h".
    pub max_duration: Option<String>,
    /// Start weekday in the user's zone.
    pub weekdays: Option<Vec<String>>,
    /// Start time of day at or after, "HH:MM", user's zone.
    pub start_after: Option<String>,
    /// Start time of day before, "HH:MM", user's zone.
    pub start_before: Option<String>,
    /// Organizer email domains (any).
    pub organizer_domain: Option<Vec<String>>,
    /// Attendee email domains (any attendee).
    pub attendee_domain: Option<Vec<String>>,
    /// Someone from outside the internal domains takes part.
    pub external: Option<bool>,
    /// Substring of the calendar's source or name.
    pub calendar: Option<String>,
    /// The message to show (one text, or one per language).
    pub message: Option<RawLocalized>,
    /// Set nothing, with this reason.
    pub skip: Option<String>,
}

/// Text matcher: substrings (case-insensitive) or a regex.
#[derive(Clone, Debug)]
pub enum TextMatch {
    /// Any of these lower-cased substrings, each with a searcher built
    /// once (`str::contains` set one up for every value it looked in).
    Contains(Vec<memchr::memmem::Finder<'static>>),
    /// A regex.
    Regex(Regex),
}

impl TextMatch {
    /// Matches any of `subs` (lower-cased here), in any case.
    pub fn contains(subs: impl IntoIterator<Item = String>) -> TextMatch {
        TextMatch::Contains(
            subs.into_iter()
                .map(|s| memchr::memmem::Finder::new(&s.to_lowercase()).into_owned())
                .collect(),
        )
    }

    /// Tests a value (absent values never match).
    pub fn matches(&self, v: Option<&str>) -> bool {
        let Some(v) = v else { return false };
        match self {
            TextMatch::Contains(subs) => {
                // Most values are short ASCII: lower-cased on the stack
                // (the same text `to_lowercase` gives for ASCII).
                let mut buf = [0u8; 128];
                if v.len() <= buf.len() && v.is_ascii() {
                    let lower = &mut buf[..v.len()];
                    lower.copy_from_slice(v.as_bytes());
                    lower.make_ascii_lowercase();
                    return subs.iter().any(|s| s.find(lower).is_some());
                }
                let lower = v.to_lowercase();
                subs.iter().any(|s| s.find(lower.as_bytes()).is_some())
            }
            TextMatch::Regex(r) => r.is_match(v),
        }
    }
}

/// The user's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response {
    /// ACCEPTED (or the user organises it).
    Accepted,
    /// DECLINED.
    Declined,
    /// TENTATIVE.
    Tentative,
    /// NEEDS-ACTION.
    NeedsAction,
    /// Not on the attendee list.
    None,
}

/// Checked conditions; all given ones must hold.
#[derive(Clone, Debug, Default)]
pub struct Conditions {
    /// On SUMMARY.
    pub summary: Option<TextMatch>,
    /// On LOCATION.
    pub location: Option<TextMatch>,
    /// On DESCRIPTION.
    pub description: Option<TextMatch>,
    /// On any category.
    pub categories: Option<TextMatch>,
    /// Busy statuses.
    pub busy: Option<Vec<Busy>>,
    /// Replies.
    pub response: Option<Vec<Response>>,
    /// Cancelled.
    pub cancelled: Option<bool>,
    /// All-day.
    pub all_day: Option<bool>,
    /// Private.
    pub private: Option<bool>,
    /// Duration bounds.
    pub min_duration: Option<chrono::Duration>,
    /// Duration bounds.
    pub max_duration: Option<chrono::Duration>,
    /// Weekdays.
    pub weekdays: Option<Vec<Weekday>>,
    /// Time-of-day bounds of the start.
    pub start_after: Option<NaiveTime>,
    /// Time-of-day bounds of the start.
    pub start_before: Option<NaiveTime>,
    /// Organizer domains.
    pub organizer_domain: Option<Vec<String>>,
    /// Attendee domains.
    pub attendee_domain: Option<Vec<String>>,
    /// External participants.
    pub external: Option<bool>,
    /// Calendar substring (lower-case).
    pub calendar: Option<String>,
}

/// Text per language; `None` key is the single text.
#[derive(Clone, Debug)]
pub struct Localized {
    /// (language, template); the first is the fallback.
    pub by_language: Vec<(String, Template)>,
}

impl Localized {
    /// The template for a language: exact, then base language, then English, then the first.
    pub fn for_language(&self, lang: &str) -> &Template {
        let base = lang.split(['-', '_']).next().unwrap_or(lang);
        self.by_language
            .iter()
            .find(|(l, _)| l.eq_ignore_ascii_case(lang))
            .or_else(|| {
                self.by_language
                    .iter()
                    .find(|(l, _)| l.eq_ignore_ascii_case(base))
            })
            .or_else(|| self.by_language.iter().find(|(l, _)| l == "en"))
            .or_else(|| self.by_language.first())
            .map(|(_, t)| t)
            .expect("a Localized always holds at least one template")
    }

    /// Checks the text shown for private meetings: like [`Localized::from_raw`],
    /// and none of its templates may show what the meeting is about
    /// (`{summary}`, `{location}`, `{organizer}`) — private means never shown.
    pub fn private_from_raw(raw: &RawLocalized) -> Result<Localized, Vec<String>> {
        let l = Localized::from_raw(raw)?;
        let errs: Vec<String> = l
            .by_language
            .iter()
            .filter(|(_, t)| t.reveals_details())
            .map(|(lang, _)| {
                let lang = if lang.is_empty() {
                    String::new()
                } else {
                    format!("[{lang}] ")
                };
                format!(
                    "{lang}a private-meeting message may not show {{summary}}, {{location}} or {{organizer}}: private meetings never reveal what they are about"
                )
            })
            .collect();
        if errs.is_empty() { Ok(l) } else { Err(errs) }
    }

    /// Checks a raw text into templates.
    pub fn from_raw(raw: &RawLocalized) -> Result<Localized, Vec<String>> {
        let items: Vec<(String, &str)> = match raw {
            RawLocalized::One(s) => vec![(String::new(), s.as_str())],
            RawLocalized::Many(m) => m.iter().map(|(k, v)| (k.clone(), v.as_str())).collect(),
        };
        if items.is_empty() {
            return Err(vec!["needs at least one language".into()]);
        }
        let mut out = Vec::new();
        let mut errs = Vec::new();
        for (lang, text) in items {
            match Template::parse(text) {
                Ok(t) => out.push((lang, t)),
                Err(e) if lang.is_empty() => errs.push(e),
                Err(e) => errs.push(format!("[{lang}] {e}")),
            }
        }
        if errs.is_empty() {
            Ok(Localized { by_language: out })
        } else {
            Err(errs)
        }
    }
}

/// What a matching rule does.
#[derive(Clone, Debug)]
pub enum Action {
    /// Publish this message.
    Message(Localized),
    /// Publish nothing, for this reason.
    Skip(String),
}

/// A checked rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Name.
    pub name: String,
    /// Priority where statuses overlap.
    pub priority: i32,
    /// Where it was written.
    pub file: PathBuf,
    /// Line of its `[[rule]]`.
    pub line: usize,
    /// When it applies.
    pub when: Conditions,
    /// What it does.
    pub action: Action,
}

/// Parses "HH:MM".
pub fn parse_hhmm(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s.trim(), "%H:%M").ok()
}

/// Parses "mon", "monday", "Mon".
pub fn parse_weekday(s: &str) -> Option<Weekday> {
    s.trim().parse::<Weekday>().ok()
}

/// 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// The line on which `key = …` appears within `span` of `text`.
pub fn key_line(text: &str, span: std::ops::Range<usize>, key: &str) -> Option<usize> {
    let start = span.start.min(text.len());
    let end = span.end.min(text.len());
    let mut offset = start;
    for line in text[start..end].split_inclusive('\n') {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix(key)
            && (rest.trim_start().starts_with('=') || rest.trim_start().starts_with('.'))
        {
            return Some(line_of(text, offset));
        }
        offset += line.len();
    }
    None
}

/// The unknown or bad key named in a serde message ("unknown field `x`").
pub fn key_in_message(msg: &str) -> Option<String> {
    let start = msg.find('`')?;
    let end = msg[start + 1..].find('`')?;
    Some(msg[start + 1..start + 1 + end].to_string())
}

/// Checks one raw rule. `span` locates it in `text` for line numbers;
/// `regex_bytes` bounds each compiled regex.
pub fn check_rule(
    raw: RawRule,
    file: &Path,
    text: &str,
    span: std::ops::Range<usize>,
    regex_bytes: usize,
) -> Result<Rule, Vec<Problem>> {
    let rule_line = line_of(text, span.start);
    let mut problems = Vec::new();
    let mut bad = |key: &str, message: String| {
        problems.push(Problem {
            file: file.to_path_buf(),
            line: key_line(text, span.clone(), key).or(Some(rule_line)),
            key: Some(format!("rule {:?}: {key}", raw.name)),
            message,
        });
    };
    let when = conditions(&raw, regex_bytes, &mut bad);
    let action = action(&raw, &mut bad);
    if raw.name.trim().is_empty() {
        bad("name", "a rule needs a non-empty name".into());
    }
    match action {
        Some(action) if problems.is_empty() => Ok(Rule {
            name: raw.name,
            priority: raw.priority,
            file: file.to_path_buf(),
            line: rule_line,
            when,
            action,
        }),
        _ => Err(problems),
    }
}

/// Where a problem in a rule is reported: (key, message).
type Bad<'a> = dyn FnMut(&str, String) + 'a;

/// The rule's conditions, every bad one reported.
fn conditions(raw: &RawRule, regex_bytes: usize, bad: &mut Bad<'_>) -> Conditions {
    let mut text = |key: &str, subs: &Option<OneOrMany>, re: &Option<String>| {
        text_match(key, subs, re, regex_bytes, bad)
    };
    let mut when = Conditions {
        summary: text("summary", &raw.summary, &raw.summary_regex),
        location: text("location", &raw.location, &raw.location_regex),
        description: text("description", &raw.description, &raw.description_regex),
        categories: text("categories", &raw.categories, &raw.categories_regex),
        cancelled: raw.cancelled,
        all_day: raw.all_day,
        private: raw.private,
        external: raw.external,
        calendar: raw.calendar.as_ref().map(|c| c.to_lowercase()),
        organizer_domain: domains(&raw.organizer_domain),
        attendee_domain: domains(&raw.attendee_domain),
        ..Default::default()
    };
    when.busy = checked_list(&raw.busy, "busy", bad, |b| {
        Busy::parse(b).ok_or_else(|| {
            format!("unknown busy status {b:?}; use busy, tentative, free, oof or workingelsewhere")
        })
    });
    when.response = checked_list(&raw.response, "response", bad, |r| {
        response(r).ok_or_else(|| {
            format!(
                "unknown response {r:?}; use accepted, declined, tentative, needs-action or none"
            )
        })
    });
    when.weekdays = checked_list(&raw.weekdays, "weekdays", bad, |d| {
        parse_weekday(d).ok_or_else(|| format!("unknown weekday {d:?}"))
    });
    for (key, val, slot) in [
        ("min_duration", &raw.min_duration, &mut when.min_duration),
        ("max_duration", &raw.max_duration, &mut when.max_duration),
    ] {
        if let Some(s) = val {
            match humantime::parse_duration(s) {
                Ok(d) => *slot = chrono::Duration::from_std(d).ok(),
                Err(e) => bad(key, format!("invalid duration {s:?}: {e}")),
            }
        }
    }
    for (key, val, slot) in [
        ("start_after", &raw.start_after, &mut when.start_after),
        ("start_before", &raw.start_before, &mut when.start_before),
    ] {
        if let Some(s) = val {
            match parse_hhmm(s) {
                Some(t) => *slot = Some(t),
                None => bad(key, format!("invalid time {s:?}; use HH:MM")),
            }
        }
    }
    when
}

/// A text condition: substrings (case-insensitive) or a size-bounded regex.
fn text_match(
    key: &str,
    subs: &Option<OneOrMany>,
    re: &Option<String>,
    regex_bytes: usize,
    bad: &mut Bad<'_>,
) -> Option<TextMatch> {
    match (subs, re) {
        (Some(_), Some(_)) => {
            bad(key, format!("give either {key} or {key}_regex, not both"));
            None
        }
        (Some(s), None) => Some(TextMatch::contains(s.clone().into_vec())),
        (None, Some(r)) => match regex::RegexBuilder::new(r)
            .size_limit(regex_bytes)
            .dfa_size_limit(regex_bytes)
            .build()
        {
            Ok(r) => Some(TextMatch::Regex(r)),
            Err(e) => {
                let msg = e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim()
                    .to_string();
                bad(
                    &format!("{key}_regex"),
                    format!("invalid regex {r:?}: {msg}"),
                );
                None
            }
        },
        (None, None) => None,
    }
}

/// A list of values each checked by `check`; bad ones are reported.
fn checked_list<T>(
    list: &Option<Vec<String>>,
    key: &str,
    bad: &mut Bad<'_>,
    check: impl Fn(&str) -> Result<T, String>,
) -> Option<Vec<T>> {
    list.as_ref().map(|list| {
        list.iter()
            .filter_map(|x| check(x).map_err(|m| bad(key, m)).ok())
            .collect()
    })
}

/// A reply as written in a rule.
fn response(r: &str) -> Option<Response> {
    Some(match r.to_ascii_lowercase().as_str() {
        "accepted" => Response::Accepted,
        "declined" => Response::Declined,
        "tentative" => Response::Tentative,
        "needs-action" | "needs_action" => Response::NeedsAction,
        "none" => Response::None,
        _ => return None,
    })
}

/// Email domains, lower-case, without a leading `@`.
fn domains(v: &Option<Vec<String>>) -> Option<Vec<String>> {
    v.as_ref().map(|v| {
        v.iter()
            .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
            .collect()
    })
}

/// What the rule does: exactly one of `message` and `skip`.
fn action(raw: &RawRule, bad: &mut Bad<'_>) -> Option<Action> {
    match (&raw.message, &raw.skip) {
        (Some(_), Some(_)) => {
            bad("skip", "give either message or skip, not both".into());
            None
        }
        (None, None) => {
            bad("message", "a rule needs a message or skip".into());
            None
        }
        (None, Some(reason)) => Some(Action::Skip(reason.clone())),
        (Some(m), None) => match Localized::from_raw(m) {
            Ok(l) => Some(Action::Message(l)),
            Err(errs) => {
                for e in errs {
                    bad("message", e);
                }
                None
            }
        },
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuleFile {
    #[serde(default)]
    rule: Vec<toml::Spanned<toml::Table>>,
}

/// Reads a rule file's text: its rules, or every problem in it.
pub fn parse_rule_file(file: &Path, text: &str) -> Result<Vec<Rule>, Vec<Problem>> {
    let raw: RawRuleFile = toml::from_str(text).map_err(|e| vec![toml_problem(file, text, &e)])?;
    rules_from_tables(file, text, raw.rule)
}

/// Largest compiled regex of an org rule.
pub const ORG_REGEX_BYTES: usize = 1 << 20;
/// Largest compiled regex (and its lazy DFA cache) of a personal rule: a
/// user file is hostile input, and a few hundred such rules must not cost
/// gigabytes.
pub const PERSONAL_REGEX_BYTES: usize = 64 * 1024;

/// Checks the `[[rule]]` tables of an org rule file.
pub fn rules_from_tables(
    file: &Path,
    text: &str,
    tables: Vec<toml::Spanned<toml::Table>>,
) -> Result<Vec<Rule>, Vec<Problem>> {
    checked_tables(file, text, tables, ORG_REGEX_BYTES)
}

/// Checks the `[[rule]]` tables of a user file (smaller regex budget).
pub fn personal_rules_from_tables(
    file: &Path,
    text: &str,
    tables: Vec<toml::Spanned<toml::Table>>,
) -> Result<Vec<Rule>, Vec<Problem>> {
    checked_tables(file, text, tables, PERSONAL_REGEX_BYTES)
}

fn checked_tables(
    file: &Path,
    text: &str,
    tables: Vec<toml::Spanned<toml::Table>>,
    regex_bytes: usize,
) -> Result<Vec<Rule>, Vec<Problem>> {
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for t in tables {
        // The span covers the `[[rule]]` header; the table runs to the next header.
        let span = t.span().start..table_end(text, t.span().end);
        let table = t.into_inner();
        let line = line_of(text, span.start);
        match RawRule::deserialize(toml::Value::Table(table)) {
            Ok(raw) => {
                if let Some(prev) = names.insert(raw.name.clone(), line) {
                    problems.push(Problem {
                        file: file.to_path_buf(),
                        line: Some(line),
                        key: Some("name".into()),
                        message: format!("rule name {:?} is already used on line {prev}", raw.name),
                    });
                }
                match check_rule(raw, file, text, span, regex_bytes) {
                    Ok(r) => rules.push(r),
                    Err(p) => problems.extend(p),
                }
            }
            Err(e) => {
                let msg = e.message().to_string();
                let key = key_in_message(&msg);
                let kline = key.as_deref().and_then(|k| key_line(text, span.clone(), k));
                problems.push(Problem {
                    file: file.to_path_buf(),
                    line: kline.or(Some(line)),
                    key,
                    message: msg,
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(rules)
    } else {
        Err(problems)
    }
}

/// Where a table that starts before `from` ends: the next `[` header or EOF.
fn table_end(text: &str, from: usize) -> usize {
    let mut offset = from.min(text.len());
    for line in text[offset..].split_inclusive('\n') {
        if line.trim_start().starts_with('[') && offset > from {
            return offset;
        }
        offset += line.len();
    }
    text.len()
}

/// A TOML/serde error as a problem with its line.
pub fn toml_problem(file: &Path, text: &str, e: &toml::de::Error) -> Problem {
    let msg = e.message().trim().to_string();
    Problem {
        file: file.to_path_buf(),
        line: e.span().map(|s| line_of(text, s.start)),
        key: key_in_message(&msg),
        message: msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substrings_match_whatever_the_case_and_length() {
        let m = TextMatch::contains(["Focus Time".into(), "férias".into()]);
        let long = format!("{} Focus TIME", "x".repeat(200));
        for (v, want) in [
            ("Focus Time (do not book)", true),
            ("FOCUS TIME", true),
            ("FÉRIAS de verão", true),
            ("Ferias", false),
            ("Focus", false),
            ("", false),
            (long.as_str(), true),
            (&long[..150], false),
        ] {
            assert_eq!(m.matches(Some(v)), want, "{v:?}");
            // The short-ASCII path gives what lower-casing the whole value gives.
            let lower = v.to_lowercase();
            assert_eq!(
                ["focus time", "férias"].iter().any(|s| lower.contains(s)),
                want,
                "{v:?}"
            );
        }
        assert!(!m.matches(None));
    }

    #[test]
    fn reports_every_problem_with_lines() {
        let text = r#"
[[rule]]
name = "a"
sumary = "x"
message = "hi"

[[rule]]
name = "b"
summary_regex = "(unclosed"
message = "until {ends}"

[[rule]]
name = "c"
busy = ["bussy"]
skip = "nope"
"#;
        let problems = parse_rule_file(Path::new("r.toml"), text).unwrap_err();
        let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 4, "{shown:#?}");
        assert!(
            shown[0].starts_with("r.toml:4: sumary: unknown field"),
            "{}",
            shown[0]
        );
        assert!(
            shown
                .iter()
                .any(|s| s.starts_with("r.toml:9:") && s.contains("invalid regex")),
            "{shown:#?}"
        );
        assert!(
            shown
                .iter()
                .any(|s| s.starts_with("r.toml:10:") && s.contains("unknown placeholder {ends}")),
            "{shown:#?}"
        );
        assert!(
            shown
                .iter()
                .any(|s| s.starts_with("r.toml:14:") && s.contains("bussy")),
            "{shown:#?}"
        );
    }

    #[test]
    fn syntax_error_has_a_line() {
        let problems =
            parse_rule_file(Path::new("r.toml"), "[[rule]]\nname = \"a\nskip=1\n").unwrap_err();
        assert_eq!(problems[0].line, Some(2), "{:?}", problems);
    }

    #[test]
    fn localized_fallbacks() {
        let mut m = BTreeMap::new();
        m.insert("en".to_string(), "In a meeting".to_string());
        m.insert("pt".to_string(), "Em reunião".to_string());
        let l = Localized::from_raw(&RawLocalized::Many(m)).unwrap();
        assert_eq!(l.for_language("pt-BR").source(), "Em reunião");
        assert_eq!(l.for_language("de").source(), "In a meeting");
    }
}
