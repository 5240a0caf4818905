//! Microsoft Graph: clouds, credentials, tokens, wire types and the HTTP
//! client (one rate limiter, batching; retries are `crate::retry`'s). All IO lives in
//! `auth` and `client`; `model` is plain data.

pub mod auth;
pub mod client;
pub mod limiter;
pub mod model;

use std::path::Path;
use std::time::Duration;

use crate::config::{Config, GraphSection};
use crate::rules::model::Problem;

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A national cloud.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cloud {
    /// Global (including GCC).
    #[default]
    Global,
    /// US Gov L4 (GCC High).
    UsGovL4,
    /// US Gov L5 (DoD).
    UsGovL5,
}

impl<'de> serde::Deserialize<'de> for Cloud {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cloud, D::Error> {
        let s = String::deserialize(d)?;
        Cloud::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// How the client assertion of a certificate credential is signed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AssertionAlgorithm {
    /// RSASSA-PSS with SHA-256 (what Entra documents today).
    #[default]
    Ps256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (older documentation).
    Rs256,
}

impl AssertionAlgorithm {
    /// The `jsonwebtoken` algorithm.
    pub fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            AssertionAlgorithm::Ps256 => jsonwebtoken::Algorithm::PS256,
            AssertionAlgorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
        }
    }
}

impl<'de> serde::Deserialize<'de> for AssertionAlgorithm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<AssertionAlgorithm, D::Error> {
        let s = String::deserialize(d)?;
        match s.trim().to_ascii_uppercase().as_str() {
            "PS256" => Ok(AssertionAlgorithm::Ps256),
            "RS256" => Ok(AssertionAlgorithm::Rs256),
            _ => Err(serde::de::Error::custom(format!(
                "{s:?} is not PS256 or RS256"
            ))),
        }
    }
}

impl Cloud {
    /// Parses the config value; China is refused with the reason.
    pub fn parse(s: &str) -> Result<Cloud, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "global" | "gcc" | "public" => Ok(Cloud::Global),
            "usgov-l4" | "gcch" | "gcc-high" => Ok(Cloud::UsGovL4),
            "usgov-l5" | "dod" => Ok(Cloud::UsGovL5),
            "china" | "21vianet" => Err("the presence APIs (setStatusMessage) are not available in the China (21Vianet) cloud".into()),
            other => Err(format!("unknown cloud {other:?}; use global, usgov-l4 or usgov-l5")),
        }
    }

    /// Graph root.
    pub fn graph_root(self) -> &'static str {
        match self {
            Cloud::Global => "https://graph.microsoft.com",
            Cloud::UsGovL4 => "https://graph.microsoft.us",
            Cloud::UsGovL5 => "https://dod-graph.microsoft.us",
        }
    }

    /// The scope of an app-only token for Graph in this cloud.
    pub fn scope(self) -> String {
        format!("{}/.default", self.graph_root())
    }

    /// Token host.
    pub fn login_root(self) -> &'static str {
        match self {
            Cloud::Global => "https://login.microsoftonline.com",
            Cloud::UsGovL4 | Cloud::UsGovL5 => "https://login.microsoftonline.us",
        }
    }
}

/// How the app proves who it is.
#[derive(Clone, Debug)]
pub enum Credential {
    /// A client secret.
    Secret(Secret),
    /// A certificate: signed client assertion.
    Certificate {
        /// DER of the certificate (for `x5t#S256`).
        cert_der: Vec<u8>,
        /// PEM of the private key.
        key_pem: Secret,
        /// PS256 or RS256.
        algorithm: jsonwebtoken::Algorithm,
    },
}

/// Everything needed to talk to Graph, checked.
#[derive(Clone, Debug)]
pub struct GraphSettings {
    /// Graph root without trailing slash (`https://graph.microsoft.com`).
    pub graph_root: String,
    /// Token URL (where the token request is sent: `login_url` or the cloud's).
    pub token_url: String,
    /// The cloud's Graph resource + `/.default`. Entra knows the resource
    /// only by its real name, so this never follows a `graph_url` override.
    pub scope: String,
    /// The `aud` of a client assertion: the cloud's own token endpoint for
    /// this tenant, whatever `login_url` the request is sent through.
    pub assertion_audience: String,
    /// Tenant.
    pub tenant_id: String,
    /// Client id.
    pub client_id: String,
    /// Credential.
    pub credential: Credential,
    /// Use `$batch`.
    pub batch: bool,
    /// Requests per window.
    pub budget: usize,
    /// Budget window.
    pub budget_window: Duration,
    /// Requests in flight.
    pub concurrency: usize,
    /// Attempts per operation.
    pub max_attempts: u32,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl GraphSettings {
    /// When the certificate credential expires (`None` for a secret, or a
    /// certificate that cannot be read).
    pub fn certificate_expiry(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        use x509_cert::der::Decode;
        let Credential::Certificate { cert_der, .. } = &self.credential else {
            return None;
        };
        let cert = x509_cert::Certificate::from_der(cert_der).ok()?;
        let after = cert.tbs_certificate.validity.not_after.to_unix_duration();
        chrono::DateTime::from_timestamp(i64::try_from(after.as_secs()).ok()?, 0)
    }
}

fn is_loopback_url(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn check_override(key: &str, s: &str, problems: &mut Vec<String>) -> Option<String> {
    match url::Url::parse(s) {
        Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && is_loopback_url(&u)) => {
            Some(s.trim_end_matches('/').to_string())
        }
        Ok(_) => {
            problems.push(format!(
                "{key}: must be https:// (http:// only for loopback hosts)"
            ));
            None
        }
        Err(e) => {
            problems.push(format!("{key}: invalid URL {s:?}: {e}"));
            None
        }
    }
}

/// Builds the Graph settings from `[graph]`, reading secrets from the
/// environment or files. Every problem is returned.
pub fn settings(config: &Config) -> Result<GraphSettings, Vec<Problem>> {
    let problem = |message: String| Problem {
        file: config.path.clone(),
        line: None,
        key: Some("graph".into()),
        message,
    };
    let Some(g) = &config.file.graph else {
        return Err(vec![problem(
            "no [graph] section: sync needs tenant_id, client_id and a secret or certificate (see README, \"Going live\")".into(),
        )]);
    };
    let mut problems: Vec<String> = Vec::new();
    let cloud = g.cloud;
    let graph_root = g
        .graph_url
        .as_deref()
        .map(|u| check_override("graph_url", u, &mut problems))
        .unwrap_or_else(|| Some(cloud.graph_root().to_string()));
    let login_root = g
        .login_url
        .as_deref()
        .map(|u| check_override("login_url", u, &mut problems))
        .unwrap_or_else(|| Some(cloud.login_root().to_string()));
    if g.tenant_id.trim().is_empty() || g.tenant_id.contains(['/', '?', '#']) {
        problems.push("tenant_id: give the directory (tenant) id".into());
    }
    if g.client_id.trim().is_empty() {
        problems.push("client_id: give the application (client) id".into());
    }
    let credential = credential(g, &config.dir, &mut problems);
    if g.budget == 0 {
        problems.push("budget: must be at least 1".into());
    }
    if g.budget_window.is_zero() {
        problems.push("budget_window: must be longer than zero".into());
    }
    if g.concurrency == 0 {
        problems.push("concurrency: must be at least 1".into());
    }
    if g.max_attempts == 0 {
        problems.push("max_attempts: must be at least 1".into());
    }
    if !problems.is_empty() {
        return Err(problems.into_iter().map(problem).collect());
    }
    let (Some(graph_root), Some(login_root), Some(credential)) =
        (graph_root, login_root, credential)
    else {
        return Err(vec![problem("incomplete [graph] section".into())]);
    };
    let tenant = g.tenant_id.trim();
    Ok(GraphSettings {
        // graph_url/login_url only change where requests go (a proxy, a
        // test fake): the token is still for the cloud's Graph resource.
        scope: cloud.scope(),
        assertion_audience: format!("{}/{tenant}/oauth2/v2.0/token", cloud.login_root()),
        token_url: format!("{login_root}/{tenant}/oauth2/v2.0/token"),
        graph_root,
        tenant_id: g.tenant_id.trim().to_string(),
        client_id: g.client_id.trim().to_string(),
        credential,
        batch: g.batch,
        budget: g.budget,
        budget_window: g.budget_window,
        concurrency: g.concurrency,
        max_attempts: g.max_attempts,
        timeout: g.timeout,
    })
}

fn credential(g: &GraphSection, dir: &Path, problems: &mut Vec<String>) -> Option<Credential> {
    let given = [
        g.client_secret_env.is_some(),
        g.client_secret_file.is_some(),
        g.certificate.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if given != 1 {
        problems.push(
            "give exactly one of client_secret_env, client_secret_file or certificate".into(),
        );
        return None;
    }
    let found = if let Some(var) = &g.client_secret_env {
        secret_from_env(var)
    } else if let Some(f) = &g.client_secret_file {
        secret_from_file(&dir.join(f))
    } else {
        certificate(g, dir)
    };
    found.map_err(|p| problems.push(p)).ok()
}

/// The client secret from an environment variable.
fn secret_from_env(var: &str) -> Result<Credential, String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(Credential::Secret(Secret::new(v.trim()))),
        _ => Err(format!(
            "client_secret_env: the environment variable {var} is not set"
        )),
    }
}

/// The client secret from a file (a mounted secret).
fn secret_from_file(p: &Path) -> Result<Credential, String> {
    match std::fs::read_to_string(p) {
        Ok(v) if !v.trim().is_empty() => Ok(Credential::Secret(Secret::new(v.trim()))),
        Ok(_) => Err(format!("client_secret_file: {} is empty", p.display())),
        Err(e) => Err(format!(
            "client_secret_file: cannot read {}: {e}",
            p.display()
        )),
    }
}

/// A certificate credential: the certificate's DER and its RSA private key
/// (from `private_key`, or the same PEM file), re-armoured alone.
fn certificate(g: &GraphSection, dir: &Path) -> Result<Credential, String> {
    let cert_path = dir.join(g.certificate.as_deref().unwrap_or_default());
    let cert_text = std::fs::read_to_string(&cert_path)
        .map_err(|e| format!("certificate: cannot read {}: {e}", cert_path.display()))?;
    let key_text = match &g.private_key {
        Some(k) => std::fs::read_to_string(dir.join(k))
            .map_err(|e| format!("private_key: cannot read {}: {e}", dir.join(k).display()))?,
        None => cert_text.clone(),
    };
    let cert_der = pem::parse_many(&cert_text)
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .ok_or_else(|| {
            format!(
                "certificate: no CERTIFICATE block in {}",
                cert_path.display()
            )
        })?;
    // The private key, re-armoured alone (PKCS#8 or PKCS#1 RSA).
    let key_pem = pem::parse_many(&key_text)
        .unwrap_or_default()
        .into_iter()
        .find(|p| matches!(p.tag(), "PRIVATE KEY" | "RSA PRIVATE KEY"))
        .map(|p| Secret::new(pem::encode(&p)))
        .ok_or("private_key: no PRIVATE KEY block found (PKCS#8 or RSA PEM)")?;
    if jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.expose().as_bytes()).is_err() {
        return Err("private_key: not a readable RSA private key".into());
    }
    Ok(Credential::Certificate {
        cert_der,
        key_pem,
        algorithm: g.assertion_algorithm.jwt(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "<redacted> Secret(<redacted>)");
    }

    #[test]
    fn clouds() {
        assert!(Cloud::parse("china").unwrap_err().contains("not available"));
        assert_eq!(
            Cloud::parse("usgov-l5").unwrap().graph_root(),
            "https://dod-graph.microsoft.us"
        );
    }

    #[test]
    fn overrides_move_requests_not_the_token_scope() {
        let file = toml::from_str(concat!(
            "[org]\n[graph]\n",
            "cloud = \"usgov-l4\"\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret_file = \"Cargo.toml\"\ngraph_url = \"https://proxy.example/graph\"\nlogin_url = \"https://proxy.example/login\"\n",
        ))
        .unwrap();
        let config = Config {
            path: "calstatus.toml".into(),
            dir: std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            file,
        };
        let s = settings(&config).unwrap();
        assert_eq!(s.graph_root, "https://proxy.example/graph");
        assert_eq!(
            s.token_url,
            "https://proxy.example/login/t/oauth2/v2.0/token"
        );
        assert_eq!(s.scope, "https://graph.microsoft.us/.default");
        assert_eq!(
            s.assertion_audience,
            "https://login.microsoftonline.us/t/oauth2/v2.0/token"
        );
    }
}
