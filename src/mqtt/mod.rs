//! MQTT, Home Assistant's way: HAVEN's availability, every event change, each camera's fall, people,
//! AI switch, status and newest event snapshot, published to a broker (`[mqtt]`, docs/mqtt.md), and
//! the commands HAVEN takes from it (`<camera>/ai/set`, `<camera>/snooze/set`).
//!
//! `MqttLink` is the connection's state (queue, counters) and its one way in for event changes,
//! `publish_event_change`; the tasks that drive it live in `run.rs`. A broker that is down at start
//! or goes away never stops HAVEN: the link reconnects with backoff, republishes availability,
//! discovery and the retained states, and sends the event changes queued meanwhile.

pub mod config;
mod run;
pub mod topics;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rumqttc::{AsyncClient, LastWill, MqttOptions, QoS};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;

pub use config::MqttSettings;
use topics::Topics;

/// Event changes kept while the broker is away; past this the oldest is dropped (counted, logged).
pub const QUEUE_LIMIT: usize = 10_000;
/// The largest message HAVEN sends or takes (event snapshots are JPEGs of a few hundred KB at most).
const MAX_PACKET_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
}

/// One change of an event, as `haven/events` carries it (and, later, the notification outbox):
/// `type` is `new`, `update` or `end`; `before` the event as it was (null for `new`), `after` as it is
/// now, each as `GET /api/events/{id}` gives it.
#[derive(Debug, Clone, Serialize)]
pub struct EventMessage {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub before: Option<Value>,
    pub after: Value,
}

/// A message waiting for the broker: an event change (QoS 1).
#[derive(Debug, Clone)]
struct Outgoing {
    topic: String,
    payload: Vec<u8>,
}

/// Event changes not yet acknowledged by the broker: waiting, and sent but not acknowledged (put
/// back in front of the waiting ones when the connection drops: a new session forgets them).
#[derive(Debug, Default)]
struct Queue {
    waiting: VecDeque<Outgoing>,
    unacked: VecDeque<Outgoing>,
}

/// The broker connection as `GET /api/mqtt` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MqttView {
    pub enabled: bool,
    pub connected: bool,
    /// The broker's URL, credentials masked.
    pub broker: Option<String>,
    /// Messages handed to the broker (event changes counted once acknowledged).
    pub published: u64,
    /// Event changes dropped from a full queue while the broker was away.
    pub dropped: u64,
    /// Event changes waiting for the broker.
    pub queued: u64,
}

/// The link to the broker, shared by its tasks, the event hub's sink and the API.
pub struct MqttLink {
    settings: MqttSettings,
    topics: Topics,
    client: AsyncClient,
    queue: Mutex<Queue>,
    /// Wakes the publishing task: a change queued, the connection (re)made.
    wake: Notify,
    connected: AtomicBool,
    stopping: AtomicBool,
    published: AtomicU64,
    dropped: AtomicU64,
    /// Where `<camera>/snooze/set` snoozes the camera's notifications (as POST …/snooze does).
    pub notifier: Arc<crate::notify::Notifier>,
    /// On a cluster node: commands change the inventory, as the API's PATCH does there.
    cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

impl MqttLink {
    /// The client and its event loop (not connected yet: `run::start` drives it).
    fn new(settings: &MqttSettings, notifier: Arc<crate::notify::Notifier>) -> Result<(Arc<Self>, rumqttc::EventLoop), MqttError> {
        let broker = settings.broker()?.expect("start is called only with a url");
        let topics = Topics::new(settings);
        let mut options = MqttOptions::new(settings.client_id.clone(), broker.host, broker.port);
        options.set_keep_alive(Duration::from_secs(15));
        options.set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
        options.set_last_will(LastWill::new(topics.available(), "offline", QoS::AtLeastOnce, true));
        if let Some(password) = settings.password()? {
            options.set_credentials(settings.username.clone(), password);
        } else if !settings.username.is_empty() {
            options.set_credentials(settings.username.clone(), String::new());
        }
        let (client, events) = AsyncClient::new(options, 1024);
        let link = Arc::new(Self {
            settings: settings.clone(),
            topics,
            client,
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            connected: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            published: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            notifier,
            cluster: std::sync::OnceLock::new(),
        });
        Ok((link, events))
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues one event change for `haven/events` (QoS 1, in order); sent now if connected, else
    /// after reconnecting. A full queue drops its oldest change (logged, counted).
    pub fn publish_event_change(&self, message: &EventMessage) {
        let payload = serde_json::to_vec(message).unwrap_or_default();
        let mut queue = self.queue();
        if queue.waiting.len() + queue.unacked.len() >= QUEUE_LIMIT {
            queue.waiting.pop_front();
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped == 1 || dropped.is_multiple_of(1000) {
                log::warn!("mqtt: {QUEUE_LIMIT} event changes wait for the broker; the oldest is dropped ({dropped} so far)");
            }
        }
        queue.waiting.push_back(Outgoing { topic: self.topics.events(), payload });
        drop(queue);
        self.wake.notify_one();
    }

    /// A cluster node: the owner of a camera carries out its commands, through the inventory.
    pub fn join_cluster(&self, cluster: Arc<crate::cluster::Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn view(&self) -> MqttView {
        let queue = self.queue();
        MqttView {
            enabled: true,
            connected: self.connected(),
            broker: Some(crate::redact::redact_url(&self.settings.url)),
            published: self.published.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            queued: (queue.waiting.len() + queue.unacked.len()) as u64,
        }
    }

    /// What `GET /api/mqtt` shows without MQTT.
    pub fn off_view() -> MqttView {
        MqttView { enabled: false, connected: false, broker: None, published: 0, dropped: 0, queued: 0 }
    }

    /// A clean shutdown: `offline` (retained), then a disconnect; waits at most `timeout`.
    pub async fn shutdown(&self, timeout: Duration) {
        self.stopping.store(true, Ordering::Relaxed);
        if !self.connected() {
            return;
        }
        // The publisher takes the cameras' last changes first; the broker acknowledges them.
        let deadline = tokio::time::Instant::now() + timeout;
        let flushed_by = tokio::time::Instant::now() + timeout / 2;
        tokio::time::sleep(Duration::from_millis(50)).await;
        while self.view().queued > 0 && self.connected() && tokio::time::Instant::now() < flushed_by {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.client.try_publish(self.topics.available(), QoS::AtMostOnce, true, "offline");
        let _ = self.client.try_disconnect();
        while self.connected() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub use run::start;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_its_oldest_change_and_counts_it() {
        let settings = MqttSettings { url: "mqtt://127.0.0.1:1".into(), ..MqttSettings::default() };
        let dir = crate::events::store::tests::TempDir::new("mqtt-queue");
        let events = crate::events::hub::tests::hub(&dir.0, false);
        let notifier = crate::notify::Notifier::start(&Default::default(), Vec::new(), &events).unwrap();
        let (link, _eventloop) = MqttLink::new(&settings, notifier).unwrap();
        for n in 0..=QUEUE_LIMIT {
            link.publish_event_change(&EventMessage { kind: "new", before: None, after: serde_json::json!({ "id": n }) });
        }
        let view = link.view();
        assert_eq!((view.queued, view.dropped, view.connected), (QUEUE_LIMIT as u64, 1, false));
        let first: Value = serde_json::from_slice(&link.queue().waiting[0].payload).unwrap();
        assert_eq!(first, serde_json::json!({ "type": "new", "before": null, "after": { "id": 1 } }));
    }
}
