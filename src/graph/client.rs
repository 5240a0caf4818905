//! The Graph HTTP client: reads presences, resolves UPNs, and applies
//! status writes — directly or in `$batch` envelopes of up to 20 — through
//! the one limiter and the one retry policy. A throttled or failed batch
//! item is retried on its own; a 401 renews the token once. IO.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use super::GraphSettings;
use super::auth::{AuthError, TokenSource};
use super::model::{
    BatchAnswer, BatchEnvelope, BatchRequest, GraphErrorBody, PresenceList, set_status_path,
};
use super::policy::{Limiter, delay, parse_retry_after, should_retry};
use crate::engine::{PresenceReader, PresenceWriter, WriteResults};

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
}

impl OpError {
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
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        OpError {
            status: None,
            code: if e.is_timeout() {
                "Timeout".into()
            } else {
                "ConnectionError".into()
            },
            message: msg,
        }
    }

    fn from_auth(e: &AuthError) -> OpError {
        OpError {
            status: None,
            code: "TokenError".into(),
            message: e.to_string(),
        }
    }

    fn retryable(&self) -> bool {
        match self.status {
            Some(s) => should_retry(s),
            None => self.code != "TokenError",
        }
    }
}

/// One status write.
#[derive(Clone, Debug)]
pub struct Write {
    /// Object id.
    pub user: String,
    /// The `setStatusMessage` body.
    pub body: serde_json::Value,
}

/// The client.
pub struct GraphClient {
    http: reqwest::Client,
    settings: Arc<GraphSettings>,
    tokens: TokenSource,
    limiter: Limiter,
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
            limiter: Limiter::new(settings.budget, settings.budget_window),
            http,
            settings,
        })
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
                    OpError {
                        status: None,
                        code: "TokenError".into(),
                        message: "the token is not a valid header value".into(),
                    }
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
            let resp = req.send().await.map_err(|e| OpError::transport(&e))?;
            let status = resp.status().as_u16();
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

    /// An exchange under the retry policy; `presence_ops` is charged to the limiter per attempt.
    async fn with_retry(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        presence_ops: usize,
    ) -> Result<Answer, OpError> {
        let mut attempt = 0u32;
        loop {
            let permit = if presence_ops > 0 {
                Some(self.limiter.acquire(presence_ops).await)
            } else {
                None
            };
            let answer = self.exchange(method.clone(), path, body).await;
            if let Some(p) = permit {
                self.limiter.release(p).await;
            }
            let (err, retry_after) = match answer {
                Ok(a) if (200..300).contains(&a.status) => return Ok(a),
                Ok(a) => {
                    let e = error_of(a.status, &a.body);
                    (e, a.retry_after)
                }
                Err(e) => (e, None),
            };
            attempt += 1;
            if !err.retryable() || attempt >= self.settings.max_attempts {
                return Err(err);
            }
            let wait = delay(attempt - 1, retry_after);
            tracing::info!(message = "Retrying a Graph request.", path = %path, error = %err, wait_ms = wait.as_millis() as u64);
            tokio::time::sleep(wait).await;
        }
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
                        )
                        .await
                        .and_then(|a| {
                            serde_json::from_str::<PresenceList>(&a.body).map_err(|e| OpError {
                                status: Some(a.status),
                                code: "UnreadableAnswer".into(),
                                message: e.to_string(),
                            })
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
            .with_retry(reqwest::Method::GET, &path, None, 0)
            .await?;
        #[derive(serde::Deserialize)]
        struct Id {
            id: String,
        }
        serde_json::from_str::<Id>(&a.body)
            .map(|i| i.id)
            .map_err(|e| OpError {
                status: Some(a.status),
                code: "UnreadableAnswer".into(),
                message: e.to_string(),
            })
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
        let mut attempt = 0u32;
        while !pending.is_empty() {
            let reported = out.len();
            let permit = self.limiter.acquire(pending.len()).await;
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
            attempt += 1;
            let answer = self
                .exchange(reqwest::Method::POST, "/$batch", Some(&body))
                .await;
            self.limiter.release(permit).await;
            let mut retry: Vec<(usize, Write)> = Vec::new();
            let mut wait_hint: Option<Duration> = None;
            match answer {
                Ok(a) if a.status == 200 => match serde_json::from_str::<BatchAnswer>(&a.body) {
                    Ok(ans) => {
                        let by_id: HashMap<String, _> = ans
                            .responses
                            .into_iter()
                            .map(|r| (r.id.clone(), r))
                            .collect();
                        for (i, w) in pending.drain(..) {
                            let Some(item) = by_id.get(&(i + 1).to_string()) else {
                                retry.push((i, w));
                                continue;
                            };
                            if (200..300).contains(&item.status) {
                                out.push((w.user, Ok(())));
                                continue;
                            }
                            let err = item_error(item);
                            if err.retryable() && attempt < self.settings.max_attempts {
                                let ra = item
                                    .headers
                                    .iter()
                                    .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                                    .and_then(|(_, v)| {
                                        v.as_str()
                                            .map(str::to_string)
                                            .or_else(|| v.as_u64().map(|n| n.to_string()))
                                    })
                                    .and_then(|v| parse_retry_after(&v));
                                wait_hint = wait_hint.max(ra);
                                retry.push((i, w));
                            } else {
                                out.push((w.user, Err(err)));
                            }
                        }
                    }
                    Err(e) => {
                        let err = OpError {
                            status: Some(200),
                            code: "UnreadableAnswer".into(),
                            message: e.to_string(),
                        };
                        self.fail_or_retry(&mut pending, &mut retry, &mut out, err, attempt);
                    }
                },
                Ok(a) => {
                    let err = error_of(a.status, &a.body);
                    wait_hint = a.retry_after;
                    self.fail_or_retry(&mut pending, &mut retry, &mut out, err, attempt);
                }
                Err(err) => self.fail_or_retry(&mut pending, &mut retry, &mut out, err, attempt),
            }
            if out.len() > reported {
                done(out[reported..].to_vec());
            }
            if !retry.is_empty() {
                let wait = delay(attempt - 1, wait_hint);
                tracing::info!(
                    message = "Retrying batch items.",
                    items = retry.len(),
                    wait_ms = wait.as_millis() as u64
                );
                tokio::time::sleep(wait).await;
            }
            pending = retry;
        }
        out
    }

    fn fail_or_retry(
        &self,
        pending: &mut Vec<(usize, Write)>,
        retry: &mut Vec<(usize, Write)>,
        out: &mut Vec<(String, Result<(), OpError>)>,
        err: OpError,
        attempt: u32,
    ) {
        if err.retryable() && attempt < self.settings.max_attempts {
            retry.append(pending);
        } else {
            for (_, w) in pending.drain(..) {
                out.push((w.user, Err(err.clone())));
            }
        }
    }
}

fn error_of(status: u16, body: &str) -> OpError {
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
    }
}

fn item_error(item: &super::model::BatchItem) -> OpError {
    let e: GraphErrorBody = serde_json::from_value(item.body.clone()).unwrap_or_default();
    OpError {
        status: Some(item.status),
        code: if e.error.code.is_empty() {
            "Error".into()
        } else {
            e.error.code
        },
        message: e.error.message,
    }
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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
