//! What every part's typed settings share: the error a setting gives when it is invalid, and the
//! range checks most of them need. A leaf: it imports nothing from the crate, so each part's
//! settings (`camera::config`, `events::config`, …) can live with its code and the loader
//! (`crate::settings`) can sit on top of them all.

use std::fmt;
use std::ops::RangeInclusive;

/// One invalid setting: which (`events.fall.sensitivity`, `camera "door": jpeg_quality`) and why
/// (`must lie in [0, 1], got 2`). Shown as `"{field} {reason}"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.field.is_empty(), self.reason.starts_with(':')) {
            (true, _) => f.write_str(&self.reason),
            (false, true) => write!(f, "{}{}", self.field, self.reason),
            (false, false) => write!(f, "{} {}", self.field, self.reason),
        }
    }
}

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }

    /// The same error seen from the section holding it: `weights` within `models.pose` is
    /// `models.pose.weights`.
    pub fn within(self, section: &str) -> Self {
        let field = match self.field.is_empty() {
            true => section.to_string(),
            false => format!("{section}.{}", self.field),
        };
        Self { field, ..self }
    }

    /// The same error on one camera's own setting: `camera "door": jpeg_quality`.
    pub fn on_camera(self, camera_id: &str) -> Self {
        Self { field: format!("camera \"{camera_id}\": {}", self.field), ..self }
    }

    /// A message that names its field first (`device "cuda:9" is not …`), as other parts' errors do.
    pub fn from_message(message: String) -> Self {
        match message.split_once(' ') {
            Some((field, reason)) => Self::new(field, reason),
            None => Self::new("", message),
        }
    }
}

impl From<crate::text::TextError> for ConfigError {
    fn from(e: crate::text::TextError) -> Self {
        Self::from_message(e.to_string())
    }
}

/// `field` must lie in `range` (`must lie in [lo, hi], got v`, v shown as its own type shows it).
pub fn check_within<V: Into<f64> + Copy + fmt::Display>(field: &str, v: V, range: RangeInclusive<f64>) -> Result<(), ConfigError> {
    match range.contains(&v.into()) {
        true => Ok(()),
        false => Err(ConfigError::new(field, format!("must lie in [{}, {}], got {v}", range.start(), range.end()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_names_its_setting_from_the_top() {
        let e = ConfigError::new("sensitivity", "must lie in [0, 1], got 2").within("fall").within("events");
        assert_eq!(e.to_string(), "events.fall.sensitivity must lie in [0, 1], got 2");
        let e = ConfigError::new("jpeg_quality", "0 is out of range 1-100").on_camera("door");
        assert_eq!(e.to_string(), "camera \"door\": jpeg_quality 0 is out of range 1-100");
        assert!(check_within("x", f64::NAN, 0.0..=1.0).is_err());
        assert!(check_within("x", 1.0, 0.0..=1.0).is_ok());
    }

    #[test]
    fn a_live_section_is_seen_new_by_every_holder_and_says_it_changed() {
        let live = Live::new(5.0);
        let camera = live.clone();
        let seen = camera.version();
        live.set(2.0);
        assert_eq!(*camera.get(), 2.0);
        assert_ne!(camera.version(), seen);
    }
}

/// A section that a reload may replace while the server runs (`[detection]`, `[events]`,
/// `[stream]`, `[alerts]`): readers take the newest value when they next look, and can tell
/// cheaply whether it changed since (a camera rebuilds what it derives from it only then).
#[derive(Debug)]
pub struct Live<T> {
    inner: std::sync::Arc<LiveInner<T>>,
}

#[derive(Debug)]
struct LiveInner<T> {
    value: std::sync::RwLock<std::sync::Arc<T>>,
    version: std::sync::atomic::AtomicU64,
}

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<T> Live<T> {
    pub fn new(value: T) -> Self {
        let inner = LiveInner { value: std::sync::RwLock::new(std::sync::Arc::new(value)), version: Default::default() };
        Self { inner: std::sync::Arc::new(inner) }
    }

    /// The newest value.
    pub fn get(&self) -> std::sync::Arc<T> {
        self.inner.value.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Counts the values set since `new`: a reader compares it with the one it last saw.
    pub fn version(&self) -> u64 {
        self.inner.version.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Replaces the value for every reader.
    pub fn set(&self, value: T) {
        *self.inner.value.write().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(value);
        self.inner.version.fetch_add(1, std::sync::atomic::Ordering::Release);
    }
}

impl<T: Default> Default for Live<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}
