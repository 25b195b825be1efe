//! A cluster in memory for the tests: nodes that run the very rounds `Cluster` runs (`round`), on
//! buckets in memory (`memory_kv`), in simulated time stepped by the test. After every step it
//! checks the rule the leases exist for: never two nodes analysing one camera at the same time.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::kv::{Bucket, Buckets};
use super::leases::{Action, Book, Rules};
use super::memory_kv::{Clock, Handle, Link, Store};
use super::round::{Counters, Hands, Round};

/// Time moves in steps this long.
pub const STEP: Duration = Duration::from_millis(50);

/// A node's cameras: the hub, reduced to which workers run, and every stop it was told.
#[derive(Default)]
pub struct Running {
    pub now: Mutex<BTreeSet<String>>,
    pub stops: Mutex<Vec<String>>,
}

impl Hands for Running {
    fn apply(&self, action: Action) -> BoxFuture<'_, ()> {
        match action {
            Action::Start(id) => {
                self.now.lock().unwrap().insert(id);
            }
            Action::Stop(id) => {
                self.now.lock().unwrap().remove(&id);
                self.stops.lock().unwrap().push(id);
            }
            _ => {}
        }
        async {}.boxed()
    }
}

pub struct Node {
    pub name: String,
    pub book: Mutex<Book>,
    kv: Buckets,
    pub link: Arc<Link>,
    pub running: Running,
    pub counters: Counters,
    clock: Box<dyn Fn() -> Instant + Send + Sync>,
    next_round: Instant,
    /// When its last round ran.
    pub last_round: Instant,
    /// SIGSTOP: no rounds until resumed (its time does not stop: its leases expire meanwhile).
    pub paused: bool,
    /// Killed or drained: no rounds ever again, and nothing analysed.
    pub gone: bool,
}

/// Runs a future of the memory buckets, which never wait.
fn now_or_never<T>(f: impl std::future::Future<Output = T>) -> T {
    f.now_or_never().expect("the memory buckets answer at once")
}

pub struct Sim {
    pub clock: Clock,
    pub lease: Duration,
    cameras: Arc<Store>,
    pub leases: Arc<Store>,
    nodes_store: Arc<Store>,
    status: Arc<Store>,
    pub nodes: Vec<Node>,
}

impl Sim {
    pub fn new(lease_secs: f64) -> Self {
        let clock = Clock::new();
        let lease = Duration::from_secs_f64(lease_secs);
        Sim {
            cameras: Store::new(&clock, None),
            leases: Store::new(&clock, Some(lease)),
            nodes_store: Store::new(&clock, Some(lease)),
            status: Store::new(&clock, Some(lease)),
            clock,
            lease,
            nodes: Vec::new(),
        }
    }

    pub fn round_period(&self) -> Duration {
        self.lease / 3
    }

    /// A node starts: its first round at once, then one every third of a lease.
    pub fn join(&mut self, name: &str, capacity: f64, rebalance: bool) {
        let link = Arc::new(Link::default());
        let handle = |store: &Arc<Store>| -> Arc<dyn Bucket> { Arc::new(Handle { store: store.clone(), link: link.clone() }) };
        let kv = Buckets { cameras: handle(&self.cameras), leases: handle(&self.leases), nodes: handle(&self.nodes_store), status: handle(&self.status) };
        let rules = Rules { node: name.to_string(), capacity, lease: self.lease, rebalance };
        let now = self.clock.now();
        self.nodes.push(Node {
            name: name.to_string(),
            book: Mutex::new(Book::new(rules)),
            kv,
            link,
            running: Running::default(),
            counters: Counters::default(),
            clock: Box::new({
                let clock = self.clock.clone();
                move || clock.now()
            }),
            next_round: now,
            last_round: now,
            paused: false,
            gone: false,
        });
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).expect("a node of the simulation")
    }

    pub fn node_mut(&mut self, name: &str) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.name == name).expect("a node of the simulation")
    }

    /// Into the inventory, as the API's POST writes it.
    pub fn add_cameras(&self, ids: &[String]) {
        let server = Handle { store: self.cameras.clone(), link: Arc::default() };
        for id in ids {
            now_or_never(server.create(id, b"{}".to_vec())).expect("a new camera");
        }
    }

    /// Out of the inventory, as the API's DELETE does.
    pub fn remove_camera(&self, id: &str) {
        let server = Handle { store: self.cameras.clone(), link: Arc::default() };
        now_or_never(server.delete(id)).expect("deleted");
    }

    /// The camera's lease holder, as the store holds it now.
    pub fn holder(&self, camera: &str) -> Option<String> {
        self.leases.value(camera)
    }

    /// SIGTERM on a node: the hub stops its cameras, then it hands its leases over and goes.
    pub fn drain(&mut self, name: &str) {
        let node = self.node_mut(name);
        node.book.lock().unwrap().stop_taking();
        node.running.now.lock().unwrap().clear();
        now_or_never(node.round().drain());
        node.gone = true;
    }

    /// Moves time on by `span`, running every round that falls due.
    pub fn run_for(&mut self, span: Duration) {
        let end = self.clock.now() + span;
        while self.clock.now() < end {
            self.step();
        }
    }

    /// Steps until `done` holds; panics past `within`. Returns the time it held.
    pub fn run_until(&mut self, within: Duration, done: impl Fn(&Sim) -> bool) -> Instant {
        let end = self.clock.now() + within;
        while !done(self) {
            assert!(self.clock.now() < end, "not done within {within:?}");
            self.step();
        }
        self.clock.now()
    }

    fn step(&mut self) {
        let now = self.clock.now();
        let period = self.round_period();
        for node in self.nodes.iter_mut().filter(|n| !n.paused && !n.gone && n.next_round <= now) {
            node.run_round();
            node.last_round = now;
            node.next_round = now + period;
        }
        self.assert_one_owner_at_most();
        self.clock.advance(STEP);
    }

    /// Never two nodes analysing one camera, and the one that does holds its lease in the store.
    fn assert_one_owner_at_most(&self) {
        let now = self.clock.now();
        let cameras: BTreeSet<String> = self.nodes.iter().flat_map(|n| n.book.lock().unwrap().cameras().cloned().collect::<Vec<_>>()).collect();
        for camera in cameras {
            let active: Vec<&str> = self.nodes.iter().filter(|n| !n.gone && n.book.lock().unwrap().active(&camera, now)).map(|n| n.name.as_str()).collect();
            assert!(active.len() <= 1, "{camera} analysed by {active:?} at once");
            if let [one] = active[..] {
                assert_eq!(self.holder(&camera).as_deref(), Some(one), "{camera} analysed by {one} without its lease");
            }
        }
    }
}

impl Node {
    fn round(&self) -> Round<'_> {
        Round { kv: &self.kv, book: &self.book, hands: &self.running, counters: &self.counters, clock: &*self.clock }
    }

    /// `Cluster::round`, with the hub's inventory reduced to the camera ids.
    fn run_round(&self) {
        let round = self.round();
        now_or_never(round.renew());
        if now_or_never(round.beat()).is_err() {
            return;
        }
        let Ok(ids) = now_or_never(self.kv.cameras.keys()) else { return };
        let known: Vec<String> = self.book.lock().unwrap().cameras().cloned().collect();
        for gone in known.iter().filter(|id| !ids.contains(id)) {
            self.running.now.lock().unwrap().remove(gone);
            now_or_never(round.forget(gone));
        }
        for id in &ids {
            self.book.lock().unwrap().add(id);
        }
        now_or_never(round.claim());
        now_or_never(round.rebalance());
    }

    pub fn owned(&self) -> Vec<String> {
        self.book.lock().unwrap().owned()
    }

    pub fn running(&self) -> Vec<String> {
        self.running.now.lock().unwrap().iter().cloned().collect()
    }

    pub fn stops(&self) -> Vec<String> {
        self.running.stops.lock().unwrap().clone()
    }
}
