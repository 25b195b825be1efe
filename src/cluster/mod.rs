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

pub mod config;
pub mod events;
pub mod relay;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix::Addr;
use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::camera::{CameraPort, CameraStatusView};
use crate::hub::{Reload, SetRunning, Statuses, StreamHub};
use crate::camera::config::CameraConfig;
use crate::cluster::config::ClusterSettings;

const CAMERAS: &str = "haven_cameras";
const LEASES: &str = "haven_leases";
const NODES: &str = "haven_nodes";
const STATUS: &str = "haven_status";
const SHARED: &str = "haven_cluster";

/// The fence closes this far into a lease: the rest is the margin for clocks and a late renewal.
const FENCE_SHARE: f64 = 0.75;
/// A peer whose heartbeat has not changed for this share of a lease is taken for dead.
const PEER_SILENCE_SHARE: f64 = 0.75;
/// A lease vacant for this many rounds may be taken by any node, not only the rendezvous winner.
const VACANT_ROUNDS: u32 = 2;

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

fn nats_err(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Nats(e.to_string())
}

/// A node's heartbeat value.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Heartbeat {
    capacity: f64,
}

/// An owned camera's entry in `haven_status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StatusEntry {
    owner: String,
    status: Value,
}

struct Peer {
    revision: u64,
    changed: Instant,
    capacity: f64,
}

/// A camera of the inventory as this node holds it.
struct Local {
    port: CameraPort,
    /// Whether this node owns it (its worker runs here); the relay follower reads it.
    owned: Arc<AtomicBool>,
    follower: JoinHandle<()>,
    /// The lease's revision while owned, and the relay publisher.
    lease: Option<(u64, JoinHandle<()>)>,
    vacant_rounds: u32,
}

#[derive(Default)]
struct State {
    cameras: HashMap<String, Local>,
    inventory: Vec<CameraConfig>,
    peers: HashMap<String, Peer>,
    /// Each camera's owner as the leases bucket said at the last round.
    owners: HashMap<String, String>,
    /// Other nodes' cameras' statuses as the status bucket said at the last round.
    statuses: HashMap<String, StatusEntry>,
}

/// Per-node health, for `/metrics` and `GET /api/cluster`.
#[derive(Default)]
pub struct Counters {
    pub renewals: AtomicU64,
    pub renewal_failures: AtomicU64,
    pub leases_taken: AtomicU64,
    pub leases_lost: AtomicU64,
    pub leases_released: AtomicU64,
}

/// One node of the cluster.
pub struct Cluster {
    pub node: String,
    settings: ClusterSettings,
    client: async_nats::Client,
    js: jetstream::Context,
    cameras: kv::Store,
    leases: kv::Store,
    nodes: kv::Store,
    status: kv::Store,
    hub: Addr<StreamHub>,
    state: Mutex<State>,
    pub counters: Counters,
    pub relay: relay::RelayCounters,
    /// Set by a local API write: run a round now rather than at the next tick.
    wake: tokio::sync::Notify,
    draining: AtomicBool,
    /// The cluster's snapshots and clips, and this node's events (`link_events`).
    media: OnceLock<jetstream::object_store::ObjectStore>,
    events: OnceLock<Arc<crate::events::EventHub>>,
    pub event_counters: Arc<events::EventCounters>,
}

/// `GET /api/cluster`.
#[derive(Debug, Serialize)]
pub struct ClusterView {
    pub node: String,
    pub nats_connected: bool,
    /// The NATS server this node is connected to now (its name, or host:port).
    pub nats_server: Option<String>,
    pub lease_secs: f64,
    pub capacity: f64,
    pub rebalance: bool,
    pub live_nodes: Vec<String>,
    pub cameras_owned: Vec<String>,
    pub lease_renewals: u64,
    pub lease_renewal_failures: u64,
    pub leases_taken: u64,
    pub leases_lost: u64,
    pub leases_released: u64,
    /// Packets published for other nodes, per camera owned here.
    pub relay_published: HashMap<String, u64>,
    /// Bytes of those messages (header and JPEGs).
    pub relay_published_bytes: HashMap<String, u64>,
    /// Packets received from owners, per camera followed here.
    pub relay_received: HashMap<String, u64>,
    /// Event changes this node stored in `HAVEN_EVENTS`, gave up on (NATS away too long), and
    /// took in from the other nodes.
    pub events_published: u64,
    pub events_unpublished: u64,
    pub events_received: u64,
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
        let lease = Duration::from_secs_f64(settings.lease_secs);
        let cameras = bucket(&js, CAMERAS, "HAVEN camera inventory", Duration::ZERO, settings.replicas).await?;
        let leases = bucket(&js, LEASES, "HAVEN camera leases (value: owner node)", lease, settings.replicas).await?;
        let nodes = bucket(&js, NODES, "HAVEN node heartbeats", lease, settings.replicas).await?;
        let status = bucket(&js, STATUS, "HAVEN owned cameras' statuses", lease, settings.replicas).await?;
        let shared = bucket(&js, SHARED, "HAVEN settings every node must share", Duration::ZERO, settings.replicas).await?;
        agree(&shared, "lease_secs", settings.lease_secs).await?;
        let cluster = Arc::new(Self {
            node: settings.node_name.clone(),
            settings: settings.clone(),
            client,
            js,
            cameras,
            leases,
            nodes,
            status,
            hub,
            state: Mutex::new(State::default()),
            counters: Counters::default(),
            relay: relay::RelayCounters::default(),
            wake: tokio::sync::Notify::new(),
            draining: AtomicBool::new(false),
            media: OnceLock::new(),
            events: OnceLock::new(),
            event_counters: Arc::default(),
        });
        cluster.seed(seed).await?;
        log::info!("Cluster node {} joined NATS at {shown}", cluster.node);
        Ok(cluster)
    }

    async fn seed(&self, seed: &[CameraConfig]) -> Result<(), ClusterError> {
        if seed.is_empty() || !self.inventory().await?.is_empty() {
            return Ok(());
        }
        for camera in seed {
            let json = serde_json::to_vec(camera).expect("a camera serialises");
            match self.cameras.create(&camera.camera_id, json.into()).await {
                Ok(_) => log::info!("Seeded camera {} into the cluster's inventory", camera.camera_id),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(nats_err(e)),
            }
        }
        Ok(())
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

    /// A snapshot or clip (its path relative to `events.data_dir`) from the cluster's media store.
    pub async fn media(&self, name: &str) -> Result<Option<Vec<u8>>, ClusterError> {
        match self.media.get() {
            Some(media) => events::fetch(media, name).await,
            None => Ok(None),
        }
    }

    fn lease(&self) -> Duration {
        Duration::from_secs_f64(self.settings.lease_secs)
    }

    fn round_period(&self) -> Duration {
        self.lease() / 3
    }

    pub fn nats_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Runs rounds until the node drains: every third of a lease, or at once after a local change.
    pub async fn run(self: Arc<Self>) {
        loop {
            if self.draining.load(Ordering::Acquire) {
                return;
            }
            if let Err(e) = self.round().await {
                log::warn!("Cluster round: {e}");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.round_period()) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// One round: renew what is owned, beat, follow the inventory, take what is vacant and ours,
    /// publish our cameras' statuses and read the others'.
    async fn round(&self) -> Result<(), ClusterError> {
        self.renew_all().await;
        let beat = serde_json::to_vec(&Heartbeat { capacity: self.settings.capacity }).expect("a heartbeat serialises");
        self.nodes.put(&self.node, beat.into()).await.map_err(nats_err)?;
        self.read_peers().await?;
        let inventory = self.inventory().await?;
        self.apply_inventory(inventory).await;
        self.claim_vacant().await;
        if self.settings.rebalance {
            self.rebalance().await;
        }
        self.publish_statuses().await;
        self.read_statuses().await;
        Ok(())
    }

    async fn renew_all(&self) {
        let owned: Vec<(String, u64, CameraPort)> = {
            let state = self.state.lock().unwrap();
            state.cameras.iter().filter_map(|(id, c)| c.lease.as_ref().map(|(rev, _)| (id.clone(), *rev, c.port.clone()))).collect()
        };
        for (id, revision, port) in owned {
            let sent = Instant::now();
            match self.leases.update(&id, self.node.clone().into(), revision).await {
                Ok(next) => {
                    port.fence.extend_to(sent + self.lease().mul_f64(FENCE_SHARE));
                    self.counters.renewals.fetch_add(1, Ordering::Relaxed);
                    if let Some(Local { lease: Some((rev, _)), .. }) = self.state.lock().unwrap().cameras.get_mut(&id) {
                        *rev = next;
                    }
                }
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    self.counters.renewal_failures.fetch_add(1, Ordering::Relaxed);
                    log::warn!("[{id}] lease lost (another node holds it, or it expired): stopping the camera here");
                    self.counters.leases_lost.fetch_add(1, Ordering::Relaxed);
                    self.disown(&id).await;
                }
                Err(e) => {
                    // NATS unreachable or slow: the camera keeps running until its fence closes, then
                    // shows frames to this node's viewers only; the next renewal decides.
                    self.counters.renewal_failures.fetch_add(1, Ordering::Relaxed);
                    log::warn!("[{id}] lease renewal failed: {e}");
                }
            }
        }
    }

    async fn read_peers(&self) -> Result<(), ClusterError> {
        let mut seen = HashMap::new();
        let mut keys = self.nodes.keys().await.map_err(nats_err)?;
        while let Some(key) = keys.next().await {
            let key = key.map_err(nats_err)?;
            if let Some(entry) = self.nodes.entry(&key).await.map_err(nats_err)? {
                if entry.operation == kv::Operation::Put {
                    let capacity = serde_json::from_slice::<Heartbeat>(&entry.value).map_or(1.0, |h| h.capacity);
                    seen.insert(key, (entry.revision, capacity));
                }
            }
        }
        let now = Instant::now();
        let mut state = self.state.lock().unwrap();
        state.peers.retain(|name, _| seen.contains_key(name));
        for (name, (revision, capacity)) in seen {
            let peer = state.peers.entry(name).or_insert(Peer { revision, changed: now, capacity });
            if peer.revision != revision {
                peer.revision = revision;
                peer.changed = now;
            }
            peer.capacity = capacity;
        }
        Ok(())
    }

    /// Nodes whose heartbeat moved lately, with their capacity; this node always.
    fn live_nodes(&self, state: &State) -> Vec<(String, f64)> {
        let silence = self.lease().mul_f64(PEER_SILENCE_SHARE);
        let mut live: Vec<(String, f64)> = state
            .peers
            .iter()
            .filter(|(name, p)| **name != self.node && p.changed.elapsed() < silence)
            .map(|(name, p)| (name.clone(), p.capacity))
            .collect();
        live.push((self.node.clone(), self.settings.capacity));
        live
    }

    /// The cluster's cameras, from the inventory bucket.
    pub async fn inventory(&self) -> Result<Vec<CameraConfig>, ClusterError> {
        let mut out = Vec::new();
        let mut keys = self.cameras.keys().await.map_err(nats_err)?;
        while let Some(key) = keys.next().await {
            let key = key.map_err(nats_err)?;
            if let Some(value) = self.cameras.get(&key).await.map_err(nats_err)? {
                match serde_json::from_slice::<CameraConfig>(&value) {
                    Ok(config) if config.validate().is_ok() => out.push(config),
                    Ok(_) | Err(_) => log::warn!("Inventory entry {key} is not a valid camera: ignored"),
                }
            }
        }
        out.sort_by(|a, b| a.camera_id.cmp(&b.camera_id));
        Ok(out)
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
                if let Some((revision, publisher)) = local.lease {
                    publisher.abort();
                    let _ = self.leases.delete_expect_revision(id, Some(revision)).await;
                    let _ = self.status.delete(id).await;
                }
            }
        }
        for id in &summary.added {
            let Ok(Some(port)) = self.hub.send(crate::hub::Port(id.clone())).await else { continue };
            let owned = Arc::new(AtomicBool::new(false));
            let follower = tokio::spawn(relay::follow(self.client.clone(), self.node.clone(), id.clone(), port.clone(), owned.clone(), self.relay.received(id)));
            port.fence.close();
            self.state.lock().unwrap().cameras.insert(id.clone(), Local { port, owned, follower, lease: None, vacant_rounds: 0 });
        }
        self.state.lock().unwrap().inventory = inventory;
    }

    /// Takes the vacant cameras this node wins (or any vacant for `VACANT_ROUNDS`); notes the owners.
    async fn claim_vacant(&self) {
        let ids: Vec<String> = {
            let state = self.state.lock().unwrap();
            state.cameras.iter().filter(|(_, c)| c.lease.is_none()).map(|(id, _)| id.clone()).collect()
        };
        for id in ids {
            let entry = match self.leases.entry(&id).await {
                Ok(entry) => entry,
                Err(e) => {
                    log::warn!("[{id}] cannot read its lease: {e}");
                    continue;
                }
            };
            let holder = entry.filter(|e| e.operation == kv::Operation::Put).map(|e| String::from_utf8_lossy(&e.value).into_owned());
            let mine = {
                let mut state = self.state.lock().unwrap();
                match holder {
                    Some(owner) => {
                        state.owners.insert(id.clone(), owner);
                        if let Some(c) = state.cameras.get_mut(&id) {
                            c.vacant_rounds = 0;
                        }
                        false
                    }
                    None => {
                        state.owners.remove(&id);
                        let live = self.live_nodes(&state);
                        let winner = rendezvous_winner(&id, &live);
                        let Some(c) = state.cameras.get_mut(&id) else { continue };
                        c.vacant_rounds += 1;
                        winner.as_deref() == Some(self.node.as_str()) || c.vacant_rounds >= VACANT_ROUNDS
                    }
                }
            };
            if mine && !self.draining.load(Ordering::Acquire) {
                self.take(&id).await;
            }
        }
    }

    async fn take(&self, id: &str) {
        let sent = Instant::now();
        match self.leases.create(id, self.node.clone().into()).await {
            Ok(revision) => {
                let Some(port) = self.state.lock().unwrap().cameras.get(id).map(|c| c.port.clone()) else { return };
                port.fence.extend_to(sent + self.lease().mul_f64(FENCE_SHARE));
                let publisher = tokio::spawn(relay::publish(self.client.clone(), id.to_string(), port, (self.relay.published(id), self.relay.published_bytes(id))));
                {
                    let mut state = self.state.lock().unwrap();
                    state.owners.insert(id.to_string(), self.node.clone());
                    if let Some(c) = state.cameras.get_mut(id) {
                        c.owned.store(true, Ordering::Release);
                        c.lease = Some((revision, publisher));
                        c.vacant_rounds = 0;
                    } else {
                        publisher.abort();
                    }
                }
                // Events the previous owner left open (it died, or was cut off) end now.
                if let Some(hub) = self.events.get().cloned() {
                    let camera = id.to_string();
                    let ended = tokio::task::spawn_blocking(move || hub.end_abandoned(&camera, crate::events::now())).await.unwrap_or_default();
                    if !ended.is_empty() {
                        log::info!("[{id}] ended {} events its previous owner left open", ended.len());
                    }
                }
                let _ = self.hub.send(SetRunning(id.to_string(), true)).await;
                self.counters.leases_taken.fetch_add(1, Ordering::Relaxed);
                log::info!("[{id}] taken by node {} (lease revision {revision})", self.node);
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => log::warn!("[{id}] cannot take its lease: {e}"),
        }
    }

    /// Stops a camera this node no longer owns (its viewers stay, fed by the relay from now on).
    async fn disown(&self, id: &str) {
        let lease = {
            let mut state = self.state.lock().unwrap();
            state.owners.remove(id);
            state.cameras.get_mut(id).and_then(|c| {
                c.port.fence.close();
                c.owned.store(false, Ordering::Release);
                c.lease.take()
            })
        };
        if let Some((_, publisher)) = lease {
            publisher.abort();
        }
        let _ = self.hub.send(SetRunning(id.to_string(), false)).await;
    }

    /// Stops a camera and deletes its lease, so that another node takes it at its next round.
    async fn release(&self, id: &str) {
        let revision = self.state.lock().unwrap().cameras.get(id).and_then(|c| c.lease.as_ref().map(|(r, _)| *r));
        self.disown(id).await;
        if let Some(revision) = revision {
            match self.leases.delete_expect_revision(id, Some(revision)).await {
                Ok(()) => {
                    self.counters.leases_released.fetch_add(1, Ordering::Relaxed);
                    log::info!("[{id}] released by node {}", self.node);
                }
                Err(e) => log::warn!("[{id}] cannot release its lease: {e}"),
            }
            let _ = self.status.delete(id).await;
        }
    }

    /// With `rebalance`: gives up one camera per round that rendezvous hashing places elsewhere.
    async fn rebalance(&self) {
        let misplaced = {
            let state = self.state.lock().unwrap();
            let live = self.live_nodes(&state);
            let mut owned: Vec<&String> = state.cameras.iter().filter(|(_, c)| c.lease.is_some()).map(|(id, _)| id).collect();
            owned.sort();
            owned.into_iter().find(|id| rendezvous_winner(id, &live).as_deref() != Some(self.node.as_str())).cloned()
        };
        if let Some(id) = misplaced {
            log::info!("[{id}] rebalancing: another node is its rendezvous winner now");
            self.release(&id).await;
        }
    }

    async fn publish_statuses(&self) {
        let owned: HashSet<String> = self.owned();
        if owned.is_empty() {
            return;
        }
        let Ok(statuses) = self.hub.send(Statuses).await else { return };
        for view in statuses.into_iter().filter(|v| owned.contains(&v.camera_id)) {
            let entry = StatusEntry { owner: self.node.clone(), status: serde_json::to_value(&view).expect("a status serialises") };
            let _ = self.status.put(&view.camera_id, serde_json::to_vec(&entry).expect("a status serialises").into()).await;
        }
    }

    async fn read_statuses(&self) {
        let ids: Vec<String> = {
            let state = self.state.lock().unwrap();
            state.cameras.iter().filter(|(_, c)| c.lease.is_none()).map(|(id, _)| id.clone()).collect()
        };
        let mut found = HashMap::new();
        for id in ids {
            if let Ok(Some(value)) = self.status.get(&id).await {
                if let Ok(entry) = serde_json::from_slice::<StatusEntry>(&value) {
                    found.insert(id, entry);
                }
            }
        }
        self.state.lock().unwrap().statuses = found;
    }

    pub fn owned(&self) -> HashSet<String> {
        self.state.lock().unwrap().cameras.iter().filter(|(_, c)| c.lease.is_some()).map(|(id, _)| id.clone()).collect()
    }

    /// Every camera of the cluster as `GET /api/cameras` lists it: this node's own status for the
    /// cameras it owns, the owner's last published one (at most a round old) for the others, each
    /// with its `owner` (`null` while nobody holds it).
    pub fn list(&self, local: Vec<CameraStatusView>) -> Vec<Value> {
        let state = self.state.lock().unwrap();
        local
            .into_iter()
            .map(|view| {
                let id = view.camera_id.clone();
                let owned_here = state.cameras.get(&id).is_some_and(|c| c.lease.is_some());
                let mut value = match state.statuses.get(&id) {
                    Some(entry) if !owned_here && state.owners.get(&id) == Some(&entry.owner) => {
                        let mut theirs = entry.status.clone();
                        // Viewers are per node: this node's count, not the owner's.
                        theirs["viewers"] = view.viewers.into();
                        theirs
                    }
                    _ => serde_json::to_value(&view).expect("a status serialises"),
                };
                let owner = if owned_here { Some(self.node.clone()) } else { state.owners.get(&id).cloned() };
                value["owner"] = owner.map_or(Value::Null, Value::from);
                value
            })
            .collect()
    }

    pub fn view(&self) -> ClusterView {
        let state = self.state.lock().unwrap();
        let mut live_nodes: Vec<String> = self.live_nodes(&state).into_iter().map(|(n, _)| n).collect();
        live_nodes.sort();
        let mut cameras_owned: Vec<String> = state.cameras.iter().filter(|(_, c)| c.lease.is_some()).map(|(id, _)| id.clone()).collect();
        cameras_owned.sort();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClusterView {
            node: self.node.clone(),
            nats_connected: self.nats_connected(),
            nats_server: self.client.try_server_info().map(|i| if i.server_name.is_empty() { format!("{}:{}", i.host, i.port) } else { i.server_name }),
            lease_secs: self.settings.lease_secs,
            capacity: self.settings.capacity,
            rebalance: self.settings.rebalance,
            live_nodes,
            cameras_owned,
            lease_renewals: load(&self.counters.renewals),
            lease_renewal_failures: load(&self.counters.renewal_failures),
            leases_taken: load(&self.counters.leases_taken),
            leases_lost: load(&self.counters.leases_lost),
            leases_released: load(&self.counters.leases_released),
            relay_published: self.relay.published_view(),
            relay_published_bytes: self.relay.published_bytes_view(),
            relay_received: self.relay.received_view(),
            events_published: load(&self.event_counters.published),
            events_unpublished: load(&self.event_counters.unpublished),
            events_received: load(&self.event_counters.received),
        }
    }

    /// `POST /api/cameras` in a cluster: into the inventory (every node registers it within a round).
    pub async fn add_camera(&self, config: &CameraConfig) -> Result<(), ClusterError> {
        let json = serde_json::to_vec(config).expect("a camera serialises");
        match self.cameras.create(&config.camera_id, json.into()).await {
            Ok(_) => {
                self.wake.notify_one();
                Ok(())
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Err(ClusterError::Conflict(format!("camera \"{}\" already exists", config.camera_id))),
            Err(e) => Err(nats_err(e)),
        }
    }

    /// `PATCH /api/cameras/{id}`: read, change, write back at the revision read (a concurrent change
    /// makes it fail rather than be lost). Returns the camera as changed.
    pub async fn update_camera(&self, id: &str, change: impl FnOnce(&mut CameraConfig) -> Result<(), String>) -> Result<CameraConfig, ClusterError> {
        let entry = self.cameras.entry(id).await.map_err(nats_err)?;
        let entry = entry.filter(|e| e.operation == kv::Operation::Put).ok_or_else(|| ClusterError::NotFound(format!("unknown camera: {id}")))?;
        let mut config: CameraConfig = serde_json::from_slice(&entry.value).map_err(nats_err)?;
        change(&mut config).map_err(ClusterError::Invalid)?;
        let json = serde_json::to_vec(&config).expect("a camera serialises");
        self.cameras.update(id, json.into(), entry.revision).await.map_err(|e| match e.kind() {
            kv::UpdateErrorKind::WrongLastRevision => ClusterError::Conflict(format!("camera {id} was changed meanwhile; try again")),
            _ => nats_err(e),
        })?;
        self.wake.notify_one();
        Ok(config)
    }

    /// `DELETE /api/cameras/{id}`: out of the inventory; its owner stops it within a round.
    pub async fn remove_camera(&self, id: &str) -> Result<(), ClusterError> {
        match self.cameras.get(id).await.map_err(nats_err)? {
            Some(_) => {
                self.cameras.delete(id).await.map_err(nats_err)?;
                self.wake.notify_one();
                Ok(())
            }
            None => Err(ClusterError::NotFound(format!("unknown camera: {id}"))),
        }
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
        self.draining.store(true, Ordering::Release);
        // The ends of the events the stopped cameras closed, their clips: out before the leases go.
        if !events::flush(&self.event_counters, Duration::from_secs(3)).await {
            log::warn!("Cluster node {}: some event changes were not published before the drain", self.node);
        }
        let owned: Vec<(String, u64)> = {
            let state = self.state.lock().unwrap();
            state.cameras.iter().filter_map(|(id, c)| c.lease.as_ref().map(|(r, _)| (id.clone(), *r))).collect()
        };
        for (id, revision) in &owned {
            self.disown(id).await;
            if self.leases.delete_expect_revision(id, Some(*revision)).await.is_ok() {
                self.counters.leases_released.fetch_add(1, Ordering::Relaxed);
            }
            let _ = self.status.delete(id).await;
        }
        let _ = self.nodes.delete(&self.node).await;
        let _ = self.client.flush().await;
        log::info!("Cluster node {} drained: {} cameras handed over", self.node, owned.len());
    }
}

/// Stores `value` as the cluster's `key` if none is stored yet; otherwise it must be the same.
async fn agree(shared: &kv::Store, key: &str, value: f64) -> Result<(), ClusterError> {
    match shared.create(key, value.to_string().into()).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
            let stored = shared.get(key).await.map_err(nats_err)?.unwrap_or_default();
            let stored = String::from_utf8_lossy(&stored).into_owned();
            match stored.parse::<f64>() {
                Ok(theirs) if (theirs - value).abs() < 1e-9 => Ok(()),
                _ => Err(ClusterError::Disagrees(format!(
                    "cluster.{key} is {value} here but {stored} in the cluster (every node must use the same; \
                     the first node to start stored it in the NATS bucket {SHARED}): set {key} = {stored}"
                ))),
            }
        }
        Err(e) => Err(ClusterError::Bucket { bucket: SHARED, message: e.to_string() }),
    }
}

async fn bucket(js: &jetstream::Context, name: &'static str, description: &str, max_age: Duration, replicas: usize) -> Result<kv::Store, ClusterError> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    // The stream a KV bucket is, made directly: `create_key_value` first reads the account's limits
    // in a form nats-server 2.9 (Debian's) does not send. Same settings as the NATS KV convention.
    let fail = |e: &dyn std::fmt::Display| ClusterError::Bucket { bucket: name, message: e.to_string() };
    let made = js
        .create_stream(jetstream::stream::Config {
            name: format!("KV_{name}"),
            description: Some(description.to_string()),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            max_age,
            storage: jetstream::stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: jetstream::stream::DiscardPolicy::New,
            num_replicas: replicas,
            ..Default::default()
        })
        .await;
    if let Err(e) = made {
        // Another node may have made it meanwhile.
        if js.get_key_value(name).await.is_err() {
            return Err(fail(&e));
        }
    }
    js.get_key_value(name).await.map_err(|e| fail(&e))
}

/// A stable hash of `camera` and `node` in (0, 1).
fn hash01(camera: &str, node: &str) -> f64 {
    // FNV-1a 64, then a finaliser (splitmix64) so that close names spread.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in camera.bytes().chain([0u8]).chain(node.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// Weighted rendezvous hashing: the node with the highest `-capacity / ln(hash01)`.
pub fn rendezvous_winner(camera: &str, nodes: &[(String, f64)]) -> Option<String> {
    nodes
        .iter()
        .map(|(node, capacity)| (node, -capacity / hash01(camera, node).ln()))
        .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(node, _)| node.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(list: &[(&str, f64)]) -> Vec<(String, f64)> {
        list.iter().map(|(n, c)| (n.to_string(), *c)).collect()
    }

    #[test]
    fn rendezvous_spreads_by_capacity_and_moves_only_the_leavers_cameras() {
        let three = nodes(&[("a", 1.0), ("b", 1.0), ("c", 2.0)]);
        let ids: Vec<String> = (0..4000).map(|i| format!("cam{i}")).collect();
        let owner = |id: &str, n: &[(String, f64)]| rendezvous_winner(id, n).unwrap();
        let count = |name: &str| ids.iter().filter(|id| owner(id, &three) == name).count();
        let (a, b, c) = (count("a"), count("b"), count("c"));
        assert!((800..1200).contains(&a) && (800..1200).contains(&b) && (1800..2200).contains(&c), "{a} {b} {c}");
        let two = nodes(&[("a", 1.0), ("c", 2.0)]);
        for id in &ids {
            if owner(id, &three) != "b" {
                assert_eq!(owner(id, &two), owner(id, &three), "{id} did not live on b and must not move");
            }
        }
        assert_eq!(rendezvous_winner("x", &[]), None);
    }
}
