//! The organisation: configuration + org rule files + per-user opt-in files,
//! loaded and checked together. Every problem is collected (file, line,
//! key) rather than stopping at the first. Reads files; no network.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::Weekday;
use rayon::prelude::*;
use serde::Deserialize;

use crate::calendar::source::{Policy, RealPaths, Source, parse_source};
use crate::calendar::{Zone, parse_zone_name};
use crate::config::Config;
use crate::rules::Rule;
use crate::rules::model::{
    Localized, Problem, RawLocalized, key_line, parse_hhmm, parse_rule_file, parse_weekday,
    toml_problem,
};

pub use crate::domain::{User, WorkingHours};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkingHours {
    days: Option<Vec<String>>,
    start: String,
    end: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    user: String,
    email: Option<String>,
    calendars: Vec<String>,
    timezone: Option<String>,
    language: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
    private_message: Option<RawLocalized>,
    working_hours: Option<RawWorkingHours>,
    #[serde(default)]
    rule: Vec<toml::Spanned<toml::Table>>,
}

fn yes() -> bool {
    true
}

/// Everything loaded.
#[derive(Clone, Debug)]
pub struct Org {
    /// The configuration.
    pub config: Config,
    /// Org rules in order.
    pub rules: Vec<Rule>,
    /// Users whose files are valid (enabled or not).
    pub users: Vec<User>,
    /// Problems in org-level files (config, rules): planning must not go on.
    pub org_problems: Vec<Problem>,
    /// Problems in user files: those users are left out, others go on.
    pub user_problems: Vec<Problem>,
    /// The org's private-meeting text.
    pub private_message: Localized,
    /// Internal domains, lower-case.
    pub internal_domains: HashSet<String>,
    /// Merge gap.
    pub merge_gap: chrono::Duration,
    /// Source policy.
    pub policy: Policy,
}

impl Org {
    /// `[run]` checked against the rest: (problems, warnings). `refresh`
    /// has no minimum (tests use seconds), but below a minute published
    /// calendars are polled harder than their servers expect.
    pub fn run_checks(&self, users: &[&User]) -> (Vec<Problem>, Vec<Problem>) {
        let run = &self.config.file.run;
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        if run.refresh.is_zero() {
            problems.push(
                self.config
                    .problem("run.refresh", "must be longer than zero".into()),
            );
        }
        if run.horizon <= self.config.file.sync.lead_time {
            problems.push(self.config.problem(
                "run.horizon",
                "must be longer than sync.lead_time: statuses are planned this far ahead".into(),
            ));
        }
        let urls = users
            .iter()
            .any(|u| u.sources.iter().any(|s| matches!(s, Source::Url(_))));
        if urls && run.refresh < std::time::Duration::from_secs(60) {
            warnings.push(self.config.problem(
                "run.refresh",
                format!(
                    "{} is under a minute: calendar URLs would be polled that often (1m or more is kinder to their servers)",
                    humantime::format_duration(run.refresh)
                ),
            ));
        }
        (problems, warnings)
    }
}

/// A `*.toml` file of a rules or users directory.
struct TomlFile {
    path: PathBuf,
    /// A symbolic link (editors and Kubernetes ConfigMaps use them): where
    /// it leads is checked when the file is read ([`read_org_file`]).
    link: bool,
}

/// `*.toml` files of a directory, sorted by name, and the directory's
/// real path (symbolic links resolved) that they must stay inside.
fn toml_files(dir: &Path) -> Result<(PathBuf, Vec<TomlFile>), std::io::Error> {
    let mut files: Vec<TomlFile> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let t = e.file_type().ok()?;
            (t.is_file() || t.is_symlink()).then(|| TomlFile {
                path: e.path(),
                link: t.is_symlink(),
            })
        })
        .filter(|f| f.path.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let root = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    Ok((root, files))
}

/// Largest user file read (a person's opt-in needs a few hundred bytes).
pub const MAX_USER_FILE_BYTES: u64 = 64 * 1024;
/// Largest org rule file read.
pub const MAX_RULE_FILE_BYTES: u64 = 1024 * 1024;
/// Most calendars one user file may list.
pub const MAX_CALENDARS_PER_USER: usize = 16;
/// Most personal rules one user file may carry.
pub const MAX_PERSONAL_RULES: usize = 32;

/// Reads a rule or user file of `dir` (whose real path is `root`) under
/// the same policy as calendar files: it must resolve (symbolic links
/// followed) to a regular file inside `dir` itself, and be at most `limit`
/// bytes. A file that leads elsewhere is not opened, so nothing of it is
/// ever echoed back. A plain file listed in `dir` is inside it by
/// construction; only links are resolved (`plan --user` reads 10,000 of
/// these, so the path walk is not repeated for each).
fn read_org_file(root: &Path, dir: &Path, file: &TomlFile, limit: u64) -> Result<String, Problem> {
    let problem = |message: String| Problem {
        file: file.path.clone(),
        line: None,
        key: None,
        message,
    };
    let cannot = |e: std::io::Error| problem(format!("cannot read: {e}"));
    let real = if file.link {
        let real = std::fs::canonicalize(&file.path).map_err(cannot)?;
        if !real.starts_with(root) {
            return Err(problem(format!(
                "leads outside {} (a symbolic link?); not read",
                dir.display()
            )));
        }
        real
    } else {
        file.path.clone()
    };
    // Opened non-blocking (a FIFO would wait for a writer), then judged on
    // what was opened.
    let f = crate::calendar::source::open_nonblocking(&real).map_err(cannot)?;
    let meta = f.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(problem("not a regular file; not read".into()));
    }
    if meta.len() > limit {
        return Err(problem(format!("larger than {limit} bytes; not read")));
    }
    let mut text = String::with_capacity(meta.len() as usize + 1);
    std::io::Read::read_to_string(&mut std::io::Read::take(f, limit + 1), &mut text)
        .map_err(cannot)?;
    if text.len() as u64 > limit {
        return Err(problem(format!("larger than {limit} bytes; not read")));
    }
    Ok(text)
}

/// Loads the whole organisation from a configuration file.
pub fn load(config_path: &Path) -> Result<Org, Vec<Problem>> {
    load_for(config_path, &[])
}

/// Loads the organisation, checking in full only the user files that
/// mention one of `only` (all of them when `only` is empty): `plan --user`
/// on a 10,000-person org need not parse 9,999 files. `check` loads all.
pub fn load_for(config_path: &Path, only: &[String]) -> Result<Org, Vec<Problem>> {
    let only: Vec<String> = only.iter().map(|i| i.to_ascii_lowercase()).collect();
    let config = crate::config::load(config_path)?;
    let mut org_problems = Vec::new();
    let private_message = org_private_message(&config, &mut org_problems);
    let policy = fetch_policy(&config, &mut org_problems);
    let rules = load_rules(&config, &mut org_problems);
    let (users, user_problems) = match load_users(&config, &only) {
        Ok(loaded) => loaded,
        Err(p) => {
            org_problems.push(p);
            (Vec::new(), Vec::new())
        }
    };
    if !org_problems.is_empty() {
        org_problems.extend(user_problems);
        return Err(org_problems);
    }
    let f = &config.file;
    Ok(Org {
        rules,
        users,
        org_problems: Vec::new(),
        user_problems,
        private_message,
        internal_domains: f
            .org
            .internal_domains
            .iter()
            .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
            .collect(),
        merge_gap: chrono::Duration::from_std(f.plan.merge_gap).unwrap_or_default(),
        policy,
        config,
    })
}

/// The org's text for private meetings (checked: it may not reveal details).
fn org_private_message(config: &Config, problems: &mut Vec<Problem>) -> Localized {
    match Localized::private_from_raw(&config.file.org.private_message) {
        Ok(l) => l,
        Err(errs) => {
            for e in errs {
                problems.push(config.problem("org.private_message", e));
            }
            Localized::from_raw(&RawLocalized::One("Busy".into())).expect("static template")
        }
    }
}

/// What calendar sources may be read: `[fetch]` with file roots resolved.
fn fetch_policy(config: &Config, problems: &mut Vec<Problem>) -> Policy {
    let fetch = &config.file.fetch;
    if fetch.concurrency == 0 {
        problems.push(config.problem("fetch.concurrency", "must be at least 1".into()));
    }
    let mut file_roots: Vec<PathBuf> = fetch.file_roots.iter().map(|r| config.resolve(r)).collect();
    if file_roots.is_empty() {
        file_roots.push(config.dir.clone());
    }
    Policy {
        file_roots,
        allow_http: fetch.allow_http,
        allow_private_networks: fetch.allow_private_networks,
        timeout: fetch.timeout,
        max_bytes: fetch.max_bytes,
    }
}

/// The org rule files, in file-name order; rule names are unique org-wide.
fn load_rules(config: &Config, problems: &mut Vec<Problem>) -> Vec<Rule> {
    let rules_dir = config.resolve(&config.file.org.rules);
    let (root, files) = match toml_files(&rules_dir) {
        Ok((_, files)) if files.is_empty() => {
            problems.push(config.problem(
                "org.rules",
                format!("no rule files (*.toml) in {}", rules_dir.display()),
            ));
            return Vec::new();
        }
        Ok(listed) => listed,
        Err(e) => {
            problems.push(config.problem(
                "org.rules",
                format!(
                    "cannot read the rules directory {}: {e}",
                    rules_dir.display()
                ),
            ));
            return Vec::new();
        }
    };
    let mut rules = Vec::new();
    for file in files {
        match read_org_file(&root, &rules_dir, &file, MAX_RULE_FILE_BYTES) {
            Ok(text) => match parse_rule_file(&file.path, &text) {
                Ok(r) => rules.extend(r),
                Err(p) => problems.extend(p),
            },
            Err(p) => problems.push(p),
        }
    }
    let mut seen: HashMap<String, (PathBuf, usize)> = HashMap::new();
    for r in &rules {
        if let Some((pf, pl)) = seen.insert(r.name.clone(), (r.file.clone(), r.line))
            && pf != r.file
        {
            problems.push(Problem {
                file: r.file.clone(),
                line: Some(r.line),
                key: Some("name".into()),
                message: format!(
                    "rule name {:?} is already used in {}:{pl}",
                    r.name,
                    pf.display()
                ),
            });
        }
    }
    rules
}

/// The user files: read, checked, and judged against each other (one
/// person per file, one person per calendar file), then the org's
/// permissions applied. A broken file only leaves its user out.
fn load_users(config: &Config, only: &[String]) -> Result<(Vec<User>, Vec<Problem>), Problem> {
    let users_dir = config.resolve(&config.file.org.users);
    let (root, files) = toml_files(&users_dir).map_err(|e| {
        config.problem(
            "org.users",
            format!(
                "cannot read the users directory {}: {e}",
                users_dir.display()
            ),
        )
    })?;
    let texts: Vec<Result<String, Problem>> = files
        .par_iter()
        .map(|f| read_org_file(&root, &users_dir, f, MAX_USER_FILE_BYTES))
        .collect();
    let load = |i: usize| match &texts[i] {
        Ok(text) => load_user(&files[i].path, text, config, &config.file.org.timezone),
        Err(p) => Err(vec![p.clone()]),
    };
    let picked = pick_user_files(&texts, only, load);
    let mut users = Vec::new();
    let mut problems = Vec::new();
    let loaded: Vec<Result<User, Vec<Problem>>> = picked.par_iter().map(|&i| load(i)).collect();
    for result in loaded {
        match result {
            Ok(u) => users.push(u),
            Err(p) => problems.extend(p),
        }
    }
    problems.extend(drop_conflicting_claims(&mut users));
    let mut real = RealPaths::default();
    let shared: Vec<PathBuf> = config
        .file
        .fetch
        .shared_calendars
        .iter()
        .filter_map(|c| match parse_source(c, &config.dir) {
            Ok(Source::File(p)) => Some(real.or_given(&p)),
            _ => None,
        })
        .collect();
    problems.extend(drop_borrowed_calendar_files(&mut users, &shared));
    problems.extend(apply_permissions(&config.file.org, &mut users));
    // Errors quote what the file says (a TOML type error shows the value):
    // a calendar URL's secret must not reach a report through them.
    for p in &mut problems {
        p.message = crate::calendar::source::redact_text(&p.message);
    }
    Ok((users, problems))
}

/// Which user files to load (positions, in order). All of them, or for
/// `plan --user` the files that mention one of `only`, plus the files that
/// name one of their calendar files, as listed or as resolved (to judge who
/// may read it; a full load judges every file exactly).
fn pick_user_files(
    texts: &[Result<String, Problem>],
    only: &[String],
    load: impl Fn(usize) -> Result<User, Vec<Problem>> + Sync,
) -> Vec<usize> {
    if only.is_empty() {
        return (0..texts.len()).collect();
    }
    let mentions = |i: usize, needles: &[String]| {
        texts[i].as_ref().map_or(true, |t| {
            let t = t.to_ascii_lowercase();
            needles.iter().any(|n| t.contains(n.as_str()))
        })
    };
    let selected: Vec<usize> = (0..texts.len()).filter(|&i| mentions(i, only)).collect();
    let mut real = RealPaths::default();
    let names: Vec<String> = selected
        .par_iter()
        .map(|&i| load(i))
        .collect::<Vec<_>>()
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .flat_map(|u| u.sources.iter())
        .filter_map(|s| match s {
            Source::File(p) => Some([p.clone(), real.or_given(p)]),
            Source::Url(_) => None,
        })
        .flatten()
        .filter_map(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().to_ascii_lowercase())
        })
        .collect();
    (0..texts.len())
        .filter(|i| selected.contains(i) || (texts[*i].is_ok() && mentions(*i, &names)))
        .collect()
}

/// Applies `org.allow_personal_rules` and `org.allow_personal_private_message`.
fn apply_permissions(org: &crate::config::OrgSection, users: &mut [User]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for u in users {
        if !org.allow_personal_rules && !u.rules.is_empty() {
            problems.push(Problem {
                file: u.file.clone(),
                line: u.rules.first().map(|r| r.line),
                key: Some("rule".into()),
                message: "personal rules are not allowed by this organisation (org.allow_personal_rules); they are ignored".into(),
            });
            u.rules.clear();
        }
        if !org.allow_personal_private_message && u.private_message.is_some() {
            problems.push(Problem {
                file: u.file.clone(),
                line: None,
                key: Some("private_message".into()),
                message: "personal private messages are not allowed by this organisation (org.allow_personal_private_message); it is ignored".into(),
            });
            u.private_message = None;
        }
    }
    problems
}

fn load_user(
    file: &Path,
    text: &str,
    config: &Config,
    default_zone: &Zone,
) -> Result<User, Vec<Problem>> {
    let raw: RawUser = toml::from_str(text).map_err(|e| vec![toml_problem(file, text, &e)])?;
    let mut problems = Vec::new();
    let whole = 0..text.len();
    let mut bad = |key: &str, message: String| {
        problems.push(Problem {
            file: file.to_path_buf(),
            line: key_line(text, whole.clone(), key),
            key: Some(key.into()),
            message,
        })
    };
    let id = raw.user.trim().to_string();
    if !is_object_id(&id) && !id.contains('@') {
        bad(
            "user",
            format!("{id:?} is neither an Entra object id (GUID) nor a UPN"),
        );
    }
    let zone = user_zone(raw.timezone.as_deref(), default_zone, &mut bad);
    let language = raw
        .language
        .clone()
        .unwrap_or_else(|| config.file.org.language.clone());
    let sources = calendar_sources(&raw.calendars, config, &mut bad);
    let private_message = raw
        .private_message
        .as_ref()
        .and_then(|m| personal_private_message(m, &mut bad));
    let working_hours = raw
        .working_hours
        .as_ref()
        .and_then(|w| working_hours(w, &mut bad));
    if raw.rule.len() > MAX_PERSONAL_RULES {
        bad(
            "rule",
            format!(
                "{} personal rules; at most {MAX_PERSONAL_RULES} are allowed per person",
                raw.rule.len()
            ),
        );
    }
    let tables = raw.rule.into_iter().take(MAX_PERSONAL_RULES).collect();
    let rules = match crate::rules::model::personal_rules_from_tables(file, text, tables) {
        Ok(r) => r,
        Err(p) => {
            problems.extend(p);
            Vec::new()
        }
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(User {
        file: file.to_path_buf(),
        id,
        email: raw.email.map(|e| e.trim().to_ascii_lowercase()),
        sources,
        zone,
        language,
        enabled: raw.enabled,
        private_message,
        working_hours,
        rules,
    })
}

/// A user's time zone: the file's (IANA or Windows name), else the org's.
fn user_zone(name: Option<&str>, default: &Zone, bad: &mut impl FnMut(&str, String)) -> Zone {
    match name {
        None => default.clone(),
        Some(t) => parse_zone_name(t).unwrap_or_else(|| {
            bad(
                "timezone",
                format!(
                    "unknown time zone {t:?}; use an IANA name (Europe/Lisbon) or a Windows name"
                ),
            );
            Zone::Utc
        }),
    }
}

/// A user's own message for private meetings, checked.
fn personal_private_message(
    raw: &RawLocalized,
    bad: &mut impl FnMut(&str, String),
) -> Option<Localized> {
    match Localized::private_from_raw(raw) {
        Ok(l) => Some(l),
        Err(errs) => {
            for e in errs {
                bad("private_message", e);
            }
            None
        }
    }
}

/// A user's calendar sources, capped (a source listed twice is read once,
/// with a warning, when the calendars are fetched).
fn calendar_sources(
    listed: &[String],
    config: &Config,
    bad: &mut impl FnMut(&str, String),
) -> Vec<Source> {
    if listed.is_empty() {
        bad("calendars", "give at least one calendar file or URL".into());
    }
    if listed.len() > MAX_CALENDARS_PER_USER {
        bad(
            "calendars",
            format!(
                "{} calendars listed; at most {MAX_CALENDARS_PER_USER} are read per person",
                listed.len()
            ),
        );
    }
    let mut sources = Vec::new();
    for c in listed.iter().take(MAX_CALENDARS_PER_USER) {
        match parse_source(c, &config.dir) {
            Ok(s) => sources.push(s),
            Err(e) => bad("calendars", e.to_string()),
        }
    }
    sources
}

/// `[working_hours]` checked (weekdays default to Monday–Friday).
fn working_hours(w: &RawWorkingHours, bad: &mut impl FnMut(&str, String)) -> Option<WorkingHours> {
    use Weekday::{Fri, Mon, Thu, Tue, Wed};
    let days: Vec<Weekday> = match &w.days {
        None => vec![Mon, Tue, Wed, Thu, Fri],
        Some(d) => d
            .iter()
            .filter_map(|x| {
                let p = parse_weekday(x);
                if p.is_none() {
                    bad("days", format!("unknown weekday {x:?}"));
                }
                p
            })
            .collect(),
    };
    let start = parse_hhmm(&w.start);
    let end = parse_hhmm(&w.end);
    if start.is_none() {
        bad("start", format!("invalid time {:?}; use HH:MM", w.start));
    }
    if end.is_none() {
        bad("end", format!("invalid time {:?}; use HH:MM", w.end));
    }
    match (start, end) {
        (Some(start), Some(end)) if start < end => Some(WorkingHours { days, start, end }),
        (Some(_), Some(_)) => {
            bad("end", "working hours must end after they start".into());
            None
        }
        _ => None,
    }
}

/// A calendar *file* belongs to the one person whose user file lists it:
/// otherwise anyone could list a colleague's calendar and publish its
/// meeting titles as their own status. When enabled user files list the
/// same file (after symbolic links are resolved) and the org has not
/// declared it shared (`fetch.shared_calendars`), none of those users is
/// applied and each is told why. (Calendar URLs of published calendars are
/// secrets of their own and are not judged here.)
pub fn drop_borrowed_calendar_files(users: &mut Vec<User>, shared: &[PathBuf]) -> Vec<Problem> {
    // Each enabled user's calendar files, resolved (in parallel: a few
    // file-system calls per file, for every user of the org).
    let files: Vec<Vec<PathBuf>> = users
        .par_iter()
        .map_init(RealPaths::default, |real_paths, u| {
            let mut mine: Vec<PathBuf> = Vec::new();
            if !u.enabled {
                return mine;
            }
            for s in &u.sources {
                let Source::File(p) = s else { continue };
                let real = real_paths.or_given(p);
                // Only a readable calendar can be someone's: a missing file
                // or a device fails on its own, for each reader.
                if shared.contains(&real)
                    || mine.contains(&real)
                    || !std::fs::metadata(&real).is_ok_and(|m| m.is_file())
                {
                    continue;
                }
                mine.push(real);
            }
            mine
        })
        .collect();
    // One entry per (reader, file) listed.
    let mut keys: Vec<String> = Vec::new();
    let mut readers: Vec<usize> = Vec::new();
    for (i, mine) in files.into_iter().enumerate() {
        for real in mine {
            keys.push(real.display().to_string());
            readers.push(i);
        }
    }
    let groups = conflicting_claims(&keys)
        .into_iter()
        .map(|(file, at)| (file, at.into_iter().map(|k| readers[k]).collect()))
        .collect();
    drop_claimants(users, groups, "calendars", |file, others| {
        format!(
            "the calendar file {file} is also listed by {others}; a calendar file may belong to one person only, so none of them is applied (list it in fetch.shared_calendars if it is meant to be shared)"
        )
    })
}

/// Removes every user file that claims the same person as another one
/// (same id, case-insensitive) and returns a problem for each. calstatus
/// cannot tell which file is genuine — any of them may have been written to
/// take over someone else's status — so none of them is applied, and every
/// claimant is named so that the admin sees the conflict (`check` fails, the
/// plan lists it). The sync pass applies the same rule to ids as resolved
/// from UPNs ([`conflicting_claims`]).
pub fn drop_conflicting_claims(users: &mut Vec<User>) -> Vec<Problem> {
    let keys: Vec<String> = users.iter().map(|u| u.id.to_ascii_lowercase()).collect();
    drop_claimants(users, conflicting_claims(&keys), "user", |id, others| {
        format!(
            "{id} is also claimed by {others}; calstatus cannot tell which file is genuine, so none of them is applied — correct or remove the wrong one"
        )
    })
}

/// Leaves out every user in `groups` (what they claim, the users claiming
/// it), each with a problem on `key` naming the other claimants.
fn drop_claimants(
    users: &mut Vec<User>,
    groups: Vec<(String, Vec<usize>)>,
    key: &str,
    message: impl Fn(&str, &str) -> String,
) -> Vec<Problem> {
    let mut drop = vec![false; users.len()];
    let mut problems = Vec::new();
    for (claimed, members) in &groups {
        for &i in members {
            drop[i] = true;
            let others: Vec<String> = members
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| users[j].file.display().to_string())
                .collect();
            problems.push(Problem {
                file: users[i].file.clone(),
                line: None,
                key: Some(key.into()),
                message: message(claimed, &others.join(", ")),
            });
        }
    }
    let mut keep = drop.iter().map(|d| !d);
    users.retain(|_| keep.next().unwrap_or(true));
    problems
}

/// Groups of positions in `ids` (already normalised) that share an id, for
/// every id claimed more than once, in order of first appearance.
pub fn conflicting_claims(ids: &[String]) -> Vec<(String, Vec<usize>)> {
    let mut by_id: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let e = by_id.entry(id.as_str()).or_default();
        if e.is_empty() {
            order.push(id.as_str());
        }
        e.push(i);
    }
    order
        .into_iter()
        .filter_map(|id| {
            let members = by_id.remove(id)?;
            (members.len() > 1).then(|| (id.to_string(), members))
        })
        .collect()
}

/// `true` for a GUID such as `fa8bf3dc-eca7-46b7-bad1-db199b62afc3`.
pub fn is_object_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}
