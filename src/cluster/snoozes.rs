//! Snoozes cluster-wide: a camera's snooze (`POST /api/cameras/{id}/snooze`, MQTT's
//! `<camera>/snooze/set`) taken by any node is put in the bucket `haven_snoozes` (key: the camera,
//! value: until when, unix seconds; deleted when it ends), and every node watches the bucket, so
//! that the node that owns the camera (which alone notifies its events) holds it, now and after a
//! failover, and a node that starts later learns it too.

use std::sync::Arc;

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;

use super::{nats_kv, ClusterError};

/// Told each snooze as the bucket has it (`None`: ended).
pub type OnSnooze = Box<dyn Fn(&str, Option<f64>) + Send + Sync>;

/// The bucket, opened (or made) once.
pub async fn open(js: &jetstream::Context, replicas: usize) -> Result<kv::Store, ClusterError> {
    nats_kv::open_plain(js, nats_kv::SNOOZES, "HAVEN snoozed cameras (value: until, unix seconds)", replicas).await
}

/// Puts a camera's snooze (`None`: ends it) for every node.
pub async fn put(store: &kv::Store, camera: &str, until: Option<f64>) -> Result<(), ClusterError> {
    let fail = |e: &dyn std::fmt::Display| ClusterError::Bucket { bucket: nats_kv::SNOOZES, message: e.to_string() };
    match until {
        Some(until) => store.put(camera, until.to_string().into()).await.map(drop).map_err(|e| fail(&e)),
        None => store.delete(camera).await.map_err(|e| fail(&e)),
    }
}

/// Watches the bucket (what it holds first, then each change) until the connection is gone for
/// good, telling `on` each snooze; the watch is made again after an error.
pub async fn watch(store: kv::Store, on: Arc<OnSnooze>) {
    loop {
        match store.watch_with_history(">").await {
            Ok(mut changes) => {
                while let Some(change) = changes.next().await {
                    match change {
                        Ok(entry) => tell(&on, &entry),
                        Err(e) => {
                            log::warn!("cluster snoozes: the watch failed ({e}); watching again");
                            break;
                        }
                    }
                }
            }
            Err(e) => log::warn!("cluster snoozes: cannot watch {}: {e}", nats_kv::SNOOZES),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

fn tell(on: &OnSnooze, entry: &kv::Entry) {
    let until = match entry.operation {
        kv::Operation::Put => match std::str::from_utf8(&entry.value).ok().and_then(|t| t.parse::<f64>().ok()) {
            Some(until) => Some(until),
            None => return log::warn!("cluster snoozes: {:?} holds no time; ignored", entry.key),
        },
        kv::Operation::Delete | kv::Operation::Purge => None,
    };
    on(&entry.key, until);
}
