//! Naming calendar sources — pure, no IO. A source as written in a user
//! file becomes one canonical [`Source`] (every spelling of one calendar is
//! one source), and sources, URLs and free text are shown redacted:
//! published-calendar URLs are secrets (tokens in the query, long private
//! path segments, credentials), so they never print whole. Reading sources
//! is `source`'s business.

use std::path::{Path, PathBuf};

/// Why a source string names no calendar.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not a file path or a supported URL (shown redacted).
    #[error("unsupported calendar source {0:?}: use a file path, https:// or webcal://")]
    Unsupported(String),
}

/// Where a calendar comes from.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// A local file (absolute).
    File(PathBuf),
    /// An http(s) URL (webcal already rewritten).
    Url(url::Url),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Url(u) => write!(f, "{}", redact_url(u)),
        }
    }
}

/// Redacted too: a `{:?}` in a log line must not print a token.
impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => f.debug_tuple("File").field(p).finish(),
            Source::Url(u) => f.debug_tuple("Url").field(&redact_url(u)).finish(),
        }
    }
}

/// Path segments longer than this are taken for secrets (Google's and
/// Outlook's private calendar URLs carry their tokens there).
const SECRET_SEGMENT: usize = 24;

/// A URL without its query string, fragment, credentials and long path
/// segments: published-calendar URLs carry secret tokens there, and
/// reports and logs must not show them. A long segment becomes `…` and a
/// 4-digit fingerprint, so two private calendars on one host stay apart
/// in a report without revealing any character of their tokens.
pub fn redact_url(u: &url::Url) -> String {
    let mut out = format!("{}://", u.scheme());
    if let Some(host) = u.host_str() {
        out.push_str(host);
    }
    if let Some(port) = u.port() {
        out.push_str(&format!(":{port}"));
    }
    match u.path_segments() {
        Some(segs) => {
            for seg in segs {
                out.push('/');
                out.push_str(&redact_segment(seg));
            }
        }
        None => out.push_str(&redact_segment(u.path())),
    }
    if u.query().is_some() {
        out.push_str("?…");
    }
    out
}

/// A path segment as shown: itself, or `…` and a fingerprint when long.
fn redact_segment(seg: &str) -> String {
    // "…" left by an earlier redaction comes back percent-encoded.
    let seg = seg.replace("%E2%80%A6", "…");
    if seg.len() <= SECRET_SEGMENT {
        return seg;
    }
    use sha2::Digest;
    let d = sha2::Sha256::digest(seg.as_bytes());
    format!("…{:02x}{:02x}", d[0], d[1])
}

/// A calendar source as written in a user file, redacted for messages: a
/// URL as [`redact_url`]; text that does not parse as a URL is cut at its
/// query and its long segments are hidden the same way.
pub fn redact_str(s: &str) -> String {
    let t = s.trim();
    if let Ok(u) = url::Url::parse(t)
        && u.has_host()
    {
        return redact_url(&u);
    }
    let (head, cut) = match t.find(['?', '#']) {
        Some(i) => (&t[..i], true),
        None => (t, false),
    };
    let authority = if head.contains("://") { 2 } else { usize::MAX };
    let mut out: String = head
        .split('/')
        .enumerate()
        .map(|(i, seg)| match seg.rsplit_once('@') {
            // user:password@host
            Some((_, host)) if i == authority => format!("…@{host}"),
            _ => redact_segment(seg),
        })
        .collect::<Vec<_>>()
        .join("/");
    if cut {
        out.push_str("?…");
    }
    out
}

/// Free text (an error message, a cause chain) with every secret part of
/// `urls` hidden — the whole URL, its query, fragment, credentials and
/// long path segments, raw or percent-decoded — and every other URL-like
/// word (`scheme://…`) redacted as [`redact_str`] does.
pub fn scrub(text: &str, urls: &[&url::Url]) -> String {
    let mut out = text.to_string();
    for u in urls {
        out = out.replace(u.as_str(), &redact_url(u));
        let mut secrets: Vec<String> = Vec::new();
        if let Some(q) = u.query() {
            secrets.push(q.to_string());
            // Each parameter and each value on its own.
            for pair in q.split('&') {
                secrets.push(pair.to_string());
                secrets.extend(pair.split_once('=').map(|(_, v)| v.to_string()));
            }
        }
        secrets.extend(u.fragment().map(str::to_string));
        secrets.extend(u.password().map(str::to_string));
        secrets.push(u.username().to_string());
        if let Some(segs) = u.path_segments() {
            secrets.extend(
                segs.filter(|s| s.len() > SECRET_SEGMENT)
                    .map(str::to_string),
            );
        }
        let decoded: Vec<String> = secrets
            .iter()
            .map(|s| {
                url::form_urlencoded::parse(s.as_bytes())
                    .map(|(k, v)| {
                        if v.is_empty() {
                            k.into_owned()
                        } else {
                            format!("{k}={v}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("&")
            })
            .collect();
        let mut all: Vec<String> = secrets.into_iter().chain(decoded).collect();
        // Longest first, so a secret's parts do not break up the whole.
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for secret in all {
            // A secret of one or two characters is no secret; replacing it would mangle the text.
            if secret.chars().count() >= 3 {
                out = out.replace(&secret, "…");
            }
        }
    }
    redact_text(&out)
}

/// Free text with every URL-like word (`scheme://…`) redacted as
/// [`redact_str`] does.
pub fn redact_text(text: &str) -> String {
    let stop = |c: char| c.is_whitespace() || "\"'<>(){}`|\\^,;".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        // The scheme: letters, digits, + - . before "://".
        let start = rest[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
            .map(|j| j + 1)
            .unwrap_or(0);
        let mut end = rest[i..].find(stop).map(|j| i + j).unwrap_or(rest.len());
        // Sentence punctuation after a URL is not part of it.
        while end > i + 3 && rest[..end].ends_with([':', '.', '!', '?']) {
            end -= 1;
        }
        out.push_str(&rest[..start]);
        if start == i {
            // No scheme: not a URL.
            out.push_str(&rest[i..end]);
        } else {
            out.push_str(&redact_str(&rest[start..end]));
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Reads a source string from a user file. Relative paths are taken from `base`.
///
/// The result is canonical, so that every spelling of one calendar is one
/// `Source` (fetched and parsed once, listed once per user): a file is an
/// absolute path with `.`, `..` and repeated separators resolved lexically
/// (`calendars/../calendars//x.ics` is `<base>/calendars/x.ics`; symbolic
/// links are resolved when the file is read); a URL has its scheme and host
/// in lower case, no default port, no trailing dot on the host, its dot
/// segments resolved, percent-escapes of unreserved characters decoded and
/// the others in upper case, no fragment and no empty query; `webcal://` is
/// `https://`.
pub fn parse_source(s: &str, base: &Path) -> Result<Source, AddressError> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let url = |text: &str| {
        url::Url::parse(text)
            .map(|u| Source::Url(normalise_url(u)))
            .map_err(|_| AddressError::Unsupported(redact_str(s)))
    };
    if lower.starts_with("webcal://") || lower.starts_with("webcals://") {
        let rest = &t[t.find("://").map(|i| i + 3).unwrap_or(0)..];
        return url(&format!("https://{rest}"));
    }
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return url(t);
    }
    if lower.contains("://") {
        return Err(AddressError::Unsupported(redact_str(s)));
    }
    let p = t.strip_prefix("file:").unwrap_or(t);
    let path = Path::new(p);
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    let absolute = std::path::absolute(&joined).unwrap_or(joined);
    Ok(Source::File(normalise_path(&absolute)))
}

/// `.`, `..` and repeated separators resolved without the file system
/// (`..` at the root stays at the root).
fn normalise_path(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => out.push(c.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() && !out.has_root() {
                    out.push("..");
                }
            }
            Component::Normal(seg) => out.push(seg),
        }
    }
    out
}

/// The canonical form of a URL (see [`parse_source`]). The parser already
/// lower-cases scheme and host, drops the default port and resolves dot
/// segments.
fn normalise_url(mut u: url::Url) -> url::Url {
    u.set_fragment(None);
    if let Some(url::Host::Domain(d)) = u.host()
        && d.len() > 1
        && d.ends_with('.')
    {
        let host = d.trim_end_matches('.').to_string();
        let _ = u.set_host(Some(&host));
    }
    let path = normalise_escapes(u.path());
    if path != u.path() {
        // Re-parsed: a decoded `%2E` segment is resolved like `.`.
        u.set_path(&path);
    }
    match u.query().map(normalise_escapes) {
        Some(q) if q.is_empty() => u.set_query(None),
        Some(q) => u.set_query(Some(&q)),
        None => {}
    }
    u
}

/// Percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`)
/// decoded, the others with upper-case hex digits (RFC 3986, 6.2.2).
fn normalise_escapes(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            let c = (h * 16 + l) as u8;
            if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                out.push(c as char);
            } else {
                out.push_str(&format!("%{c:02X}"));
            }
            i += 3;
            continue;
        }
        let ch = s[i..].chars().next().unwrap_or('\0');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        let base = Path::new("/org");
        assert_eq!(
            parse_source("webcal://example.com/cal.ics", base).unwrap(),
            Source::Url(url::Url::parse("https://example.com/cal.ics").unwrap())
        );
        assert_eq!(
            parse_source("calendars/a.ics", base).unwrap(),
            Source::File("/org/calendars/a.ics".into())
        );
        assert!(parse_source("ftp://x/y", base).is_err());
    }

    #[test]
    fn scrubbing_hides_every_secret_part_of_a_url_in_free_text() {
        let u = url::Url::parse(
            "https://me:pa55word@cal.example/ical/0123456789abcdefghijklmnopqrstuv/basic.ics?token=s3cr%2Ft&x=1",
        )
        .unwrap();
        let text = format!(
            "error for url ({u}): token=s3cr/t; segment 0123456789abcdefghijklmnopqrstuv; pa55word; \
             then https://other.example/a?b=s3cr3t2: and (webcal://x.example/c?d=e)."
        );
        let out = scrub(&text, &[&u]);
        for secret in [
            "s3cr",
            "0123456789abcdef",
            "pa55word",
            "s3cr3t2",
            "d=e",
            "me:",
        ] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("https://cal.example/ical/…"), "{out}");
        assert!(out.contains("https://other.example/a?…: and"), "{out}");
        assert!(out.contains("(webcal://x.example/c?…)."), "{out}");
        // IPv6 literals, parsable or not, are part of the URL.
        let out = redact_text(
            "to http://[::1]:8/x?t=s3cret and http://[::1/0123456789abcdefghijklmnopqrstuv?t=s3cret",
        );
        assert!(
            !out.contains("s3cret") && !out.contains("0123456789"),
            "{out}"
        );
        assert!(out.starts_with("to http://[::1]:8/x?…"), "{out}");
        // Idempotent: a redacted text stays as it is.
        assert_eq!(redact_text(&out), out);
    }

    #[test]
    fn unreadable_sources_are_redacted_too() {
        assert_eq!(
            redact_str("https://exa mple.com/0123456789abcdefghijklmnopqrstuv/x?token=s"),
            format!(
                "https://exa mple.com/{}/x?…",
                redact_segment("0123456789abcdefghijklmnopqrstuv")
            )
        );
        assert_eq!(redact_str("ftp://u:p@h/x#frag"), "ftp://h/x");
        assert_eq!(redact_str("gopher://u:p w@h /x?y"), "gopher://…@h /x?…");
        let e = parse_source("ftp://h/x.ics?token=s3cret", Path::new("/org")).unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn every_spelling_of_a_source_is_one_source() {
        let base = Path::new("/org");
        let file = Source::File("/org/calendars/x.ics".into());
        for spelling in [
            "calendars/x.ics",
            "calendars/../calendars/x.ics",
            "./calendars/x.ics",
            "calendars//x.ics",
            "calendars/./x.ics",
            "calendars/sub/../x.ics",
            "calendars/x.ics/",
            "../org/calendars/x.ics",
            "/org/calendars/x.ics",
            "/org//calendars/../calendars/x.ics",
            "file:calendars/x.ics",
            " calendars/x.ics ",
        ] {
            assert_eq!(parse_source(spelling, base).unwrap(), file, "{spelling}");
        }
        assert_eq!(
            parse_source("/../../org/calendars/x.ics", base).unwrap(),
            file
        );
        let url = Source::Url(url::Url::parse("https://example.com/a/cal.ics?k=%2F").unwrap());
        for spelling in [
            "https://example.com/a/cal.ics?k=%2F",
            "HTTPS://Example.COM:443/a/./b/../cal.ics?k=%2f",
            "webcal://example.com/a/cal.ics?k=%2F",
            "WebCals://EXAMPLE.com/a/%63al.ics?k=%2F#calendar",
            "https://example.com./a/cal.ics?k=%2F",
            "https://example.com/a/%2e/cal.ics?%6B=%2F",
            "https://example.com/a/b/%2E%2E/cal.ics?k=%2F",
        ] {
            assert_eq!(parse_source(spelling, base).unwrap(), url, "{spelling}");
        }
        // Still different: another scheme, port, path, query or case in the path.
        for other in [
            "http://example.com/a/cal.ics?k=%2F",
            "https://example.com:8443/a/cal.ics?k=%2F",
            "https://example.com/a/cal.ics",
            "https://example.com/a/cal.ics?k=%2F&x",
            "https://example.com/A/cal.ics?k=%2F",
        ] {
            assert_ne!(parse_source(other, base).unwrap(), url, "{other}");
        }
        // Empty queries go; percent-encoded non-ASCII stays as it is.
        assert_eq!(
            parse_source("https://example.com/caf%c3%a9.ics?", base).unwrap(),
            Source::Url(url::Url::parse("https://example.com/caf%C3%A9.ics").unwrap())
        );
    }

    #[test]
    fn redaction_hides_tokens() {
        let u = url::Url::parse("https://outlook.office365.com/owa/calendar/abcdef0123456789abcdef0123456789/reachcalendar.ics?token=s3cret").unwrap();
        let r = redact_url(&u);
        assert!(
            !r.contains("s3cret") && !r.contains("abcdef0123456789abcdef"),
            "{r}"
        );
    }
}
