//! A HAVEN cluster on NATS JetStream (`[cluster]`; docs/scaling.md).
//!
//! - The camera inventory lives in the KV bucket `haven_cameras` (key: camera id, value: its
//!   `CameraConfig` as JSON). Every node registers every camera with its hub and applies the
//!   bucket's changes each round; the API's POST/PATCH/DELETE write the bucket.
//! - Ownership: a node owns a camera while it holds its lease in `haven_leases` (a bucket whose
//!   values expire after `lease_secs`). It takes a vacant one with `create` (fails if another node
//!   was first), renews with `update` at the revision it holds (compare-and-set) every third of the
//!   lease, and stops the camera at once when a renewal finds another revision. Who takes a vacant
//!   camera: the live node with the best weighted rendezvous score; anyone after two rounds.
//! - Fencing: each owned camera's `Fence` closes three quarters of a lease after the last renewal
//!   sent; past it the worker shows frames to this node's viewers but analyses and relays nothing.
//! - Heartbeats in `haven_nodes`, owned cameras' statuses in `haven_status` (both expire after a
//!   lease), so any node lists the whole cluster.
//! - Frames: see `relay`; events, snapshots and clips: see `events`.
//! - Settings every node must share (`lease_secs`) are kept in `haven_cluster` by the first node;
//!   a node started with another value refuses to start.
//!
//! Where it lives: the decisions in `leases` (a state machine: no I/O, no clock), a round of them
//! on the buckets in `round`, the buckets behind `kv` (`nats_kv` here, `memory_kv` in the tests,
//! whose `sim` runs the stories of `stories`); `Cluster` below drives rounds and serves the API.

pub mod config;
pub mod events;
mod hands;
mod inventory;
mod kv;
mod leases;
#[cfg(test)]
mod memory_kv;
mod nats_kv;
pub mod relay;
mod rendezvous;
mod snoozes;
mod accounts;
mod round;
#[cfg(test)]
mod sim;
mod statuses;
#[cfg(test)]
mod stories;
mod view;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix::Addr;
use async_nats::jetstream;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::camera::{CameraPort, CameraStatusView};
use crate::hub::{Reload, Statuses, StreamHub};
use crate::camera::config::CameraConfig;
use crate::cluster::config::ClusterSettings;
use kv::{Bucket, Buckets, KvError};
use leases::{Book, Rules};
use round::Round;
use statuses::StatusEntry;

pub use rendezvous::rendezvous_winner;
pub use snoozes::OnSnooze;
pub use round::Counters;
pub use view::ClusterView;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster.credentials_file: {0}")]
    Credentials(std::io::Error),
    #[error("cannot connect to NATS ({urls}): {message}")]
    Connect { urls: String, message: String },
    #[error("NATS JetStream bucket {bucket}: {message}")]
    Bucket { bucket: &'static str, message: String },
    #[error("NATS: {0}")]
    Nats(String),
    #[error("{0}")]
    Conflict(String),
    /// A setting that must be the same on every node differs from the cluster's.
    #[error("{0}")]
    Disagrees(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
}

impl From<KvError> for ClusterError {
    fn from(e: KvError) -> Self {
        ClusterError::Nats(e.to_string())
    }
}

/// A camera of the inventory as this node holds it (whether it owns it: the book says).
struct Local {
    port: CameraPort,
    /// Whether this node owns it (its worker runs here); the relay follower reads it.
    owned: Arc<AtomicBool>,
    follower: JoinHandle<()>,
    /// The relay publisher, while owned.
    publisher: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct State {
    cameras: HashMap<String, Local>,
    inventory: Vec<CameraConfig>,
    /// Other nodes' cameras' statuses as the status bucket said at the last round.
    statuses: HashMap<String, StatusEntry>,
}

/// One node of the cluster: drives its book (`leases`) with rounds (`round`) on the buckets.
pub struct Cluster {
    pub node: String,
    settings: ClusterSettings,
    client: async_nats::Client,
    js: jetstream::Context,
    kv: Buckets,
    hub: Addr<StreamHub>,
    book: Mutex<Book>,
    state: Mutex<State>,
    pub counters: Counters,
    pub relay: relay::RelayCounters,
    /// Set by a local API write: run a round now rather than at the next tick.
    wake: tokio::sync::Notify,
    /// The cluster's snapshots and clips, and this node's events (`link_events`).
    media: OnceLock<jetstream::object_store::ObjectStore>,
    events: OnceLock<Arc<crate::events::EventHub>>,
    pub event_counters: Arc<events::EventCounters>,
    /// The cluster's snoozes (`share_snoozes`).
    snoozes: OnceLock<async_nats::jetstream::kv::Store>,
}

impl Cluster {
    /// Connects, opens (or makes) the buckets and seeds an empty inventory with `seed`.
    pub async fn join(settings: &ClusterSettings, seed: &[CameraConfig], hub: Addr<StreamHub>) -> Result<Arc<Self>, ClusterError> {
        let urls = settings.nats_url.list();
        let shown = urls.iter().map(|u| crate::redact::redact_url(u)).collect::<Vec<_>>().join(", ");
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("haven-{}", settings.node_name))
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None::<usize>)
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => log::info!("NATS connected"),
                    async_nats::Event::Disconnected => log::warn!("NATS disconnected: leases cannot be renewed until it is back"),
                    async_nats::Event::SlowConsumer(sid) => log::warn!("NATS: a subscription fell behind (slow consumer, sid {sid})"),
                    other => log::info!("NATS: {other}"),
                }
            });
        if let Some(path) = &settings.credentials_file {
            options = options.credentials_file(path).await.map_err(ClusterError::Credentials)?;
        }
        let client = options.connect(urls).await.map_err(|e| ClusterError::Connect { urls: shown.clone(), message: e.to_string() })?;
        let js = jetstream::new(client.clone());
        let (kv, shared) = nats_kv::open(&js, settings).await?;
        agree(&shared, "lease_secs", settings.lease_secs).await?;
        let cluster = Arc::new(Self {
            node: settings.node_name.clone(),
            settings: settings.clone(),
            client,
            js,
            kv,
            hub,
            book: Mutex::new(Book::new(Rules::of(settings))),
            state: Mutex::new(State::default()),
            counters: Counters::default(),
            relay: relay::RelayCounters::default(),
            wake: tokio::sync::Notify::new(),
            media: OnceLock::new(),
            events: OnceLock::new(),
            event_counters: Arc::default(),
            snoozes: OnceLock::new(),
        });
        inventory::seed(cluster.kv.cameras.as_ref(), seed).await?;
        log::info!("Cluster node {} joined NATS at {shown}", cluster.node);
        Ok(cluster)
    }

    /// Events cluster-wide (see `events`): this node's out to the stream and the media store, the
    /// others' in. Call after `join`, before any camera starts.
    pub async fn link_events(&self, hub: Arc<crate::events::EventHub>, settings: &crate::events::EventSettings) -> Result<(), ClusterError> {
        let media = events::open(&self.js, settings, self.settings.replicas).await?;
        events::link(self.js.clone(), media.clone(), self.node.clone(), hub.clone(), self.event_counters.clone()).await?;
        let _ = self.media.set(media);
        let _ = self.events.set(hub);
        Ok(())
    }

    /// Snoozes cluster-wide: `on` is told every camera's snooze the cluster holds, now and as they
    /// change (`snooze` puts one). Call after `join`, before any camera starts.
    pub async fn share_snoozes(&self, on: snoozes::OnSnooze) -> Result<(), ClusterError> {
        let store = snoozes::open(&self.js, self.settings.replicas).await?;
        actix_web::rt::spawn(snoozes::watch(store.clone(), Arc::new(on)));
        let _ = self.snoozes.set(store);
        Ok(())
    }

    /// Accounts and API tokens cluster-wide (`cluster::accounts`). Call after `join`.
    pub async fn share_accounts(&self, store: Arc<crate::auth::AccountStore>) -> Result<(), ClusterError> {
        accounts::start(&self.js, self.settings.replicas, store).await
    }

    /// A camera's snooze (`None`: ended) for every node: the one that owns the camera notifies.
    pub async fn snooze(&self, camera: &str, until: Option<f64>) -> Result<(), ClusterError> {
        match self.snoozes.get() {
            Some(store) => snoozes::put(store, camera, until).await,
            None => Ok(()),
        }
    }

    /// A snapshot or clip (its path relative to `events.data_dir`) from the cluster's media store.
    pub async fn media(&self, name: &str) -> Result<Option<Vec<u8>>, ClusterError> {
        match self.media.get() {
            Some(media) => events::fetch(media, name).await,
            None => Ok(None),
        }
    }

    pub fn nats_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn round_on(&self) -> Round<'_> {
        Round { kv: &self.kv, book: &self.book, hands: self, counters: &self.counters, clock: &Instant::now }
    }

    /// Runs rounds until the node drains: every third of a lease, or at once after a local change.
    pub async fn run(self: Arc<Self>) {
        let period = Duration::from_secs_f64(self.settings.lease_secs) / 3;
        loop {
            if self.book.lock().unwrap().draining() {
                return;
            }
            if let Err(e) = self.round().await {
                log::warn!("Cluster round: {e}");
            }
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// One round: renew what is owned, beat, follow the inventory, take what is vacant and ours,
    /// rebalance, publish our cameras' statuses and read the others'.
    async fn round(&self) -> Result<(), ClusterError> {
        let round = self.round_on();
        round.renew().await;
        round.beat().await?;
        self.sync().await?;
        round.claim().await;
        round.rebalance().await;
        self.publish_statuses().await;
        self.read_statuses().await;
        Ok(())
    }

    /// The cluster's cameras, from the inventory bucket.
    pub async fn inventory(&self) -> Result<Vec<CameraConfig>, ClusterError> {
        inventory::read(self.kv.cameras.as_ref()).await
    }

    /// Registers added cameras (not started), applies changes live where a PATCH could have made
    /// them (restarts the camera otherwise), removes the rest (releasing their leases); a relay
    /// follower per camera.
    async fn apply_inventory(&self, inventory: Vec<CameraConfig>) {
        if self.state.lock().unwrap().inventory == inventory {
            return;
        }
        let summary = match self.hub.send(Reload(inventory.clone())).await {
            Ok(summary) => summary,
            Err(e) => {
                log::warn!("Cluster: the camera registry is not answering: {e}");
                return;
            }
        };
        for id in &summary.removed {
            let gone = self.state.lock().unwrap().cameras.remove(id);
            if let Some(local) = gone {
                local.follower.abort();
                if let Some(publisher) = local.publisher {
                    publisher.abort();
                }
                self.round_on().forget(id).await;
            }
        }
        for id in &summary.added {
            let Ok(Some(port)) = self.hub.send(crate::hub::Port(id.clone())).await else { continue };
            let owned = Arc::new(AtomicBool::new(false));
            let follower = tokio::spawn(relay::follow(self.client.clone(), self.node.clone(), id.clone(), port.clone(), owned.clone(), self.relay.received(id)));
            port.fence.close();
            self.state.lock().unwrap().cameras.insert(id.clone(), Local { port, owned, follower, publisher: None });
            self.book.lock().unwrap().add(id);
        }
        self.state.lock().unwrap().inventory = inventory;
    }

    async fn publish_statuses(&self) {
        let owned = self.owned();
        if owned.is_empty() {
            return;
        }
        let Ok(views) = self.hub.send(Statuses).await else { return };
        statuses::publish(self.kv.status.as_ref(), &self.node, &owned, views).await;
    }

    async fn read_statuses(&self) {
        let unheld = self.book.lock().unwrap().unheld();
        let found = statuses::read(self.kv.status.as_ref(), unheld).await;
        self.state.lock().unwrap().statuses = found;
    }

    pub fn owned(&self) -> HashSet<String> {
        self.book.lock().unwrap().owned().into_iter().collect()
    }

    /// Every camera of the cluster as `GET /api/cameras` lists it: this node's own status for the
    /// cameras it owns, the owner's last published one (at most a round old) for the others, each
    /// with its `owner` (`null` while nobody holds it).
    pub fn list(&self, local: Vec<CameraStatusView>) -> Vec<Value> {
        let state = self.state.lock().unwrap();
        let book = self.book.lock().unwrap();
        local
            .into_iter()
            .map(|view| {
                let id = view.camera_id.clone();
                statuses::listed(view, book.owner(&id), book.holds(&id), state.statuses.get(&id))
            })
            .collect()
    }

    /// `POST /api/cameras` in a cluster: into the inventory (every node registers it within a round).
    pub async fn add_camera(&self, config: &CameraConfig) -> Result<(), ClusterError> {
        inventory::add(self.kv.cameras.as_ref(), config).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// `PATCH /api/cameras/{id}`: read, change, write back at the revision read (a concurrent change
    /// makes it fail rather than be lost). Returns the camera as changed.
    pub async fn update_camera(&self, id: &str, change: impl FnOnce(&mut CameraConfig) -> Result<(), String>) -> Result<CameraConfig, ClusterError> {
        let config = inventory::update(self.kv.cameras.as_ref(), id, change).await?;
        self.wake.notify_one();
        Ok(config)
    }

    /// `DELETE /api/cameras/{id}`: out of the inventory; its owner stops it within a round.
    pub async fn remove_camera(&self, id: &str) -> Result<(), ClusterError> {
        inventory::remove(self.kv.cameras.as_ref(), id).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Applies the inventory now (after a local API write), so the change is visible on return.
    pub async fn sync(&self) -> Result<(), ClusterError> {
        let inventory = self.inventory().await?;
        self.apply_inventory(inventory).await;
        Ok(())
    }

    /// SIGTERM: no more taking; the cameras are stopped by then (the hub's StopAll), so their leases
    /// and this node's heartbeat are deleted and the other nodes take over at their next round.
    pub async fn drain(&self) {
        self.book.lock().unwrap().stop_taking();
        // The ends of the events the stopped cameras closed, their clips: out before the leases go.
        if !events::flush(&self.event_counters, Duration::from_secs(3)).await {
            log::warn!("Cluster node {}: some event changes were not published before the drain", self.node);
        }
        let handed = self.round_on().drain().await;
        let _ = self.client.flush().await;
        log::info!("Cluster node {} drained: {handed} cameras handed over", self.node);
    }
}

/// Stores `value` as the cluster's `key` if none is stored yet; otherwise it must be the same.
async fn agree(shared: &dyn Bucket, key: &str, value: f64) -> Result<(), ClusterError> {
    match shared.create(key, value.to_string().into_bytes()).await {
        Ok(_) => Ok(()),
        Err(KvError::AlreadyExists) => {
            let stored = shared.get(key).await?.map(|e| e.value).unwrap_or_default();
            let stored = String::from_utf8_lossy(&stored).into_owned();
            match stored.parse::<f64>() {
                Ok(theirs) if (theirs - value).abs() < 1e-9 => Ok(()),
                _ => Err(ClusterError::Disagrees(format!(
                    "cluster.{key} is {value} here but {stored} in the cluster (every node must use the same; \
                     the first node to start stored it in the NATS bucket {}): set {key} = {stored}",
                    nats_kv::SHARED
                ))),
            }
        }
        Err(e) => Err(ClusterError::Bucket { bucket: nats_kv::SHARED, message: e.to_string() }),
    }
}
