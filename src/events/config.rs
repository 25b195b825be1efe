//! `[events]` in the settings file: where events and their files live, clips' pre- and post-roll,
//! retention, and the settings of the parts (falls, the person and object trackers).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{FallConfig, RecorderConfig, TrackerConfig};
use crate::config::{check_within, ConfigError};

/// `[events]` in the settings file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventSettings {
    pub enabled: bool,
    /// Holds `events.db`, `clips/` and `snapshots/`.
    pub data_dir: PathBuf,
    /// Seconds of video kept before an event starts...
    pub pre_roll_secs: f64,
    /// ...and after it ends.
    pub post_roll_secs: f64,
    /// A clip stops at most this long after its event started, even if the event goes on.
    pub max_clip_secs: f64,
    /// Also record clips for `person_detected` (falls always get one).
    pub person_clips: bool,
    /// At most this many clips are written at once per camera; a `person_detected` event beyond it
    /// gets a snapshot but no clip.
    pub max_concurrent_clips: usize,
    /// A track must be seen this long before `person_detected` starts (debounce).
    pub person_min_secs: f64,
    /// Events (and their files) older than this are deleted; 0 keeps them forever.
    pub retention_days: f64,
    /// The clips' and snapshots' total size is kept under this, oldest deleted first; 0: no limit.
    pub retention_max_bytes: u64,
    pub fall: FallConfig,
    pub tracker: TrackerConfig,
    /// `object_detected`: how objects are followed from look to look.
    pub objects: ObjectEventSettings,
}

/// `[events.objects]`: one `object_detected` event per object presence, an object being followed
/// across looks by its own tracker (same class, overlapping or near boxes).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectEventSettings {
    /// An object must be seen this long (and in two looks) before its event starts: a box the model
    /// gives once is not an event.
    pub min_secs: f64,
    /// The event ends when the object has not been seen for this long. Longer than people's: a still
    /// scene is looked at only at `idle_detect_interval_secs`, and detect models miss objects now and then.
    pub max_unseen_secs: f64,
    /// Detections scoring below this are not followed.
    pub min_score: f32,
    /// A detection continues an object's track whose box it overlaps by at least this IoU...
    pub iou_threshold: f32,
    /// ...or whose centre lies within this fraction of the larger box's larger side.
    pub max_center_distance: f32,
    /// Record clips for `object_detected` (a snapshot is always kept).
    pub clips: bool,
}

impl Default for ObjectEventSettings {
    fn default() -> Self {
        Self { min_secs: 1.0, max_unseen_secs: 5.0, min_score: 0.4, iou_threshold: 0.3, max_center_distance: 0.5, clips: false }
    }
}

impl ObjectEventSettings {
    pub fn tracker(&self) -> TrackerConfig {
        TrackerConfig {
            iou_threshold: self.iou_threshold,
            max_center_distance: self.max_center_distance,
            max_unseen_secs: self.max_unseen_secs,
            min_score: self.min_score,
        }
    }
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            data_dir: PathBuf::from("data/events"),
            pre_roll_secs: 3.0,
            post_roll_secs: 3.0,
            max_clip_secs: 60.0,
            person_clips: false,
            max_concurrent_clips: 4,
            person_min_secs: 0.5,
            retention_days: 7.0,
            retention_max_bytes: 2 << 30,
            fall: FallConfig::default(),
            tracker: TrackerConfig::default(),
            objects: ObjectEventSettings::default(),
        }
    }
}

impl EventSettings {
    /// How long the recorder keeps frames and waits for ends, from how late events start and end.
    pub(super) fn recorder_config(&self) -> RecorderConfig {
        RecorderConfig {
            pre_roll_secs: self.pre_roll_secs,
            post_roll_secs: self.post_roll_secs,
            // A fall is known min_duration after it started, a person person_min_secs after first seen.
            // A track ends max_unseen_secs after it was last seen, a fall 1 s after the person got up.
            // (Object events end `objects.max_unseen_secs` after last seen: their clips, when on,
            // may run that much past the end; people's clips are not delayed for them.)
            end_delay_secs: self.tracker.max_unseen_secs.max(1.0) + 0.5,
            ring_secs: self.pre_roll_secs
                + (self.fall.min_duration_secs as f64).max(self.person_min_secs).max(self.objects.min_secs)
                + self.tracker.max_unseen_secs.max(1.0)
                + 3.0,
            max_clip_secs: self.max_clip_secs,
            ..RecorderConfig::default()
        }
    }
}

impl EventSettings {
    /// Every rule about `[events]` and its sub-sections; the error names the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let section = |e: ConfigError| e.within("events");
        let secs = [
            ("pre_roll_secs", self.pre_roll_secs, 0.0, 60.0),
            ("post_roll_secs", self.post_roll_secs, 0.0, 60.0),
            ("max_clip_secs", self.max_clip_secs, 1.0, 3600.0),
            ("person_min_secs", self.person_min_secs, 0.0, 60.0),
            ("retention_days", self.retention_days, 0.0, 36500.0),
        ];
        for (name, v, lo, hi) in secs {
            check_within(name, v, lo..=hi).map_err(section)?;
        }
        if self.max_concurrent_clips == 0 {
            return Err(section(ConfigError::new("max_concurrent_clips", "must be at least 1")));
        }
        crate::text::check("events.data_dir", &self.data_dir.to_string_lossy(), crate::text::PATH)?;
        self.fall.validate().map_err(|e| section(e.within("fall")))?;
        self.tracker.validate().map_err(|e| section(e.within("tracker")))?;
        check_within("min_secs", self.objects.min_secs, 0.0..=60.0).map_err(|e| section(e.within("objects")))?;
        self.objects.tracker().validate().map_err(|e| section(e.within("objects")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_with_defaults_and_reject_unknown_fields() {
        let s: EventSettings = toml::from_str("data_dir = \"x\"\n[fall]\nsensitivity = 0.7\n").unwrap();
        assert_eq!(s.data_dir, PathBuf::from("x"));
        assert_eq!(s.fall.sensitivity, 0.7);
        assert_eq!(s.fall.min_duration_secs, FallConfig::default().min_duration_secs);
        assert!(toml::from_str::<EventSettings>("bogus = 1\n").is_err());
        assert!(toml::from_str::<EventSettings>("[fall]\nbogus = 1\n").is_err());
    }
}
