//! App-only tokens (client credentials) with a cache: by client secret or
//! by a signed client assertion (certificate, `x5t#S256`). Tokens are
//! renewed before they run out; a 401 invalidates the cached one. IO.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::Digest;

use super::model::{TokenAnswer, TokenError};
use super::{Credential, GraphSettings, Secret};
use crate::retry::{RetryPolicy, Transient, parse_retry_after, retryable_status};

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Entra ID answered with an error.
    #[error("Entra ID refused the token request ({error}): {description}{hint}{trace}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The wait asked for (`Retry-After`), if any.
        retry_after: Option<Duration>,
        /// `error`.
        error: String,
        /// `error_description`, first line.
        description: String,
        /// What to check.
        hint: String,
        /// `trace_id`, if given.
        trace: String,
    },
    /// Transport failure.
    #[error("cannot reach the token endpoint {url}: {reason}")]
    Http {
        /// The token URL.
        url: String,
        /// One line.
        reason: String,
    },
    /// The client assertion could not be signed.
    #[error("cannot sign the client assertion: {0}")]
    Assertion(String),
}

impl AuthError {
    /// `true` when the configuration or the app registration is wrong (a
    /// refusal, an unsignable assertion), `false` when Entra could not be
    /// reached or answered with a transient failure: the first is fixed by
    /// an admin, the second by waiting.
    pub fn is_configuration(&self) -> bool {
        match self {
            AuthError::Refused { status, .. } => !retryable_status(*status),
            AuthError::Assertion(_) => true,
            AuthError::Http { .. } => false,
        }
    }
}

impl Transient for AuthError {
    fn transient(&self) -> Option<Option<Duration>> {
        match self {
            AuthError::Http { .. } => Some(None),
            AuthError::Refused {
                status,
                retry_after,
                ..
            } if retryable_status(*status) => Some(*retry_after),
            _ => None,
        }
    }
}

struct Cached {
    token: Secret,
    renew_at: Instant,
}

/// A token cache for one app registration.
pub struct TokenSource {
    http: reqwest::Client,
    settings: Arc<GraphSettings>,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

/// What Entra's error codes usually mean, for the person reading the error.
fn hint_for(description: &str) -> &'static str {
    let codes = [
        ("AADSTS7000215", "the client secret is wrong"),
        (
            "AADSTS7000222",
            "the client secret has expired: create a new one",
        ),
        (
            "AADSTS700016",
            "no app with this client_id in this tenant: check client_id and tenant_id",
        ),
        (
            "AADSTS90002",
            "tenant not found: check tenant_id and the cloud",
        ),
        ("AADSTS900023", "tenant_id is not a valid tenant identifier"),
        (
            "AADSTS700027",
            "the certificate assertion was rejected: is the certificate uploaded to the app registration?",
        ),
        (
            "AADSTS65001",
            "admin consent is missing: grant Presence.ReadWrite.All (application) with admin consent",
        ),
        ("AADSTS7000112", "the application is disabled"),
    ];
    codes
        .iter()
        .find(|(c, _)| description.contains(c))
        .map(|(_, h)| *h)
        .unwrap_or("")
}

impl TokenSource {
    /// A cache for these settings.
    pub fn new(http: reqwest::Client, settings: Arc<GraphSettings>) -> TokenSource {
        TokenSource {
            http,
            settings,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// A valid token, from the cache or freshly requested (one request at a time).
    pub async fn token(&self) -> Result<Secret, AuthError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref()
            && Instant::now() < c.renew_at
        {
            return Ok(c.token.clone());
        }
        // Entra's transient failures (429, 5xx, resets) are retried under
        // the one policy; a refusal (wrong secret, tenant…) is final.
        let (token, lifetime) = RetryPolicy::new(self.settings.max_attempts)
            .run("token request", || self.request())
            .await?;
        // Renew at 80% of the lifetime, at least a minute early when possible.
        let early = (lifetime / 5)
            .max(Duration::from_secs(60))
            .min(lifetime / 2);
        *cache = Some(Cached {
            token: token.clone(),
            renew_at: Instant::now() + lifetime.saturating_sub(early),
        });
        Ok(token)
    }

    /// Drops `used` from the cache (after a 401), so the next call renews.
    pub async fn invalidate(&self, used: &Secret) {
        let mut cache = self.cache.lock().await;
        if cache.as_ref().is_some_and(|c| &c.token == used) {
            *cache = None;
        }
    }

    async fn request(&self) -> Result<(Secret, Duration), AuthError> {
        let s = &self.settings;
        let form = self.form()?;
        tracing::debug!(message = "Requesting an app-only token.", url = %s.token_url);
        let resp = self
            .http
            .post(&s.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| AuthError::Http {
                url: s.token_url.clone(),
                reason: e.to_string(),
            })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(refused(status.as_u16(), retry_after, &text));
        }
        let t: TokenAnswer = serde_json::from_str(&text).map_err(|e| AuthError::Http {
            url: s.token_url.clone(),
            reason: format!("unreadable token answer: {e}"),
        })?;
        Ok((
            Secret::new(t.access_token),
            Duration::from_secs(t.expires_in.max(60)),
        ))
    }

    /// The token request's form: client credentials with the secret, or
    /// with a signed client assertion for a certificate.
    fn form(&self) -> Result<Vec<(&'static str, String)>, AuthError> {
        let s = &self.settings;
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "client_credentials".into()),
            ("client_id", s.client_id.clone()),
            ("scope", s.scope.clone()),
        ];
        match &s.credential {
            Credential::Secret(secret) => form.push(("client_secret", secret.expose().to_string())),
            Credential::Certificate {
                cert_der,
                key_pem,
                algorithm,
            } => {
                let jwt = client_assertion(
                    &s.client_id,
                    &s.assertion_audience,
                    cert_der,
                    key_pem,
                    *algorithm,
                )?;
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ));
                form.push(("client_assertion", jwt.expose().to_string()));
            }
        }
        Ok(form)
    }
}

/// Entra's refusal of a token request, from its error answer: the code,
/// the first line of its description, a hint for the common ones, and the
/// trace id to quote to support.
fn refused(status: u16, retry_after: Option<Duration>, text: &str) -> AuthError {
    let e: TokenError = serde_json::from_str(text).unwrap_or_default();
    let description = e
        .error_description
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let hint = hint_for(&description);
    AuthError::Refused {
        status,
        retry_after,
        error: if e.error.is_empty() {
            format!("HTTP {status}")
        } else {
            e.error
        },
        description: if description.is_empty() {
            "no description".into()
        } else {
            description
        },
        hint: if hint.is_empty() {
            String::new()
        } else {
            format!(" — {hint}")
        },
        trace: e
            .trace_id
            .map(|t| format!(" (trace id {t})"))
            .unwrap_or_default(),
    }
}

/// `x5t#S256`: base64url SHA-256 thumbprint of the certificate DER.
pub fn thumbprint_s256(cert_der: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(cert_der))
}

/// Signs a client assertion (valid 10 minutes) for `audience`, the cloud's
/// token endpoint.
pub fn client_assertion(
    client_id: &str,
    audience: &str,
    cert_der: &[u8],
    key_pem: &Secret,
    algorithm: jsonwebtoken::Algorithm,
) -> Result<Secret, AuthError> {
    let mut header = jsonwebtoken::Header::new(algorithm);
    header.typ = Some("JWT".into());
    header.x5t_s256 = Some(thumbprint_s256(cert_der));
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "aud": audience,
        "iss": client_id,
        "sub": client_id,
        "jti": uuid::Uuid::new_v4().to_string(),
        "nbf": now,
        "iat": now,
        "exp": now + 600,
    });
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.expose().as_bytes())
        .map_err(|e| AuthError::Assertion(e.to_string()))?;
    jsonwebtoken::encode(&header, &claims, &key)
        .map(Secret::new)
        .map_err(|e| AuthError::Assertion(e.to_string()))
}
