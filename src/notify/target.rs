//! What a notification is, and what a place it goes to (a webhook, an MQTT broker, …) must do.
//!
//! A target says which notifications it wants (`wants`, checked once when a notification is written
//! to the outbox) and delivers one (`deliver`). It never retries itself: the outbox calls `deliver`
//! again, with backoff, until it returns `Ok` or the row is too old. `deliver` runs on the notify
//! thread's own runtime (one task per target), so it may be slow without slowing anything else.

use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::{Event, EventKind};

/// What happened to the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeType {
    New,
    Update,
    End,
    /// A fall still not acknowledged `[notify] escalate_after_secs` after it started.
    Escalation,
}

impl ChangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::New => "new",
            ChangeType::Update => "update",
            ChangeType::End => "end",
            ChangeType::Escalation => "escalation",
        }
    }
}

/// Links to the event, its snapshot and its clip, from `[notify] public_url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Links {
    pub event: String,
    pub snapshot: String,
    pub clip: String,
}

/// One change of one event: `{"type", "before", "after", "links"}` as every target receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    #[serde(rename = "type")]
    pub change: ChangeType,
    /// The event as last notified (`null` for `new`, and after a restart).
    pub before: Option<Value>,
    /// The event as `/api/events` gives it.
    pub after: Value,
    pub links: Links,
}

impl Notification {
    pub fn new(change: ChangeType, before: Option<Value>, after: &Event, public_url: &str) -> Self {
        let base = public_url.trim_end_matches('/');
        let id = after.id.unwrap_or_default();
        let links = Links {
            event: format!("{base}/api/events/{id}"),
            snapshot: format!("{base}/api/events/{id}/snapshot.jpg"),
            clip: format!("{base}/api/events/{id}/clip.mp4"),
        };
        Self { change, before, after: api_json(after), links }
    }

    pub fn event_id(&self) -> i64 {
        self.after["id"].as_i64().unwrap_or_default()
    }

    pub fn camera(&self) -> &str {
        self.after["camera_id"].as_str().unwrap_or_default()
    }

    pub fn kind(&self) -> Option<EventKind> {
        self.after["kind"].as_str().and_then(EventKind::parse)
    }
}

/// The event as `/api/events` writes it, through its text: `serde_json::to_value` would widen its
/// f32s (0.85904461145401 where the API says 0.8590446).
pub fn api_json(event: &Event) -> Value {
    serde_json::to_vec(event).ok().and_then(|text| serde_json::from_slice(&text).ok()).unwrap_or(Value::Null)
}

/// Why one delivery failed (the outbox retries it).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    /// The receiver answered, but not with success (an HTTP status other than 2xx).
    #[error("answered {0}")]
    Refused(String),
    /// No answer: connection refused, timed out, broken.
    #[error("no answer: {0}")]
    Unreachable(String),
}

/// A place notifications go. Keep `name` stable: the outbox's rows are keyed by it, so pending rows
/// of a target survive a restart only under the same name.
pub trait Target: Send + Sync {
    fn name(&self) -> &str;
    /// What it is ("webhook", "mqtt"), for `/api/notify`.
    fn kind(&self) -> &'static str;
    /// Where it sends, credentials masked (`crate::redact`), for `/api/notify`.
    fn address(&self) -> String;
    /// Whether this notification is for it (its kinds and cameras; an `escalation` only if the
    /// target takes escalations).
    fn wants(&self, notification: &Notification) -> bool;
    /// Sends one notification; `Ok` only once the receiver has taken it. Must not log secrets.
    fn deliver<'a>(&'a self, notification: &'a Notification) -> LocalBoxFuture<'a, Result<(), DeliveryError>>;
}
