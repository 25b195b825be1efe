//! Stage (d) of the frame step: the frame's JPEGs, with the models' newest detections drawn in
//! (`inference::draw`) where they are wanted. The full frame first (the events' clips and snapshots
//! need it before anything is published), then the renditions the viewers want.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use opencv::core::Mat;
use opencv::prelude::*;

use super::encoder::{FrameEncoder, JpegSpec};
use super::error::FrameError;
use super::looks::Looks;
use super::packet::{EncodedRendition, RenditionMeta};
use super::rendition::{Formats, Overlay, Rendition};
use super::status::CameraStatus;

/// The full frame's JPEG, and what the viewers want besides.
pub struct FullFrame {
    /// Encoded for the events or for viewers of the full frame; none when nobody needs it.
    pub jpeg: Option<Bytes>,
    wanted: Vec<(Rendition, Formats)>,
    quality: u8,
    started: Instant,
}

/// Every JPEG of the frame, ready to publish.
pub struct Rendered {
    pub full: Option<Bytes>,
    pub renditions: Vec<EncodedRendition>,
    pub encode_ms: f64,
}

/// What a rendition is for this frame: its size, its quality, whether the server draws the poses.
pub fn spec_of(rendition: &Rendition, width: i32, height: i32, camera_quality: u8) -> JpegSpec {
    let (w, h) = rendition.size(width, height);
    JpegSpec { width: w, height: h, quality: rendition.quality_or(camera_quality), drawn: rendition.overlay == Overlay::Server }
}

/// Who needs which of the frame's JPEGs.
pub struct Wants {
    /// The renditions the viewers want (none: nobody watches).
    pub renditions: Vec<(Rendition, Formats)>,
    /// The full annotated frame for the events' clips and snapshots.
    pub for_events: bool,
    /// The camera's JPEG quality, where a rendition sets none of its own.
    pub quality: u8,
}

/// A camera's JPEG encoder, with its cache of the still scene's JPEGs.
#[derive(Default)]
pub struct Renderer {
    encoder: FrameEncoder,
}

impl Renderer {
    /// Starts the frame's JPEGs, and encodes the full frame when the events or a viewer want it.
    pub fn full_frame(&mut self, status: &CameraStatus, now: Duration, frame: &Mat, moving: bool, looks: &Looks, wants: Wants) -> Result<FullFrame, FrameError> {
        let started = Instant::now();
        let (width, height) = (frame.cols(), frame.rows());
        status.set_frame_size(width, height);
        // What is drawn changes with each answer: the JPEG cache keys on it.
        let drawn_at = (!looks.shown().is_empty()).then_some(looks.shown_generation() as f64);
        self.encoder.begin(now, moving, drawn_at, (width, height));
        let full_spec = JpegSpec { width, height, quality: wants.quality, drawn: true };
        let full_wanted = wants.renditions.iter().any(|(r, _)| spec_of(r, width, height, wants.quality) == full_spec);
        let jpeg = match wants.for_events || full_wanted {
            true => Some(jpeg(status, &mut self.encoder, frame, full_spec, looks.shown_flat())?),
            false => None,
        };
        Ok(FullFrame { jpeg, wanted: wants.renditions, quality: wants.quality, started })
    }

    /// The renditions the viewers want, beside the full frame.
    pub fn renditions(&mut self, status: &CameraStatus, frame: &Mat, looks: &Looks, full: FullFrame) -> Result<Rendered, FrameError> {
        let (width, height) = (frame.cols(), frame.rows());
        let mut renditions = Vec::with_capacity(full.wanted.len());
        for (rendition, formats) in full.wanted {
            let spec = spec_of(&rendition, width, height, full.quality);
            let jpeg = jpeg(status, &mut self.encoder, frame, spec, looks.shown_flat())?;
            let meta = RenditionMeta { width: spec.width, height: spec.height, quality: spec.quality, overlay: rendition.overlay };
            renditions.push(EncodedRendition { rendition, formats, meta, jpeg });
        }
        let encode_ms = full.started.elapsed().as_secs_f64() * 1000.0;
        Ok(Rendered { full: full.jpeg, renditions, encode_ms })
    }
}

/// One of the frame's JPEGs, counted when it is encoded now: the full frame in `frames_encoded`, other
/// renditions in `renditions_encoded`.
fn jpeg(status: &CameraStatus, encoder: &mut FrameEncoder, frame: &Mat, spec: JpegSpec, detections: &[crate::inference::Detection]) -> Result<Bytes, FrameError> {
    let (jpeg, encoded) = encoder.jpeg(frame, spec, detections)?;
    if encoded {
        let full = (spec.width, spec.height) == (frame.cols(), frame.rows()) && spec.drawn;
        let counter = if full { &status.frames_encoded } else { &status.renditions_encoded };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    Ok(jpeg)
}
