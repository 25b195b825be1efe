//! The link's two tasks: `drive` polls the connection (reconnecting with backoff, acknowledgements,
//! incoming commands); `Publisher` publishes each camera's states, snapshots and discovery configs
//! and carries out the commands. Event changes go out through the notifier's outbox (`target.rs`).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use rumqttc::{Event as Net, EventLoop, Outgoing as Out, Packet, QoS};
use serde_json::json;
use tokio::sync::mpsc;

use super::topics::{on_off, parse_on_off, ENTITIES};
use super::{MqttLink, Prepared};
use crate::camera::{CameraPatch, CameraState, CameraStatusView};
use crate::events::{Event, EventChange, EventHub, EventKind};
use crate::hub::{GetStatus, Statuses, StreamHub, Update};

/// Reconnection waits: from the first, doubled up to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));
/// How often states (people, AI, status) are compared with what was published; the status is
/// therefore published at most once a second.
const REFRESH: Duration = Duration::from_secs(1);

/// What the connection tells the publisher.
enum Link {
    Connected,
    Command(String, Vec<u8>),
}

/// Starts a prepared link's tasks (the notifier already has its target), and the event hub's changes
/// into its camera states. Call before the cameras start, inside the actix system.
pub fn start(prepared: Prepared, hub: Addr<StreamHub>, events: Arc<EventHub>, notifier: Arc<crate::notify::Notifier>, accounts: Arc<crate::auth::AccountStore>) -> Arc<MqttLink> {
    let Prepared { link, eventloop } = prepared;
    let _ = link.notifier.set(notifier);
    let _ = link.accounts.set(accounts);
    let (changes_tx, changes) = mpsc::unbounded_channel();
    events.watch(Box::new(move |id, change, event| {
        let _ = changes_tx.send((id, change, event));
    }));
    let (link_tx, link_rx) = mpsc::unbounded_channel();
    actix_web::rt::spawn(drive(link.clone(), eventloop, link_tx));
    let publisher = Publisher { link: link.clone(), hub, events, known: BTreeSet::new(), rediscover: false, retained: HashMap::new() };
    actix_web::rt::spawn(publisher.run(changes, link_rx));
    log::info!("mqtt: publishing to {} under {}/", crate::redact::redact_url(&link.settings.url), link.settings.topic_prefix);
    link
}

/// Polls the connection until shutdown: a broker down or gone is retried with backoff; once it is
/// back the outbox sends what waited at once.
async fn drive(link: Arc<MqttLink>, mut eventloop: EventLoop, tx: mpsc::UnboundedSender<Link>) {
    let shown = crate::redact::redact_url(&link.settings.url);
    let mut backoff = BACKOFF.0;
    loop {
        match eventloop.poll().await {
            Ok(Net::Incoming(Packet::ConnAck(_))) => {
                log::info!("mqtt: connected to {shown}");
                link.connected.store(true, Ordering::Relaxed);
                link.new_session();
                backoff = BACKOFF.0;
                if let Some(notifier) = link.notifier.get() {
                    notifier.retry_now(super::target::NAME);
                }
                let _ = tx.send(Link::Connected);
            }
            Ok(Net::Incoming(Packet::Publish(p))) => {
                let _ = tx.send(Link::Command(p.topic, p.payload.to_vec()));
            }
            Ok(Net::Incoming(Packet::PubAck(_))) => link.acknowledged(),
            Ok(Net::Outgoing(Out::Disconnect)) if link.stopping.load(Ordering::Relaxed) => break,
            Ok(_) => {}
            Err(e) => {
                if link.stopping.load(Ordering::Relaxed) {
                    break;
                }
                let was = link.connected.swap(false, Ordering::Relaxed);
                link.new_session();
                match was {
                    true => log::warn!("mqtt: lost the broker {shown}: {e}; reconnecting (event changes wait in the outbox)"),
                    false if backoff == BACKOFF.0 => log::warn!("mqtt: cannot reach the broker {shown}: {e}; retrying with backoff"),
                    false => log::debug!("mqtt: cannot reach the broker {shown}: {e}"),
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF.1);
            }
        }
    }
    link.connected.store(false, Ordering::Relaxed);
}

/// Publishes each camera's states and snapshots, and carries out commands. Runs on the actix system
/// thread. Nothing here goes at QoS 1: each acknowledgement the broker sends is then an event
/// change's (what the outbox's deliveries count on).
struct Publisher {
    link: Arc<MqttLink>,
    hub: Addr<StreamHub>,
    events: Arc<EventHub>,
    /// Cameras whose discovery configs are published.
    known: BTreeSet<String>,
    /// Publish every camera's discovery configs again (a new connection).
    rediscover: bool,
    /// Retained states as last published, by topic (all published again on a new connection).
    retained: HashMap<String, Vec<u8>>,
}

type Changes = mpsc::UnboundedReceiver<(i64, EventChange, Option<Event>)>;

impl Publisher {
    async fn run(mut self, mut changes: Changes, mut link: mpsc::UnboundedReceiver<Link>) {
        let mut tick = tokio::time::interval(REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some((id, change, event)) = changes.recv() => self.event_changed(id, change, event),
                Some(message) = link.recv() => match message {
                    Link::Connected => self.connected().await,
                    Link::Command(topic, payload) => self.command(&topic, &payload).await,
                },
                _ = tick.tick() => self.refresh().await,
                else => break,
            }
        }
    }

    /// A new connection (a new session): availability, command subscriptions, then every
    /// retained message again (a restarted broker may have lost them: the newest snapshots too),
    /// and every discovery config and state as it is now.
    async fn connected(&mut self) {
        let client = &self.link.client;
        let _ = client.try_publish(self.link.topics.available(), QoS::AtMostOnce, true, "online");
        for topic in self.link.topics.commands() {
            let _ = client.try_subscribe(topic, QoS::AtLeastOnce);
        }
        // To answer a last will that is not this process's (see `command`).
        let _ = client.try_subscribe(self.link.topics.available(), QoS::AtMostOnce);
        for (topic, payload) in std::mem::take(&mut self.retained) {
            self.retain(topic, payload);
        }
        self.rediscover = true;
        self.refresh().await;
    }

    /// A retained message, published only if it differs from the last one on `topic`.
    fn retain(&mut self, topic: String, payload: Vec<u8>) {
        if !self.link.connected() || self.retained.get(&topic) == Some(&payload) {
            return;
        }
        if self.link.client.try_publish(topic.clone(), QoS::AtMostOnce, true, payload.clone()).is_ok() {
            self.link.published.fetch_add(1, Ordering::Relaxed);
            self.retained.insert(topic, payload);
        }
    }

    /// One change of an event: its camera's fall state and snapshot (`haven/events` is the
    /// outbox's).
    fn event_changed(&mut self, id: i64, change: EventChange, event: Option<Event>) {
        let event = match event {
            Some(e) => e,
            None => match self.events.store().get(id) {
                Ok(Some(e)) => e,
                Ok(None) => return,
                Err(e) => return log::warn!("mqtt: event {id}: cannot read it: {e}"),
            },
        };
        if event.kind == EventKind::Fall {
            self.publish_fall(&event.camera_id);
        }
        if change == EventChange::Snapshot {
            self.publish_snapshot(&event);
        }
    }

    fn publish_fall(&mut self, camera: &str) {
        let falling = self.events.active(Some(camera)).iter().any(|e| e.kind == EventKind::Fall);
        self.retain(self.link.topics.camera(camera, "fall"), on_off(falling).into());
    }

    /// The event's snapshot JPEG on `haven/<camera>/snapshot` (Home Assistant's camera entity).
    fn publish_snapshot(&mut self, event: &Event) {
        let Some(rel) = &event.snapshot_path else { return };
        let path = self.events.store().resolve(rel);
        match std::fs::read(&path) {
            Ok(jpeg) => self.retain(self.link.topics.camera(&event.camera_id, "snapshot"), jpeg),
            Err(e) => log::warn!("mqtt: event {:?}: cannot read its snapshot {}: {e}", event.id, path.display()),
        }
    }

    /// Every camera's discovery configs (new cameras, or all after a reconnection), their removal
    /// for cameras gone, and each camera's retained states where they changed.
    async fn refresh(&mut self) {
        if !self.link.connected() || self.link.stopping.load(Ordering::Relaxed) {
            return;
        }
        let Ok(statuses) = self.hub.send(Statuses).await else { return };
        let current: BTreeSet<String> = statuses.iter().map(|s| s.camera_id.clone()).collect();
        for gone in self.known.difference(&current).cloned().collect::<Vec<_>>() {
            self.forget(&gone);
        }
        // A cluster node speaks for the cameras it runs; the others' states come from their owners.
        let in_cluster = self.events.node().is_some();
        for status in &statuses {
            if self.rediscover || !self.known.contains(&status.camera_id) {
                self.discover(&status.camera_id);
            }
            if !(in_cluster && status.state == CameraState::Stopped) {
                self.publish_states(status);
            }
        }
        self.known = current;
        self.rediscover = false;
    }

    fn discover(&mut self, camera: &str) {
        if !self.link.settings.discovery {
            return;
        }
        let topics = self.link.topics.clone();
        for (component, thing) in ENTITIES {
            let config = topics.discovery_config(component, camera, thing);
            self.retain(topics.discovery(component, camera, thing), config.to_string().into_bytes());
        }
    }

    /// A camera removed: its discovery configs and retained states are cleared (empty retained
    /// messages), so that Home Assistant drops its entities.
    fn forget(&mut self, camera: &str) {
        let topics = self.link.topics.clone();
        let mut gone: Vec<String> = ["fall", "people", "ai", "status", "snapshot"].iter().map(|w| topics.camera(camera, w)).collect();
        if self.link.settings.discovery {
            gone.extend(ENTITIES.iter().map(|(component, thing)| topics.discovery(component, camera, thing)));
        }
        for topic in gone {
            self.retained.remove(&topic);
            let _ = self.link.client.try_publish(topic, QoS::AtMostOnce, true, Vec::new());
        }
        log::info!("mqtt: camera {camera} removed: its topics and discovery configs cleared");
    }

    fn publish_states(&mut self, status: &CameraStatusView) {
        let camera = &status.camera_id;
        let topics = self.link.topics.clone();
        let people = people(status);
        self.publish_fall(camera);
        self.retain(topics.camera(camera, "people"), people.to_string().into_bytes());
        self.retain(topics.camera(camera, "ai"), on_off(status.ai_enabled).into());
        let summary = json!({
            "camera_id": camera,
            "state": status.state,
            "connected": status.connected,
            "ai_enabled": status.ai_enabled,
            "ai_active": status.ai_active,
            "width": status.width,
            "height": status.height,
            "people": people,
            "snoozed_until": self.link.notifier.get().and_then(|n| n.snoozed_until(camera)),
            "last_error": status.last_error,
        });
        self.retain(topics.camera(camera, "status"), summary.to_string().into_bytes());
    }

    /// `<camera>/ai/set` (`ON`/`OFF`: as PATCH `ai_enabled`, written back to the settings file) and
    /// `<camera>/snooze/set` (minutes; 0 wakes).
    async fn command(&mut self, topic: &str, payload: &[u8]) {
        if topic == self.link.topics.available() {
            return self.still_online(payload);
        }
        let Some((camera, command)) = self.link.topics.command(topic) else { return };
        let text = String::from_utf8_lossy(payload);
        match command {
            "ai" => match parse_on_off(&text) {
                Some(on) => self.set_ai(camera, on, topic).await,
                None => log::warn!("mqtt: {topic}: {text:?} is not ON or OFF; ignored"),
            },
            "snooze" => match text.trim().parse::<f64>() {
                Ok(minutes) if minutes.is_finite() && self.known.contains(camera) => {
                    if let Some(notifier) = self.link.notifier.get() {
                        let until = notifier.snooze(camera, minutes.clamp(0.0, 10080.0).round() as u32);
                        self.audit("snooze/set", camera, &format!("{minutes} minutes"));
                        if let Some(cluster) = self.link.cluster.get() {
                            if let Err(e) = cluster.snooze(camera, until).await {
                                log::warn!("mqtt: {topic}: the snooze holds on this node only: {e}");
                            }
                        }
                    }
                    log::info!("mqtt: camera {camera}: notifications snoozed for {minutes} minutes (from {topic})");
                }
                Ok(_) if !self.known.contains(camera) => log::warn!("mqtt: {topic}: no such camera: {camera}"),
                _ => log::warn!("mqtt: {topic}: {text:?} is not a number of minutes; ignored"),
            },
            _ => {}
        }
    }
}

impl Publisher {
    /// `ai/set`: as PATCH `ai_enabled`. A single server through the camera registry (written back
    /// to the settings file); a cluster node, owner of the camera, through the inventory.
    async fn set_ai(&mut self, camera: &str, on: bool, topic: &str) {
        let patch = CameraPatch { ai_enabled: Some(on), ..CameraPatch::default() };
        let done = match self.link.cluster.get() {
            None => match self.hub.send(Update(camera.to_string(), patch)).await {
                Ok(result) => result.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(format!("the camera registry did not answer: {e}")),
            },
            Some(cluster) => {
                let owned = self.hub.send(GetStatus(camera.to_string())).await.ok().and_then(Result::ok).is_some_and(|s| s.state != CameraState::Stopped);
                if !owned {
                    return log::debug!("mqtt: {topic}: left to the node that runs {camera}");
                }
                let changed = cluster.update_camera(camera, |config| {
                    patch.apply(config);
                    config.validate().map_err(|e| e.to_string())
                });
                match changed.await {
                    Ok(_) => cluster.sync().await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        match done {
            Ok(()) => {
                log::info!("mqtt: camera {camera}: AI {} (from {topic})", on_off(on));
                self.audit("ai/set", camera, on_off(on));
                self.retain(self.link.topics.camera(camera, "ai"), on_off(on).into());
            }
            Err(e) => log::warn!("mqtt: {topic}: {e}"),
        }
    }
}

impl Publisher {
    /// A command carried out, in the audit log: by "mqtt" (the broker does not say who sent it).
    fn audit(&self, command: &str, camera: &str, detail: &str) {
        if let Some(accounts) = self.link.accounts.get() {
            accounts.audit("mqtt", command, &format!("/api/cameras/{camera}"), detail);
        }
    }

    /// `offline` on the availability topic while this process is connected: the last will of
    /// another node of the cluster that died, or of this server's previous process (killed, its
    /// will published by the broker only after this one came): HAVEN is still here, so `online`.
    fn still_online(&self, payload: &[u8]) {
        if payload == b"offline" && self.link.connected() && !self.link.stopping.load(Ordering::Relaxed) {
            log::info!("mqtt: {} said offline (a last will), but this node is up: online again", self.link.topics.available());
            let _ = self.link.client.try_publish(self.link.topics.available(), QoS::AtMostOnce, true, "online");
        }
    }
}

/// The people in the camera's newest pose pass (0 while its AI is off).
fn people(status: &CameraStatusView) -> u64 {
    match status.ai_active {
        true => status.models_stats.get("pose").map_or(0, |m| m.detections),
        false => 0,
    }
}
