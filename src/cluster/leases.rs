//! Who runs which camera, as a state machine: this node's book of the cameras, their leases and the
//! peers it hears. Observations go in (heartbeats read, lease holders read, the outcome of a
//! renewal or a take, the time); actions come out. No I/O and no clock: the driver (`round`) reads
//! and writes the buckets and tells the time.
//!
//! The algorithm (docs/scaling.md, "Who owns a camera"): a vacant camera is taken by its weighted
//! rendezvous winner among the live nodes, or by anyone once it has been vacant for two rounds; a
//! lease is renewed every round at the revision held, and lost when another revision is found; the
//! fence closes three quarters of a lease after the last renewal sent; with `rebalance`, one camera
//! per round that another live node wins is handed back.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::rendezvous::rendezvous_winner;

/// The fence closes this far into a lease: the rest is the margin for clocks and a late renewal.
const FENCE_SHARE: f64 = 0.75;
/// A peer whose heartbeat has not changed for this share of a lease is taken for dead.
const PEER_SILENCE_SHARE: f64 = 0.75;
/// A lease vacant for this many rounds may be taken by any node, not only the rendezvous winner.
const VACANT_ROUNDS: u32 = 2;

/// This node as the cluster's rules see it.
#[derive(Debug, Clone)]
pub struct Rules {
    pub node: String,
    pub capacity: f64,
    pub lease: Duration,
    pub rebalance: bool,
}

impl Rules {
    pub fn of(settings: &crate::cluster::config::ClusterSettings) -> Self {
        Rules {
            node: settings.node_name.clone(),
            capacity: settings.capacity,
            lease: Duration::from_secs_f64(settings.lease_secs),
            rebalance: settings.rebalance,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write the lease again at the revision held (compare-and-set).
    Renew { camera: String, revision: u64 },
    /// Create the vacant lease.
    Take(String),
    /// Delete the lease at the revision held, so that another node takes the camera.
    Release { camera: String, revision: u64 },
    /// Run the camera's worker here: its lease is this node's.
    Start(String),
    /// Stop the camera's worker here: the lease is lost or handed back.
    Stop(String),
    /// The camera may be analysed until `until`.
    Fence { camera: String, until: Instant },
}

/// What became of a renewal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Renewal {
    /// Written: the lease's new revision.
    Renewed(u64),
    /// Another revision is there: another node holds the lease, or it expired.
    Lost,
    /// The store did not answer: the next renewal decides (the fence covers the meantime).
    Failed,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    revision: u64,
    /// What the driver's `Fence` moved the fence to; the tests' one-owner check reads it.
    #[cfg_attr(not(test), allow(dead_code))]
    fence_until: Instant,
}

#[derive(Debug, Default)]
struct Camera {
    lease: Option<Held>,
    vacant_rounds: u32,
}

#[derive(Debug)]
struct Peer {
    revision: u64,
    changed: Instant,
    capacity: f64,
}

/// One node's book.
#[derive(Debug)]
pub struct Book {
    rules: Rules,
    cameras: BTreeMap<String, Camera>,
    peers: HashMap<String, Peer>,
    /// Each camera's owner as the leases bucket said at the last round.
    owners: HashMap<String, String>,
    draining: bool,
}

impl Book {
    pub fn new(rules: Rules) -> Self {
        Book { rules, cameras: BTreeMap::new(), peers: HashMap::new(), owners: HashMap::new(), draining: false }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    pub fn draining(&self) -> bool {
        self.draining
    }

    /// A camera joined the inventory: vacant here until a round takes it.
    pub fn add(&mut self, camera: &str) {
        self.cameras.entry(camera.to_string()).or_default();
    }

    /// A camera left the inventory: the revision of its lease if this node held it (to delete).
    pub fn remove(&mut self, camera: &str) -> Option<u64> {
        self.owners.remove(camera);
        self.cameras.remove(camera).and_then(|c| c.lease).map(|h| h.revision)
    }

    #[cfg(test)]
    pub fn cameras(&self) -> impl Iterator<Item = &String> {
        self.cameras.keys()
    }

    /// The cameras whose lease this node holds, by id.
    pub fn owned(&self) -> Vec<String> {
        self.cameras.iter().filter(|(_, c)| c.lease.is_some()).map(|(id, _)| id.clone()).collect()
    }

    pub fn holds(&self, camera: &str) -> bool {
        self.cameras.get(camera).is_some_and(|c| c.lease.is_some())
    }

    /// Whether this node may analyse the camera at `now`: it holds the lease and its fence is open.
    #[cfg(test)]
    pub fn active(&self, camera: &str, now: Instant) -> bool {
        self.cameras.get(camera).and_then(|c| c.lease).is_some_and(|h| now < h.fence_until)
    }

    /// The camera's owner: this node for its own, else the holder the last round read.
    pub fn owner(&self, camera: &str) -> Option<&str> {
        if self.holds(camera) {
            Some(&self.rules.node)
        } else {
            self.owners.get(camera).map(String::as_str)
        }
    }

    fn fence_from(&self, sent: Instant) -> Instant {
        sent + self.rules.lease.mul_f64(FENCE_SHARE)
    }

    /// Every round begins here: a renewal of each lease held.
    pub fn renewals(&self) -> Vec<Action> {
        let held = self.cameras.iter().filter_map(|(id, c)| c.lease.map(|h| (id, h.revision)));
        held.map(|(camera, revision)| Action::Renew { camera: camera.clone(), revision }).collect()
    }

    /// A renewal sent at `sent` came back: the fence moves, or the camera stops here.
    pub fn renewed(&mut self, camera: &str, renewal: Renewal, sent: Instant) -> Vec<Action> {
        let until = self.fence_from(sent);
        let Some(c) = self.cameras.get_mut(camera) else { return vec![] };
        match (renewal, c.lease.as_mut()) {
            (Renewal::Renewed(revision), Some(held)) => {
                *held = Held { revision, fence_until: until };
                vec![Action::Fence { camera: camera.to_string(), until }]
            }
            (Renewal::Lost, Some(_)) => {
                self.disown(camera);
                vec![Action::Stop(camera.to_string())]
            }
            _ => vec![],
        }
    }

    /// The heartbeats read at `now` (node → revision, capacity): a peer whose revision moves lives.
    pub fn heard(&mut self, heartbeats: HashMap<String, (u64, f64)>, now: Instant) {
        self.peers.retain(|name, _| heartbeats.contains_key(name));
        for (name, (revision, capacity)) in heartbeats {
            let peer = self.peers.entry(name).or_insert(Peer { revision, changed: now, capacity });
            if peer.revision != revision {
                peer.revision = revision;
                peer.changed = now;
            }
            peer.capacity = capacity;
        }
    }

    /// Nodes whose heartbeat moved lately, with their capacity; this node always.
    pub fn live_nodes(&self, now: Instant) -> Vec<(String, f64)> {
        let silence = self.rules.lease.mul_f64(PEER_SILENCE_SHARE);
        let mut live: Vec<(String, f64)> = self
            .peers
            .iter()
            .filter(|(name, p)| **name != self.rules.node && now.saturating_duration_since(p.changed) < silence)
            .map(|(name, p)| (name.clone(), p.capacity))
            .collect();
        live.push((self.rules.node.clone(), self.rules.capacity));
        live
    }

    /// The cameras whose lease holder a round reads: those this node does not hold.
    pub fn unheld(&self) -> Vec<String> {
        self.cameras.iter().filter(|(_, c)| c.lease.is_none()).map(|(id, _)| id.clone()).collect()
    }

    /// The holders read (`None`: vacant; a camera whose lease could not be read is left out):
    /// the vacant ones this node wins, or that stayed vacant for `VACANT_ROUNDS`, to take.
    pub fn claims(&mut self, holders: BTreeMap<String, Option<String>>, now: Instant) -> Vec<Action> {
        let live = self.live_nodes(now);
        let mut takes = Vec::new();
        for (camera, holder) in holders {
            let Some(c) = self.cameras.get_mut(&camera) else { continue };
            if c.lease.is_some() {
                continue;
            }
            match holder {
                Some(owner) => {
                    self.owners.insert(camera, owner);
                    c.vacant_rounds = 0;
                }
                None => {
                    self.owners.remove(&camera);
                    c.vacant_rounds += 1;
                    let wins = rendezvous_winner(&camera, &live).as_deref() == Some(self.rules.node.as_str());
                    if (wins || c.vacant_rounds >= VACANT_ROUNDS) && !self.draining {
                        takes.push(Action::Take(camera));
                    }
                }
            }
        }
        takes
    }

    /// A take sent at `sent` created the lease at `revision`: the camera starts here.
    pub fn taken(&mut self, camera: &str, revision: u64, sent: Instant) -> Vec<Action> {
        let until = self.fence_from(sent);
        let Some(c) = self.cameras.get_mut(camera) else { return vec![] };
        c.lease = Some(Held { revision, fence_until: until });
        c.vacant_rounds = 0;
        self.owners.insert(camera.to_string(), self.rules.node.clone());
        vec![Action::Fence { camera: camera.to_string(), until }, Action::Start(camera.to_string())]
    }

    /// With `rebalance`: the first camera held (by id) that another live node wins, handed back.
    pub fn rebalance(&mut self, now: Instant) -> Option<Action> {
        if !self.rules.rebalance {
            return None;
        }
        let live = self.live_nodes(now);
        let misplaced = self.owned().into_iter().find(|id| rendezvous_winner(id, &live).as_deref() != Some(self.rules.node.as_str()))?;
        self.release(&misplaced)
    }

    /// SIGTERM: no more taking, from now on.
    pub fn stop_taking(&mut self) {
        self.draining = true;
    }

    /// SIGTERM, once the cameras are stopped: every lease held is handed back.
    pub fn drain(&mut self) -> Vec<Action> {
        self.stop_taking();
        self.owned().iter().filter_map(|id| self.release(id)).collect()
    }

    fn release(&mut self, camera: &str) -> Option<Action> {
        let revision = self.disown(camera)?;
        Some(Action::Release { camera: camera.to_string(), revision })
    }

    /// This node no longer holds the camera: the revision it held.
    fn disown(&mut self, camera: &str) -> Option<u64> {
        self.owners.remove(camera);
        self.cameras.get_mut(camera)?.lease.take().map(|h| h.revision)
    }
}
