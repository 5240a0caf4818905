//! The command line (clap derive) and what each command does. This is the
//! binary's edge: `anyhow` errors, exit codes, output files.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use crate::calendar::{Window, Zone, expand, parse, parse_zone_name};
use crate::exit::Exit;
use crate::plan::utc_secs;
use crate::report::{Format, render};
use crate::text::Escaped;

/// Calendar-driven Microsoft Teams status messages for a whole organisation.
#[derive(Debug, Parser)]
#[command(name = "calstatus", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr (levels via RUST_LOG, e.g. RUST_LOG=calstatus=debug).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line (daemons).
    Json,
}

/// Where the configuration is.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// calstatus.toml (default: ./calstatus.toml).
    #[arg(long, env = "CALSTATUS_CONFIG", default_value = "calstatus.toml")]
    pub config: PathBuf,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Dry-run report: what would be published, for whom, when and why. Never contacts Graph.
    Plan {
        /// Where the configuration is.
        #[command(flatten)]
        config: ConfigArg,
        /// Window start, RFC 3339 (default: now).
        #[arg(long, value_parser = parse_instant)]
        from: Option<DateTime<Utc>>,
        /// Window end, RFC 3339 (default: 24 hours after --from).
        #[arg(long, value_parser = parse_instant)]
        to: Option<DateTime<Utc>>,
        /// Only these users (object ids); repeatable.
        #[arg(long = "user")]
        users: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Write to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Load everything (config, rules, users, calendars) and report every problem.
    Check {
        /// Where the configuration is.
        #[command(flatten)]
        config: ConfigArg,
    },
    /// One reconcile pass at T: publish, keep, clear, protect or restore each user's status via Graph.
    Sync {
        /// Where the configuration is.
        #[command(flatten)]
        config: ConfigArg,
        /// The instant to reconcile for, RFC 3339 (default: now).
        #[arg(long, value_parser = parse_instant)]
        at: Option<DateTime<Utc>>,
        /// Only these users (object ids); repeatable.
        #[arg(long = "user")]
        users: Vec<String>,
        /// Show each decision and the exact request; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = SyncFormat::Table)]
        format: SyncFormat,
    },
    /// Run as a service: keep every opted-in person's status right all day (foreground; stop with SIGTERM).
    Run {
        /// Where the configuration is.
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Manage the state store.
    State {
        /// What to do.
        #[command(subcommand)]
        action: StateAction,
    },
    /// Expand ICS files into occurrences as JSON (for checking against other implementations).
    #[command(hide = true)]
    Expand {
        /// Files or directories (walked for *.ics).
        paths: Vec<PathBuf>,
        /// Window start.
        #[arg(long, value_parser = parse_instant)]
        from: DateTime<Utc>,
        /// Window end.
        #[arg(long, value_parser = parse_instant)]
        to: DateTime<Utc>,
        /// Zone for floating and all-day values.
        #[arg(long, default_value = "UTC")]
        timezone: String,
    },
}

/// `calstatus state …`.
#[derive(Debug, Subcommand)]
pub enum StateAction {
    /// Copy a single instance's SQLite state into a PostgreSQL database
    /// (migrating its schema first): what calstatus wrote, the personal
    /// messages it saved, the journal, the UPN cache. Safe to run again;
    /// stop the single instance first.
    Migrate {
        /// Where the configuration is: its `[state] url` is the target
        /// unless `--to` is given; its TLS and password settings apply.
        #[command(flatten)]
        config: ConfigArg,
        /// The SQLite state file to copy from.
        #[arg(long)]
        from: PathBuf,
        /// The database to copy into, `postgres://user@host:5432/db` (the
        /// password from PGPASSWORD or the configuration's settings).
        #[arg(long)]
        to: Option<String>,
    },
}

/// Formats of the sync report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SyncFormat {
    /// For a terminal.
    Table,
    /// Machine-readable.
    Json,
}

fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| format!("{e}: use RFC 3339, e.g. 2026-11-27T09:00:00Z"))
}

/// Now, to the second: the only clock read of a plan run.
pub fn now() -> DateTime<Utc> {
    let n = Utc::now();
    DateTime::from_timestamp(n.timestamp(), 0).unwrap_or(n)
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Plan {
            config,
            from,
            to,
            users,
            format,
            output,
        } => {
            let from = from.unwrap_or_else(now);
            let to = to.unwrap_or(from + Duration::hours(24));
            if to <= from {
                anyhow::bail!(
                    "--to ({}) must be after --from ({})",
                    utc_secs::fmt(&to),
                    utc_secs::fmt(&from)
                );
            }
            let Some(org) = load_org(&config.config, &users)? else {
                return Ok(Exit::Config);
            };
            plan_report(&org, Window { from, to }, &users, format, output.as_deref()).await
        }
        Command::Check { config } => check(&config.config).await,
        Command::Run { config } => crate::daemon::run(&config.config).await,
        Command::State {
            action: StateAction::Migrate { config, from, to },
        } => migrate_state(&config.config, &from, to.as_deref()).await,
        Command::Sync {
            config,
            at,
            users,
            dry_run,
            format,
        } => {
            sync(
                &config.config,
                at.unwrap_or_else(now),
                users,
                dry_run,
                format,
            )
            .await
        }
        Command::Expand {
            paths,
            from,
            to,
            timezone,
        } => {
            let zone = parse_zone_name(&timezone)
                .with_context(|| format!("unknown time zone {timezone:?}"))?;
            let text = expand_files(&paths, &zone, Window { from, to })?;
            write_output(None, &text)?;
            Ok(Exit::Ok)
        }
    }
}

/// Loads the org, printing every problem; `None` when org-level files are broken.
fn load_org(path: &Path, only: &[String]) -> anyhow::Result<Option<crate::org::Org>> {
    match crate::org::load_for(path, only) {
        Ok(org) => {
            for p in &org.user_problems {
                tracing::warn!(message = "A user file has problems; that user is left out.", problem = %p);
            }
            Ok(Some(org))
        }
        Err(problems) => {
            eprintln!(
                "calstatus: the configuration has {} problem(s); nothing was planned:",
                problems.len()
            );
            for p in &problems {
                eprintln!("  {}", Escaped(p));
            }
            Ok(None)
        }
    }
}

/// `calstatus state migrate`: SQLite → PostgreSQL.
async fn migrate_state(config: &Path, from: &Path, to: Option<&str>) -> anyhow::Result<Exit> {
    // With --to, a configuration is optional (its TLS and password
    // settings apply when there is one).
    let mut config = match crate::config::load(config) {
        Ok(c) => c,
        Err(_) if to.is_some() && !config.exists() => crate::config::Config {
            path: config.to_path_buf(),
            dir: std::env::current_dir()?,
            file: crate::config::ConfigFile::default(),
        },
        Err(problems) => {
            for p in &problems {
                eprintln!("{}", Escaped(p));
            }
            return Ok(Exit::Config);
        }
    };
    if let Some(url) = to {
        if let Err(why) = crate::config::check_pg_url(url) {
            eprintln!("calstatus state migrate: --to: {why}");
            return Ok(Exit::Usage);
        }
        config.file.state.url = Some(url.to_string());
    }
    let Some(options) = crate::state::pg_options(&config)? else {
        eprintln!(
            "calstatus state migrate: {} has no [state] url: name the PostgreSQL database to copy into (or give --to)",
            config.path.display()
        );
        return Ok(Exit::Config);
    };
    // Never created by mistake: the source must be an existing calstatus state.
    let Some(source) = crate::state::SqliteStore::open_read_only(from)? else {
        eprintln!(
            "calstatus state migrate: {} is not a calstatus state file",
            from.display()
        );
        return Ok(Exit::Config);
    };
    let target = crate::state::postgres::PgStore::connect(&options).await?;
    let (records, journal, upns) = target.import(&source).await?;
    println!(
        "Copied {records} record(s), {journal} journal line(s) and {upns} cached UPN(s) from {} into {}.",
        from.display(),
        target.url()
    );
    Ok(Exit::Ok)
}

async fn check(path: &Path) -> anyhow::Result<Exit> {
    let org = match crate::org::load(path) {
        Ok(org) => org,
        Err(problems) => {
            for p in &problems {
                eprintln!("{}", Escaped(p));
            }
            eprintln!("calstatus check: {} problem(s)", problems.len());
            return Ok(Exit::Config);
        }
    };
    let mut tally = Tally::default();
    for p in &org.user_problems {
        tally.problem(p);
    }
    // [graph]/[sync] are checked when present (no network: no token is requested).
    if org.config.file.graph.is_some()
        && let Err(problems) = crate::graph::settings(&org.config)
    {
        problems.iter().for_each(|p| tally.problem(p));
    }
    let (users, _) = crate::pipeline::select_users(&org, &[]);
    let (run_problems, run_warnings) = org.run_checks(&users);
    run_problems.iter().for_each(|p| tally.problem(p));
    run_warnings.iter().for_each(|p| tally.warning(p));
    check_state(&org.config, &mut tally);
    let calendars = check_calendars(&org, &users, &mut tally).await?;
    if tally.problems == 0 {
        println!(
            "calstatus check: OK: {} rule(s), {} user file(s) ({} enabled), {} calendar(s), {} warning(s)",
            org.rules.len(),
            org.users.len(),
            users.len(),
            calendars,
            tally.warnings
        );
        Ok(Exit::Ok)
    } else {
        eprintln!(
            "calstatus check: {} problem(s), {} warning(s)",
            tally.problems, tally.warnings
        );
        Ok(Exit::Config)
    }
}

/// What `check` found, printed as it is found.
#[derive(Default)]
struct Tally {
    problems: usize,
    warnings: usize,
}

impl Tally {
    /// Prints a problem (the check fails).
    fn problem(&mut self, p: &dyn std::fmt::Display) {
        eprintln!("{}", Escaped(p));
        self.problems += 1;
    }

    /// Prints a warning.
    fn warning(&mut self, p: &dyn std::fmt::Display) {
        eprintln!("warning: {}", Escaped(p));
        self.warnings += 1;
    }
}

/// `[state] url`: what `run` will need to reach the database (check never
/// connects; the password may be set only where the service runs).
fn check_state(config: &crate::config::Config, tally: &mut Tally) {
    if config.file.state.url.is_none() {
        return;
    }
    if let Err(e) = crate::state::pg_options(config) {
        tally.warning(&format!("{}: {e}", config.path.display()));
    }
    if let Some(ca) = &config.file.state.ca_file {
        let ca = config.resolve(ca);
        if let Err(e) = std::fs::read(&ca) {
            tally.problem(&format!(
                "{}: state.ca_file: cannot read {}: {e}",
                config.path.display(),
                ca.display()
            ));
        }
    }
}

/// Loads and parses every source of every enabled user; returns how many
/// calendars were read.
async fn check_calendars(
    org: &crate::org::Org,
    users: &[&crate::domain::User],
    tally: &mut Tally,
) -> anyhow::Result<usize> {
    let fetcher = crate::calendar::source::Fetcher::new(org.policy.clone());
    let texts =
        crate::pipeline::fetch_all(&fetcher, users, org.config.file.fetch.concurrency).await;
    let calendars = crate::pipeline::parse_fetched(texts, &crate::calendar::ZoneCache::default());
    for u in users {
        for s in &u.sources {
            match calendars.get(s).map(|c| &c.calendar) {
                // Tally::problem escapes the whole line.
                Some(Err(e)) => tally.problem(&format!("{}: calendar {s}: {e}", u.file.display())),
                Some(Ok(cal)) => {
                    for d in &cal.diags {
                        eprintln!("{}: warning: {}", Escaped(s), Escaped(d));
                        tally.warnings += 1;
                    }
                }
                None => {}
            }
        }
    }
    Ok(calendars.len())
}

async fn sync(
    path: &Path,
    at: DateTime<Utc>,
    users: Vec<String>,
    dry_run: bool,
    format: SyncFormat,
) -> anyhow::Result<Exit> {
    let Some(org) = load_org(path, &users)? else {
        return Ok(Exit::Config);
    };
    let settings = match crate::graph::settings(&org.config) {
        Ok(s) => s,
        Err(problems) => {
            eprintln!(
                "calstatus: the configuration has {} problem(s); nothing was synced:",
                problems.len()
            );
            for p in &problems {
                eprintln!("  {}", Escaped(p));
            }
            return Ok(Exit::Config);
        }
    };
    let opts = crate::sync::SyncOptions {
        at,
        users,
        dry_run,
        lead_time: Duration::from_std(org.config.file.sync.lead_time).unwrap_or_default(),
        policy: org.config.file.sync.personal_message,
        scope: None,
    };
    let bar = ProgressBar::for_terminal(format == SyncFormat::Table);
    let report = match crate::sync::run_pass_with(&org, settings, &opts, &bar).await {
        Ok(r) => r,
        Err(crate::sync::SyncError::Auth(e)) => {
            eprintln!(
                "calstatus: cannot get a token for Microsoft Graph: {}",
                Escaped(&e)
            );
            return Ok(if e.is_configuration() {
                Exit::Config
            } else {
                Exit::Failure
            });
        }
        Err(e) => return Err(e.into()),
    };
    let text = match format {
        SyncFormat::Table => crate::sync::render_table(&report),
        SyncFormat::Json => {
            crate::text::for_json(&serde_json::to_string_pretty(&report)?).into_owned() + "\n"
        }
    };
    write_output(None, &text)?;
    Ok(if report.failed.is_empty() {
        Exit::Ok
    } else {
        Exit::Partial
    })
}

/// The sync pass's progress on a terminal (an observer of the writes);
/// silent when stderr is not a terminal or the output is JSON.
struct ProgressBar(Option<indicatif::ProgressBar>);

impl ProgressBar {
    fn for_terminal(wanted: bool) -> ProgressBar {
        use std::io::IsTerminal;
        ProgressBar((wanted && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::hidden();
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {pos}/{len} statuses {wide_bar} {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        }))
    }
}

impl crate::engine::Observer for ProgressBar {
    fn writes_started(&self, n: usize) {
        if let Some(b) = &self.0 {
            b.set_length(n as u64);
            b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
    }
    fn written(
        &self,
        _user: &str,
        _result: &Result<(), crate::graph::client::OpError>,
        _due: Option<DateTime<Utc>>,
    ) {
        if let Some(b) = &self.0 {
            b.inc(1);
        }
    }
    fn writes_finished(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

fn walk_ics(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.sort();
        for e in entries {
            walk_ics(&e, out);
        }
    } else if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("ics")) {
        out.push(p.to_path_buf());
    }
}

/// The `expand` command's JSON (same schema as tools/reference/occurrences.py).
pub fn expand_files(paths: &[PathBuf], zone: &Zone, window: Window) -> anyhow::Result<String> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk_ics(p, &mut files);
        } else {
            files.push(p.clone());
        }
    }
    let mut out = Vec::new();
    for f in files {
        let entry = match std::fs::read(&f) {
            Err(e) => {
                serde_json::json!({"file": f.display().to_string(), "occurrences": [], "error": e.to_string()})
            }
            Ok(bytes) => match parse(&String::from_utf8_lossy(&bytes)) {
                Err(e) => {
                    serde_json::json!({"file": f.display().to_string(), "occurrences": [], "error": e.to_string()})
                }
                Ok(cal) => {
                    let (occs, _) = expand(&cal, zone, window);
                    let list: Vec<_> = occs
                        .iter()
                        .map(|o| {
                            serde_json::json!({
                                "uid": o.given_uid(),
                                "recurrence_id": o.recurrence_id.map(|t| utc_secs::fmt(&t)),
                                "start": utc_secs::fmt(&o.start),
                                "end": utc_secs::fmt(&o.end),
                                "all_day": o.all_day,
                                "summary": o.details.summary,
                            })
                        })
                        .collect();
                    serde_json::json!({"file": f.display().to_string(), "occurrences": list, "error": null})
                }
            },
        };
        out.push(entry);
    }
    Ok(serde_json::to_string_pretty(&serde_json::json!({ "files": out }))? + "\n")
}

/// `--output` names something that is not a file to replace: a device
/// (`/dev/null`, `/dev/stdout`), a FIFO or a socket. It is written to as it
/// is; renaming a finished report over it would replace it with a file
/// (as root, `/dev/null` itself).
fn is_special(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

fn open_special(p: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(p)
        .with_context(|| format!("cannot write {}", p.display()))
}

/// Writes a whole report (or `check`'s and `expand`'s output) as a
/// streamed one is written: see [`ReportWriter`].
fn write_output(path: Option<&Path>, text: &str) -> anyhow::Result<()> {
    let mut out = ReportWriter::open(path)?;
    out.send(text.to_owned());
    out.finish()
}

/// The dry run: plans and writes the report. Every format but HTML is
/// written as users are planned (each user's part rendered in parallel
/// where the user is planned, the parts written in order by a writer
/// thread), so the report is never whole in memory and writing overlaps
/// planning. The HTML page opens with totals and is rendered at the end.
async fn plan_report(
    org: &crate::org::Org,
    window: Window,
    users: &[String],
    format: Format,
    output: Option<&Path>,
) -> anyhow::Result<Exit> {
    if !format.streams() {
        let plan = crate::pipeline::build_plan(org, window, users).await?;
        write_output(output, &render(&plan, format))?;
        let errors = plan.users.iter().any(|u| !u.errors.is_empty());
        return Ok(exit_code(&plan.problems, errors));
    }
    let mut out = ReportWriter::open(output)?;
    out.send(crate::report::head(
        format,
        &crate::plan::WindowReport {
            from: window.from,
            to: window.to,
        },
    ));
    let (mut n, mut errors) = (0usize, false);
    let each = |p: crate::plan::UserPlan| (crate::report::user(format, &p), !p.errors.is_empty());
    // A chunk's parts go to the writer as they are: it copies them into
    // its buffer, on its own thread rather than on the planning loop.
    let planned = crate::pipeline::build_plan_with(org, window, users, &each, |chunk| {
        let parts = chunk
            .into_iter()
            .map(|(part, err)| {
                let separator = crate::report::separator(format, n);
                n += 1;
                errors |= err;
                (separator, part)
            })
            .collect();
        out.send_parts(parts);
    })
    .await;
    let problems = match planned {
        Ok(p) => p,
        Err(e) => {
            out.abandon();
            return Err(e.into());
        }
    };
    out.send(crate::report::tail(format, &problems, n));
    out.finish()?;
    Ok(exit_code(&problems, errors))
}

/// 1 when users or their calendars failed (they are listed), else 0.
fn exit_code(problems: &[crate::plan::SourceProblem], user_errors: bool) -> Exit {
    if !problems.is_empty() || user_errors {
        Exit::Partial
    } else {
        Exit::Ok
    }
}

/// The temporary file a report is written to, written out to the disk as
/// it grows: every [`ReportFile::WRITE_OUT`] bytes, and the rest when it is
/// flushed, the kernel is asked to start writing what was written so far
/// (it does so while later users are planned). Renaming a file over an
/// existing report makes ext4 write the new one out first (`auto_da_alloc`,
/// its guard against an empty report after a crash); with most of the file
/// already written that costs a few milliseconds instead of the 0.1-0.2 s
/// the rename of a 240 MB report otherwise waits at the end of the run.
struct ReportFile {
    file: std::fs::File,
    written: u64,
    /// Bytes whose writing out has been started.
    started: u64,
}

impl ReportFile {
    const WRITE_OUT: u64 = 8 << 20;

    fn new(file: std::fs::File) -> ReportFile {
        ReportFile {
            file,
            written: 0,
            started: 0,
        }
    }

    /// Starts writing out what was written since the last call. On Linux,
    /// `POSIX_FADV_DONTNEED` does that for dirty pages (without waiting for
    /// it) and drops only pages already on the disk: the report is not
    /// read back. Elsewhere, nothing.
    fn write_out(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(len) = std::num::NonZeroU64::new(self.written - self.started) {
            // Advice only: a failure changes nothing that was written.
            let _ = rustix::fs::fadvise(
                &self.file,
                self.started,
                Some(len),
                rustix::fs::Advice::DontNeed,
            );
        }
        self.started = self.written;
    }
}

impl Write for ReportFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= Self::WRITE_OUT {
            self.write_out();
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.write_out();
        self.file.flush()
    }
}

/// Pieces of a report, in order: each a separator and a text.
type Parts = Vec<(&'static str, String)>;

/// Writes a report's parts in order on its own thread, through a buffer:
/// to a temporary file beside `--output`, renamed over it at the end (a
/// reader never sees half a report), into `--output` itself when it is a
/// device or FIFO, or to standard output (a closed pipe ends the writing
/// quietly, as for a whole report).
struct ReportWriter {
    parts: Option<std::sync::mpsc::SyncSender<Parts>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    /// (temporary file, `--output`).
    file: Option<(PathBuf, PathBuf)>,
    /// What is written to, for errors.
    target: String,
}

impl ReportWriter {
    fn open(output: Option<&Path>) -> anyhow::Result<ReportWriter> {
        let (sink, file, target): (Box<dyn Write + Send>, _, _) = match output {
            Some(p) if is_special(p) => (Box::new(open_special(p)?), None, p.display().to_string()),
            Some(p) => {
                let tmp = p.with_extension("calstatus-tmp");
                let f = std::fs::File::create(&tmp)
                    .with_context(|| format!("cannot write {}", tmp.display()))?;
                (
                    Box::new(ReportFile::new(f)),
                    Some((tmp, p.to_path_buf())),
                    p.display().to_string(),
                )
            }
            None => (
                Box::new(std::io::stdout()),
                None,
                "standard output".to_string(),
            ),
        };
        let (tx, rx) = std::sync::mpsc::sync_channel::<Parts>(2);
        let thread = std::thread::spawn(move || {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, sink);
            let mut result = Ok(());
            // After an error the rest is received and dropped, so the
            // planner never blocks on a dead writer.
            for parts in rx {
                for (separator, part) in parts {
                    if result.is_ok() {
                        result = w
                            .write_all(separator.as_bytes())
                            .and_then(|()| w.write_all(part.as_bytes()));
                    }
                }
            }
            result.and_then(|()| w.flush())
        });
        Ok(ReportWriter {
            parts: Some(tx),
            thread: Some(thread),
            file,
            target,
        })
    }

    fn send(&mut self, part: String) {
        self.send_parts(vec![("", part)]);
    }

    fn send_parts(&mut self, parts: Parts) {
        if let Some(tx) = &self.parts {
            let _ = tx.send(parts);
        }
    }

    /// Waits for the writer: its result.
    fn join(&mut self) -> std::io::Result<()> {
        self.parts = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(std::io::Error::other("the report writer failed")),
            None => Ok(()),
        }
    }

    /// Everything is written: flushed, and the file renamed into place.
    fn finish(mut self) -> anyhow::Result<()> {
        let written = self.join();
        match self.file.take() {
            Some((tmp, p)) => {
                if let Err(e) = written {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e).with_context(|| format!("cannot write {}", tmp.display()));
                }
                std::fs::rename(&tmp, &p).with_context(|| format!("cannot write {}", p.display()))
            }
            None => match written {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(e).with_context(|| format!("cannot write to {}", self.target))
                }
                _ => Ok(()),
            },
        }
    }

    /// The run failed: no report (a temporary file is removed).
    fn abandon(mut self) {
        let _ = self.join();
        if let Some((tmp, _)) = self.file.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report larger than [`ReportFile::WRITE_OUT`], written in uneven
    /// pieces through a buffer as the report writer does: every byte is
    /// in the file, in order, and writing out was started for all of it.
    #[test]
    fn a_report_file_holds_what_was_written_and_starts_writing_it_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        let mut f = ReportFile::new(std::fs::File::create(&path).unwrap());
        let mut expected = Vec::new();
        {
            let mut w = std::io::BufWriter::with_capacity(1 << 16, &mut f);
            for i in 0..40_000u32 {
                let piece = format!("{i:>width$}\n", width = (i % 700) as usize);
                w.write_all(piece.as_bytes()).unwrap();
                expected.extend_from_slice(piece.as_bytes());
            }
            w.flush().unwrap();
        }
        assert!(expected.len() as u64 > 1 + ReportFile::WRITE_OUT);
        assert_eq!((f.written, f.started), (expected.len() as u64, f.written));
        drop(f);
        assert!(std::fs::read(&path).unwrap() == expected);
    }
}
