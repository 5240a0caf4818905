//! A loopback fake of Microsoft Graph (and of the Entra token endpoint) for tests.
//!
//! A real HTTP/1.1 server on `127.0.0.1:0`, inside the test process, that checks every request
//! the way Graph and Entra ID do (the Microsoft Graph presence and JSON-batching references, the
//! throttling limits, the client-credentials flow; the facts calstatus relies on are summarised
//! in ARCHITECTURE.md) and answers with Graph-shaped JSON. Tests assert on what the fake *accepted* (`messages`, `set_count`, ...), never on
//! what the client believes it did.
//!
//! Conventions a client author must know:
//! - `url()` is both the Graph root (`{url}/v1.0/...`) and the login host
//!   (`{url}/{tenant}/oauth2/v2.0/token`), as a proxy would be. Like Entra, the fake knows
//!   Graph only by the cloud's resource name: the token `scope` must be exactly
//!   `Options::scope` (`https://graph.microsoft.com/.default` by default), never `{url}/.default`,
//!   and a client assertion's `aud` must be the cloud's token endpoint
//!   (`{Options::login_root}/{tenant}/oauth2/v2.0/token`), not the URL it was sent to.
//! - Throttling: direct responses are `429` with a `Retry-After: N` header; inside `$batch`
//!   the item is `{"status":429,"headers":{"Retry-After":"N",...},"body":{"error":...}}`
//!   while the batch itself is `200`.
//! - `$batch` responses come back in a shuffled order (never the request order when there
//!   are 2+ items): match them by `id`. A `200` item with no content has no `body` key.
//! - `getPresencesByUserId` omits unknown ids and returns entries in a shuffled order.
//! - Latency is added *after* the request was processed: a client that times out may still
//!   have had its change accepted (as with the real service).
//! - `reset_next_connections(n)`: the next `n` presence-bearing HTTP requests (direct presence
//!   routes or `$batch`) are dropped *before* processing, the TCP connection is closed with an
//!   RST and no response; they are recorded with status `0`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::serve::{IncomingStream, Listener};
use base64::Engine as _;
use chrono::{DateTime, NaiveDateTime, TimeZone as _, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value, json};
use sha2::Digest as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Default tenant id.
pub const TENANT: &str = "contoso-tenant-id";
/// Default application (client) id.
pub const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
/// Default client secret.
pub const CLIENT_SECRET: &str = "test-only-client-secret";
/// Default known users (Entra object ids).
pub const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
/// Default known user.
pub const BOB: &str = "b0b00000-0000-4000-8000-000000000002";
/// Default known user.
pub const CAROL: &str = "ca201000-0000-4000-8000-000000000003";
/// UPN of [`ALICE`].
pub const ALICE_UPN: &str = "alice@contoso.com";
/// UPN of [`BOB`].
pub const BOB_UPN: &str = "bob@contoso.com";
/// UPN of [`CAROL`].
pub const CAROL_UPN: &str = "carol@contoso.com";

/// `client_assertion_type` for certificate credentials.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Longest accepted assertion lifetime (`exp` - `nbf`/`iat`): ~10 minutes.
const MAX_ASSERTION_LIFETIME_SECS: f64 = 610.0;
/// Clock skew tolerated on `nbf`/`iat` in the future.
const CLOCK_SKEW_SECS: f64 = 60.0;
/// Rolling throttling window.
const WINDOW: Duration = Duration::from_secs(30);
/// Max requests in a `$batch`.
const MAX_BATCH: usize = 20;
/// Max ids in `getPresencesByUserId`.
const MAX_PRESENCE_IDS: usize = 650;

// ---------------------------------------------------------------------------------------------
// Fixtures

/// `tests/fixtures/graph`.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/graph")
}

fn read_fixture(name: &str) -> String {
    let p = fixtures_dir().join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// The test-only RSA private key (PKCS#8 PEM) that signs client assertions.
pub fn test_private_key_pem() -> String {
    read_fixture("app-key.pem")
}

/// The test-only public key (SPKI PEM) matching [`test_private_key_pem`].
pub fn test_public_key_pem() -> String {
    read_fixture("app-pub.pem")
}

/// The test-only self-signed certificate (PEM).
pub fn test_cert_pem() -> String {
    read_fixture("app-cert.pem")
}

/// `x5t#S256` of a PEM certificate: base64url(SHA-256(DER)), no padding.
pub fn cert_thumbprint_s256(cert_pem: &str) -> String {
    let b64: String = cert_pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END CERTIFICATE-----"))
        .map(str::trim)
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("certificate PEM body is base64");
    let digest = sha2::Sha256::digest(&der);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

/// `x5t#S256` of the test certificate.
pub fn test_cert_thumbprint_s256() -> String {
    cert_thumbprint_s256(&test_cert_pem())
}

/// A reqwest client suited to talk to the fake (rustls provider installed, no proxy).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client")
}

// ---------------------------------------------------------------------------------------------
// Public API

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Tenant id in the token URL path.
    pub tenant: String,
    /// The only accepted `client_id`.
    pub client_id: String,
    /// Accept `client_secret` auth when `Some`.
    pub client_secret: Option<String>,
    /// Accept `client_assertion` auth (RS256/PS256 JWT) verified with this public key when `Some`.
    pub public_key_pem: Option<String>,
    /// Expected `x5t#S256` JWT header (base64url), when `Some`.
    pub cert_thumbprint_s256: Option<String>,
    /// Known users (Entra object ids).
    pub users: Vec<String>,
    /// `(upn, object id)` for `GET /v1.0/users/{upn}`.
    pub upns: Vec<(String, String)>,
    /// Access-token lifetime (`expires_in`).
    pub token_lifetime: Duration,
    /// If false, presence sub-requests inside `$batch` fail with 400 BadRequest.
    pub batch_supported: bool,
    /// The only accepted token scope: the cloud's Graph resource + `/.default`.
    pub scope: String,
    /// The cloud's login host: client assertions must name its token endpoint as `aud`.
    pub login_root: String,
}

impl Default for Options {
    /// Tenant [`TENANT`], client [`CLIENT_ID`] with secret [`CLIENT_SECRET`] and the fixture
    /// certificate; users Alice, Bob, Carol with their UPNs; 3599 s tokens; batching on.
    fn default() -> Self {
        Options {
            tenant: TENANT.to_string(),
            client_id: CLIENT_ID.to_string(),
            client_secret: Some(CLIENT_SECRET.to_string()),
            public_key_pem: Some(test_public_key_pem()),
            cert_thumbprint_s256: Some(test_cert_thumbprint_s256()),
            users: vec![ALICE.to_string(), BOB.to_string(), CAROL.to_string()],
            upns: vec![
                (ALICE_UPN.to_string(), ALICE.to_string()),
                (BOB_UPN.to_string(), BOB.to_string()),
                (CAROL_UPN.to_string(), CAROL.to_string()),
            ],
            token_lifetime: Duration::from_secs(3599),
            batch_supported: true,
            scope: "https://graph.microsoft.com/.default".to_string(),
            login_root: "https://login.microsoftonline.com".to_string(),
        }
    }
}

/// A status message as Graph stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Text as sent.
    pub content: String,
    /// When Teams clears it (UTC), if set.
    pub expiry: Option<DateTime<Utc>>,
    /// Written by the app (true) or by the person in Teams (false).
    pub by_app: bool,
}

/// One setStatusMessage the fake accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The user (as configured).
    pub user: String,
    /// The text ("" for a clear).
    pub content: String,
    /// The expiry sent.
    pub expiry: Option<DateTime<Utc>>,
    /// When it arrived (wall clock).
    pub at: DateTime<Utc>,
}

/// One HTTP request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path as sent, plus `?query` when there is one.
    pub path: String,
    /// Status answered; `0` when the connection was reset instead.
    pub status: u16,
    /// Request headers (lower-case names); `authorization` is `Bearer <redacted>`.
    pub headers: Vec<(String, String)>,
    /// Request body: JSON as sent; token requests as an object of form fields with
    /// `client_secret` / `client_assertion` redacted; non-JSON text as a JSON string.
    pub body: Option<Value>,
}

/// The running fake. Stops when dropped.
pub struct FakeGraph {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGraph {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGraph {
    /// Starts the fake on `127.0.0.1:0`.
    pub async fn start(opts: Options) -> FakeGraph {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let url = format!("http://{addr}");
        let token_url = format!("{url}/{}/oauth2/v2.0/token", opts.tenant);
        let audience = format!("{}/{}/oauth2/v2.0/token", opts.login_root, opts.tenant);
        let decoding_key = opts.public_key_pem.as_ref().map(|pem| {
            DecodingKey::from_rsa_pem(pem.as_bytes()).expect("public_key_pem is an RSA public key")
        });
        let users: HashMap<String, String> = opts
            .users
            .iter()
            .map(|u| (u.to_ascii_lowercase(), u.clone()))
            .collect();
        let messages = opts.users.iter().map(|u| (u.clone(), None)).collect();
        let shared = Arc::new(Shared {
            token_url,
            audience,
            scope: opts.scope.clone(),
            url,
            decoding_key,
            users,
            opts,
            st: Mutex::new(St {
                messages,
                ..St::default()
            }),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(shared.clone())
            .into_make_service_with_connect_info::<ConnKill>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(KillableListener(listener), app).await;
        });
        FakeGraph { shared, task }
    }

    /// `http://127.0.0.1:PORT`: Graph root and login host.
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    /// `{url}/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> String {
        self.shared.token_url.clone()
    }

    /// The only accepted scope (the cloud's Graph resource, not `{url}`).
    pub fn scope(&self) -> String {
        self.shared.scope.clone()
    }

    /// The only accepted client-assertion audience (the cloud's token endpoint).
    pub fn audience(&self) -> String {
        self.shared.audience.clone()
    }

    /// Current status message per known user, as Graph stores it (expired ones included).
    pub fn messages(&self) -> HashMap<String, Option<Published>> {
        self.shared.lock().messages.clone()
    }

    /// Every accepted setStatusMessage, in arrival order, with when it arrived.
    pub fn writes(&self) -> Vec<Accepted> {
        self.shared.lock().writes.clone()
    }

    /// Accepted setStatusMessage operations (direct and inside batches).
    pub fn set_count(&self) -> usize {
        self.shared.lock().set_count
    }

    /// HTTP requests received on Graph routes (everything but the token endpoint; a `$batch`
    /// counts 1; rejected and reset requests included).
    pub fn http_requests(&self) -> usize {
        self.shared.lock().http_requests
    }

    /// Time of every presence operation Graph counted (each batch item counts; throttled and
    /// failed ones too, as Graph keeps counting while throttled).
    pub fn presence_ops_log(&self) -> Vec<Instant> {
        self.shared.lock().ops_log.clone()
    }

    /// Most presence operations in any rolling window `(t - window, t]`.
    pub fn max_presence_ops_in(&self, window: Duration) -> usize {
        let log = self.presence_ops_log();
        let (mut best, mut left) = (0, 0);
        for (right, t) in log.iter().enumerate() {
            while t.duration_since(log[left]) >= window {
                left += 1;
            }
            best = best.max(right - left + 1);
        }
        best
    }

    /// Requests to the token endpoint (failed ones included).
    pub fn token_requests(&self) -> usize {
        self.shared.lock().token_requests
    }

    /// Every access token issued so far (to check none leaks into logs).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.lock().tokens.keys().cloned().collect()
    }

    /// Every HTTP request received, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().recorded.clone()
    }

    /// A person sets their own message in Teams. Panics for an unknown user.
    pub fn set_user_message(&self, user: &str, content: &str, expiry: Option<DateTime<Utc>>) {
        let key = self
            .shared
            .users
            .get(&user.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("set_user_message: unknown user {user}"))
            .clone();
        let value = stored(content, expiry, false);
        self.shared.lock().messages.insert(key, value);
    }

    /// The next `n` presence operations get `429` with `Retry-After: retry_after_secs`.
    pub fn throttle_next(&self, n: usize, retry_after_secs: u64) {
        let mut st = self.shared.lock();
        st.faults
            .extend(std::iter::repeat_n(Fault::Throttle(retry_after_secs), n));
    }

    /// The next `n` presence operations fail with `status` (500, 503, 504...).
    pub fn fail_next(&self, n: usize, status: u16) {
        assert!(
            (400..600).contains(&status),
            "fail_next wants an error status"
        );
        let mut st = self.shared.lock();
        st.faults
            .extend(std::iter::repeat_n(Fault::Fail(status), n));
    }

    /// The next `n` token requests fail with 503 `temporarily_unavailable` (Entra's outage answer).
    pub fn fail_next_token_requests(&self, n: usize) {
        self.shared.lock().token_faults += n;
    }

    /// The next `n` presence-bearing HTTP requests (direct presence routes or `$batch`) are
    /// not processed: the connection is reset without an answer.
    pub fn reset_next_connections(&self, n: usize) {
        self.shared.lock().resets += n;
    }

    /// Delay added to every response (after processing).
    pub fn set_latency(&self, d: Duration) {
        self.shared.lock().latency = d;
    }

    /// Every token issued so far is now expired (401 InvalidAuthenticationToken).
    pub fn expire_all_tokens(&self) {
        for t in self.shared.lock().tokens.values_mut() {
            t.revoked = true;
        }
    }

    /// Graph's own presence budget: when `Some(n)`, a presence operation is throttled
    /// (429, Retry-After) if `n` or more were counted in the previous 30 s.
    pub fn set_budget(&self, per_30s: Option<usize>) {
        self.shared.lock().budget = per_30s;
    }
}

// ---------------------------------------------------------------------------------------------
// State

struct Shared {
    url: String,
    token_url: String,
    audience: String,
    scope: String,
    decoding_key: Option<DecodingKey>,
    /// lower-case id -> configured id
    users: HashMap<String, String>,
    opts: Options,
    st: Mutex<St>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct St {
    tokens: HashMap<String, TokenRec>,
    used_jti: HashSet<String>,
    messages: HashMap<String, Option<Published>>,
    faults: VecDeque<Fault>,
    token_faults: usize,
    resets: usize,
    latency: Duration,
    budget: Option<usize>,
    ops_log: Vec<Instant>,
    set_count: usize,
    writes: Vec<Accepted>,
    http_requests: usize,
    token_requests: usize,
    recorded: Vec<Recorded>,
}

struct TokenRec {
    expires: Instant,
    revoked: bool,
}

#[derive(Clone, Copy)]
enum Fault {
    Throttle(u64),
    Fail(u16),
}

fn stored(content: &str, expiry: Option<DateTime<Utc>>, by_app: bool) -> Option<Published> {
    if content.is_empty() && expiry.is_none() {
        None
    } else {
        Some(Published {
            content: content.to_string(),
            expiry,
            by_app,
        })
    }
}

/// A response before it becomes HTTP (or a batch item).
struct Outcome {
    status: u16,
    headers: Vec<(String, String)>,
    body: Option<Value>,
}

impl Outcome {
    fn ok(body: Option<Value>) -> Outcome {
        let headers = if body.is_some() {
            vec![(
                "Content-Type".to_string(),
                "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
                    .to_string(),
            )]
        } else {
            Vec::new()
        };
        Outcome {
            status: 200,
            headers,
            body,
        }
    }
}

fn graph_error(status: u16, code: &str, message: impl Into<String>) -> Outcome {
    let request_id = uuid::Uuid::new_v4().to_string();
    Outcome {
        status,
        headers: vec![("Content-Type".to_string(), "application/json".to_string())],
        body: Some(json!({"error": {
            "code": code,
            "message": message.into(),
            "innerError": {
                "date": Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
                "request-id": request_id,
                "client-request-id": request_id,
            }
        }})),
    }
}

fn bad_request(message: impl Into<String>) -> Outcome {
    graph_error(400, "BadRequest", message)
}

fn unauthorized(message: &str) -> Outcome {
    let mut o = graph_error(401, "InvalidAuthenticationToken", message);
    o.headers.push((
        "WWW-Authenticate".to_string(),
        "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"".to_string(),
    ));
    o
}

fn throttled(retry_after: u64) -> Outcome {
    let mut o = graph_error(
        429,
        "TooManyRequests",
        "Too many requests: the application exceeded its presence quota. Retry after the time in Retry-After.",
    );
    o.headers
        .push(("Retry-After".to_string(), retry_after.to_string()));
    o
}

fn failed(status: u16) -> Outcome {
    let (code, message) = match status {
        500 => ("InternalServerError", "An internal server error occurred."),
        502 => ("BadGateway", "Bad gateway."),
        503 => (
            "ServiceUnavailable",
            "The service is temporarily unavailable. Please try again later.",
        ),
        504 => ("GatewayTimeout", "The gateway timed out."),
        _ => ("UnknownError", "Injected failure."),
    };
    graph_error(status, code, message)
}

fn oauth_error(status: u16, error: &str, code: u32, description: &str) -> Outcome {
    let trace = uuid::Uuid::new_v4().to_string();
    let corr = uuid::Uuid::new_v4().to_string();
    let ts = Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
    Outcome {
        status,
        headers: vec![
            (
                "Content-Type".to_string(),
                "application/json; charset=utf-8".to_string(),
            ),
            (
                "Cache-Control".to_string(),
                "no-store, no-cache".to_string(),
            ),
        ],
        body: Some(json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {corr} Timestamp: {ts}"
            ),
            "error_codes": [code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": corr,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        })),
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP entry point

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnKill>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let is_token = path.ends_with("/oauth2/v2.0/token");
    let (outcome, reset, latency) = {
        let mut st = shared.lock();
        let latency = st.latency;
        let mut reset = false;
        let outcome = if is_token {
            st.token_requests += 1;
            if st.token_faults > 0 {
                st.token_faults -= 1;
                Some(oauth_error(
                    503,
                    "temporarily_unavailable",
                    50196,
                    "The server is temporarily unavailable. Try again later.",
                ))
            } else {
                Some(shared.token(&mut st, &method, &path, &headers, &body))
            }
        } else {
            st.http_requests += 1;
            if st.resets > 0 && carries_presence(&method, &path) {
                st.resets -= 1;
                reset = true;
                None
            } else {
                Some(shared.graph(&mut st, &method, &uri, &headers, &body))
            }
        };
        let recorded = Recorded {
            method: method.to_string(),
            path: match uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            },
            status: outcome.as_ref().map_or(0, |o| o.status),
            headers: recorded_headers(&headers),
            body: recorded_body(is_token, &body),
        };
        st.recorded.push(recorded);
        (outcome, reset, latency)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if reset {
        conn.0.store(true, Ordering::SeqCst);
    }
    let Some(o) = outcome else {
        return Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::empty())
            .expect("response");
    };
    let mut b = Response::builder().status(o.status);
    let mut has_ct = false;
    for (k, v) in &o.headers {
        has_ct |= k.eq_ignore_ascii_case("content-type");
        b = b.header(k.as_str(), v.as_str());
    }
    let request_id = headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if !is_token {
        b = b
            .header("request-id", request_id.as_str())
            .header("client-request-id", request_id.as_str());
    }
    let body = match &o.body {
        Some(v) => {
            if !has_ct {
                b = b.header("Content-Type", "application/json");
            }
            Body::from(serde_json::to_vec(v).expect("json"))
        }
        None => Body::empty(),
    };
    b.body(body).expect("response")
}

/// Whether an HTTP request targets a presence route or `$batch` (resets apply to those).
fn carries_presence(method: &Method, path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/v1.0/") else {
        return false;
    };
    let segs: Vec<String> = rest
        .split('/')
        .map(|s| pct_decode(s).unwrap_or_default())
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    matches!(
        (method.as_str(), segs.as_slice()),
        ("POST", ["$batch"])
            | ("POST", ["users", _, "presence", "setStatusMessage"])
            | ("GET", ["users", _, "presence"])
            | ("POST", ["communications", "getPresencesByUserId"])
    )
}

fn recorded_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            let name = k.as_str().to_string();
            let value = if name == "authorization" {
                let s = String::from_utf8_lossy(v.as_bytes());
                if s.len() >= 7 && s[..7].eq_ignore_ascii_case("bearer ") {
                    "Bearer <redacted>".to_string()
                } else {
                    "<redacted>".to_string()
                }
            } else {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            };
            (name, value)
        })
        .collect()
}

fn recorded_body(is_token: bool, body: &[u8]) -> Option<Value> {
    if body.is_empty() {
        return None;
    }
    if is_token {
        let mut m = Map::new();
        for (k, v) in url::form_urlencoded::parse(body) {
            let v = if k == "client_secret" || k == "client_assertion" {
                "<redacted>".to_string()
            } else {
                v.into_owned()
            };
            m.insert(k.into_owned(), Value::String(v));
        }
        return Some(Value::Object(m));
    }
    Some(
        serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned())),
    )
}

// ---------------------------------------------------------------------------------------------
// Token endpoint

impl Shared {
    fn token(
        &self,
        st: &mut St,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Outcome {
        let segs: Vec<&str> = path.split('/').collect();
        let tenant = match segs.as_slice() {
            ["", tenant, "oauth2", "v2.0", "token"] => pct_decode(tenant).unwrap_or_default(),
            _ => {
                return oauth_error(
                    404,
                    "invalid_request",
                    900023,
                    "Specified tenant identifier is neither a valid DNS name, nor a valid external domain.",
                );
            }
        };
        if !tenant.eq_ignore_ascii_case(&self.opts.tenant) {
            return oauth_error(
                400,
                "invalid_request",
                90002,
                &format!(
                    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
                ),
            );
        }
        if method != Method::POST {
            return oauth_error(
                400,
                "invalid_request",
                900561,
                &format!(
                    "The endpoint only accepts POST, OPTIONS requests. Received a {method} request."
                ),
            );
        }
        let ctype = header_str(headers, "content-type").unwrap_or_default();
        if media_type(&ctype) != "application/x-www-form-urlencoded" {
            return oauth_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'. (Content-Type must be application/x-www-form-urlencoded.)",
            );
        }
        let mut form: HashMap<String, String> = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(body) {
            if form.insert(k.to_string(), v.into_owned()).is_some() {
                return oauth_error(
                    400,
                    "invalid_request",
                    9002313,
                    &format!(
                        "Invalid request. Request is malformed or invalid. Duplicate parameter '{k}'."
                    ),
                );
            }
        }
        let missing = |name: &str| {
            oauth_error(
                400,
                "invalid_request",
                900144,
                &format!("The request body must contain the following parameter: '{name}'."),
            )
        };
        let Some(grant) = form.get("grant_type") else {
            return missing("grant_type");
        };
        if grant != "client_credentials" {
            return oauth_error(
                400,
                "unsupported_grant_type",
                70003,
                &format!("The app requested an unsupported grant type '{grant}'."),
            );
        }
        let Some(client_id) = form.get("client_id") else {
            return missing("client_id");
        };
        if client_id != &self.opts.client_id {
            return oauth_error(
                400,
                "unauthorized_client",
                700016,
                &format!(
                    "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                    self.opts.tenant
                ),
            );
        }
        let Some(scope) = form.get("scope") else {
            return missing("scope");
        };
        if scope != &self.scope {
            if !scope.ends_with("/.default") || scope.contains(' ') {
                return oauth_error(
                    400,
                    "invalid_scope",
                    1002012,
                    &format!(
                        "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                    ),
                );
            }
            let resource = scope.trim_end_matches("/.default");
            return oauth_error(
                400,
                "invalid_resource",
                500011,
                &format!(
                    "The resource principal named {resource} was not found in the tenant named {}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant. (expected scope {})",
                    self.opts.tenant, self.scope
                ),
            );
        }
        let secret = form.get("client_secret");
        let assertion_type = form.get("client_assertion_type");
        let assertion = form.get("client_assertion");
        if secret.is_some() && (assertion.is_some() || assertion_type.is_some()) {
            return oauth_error(
                400,
                "invalid_request",
                9002313,
                "Invalid request. Request is malformed or invalid. Only one client credential may be presented: both client_secret and client_assertion were sent.",
            );
        }
        if let Some(secret) = secret {
            if self.opts.client_secret.as_deref() != Some(secret.as_str()) {
                return oauth_error(
                    401,
                    "invalid_client",
                    7000215,
                    &format!(
                        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                        self.opts.client_id
                    ),
                );
            }
        } else if assertion.is_some() || assertion_type.is_some() {
            if assertion_type.map(String::as_str) != Some(JWT_BEARER) {
                return oauth_error(
                    400,
                    "invalid_request",
                    50027,
                    &format!("Invalid client_assertion_type: expected '{JWT_BEARER}'."),
                );
            }
            let Some(assertion) = assertion else {
                return missing("client_assertion");
            };
            if let Err(e) = self.check_assertion(st, assertion) {
                return e;
            }
        } else {
            return oauth_error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            );
        }
        let token = format!(
            "fake-graph.{}.{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        st.tokens.insert(
            token.clone(),
            TokenRec {
                expires: Instant::now() + self.opts.token_lifetime,
                revoked: false,
            },
        );
        let secs = self.opts.token_lifetime.as_secs();
        Outcome {
            status: 200,
            headers: vec![
                (
                    "Content-Type".to_string(),
                    "application/json; charset=utf-8".to_string(),
                ),
                (
                    "Cache-Control".to_string(),
                    "no-store, no-cache".to_string(),
                ),
                ("Pragma".to_string(), "no-cache".to_string()),
            ],
            body: Some(json!({
                "token_type": "Bearer",
                "expires_in": secs,
                "ext_expires_in": secs,
                "access_token": token,
            })),
        }
    }

    fn check_assertion(&self, st: &mut St, jwt: &str) -> Result<(), Outcome> {
        let invalid = |code: u32, why: &str| Err(oauth_error(401, "invalid_client", code, why));
        let Some(key) = &self.decoding_key else {
            return invalid(
                700027,
                "Client assertion contains an invalid signature. [Reason - The key was not found.] (no certificate is registered for this app)",
            );
        };
        let header = match decode_header(jwt) {
            Ok(h) => h,
            Err(e) => {
                return invalid(
                    50027,
                    &format!("JWT token is invalid or malformed. [Reason - {e}]"),
                );
            }
        };
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::PS256) {
            return invalid(
                5002738,
                &format!(
                    "Invalid JWT token. '{:?}' is not a supported signature algorithm (expected PS256 or RS256).",
                    header.alg
                ),
            );
        }
        if let Some(typ) = header
            .typ
            .as_ref()
            .filter(|t| !t.eq_ignore_ascii_case("JWT"))
        {
            return invalid(
                50027,
                &format!("JWT token is invalid or malformed. [Reason - typ '{typ}' is not JWT]"),
            );
        }
        if let Some(expected) = &self.opts.cert_thumbprint_s256 {
            match &header.x5t_s256 {
                Some(got) if got == expected => {}
                Some(got) => {
                    return invalid(
                        700027,
                        &format!(
                            "Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: '{got}' (x5t#S256), Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{}'.]",
                            self.opts.client_id
                        ),
                    );
                }
                None => {
                    return invalid(
                        700027,
                        "Client assertion contains an invalid signature. [Reason - The key was not found.] (the JWT header has no x5t#S256 certificate thumbprint; this fake does not accept SHA-1 x5t)",
                    );
                }
            }
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::new();
        validation.leeway = 0;
        let claims: Map<String, Value> = match decode::<Map<String, Value>>(jwt, key, &validation) {
            Ok(d) => d.claims,
            Err(e) => {
                return invalid(
                    700027,
                    &format!("Client assertion contains an invalid signature. [Reason - {e}]"),
                );
            }
        };
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => a == &self.audience,
            Some(Value::Array(a)) => a.len() == 1 && a[0].as_str() == Some(&self.audience),
            _ => false,
        };
        if !aud_ok {
            return invalid(
                700212,
                &format!(
                    "No matching federated identity record found for presented assertion audience '{}'. The audience of a client assertion must be the token endpoint '{}'.",
                    claims.get("aud").unwrap_or(&Value::Null),
                    self.audience
                ),
            );
        }
        for claim in ["iss", "sub"] {
            if claims.get(claim).and_then(Value::as_str) != Some(self.opts.client_id.as_str()) {
                return invalid(
                    700021,
                    &format!(
                        "Client assertion application identifier doesn't match 'client_id' parameter: claim '{claim}' is {} but client_id is '{}'.",
                        claims.get(claim).unwrap_or(&Value::Null),
                        self.opts.client_id
                    ),
                );
            }
        }
        let now = Utc::now().timestamp_millis() as f64 / 1000.0;
        let num = |name: &str| claims.get(name).and_then(Value::as_f64);
        let Some(exp) = num("exp") else {
            return invalid(
                50027,
                "JWT token is invalid or malformed. [Reason - the 'exp' claim is missing or not a number]",
            );
        };
        let nbf = num("nbf");
        let iat = num("iat");
        let time_error = |why: &str| {
            invalid(
                700024,
                &format!(
                    "Client assertion is not within its valid time range. Current time: {now}, assertion valid from {}, expiry time of assertion {exp}. [{why}]",
                    nbf.or(iat).unwrap_or(f64::NAN)
                ),
            )
        };
        if exp <= now {
            return time_error("expired");
        }
        let Some(start) = nbf.or(iat) else {
            return invalid(
                50027,
                "JWT token is invalid or malformed. [Reason - neither 'nbf' nor 'iat' is present]",
            );
        };
        if start > now + CLOCK_SKEW_SECS || iat.is_some_and(|i| i > now + CLOCK_SKEW_SECS) {
            return time_error("not yet valid");
        }
        if exp - start > MAX_ASSERTION_LIFETIME_SECS {
            return time_error("lifetime longer than 10 minutes");
        }
        let jti = match claims.get("jti") {
            Some(Value::String(j)) if !j.is_empty() => j.clone(),
            _ => {
                return invalid(
                    50027,
                    "JWT token is invalid or malformed. [Reason - the 'jti' claim is missing]",
                );
            }
        };
        if !st.used_jti.insert(jti.clone()) {
            return invalid(
                700025,
                &format!(
                    "Client assertion has already been used (replayed 'jti' {jti}). Each assertion needs a unique jti."
                ),
            );
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Graph routes

/// A request body, as it arrives directly (bytes) or inside a batch (JSON).
enum BodyIn<'a> {
    Raw(&'a [u8]),
    Json(Option<&'a Value>),
}

impl Shared {
    fn graph(
        &self,
        st: &mut St,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Outcome {
        if let Err(e) = self.check_auth(st, headers) {
            return e;
        }
        let path = uri.path();
        let Some(rest) = path.strip_prefix("/v1.0/") else {
            let version = path.trim_start_matches('/').split('/').next().unwrap_or("");
            return bad_request(format!(
                "Invalid version: '{version}'. This fake implements /v1.0 only."
            ));
        };
        let Some(segs) = rest
            .split('/')
            .map(pct_decode)
            .collect::<Option<Vec<String>>>()
        else {
            return bad_request("Invalid percent-encoding in the request URL.");
        };
        let ctype = header_str(headers, "content-type");
        self.route(
            st,
            method.as_str(),
            &segs,
            uri.query(),
            ctype.as_deref(),
            BodyIn::Raw(body),
            false,
        )
    }

    fn check_auth(&self, st: &mut St, headers: &HeaderMap) -> Result<(), Outcome> {
        let Some(auth) = header_str(headers, "authorization") else {
            return Err(unauthorized("Access token is empty."));
        };
        let token = match auth.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
            _ => {
                return Err(unauthorized(
                    "Access token validation failure: the Authorization header must be 'Bearer {token}'.",
                ));
            }
        };
        if token.is_empty() {
            return Err(unauthorized("Access token is empty."));
        }
        match st.tokens.get(token) {
            None => Err(unauthorized(
                "IDX14100: JWT is not well formed, there are no dots (.). Invalid access token.",
            )),
            Some(t) if t.revoked || Instant::now() >= t.expires => Err(unauthorized(
                "Lifetime validation failed, the token is expired.",
            )),
            Some(_) => Ok(()),
        }
    }

    /// Dispatches a Graph request (segments after `/v1.0/`, percent-decoded).
    #[allow(clippy::too_many_arguments)]
    fn route(
        &self,
        st: &mut St,
        method: &str,
        segs: &[String],
        query: Option<&str>,
        ctype: Option<&str>,
        body: BodyIn<'_>,
        in_batch: bool,
    ) -> Outcome {
        let s: Vec<&str> = segs.iter().map(String::as_str).collect();
        let method_not_allowed = || {
            graph_error(
                405,
                "Request_BadRequest",
                format!("Specified HTTP method '{method}' is not allowed for the request target."),
            )
        };
        match s.as_slice() {
            ["$batch"] => {
                if in_batch {
                    return bad_request("A $batch request cannot contain another $batch request.");
                }
                if method != "POST" {
                    return method_not_allowed();
                }
                self.batch(st, ctype, body)
            }
            ["users", id, "presence", "setStatusMessage"] => {
                if method != "POST" {
                    return method_not_allowed();
                }
                if let Some(o) = self.presence_gate(st, in_batch) {
                    return o;
                }
                self.set_status_message(st, id, ctype, body)
            }
            ["users", id, "presence"] => {
                if method != "GET" {
                    return method_not_allowed();
                }
                if let Some(o) = self.presence_gate(st, in_batch) {
                    return o;
                }
                let key = match self.presence_user(id) {
                    Ok(k) => k,
                    Err(o) => return o,
                };
                let mut p = presence_json(&key, st.messages.get(&key).and_then(Option::as_ref));
                p.as_object_mut().expect("object").insert(
                    "@odata.context".to_string(),
                    json!(format!(
                        "{}/v1.0/$metadata#users('{key}')/presence/$entity",
                        self.url
                    )),
                );
                Outcome::ok(Some(p))
            }
            ["communications", "getPresencesByUserId"] => {
                if method != "POST" {
                    return method_not_allowed();
                }
                if let Some(o) = self.presence_gate(st, in_batch) {
                    return o;
                }
                self.get_presences(st, ctype, body)
            }
            ["users", id] => {
                if method != "GET" {
                    return method_not_allowed();
                }
                self.get_user(id, query)
            }
            _ => {
                let seg = s.iter().rev().find(|x| !x.is_empty()).unwrap_or(&"");
                bad_request(format!("Resource not found for the segment '{seg}'."))
            }
        }
    }

    /// Budget, injected faults and batch support for one presence operation.
    fn presence_gate(&self, st: &mut St, in_batch: bool) -> Option<Outcome> {
        if in_batch && !self.opts.batch_supported {
            return Some(bad_request(
                "Invalid request: this presence action is not supported inside a JSON $batch request.",
            ));
        }
        let now = Instant::now();
        let window_start = now.checked_sub(WINDOW);
        let first_in_window = match window_start {
            Some(ws) => st.ops_log.partition_point(|t| *t <= ws),
            None => 0,
        };
        let in_window = st.ops_log.len() - first_in_window;
        let oldest = st.ops_log.get(first_in_window).copied();
        st.ops_log.push(now);
        if let Some(f) = st.faults.pop_front() {
            return Some(match f {
                Fault::Throttle(secs) => throttled(secs),
                Fault::Fail(status) => failed(status),
            });
        }
        if st.budget.is_some_and(|b| in_window >= b) {
            let wait = oldest
                .map(|o| (o + WINDOW).saturating_duration_since(now))
                .unwrap_or(WINDOW);
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Some(throttled(secs.max(1)));
        }
        None
    }

    /// Validates a presence-route user id; returns the configured id.
    fn presence_user(&self, id: &str) -> Result<String, Outcome> {
        if !is_guid(id) {
            let hint = if id.contains('@') {
                " Presence routes need the Entra object id (GUID); a user principal name is not accepted."
            } else {
                ""
            };
            return Err(bad_request(format!(
                "Invalid user id '{id}': it must be a GUID.{hint}"
            )));
        }
        self.users
            .get(&id.to_ascii_lowercase())
            .cloned()
            .ok_or_else(|| {
                graph_error(
                    404,
                    "NotFound",
                    format!("The user with object id '{id}' was not found in the tenant."),
                )
            })
    }

    fn set_status_message(
        &self,
        st: &mut St,
        id: &str,
        ctype: Option<&str>,
        body: BodyIn<'_>,
    ) -> Outcome {
        let key = match self.presence_user(id) {
            Ok(k) => k,
            Err(o) => return o,
        };
        let v = match json_body(ctype, body) {
            Ok(v) => v,
            Err(o) => return o,
        };
        let (content, expiry) = match parse_set_status(&v) {
            Ok(x) => x,
            Err(msg) => return bad_request(msg),
        };
        st.writes.push(Accepted {
            user: key.clone(),
            content: content.clone(),
            expiry,
            at: Utc::now(),
        });
        st.messages.insert(key, stored(&content, expiry, true));
        st.set_count += 1;
        Outcome::ok(None)
    }

    fn get_presences(&self, st: &mut St, ctype: Option<&str>, body: BodyIn<'_>) -> Outcome {
        let v = match json_body(ctype, body) {
            Ok(v) => v,
            Err(o) => return o,
        };
        let obj = match v.as_object() {
            Some(o) => o,
            None => return bad_request("The request body must be a JSON object with 'ids'."),
        };
        if let Some(k) = obj.keys().find(|k| *k != "ids") {
            return bad_request(format!(
                "The property '{k}' does not exist on type 'microsoft.graph.getPresencesByUserId'. Make sure to only use property names that are defined by the type."
            ));
        }
        let Some(ids) = obj.get("ids").and_then(Value::as_array) else {
            return bad_request("The parameter 'ids' is required and must be an array of strings.");
        };
        if ids.is_empty() {
            return bad_request("The parameter 'ids' must not be empty.");
        }
        if ids.len() > MAX_PRESENCE_IDS {
            return bad_request(format!(
                "The number of ids ({}) exceeds the limit of {MAX_PRESENCE_IDS} per request.",
                ids.len()
            ));
        }
        let mut seen = HashSet::new();
        let mut found = Vec::new();
        for id in ids {
            let Some(id) = id.as_str() else {
                return bad_request(format!("Invalid id {id}: ids must be strings."));
            };
            if !is_guid(id) {
                return bad_request(format!(
                    "Invalid id '{id}': ids must be GUIDs (object ids)."
                ));
            }
            let key = self.users.get(&id.to_ascii_lowercase());
            if let Some(key) = key.filter(|k| seen.insert((*k).clone())) {
                found.push(presence_json(
                    key,
                    st.messages.get(key).and_then(Option::as_ref),
                ));
            }
        }
        shuffle(&mut found);
        Outcome::ok(Some(json!({
            "@odata.context": format!("{}/v1.0/$metadata#Collection(microsoft.graph.presence)", self.url),
            "value": found,
        })))
    }

    fn get_user(&self, id: &str, query: Option<&str>) -> Outcome {
        let found = if is_guid(id) {
            self.users.get(&id.to_ascii_lowercase()).cloned()
        } else {
            self.opts
                .upns
                .iter()
                .find(|(upn, _)| upn.eq_ignore_ascii_case(id))
                .map(|(_, oid)| oid.clone())
        };
        let Some(oid) = found else {
            return graph_error(
                404,
                "Request_ResourceNotFound",
                format!(
                    "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
                ),
            );
        };
        let select: Option<String> = query.and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "$select")
                .map(|(_, v)| v.into_owned())
        });
        let upn = self
            .opts
            .upns
            .iter()
            .find(|(_, o)| o.eq_ignore_ascii_case(&oid))
            .map(|(u, _)| u.clone());
        let body = match select.as_deref() {
            Some("id") => json!({
                "@odata.context": format!("{}/v1.0/$metadata#users(id)/$entity", self.url),
                "id": oid,
            }),
            _ => json!({
                "@odata.context": format!("{}/v1.0/$metadata#users/$entity", self.url),
                "id": oid,
                "userPrincipalName": upn,
                "displayName": upn.as_deref().and_then(|u| u.split('@').next()),
            }),
        };
        Outcome::ok(Some(body))
    }

    fn batch(&self, st: &mut St, ctype: Option<&str>, body: BodyIn<'_>) -> Outcome {
        let v = match json_body(ctype, body) {
            Ok(v) => v,
            Err(o) => return o,
        };
        let items = match parse_batch(&v) {
            Ok(items) => items,
            Err(msg) => return bad_request(msg),
        };
        let mut statuses: HashMap<String, u16> = HashMap::new();
        let mut responses = Vec::with_capacity(items.len());
        for item in &items {
            let o = self.batch_item(st, item, &statuses);
            statuses.insert(item.id.clone(), o.status);
            let mut r = Map::new();
            r.insert("id".to_string(), json!(item.id));
            r.insert("status".to_string(), json!(o.status));
            let h: Map<String, Value> = o
                .headers
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            r.insert("headers".to_string(), Value::Object(h));
            if let Some(b) = o.body {
                r.insert("body".to_string(), b);
            }
            responses.push(Value::Object(r));
        }
        shuffle(&mut responses);
        Outcome::ok(Some(json!({ "responses": responses })))
    }

    fn batch_item(
        &self,
        st: &mut St,
        item: &BatchItem,
        statuses: &HashMap<String, u16>,
    ) -> Outcome {
        if item
            .depends_on
            .iter()
            .any(|d| !(200..300).contains(statuses.get(d).unwrap_or(&0)))
        {
            return graph_error(
                424,
                "FailedDependency",
                "The request was not processed because a request it depends on failed.",
            );
        }
        let url = item.url.as_str();
        let lower = url.to_ascii_lowercase();
        let rel = url.strip_prefix('/').unwrap_or(url);
        if lower.starts_with("http:")
            || lower.starts_with("https:")
            || rel.starts_with("v1.0/")
            || rel.starts_with("beta/")
        {
            return bad_request(format!(
                "Invalid request URL '{url}': URLs in a $batch are relative to the version root, e.g. '/users/{{id}}/presence/setStatusMessage'."
            ));
        }
        let (path, query) = match rel.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rel, None),
        };
        let Some(segs) = path
            .split('/')
            .map(pct_decode)
            .collect::<Option<Vec<String>>>()
        else {
            return bad_request(format!("Invalid percent-encoding in URL '{url}'."));
        };
        let ctype = item
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str());
        let body = item.body.as_ref().filter(|b| !b.is_null());
        if body.is_some() && ctype.is_none() {
            return bad_request(
                "Content-Type header must be specified in the headers of a batch request that has a body.",
            );
        }
        self.route(
            st,
            &item.method.to_ascii_uppercase(),
            &segs,
            query,
            ctype,
            BodyIn::Json(body),
            true,
        )
    }
}

struct BatchItem {
    id: String,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Value>,
    depends_on: Vec<String>,
}

fn parse_batch(v: &Value) -> Result<Vec<BatchItem>, String> {
    let obj = v
        .as_object()
        .ok_or("Invalid batch payload: the body must be a JSON object with 'requests'.")?;
    if let Some(k) = obj.keys().find(|k| *k != "requests") {
        return Err(format!("Invalid batch payload: unknown property '{k}'."));
    }
    let reqs = obj
        .get("requests")
        .and_then(Value::as_array)
        .ok_or("Invalid batch payload: 'requests' must be an array.")?;
    if reqs.is_empty() {
        return Err("Invalid batch payload: 'requests' must not be empty.".to_string());
    }
    if reqs.len() > MAX_BATCH {
        return Err(format!(
            "Invalid batch payload format: the number of requests ({}) exceeds the limit of {MAX_BATCH}.",
            reqs.len()
        ));
    }
    let mut ids = HashSet::new();
    let mut items = Vec::new();
    for r in reqs {
        let r = r
            .as_object()
            .ok_or("Invalid batch payload: each request must be an object.")?;
        for k in r.keys() {
            if !matches!(
                k.as_str(),
                "id" | "method" | "url" | "headers" | "body" | "dependsOn"
            ) {
                return Err(format!(
                    "Invalid batch payload: unknown request property '{k}'."
                ));
            }
        }
        let id = match r.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(
                    "Invalid batch payload: every request needs a non-empty string 'id'."
                        .to_string(),
                );
            }
        };
        if !ids.insert(id.clone()) {
            return Err(format!(
                "Invalid batch payload: request id '{id}' is not unique."
            ));
        }
        let method = r
            .get("method")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .ok_or(format!(
                "Invalid batch payload: request '{id}' has no 'method'."
            ))?
            .to_string();
        let url = r
            .get("url")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .ok_or(format!(
                "Invalid batch payload: request '{id}' has no 'url'."
            ))?
            .to_string();
        let headers = match r.get("headers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(h)) => h
                .iter()
                .map(|(k, v)| {
                    v.as_str()
                        .map(|s| (k.clone(), s.to_string()))
                        .ok_or(format!(
                            "Invalid batch payload: header '{k}' of request '{id}' must be a string."
                        ))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(format!(
                    "Invalid batch payload: 'headers' of request '{id}' must be an object."
                ));
            }
        };
        let depends_on = match r.get("dependsOn") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|d| {
                    d.as_str()
                        .filter(|d| ids.contains(*d) && *d != id)
                        .map(str::to_string)
                        .ok_or(format!(
                            "Invalid batch payload: request '{id}' depends on {d}, which is not an earlier request id."
                        ))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(format!(
                    "Invalid batch payload: 'dependsOn' of request '{id}' must be an array."
                ));
            }
        };
        items.push(BatchItem {
            id,
            method,
            url,
            headers,
            body: r.get("body").cloned(),
            depends_on,
        });
    }
    Ok(items)
}

/// Checks the content type (415) and parses the JSON body (400).
fn json_body(ctype: Option<&str>, body: BodyIn<'_>) -> Result<Value, Outcome> {
    match ctype {
        Some(ct) if media_type(ct) == "application/json" => {}
        Some(ct) => {
            return Err(graph_error(
                415,
                "UnsupportedMediaType",
                format!("Content-Type '{ct}' is not supported; use 'application/json'."),
            ));
        }
        None => {
            return Err(graph_error(
                415,
                "UnsupportedMediaType",
                "The Content-Type header is missing; use 'application/json'.",
            ));
        }
    }
    match body {
        BodyIn::Raw([]) | BodyIn::Json(None) => Err(bad_request("Empty Payload. JSON content expected.")),
        BodyIn::Raw(bytes) => serde_json::from_slice(bytes).map_err(|_| {
            bad_request("Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.")
        }),
        BodyIn::Json(Some(v)) => Ok(v.clone()),
    }
}

/// Validates a setStatusMessage body exactly; returns (content, expiry in UTC).
fn parse_set_status(v: &Value) -> Result<(String, Option<DateTime<Utc>>), String> {
    let top = object(v, "the request body")?;
    only_keys(top, &["statusMessage"], "the request body")?;
    let sm = object(
        top.get("statusMessage")
            .ok_or("The parameter 'statusMessage' is required.")?,
        "statusMessage",
    )?;
    only_keys(
        sm,
        &["message", "expiryDateTime"],
        "microsoft.graph.presenceStatusMessage",
    )?;
    let msg = object(
        sm.get("message")
            .ok_or("The property 'message' of statusMessage is required.")?,
        "statusMessage.message",
    )?;
    only_keys(msg, &["content", "contentType"], "microsoft.graph.itemBody")?;
    let content = match msg.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(format!(
                "Cannot convert the literal '{other}' to the expected type 'Edm.String' (message.content)."
            ));
        }
        None => return Err("The property 'content' of message is required.".to_string()),
    };
    match msg.get("contentType") {
        Some(Value::String(s)) if s == "text" => {}
        Some(Value::String(s)) => {
            return Err(format!(
                "contentType '{s}' is not supported: only 'text' is supported for status messages."
            ));
        }
        Some(other) => {
            return Err(format!(
                "Cannot convert the literal '{other}' to the expected type 'microsoft.graph.bodyType'."
            ));
        }
        None => return Err("The property 'contentType' of message is required.".to_string()),
    }
    let expiry = match sm.get("expiryDateTime") {
        None | Some(Value::Null) => None,
        Some(e) => {
            let e = object(e, "statusMessage.expiryDateTime")?;
            only_keys(
                e,
                &["dateTime", "timeZone"],
                "microsoft.graph.dateTimeTimeZone",
            )?;
            let dt = match e.get("dateTime") {
                Some(Value::String(s)) => s.as_str(),
                Some(other) => {
                    return Err(format!(
                        "Cannot convert the literal '{other}' to the expected type 'Edm.String' (expiryDateTime.dateTime)."
                    ));
                }
                None => return Err("expiryDateTime.dateTime is required.".to_string()),
            };
            let tz = match e.get("timeZone") {
                Some(Value::String(s)) => s.as_str(),
                Some(other) => {
                    return Err(format!(
                        "Cannot convert the literal '{other}' to the expected type 'Edm.String' (expiryDateTime.timeZone)."
                    ));
                }
                None => return Err("expiryDateTime.timeZone is required.".to_string()),
            };
            Some(parse_date_time_time_zone(dt, tz)?)
        }
    };
    Ok((content, expiry))
}

/// A Graph `dateTimeTimeZone`: wall time without offset, plus "UTC" or a Windows zone name.
fn parse_date_time_time_zone(dt: &str, tz: &str) -> Result<DateTime<Utc>, String> {
    if !date_time_shape(dt) {
        let offset = dt.ends_with('Z')
            || dt.ends_with('z')
            || dt
                .get(19..)
                .is_some_and(|t| t.contains('+') || t.contains('-'));
        return Err(if offset {
            format!(
                "Invalid expiryDateTime.dateTime '{dt}': it must not carry an offset or 'Z'; give the zone in timeZone."
            )
        } else {
            format!(
                "Invalid expiryDateTime.dateTime '{dt}': expected 'yyyy-MM-ddTHH:mm:ss[.fffffff]'."
            )
        });
    }
    let naive = NaiveDateTime::parse_from_str(dt, "%Y-%m-%dT%H:%M:%S%.f")
        .map_err(|_| format!("Invalid expiryDateTime.dateTime '{dt}': not a valid date/time."))?;
    if tz.eq_ignore_ascii_case("UTC") {
        return Ok(Utc.from_utc_datetime(&naive));
    }
    let w = windows_timezones::WindowsTimezone::from_str(tz)
        .map_err(|_| format!("Invalid timeZone '{tz}': use 'UTC' or a Windows time zone name."))?;
    let zone = chrono_tz::Tz::from(w);
    zone.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("expiryDateTime '{dt}' does not exist in time zone '{tz}'."))
}

/// `YYYY-MM-DDTHH:MM:SS` with an optional `.` and 1–7 fraction digits, nothing else.
fn date_time_shape(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 19 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let head = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !head {
        return false;
    }
    match &b[19..] {
        [] => true,
        [b'.', frac @ ..] => (1..=7).contains(&frac.len()) && frac.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("Invalid {what}: expected a JSON object, got {v}."))
}

fn only_keys(obj: &Map<String, Value>, allowed: &[&str], type_name: &str) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "The property '{k}' does not exist on type '{type_name}'. Make sure to only use property names that are defined by the type."
        )),
        None => Ok(()),
    }
}

/// A presence as an app reads another user's: no expiryDateTime; expired messages are null.
fn presence_json(id: &str, msg: Option<&Published>) -> Value {
    let status = match msg {
        Some(p) if p.expiry.is_none_or(|e| e > Utc::now()) => json!({
            "message": {"content": p.content, "contentType": "text"},
            "publishedDateTime": null,
        }),
        _ => Value::Null,
    };
    json!({
        "id": id,
        "availability": "Available",
        "activity": "Available",
        "statusMessage": status,
        "outOfOfficeSettings": {"message": null, "isOutOfOffice": false},
    })
}

// ---------------------------------------------------------------------------------------------
// Small helpers

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// `application/json; charset=utf-8` → `application/json`.
fn media_type(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn pct_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Random shuffle that never leaves 2+ items in their original order.
fn shuffle<T>(v: &mut [T]) {
    let n = v.len();
    if n < 2 {
        return;
    }
    let mut x = (uuid::Uuid::new_v4().as_u128() as u64) | 1;
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let j = (x % (i as u64 + 1)) as usize;
        v.swap(i, j);
        idx.swap(i, j);
    }
    if idx.iter().enumerate().all(|(i, p)| i == *p) {
        v.rotate_left(1);
    }
}

// ---------------------------------------------------------------------------------------------
// A listener whose connections a handler can reset

struct KillableListener(TcpListener);

struct KillableIo {
    inner: TcpStream,
    killed: Arc<AtomicBool>,
}

/// Per-connection switch: set it and the connection is reset instead of answered.
#[derive(Clone)]
struct ConnKill(Arc<AtomicBool>);

impl Listener for KillableListener {
    type Io = KillableIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((s, a)) => {
                    let _ = s.set_nodelay(true);
                    return (
                        KillableIo {
                            inner: s,
                            killed: Arc::new(AtomicBool::new(false)),
                        },
                        a,
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

impl Connected<IncomingStream<'_, KillableListener>> for ConnKill {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        ConnKill(stream.io().killed.clone())
    }
}

impl KillableIo {
    fn check(&self) -> io::Result<()> {
        if self.killed.load(Ordering::SeqCst) {
            // RST on close rather than FIN.
            let _ = self.inner.set_zero_linger();
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "fake graph: connection reset",
            ))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for KillableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
