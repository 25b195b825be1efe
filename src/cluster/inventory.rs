//! The cluster's camera inventory, in the bucket `haven_cameras` (key: camera id, value: its
//! `CameraConfig` as JSON): what every node registers, and what the API's writes change.

use super::kv::{Bucket, KvError};
use super::ClusterError;
use crate::camera::config::CameraConfig;

/// The valid cameras, by id (an invalid entry is logged and left out).
pub async fn read(cameras: &dyn Bucket) -> Result<Vec<CameraConfig>, ClusterError> {
    let mut out = Vec::new();
    for key in cameras.keys().await? {
        if let Some(entry) = cameras.get(&key).await? {
            match serde_json::from_slice::<CameraConfig>(&entry.value) {
                Ok(config) if config.validate().is_ok() => out.push(config),
                Ok(_) | Err(_) => log::warn!("Inventory entry {key} is not a valid camera: ignored"),
            }
        }
    }
    out.sort_by(|a, b| a.camera_id.cmp(&b.camera_id));
    Ok(out)
}

/// Fills an empty inventory with `seed` (the first node's settings file).
pub async fn seed(cameras: &dyn Bucket, seed: &[CameraConfig]) -> Result<(), ClusterError> {
    if seed.is_empty() || !read(cameras).await?.is_empty() {
        return Ok(());
    }
    for camera in seed {
        match cameras.create(&camera.camera_id, json(camera)).await {
            Ok(_) => log::info!("Seeded camera {} into the cluster's inventory", camera.camera_id),
            Err(KvError::AlreadyExists) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn json(config: &CameraConfig) -> Vec<u8> {
    serde_json::to_vec(config).expect("a camera serialises")
}

pub async fn add(cameras: &dyn Bucket, config: &CameraConfig) -> Result<(), ClusterError> {
    match cameras.create(&config.camera_id, json(config)).await {
        Ok(_) => Ok(()),
        Err(KvError::AlreadyExists) => Err(ClusterError::Conflict(format!("camera \"{}\" already exists", config.camera_id))),
        Err(e) => Err(e.into()),
    }
}

/// Read, change, write back at the revision read (a concurrent change makes it fail rather than be
/// lost). Returns the camera as changed.
pub async fn update(cameras: &dyn Bucket, id: &str, change: impl FnOnce(&mut CameraConfig) -> Result<(), String>) -> Result<CameraConfig, ClusterError> {
    let entry = cameras.get(id).await?.ok_or_else(|| ClusterError::NotFound(format!("unknown camera: {id}")))?;
    let mut config: CameraConfig = serde_json::from_slice(&entry.value).map_err(|e| ClusterError::Nats(e.to_string()))?;
    change(&mut config).map_err(ClusterError::Invalid)?;
    cameras.update(id, json(&config), entry.revision).await.map_err(|e| match e {
        KvError::WrongRevision => ClusterError::Conflict(format!("camera {id} was changed meanwhile; try again")),
        e => e.into(),
    })?;
    Ok(config)
}

pub async fn remove(cameras: &dyn Bucket, id: &str) -> Result<(), ClusterError> {
    match cameras.get(id).await? {
        Some(_) => Ok(cameras.delete(id).await?),
        None => Err(ClusterError::NotFound(format!("unknown camera: {id}"))),
    }
}
