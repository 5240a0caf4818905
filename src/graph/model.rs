//! Graph wire types: request bodies and the answers calstatus reads. Plain
//! data, no IO. Bodies follow the documentation exactly: `contentType`
//! `"text"`, `expiryDateTime.dateTime` without offset, `"timeZone": "UTC"`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `expiryDateTime.dateTime`: UTC wall time, 7 fractional digits, no offset.
pub fn graph_datetime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S.0000000").to_string()
}

/// The body of `setStatusMessage`.
pub fn set_status_body(message: &str, expiry: Option<DateTime<Utc>>) -> serde_json::Value {
    let mut status = serde_json::json!({
        "message": {"content": message, "contentType": "text"}
    });
    if let Some(e) = expiry {
        status["expiryDateTime"] =
            serde_json::json!({"dateTime": graph_datetime(e), "timeZone": "UTC"});
    }
    serde_json::json!({ "statusMessage": status })
}

/// The path of `setStatusMessage` for a user (relative to `/v1.0`).
pub fn set_status_path(user: &str) -> String {
    format!("/users/{user}/presence/setStatusMessage")
}

/// One `$batch` sub-request.
#[derive(Clone, Debug, Serialize)]
pub struct BatchRequest {
    /// Unique within the batch.
    pub id: String,
    /// HTTP method.
    pub method: &'static str,
    /// Relative URL.
    pub url: String,
    /// Headers.
    pub headers: serde_json::Value,
    /// JSON body.
    pub body: serde_json::Value,
}

/// A `$batch` envelope.
#[derive(Clone, Debug, Serialize)]
pub struct BatchEnvelope {
    /// Up to 20.
    pub requests: Vec<BatchRequest>,
}

/// One `$batch` sub-response.
#[derive(Clone, Debug, Deserialize)]
pub struct BatchItem {
    /// Matches the request id.
    pub id: String,
    /// HTTP status.
    pub status: u16,
    /// Headers (Retry-After lives here).
    #[serde(default)]
    pub headers: serde_json::Map<String, serde_json::Value>,
    /// Body.
    #[serde(default)]
    pub body: serde_json::Value,
}

/// The `$batch` answer.
#[derive(Clone, Debug, Deserialize)]
pub struct BatchAnswer {
    /// In any order.
    pub responses: Vec<BatchItem>,
}

/// Graph's error body.
#[derive(Clone, Debug, Deserialize, Default)]
pub struct GraphErrorBody {
    /// The error.
    #[serde(default)]
    pub error: GraphErrorInner,
}

/// Code and message.
#[derive(Clone, Debug, Deserialize, Default)]
pub struct GraphErrorInner {
    /// e.g. `Forbidden`.
    #[serde(default)]
    pub code: String,
    /// Human text.
    #[serde(default)]
    pub message: String,
}

/// Text content.
#[derive(Clone, Debug, Deserialize)]
pub struct ItemBody {
    /// The text.
    #[serde(default)]
    pub content: Option<String>,
}

/// The part of a status message an app can read.
#[derive(Clone, Debug, Deserialize)]
pub struct StatusMessageRead {
    /// The message.
    #[serde(default)]
    pub message: Option<ItemBody>,
}

/// One presence.
#[derive(Clone, Debug, Deserialize)]
pub struct Presence {
    /// Object id.
    pub id: String,
    /// The status message, if any.
    #[serde(default, rename = "statusMessage")]
    pub status_message: Option<StatusMessageRead>,
}

impl Presence {
    /// The current message text, `None` when there is none.
    pub fn message(&self) -> Option<String> {
        self.status_message
            .as_ref()
            .and_then(|s| s.message.as_ref())
            .and_then(|m| m.content.clone())
            .filter(|c| !c.trim().is_empty())
    }
}

/// `getPresencesByUserId` answer.
#[derive(Clone, Debug, Deserialize)]
pub struct PresenceList {
    /// Presences.
    pub value: Vec<Presence>,
}

/// A successful token answer.
#[derive(Clone, Deserialize)]
pub struct TokenAnswer {
    /// The bearer token.
    pub access_token: String,
    /// Seconds.
    pub expires_in: u64,
}

/// A token error from Entra ID.
#[derive(Clone, Debug, Deserialize, Default)]
pub struct TokenError {
    /// e.g. `invalid_client`.
    #[serde(default)]
    pub error: String,
    /// e.g. `AADSTS7000215: Invalid client secret provided…`.
    #[serde(default)]
    pub error_description: String,
    /// For support requests.
    #[serde(default)]
    pub trace_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_matches_the_documentation() {
        let t = DateTime::parse_from_rfc3339("2026-11-27T10:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            set_status_body("In a meeting until 10:30", Some(t)).to_string(),
            r#"{"statusMessage":{"expiryDateTime":{"dateTime":"2026-11-27T10:30:00.0000000","timeZone":"UTC"},"message":{"content":"In a meeting until 10:30","contentType":"text"}}}"#
        );
        assert!(!set_status_body("", None).to_string().contains("expiry"));
    }
}
