//! Owned cameras' statuses in `haven_status` (key: camera id, value: `{owner, status}`, expiring
//! after a lease): each owner puts its own every round, so any node lists the whole cluster.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::kv::Bucket;
use crate::camera::CameraStatusView;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusEntry {
    pub owner: String,
    pub status: Value,
}

/// Puts the statuses of the cameras `owned` here.
pub async fn publish(status: &dyn Bucket, node: &str, owned: &HashSet<String>, views: Vec<CameraStatusView>) {
    for view in views.into_iter().filter(|v| owned.contains(&v.camera_id)) {
        let entry = StatusEntry { owner: node.to_string(), status: serde_json::to_value(&view).expect("a status serialises") };
        let _ = status.put(&view.camera_id, serde_json::to_vec(&entry).expect("a status serialises")).await;
    }
}

/// The statuses their owners last put, of the cameras `ids`.
pub async fn read(status: &dyn Bucket, ids: Vec<String>) -> HashMap<String, StatusEntry> {
    let mut found = HashMap::new();
    for id in ids {
        if let Ok(Some(entry)) = status.get(&id).await {
            if let Ok(entry) = serde_json::from_slice::<StatusEntry>(&entry.value) {
                found.insert(id, entry);
            }
        }
    }
    found
}

/// A camera as `GET /api/cameras` lists it: this node's own status (`local`) when it owns it, else
/// the owner's last published one with this node's viewers; with its `owner` (`null`: nobody).
pub fn listed(local: CameraStatusView, owner: Option<&str>, owned_here: bool, theirs: Option<&StatusEntry>) -> Value {
    let mut value = match theirs {
        Some(entry) if !owned_here && owner == Some(entry.owner.as_str()) => {
            let mut theirs = entry.status.clone();
            // Viewers are per node: this node's count, not the owner's.
            theirs["viewers"] = local.viewers.into();
            theirs
        }
        _ => serde_json::to_value(&local).expect("a status serialises"),
    };
    value["owner"] = owner.map_or(Value::Null, Value::from);
    value
}
