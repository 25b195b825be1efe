//! The camera settings that change live, on the next frame, without restarting the camera.

use crate::camera::config::{CameraConfig, Zone};

/// Settings that take effect on the next frame, without restarting the camera.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraPatch {
    #[serde(default, deserialize_with = "present::deserialize")]
    pub ai_enabled: Option<bool>,
    #[serde(default, deserialize_with = "present::deserialize")]
    pub jpeg_quality: Option<u8>,
    /// `null` removes the limit.
    #[serde(default, with = "double_option")]
    pub resize_width: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present::deserialize")]
    pub loop_video: Option<bool>,
    /// `null` removes the cap.
    #[serde(default, with = "double_option")]
    pub max_fps: Option<Option<f64>>,
    /// `null` returns to `[detection]`'s rate.
    #[serde(default, with = "double_option")]
    pub detect_fps: Option<Option<f64>>,
    /// The models that look at the camera's frames (`["pose", "objects"]`); `null` returns to the
    /// default (`["pose"]`). A model switched off stops at once; one switched on looks at the next frame.
    #[serde(default, with = "double_option")]
    pub models: Option<Option<Vec<String>>>,
    /// Classes that raise `object_detected` events; `null` or `[]`: none.
    #[serde(default, with = "double_option")]
    pub object_events: Option<Option<Vec<String>>>,
    /// The camera's zones, all of them (`[]` or `null`: none).
    #[serde(default, with = "double_option")]
    pub zones: Option<Option<Vec<Zone>>>,
}

mod present {
    use serde::{Deserialize, Deserializer};

    /// A field that may be left out but not set to `null` (it has no "unset" meaning).
    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
        T::deserialize(d).map(Some)
    }
}

mod double_option {
    use serde::{Deserialize, Deserializer};

    /// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

impl CameraPatch {
    /// The patch that turns `old` into `new`, if they differ only in settings that change live
    /// (a cluster node applies an inventory change this way instead of restarting the camera).
    pub fn between(old: &CameraConfig, new: &CameraConfig) -> Option<Self> {
        let patch = Self {
            ai_enabled: Some(new.ai_enabled),
            jpeg_quality: Some(new.jpeg_quality),
            resize_width: Some(new.resize_width),
            loop_video: Some(new.loop_video),
            max_fps: Some(new.max_fps),
            detect_fps: Some(new.detect_fps),
            models: Some(new.models.clone()),
            object_events: Some(new.object_events.clone()),
            zones: Some(Some(new.zones.clone())),
        };
        let mut patched = old.clone();
        patch.apply(&mut patched);
        (patched == *new).then_some(patch)
    }

    pub fn apply(&self, config: &mut CameraConfig) {
        if let Some(v) = self.ai_enabled {
            config.ai_enabled = v;
        }
        if let Some(v) = self.jpeg_quality {
            config.jpeg_quality = v;
        }
        if let Some(v) = self.resize_width {
            config.resize_width = v;
        }
        if let Some(v) = self.loop_video {
            config.loop_video = v;
        }
        if let Some(v) = self.max_fps {
            config.max_fps = v;
        }
        if let Some(v) = self.detect_fps {
            config.detect_fps = v;
        }
        if let Some(v) = &self.models {
            config.models = v.clone();
        }
        if let Some(v) = &self.object_events {
            config.object_events = v.clone().filter(|l| !l.is_empty());
        }
        if let Some(v) = &self.zones {
            config.zones = v.clone().unwrap_or_default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::config::SourceType;

    #[test]
    fn between_is_the_patch_a_live_change_needs_and_none_for_another_change() {
        let old = CameraConfig::new("a", "a.mp4", SourceType::VideoFile);
        let mut new = old.clone();
        new.jpeg_quality = 55;
        new.max_fps = Some(5.0);
        let patch = CameraPatch::between(&old, &new).expect("a live change");
        let mut patched = old.clone();
        patch.apply(&mut patched);
        assert_eq!(patched, new);
        new.source = "b.mp4".into();
        assert!(CameraPatch::between(&old, &new).is_none(), "a new source needs a restart");
    }
}
