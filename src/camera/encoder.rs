//! A frame's JPEGs: each size, quality and overlay encoded at most once per frame, only when someone
//! needs it, and reused while the scene is still.

use std::time::Duration;

use actix_web::web::Bytes;
use opencv::core::{Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;

use super::error::FrameError;
use crate::inference::{draw, Detection};

/// A still frame's JPEGs are reused for at most this long, so that a slow change the motion gate
/// ignores (daylight) still reaches viewers.
pub const MAX_JPEG_REUSE: Duration = Duration::from_secs(1);

/// One JPEG of a frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JpegSpec {
    pub width: i32,
    pub height: i32,
    pub quality: u8,
    /// Whether the poses are drawn into it.
    pub drawn: bool,
}

/// What the JPEGs in the cache show.
struct Look {
    poses_at: Option<f64>,
    size: (i32, i32),
    since: Duration,
}

#[derive(Default)]
pub struct FrameEncoder {
    look: Option<Look>,
    cache: Vec<(JpegSpec, Bytes)>,
}

impl FrameEncoder {
    /// Starts a frame. A frame in which nothing moved, showing the same poses at the same size as the
    /// last one, keeps the JPEGs already made (for up to `MAX_JPEG_REUSE`): a still camera costs a
    /// decode and the motion check, not an encode. A disabled motion detector calls every frame moving.
    pub fn begin(&mut self, now: Duration, moving: bool, poses_at: Option<f64>, size: (i32, i32)) {
        let still = self
            .look
            .as_ref()
            .is_some_and(|l| !moving && l.poses_at == poses_at && l.size == size && now.saturating_sub(l.since) < MAX_JPEG_REUSE);
        if !still {
            self.cache.clear();
            self.look = Some(Look { poses_at, size, since: now });
        }
    }

    /// The frame as `spec` says, with `detections` (in the frame's pixels) drawn if it says so; the
    /// flag tells whether it was encoded now (`false`: made earlier for this frame or a still one).
    pub fn jpeg(&mut self, frame: &Mat, spec: JpegSpec, detections: &[Detection]) -> Result<(Bytes, bool), FrameError> {
        let spec = JpegSpec { drawn: spec.drawn && !detections.is_empty(), ..spec };
        if let Some((_, jpeg)) = self.cache.iter().find(|(s, _)| *s == spec) {
            return Ok((jpeg.clone(), false));
        }
        let (cols, rows) = (frame.cols(), frame.rows());
        let full = (spec.width, spec.height) == (cols, rows);
        if full && !spec.drawn {
            let jpeg = Bytes::from(crate::jpeg::encode(frame, spec.quality)?);
            self.cache.push((spec, jpeg.clone()));
            return Ok((jpeg, true));
        }
        // drawn on a copy from the shared frame buffers (not a fresh one mapped per frame)
        let mut image = crate::frame_pool::take(spec.width, spec.height, frame.typ());
        let encoded = draw_and_encode(frame, spec, detections, &mut image);
        crate::frame_pool::give_back(image);
        let jpeg = encoded?;
        self.cache.push((spec, jpeg.clone()));
        Ok((jpeg, true))
    }
}

/// `frame` copied or scaled into `image`, drawn on if `spec` says so, encoded.
fn draw_and_encode(frame: &Mat, spec: JpegSpec, detections: &[Detection], image: &mut Mat) -> Result<Bytes, FrameError> {
    let cols = frame.cols();
    if (spec.width, spec.height) == (cols, frame.rows()) {
        frame.copy_to(image)?;
    } else {
        imgproc::resize(frame, image, Size::new(spec.width, spec.height), 0.0, 0.0, imgproc::INTER_AREA)?;
    }
    if spec.drawn {
        // Drawn at the JPEG's own size, so that lines stay at least a pixel wide when it is small.
        let factor = spec.width as f32 / cols as f32;
        if factor == 1.0 {
            draw::annotate(image, detections)?;
        } else {
            draw::annotate(image, &draw::scaled(detections, factor))?;
        }
    }
    Ok(Bytes::from(crate::jpeg::encode(image, spec.quality)?))
}

#[cfg(test)]
mod tests {
    use opencv::core::{Scalar, CV_8UC3};

    use super::*;

    fn frame() -> Mat {
        Mat::new_rows_cols_with_default(120, 160, CV_8UC3, Scalar::all(90.0)).unwrap()
    }

    fn person() -> Detection {
        Detection::person(0.9, [40.0, 20.0, 100.0, 110.0], vec![[70.0, 30.0, 0.9]; 17])
    }

    fn full(drawn: bool) -> JpegSpec {
        JpegSpec { width: 160, height: 120, quality: 80, drawn }
    }

    #[test]
    fn each_jpeg_is_encoded_once_per_frame_and_reused_while_the_scene_is_still() {
        let mut enc = FrameEncoder::default();
        let (f, people) = (frame(), [person()]);
        let small = JpegSpec { width: 80, height: 60, quality: 60, drawn: true };
        enc.begin(Duration::ZERO, true, Some(1.0), (160, 120));
        assert!(enc.jpeg(&f, full(true), &people).unwrap().1);
        assert!(!enc.jpeg(&f, full(true), &people).unwrap().1, "the same JPEG twice in one frame is encoded once");
        assert!(enc.jpeg(&f, small, &people).unwrap().1);
        assert!(enc.jpeg(&f, full(false), &people).unwrap().1, "without drawings it is another JPEG");
        // Nothing moved, same poses: reused; until the reuse expires, something moves or the poses change.
        enc.begin(Duration::from_millis(500), false, Some(1.0), (160, 120));
        assert!(!enc.jpeg(&f, small, &people).unwrap().1);
        enc.begin(Duration::from_millis(1600), false, Some(1.0), (160, 120));
        assert!(enc.jpeg(&f, small, &people).unwrap().1, "older than MAX_JPEG_REUSE");
        enc.begin(Duration::from_millis(1700), true, Some(1.0), (160, 120));
        assert!(enc.jpeg(&f, small, &people).unwrap().1, "something moved");
        enc.begin(Duration::from_millis(1800), false, Some(2.0), (160, 120));
        assert!(enc.jpeg(&f, small, &people).unwrap().1, "newer poses");
    }

    #[test]
    fn with_nobody_in_view_drawn_and_plain_are_one_jpeg() {
        let mut enc = FrameEncoder::default();
        enc.begin(Duration::ZERO, true, None, (160, 120));
        let (a, _) = enc.jpeg(&frame(), full(true), &[]).unwrap();
        let (b, encoded) = enc.jpeg(&frame(), full(false), &[]).unwrap();
        assert!(!encoded && a == b);
    }

    #[test]
    fn a_small_rendition_has_its_size_and_its_own_drawing() {
        let mut enc = FrameEncoder::default();
        enc.begin(Duration::ZERO, true, Some(1.0), (160, 120));
        let spec = JpegSpec { width: 80, height: 60, quality: 80, drawn: true };
        let (drawn, _) = enc.jpeg(&frame(), spec, &[person()]).unwrap();
        let (plain, _) = enc.jpeg(&frame(), JpegSpec { drawn: false, ..spec }, &[person()]).unwrap();
        let decode = |b: &Bytes| opencv::imgcodecs::imdecode(&opencv::core::Vector::<u8>::from_slice(b), opencv::imgcodecs::IMREAD_COLOR).unwrap();
        let (d, p) = (decode(&drawn), decode(&plain));
        assert_eq!((d.cols(), d.rows()), (80, 60));
        let mut diff = Mat::default();
        opencv::core::absdiff(&d, &p, &mut diff).unwrap();
        let changed = opencv::core::sum_elems(&diff).unwrap()[1];
        assert!(changed > 1000.0, "the skeleton is drawn on the small JPEG ({changed})");
    }
}
