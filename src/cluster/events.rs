//! Events cluster-wide. Every node publishes each change to an event it stores (start, end,
//! snapshot written, clip complete or failed) to the JetStream stream `HAVEN_EVENTS`
//! (`haven.events.<camera>`, the event as JSON with the node that raised it, `Nats-Msg-Id`
//! `<id>.<change>` so that a change published twice within the stream's duplicate window is stored
//! once). Before it publishes a snapshot or clip change it puts the file into the object store
//! `HAVEN_MEDIA` under the event's relative path, so any node serves it.
//!
//! Every node reads the whole stream (an ordered consumer from its start) into its own event store:
//! `/api/events` and `/ws/alerts` answer for the cluster from it. Ids are the same on every node:
//! each node numbers its events in its own range (`id_base`).
//!
//! Retention: the stream and the object store keep what `[events]` retention says (max age, and
//! the media's max bytes, oldest first), cluster-wide; a node's own retention deletes rows and
//! local files only, never the objects others serve.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, object_store::ObjectStore, stream};
use async_nats::HeaderMap;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::ClusterError;
use crate::events::{Event, EventChange, EventHub, EventSettings};

pub const STREAM: &str = "HAVEN_EVENTS";
pub const MEDIA: &str = "HAVEN_MEDIA";
/// A change published again within this is stored once (a retry after a lost ack, two nodes ending
/// the same abandoned event).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long a node keeps retrying to publish one change while NATS is away.
const PUBLISH_PATIENCE: Duration = Duration::from_secs(120);

/// This node's traffic on the events stream, for `/api/cluster` and `/metrics`.
#[derive(Default)]
pub struct EventCounters {
    /// Changes of this node's events (and of abandoned ones it ended) stored in the stream.
    pub published: AtomicU64,
    /// Changes given up after `PUBLISH_PATIENCE` (kept in this node's store only).
    pub unpublished: AtomicU64,
    /// Other nodes' changes taken into this node's store.
    pub received: AtomicU64,
    /// Changes waiting to be published (a draining node waits for them).
    pub queued: AtomicU64,
}

pub fn subject(camera_id: &str) -> String {
    format!("haven.events.{camera_id}")
}

/// One message of `HAVEN_EVENTS`: what changed and the event as the raising node stores it then.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventMessage {
    pub change: EventChange,
    pub event: Event,
}

/// The first id of `node`'s range: one of 2^21 - 2 ranges of 2^32 ids, from a hash of its name, so
/// ids stay below 2^53 (exact in JSON numbers). Never 0: a single server's ids stay apart.
pub fn id_base(node: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let slot = (h % ((1 << 21) - 2)) as i64 + 1;
    slot * crate::events::store::ID_RANGE
}

fn bucket_err(bucket: &'static str) -> impl Fn(&dyn std::fmt::Display) -> ClusterError {
    move |e| ClusterError::Bucket { bucket, message: e.to_string() }
}

/// Opens (or makes) the events stream and the media store, with `[events]` retention.
pub async fn open(js: &jetstream::Context, events: &EventSettings, replicas: usize) -> Result<ObjectStore, ClusterError> {
    let max_age = if events.retention_days > 0.0 { Duration::from_secs_f64(events.retention_days * 86400.0) } else { Duration::ZERO };
    let made = js
        .get_or_create_stream(stream::Config {
            name: STREAM.to_string(),
            description: Some("HAVEN events: every start, end, snapshot and clip of every node".into()),
            subjects: vec!["haven.events.>".to_string()],
            max_age,
            duplicate_window: DUPLICATE_WINDOW,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        })
        .await;
    made.map_err(|e| bucket_err(STREAM)(&e))?;
    if let Ok(store) = js.get_object_store(MEDIA).await {
        return Ok(store);
    }
    // Made as a stream directly, like the KV buckets (see `super::bucket`), with the object store
    // convention's subjects; old chunks go first when the media outgrow retention_max_bytes.
    let max_bytes = if events.retention_max_bytes > 0 { events.retention_max_bytes as i64 } else { -1 };
    let made = js
        .create_stream(stream::Config {
            name: format!("OBJ_{MEDIA}"),
            description: Some("HAVEN event snapshots and clips".into()),
            subjects: vec![format!("$O.{MEDIA}.C.>"), format!("$O.{MEDIA}.M.>")],
            max_age,
            max_bytes,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            discard: stream::DiscardPolicy::Old,
            allow_rollup: true,
            allow_direct: true,
            ..Default::default()
        })
        .await;
    if let Err(e) = made {
        if js.get_object_store(MEDIA).await.is_err() {
            return Err(bucket_err(MEDIA)(&e));
        }
    }
    js.get_object_store(MEDIA).await.map_err(|e| bucket_err(MEDIA)(&e))
}

/// Links this node's `EventHub` to the cluster: its changes out (a publisher task), the others' in
/// (a consumer task from the stream's start). Call before any camera starts.
pub async fn link(js: jetstream::Context, media: ObjectStore, node: String, hub: Arc<EventHub>, counters: Arc<EventCounters>) -> Result<(), ClusterError> {
    let (tx, rx) = mpsc::unbounded_channel::<(i64, EventChange, Option<Event>)>();
    let queued = counters.clone();
    hub.join_cluster(&node, id_base(&node), Box::new(move |id, change, event| {
        queued.queued.fetch_add(1, Ordering::AcqRel);
        if tx.send((id, change, event)).is_err() {
            queued.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }));
    let mut events = js.get_stream(STREAM).await.map_err(|e| bucket_err(STREAM)(&e))?;
    let replayed = events.info().await.map_err(|e| bucket_err(STREAM)(&e))?.state.last_sequence;
    let consumer = events
        .create_consumer(jetstream::consumer::push::OrderedConfig {
            deliver_subject: js.client().new_inbox(),
            ..Default::default()
        })
        .await
        .map_err(|e| bucket_err(STREAM)(&e))?;
    let messages = consumer.messages().await.map_err(|e| bucket_err(STREAM)(&e))?;
    tokio::spawn(consume(messages, node.clone(), hub.clone(), replayed, counters.clone()));
    tokio::spawn(publish(js, media, rx, hub, counters));
    Ok(())
}

async fn consume(mut messages: jetstream::consumer::push::Ordered, node: String, hub: Arc<EventHub>, replayed: u64, counters: Arc<EventCounters>) {
    while let Some(message) = messages.next().await {
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                // The ordered consumer recreates itself (NATS away, a server lost); no busy loop meanwhile.
                log::warn!("events stream: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let seq = message.info().map(|i| i.stream_sequence).unwrap_or(u64::MAX);
        let parsed: EventMessage = match serde_json::from_slice(&message.payload) {
            Ok(m) => m,
            Err(e) => {
                log::warn!("events stream: message {seq} is not an event: {e}");
                continue;
            }
        };
        // This node's own events come back only as another node's acknowledgement of them.
        let own = parsed.event.node.as_deref() == Some(node.as_str()) && parsed.change != EventChange::Ack;
        if own || parsed.event.node.is_none() {
            continue;
        }
        let hub = hub.clone();
        let live = seq > replayed;
        counters.received.fetch_add(1, Ordering::Relaxed);
        // SQLite off the async workers.
        let _ = tokio::task::spawn_blocking(move || hub.receive(&parsed.event, parsed.change, live)).await;
    }
    log::warn!("events stream: the consumer ended; other nodes' events are no longer followed");
}

async fn publish(js: jetstream::Context, media: ObjectStore, mut rx: mpsc::UnboundedReceiver<(i64, EventChange, Option<Event>)>, hub: Arc<EventHub>, counters: Arc<EventCounters>) {
    while let Some((id, change, given)) = rx.recv().await {
        publish_change(&js, &media, &hub, &counters, id, change, given).await;
        counters.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Waits until every change queued so far is published (or given up), at most `timeout`.
pub async fn flush(counters: &EventCounters, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while counters.queued.load(Ordering::Acquire) > 0 {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

async fn publish_change(js: &jetstream::Context, media: &ObjectStore, hub: &Arc<EventHub>, counters: &EventCounters, id: i64, change: EventChange, given: Option<Event>) {
    let read = match given {
        Some(event) => Ok(Ok(Some(event))),
        None => {
            let hub = hub.clone();
            tokio::task::spawn_blocking(move || hub.store().get(id)).await
        }
    };
    let event = match read {
        Ok(Ok(Some(event))) => event,
        Ok(Ok(None)) => return, // deleted meanwhile (retention)
        Ok(Err(e)) => {
            log::warn!("event {id}: cannot read it to publish: {e}");
            return;
        }
        Err(_) => return,
    };
    let file = match change {
        EventChange::Snapshot => event.snapshot_path.clone(),
        EventChange::Clip => event.clip_path.clone(),
        _ => None,
    };
    let message = EventMessage { change, event };
    let payload = serde_json::to_vec(&message).expect("an event serialises");
    let started = std::time::Instant::now();
    let mut wait = Duration::from_millis(250);
    loop {
        match publish_one(js, media, hub, &message, file.as_deref(), payload.clone()).await {
            Ok(()) => {
                counters.published.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Err(e) if started.elapsed() < PUBLISH_PATIENCE => {
                log::debug!("event {id}: publishing its {} failed ({e}); retrying", change.as_str());
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                log::warn!("event {id}: its {} was not published to the cluster: {e}", change.as_str());
                counters.unpublished.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
}

async fn publish_one(js: &jetstream::Context, media: &ObjectStore, hub: &EventHub, message: &EventMessage, file: Option<&str>, payload: Vec<u8>) -> Result<(), String> {
    let id = message.event.id.expect("stored events have ids");
    if let Some(rel) = file {
        let path = hub.store().resolve(rel);
        match tokio::task::spawn_blocking(move || std::fs::read(path)).await {
            Ok(Ok(bytes)) => {
                media.put(rel, &mut bytes.as_slice()).await.map_err(|e| format!("media store: {e}"))?;
            }
            // Gone already (retention): the change still goes out, without the file.
            Ok(Err(e)) => log::warn!("event {id}: {rel} unreadable, not put in the media store: {e}"),
            Err(e) => return Err(e.to_string()),
        }
    }
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", format!("{id}.{}", message.change.as_str()).as_str());
    let ack = js
        .publish_with_headers(subject(&message.event.camera_id), headers, payload.into())
        .await
        .map_err(|e| e.to_string())?;
    ack.await.map_err(|e| e.to_string())?;
    Ok(())
}

/// A file of the media store, whole (`None` if it is not there).
pub async fn fetch(media: &ObjectStore, name: &str) -> Result<Option<Vec<u8>>, ClusterError> {
    use async_nats::jetstream::object_store::GetErrorKind;
    let mut object = match media.get(name).await {
        Ok(o) => o,
        Err(e) if e.kind() == GetErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ClusterError::Nats(e.to_string())),
    };
    let mut bytes = Vec::new();
    object.read_to_end(&mut bytes).await.map_err(|e| ClusterError::Nats(format!("media store: {name}: {e}")))?;
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_ranges_are_apart_from_a_single_servers_and_exact_in_json() {
        for node in ["a", "b", "c", "node-1", "a-much-longer-node-name"] {
            let base = id_base(node);
            assert!(base >= crate::events::store::ID_RANGE, "{node}");
            assert!(base + crate::events::store::ID_RANGE <= 1 << 53, "{node}");
            assert_eq!(base % crate::events::store::ID_RANGE, 0);
        }
        assert_ne!(id_base("a"), id_base("b"));
    }
}
