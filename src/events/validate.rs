//! The rules of `[events]`, `[events.fall]`, `[events.tracker]` and `[events.objects]` (and a
//! camera's own `fall`), beside the types they check.

use super::{EventSettings, FallConfig, TrackerConfig};
use crate::config::{check_within, ConfigError};

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

impl FallConfig {
    /// `[events.fall]`, or a camera's own `fall`: the error names the field, its caller the section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_within("sensitivity", self.sensitivity, 0.0..=1.0)?;
        check_within("min_duration_secs", self.min_duration_secs, 0.0..=60.0)
    }
}

impl TrackerConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ranges = [
            ("iou_threshold", self.iou_threshold as f64, 0.0, 1.0),
            ("max_center_distance", self.max_center_distance as f64, 0.0, 10.0),
            ("max_unseen_secs", self.max_unseen_secs, 0.0, 60.0),
            ("min_score", self.min_score as f64, 0.0, 1.0),
        ];
        ranges.into_iter().try_for_each(|(name, v, lo, hi)| check_within(name, v, lo..=hi))
    }
}
