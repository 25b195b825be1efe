//! MQTT, Home Assistant's way: HAVEN's availability, every event change, each camera's fall, people,
//! AI switch, status and newest event snapshot, published to a broker (`[mqtt]`, docs/mqtt.md), and
//! the commands HAVEN takes from it (`<camera>/ai/set`, `<camera>/snooze/set`).
//!
//! `MqttLink` is the connection's state; the tasks that drive it live in `run.rs`. Event changes
//! reach `haven/events` as a notification target (`target.rs`): through the notifier's persistent
//! outbox, so that a broker down at start, gone mid-fall or a HAVEN killed with -9 loses none of
//! them. A broker that is down never stops HAVEN: the link reconnects with backoff, republishes
//! availability, discovery and the retained states, and the outbox sends what waited.

pub mod config;
mod run;
mod target;
pub mod topics;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rumqttc::{AsyncClient, EventLoop, LastWill, MqttOptions, QoS};
use serde::Serialize;

pub use config::MqttSettings;
pub use target::MqttTarget;
use topics::Topics;

use crate::notify::{DeliveryError, Notifier};

/// The largest message HAVEN sends or takes (event snapshots are JPEGs of a few hundred KB at most).
const MAX_PACKET_BYTES: usize = 16 << 20;
/// How long an event change waits for the broker's acknowledgement before the outbox retries it.
const ACK_PATIENCE: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
}

/// What the broker has acknowledged: `session` counts connections made and lost (an
/// acknowledgement from another session is not one of this publish's), `acked` the QoS 1
/// publishes it acknowledged. Only event changes go at QoS 1, one at a time (the outbox sends a
/// target's rows in order, each after the last was taken), so the next acknowledgement is theirs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Acks {
    session: u64,
    acked: u64,
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
    /// Event changes given up after `[notify] max_age_secs` without the broker.
    pub dropped: u64,
    /// Event changes waiting in the outbox for the broker.
    pub queued: u64,
}

/// The link to the broker, shared by its tasks, its notification target and the API.
pub struct MqttLink {
    settings: MqttSettings,
    topics: Topics,
    client: AsyncClient,
    acks: tokio::sync::watch::Sender<Acks>,
    connected: AtomicBool,
    stopping: AtomicBool,
    published: AtomicU64,
    /// Set by `start`: snoozes (`<camera>/snooze/set`), the outbox's counts, retries on connection.
    notifier: OnceLock<Arc<Notifier>>,
    /// On a cluster node: commands change the inventory, as the API's PATCH does there.
    cluster: OnceLock<Arc<crate::cluster::Cluster>>,
    /// Set by `start`: commands carried out go into the audit log, by "mqtt".
    accounts: OnceLock<Arc<crate::auth::AccountStore>>,
}

/// A link made but not started: its notification target goes to the notifier first.
pub struct Prepared {
    pub link: Arc<MqttLink>,
    eventloop: EventLoop,
}

impl Prepared {
    /// `haven/events` as a notification target.
    pub fn target(&self) -> Arc<dyn crate::notify::Target> {
        Arc::new(MqttTarget::new(self.link.clone()))
    }
}

impl MqttLink {
    /// The client and its event loop if `[mqtt] url` is set (not connected yet: `start` drives it).
    /// A cluster `node` connects as `<client_id>-<node>`: a broker drops a client whose id another
    /// connection takes.
    pub fn prepare(settings: &MqttSettings, node: Option<&str>) -> Result<Option<Prepared>, MqttError> {
        if !settings.enabled() {
            return Ok(None);
        }
        settings.validate()?;
        let broker = settings.broker()?.expect("enabled means a url");
        let topics = Topics::new(settings);
        let client_id = match node {
            Some(node) => format!("{}-{node}", settings.client_id),
            None => settings.client_id.clone(),
        };
        let mut options = MqttOptions::new(client_id, broker.host, broker.port);
        options.set_keep_alive(Duration::from_secs(15));
        options.set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
        options.set_last_will(LastWill::new(topics.available(), "offline", QoS::AtLeastOnce, true));
        // A clean session: nothing is resent by the client on reconnecting; the outbox resends.
        options.set_clean_session(true);
        if broker.tls {
            let (roots, identity) = settings.tls_files()?;
            let Some(tls) = crate::tls::client_config_with("mqtt", roots, identity) else {
                return Err(MqttError::Config(crate::config::ConfigError::new("mqtt.url", "is mqtts://, but TLS cannot be set up here (see the log)")));
            };
            options.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(Arc::new(tls))));
        }
        if let Some(password) = settings.password()? {
            options.set_credentials(settings.username.clone(), password);
        } else if !settings.username.is_empty() {
            options.set_credentials(settings.username.clone(), String::new());
        }
        let (client, eventloop) = AsyncClient::new(options, 1024);
        let link = Arc::new(Self {
            settings: settings.clone(),
            topics,
            client,
            acks: tokio::sync::watch::Sender::new(Acks::default()),
            connected: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            published: AtomicU64::new(0),
            notifier: OnceLock::new(),
            cluster: OnceLock::new(),
            accounts: OnceLock::new(),
        });
        Ok(Some(Prepared { link, eventloop }))
    }

    /// The connection was made or lost: a publish waiting for its acknowledgement gives up.
    fn new_session(&self) {
        self.acks.send_modify(|a| a.session += 1);
    }

    /// The broker acknowledged a QoS 1 publish (an event change).
    fn acknowledged(&self) {
        self.published.fetch_add(1, Ordering::Relaxed);
        self.acks.send_modify(|a| a.acked += 1);
    }

    /// Publishes one event change on `haven/events` (QoS 1) and waits for the broker to take it:
    /// `Ok` only then, so that the outbox keeps it until it is delivered.
    async fn publish_event_change(&self, payload: Vec<u8>) -> Result<(), DeliveryError> {
        let mut acks = self.acks.subscribe();
        let before = *acks.borrow_and_update();
        if !self.connected() {
            return Err(DeliveryError::Unreachable("not connected to the broker".into()));
        }
        let sent = self.client.publish(self.topics.events(), QoS::AtLeastOnce, false, payload);
        sent.await.map_err(|e| DeliveryError::Unreachable(e.to_string()))?;
        let answer = async {
            loop {
                acks.changed().await.map_err(|_| "the link is gone")?;
                let now = *acks.borrow_and_update();
                if now.session != before.session {
                    return Err("the connection was lost before the broker acknowledged it");
                }
                if now.acked > before.acked {
                    return Ok(());
                }
            }
        };
        match tokio::time::timeout(ACK_PATIENCE, answer).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(DeliveryError::Unreachable(why.into())),
            Err(_) => Err(DeliveryError::Unreachable(format!("no acknowledgement from the broker in {} s", ACK_PATIENCE.as_secs()))),
        }
    }

    /// A cluster node: the owner of a camera carries out its commands, through the inventory.
    pub fn join_cluster(&self, cluster: Arc<crate::cluster::Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn view(&self) -> MqttView {
        let outbox = self.notifier.get().and_then(|n| n.targets().into_iter().find(|t| t.name == target::NAME));
        MqttView {
            enabled: true,
            connected: self.connected(),
            broker: Some(crate::redact::redact_url(&self.settings.url)),
            published: self.published.load(Ordering::Relaxed),
            dropped: outbox.as_ref().map_or(0, |t| t.failed),
            queued: outbox.as_ref().map_or(0, |t| t.pending),
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
        // The outbox takes the cameras' last changes first; what it has not sent waits for the next
        // start.
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

