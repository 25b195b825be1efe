//! Renditions: the sizes, qualities and overlays a camera's viewers may ask for. A request snaps to
//! a small fixed ladder, so a camera encodes at most a bounded number of JPEGs per frame, each
//! once however many viewers share it, and only while someone wants it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// Widths a smaller rendition snaps up to; anything wider is the full frame.
pub const WIDTHS: [u32; 2] = [320, 640];
/// JPEG qualities a request snaps to (the nearest); none asked means the camera's `jpeg_quality`.
pub const QUALITIES: [u8; 3] = [40, 60, 80];
/// Accepted `width` values: anything else is a mistake, not a size to snap.
pub const WIDTH_RANGE: std::ops::RangeInclusive<u32> = 16..=7680;

/// Who draws the poses: the server into the JPEG, or the viewer from the metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlay {
    #[default]
    Server,
    Client,
}

/// How frames travel on a viewer's socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `{"type":"frame","data":"<base64 JPEG>","metadata":{…}}`: the seed's clients' format.
    #[default]
    Text,
    /// One binary message: a 4-byte big-endian header length, the header JSON
    /// `{"type":"frame","metadata":{…}}`, then the JPEG bytes.
    Binary,
    /// The JPEG alone: MJPEG and snapshots.
    Jpeg,
}

/// One rung of the ladder. The default is today's frame: full size, the camera's quality, poses drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Rendition {
    /// `None`: the full frame (after the camera's `resize_width`).
    pub width: Option<u32>,
    /// `None`: the camera's `jpeg_quality`.
    pub quality: Option<u8>,
    pub overlay: Overlay,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RenditionError {
    #[error("width must be a whole number of pixels in 16-7680, got {0:?}")]
    Width(String),
    #[error("quality must be a whole number in 1-100, got {0:?}")]
    Quality(String),
    #[error("overlay must be \"server\" or \"client\", got {0:?}")]
    Overlay(String),
    #[error("format must be \"text\" or \"binary\", got {0:?}")]
    Format(String),
    #[error("format applies to /ws/stream only")]
    FormatNotHere,
}

impl Rendition {
    /// The rendition asked for by `width`, `quality` and `overlay` query parameters, snapped to the ladder.
    pub fn from_query(query: &HashMap<String, String>) -> Result<Self, RenditionError> {
        let width = match query.get("width") {
            None => None,
            Some(v) => {
                let w: u32 = v.parse().ok().filter(|w| WIDTH_RANGE.contains(w)).ok_or_else(|| RenditionError::Width(v.clone()))?;
                WIDTHS.into_iter().find(|&step| w <= step)
            }
        };
        let quality = match query.get("quality") {
            None => None,
            Some(v) => {
                let q: u8 = v.parse().ok().filter(|q| (1..=100).contains(q)).ok_or_else(|| RenditionError::Quality(v.clone()))?;
                QUALITIES.into_iter().min_by_key(|&step| (step as i32 - q as i32).abs())
            }
        };
        let overlay = match query.get("overlay").map(String::as_str) {
            None | Some("server") => Overlay::Server,
            Some("client") => Overlay::Client,
            Some(other) => return Err(RenditionError::Overlay(other.to_string())),
        };
        Ok(Self { width, quality, overlay })
    }

    /// The frame size this rendition has for a `frame_w` x `frame_h` frame: never larger than it.
    pub fn size(&self, frame_w: i32, frame_h: i32) -> (i32, i32) {
        match self.width {
            Some(w) if (w as i32) < frame_w => {
                let h = (frame_h as f64 * w as f64 / frame_w as f64).round().max(1.0) as i32;
                (w as i32, h)
            }
            _ => (frame_w, frame_h),
        }
    }

    pub fn quality_or(&self, camera_quality: u8) -> u8 {
        self.quality.unwrap_or(camera_quality)
    }
}

impl Format {
    /// `format`: for WebSocket viewers only.
    pub fn from_query(query: &HashMap<String, String>) -> Result<Self, RenditionError> {
        match query.get("format").map(String::as_str) {
            None | Some("text") => Ok(Format::Text),
            Some("binary") => Ok(Format::Binary),
            Some(other) => Err(RenditionError::Format(other.to_string())),
        }
    }
}

/// A rendition and format that viewers want, with how many, as status and `/metrics` show them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenditionView {
    /// `null`: full size.
    pub width: Option<u32>,
    /// `null`: the camera's `jpeg_quality`.
    pub quality: Option<u8>,
    pub overlay: Overlay,
    pub format: Format,
    pub viewers: usize,
}

/// What a camera's viewers want now: a count per rendition and format. Viewers hold a `Wanted`
/// while they watch; the camera reads the set at every frame.
#[derive(Clone, Default)]
pub struct Demand {
    wanted: Arc<Mutex<HashMap<(Rendition, Format), usize>>>,
}

impl Demand {
    /// Registers one viewer of `rendition` in `format` until the returned guard is dropped.
    pub fn want(&self, rendition: Rendition, format: Format) -> Wanted {
        *self.wanted.lock().unwrap().entry((rendition, format)).or_default() += 1;
        Wanted { demand: self.clone(), key: (rendition, format) }
    }

    /// Renditions at least one viewer wants, each with the formats wanted of it.
    pub fn current(&self) -> Vec<(Rendition, Formats)> {
        let wanted = self.wanted.lock().unwrap();
        let mut out: Vec<(Rendition, Formats)> = Vec::new();
        for &(rendition, format) in wanted.keys() {
            let i = match out.iter().position(|(r, _)| *r == rendition) {
                Some(i) => i,
                None => {
                    out.push((rendition, Formats::default()));
                    out.len() - 1
                }
            };
            match format {
                Format::Text => out[i].1.text = true,
                Format::Binary => out[i].1.binary = true,
                Format::Jpeg => {}
            }
        }
        out
    }

    pub fn view(&self) -> Vec<RenditionView> {
        let wanted = self.wanted.lock().unwrap();
        let mut views: Vec<RenditionView> = wanted
            .iter()
            .map(|(&(r, format), &viewers)| RenditionView { width: r.width, quality: r.quality, overlay: r.overlay, format, viewers })
            .collect();
        views.sort_by_key(|v| (v.width.unwrap_or(u32::MAX), v.quality, v.overlay == Overlay::Client, v.format as u8));
        views
    }
}

/// The formats a rendition is wanted in.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Formats {
    pub text: bool,
    pub binary: bool,
}

/// One viewer's interest in a rendition; dropping it (the viewer left) gives it up.
pub struct Wanted {
    demand: Demand,
    key: (Rendition, Format),
}

impl Drop for Wanted {
    fn drop(&mut self) {
        let mut wanted = self.demand.wanted.lock().unwrap();
        if let Some(n) = wanted.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                wanted.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn requests_snap_to_the_ladder() {
        let r = |pairs| Rendition::from_query(&q(pairs)).unwrap();
        assert_eq!(r(&[]), Rendition::default());
        assert_eq!(r(&[("width", "16")]).width, Some(320));
        assert_eq!(r(&[("width", "320")]).width, Some(320));
        assert_eq!(r(&[("width", "321")]).width, Some(640));
        assert_eq!(r(&[("width", "641")]).width, None, "wider than the ladder: full size");
        assert_eq!(r(&[("width", "7680")]).width, None);
        assert_eq!(r(&[("quality", "1")]).quality, Some(40));
        assert_eq!(r(&[("quality", "55")]).quality, Some(60));
        assert_eq!(r(&[("quality", "100")]).quality, Some(80));
        assert_eq!(r(&[("overlay", "client")]).overlay, Overlay::Client);
        let distinct: std::collections::HashSet<_> = (16..=7680)
            .step_by(7)
            .flat_map(|w| (1..=100).map(move |q| (w, q)))
            .map(|(w, qu)| Rendition::from_query(&q(&[("width", &w.to_string()), ("quality", &qu.to_string())])).unwrap())
            .collect();
        assert_eq!(distinct.len(), 3 * 3, "any width and quality is one of 3 x 3 renditions (x2 overlays)");
    }

    #[test]
    fn bad_values_are_refused_with_what_was_wrong() {
        for (k, v) in [("width", "0"), ("width", "99999"), ("width", "-5"), ("width", "32.5"), ("quality", "0"), ("quality", "101"), ("overlay", "none")] {
            let e = Rendition::from_query(&q(&[(k, v)])).unwrap_err();
            assert!(e.to_string().contains(k) && e.to_string().contains(v), "{k}={v}: {e}");
        }
        assert_eq!(Format::from_query(&q(&[("format", "png")])).unwrap_err(), RenditionError::Format("png".into()));
        assert_eq!(Format::from_query(&q(&[("format", "binary")])).unwrap(), Format::Binary);
    }

    #[test]
    fn a_smaller_rendition_keeps_the_aspect_and_never_enlarges() {
        let small = Rendition { width: Some(320), ..Rendition::default() };
        assert_eq!(small.size(768, 576), (320, 240));
        assert_eq!(small.size(300, 200), (300, 200));
        assert_eq!(Rendition::default().size(768, 576), (768, 576));
    }

    #[test]
    fn demand_lasts_while_viewers_hold_it() {
        let demand = Demand::default();
        let small = Rendition { width: Some(320), ..Rendition::default() };
        let a = demand.want(small, Format::Binary);
        let b = demand.want(small, Format::Binary);
        let c = demand.want(Rendition::default(), Format::Text);
        assert_eq!(demand.view().iter().map(|v| (v.width, v.viewers)).collect::<Vec<_>>(), vec![(Some(320), 2), (None, 1)]);
        let current = demand.current();
        assert_eq!(current.len(), 2);
        drop((a, c));
        assert_eq!(demand.current(), vec![(small, Formats { text: false, binary: true })]);
        drop(b);
        assert!(demand.current().is_empty() && demand.view().is_empty(), "the last viewer leaving stops the rendition");
    }
}
