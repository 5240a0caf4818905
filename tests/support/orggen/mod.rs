//! Synthetic organisations, shared by the benchmarks and the tests.
//!
//! [`generate`] writes the planning benchmark's org (see BENCHMARKS.md,
//! "What is generated"): a `calstatus.toml`, one user file and one
//! Outlook-style calendar per user (~30 events, about half recurring,
//! Windows TZIDs with VTIMEZONE blocks, EXDATEs, moved and cancelled
//! RECURRENCE-ID overrides, all-day OOF, private/declined/tentative/free
//! events). It is deterministic: a SplitMix64 seeded per user, so user *i*
//! is the same at every org size. [`user_files`] makes one user in memory.
//!
//! Several org sizes can share one directory and one set of calendars: a
//! [`View`] is a users directory holding the first *n* user files, with its
//! own config (`calstatus-<n>.toml`). [`write_users`] writes the calendars
//! and every view in parallel; the sync benchmark uses it for its own
//! one-meeting org.

mod calendar;
mod people;
mod rng;
mod rules;
mod text;
mod zones;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

pub use people::Person;
pub use rng::Rng;

/// The planning window the org is built around: a Monday, 7 days.
pub const WINDOW_FROM: &str = "2026-11-30T00:00:00Z";
/// End of the planning window.
pub const WINDOW_TO: &str = "2026-12-07T00:00:00Z";
/// The file that marks a directory as generated (and so safe to delete).
pub const MARKER: &str = ".calstatus-bench-org";
/// Bump when the generator's output changes, so a reused org is regenerated.
pub const GENERATOR_VERSION: u32 = 1;

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// Users of the main org (`calstatus.toml`, `users/`).
    pub users: usize,
    /// Events per calendar (±20 %, not counting overrides).
    pub events: usize,
    /// PRNG seed.
    pub seed: u64,
    /// How much of each meeting the calendars carry.
    pub detail: Detail,
}

/// How much of each meeting a generated calendar carries. The events are
/// the same either way (same random draws); only what is written differs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Detail {
    /// Every attendee and the Teams DESCRIPTION (~49 KiB per calendar).
    #[default]
    Full,
    /// As a calendar published from Outlook with limited details: the
    /// owner's own ATTENDEE line (its reply) and no DESCRIPTION (~30 KiB).
    Published,
}

/// One generated user.
#[derive(Clone, Debug)]
pub struct GenUser {
    /// The object id in the user file.
    pub id: String,
}

/// Statistics of what was generated.
#[derive(Default, Clone, Debug)]
pub struct GenStats {
    pub users: usize,
    pub files_bytes: u64,
    pub user_bytes: u64,
    pub vevents: usize,
    pub masters: usize,
    pub recurring: usize,
    pub overrides: usize,
    pub cancelled_overrides: usize,
    pub exdates: usize,
    pub all_day: usize,
    pub vtimezones: usize,
    pub vtimezones_dst: usize,
}

impl GenStats {
    fn add(mut self, o: GenStats) -> GenStats {
        self.users += o.users;
        self.files_bytes += o.files_bytes;
        self.user_bytes += o.user_bytes;
        self.vevents += o.vevents;
        self.masters += o.masters;
        self.recurring += o.recurring;
        self.overrides += o.overrides;
        self.cancelled_overrides += o.cancelled_overrides;
        self.exdates += o.exdates;
        self.all_day += o.all_day;
        self.vtimezones += o.vtimezones;
        self.vtimezones_dst += o.vtimezones_dst;
        self
    }
}

/// One user's files.
pub struct UserFiles {
    /// Object id.
    pub id: String,
    /// File stem of both files (`u00042`).
    pub name: String,
    /// `users/<name>.toml`.
    pub toml: String,
    /// `calendars/<name>.ics`.
    pub ics: String,
}

/// A users directory with the first `users` user files.
#[derive(Clone, Debug)]
pub struct View {
    /// How many users.
    pub users: usize,
    /// The directory's name in the org (`users`, `users-1000`).
    pub dir: String,
}

impl View {
    /// The main view (`users/`) or the one of another size (`users-<n>/`).
    pub fn new(users: usize, main: bool) -> View {
        let dir = if main {
            "users".to_string()
        } else {
            format!("users-{users}")
        };
        View { users, dir }
    }
}

/// The config of the org with `users` users: `calstatus.toml` for the main
/// one, `calstatus-<n>.toml` for the others.
pub fn config_path(dir: &Path, users: usize, main: usize) -> PathBuf {
    if users == main {
        dir.join("calstatus.toml")
    } else {
        dir.join(format!("calstatus-{users}.toml"))
    }
}

const LANGS: [&str; 6] = ["en", "en", "pt", "de", "fr", "es"];

/// User `i` of the org seeded `seed`: files and statistics.
pub fn user_files(seed: u64, events: usize, i: usize) -> (UserFiles, GenStats) {
    user_files_with(seed, events, Detail::Full, i)
}

/// [`user_files`] with calendars of the given [`Detail`].
pub fn user_files_with(
    seed: u64,
    events: usize,
    detail: Detail,
    i: usize,
) -> (UserFiles, GenStats) {
    let mut stats = GenStats::default();
    let mut rng = Rng::new(seed, i as u64 + 1);
    let (iana, home) = zones::pick_user_zone(&mut rng);
    let id = rng.guid();
    let f = *rng.pick(&people::FIRST);
    let l = *rng.pick(&people::LAST);
    let owner = Person {
        name: format!("{f} {l}"),
        email: format!(
            "{}.{}{i}@contoso.com",
            people::ascii_slug(f),
            people::ascii_slug(l)
        ),
    };
    let name = format!("u{i:05}");
    let ics = calendar::gen_calendar(&mut rng, &owner, home, events, detail, &mut stats);
    let mut toml = format!(
        "# {} ({iana})\nuser = \"{id}\"\nemail = \"{}\"\ncalendars = [\"calendars/{name}.ics\"]\ntimezone = \"{iana}\"\nlanguage = \"{}\"\nenabled = true\n",
        owner.name,
        owner.email,
        rng.pick(&LANGS)
    );
    if rng.chance(0.3) {
        let (s, e) = *rng.pick(&[("08:00", "17:00"), ("09:00", "18:00"), ("08:30", "17:30")]);
        let _ = write!(
            toml,
            "\n[working_hours]\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]\nstart = \"{s}\"\nend = \"{e}\"\n"
        );
    }
    if rng.chance(0.05) {
        toml.push_str("\n[[rule]]\nname = \"gym\"\nsummary = \"gym\"\nskip = \"personal\"\n");
    }
    stats.files_bytes += ics.len() as u64;
    stats.user_bytes += toml.len() as u64;
    stats.users += 1;
    let files = UserFiles {
        id,
        name,
        toml,
        ics,
    };
    (files, stats)
}

/// Writes `calendars/<name>.ics` for users `0..n` and, into each view's
/// directory, the user files of its first users; in parallel. Returns the
/// ids in user order and `make`'s statistics summed.
pub fn write_users(
    dir: &Path,
    n: usize,
    views: &[View],
    make: impl Fn(usize) -> (UserFiles, GenStats) + Sync,
) -> Result<(Vec<String>, GenStats), String> {
    let mkdir = |d: PathBuf| {
        std::fs::create_dir_all(&d).map_err(|e| format!("cannot create {}: {e}", d.display()))
    };
    mkdir(dir.join("calendars"))?;
    for v in views {
        mkdir(dir.join(&v.dir))?;
    }
    let write = |p: PathBuf, text: &str| {
        std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    let made: Vec<(String, GenStats)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let (f, stats) = make(i);
            write(dir.join(format!("calendars/{}.ics", f.name)), &f.ics)?;
            for v in views.iter().filter(|v| i < v.users) {
                write(dir.join(format!("{}/{}.toml", v.dir, f.name)), &f.toml)?;
            }
            Ok((f.id, stats))
        })
        .collect::<Result<_, String>>()?;
    let stats = made
        .iter()
        .fold(GenStats::default(), |a, (_, s)| a.add(s.clone()));
    Ok((made.into_iter().map(|(id, _)| id).collect(), stats))
}

/// Deletes `dir` if it exists and was generated here (holds [`MARKER`]).
pub fn clear_generated(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        return Ok(());
    }
    if !dir.join(MARKER).exists() {
        return Err(format!(
            "{} exists and was not made by this benchmark ({MARKER} missing); refusing to delete it",
            dir.display()
        ));
    }
    std::fs::remove_dir_all(dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))
}

/// Writes the planning benchmark's org into `dir` (deleted first if it was
/// generated before): `spec.users` users in `calstatus.toml` + `users/`,
/// and an org of each size in `also` (`calstatus-<n>.toml` + `users-<n>/`),
/// all reading one `calendars/`. `rules` is the rules directory the configs
/// name. Returns the main org's users and the statistics of its calendars.
pub fn generate(
    dir: &Path,
    spec: Spec,
    also: &[usize],
    rules: &Path,
) -> Result<(Vec<GenUser>, GenStats), String> {
    clear_generated(dir)?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let sizes: Vec<usize> = also.iter().copied().filter(|n| *n != spec.users).collect();
    std::fs::write(
        dir.join(MARKER),
        format!(
            "generator={GENERATOR_VERSION}\nusers={}\nevents={}\nseed={}\ndetail={:?}\nalso={sizes:?}\n",
            spec.users, spec.events, spec.seed, spec.detail
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut views = vec![View::new(spec.users, true)];
    views.extend(sizes.iter().map(|n| View::new(*n, false)));
    for v in &views {
        write_config(
            dir,
            spec.seed,
            v,
            rules,
            &config_path(dir, v.users, spec.users),
        )?;
    }
    let n = views.iter().map(|v| v.users).max().unwrap_or(0);
    // Statistics of the main org's calendars only.
    let (ids, stats) = write_users(dir, n, &views, |i| {
        let (files, stats) = user_files_with(spec.seed, spec.events, spec.detail, i);
        (
            files,
            if i < spec.users {
                stats
            } else {
                GenStats::default()
            },
        )
    })?;
    let users = ids
        .into_iter()
        .take(spec.users)
        .map(|id| GenUser { id })
        .collect();
    Ok((users, stats))
}

/// One view's `calstatus.toml`: the repository's rules (absolute), the org
/// directory as the only file root.
fn write_config(
    dir: &Path,
    seed: u64,
    view: &View,
    rules: &Path,
    path: &Path,
) -> Result<(), String> {
    let config = format!(
        "# Synthetic benchmark org written by tests/support/orggen (seed {seed}).\n\
         [org]\n\
         rules = {rules:?}\n\
         users = {users:?}\n\
         timezone = \"UTC\"\n\
         language = \"en\"\n\
         internal_domains = [\"contoso.com\"]\n\
         \n\
         [fetch]\n\
         file_roots = [{root:?}]\n",
        rules = rules.display().to_string(),
        users = view.dir,
        root = dir.display().to_string(),
    );
    std::fs::write(path, config).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The files in `dir` whose name ends in `.ext`, sorted.
pub fn files_with_ext(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    Ok(files)
}

/// Reads the user ids back from an org generated earlier.
pub fn existing_users(dir: &Path) -> Result<Vec<GenUser>, String> {
    let mut out = Vec::new();
    for f in files_with_ext(&dir.join("users"), "toml")? {
        let text = std::fs::read_to_string(&f).map_err(|e| e.to_string())?;
        if let Some(id) = text
            .lines()
            .find_map(|l| l.strip_prefix("user = \""))
            .and_then(|r| r.strip_suffix('"'))
        {
            out.push(GenUser { id: id.to_string() });
        }
    }
    Ok(out)
}
