//! Events: people tracked across frames, falls detected from their poses, clips and an event store.
//!
//! * [`model`]: the [`Event`] and its parts (kind, phase, clip status, what changed).
//! * [`config`]: `[events]` in the settings file ([`EventSettings`], [`ObjectEventSettings`]).
//! * [`hub`]: the [`EventHub`], one per process: the [`EventStore`], the alert broadcast, the events
//!   still active, the cluster's sink and retention.
//! * [`engine`]: the [`EventEngine`], one per camera, fed by the camera thread once per processed
//!   frame: tracker, fall detector, `person_detected` / `fall` / `object_detected` events, snapshots
//!   and clips (through a [`Recorder`] whose writer thread does the slow work).
//! * The parts the engine is made of: [`tracker`], [`fall`] (the pose rule), [`story`] (what the
//!   fall model is asked), [`recorder`] (clips and snapshots), [`store`] (SQLite).
//!
//! See `docs/events.md`.

pub mod config;
pub mod engine;
pub mod fall;
pub mod hub;
pub mod model;
pub mod recorder;
pub mod store;
pub mod story;
pub mod tracker;

pub use config::{EventSettings, ObjectEventSettings};
pub use engine::EventEngine;
pub use fall::{FallConfig, FallDetector, FallReason, FallUpdate};
pub use hub::{EventHub, EventSink, CLIPS_DIR, DB_FILE, SNAPSHOTS_DIR};
pub use model::{ClipStatus, Event, EventChange, EventKind, EventPhase};
pub use recorder::{ClipDone, Recorder, RecorderConfig};
pub use store::{ClipInfo, EventFilter, EventStore, RetentionReport, StoreError};
pub use story::{Story, StoryUpdate, Trigger};
pub use tracker::{TrackedPerson, Tracker, TrackerConfig};

/// Unix time in seconds.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

#[cfg(test)]
mod real_model_tests;
