//! Calendar sources: local files and HTTP(S)/webcal URLs. This is IO.
//!
//! A user file decides what the bot reads, so every source passes a policy
//! first: files must lie under the allowed roots (the org directory by
//! default) and be regular files — checked again on the opened file, which
//! is opened without blocking, so a FIFO or device never stalls a run —
//! URLs must be `https` (or `webcal`, read as `https`) unless plain
//! HTTP is allowed, and no connection is made to loopback, private,
//! link-local (cloud metadata) or other internal addresses unless the org
//! allows it — checked on every DNS answer and every redirect. Files and
//! responses are capped in size and in time (`fetch.timeout` for the whole
//! read).
//!
//! Published-calendar URLs are secrets (tokens in the query, long private
//! path segments, credentials). A source displays redacted
//! ([`redact_url`]), and every error built here is scrubbed of every URL of
//! its redirect chain ([`scrub`]): redirects are followed here, hop by hop,
//! not inside the HTTP client, so each hop is known, checked and redacted.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::retry::{RetryPolicy, Transient, retryable_status};

pub use super::address::{Source, parse_source, redact_str, redact_text, redact_url, scrub};
/// What sources may be read.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Directories under which calendar files may be read.
    pub file_roots: Vec<PathBuf>,
    /// Allow plain `http://` URLs.
    pub allow_http: bool,
    /// Allow connections to loopback/private/link-local addresses.
    pub allow_private_networks: bool,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Largest response body accepted.
    pub max_bytes: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            file_roots: Vec::new(),
            allow_http: false,
            allow_private_networks: false,
            timeout: Duration::from_secs(20),
            max_bytes: 20 * 1024 * 1024,
        }
    }
}

/// Why a source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file does not exist or cannot be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A FIFO, device, directory, … named as a calendar file.
    #[error("{path} is {kind}, not a regular file; calendars are read from regular files only")]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is ("a FIFO", "a character device", …).
        kind: &'static str,
    },
    /// The file lies outside the allowed directories.
    #[error("{0} is outside the directories calendars may be read from")]
    OutsideRoots(PathBuf),
    /// Not a file path or a supported URL.
    #[error("unsupported calendar source {0:?}: use a file path, https:// or webcal://")]
    Unsupported(String),
    /// Plain HTTP without permission.
    #[error(
        "{0} uses plain http://, which is not allowed (set fetch.allow_http = true to permit it)"
    )]
    PlainHttp(String),
    /// The host resolves to an internal address.
    #[error(
        "{host} resolves to {ip}, an internal address calstatus does not connect to (fetch.allow_private_networks)"
    )]
    Blocked {
        /// The host name.
        host: String,
        /// The refused address.
        ip: IpAddr,
    },
    /// The server answered with an error status.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL (redacted).
        url: String,
        /// The status.
        status: u16,
        /// How long the server asked to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// The body is larger than the cap.
    #[error("{url} sent more than {limit} bytes; stopped reading")]
    TooLarge {
        /// The URL (redacted).
        url: String,
        /// The cap.
        limit: u64,
    },
    /// The connection failed or broke (refused, reset, TLS, DNS, …): worth
    /// another try.
    #[error("cannot fetch {url}: {reason}")]
    Transport {
        /// The URL (redacted).
        url: String,
        /// One-line reason (URLs in it redacted).
        reason: String,
    },
    /// Any other failure to fetch (too many redirects, a client that cannot
    /// be built, …).
    #[error("cannot fetch {url}: {reason}")]
    Http {
        /// The URL (redacted).
        url: String,
        /// One-line reason (URLs in it redacted).
        reason: String,
    },
    /// A redirect to somewhere calstatus does not go.
    #[error("{url} redirected to {to}: {error}")]
    Redirect {
        /// The URL asked for (redacted).
        url: String,
        /// Where it pointed (redacted).
        to: String,
        /// Why that is refused.
        error: Box<SourceError>,
    },
    /// No complete answer within `fetch.timeout`.
    #[error("{what} was not read within {} (fetch.timeout)", humantime::format_duration(*.after))]
    Timeout {
        /// The source (redacted).
        what: String,
        /// The limit.
        after: Duration,
    },
}

/// `true` for addresses a user-supplied URL must never reach.
///
/// IPv4: loopback, private, link-local (cloud metadata), CGNAT, "this
/// network", broadcast, multicast, documentation, benchmarking, IETF
/// protocol assignments, the 6to4 relay anycast and everything reserved.
/// IPv6: loopback, unspecified, multicast, unique-local, link-local,
/// site-local, discard-only, documentation, ORCHID, benchmarking, SRv6 and
/// the rest of the IETF special-purpose block 2001::/23 — and every form
/// that embeds an IPv4 address (IPv4-compatible, -mapped, -translated, 6to4,
/// NAT64 and Teredo), judged by the IPv4 addresses it carries, since a
/// translator or relay would deliver to them.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (64..128).contains(&o[1])) // CGNAT
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 192 && o[1] == 88 && o[2] == 99) // 6to4 relay anycast
        || (o[0] == 198 && (18..20).contains(&o[1])) // benchmarking
        || o[0] >= 240 // reserved
}

fn is_internal_v6(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    // IPv4-compatible ::a.b.c.d (also covers :: and ::1) and IPv4-mapped ::ffff:a.b.c.d.
    if s[..5] == [0; 5] && (s[5] == 0 || s[5] == 0xffff) {
        return is_internal_v4(v4(s[6], s[7]));
    }
    // IPv4-translated ::ffff:0:a.b.c.d (SIIT).
    if s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
        return is_internal_v4(v4(s[6], s[7]));
    }
    // 6to4 2002:AABB:CCDD::/48.
    if s[0] == 0x2002 {
        return is_internal_v4(v4(s[1], s[2]));
    }
    // NAT64: the well-known prefix 64:ff9b::/96 carries the IPv4 address in
    // its last 32 bits; the rest of 64:ff9b::/32 (including the local-use
    // 64:ff9b:1::/48, whose translators are site-specific) is internal.
    if s[0] == 0x64 && s[1] == 0xff9b {
        return s[2..6] != [0; 4] || is_internal_v4(v4(s[6], s[7]));
    }
    // Teredo 2001:0::/32: server IPv4 in bits 32..64, client IPv4 inverted in the last 32.
    if s[0] == 0x2001 && s[1] == 0 {
        return is_internal_v4(v4(s[2], s[3])) || is_internal_v4(v4(!s[6], !s[7]));
    }
    v6.is_loopback()
        || v6.is_unspecified()
        || v6.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site local fec0::/10 (deprecated)
        || (s[0] == 0x100 && s[1..4] == [0; 3]) // discard-only 100::/64
        || (s[0] == 0x2001 && s[1] < 0x200) // IETF special-purpose 2001::/23 (ORCHID, benchmarking, …)
        || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation 2001:db8::/32
        || (s[0] == 0x3fff && s[1] < 0x1000) // documentation 3fff::/20
        || s[0] == 0x5f00 // SRv6 SIDs 5f00::/16
}

/// A resolver that drops internal addresses (unless allowed).
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let first = addrs.first().copied();
            let ok: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| allow || !is_internal(a.ip()))
                .collect();
            if ok.is_empty() {
                let err: Box<dyn std::error::Error + Send + Sync> = match first {
                    Some(a) => Box::new(SourceError::Blocked { host, ip: a.ip() }),
                    None => format!("{host} has no address").into(),
                };
                return Err(err);
            }
            let it: reqwest::dns::Addrs = Box::new(ok.into_iter());
            Ok(it)
        })
    }
}

/// Checks a URL's scheme and literal-IP host against the policy.
fn check_url(u: &url::Url, policy: &Policy) -> Result<(), SourceError> {
    match u.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        "http" => return Err(SourceError::PlainHttp(redact_url(u))),
        _ => return Err(SourceError::Unsupported(redact_url(u))),
    }
    let ip = match u.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(d))
            if d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost") =>
        {
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        }
        _ => None,
    };
    if let Some(ip) = ip
        && !policy.allow_private_networks
        && is_internal(ip)
    {
        return Err(SourceError::Blocked {
            host: u.host_str().unwrap_or_default().to_string(),
            ip,
        });
    }
    Ok(())
}

/// Redirects followed per URL.
pub const MAX_REDIRECTS: usize = 5;

/// What a previous read said about a source, to ask whether it changed:
/// a URL's `ETag`/`Last-Modified`, a file's length, modification time and
/// inode.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Validators {
    /// The `ETag` of the last answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The `Last-Modified` of the last answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// (length, modification time in ns since the epoch, inode) of a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<(u64, i128, u64)>,
}

impl Validators {
    fn of_file(meta: &std::fs::Metadata) -> Validators {
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        #[cfg(unix)]
        let ino = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let ino = 0;
        Validators {
            file: Some((meta.len(), mtime, ino)),
            ..Validators::default()
        }
    }

    fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none() && self.file.is_none()
    }
}

/// The answer to "has it changed since?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// Not since the validators given (a 304, or a file with the same
    /// length, time and inode): nothing was downloaded or read.
    Unchanged,
    /// The text, with what to ask next time.
    Text {
        /// The text (lossy UTF-8).
        text: String,
        /// The validators of this read.
        validators: Validators,
    },
}

/// Fetches calendars; one per process, shared by all users.
#[derive(Clone)]
pub struct Fetcher {
    /// Built at the first URL (loading the system's trust roots costs more
    /// than planning a person whose calendars are files).
    client: Arc<std::sync::OnceLock<Result<reqwest::Client, String>>>,
    policy: Arc<Policy>,
    /// `policy.file_roots`, resolved once.
    roots: Arc<Vec<PathBuf>>,
}

/// Installs the `ring` crypto provider for rustls once per process.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Fetcher {
    /// A fetcher for a policy (its HTTP client is built when first needed,
    /// and a failure to build it is that fetch's error).
    pub fn new(policy: Policy) -> Fetcher {
        let client = Default::default();
        let roots = Arc::new(
            policy
                .file_roots
                .iter()
                .map(|r| std::fs::canonicalize(r).unwrap_or_else(|_| r.clone()))
                .collect(),
        );
        Fetcher {
            client,
            policy: Arc::new(policy),
            roots,
        }
    }

    /// The HTTP client, built on first use.
    fn client(&self) -> Result<&reqwest::Client, SourceError> {
        let built = self.client.get_or_init(|| {
            install_crypto();
            reqwest::Client::builder()
                .user_agent(concat!("calstatus/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(self.policy.timeout.min(Duration::from_secs(10)))
                // Redirects are followed by `get`, which checks and redacts every hop.
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .dns_resolver(Arc::new(GuardedResolver {
                    allow_private: self.policy.allow_private_networks,
                }))
                .build()
                .map_err(|e| e.to_string())
        });
        built.as_ref().map_err(|reason| SourceError::Http {
            url: String::new(),
            reason: reason.clone(),
        })
    }

    /// The policy it fetches under.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Reads a source's text (lossy UTF-8), within `policy.timeout` for
    /// the whole read (every redirect and the body included).
    pub async fn fetch(&self, source: &Source) -> Result<String, SourceError> {
        match self.fetch_if_changed(source, None).await? {
            Read::Text { text, .. } => Ok(text),
            Read::Unchanged => Err(SourceError::Http {
                url: source.to_string(),
                reason: "unchanged, but nothing was known of it".into(),
            }),
        }
    }

    /// Reads a source unless it is unchanged since `known` (a conditional
    /// GET with `If-None-Match`/`If-Modified-Since`; for a file, the same
    /// length, modification time and inode), under the same policy and
    /// time bound as [`Fetcher::fetch`].
    pub async fn fetch_if_changed(
        &self,
        source: &Source,
        known: Option<&Validators>,
    ) -> Result<Read, SourceError> {
        let known = known.filter(|v| !v.is_empty());
        let read = async {
            match source {
                Source::File(path) => self.read_file(path, known).await,
                // Transient failures are tried again, all within the timeout.
                Source::Url(u) => {
                    RetryPolicy::new(URL_ATTEMPTS)
                        .run("calendar fetch", || self.get(u, known))
                        .await
                }
            }
        };
        tokio::time::timeout(self.policy.timeout, read)
            .await
            .unwrap_or_else(|_| {
                Err(SourceError::Timeout {
                    what: source.to_string(),
                    after: self.policy.timeout,
                })
            })
    }

    async fn read_file(
        &self,
        path: &Path,
        known: Option<&Validators>,
    ) -> Result<Read, SourceError> {
        // One blocking hop per file: resolve, check the roots, read.
        let path = path.to_path_buf();
        let roots = self.roots.clone();
        let limit = self.policy.max_bytes;
        let deadline = Instant::now() + self.policy.timeout;
        let after = self.policy.timeout;
        let known = known.cloned();
        tokio::task::spawn_blocking(move || {
            read_file(&path, &roots, limit, deadline, after, known.as_ref())
        })
        .await
        .map_err(|e| SourceError::Http {
            url: String::new(),
            reason: format!("reading a file failed: {e}"),
        })?
    }

    async fn get(&self, u: &url::Url, known: Option<&Validators>) -> Result<Read, SourceError> {
        check_url(u, &self.policy)?;
        let (resp, chain) = self.follow(u, known).await?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_MODIFIED && known.is_some() {
            return Ok(Read::Unchanged);
        }
        if !status.is_success() {
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(crate::retry::parse_retry_after);
            return Err(SourceError::Status {
                url: chain.shown(),
                status: status.as_u16(),
                retry_after,
            });
        }
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let validators = Validators {
            etag: header(reqwest::header::ETAG),
            last_modified: header(reqwest::header::LAST_MODIFIED),
            file: None,
        };
        let body = read_body(resp, &chain, self.policy.max_bytes).await?;
        Ok(Read::Text {
            text: text_of(body),
            validators,
        })
    }

    /// Sends a conditional GET for `u` and follows redirects (each target
    /// checked against the policy, at most [`MAX_REDIRECTS`]); returns the
    /// final answer and the chain of URLs that led to it.
    async fn follow(
        &self,
        u: &url::Url,
        known: Option<&Validators>,
    ) -> Result<(reqwest::Response, Chain), SourceError> {
        let mut chain = Chain(vec![u.clone()]);
        loop {
            let at = chain.0.last().cloned().unwrap_or_else(|| u.clone());
            let mut request = self.client()?.get(at.clone());
            if let Some(etag) = known.and_then(|v| v.etag.as_deref()) {
                request = request.header(reqwest::header::IF_NONE_MATCH, etag);
            }
            if let Some(since) = known.and_then(|v| v.last_modified.as_deref()) {
                request = request.header(reqwest::header::IF_MODIFIED_SINCE, since);
            }
            let resp = request.send().await.map_err(|e| chain.error(e))?;
            let status = resp.status().as_u16();
            let location = resp.headers().get(reqwest::header::LOCATION);
            let (true, Some(location)) = (matches!(status, 301 | 302 | 303 | 307 | 308), location)
            else {
                return Ok((resp, chain));
            };
            let refuse = |to: String, error: SourceError| SourceError::Redirect {
                url: redact_url(u),
                to,
                error: Box::new(error),
            };
            let Some(next) = location.to_str().ok().and_then(|l| at.join(l).ok()) else {
                let to = redact_str(&String::from_utf8_lossy(location.as_bytes()));
                return Err(refuse(to.clone(), SourceError::Unsupported(to)));
            };
            if chain.0.len() > MAX_REDIRECTS {
                return Err(SourceError::Http {
                    url: chain.shown(),
                    reason: format!("more than {MAX_REDIRECTS} redirects"),
                });
            }
            check_url(&next, &self.policy).map_err(|e| refuse(redact_url(&next), e))?;
            chain.0.push(next);
        }
    }
}

/// Every URL of a redirect chain, first to last: what error text names
/// (redacted) and scrubs.
struct Chain(Vec<url::Url>);

impl Chain {
    /// The chain as error text names it: the first URL, and the last if
    /// redirected, both redacted.
    fn shown(&self) -> String {
        match self.0.as_slice() {
            [only] => redact_url(only),
            [first, .., last] => {
                format!("{} (redirected to {})", redact_url(first), redact_url(last))
            }
            [] => String::new(),
        }
    }

    /// A transport error along the chain: a blocked address as itself, not
    /// as a generic connect error; anything else with every URL of the
    /// chain scrubbed from its text.
    fn error(&self, e: reqwest::Error) -> SourceError {
        let mut src: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = src {
            if let Some(SourceError::Blocked { host, ip }) = s.downcast_ref::<SourceError>() {
                return SourceError::Blocked {
                    host: host.clone(),
                    ip: *ip,
                };
            }
            src = s.source();
        }
        let urls: Vec<&url::Url> = self.0.iter().collect();
        SourceError::Transport {
            url: self.shown(),
            reason: scrub(&crate::text::error_chain(&e.without_url()), &urls),
        }
    }
}

/// Reads an answer's body, at most `limit` bytes (a larger declared or
/// actual length is refused).
async fn read_body(
    resp: reqwest::Response,
    chain: &Chain,
    limit: u64,
) -> Result<Vec<u8>, SourceError> {
    let too_large = || SourceError::TooLarge {
        url: chain.shown(),
        limit,
    };
    if resp.content_length().is_some_and(|l| l > limit) {
        return Err(too_large());
    }
    let mut body: Vec<u8> = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| chain.error(e))?;
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Attempts at a calendar URL within one fetch (and its `fetch.timeout`).
pub const URL_ATTEMPTS: u32 = 3;

/// Longest `Retry-After` waited for within a fetch; a server asking for
/// more is tried again at the next refresh instead.
pub const MAX_URL_RETRY_AFTER: Duration = Duration::from_secs(5);

impl Transient for SourceError {
    fn transient(&self) -> Option<Option<Duration>> {
        match self {
            SourceError::Transport { .. } => Some(None),
            SourceError::Status {
                status,
                retry_after,
                ..
            } if retryable_status(*status)
                && retry_after.is_none_or(|d| d <= MAX_URL_RETRY_AFTER) =>
            {
                Some(*retry_after)
            }
            _ => None,
        }
    }
}

/// Real paths (symbolic links resolved) of many files in few directories,
/// for one look at the file system: each directory is resolved once, and a
/// file that is not itself a symbolic link is its resolved directory joined
/// with its name (one `lstat` instead of a `readlink` per path component).
/// Not to be kept across passes: a directory link may be swapped (a
/// Kubernetes ConfigMap update does exactly that).
#[derive(Debug, Default)]
pub struct RealPaths {
    dirs: HashMap<PathBuf, Option<PathBuf>>,
}

impl RealPaths {
    /// What [`std::fs::canonicalize`] would return.
    pub fn resolve(&mut self, p: &Path) -> std::io::Result<PathBuf> {
        let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
            return std::fs::canonicalize(p);
        };
        if std::fs::symlink_metadata(p)?.file_type().is_symlink() {
            return std::fs::canonicalize(p);
        }
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        let dir = self
            .dirs
            .entry(parent.to_path_buf())
            .or_insert_with(|| std::fs::canonicalize(parent).ok());
        match dir {
            Some(d) => Ok(d.join(name)),
            None => std::fs::canonicalize(p),
        }
    }

    /// [`RealPaths::resolve`], or the path as given when it cannot be.
    pub fn or_given(&mut self, p: &Path) -> PathBuf {
        self.resolve(p).unwrap_or_else(|_| p.to_path_buf())
    }
}

/// Reads a calendar file (blocking): it must resolve below one of `roots`
/// and be a regular file — checked on the path, then again on what was
/// opened, since the path may change in between — and is read in chunks
/// until `limit` bytes or `deadline`. The open never blocks: a FIFO swapped
/// in after the first check is opened non-blocking and refused.
fn read_file(
    path: &Path,
    roots: &[PathBuf],
    limit: u64,
    deadline: Instant,
    after: Duration,
    known: Option<&Validators>,
) -> Result<Read, SourceError> {
    let io = |source| SourceError::File {
        path: path.to_path_buf(),
        source,
    };
    let under_roots = |p: &Path| roots.is_empty() || roots.iter().any(|r| p.starts_with(r));
    let (mut file, meta) = match open_plain(path, under_roots) {
        Some(file) => {
            let meta = file.metadata().map_err(io)?;
            regular(path, &meta)?;
            (file, meta)
        }
        None => {
            let canon = std::fs::canonicalize(path).map_err(io)?;
            if !under_roots(&canon) {
                return Err(SourceError::OutsideRoots(path.to_path_buf()));
            }
            regular(path, &std::fs::metadata(&canon).map_err(io)?)?;
            let (file, meta) = open_regular(path, &canon)?;
            if let Some(opened) = opened_path(&file)
                && !under_roots(&opened)
            {
                return Err(SourceError::OutsideRoots(path.to_path_buf()));
            }
            (file, meta)
        }
    };
    let too_large = || SourceError::TooLarge {
        url: path.display().to_string(),
        limit,
    };
    let validators = Validators::of_file(&meta);
    if known == Some(&validators) {
        return Ok(Read::Unchanged);
    }
    if meta.len() > limit {
        return Err(too_large());
    }
    // Read straight into the text's buffer, a chunk at a time so that the
    // deadline is checked between reads (a file may grow while it is read).
    // The first chunk is the size the file had when opened (plus a byte, to
    // see its end): one read for a whole file, not std's doubling reads.
    let mut bytes: Vec<u8> = Vec::new();
    loop {
        if Instant::now() > deadline {
            return Err(SourceError::Timeout {
                what: path.display().to_string(),
                after,
            });
        }
        if bytes.len() == bytes.capacity() {
            let room = (limit + 1).saturating_sub(bytes.len() as u64);
            let grow = if bytes.is_empty() {
                meta.len() + 1
            } else {
                256 * 1024
            };
            bytes.reserve_exact(grow.min(room) as usize);
        }
        match read_more(&mut file, &mut bytes) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        }
        if bytes.len() as u64 > limit {
            return Err(too_large());
        }
    }
    Ok(Read::Text {
        text: text_of(bytes),
        validators,
    })
}

/// Reads from `file` into the spare capacity of `bytes` (which has some),
/// appending what was read; 0 at the end of the file. The kernel writes
/// straight into the unused capacity (zeroing it first cost as much as
/// checking the text is UTF-8).
#[cfg(target_os = "linux")]
fn read_more(file: &mut std::fs::File, bytes: &mut Vec<u8>) -> std::io::Result<usize> {
    Ok(rustix::io::read(
        &*file,
        rustix::buffer::spare_capacity(bytes),
    )?)
}

#[cfg(not(target_os = "linux"))]
fn read_more(file: &mut std::fs::File, bytes: &mut Vec<u8>) -> std::io::Result<usize> {
    let filled = bytes.len();
    bytes.resize(bytes.capacity(), 0);
    let read = std::io::Read::read(file, &mut bytes[filled..]);
    bytes.truncate(filled + *read.as_ref().unwrap_or(&0));
    read
}

/// Opens `path` when it is its own real path: absolute, under `roots` as
/// written, a regular file, with no `.`, `..` or symbolic link anywhere on
/// it — the kernel opens it refusing any link on the way (Linux `openat2`
/// with `RESOLVE_NO_SYMLINKS`), so what is opened is exactly that path and
/// nothing outside the roots is ever opened. This is what the fetcher's
/// keys are (real paths) and costs three calls where resolving the path
/// a component at a time and asking what was opened cost ten. `None` for
/// any other path, or where the kernel cannot (before 5.6, or a seccomp
/// filter): the caller resolves it the long way, which judges the rest.
#[cfg(target_os = "linux")]
fn open_plain(path: &Path, under_roots: impl Fn(&Path) -> bool) -> Option<std::fs::File> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    use std::path::Component;
    let plain = path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !plain || !under_roots(path) {
        return None;
    }
    // A FIFO, a device or a link at the path is left unopened.
    if !std::fs::symlink_metadata(path).ok()?.file_type().is_file() {
        return None;
    }
    let fd = rustix::fs::openat2(
        rustix::fs::CWD,
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS,
    )
    .ok()?;
    Some(std::fs::File::from(fd))
}

#[cfg(not(target_os = "linux"))]
fn open_plain(_: &Path, _: impl Fn(&Path) -> bool) -> Option<std::fs::File> {
    None
}

/// Opens `canon` (what `path` resolved to) without blocking and checks that
/// what was opened is a regular file.
fn open_regular(
    path: &Path,
    canon: &Path,
) -> Result<(std::fs::File, std::fs::Metadata), SourceError> {
    let io = |source| SourceError::File {
        path: path.to_path_buf(),
        source,
    };
    let file = open_nonblocking(canon).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    regular(path, &meta)?;
    Ok((file, meta))
}

/// Refuses anything but a regular file, naming what it is.
fn regular(path: &Path, meta: &std::fs::Metadata) -> Result<(), SourceError> {
    let t = meta.file_type();
    if t.is_file() {
        return Ok(());
    }
    #[cfg(unix)]
    use std::os::unix::fs::FileTypeExt;
    let kind = if t.is_dir() {
        "a directory"
    } else {
        #[cfg(unix)]
        let kind = if t.is_fifo() {
            "a FIFO"
        } else if t.is_char_device() {
            "a character device"
        } else if t.is_block_device() {
            "a block device"
        } else if t.is_socket() {
            "a socket"
        } else {
            "special"
        };
        #[cfg(not(unix))]
        let kind = "special";
        kind
    };
    Err(SourceError::NotRegular {
        path: path.to_path_buf(),
        kind,
    })
}

/// `O_NONBLOCK` (not in std): opening a FIFO with it returns at once
/// instead of waiting for a writer. Regular files ignore it.
#[cfg(any(target_os = "linux", target_os = "android"))]
const O_NONBLOCK: i32 = if cfg!(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "mips32r6",
    target_arch = "mips64r6"
)) {
    0x80
} else if cfg!(any(target_arch = "sparc", target_arch = "sparc64")) {
    0x4000
} else {
    0o4000
};
#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
))]
const O_NONBLOCK: i32 = 0x4;

/// Opens for reading without blocking on FIFOs (where the flag is known).
pub(crate) fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "openbsd",
        target_os = "netbsd",
        target_os = "dragonfly"
    ))]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut o, O_NONBLOCK);
    o.open(path)
}

/// Where an open file really is (Linux: `/proc/self/fd`), to check the
/// roots on what was opened rather than on a path that may have changed.
fn opened_path(file: &std::fs::File) -> Option<PathBuf> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        None
    }
}

/// Bytes as text: no copy when valid UTF-8, replacement characters otherwise.
fn text_of(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn real_paths_agree_with_canonicalize() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("cal/sub")).unwrap();
        std::fs::write(root.join("cal/a.ics"), "x").unwrap();
        std::fs::write(root.join("elsewhere.ics"), "x").unwrap();
        std::os::unix::fs::symlink(root.join("cal"), root.join("dirlink")).unwrap();
        std::os::unix::fs::symlink("../elsewhere.ics", root.join("cal/link.ics")).unwrap();
        let mut real = RealPaths::default();
        for p in [
            "cal/a.ics",
            "cal/../cal/a.ics",
            "cal/sub/../a.ics",
            "dirlink/a.ics",
            "dirlink/link.ics",
            "cal/link.ics",
            "cal/sub/..",
            "cal",
        ] {
            let p = root.join(p);
            assert_eq!(
                real.resolve(&p).unwrap(),
                std::fs::canonicalize(&p).unwrap(),
                "{}",
                p.display()
            );
        }
        assert!(real.resolve(&root.join("cal/missing.ics")).is_err());
        assert!(real.resolve(&root.join("nowhere/a.ics")).is_err());
    }

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "100.64.0.1",
            "0.0.0.0",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["20.190.1.1", "2603:1030::1", "8.8.8.8"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    /// Every IPv6 form that embeds an IPv4 address, for three internal IPv4
    /// addresses, plus IPv6-only special ranges and public counter-examples.
    #[test]
    fn internal_addresses_in_ipv6_clothing() {
        let internal = [
            // 127.0.0.1
            "::7f00:1",                             // IPv4-compatible
            "::ffff:7f00:1",                        // IPv4-mapped
            "::ffff:0:7f00:1",                      // IPv4-translated (SIIT)
            "2002:7f00:1::",                        // 6to4
            "2002:7f00:1:1::5",                     // 6to4, any subnet/interface
            "64:ff9b::7f00:1",                      // NAT64 well-known prefix
            "64:ff9b:1::7f00:1",                    // NAT64 local-use prefix
            "2001:0:4136:e378:8000:63bf:80ff:fffe", // Teredo, client 127.0.0.1
            "2001:0:7f00:1::1",                     // Teredo, server 127.0.0.1
            // 10.0.0.1
            "::a00:1",
            "::ffff:a00:1",
            "::ffff:0:a00:1",
            "2002:a00:1::1",
            "64:ff9b::a00:1",
            "64:ff9b:1:a00:1::",
            "2001:0:4136:e378:8000:63bf:f5ff:fffe", // Teredo, client 10.0.0.1
            "2001:0:a00:1::1",                      // Teredo, server 10.0.0.1
            // 169.254.169.254 (cloud metadata)
            "::a9fe:a9fe",
            "::ffff:a9fe:a9fe",
            "::ffff:0:a9fe:a9fe",
            "2002:a9fe:a9fe::",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a9fe:a9fe",
            "2001:0:4136:e378:8000:63bf:5601:5601", // Teredo, client 169.254.169.254
            "2001:0:a9fe:a9fe::1",                  // Teredo, server 169.254.169.254
            // IPv6-only special ranges
            "fec0::1",     // site-local (deprecated)
            "100::1",      // discard-only
            "2001:db8::1", // documentation
            "3fff::1",     // documentation (RFC 9637)
            "3fff:fff::1",
            "2001:10::1", // ORCHID
            "2001:20::1", // ORCHIDv2
            "2001:2::1",  // benchmarking
            "5f00::1",    // SRv6 SIDs
            "ff02::1",    // multicast
            "::",         // unspecified
            // IPv4 special ranges
            "192.0.0.8",   // IETF protocol assignments
            "192.88.99.1", // 6to4 relay anycast
            "198.18.0.1",  // benchmarking
            "224.0.0.1",   // multicast
        ];
        for ip in internal {
            assert!(is_internal(ip.parse().unwrap()), "{ip} must be internal");
        }
        let external = [
            "8.8.8.8",
            "20.190.1.1",
            "2603:1030::1",
            "2a00:1450:4001:80b::200e", // a public IPv6 host
            "3ff0::1",
            "3fff:1000::1",
            "::ffff:808:808",                       // IPv4-mapped 8.8.8.8
            "2002:808:808::1",                      // 6to4 of 8.8.8.8
            "64:ff9b::808:808",                     // NAT64 (well-known prefix) of 8.8.8.8
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7", // Teredo, server 65.54.227.120, client 8.8.8.8
        ];
        for ip in external {
            assert!(!is_internal(ip.parse().unwrap()), "{ip} must stay external");
        }
    }

    /// The quick open: only what cannot lead outside the roots.
    #[cfg(target_os = "linux")]
    #[test]
    fn only_a_plain_real_path_under_the_roots_is_opened_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let cal = root.join("cals");
        std::fs::create_dir(&cal).unwrap();
        std::fs::write(cal.join("a.ics"), "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n").unwrap();
        std::os::unix::fs::symlink(&cal, root.join("linked")).unwrap();
        std::os::unix::fs::symlink(cal.join("a.ics"), cal.join("link.ics")).unwrap();
        assert!(
            std::process::Command::new("mkfifo")
                .arg(cal.join("fifo.ics"))
                .status()
                .unwrap()
                .success()
        );
        let inside = |p: &Path| p.starts_with(&cal);
        assert!(open_plain(&cal.join("a.ics"), inside).is_some());
        // The roots are judged on the path as written...
        assert!(open_plain(&cal.join("a.ics"), |p: &Path| p.starts_with("/elsewhere")).is_none());
        // ... so anything that could lead elsewhere is left to the long way.
        for p in [
            root.join("linked/a.ics"),
            cal.join("link.ics"),
            cal.join("../cals/a.ics"),
            cal.join("fifo.ics"),
            cal.join("missing.ics"),
            PathBuf::from("cals/a.ics"),
        ] {
            assert!(open_plain(&p, |_: &Path| true).is_none(), "{}", p.display());
        }
        // Through the long way, a link inside the roots is still read.
        let read = read_file(
            &root.join("linked/a.ics"),
            std::slice::from_ref(&cal),
            1 << 20,
            Instant::now() + Duration::from_secs(5),
            Duration::from_secs(5),
            None,
        );
        assert!(matches!(read, Ok(Read::Text { .. })), "{read:?}");
    }

    /// The check on the opened file: a FIFO that replaced a checked path is
    /// refused at once, not waited on.
    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_when_opened_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("swapped.ics");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let (tx, rx) = std::sync::mpsc::channel();
        let p = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(open_regular(&p, &p).map(|_| ()));
        });
        let r = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("opening a FIFO blocked");
        assert!(
            matches!(r, Err(SourceError::NotRegular { kind: "a FIFO", .. })),
            "{r:?}"
        );
    }

    #[test]
    fn urls_are_checked_against_the_policy() {
        let p = Policy::default();
        assert!(matches!(
            check_url(
                &url::Url::parse("https://169.254.169.254/latest").unwrap(),
                &p
            ),
            Err(SourceError::Blocked { .. })
        ));
        assert!(matches!(
            check_url(&url::Url::parse("http://example.com/").unwrap(), &p),
            Err(SourceError::PlainHttp(_))
        ));
        assert!(check_url(&url::Url::parse("https://localhost:8080/").unwrap(), &p).is_err());
    }
}
