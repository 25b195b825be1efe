//! A round of the lease algorithm against the buckets: what each node does every third of a lease.
//! The book (`leases`) decides; this reads and writes the buckets, keeps the counters and logs, and
//! hands the camera actions (start, stop, fence) to `Hands`: the hub in `Cluster`, a set of names in
//! the tests, which run these very rounds on buckets in memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::kv::{Buckets, KvError};
use super::leases::{Action, Book, Renewal};

/// The camera side of a node: carries out `Start`, `Stop` and `Fence`.
pub trait Hands: Send + Sync {
    fn apply(&self, action: Action) -> BoxFuture<'_, ()>;
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

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A node's heartbeat value.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Heartbeat {
    capacity: f64,
}

/// One node's round: its buckets, its book, its hands and its clock.
pub struct Round<'a> {
    pub kv: &'a Buckets,
    pub book: &'a Mutex<Book>,
    pub hands: &'a dyn Hands,
    pub counters: &'a Counters,
    pub clock: &'a (dyn Fn() -> Instant + Send + Sync),
}

impl Round<'_> {
    fn node(&self) -> String {
        self.book.lock().unwrap().rules().node.clone()
    }

    async fn apply(&self, actions: Vec<Action>) {
        for action in actions {
            self.hands.apply(action).await;
        }
    }

    /// Renews every lease held at the revision held; a lease found lost stops its camera at once.
    pub async fn renew(&self) {
        let node = self.node();
        let renewals = self.book.lock().unwrap().renewals();
        for action in renewals {
            let Action::Renew { camera: id, revision } = action else { continue };
            let sent = (self.clock)();
            let renewal = match self.kv.leases.update(&id, node.clone().into_bytes(), revision).await {
                Ok(next) => {
                    bump(&self.counters.renewals);
                    Renewal::Renewed(next)
                }
                Err(KvError::WrongRevision) => {
                    bump(&self.counters.renewal_failures);
                    log::warn!("[{id}] lease lost (another node holds it, or it expired): stopping the camera here");
                    bump(&self.counters.leases_lost);
                    Renewal::Lost
                }
                Err(e) => {
                    // NATS unreachable or slow: the camera keeps running until its fence closes, then
                    // shows frames to this node's viewers only; the next renewal decides.
                    bump(&self.counters.renewal_failures);
                    log::warn!("[{id}] lease renewal failed: {e}");
                    Renewal::Failed
                }
            };
            let actions = self.book.lock().unwrap().renewed(&id, renewal, sent);
            self.apply(actions).await;
        }
    }

    /// Puts this node's heartbeat and reads every node's: who lives.
    pub async fn beat(&self) -> Result<(), KvError> {
        let (node, capacity) = {
            let book = self.book.lock().unwrap();
            (book.rules().node.clone(), book.rules().capacity)
        };
        let beat = serde_json::to_vec(&Heartbeat { capacity }).expect("a heartbeat serialises");
        self.kv.nodes.put(&node, beat).await?;
        let mut seen = HashMap::new();
        for key in self.kv.nodes.keys().await? {
            if let Some(entry) = self.kv.nodes.get(&key).await? {
                let capacity = serde_json::from_slice::<Heartbeat>(&entry.value).map_or(1.0, |h| h.capacity);
                seen.insert(key, (entry.revision, capacity));
            }
        }
        self.book.lock().unwrap().heard(seen, (self.clock)());
        Ok(())
    }

    /// Reads the leases of the cameras not held here and takes the vacant ones the book claims.
    pub async fn claim(&self) {
        let unheld = self.book.lock().unwrap().unheld();
        let mut holders = BTreeMap::new();
        for id in unheld {
            match self.kv.leases.get(&id).await {
                Ok(entry) => {
                    holders.insert(id, entry.map(|e| String::from_utf8_lossy(&e.value).into_owned()));
                }
                Err(e) => log::warn!("[{id}] cannot read its lease: {e}"),
            }
        }
        let takes = self.book.lock().unwrap().claims(holders, (self.clock)());
        for action in takes {
            if let Action::Take(id) = action {
                if self.book.lock().unwrap().draining() {
                    return;
                }
                self.take(&id).await;
            }
        }
    }

    async fn take(&self, id: &str) {
        let node = self.node();
        let sent = (self.clock)();
        match self.kv.leases.create(id, node.clone().into_bytes()).await {
            Ok(revision) => {
                let actions = self.book.lock().unwrap().taken(id, revision, sent);
                if actions.is_empty() {
                    return;
                }
                self.apply(actions).await;
                bump(&self.counters.leases_taken);
                log::info!("[{id}] taken by node {node} (lease revision {revision})");
            }
            Err(KvError::AlreadyExists) => {}
            Err(e) => log::warn!("[{id}] cannot take its lease: {e}"),
        }
    }

    /// With `rebalance`: hands back one camera per round that another live node wins.
    pub async fn rebalance(&self) {
        let release = self.book.lock().unwrap().rebalance((self.clock)());
        let Some(Action::Release { camera: id, revision }) = release else { return };
        log::info!("[{id}] rebalancing: another node is its rendezvous winner now");
        self.hands.apply(Action::Stop(id.clone())).await;
        match self.kv.leases.delete_at(&id, revision).await {
            Ok(()) => {
                bump(&self.counters.leases_released);
                log::info!("[{id}] released by node {}", self.node());
            }
            Err(e) => log::warn!("[{id}] cannot release its lease: {e}"),
        }
        let _ = self.kv.status.delete(&id).await;
    }

    /// A camera out of the inventory: its lease, if held here, is deleted (the hub stopped it).
    pub async fn forget(&self, id: &str) {
        let revision = self.book.lock().unwrap().remove(id);
        if let Some(revision) = revision {
            let _ = self.kv.leases.delete_at(id, revision).await;
            let _ = self.kv.status.delete(id).await;
        }
    }

    /// SIGTERM, once the cameras are stopped: every lease and this node's heartbeat are deleted,
    /// so that the other nodes take over at their next round. Returns how many were handed over.
    pub async fn drain(&self) -> usize {
        let releases = self.book.lock().unwrap().drain();
        for action in &releases {
            let Action::Release { camera: id, revision } = action else { continue };
            self.hands.apply(Action::Stop(id.clone())).await;
            if self.kv.leases.delete_at(id, *revision).await.is_ok() {
                bump(&self.counters.leases_released);
            }
            let _ = self.kv.status.delete(id).await;
        }
        let _ = self.kv.nodes.delete(&self.node()).await;
        releases.len()
    }
}
