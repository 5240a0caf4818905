//! Message templates: `In a meeting until {end:%H:%M}`.
//!
//! Placeholders are `{summary}`, `{location}`, `{organizer}`, `{start}`,
//! `{end}` and `{duration}`; `start`/`end` take a chrono format after a colon,
//! rendered in the user's zone, with weekday and month names in the user's
//! language. `{{` and `}}` are literal braces. Templates are checked when
//! loaded (unknown placeholder, bad format), so rendering never fails. Pure.

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Datelike, Duration, FixedOffset, Timelike};

/// Longest message Teams shows; longer ones are cut on a character boundary.
pub const MAX_MESSAGE_CHARS: usize = 280;

/// A value a placeholder stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// SUMMARY.
    Summary,
    /// LOCATION.
    Location,
    /// ORGANIZER's name or address.
    Organizer,
    /// Start, local.
    Start,
    /// End, local.
    End,
    /// End minus start.
    Duration,
}

impl Field {
    fn parse(s: &str) -> Option<Field> {
        Some(match s {
            "summary" => Field::Summary,
            "location" => Field::Location,
            "organizer" => Field::Organizer,
            "start" => Field::Start,
            "end" => Field::End,
            "duration" => Field::Duration,
            _ => return None,
        })
    }

    /// `true` for fields that reveal what a meeting is about.
    pub fn is_revealing(self) -> bool {
        matches!(self, Field::Summary | Field::Location | Field::Organizer)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(Field, Option<String>),
}

/// A checked template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

/// What a template is filled with.
#[derive(Clone, Debug)]
pub struct Vars<'a> {
    /// SUMMARY.
    pub summary: Option<&'a str>,
    /// LOCATION.
    pub location: Option<&'a str>,
    /// ORGANIZER display name or email.
    pub organizer: Option<&'a str>,
    /// Start in the user's zone.
    pub start: DateTime<FixedOffset>,
    /// End in the user's zone.
    pub end: DateTime<FixedOffset>,
    /// Language for weekday and month names.
    pub language: &'a str,
}

impl Template {
    /// Parses and checks a template.
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = s.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let rest = &s[i + 1..];
                    let close = rest
                        .find('}')
                        .ok_or_else(|| format!("unclosed '{{' at character {}", i + 1))?;
                    let inner = &rest[..close];
                    let (name, fmt) = match inner.split_once(':') {
                        Some((n, f)) => (n.trim(), Some(f.to_string())),
                        None => (inner.trim(), None),
                    };
                    let field = Field::parse(name).ok_or_else(|| {
                        format!(
                            "unknown placeholder {{{name}}}; use {{summary}}, {{location}}, {{organizer}}, {{start}}, {{end}} or {{duration}}"
                        )
                    })?;
                    if let Some(f) = &fmt {
                        if !matches!(field, Field::Start | Field::End) {
                            return Err(format!("{{{name}}} takes no format"));
                        }
                        check_format(f)?;
                    }
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Field(field, fmt));
                    for _ in 0..inner.chars().count() + 1 {
                        chars.next();
                    }
                }
                '}' => return Err(format!("unmatched '}}' at character {}", i + 1)),
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template {
            source: s.to_string(),
            pieces,
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// `true` when the template shows summary, location or organizer.
    pub fn reveals_details(&self) -> bool {
        self.pieces
            .iter()
            .any(|p| matches!(p, Piece::Field(f, _) if f.is_revealing()))
    }

    /// Renders the message, cut to [`MAX_MESSAGE_CHARS`].
    pub fn render(&self, v: &Vars<'_>) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(f, fmt) => match f {
                    Field::Summary => out.push_str(v.summary.unwrap_or("").trim()),
                    Field::Location => out.push_str(v.location.unwrap_or("").trim()),
                    Field::Organizer => out.push_str(v.organizer.unwrap_or("").trim()),
                    Field::Start => {
                        out.push_str(&format_time(&v.start, fmt.as_deref(), v.language))
                    }
                    Field::End => out.push_str(&format_time(&v.end, fmt.as_deref(), v.language)),
                    Field::Duration => out.push_str(&human_duration(v.end - v.start)),
                },
            }
        }
        // Collapse whitespace (summaries may hold newlines) and cut.
        let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
        truncate_chars(&out, MAX_MESSAGE_CHARS)
    }
}

/// Cuts a string to at most `n` characters, on a character boundary.
pub fn truncate_chars(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

fn check_format(f: &str) -> Result<(), String> {
    if f.is_empty() {
        return Err("empty time format".into());
    }
    if StrftimeItems::new(f).any(|i| matches!(i, Item::Error)) {
        return Err(format!("invalid time format {f:?}"));
    }
    Ok(())
}

/// `1h 30m`, `45m`, `2d`, `3d 4h`.
pub fn human_duration(d: Duration) -> String {
    let mins = d.num_minutes().max(0);
    let (days, hours, m) = (mins / 1440, (mins % 1440) / 60, mins % 60);
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(format!("{days}d"));
    }
    if hours > 0 {
        parts.push(format!("{hours}h"));
    }
    if m > 0 && days == 0 {
        parts.push(format!("{m}m"));
    }
    if parts.is_empty() {
        "0m".into()
    } else {
        parts.join(" ")
    }
}

/// Weekday and month names of a language: (weekdays from Monday, abbreviated
/// weekdays, months, abbreviated months).
type Names = (
    [&'static str; 7],
    [&'static str; 7],
    [&'static str; 12],
    [&'static str; 12],
);

fn names(language: &str) -> Option<&'static Names> {
    let lang = language
        .split(['-', '_'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    Some(match lang.as_str() {
        "pt" => &PT,
        "es" => &ES,
        "fr" => &FR,
        "de" => &DE,
        "it" => &IT,
        "nl" => &NL,
        _ => return None,
    })
}

/// Languages with their own weekday and month names (English is chrono's).
pub const LANGUAGES: &[&str] = &["en", "pt", "es", "fr", "de", "it", "nl"];

static PT: Names = (
    [
        "segunda-feira",
        "terça-feira",
        "quarta-feira",
        "quinta-feira",
        "sexta-feira",
        "sábado",
        "domingo",
    ],
    ["seg", "ter", "qua", "qui", "sex", "sáb", "dom"],
    [
        "janeiro",
        "fevereiro",
        "março",
        "abril",
        "maio",
        "junho",
        "julho",
        "agosto",
        "setembro",
        "outubro",
        "novembro",
        "dezembro",
    ],
    [
        "jan", "fev", "mar", "abr", "mai", "jun", "jul", "ago", "set", "out", "nov", "dez",
    ],
);
static ES: Names = (
    [
        "lunes",
        "martes",
        "miércoles",
        "jueves",
        "viernes",
        "sábado",
        "domingo",
    ],
    ["lun", "mar", "mié", "jue", "vie", "sáb", "dom"],
    [
        "enero",
        "febrero",
        "marzo",
        "abril",
        "mayo",
        "junio",
        "julio",
        "agosto",
        "septiembre",
        "octubre",
        "noviembre",
        "diciembre",
    ],
    [
        "ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sept", "oct", "nov", "dic",
    ],
);
static FR: Names = (
    [
        "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche",
    ],
    ["lun.", "mar.", "mer.", "jeu.", "ven.", "sam.", "dim."],
    [
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ],
    [
        "janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.",
        "déc.",
    ],
);
static DE: Names = (
    [
        "Montag",
        "Dienstag",
        "Mittwoch",
        "Donnerstag",
        "Freitag",
        "Samstag",
        "Sonntag",
    ],
    ["Mo", "Di", "Mi", "Do", "Fr", "Sa", "So"],
    [
        "Januar",
        "Februar",
        "März",
        "April",
        "Mai",
        "Juni",
        "Juli",
        "August",
        "September",
        "Oktober",
        "November",
        "Dezember",
    ],
    [
        "Jan", "Feb", "Mär", "Apr", "Mai", "Jun", "Jul", "Aug", "Sep", "Okt", "Nov", "Dez",
    ],
);
static IT: Names = (
    [
        "lunedì",
        "martedì",
        "mercoledì",
        "giovedì",
        "venerdì",
        "sabato",
        "domenica",
    ],
    ["lun", "mar", "mer", "gio", "ven", "sab", "dom"],
    [
        "gennaio",
        "febbraio",
        "marzo",
        "aprile",
        "maggio",
        "giugno",
        "luglio",
        "agosto",
        "settembre",
        "ottobre",
        "novembre",
        "dicembre",
    ],
    [
        "gen", "feb", "mar", "apr", "mag", "giu", "lug", "ago", "set", "ott", "nov", "dic",
    ],
);
static NL: Names = (
    [
        "maandag",
        "dinsdag",
        "woensdag",
        "donderdag",
        "vrijdag",
        "zaterdag",
        "zondag",
    ],
    ["ma", "di", "wo", "do", "vr", "za", "zo"],
    [
        "januari",
        "februari",
        "maart",
        "april",
        "mei",
        "juni",
        "juli",
        "augustus",
        "september",
        "oktober",
        "november",
        "december",
    ],
    [
        "jan", "feb", "mrt", "apr", "mei", "jun", "jul", "aug", "sep", "okt", "nov", "dec",
    ],
);

/// Formats a local time; `%A %a %B %b %h` follow the language.
fn format_time(t: &DateTime<FixedOffset>, fmt: Option<&str>, language: &str) -> String {
    let fmt = fmt.unwrap_or("%H:%M");
    // Most messages say "until 10:30": written here, not through chrono's
    // strftime (which reads the format again for every status).
    if fmt == "%H:%M" {
        let digit = |n: u32| char::from(b'0' + (n % 10) as u8);
        let (h, m) = (t.hour(), t.minute());
        return [digit(h / 10), digit(h), ':', digit(m / 10), digit(m)]
            .into_iter()
            .collect();
    }
    let fmt = match names(language) {
        None => fmt.to_string(),
        Some(n) => {
            let wd = t.weekday().num_days_from_monday() as usize;
            let mo = t.month0() as usize;
            let mut out = String::new();
            let mut chars = fmt.chars().peekable();
            while let Some(c) = chars.next() {
                if c != '%' {
                    out.push(c);
                    continue;
                }
                let Some(&next) = chars.peek() else {
                    out.push('%');
                    continue;
                };
                let lit = match next {
                    'A' => Some(n.0[wd]),
                    'a' => Some(n.1[wd]),
                    'B' => Some(n.2[mo]),
                    'b' | 'h' => Some(n.3[mo]),
                    _ => None,
                };
                match lit {
                    Some(l) => {
                        chars.next();
                        out.push_str(&l.replace('%', "%%"));
                    }
                    None => {
                        out.push('%');
                        out.push(next);
                        chars.next();
                    }
                }
            }
            out
        }
    };
    let mut s = String::new();
    use std::fmt::Write;
    if write!(s, "{}", t.format(&fmt)).is_err() {
        s = t.format("%H:%M").to_string();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn vars(lang: &str) -> Vars<'_> {
        let off = FixedOffset::east_opt(0).unwrap();
        Vars {
            summary: Some("Weekly sync"),
            location: None,
            organizer: Some("Bob"),
            start: off.with_ymd_and_hms(2026, 11, 27, 9, 0, 0).unwrap(),
            end: off.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap(),
            language: lang,
        }
    }

    #[test]
    fn hours_and_minutes_are_written_as_strftime_writes_them() {
        let off = FixedOffset::east_opt(5 * 3600 + 1800).unwrap();
        for minutes in (0..24 * 60).step_by(7) {
            let t = off.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap()
                + chrono::Duration::minutes(minutes);
            let want = t.format("%H:%M").to_string();
            assert_eq!(format_time(&t, None, "en"), want);
            assert_eq!(format_time(&t, Some("%H:%M"), "de"), want);
        }
    }

    #[test]
    fn renders_placeholders_and_languages() {
        let t = Template::parse("Out of office until {end:%A %-d %B}").unwrap();
        assert_eq!(
            t.render(&vars("en")),
            "Out of office until Monday 30 November"
        );
        let t = Template::parse("Fora do escritório até {end:%A, %-d de %B}").unwrap();
        assert_eq!(
            t.render(&vars("pt")),
            "Fora do escritório até segunda-feira, 30 de novembro"
        );
        let t = Template::parse("{summary} ({duration}) {{x}} until {end}").unwrap();
        assert_eq!(
            t.render(&vars("en")),
            "Weekly sync (2d 15h) {x} until 00:00"
        );
        assert!(t.reveals_details());
    }

    #[test]
    fn rejects_bad_templates() {
        assert!(
            Template::parse("{sumary}")
                .unwrap_err()
                .contains("unknown placeholder")
        );
        assert!(Template::parse("{end:%Q}").is_err());
        assert!(Template::parse("{summary:%H}").is_err());
        assert!(Template::parse("until {end").is_err());
        assert!(Template::parse("a } b").is_err());
    }

    #[test]
    fn cuts_on_char_boundary() {
        let t = Template::parse(&"é".repeat(300)).unwrap();
        let out = t.render(&vars("en"));
        assert_eq!(out.chars().count(), MAX_MESSAGE_CHARS);
    }
}
