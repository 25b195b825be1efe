//! `haven/events` as a notification target: every event change the notifier writes to its outbox
//! for `mqtt` is published there, QoS 1, in order, and taken off the outbox only once the broker
//! has acknowledged it.

use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use serde::Serialize;
use serde_json::Value;

use super::MqttLink;
use crate::notify::{ChangeType, DeliveryError, Notification, Target};

/// The target's name in the outbox and `/api/notify` (a webhook may not take it).
pub const NAME: &str = "mqtt";

/// One change of an event as `haven/events` carries it: `type` (`new`, `update`, `end`), `before`
/// (null for `new`), `after` (the event as `GET /api/events/{id}` gives it), and its links.
#[derive(Serialize)]
struct EventMessage<'a> {
    #[serde(rename = "type")]
    change: &'static str,
    before: &'a Option<Value>,
    after: &'a Value,
    links: &'a crate::notify::target::Links,
}

pub struct MqttTarget {
    link: Arc<MqttLink>,
}

impl MqttTarget {
    pub fn new(link: Arc<MqttLink>) -> Self {
        Self { link }
    }
}

impl Target for MqttTarget {
    fn name(&self) -> &str {
        NAME
    }

    fn kind(&self) -> &'static str {
        "mqtt"
    }

    fn address(&self) -> String {
        format!("{}/{}", crate::redact::redact_url(&self.link.settings.url).trim_end_matches('/'), self.link.topics.events())
    }

    /// Every change of every kind; escalations go to the targets marked for them (webhooks).
    fn wants(&self, notification: &Notification) -> bool {
        notification.change != ChangeType::Escalation
    }

    fn deliver<'a>(&'a self, n: &'a Notification) -> LocalBoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let message = EventMessage { change: n.change.as_str(), before: &n.before, after: &n.after, links: &n.links };
            let payload = serde_json::to_vec(&message).unwrap_or_default();
            self.link.publish_event_change(payload).await
        })
    }
}
