//! Any node serves any camera. A node whose viewers follow a camera it does not own subscribes to
//! `haven.frames.<id>` and asks the owner for the renditions they want (`haven.want.<id>`, every
//! second); the owner's one publisher per camera holds those renditions wanted (so its worker
//! encodes them) while a want came in the last 3 s, and publishes each new packet once, newest
//! only, like a viewer. No persistence: a relay that cannot keep up is cut off by NATS (slow
//! consumer) and misses frames, as a slow viewer does. The relaying node rebuilds one packet per
//! frame and its viewers are served from its feed exactly as the owner's are.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::wire::{self, Want, WireRendition};
use crate::camera::rendition::{Format, Formats, Rendition, Wanted};
use crate::camera::{CameraPort, Feed};

/// How often a relaying node says what it wants, and how long the owner honours one want.
const WANT_EVERY: Duration = Duration::from_secs(1);
const WANT_LASTS: Duration = Duration::from_secs(3);
/// How often a follower looks at its viewers' demand.
const DEMAND_POLL: Duration = Duration::from_millis(250);

/// Packets published and received per camera, on this node.
#[derive(Default)]
pub struct RelayCounters {
    published: Mutex<HashMap<String, Arc<AtomicU64>>>,
    published_bytes: Mutex<HashMap<String, Arc<AtomicU64>>>,
    received: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

impl RelayCounters {
    pub fn published(&self, id: &str) -> Arc<AtomicU64> {
        self.published.lock().unwrap().entry(id.to_string()).or_default().clone()
    }

    pub fn published_bytes(&self, id: &str) -> Arc<AtomicU64> {
        self.published_bytes.lock().unwrap().entry(id.to_string()).or_default().clone()
    }

    pub fn received(&self, id: &str) -> Arc<AtomicU64> {
        self.received.lock().unwrap().entry(id.to_string()).or_default().clone()
    }

    pub fn published_view(&self) -> HashMap<String, u64> {
        self.published.lock().unwrap().iter().map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed))).collect()
    }

    pub fn published_bytes_view(&self) -> HashMap<String, u64> {
        self.published_bytes.lock().unwrap().iter().map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed))).collect()
    }

    pub fn received_view(&self) -> HashMap<String, u64> {
        self.received.lock().unwrap().iter().map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed))).collect()
    }
}

/// The owner's side, for as long as this node owns the camera (aborted when it stops owning it).
pub async fn publish(client: async_nats::Client, id: String, port: CameraPort, (published, bytes): (Arc<AtomicU64>, Arc<AtomicU64>)) {
    let subject = wire::frames_subject(&id);
    let mut wants = match client.subscribe(wire::want_subject(&id)).await {
        Ok(s) => s,
        Err(e) => {
            log::warn!("[{id}] relay: cannot subscribe to wants: {e}");
            return;
        }
    };
    // Each relaying node's renditions and when it last asked.
    let mut nodes: HashMap<String, (Vec<WireRendition>, Instant)> = HashMap::new();
    let mut guards: HashMap<(Rendition, Format), Wanted> = HashMap::new();
    let mut feed: Option<tokio::sync::watch::Receiver<Feed>> = None;
    let mut last_seq = 0;
    let mut tick = tokio::time::interval(WANT_EVERY);
    loop {
        tokio::select! {
            msg = wants.next() => {
                let Some(msg) = msg else { return };
                match serde_json::from_slice::<Want>(&msg.payload) {
                    Ok(want) => {
                        nodes.insert(want.node, (want.renditions, Instant::now()));
                    }
                    Err(e) => log::debug!("[{id}] relay: bad want: {e}"),
                }
            }
            _ = tick.tick() => {
                nodes.retain(|_, (_, at)| at.elapsed() < WANT_LASTS);
            }
            changed = async { feed.as_mut().expect("guarded").changed().await }, if feed.is_some() => {
                if changed.is_err() {
                    return;
                }
                let rx = feed.as_mut().expect("guarded");
                let packet = match &*rx.borrow_and_update() {
                    Feed::Frame(p) if p.seq != last_seq => p.clone(),
                    _ => continue,
                };
                // Past the fence this node may no longer be the owner: nothing leaves it.
                if port.fence.expired() {
                    continue;
                }
                last_seq = packet.seq;
                let message = wire::encode(&packet);
                let size = message.len() as u64;
                if client.publish(subject.clone(), message).await.is_ok() {
                    published.fetch_add(1, Ordering::Relaxed);
                    bytes.fetch_add(size, Ordering::Relaxed);
                }
                continue;
            }
        }
        // The renditions wanted now: hold exactly those (the worker encodes them from its next frame).
        let wanted: std::collections::HashSet<(Rendition, Format)> = nodes.values().flat_map(|(r, _)| r.iter().flat_map(WireRendition::wants)).collect();
        guards.retain(|key, _| wanted.contains(key));
        for key in wanted {
            guards.entry(key).or_insert_with(|| port.demand.want(key.0, key.1));
        }
        match (guards.is_empty(), feed.is_some()) {
            (true, true) => feed = None,
            (false, false) => {
                let mut rx = port.feed.subscribe();
                rx.mark_changed();
                feed = Some(rx);
            }
            _ => {}
        }
    }
}

/// A relaying node's side, for as long as the camera is in the inventory: subscribed while this
/// node does not own the camera and someone here watches it.
pub async fn follow(client: async_nats::Client, node: String, id: String, port: CameraPort, owned: Arc<AtomicBool>, received: Arc<AtomicU64>) {
    let mut frames: Option<async_nats::Subscriber> = None;
    let mut last_want: Option<(Vec<WireRendition>, Instant)> = None;
    let mut poll = tokio::time::interval(DEMAND_POLL);
    loop {
        tokio::select! {
            _ = poll.tick() => {
                let demand = port.demand.current();
                if owned.load(Ordering::Acquire) || demand.is_empty() {
                    // Dropping the subscriber unsubscribes; the owner stops within WANT_LASTS.
                    frames = None;
                    last_want = None;
                    continue;
                }
                if frames.is_none() {
                    match client.subscribe(wire::frames_subject(&id)).await {
                        Ok(s) => frames = Some(s),
                        Err(e) => {
                            log::warn!("[{id}] relay: cannot subscribe to frames: {e}");
                            continue;
                        }
                    }
                }
                let renditions: Vec<WireRendition> = demand.into_iter().map(WireRendition::from_demand).collect();
                let due = match &last_want {
                    Some((sent, at)) => *sent != renditions || at.elapsed() >= WANT_EVERY,
                    None => true,
                };
                if due {
                    let want = Want { node: node.clone(), renditions: renditions.clone() };
                    let _ = client.publish(wire::want_subject(&id), serde_json::to_vec(&want).expect("a want serialises").into()).await;
                    last_want = Some((renditions, Instant::now()));
                }
            }
            msg = async { frames.as_mut().expect("guarded").next().await }, if frames.is_some() => {
                let Some(msg) = msg else {
                    frames = None;
                    continue;
                };
                if owned.load(Ordering::Acquire) {
                    continue;
                }
                let wanted = port.demand.current();
                let formats_of = |r: &Rendition| wanted.iter().find(|(w, _)| w == r).map_or(Formats::default(), |(_, f)| *f);
                match wire::decode(&msg.payload, formats_of) {
                    Ok(packet) => {
                        received.fetch_add(1, Ordering::Relaxed);
                        // Never over a close (camera removed, server shutting down).
                        port.feed.send_if_modified(|feed| {
                            if matches!(feed, Feed::Closed(_)) {
                                return false;
                            }
                            *feed = Feed::Frame(packet);
                            true
                        });
                    }
                    Err(e) => log::debug!("[{id}] relay: {e}"),
                }
            }
        }
    }
}
