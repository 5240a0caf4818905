//! The Graph HTTP client: reads presences, resolves UPNs, and applies
//! status writes — directly or in `$batch` envelopes of up to 20 — through
//! the one limiter and the one retry policy (`crate::retry`). A throttled
//! or failed batch item is retried on its own; a 401 renews the token once.
//! IO.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use super::GraphSettings;
use super::auth::{AuthError, TokenSource};
use super::limiter::Limiter;
use super::model::{
    BatchAnswer, BatchEnvelope, BatchRequest, GraphErrorBody, PresenceList, set_status_path,
};
use crate::engine::{PresenceReader, PresenceWriter, WriteResults};
use crate::retry::{RetryPolicy, Transient, parse_retry_after, retryable_status};

/// Most ids per `getPresencesByUserId`.
pub const MAX_PRESENCE_IDS: usize = 650;
/// Most requests per `$batch`.
pub const MAX_BATCH: usize = 20;

/// Why one operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct OpError {
    /// HTTP status, if an answer came.
    pub status: Option<u16>,
    /// Graph's error code (or a transport reason).
    pub code: String,
    /// Graph's message.
    pub message: String,
    /// The wait Graph asked for (`Retry-After`), if any.
    pub retry_after: Option<Duration>,
}

impl OpError {
    /// An error without an HTTP answer behind it.
    pub fn other(code: &str, message: impl Into<String>) -> OpError {
        OpError {
            status: None,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    fn describe(&self) -> String {
        let hint = match self.status {
            Some(403) => {
                " — is Presence.ReadWrite.All granted (application permission, with admin consent)?"
            }
            Some(404) => " — no such user in this tenant (use the Entra object id)",
            _ => "",
        };
        match self.status {
            Some(s) => format!("HTTP {s} {}: {}{hint}", self.code, self.message),
            None => format!("{}: {}", self.code, self.message),
        }
    }

    fn transport(e: &reqwest::Error) -> OpError {
        let msg = crate::text::error_chain(e);
        OpError::other(
            if e.is_timeout() {
                "Timeout"
            } else {
                "ConnectionError"
            },
            msg,
        )
    }

    fn from_auth(e: &AuthError) -> OpError {
        OpError::other(TOKEN_ERROR, e.to_string())
    }
}

const TOKEN_ERROR: &str = "TokenError";
const LEASE_LOST: &str = "LeaseLost";

impl Transient for OpError {
    fn transient(&self) -> Option<Option<Duration>> {
        let worth = match self.status {
            Some(s) => retryable_status(s),
            // Transport failures are worth another try; a token that
            // cannot be had (already retried by the token source) is not,
            // nor a write this instance may no longer send.
            None => self.code != TOKEN_ERROR && self.code != LEASE_LOST,
        };
        worth.then_some(self.retry_after)
    }
}

/// One status write.
#[derive(Clone, Debug)]
pub struct Write {
    /// Object id.
    pub user: String,
    /// The `setStatusMessage` body.
    pub body: serde_json::Value,
    /// The epoch of the shard lease it was decided under (several
    /// instances): sent only while that very lease is held.
    pub epoch: Option<i64>,
}

/// The client.
pub struct GraphClient {
    http: reqwest::Client,
    settings: Arc<GraphSettings>,
    tokens: TokenSource,
    limiter: Arc<Limiter>,
    retry: RetryPolicy,
    watch: Option<Arc<dyn Fn(Answered) + Send + Sync>>,
    gate: Option<Arc<Gate>>,
}

/// Whether a write may be sent now (a shared store: the user's shard must
/// still be held under the lease the write was decided under).
pub type Gate = dyn Fn(&Write) -> bool + Send + Sync;

/// The error of a write the gate stopped.
fn lease_lost() -> OpError {
    OpError::other(
        LEASE_LOST,
        "this instance no longer holds the user's shard; not sent (the holder writes it)",
    )
}

/// What Graph answered, for whoever watches (the daemon's metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answered {
    /// An HTTP answer with this status; 0 when none came.
    Http(u16),
    /// A `$batch` item with this status.
    BatchItem(u16),
}

/// A response reduced to what the policy needs.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    body: String,
}

impl GraphClient {
    /// Builds the client (no request is made).
    pub fn new(settings: GraphSettings) -> Result<GraphClient, OpError> {
        crate::calendar::source::install_crypto();
        let http = reqwest::Client::builder()
            .user_agent(concat!("calstatus/", env!("CARGO_PKG_VERSION")))
            .timeout(settings.timeout)
            .pool_max_idle_per_host(settings.concurrency.max(1) * 2)
            .build()
            .map_err(|e| OpError::transport(&e))?;
        let settings = Arc::new(settings);
        Ok(GraphClient {
            tokens: TokenSource::new(http.clone(), settings.clone()),
            limiter: Arc::new(Limiter::new(settings.budget, settings.budget_window)),
            retry: RetryPolicy::new(settings.max_attempts),
            watch: None,
            gate: None,
            http,
            settings,
        })
    }

    /// Calls `watch` with every answer (and every batch item) from now on.
    pub fn watch(mut self, watch: Arc<dyn Fn(Answered) + Send + Sync>) -> GraphClient {
        self.watch = Some(watch);
        self
    }

    /// Asks `gate` before sending each write (and each retry of it).
    pub fn gate(mut self, gate: Arc<Gate>) -> GraphClient {
        self.gate = Some(gate);
        self
    }

    fn allowed(&self, write: &Write) -> bool {
        self.gate.as_ref().is_none_or(|g| g(write))
    }

    /// The rate limiter (the daemon adjusts its budget to its share).
    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }

    /// Uses `limiter` (shared with a client this one replaces, so that a
    /// configuration reload keeps what was spent and this instance's share).
    pub fn with_limiter(mut self, limiter: Arc<Limiter>) -> GraphClient {
        self.limiter = limiter;
        self
    }

    fn answered(&self, a: Answered) {
        if let Some(w) = &self.watch {
            w(a);
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &GraphSettings {
        &self.settings
    }

    /// Checks that a token can be had (wrong secret, tenant, consent…).
    pub async fn check_token(&self) -> Result<(), AuthError> {
        self.tokens.token().await.map(|_| ())
    }

    /// One HTTP exchange with a bearer token; renews the token once on 401.
    async fn exchange(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, OpError> {
        let url = format!("{}/v1.0{path}", self.settings.graph_root);
        let mut renewed = false;
        loop {
            let token = self
                .tokens
                .token()
                .await
                .map_err(|e| OpError::from_auth(&e))?;
            let mut auth =
                HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                    OpError::other(TOKEN_ERROR, "the token is not a valid header value")
                })?;
            auth.set_sensitive(true);
            let mut req = self
                .http
                .request(method.clone(), &url)
                .header(AUTHORIZATION, auth);
            if let Some(b) = body {
                req = req
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .body(b.to_string());
            }
            let resp = req.send().await.map_err(|e| {
                self.answered(Answered::Http(0));
                OpError::transport(&e)
            })?;
            let status = resp.status().as_u16();
            self.answered(Answered::Http(status));
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let text = resp.text().await.map_err(|e| OpError::transport(&e))?;
            if status == 401 && !renewed {
                tracing::info!(message = "Token rejected; renewing once.", path = %path);
                self.tokens.invalidate(&token).await;
                renewed = true;
                continue;
            }
            return Ok(Answer {
                status,
                retry_after,
                body: text,
            });
        }
    }

    /// An exchange under the retry policy; `presence_ops` is charged to the
    /// limiter per attempt; `gated` is sent only while the gate allows it.
    async fn with_retry(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        presence_ops: usize,
        gated: Option<&Write>,
    ) -> Result<Answer, OpError> {
        self.retry
            .run(path, || async {
                let permit = match presence_ops {
                    0 => None,
                    n => Some(self.limiter.acquire(n).await),
                };
                if gated.is_some_and(|w| !self.allowed(w)) {
                    if let Some(p) = permit {
                        self.limiter.release(p).await;
                    }
                    return Err(lease_lost());
                }
                let answer = self.exchange(method.clone(), path, body).await;
                if let Some(p) = permit {
                    self.limiter.release(p).await;
                }
                let a = answer?;
                if (200..300).contains(&a.status) {
                    Ok(a)
                } else {
                    Err(error_of(a.status, &a.body, a.retry_after))
                }
            })
            .await
    }

    /// Current status message text per user (`None`: no message). Chunks of 650.
    pub async fn read_messages(
        &self,
        ids: &[String],
    ) -> HashMap<String, Result<Option<String>, OpError>> {
        let chunks: Vec<Vec<String>> = ids.chunks(MAX_PRESENCE_IDS).map(|c| c.to_vec()).collect();
        let results: Vec<(Vec<String>, Result<PresenceList, OpError>)> =
            futures::stream::iter(chunks)
                .map(|chunk| async move {
                    let body = serde_json::json!({ "ids": chunk });
                    let r = self
                        .with_retry(
                            reqwest::Method::POST,
                            "/communications/getPresencesByUserId",
                            Some(&body),
                            1,
                            None,
                        )
                        .await
                        .and_then(|a| {
                            serde_json::from_str::<PresenceList>(&a.body)
                                .map_err(|e| unreadable(a.status, &e))
                        });
                    (chunk, r)
                })
                .buffer_unordered(self.settings.concurrency.max(1))
                .collect()
                .await;
        let mut out = HashMap::new();
        for (chunk, r) in results {
            match r {
                Ok(list) => {
                    let by_id: HashMap<String, Option<String>> = list
                        .value
                        .into_iter()
                        .map(|p| (p.id.to_ascii_lowercase(), p.message()))
                        .collect();
                    for id in chunk {
                        let v = by_id.get(&id.to_ascii_lowercase()).cloned().unwrap_or(None);
                        out.insert(id, Ok(v));
                    }
                }
                Err(e) => {
                    for id in chunk {
                        out.insert(id, Err(e.clone()));
                    }
                }
            }
        }
        out
    }

    /// Resolves a UPN to an object id (`User.Read.All` needed).
    pub async fn resolve_upn(&self, upn: &str) -> Result<String, OpError> {
        let path = format!("/users/{}?$select=id", url_escape(upn));
        let a = self
            .with_retry(reqwest::Method::GET, &path, None, 0, None)
            .await?;
        #[derive(serde::Deserialize)]
        struct Id {
            id: String,
        }
        serde_json::from_str::<Id>(&a.body)
            .map(|i| i.id)
            .map_err(|e| unreadable(a.status, &e))
    }

    /// Applies writes; `done` gets each group of finished writes (a batch
    /// round, or one direct write). Results in any order.
    pub async fn apply(
        &self,
        writes: Vec<Write>,
        done: &(dyn Fn(WriteResults) + Send + Sync),
    ) -> WriteResults {
        if self.settings.batch {
            // A batch never holds more items than the budget allows at once.
            let size = MAX_BATCH.min(self.settings.budget).max(1);
            let groups: Vec<Vec<Write>> = writes.chunks(size).map(|c| c.to_vec()).collect();
            futures::stream::iter(groups)
                .map(|g| self.apply_batch(g, done))
                .buffer_unordered(self.settings.concurrency.max(1))
                .flat_map(futures::stream::iter)
                .collect()
                .await
        } else {
            futures::stream::iter(writes)
                .map(|w| async move {
                    let r = self
                        .with_retry(
                            reqwest::Method::POST,
                            &set_status_path(&w.user),
                            Some(&w.body),
                            1,
                            Some(&w),
                        )
                        .await
                        .map(|_| ());
                    done(vec![(w.user.clone(), r.clone())]);
                    (w.user, r)
                })
                .buffer_unordered(self.settings.concurrency.max(1))
                .collect()
                .await
        }
    }

    /// One batch of up to 20, retrying only the items that need it.
    async fn apply_batch(
        &self,
        writes: Vec<Write>,
        done: &(dyn Fn(WriteResults) + Send + Sync),
    ) -> WriteResults {
        let mut pending: Vec<(usize, Write)> = writes.into_iter().enumerate().collect();
        let mut out = Vec::new();
        let mut failed_rounds = 0u32;
        while !pending.is_empty() {
            let (mut finished, retry, unsent) = self.batch_round(&pending).await;
            failed_rounds += 1;
            let hint = retry.iter().filter_map(|(_, _, e)| e.retry_after).max();
            let wait = match retry.is_empty() {
                true => None,
                false => self.retry.next_delay(failed_rounds, hint),
            };
            pending = unsent;
            for (i, w, e) in retry {
                match wait {
                    Some(_) => pending.push((i, w)),
                    None => finished.push((w.user, Err(e))),
                }
            }
            if !finished.is_empty() {
                done(finished.clone());
                out.extend(finished);
            }
            if let Some(wait) = wait {
                tracing::info!(
                    message = "Retrying batch items.",
                    items = pending.len(),
                    wait_ms = wait.as_millis() as u64
                );
                tokio::time::sleep(wait).await;
            }
        }
        out
    }

    /// Sends `pending` as one `$batch`: the writes that finished (applied,
    /// or failed for good), those worth another try, with their error, and
    /// those not sent (a budget share smaller than the batch).
    async fn batch_round(
        &self,
        pending: &[(usize, Write)],
    ) -> (
        WriteResults,
        Vec<(usize, Write, OpError)>,
        Vec<(usize, Write)>,
    ) {
        let permit = self.limiter.acquire(pending.len()).await;
        let (pending, unsent) = pending.split_at(permit.len().min(pending.len()));
        let unsent = unsent.to_vec();
        // Writes the gate stops now are not sent (and not retried).
        let (pending, stopped): (Vec<_>, Vec<_>) =
            pending.iter().partition(|(_, w)| self.allowed(w));
        let mut finished: WriteResults = stopped
            .into_iter()
            .map(|(_, w)| (w.user.clone(), Err(lease_lost())))
            .collect();
        if pending.is_empty() {
            self.limiter.release(permit).await;
            return (finished, Vec::new(), unsent);
        }
        let envelope = BatchEnvelope {
            requests: pending
                .iter()
                .map(|(i, w)| BatchRequest {
                    id: (i + 1).to_string(),
                    method: "POST",
                    url: set_status_path(&w.user),
                    headers: serde_json::json!({"Content-Type": "application/json"}),
                    body: w.body.clone(),
                })
                .collect(),
        };
        let body = serde_json::to_value(&envelope).unwrap_or_default();
        let answer = self
            .exchange(reqwest::Method::POST, "/$batch", Some(&body))
            .await;
        self.limiter.release(permit).await;
        // The error of each item; a whole-batch failure is every item's.
        let items: Vec<Result<(), OpError>> = match answer {
            Ok(a) if a.status == 200 => match serde_json::from_str::<BatchAnswer>(&a.body) {
                Ok(ans) => {
                    let by_id: HashMap<String, _> = ans
                        .responses
                        .into_iter()
                        .map(|r| (r.id.clone(), r))
                        .collect();
                    pending
                        .iter()
                        .map(|(i, _)| match by_id.get(&(i + 1).to_string()) {
                            Some(item) => {
                                self.answered(Answered::BatchItem(item.status));
                                if (200..300).contains(&item.status) {
                                    Ok(())
                                } else {
                                    Err(item_error(item))
                                }
                            }
                            None => Err(OpError {
                                status: Some(200),
                                code: "MissingBatchItem".into(),
                                message: "the batch answer has no item for this request".into(),
                                retry_after: None,
                            }),
                        })
                        .collect()
                }
                Err(e) => vec![Err(unreadable(200, &e)); pending.len()],
            },
            Ok(a) => vec![Err(error_of(a.status, &a.body, a.retry_after)); pending.len()],
            Err(e) => vec![Err(e); pending.len()],
        };
        let mut retry = Vec::new();
        for ((i, w), r) in pending.into_iter().cloned().zip(items) {
            match r {
                Err(e) if e.code == "MissingBatchItem" || e.transient().is_some() => {
                    retry.push((i, w, e))
                }
                r => finished.push((w.user, r)),
            }
        }
        (finished, retry, unsent)
    }
}

fn unreadable(status: u16, e: &serde_json::Error) -> OpError {
    OpError {
        status: Some(status),
        code: "UnreadableAnswer".into(),
        message: e.to_string(),
        retry_after: None,
    }
}

fn error_of(status: u16, body: &str, retry_after: Option<Duration>) -> OpError {
    let e: GraphErrorBody = serde_json::from_str(body).unwrap_or_default();
    OpError {
        status: Some(status),
        code: if e.error.code.is_empty() {
            "Error".into()
        } else {
            e.error.code
        },
        message: if e.error.message.is_empty() {
            body.chars().take(200).collect()
        } else {
            e.error.message
        },
        retry_after,
    }
}

fn item_error(item: &super::model::BatchItem) -> OpError {
    let e: GraphErrorBody = serde_json::from_value(item.body.clone()).unwrap_or_default();
    let retry_after = item
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
        .and_then(|(_, v)| {
            v.as_str()
                .map(str::to_string)
                .or_else(|| v.as_u64().map(|n| n.to_string()))
        })
        .and_then(|v| parse_retry_after(&v));
    OpError {
        status: Some(item.status),
        code: if e.error.code.is_empty() {
            "Error".into()
        } else {
            e.error.code
        },
        message: e.error.message,
        retry_after,
    }
}

/// A UPN as one path segment: everything but unreserved characters and
/// `@` is percent-encoded.
fn url_escape(s: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b'@');
    utf8_percent_encode(s, SEGMENT).to_string()
}

#[async_trait::async_trait]
impl PresenceReader for GraphClient {
    async fn read_messages(
        &self,
        ids: &[String],
    ) -> HashMap<String, Result<Option<String>, OpError>> {
        GraphClient::read_messages(self, ids).await
    }

    async fn resolve_upn(&self, upn: &str) -> Result<String, OpError> {
        GraphClient::resolve_upn(self, upn).await
    }
}

#[async_trait::async_trait]
impl PresenceWriter for GraphClient {
    async fn write(&self, writes: Vec<Write>, done: &(dyn Fn(WriteResults) + Send + Sync)) {
        self.apply(writes, done).await;
    }
}
