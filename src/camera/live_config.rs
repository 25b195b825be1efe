//! A camera's settings as they change while it runs: its `CameraConfig` (PATCH, reload) and the
//! `[detection]` defaults it falls back on, with a generation that every change bumps, so that the
//! worker rebuilds what it uses per frame only when something changed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LockResult, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::config::Live;

use crate::camera::config::{CameraConfig, DetectionSettings};

pub struct LiveConfig {
    camera: RwLock<CameraConfig>,
    /// Shared by every camera: a reload replaces it for all at once.
    detection: Live<DetectionSettings>,
    generation: AtomicU64,
}

impl LiveConfig {
    pub fn new(camera: CameraConfig, detection: Live<DetectionSettings>) -> Self {
        Self { camera: RwLock::new(camera), detection, generation: AtomicU64::new(0) }
    }

    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, CameraConfig>> {
        self.camera.read()
    }

    /// The camera's configuration to change. The generation is bumped while the lock is held: a
    /// worker that sees the new generation then waits for the lock and reads the new value.
    pub fn write(&self) -> LockResult<RwLockWriteGuard<'_, CameraConfig>> {
        let guard = self.camera.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        guard
    }

    /// The `[detection]` settings the camera takes where it sets none of its own.
    pub fn detection(&self) -> Arc<DetectionSettings> {
        self.detection.get()
    }

    /// The shared `[detection]` handle (a restarted camera keeps following it).
    pub fn detection_handle(&self) -> Live<DetectionSettings> {
        self.detection.clone()
    }

    /// Grows with every change of the camera or of the defaults; read before the values, so that
    /// they are at least this new.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire) + self.detection.version()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::config::SourceType;

    #[test]
    fn every_change_of_the_camera_or_its_defaults_is_a_new_generation() {
        let defaults = Live::default();
        let live = LiveConfig::new(CameraConfig::new("cam", "a.mp4", SourceType::VideoFile), defaults.clone());
        let first = live.generation();
        let _ = live.read().unwrap().jpeg_quality;
        assert_eq!(live.generation(), first, "reading changes nothing");
        live.write().unwrap().jpeg_quality = 50;
        let patched = live.generation();
        assert_ne!(patched, first);
        defaults.set(DetectionSettings { detect_fps: 2.0, ..DetectionSettings::default() });
        assert_ne!(live.generation(), patched);
        assert_eq!(live.detection().detect_fps, 2.0);
    }
}
