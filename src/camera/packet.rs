//! The immutable unit of fan-out: everything that is the same for every viewer, computed once.

use std::sync::Arc;

use base64::Engine as _;
use actix_web::web::Bytes;
use bytestring::ByteString;
use serde::Serialize;

use super::motion::Motion;
use super::rendition::{Format, Formats, Overlay, Rendition};
use crate::events::Event;
use crate::inference::Detection;

/// One processed frame, shared by `Arc` between the camera and all of its viewers.
#[derive(Debug)]
pub struct FramePacket {
    /// Increases by one per packet of this camera.
    pub seq: u64,
    /// The frame's index in its source (resets when a file loops).
    pub frame_index: u64,
    /// Capture time, seconds since the Unix epoch.
    pub timestamp: f64,
    /// When the packet was made, to tell a fresh snapshot from a stale one.
    pub created: std::time::Instant,
    pub width: i32,
    pub height: i32,
    /// The annotated frame as JPEG, full size (for snapshots and MJPEG without encoding again), when
    /// someone needed it: a grid of small renditions does not pay for the full frame.
    pub jpeg: Option<Bytes>,
    pub detections: Vec<Detection>,
    /// Every rendition a viewer wanted when the frame was made, each encoded and serialised once.
    pub renditions: Vec<RenditionFrame>,
}

/// One rendition of a frame: its JPEG and its WebSocket messages in the formats viewers asked for.
#[derive(Debug)]
pub struct RenditionFrame {
    pub rendition: Rendition,
    pub jpeg: Bytes,
    /// The message's `metadata` JSON, serialised once: another node rebuilds the messages from it.
    pub metadata: Arc<str>,
    /// `{"type":"frame","data":"<base64 JPEG>","metadata":…}`.
    pub text: Option<ByteString>,
    /// Header length (u32, big-endian), `{"type":"frame","metadata":…}`, JPEG.
    pub binary: Option<Bytes>,
}

/// A rendition as a frame's metadata describes it: the JPEG's own size and quality.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RenditionMeta {
    pub width: i32,
    pub height: i32,
    pub quality: u8,
    pub overlay: Overlay,
}

/// A rendition's JPEG as the camera encoded it, to be wrapped in the formats wanted.
pub struct EncodedRendition {
    pub rendition: Rendition,
    pub formats: Formats,
    pub meta: RenditionMeta,
    pub jpeg: Bytes,
}

/// One WebSocket message, ready to send (a reference count, not a copy).
pub enum Message {
    Text(ByteString),
    Binary(Bytes),
}

/// Per-frame facts that go into the message's `metadata`.
#[derive(Debug, Clone, Serialize)]
pub struct FrameMetadata<'a> {
    pub camera_id: &'a str,
    pub seq: u64,
    pub frame_index: u64,
    pub timestamp: f64,
    pub fps: f64,
    pub width: i32,
    pub height: i32,
    pub ai_enabled: bool,
    /// How long the model took for the poses shown.
    pub inference_ms: Option<f64>,
    /// The newest poses, drawn on this frame; the model may have seen them in an earlier frame (`poses`).
    /// Coordinates to a tenth of a pixel and scores to a hundredth: a person's keypoints at full
    /// precision were 640 B of every message, half of a small rendition's JPEG.
    #[serde(serialize_with = "rounded")]
    pub detections: &'a [Detection],
    /// Which frame the detections come from and how much older than this frame it is.
    pub poses: Option<PosesMeta>,
    /// What moved in this frame (boxes in its pixels); absent when the camera runs no model.
    pub motion: Option<&'a Motion>,
    /// The camera's events still in progress (a fall, a person in view).
    pub events: &'a [Event],
    /// The JPEG this metadata travels with (`width`/`height` above are the frame's, the space of
    /// the detections' and motion boxes' coordinates).
    pub rendition: Option<RenditionMeta>,
}

/// Where a frame's poses come from: the model looks at a camera at its detect rate, and every
/// frame in between shows the newest poses it has.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PosesMeta {
    /// The source frame the model looked at, and its capture time (seconds since the Unix epoch).
    pub frame_index: u64,
    pub timestamp: f64,
    /// This frame's capture time minus theirs.
    pub age_ms: f64,
    /// Regions of that frame the model looked at (0: the whole frame).
    pub regions: usize,
}

impl FramePacket {
    /// The packet of one frame: `jpeg` is the full annotated frame; `renditions` what viewers want.
    pub fn new(meta: FrameMetadata<'_>, jpeg: Option<Bytes>, renditions: Vec<EncodedRendition>) -> Arc<Self> {
        let renditions = renditions
            .into_iter()
            .map(|r| {
                let metadata = serde_json::to_string(&FrameMetadata { rendition: Some(r.meta), ..meta.clone() })
                    .expect("frame metadata serialises");
                RenditionFrame::new(r.rendition, r.formats, metadata.into(), r.jpeg)
            })
            .collect();
        Arc::new(Self {
            seq: meta.seq,
            frame_index: meta.frame_index,
            timestamp: meta.timestamp,
            created: std::time::Instant::now(),
            width: meta.width,
            height: meta.height,
            jpeg,
            detections: meta.detections.to_vec(),
            renditions,
        })
    }

    /// A packet made on another node (cluster relay): its renditions as they came, with the messages
    /// this node's viewers want built from each one's metadata; `jpeg` is the full frame's if it came.
    pub fn relayed(head: RelayedHead, renditions: Vec<RenditionFrame>) -> Arc<Self> {
        let jpeg = renditions.iter().find(|r| r.rendition == Rendition::default()).map(|r| r.jpeg.clone());
        Arc::new(Self {
            seq: head.seq,
            frame_index: head.frame_index,
            timestamp: head.timestamp,
            created: std::time::Instant::now(),
            width: head.width,
            height: head.height,
            jpeg,
            detections: Vec::new(),
            renditions,
        })
    }

    pub fn rendition(&self, rendition: &Rendition) -> Option<&RenditionFrame> {
        self.renditions.iter().find(|r| r.rendition == *rendition)
    }

    /// The JPEG of `rendition`, if it was made for this frame (the full frame's always is).
    pub fn jpeg_of(&self, rendition: &Rendition) -> Option<Bytes> {
        match self.rendition(rendition) {
            Some(r) => Some(r.jpeg.clone()),
            None if *rendition == Rendition::default() => self.jpeg.clone(),
            None => None,
        }
    }

    /// The message for a viewer of `rendition` in `format`; `None` if nobody wanted it when the
    /// frame was made (a viewer that just arrived: the next frame has it).
    pub fn message(&self, rendition: &Rendition, format: Format) -> Option<Message> {
        let r = self.rendition(rendition)?;
        match format {
            Format::Text => r.text.clone().map(Message::Text),
            Format::Binary => r.binary.clone().map(Message::Binary),
            Format::Jpeg => None,
        }
    }
}

fn rounded<S: serde::Serializer>(detections: &&[Detection], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Rounded<'a> {
        class: &'a str,
        score: f32,
        bbox: [f32; 4],
        // absent for object detections, as in `Detection`'s own JSON
        #[serde(skip_serializing_if = "Vec::is_empty")]
        keypoints: Vec<[f32; 3]>,
    }
    let tenth = |v: f32| (v * 10.0).round() / 10.0;
    let hundredth = |v: f32| (v * 100.0).round() / 100.0;
    s.collect_seq(detections.iter().map(|d| Rounded {
        class: &d.class,
        score: hundredth(d.score),
        bbox: d.bbox.map(tenth),
        keypoints: d.keypoints.iter().map(|&[x, y, c]| [tenth(x), tenth(y), hundredth(c)]).collect(),
    }))
}

/// The per-frame facts a relayed packet needs besides its renditions.
#[derive(Debug, Clone, Copy)]
pub struct RelayedHead {
    pub seq: u64,
    pub frame_index: u64,
    pub timestamp: f64,
    pub width: i32,
    pub height: i32,
}

impl RenditionFrame {
    /// A rendition's JPEG with its messages in the formats wanted, all from one metadata string.
    pub fn new(rendition: Rendition, formats: Formats, metadata: Arc<str>, jpeg: Bytes) -> Self {
        Self {
            rendition,
            text: formats.text.then(|| text_message(&metadata, &jpeg)),
            binary: formats.binary.then(|| binary_message(&metadata, &jpeg)),
            metadata,
            jpeg,
        }
    }
}

fn text_message(metadata: &str, jpeg: &[u8]) -> ByteString {
    let b64_len = jpeg.len().div_ceil(3) * 4;
    let mut text = String::with_capacity(b64_len + metadata.len() + 48);
    text.push_str(r#"{"type":"frame","data":""#);
    base64::engine::general_purpose::STANDARD.encode_string(jpeg, &mut text);
    text.push_str(r#"","metadata":"#);
    text.push_str(metadata);
    text.push('}');
    ByteString::from(text)
}

fn binary_message(metadata: &str, jpeg: &[u8]) -> Bytes {
    let header_len = r#"{"type":"frame","metadata":}"#.len() + metadata.len();
    let mut out = Vec::with_capacity(4 + header_len + jpeg.len());
    out.extend_from_slice(&(header_len as u32).to_be_bytes());
    out.extend_from_slice(br#"{"type":"frame","metadata":"#);
    out.extend_from_slice(metadata.as_bytes());
    out.push(b'}');
    out.extend_from_slice(jpeg);
    Bytes::from(out)
}

/// What a camera publishes to its viewers: only the newest value is ever kept.
#[derive(Debug, Clone)]
pub enum Feed {
    /// No frame yet (camera starting, or nobody watched until now).
    Waiting,
    Frame(Arc<FramePacket>),
    /// The camera is gone; viewers close their sockets with this reason.
    Closed(&'static str),
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A packet of camera `cam1`, seq 3, frame 7, with these renditions (also for the cluster's wire tests).
    pub(crate) fn packet(renditions: Vec<EncodedRendition>) -> Arc<FramePacket> {
        FramePacket::new(
            FrameMetadata {
                camera_id: "cam1",
                seq: 3,
                frame_index: 7,
                timestamp: 1.5,
                fps: 10.0,
                width: 4,
                height: 2,
                ai_enabled: false,
                inference_ms: None,
                detections: &[],
                poses: None,
                motion: None,
                events: &[],
                rendition: None,
            },
            Some(Bytes::from_static(&[0xff, 0xd8, 0xff, 0xd9])),
            renditions,
        )
    }

    fn full(formats: Formats) -> EncodedRendition {
        EncodedRendition {
            rendition: Rendition::default(),
            formats,
            meta: RenditionMeta { width: 4, height: 2, quality: 80, overlay: Overlay::Server },
            jpeg: Bytes::from_static(&[0xff, 0xd8, 0xff, 0xd9]),
        }
    }

    #[test]
    fn the_text_message_is_json_with_the_jpeg_in_base64_and_the_metadata() {
        let p = packet(vec![full(Formats { text: true, binary: false })]);
        let Some(Message::Text(text)) = p.message(&Rendition::default(), Format::Text) else { panic!("no text message") };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "frame");
        assert_eq!(v["data"], "/9j/2Q==");
        assert_eq!(v["metadata"]["camera_id"], "cam1");
        assert_eq!(v["metadata"]["frame_index"], 7);
        assert_eq!(v["metadata"]["detections"].as_array().unwrap().len(), 0);
        assert_eq!(v["metadata"]["rendition"]["quality"], 80);
        assert!(p.message(&Rendition::default(), Format::Binary).is_none(), "a format nobody wanted is not built");
    }

    #[test]
    fn detections_travel_to_a_tenth_of_a_pixel() {
        let person = Detection::person(0.876_543, [10.123_45, 20.987, 30.05, 40.0], vec![[1.234_567, 2.345_678, 0.912_345]; 17]);
        let meta = FrameMetadata {
            camera_id: "cam1",
            seq: 1,
            frame_index: 1,
            timestamp: 1.5,
            fps: 10.0,
            width: 4,
            height: 2,
            ai_enabled: true,
            inference_ms: None,
            detections: std::slice::from_ref(&person),
            poses: None,
            motion: None,
            events: &[],
            rendition: None,
        };
        let text = serde_json::to_string(&meta).unwrap();
        assert!(text.contains(r#""detections":[{"class":"person","score":0.88,"bbox":[10.1,21.0,30.1,40.0],"keypoints":[[1.2,2.3,0.91],"#), "{text}");
    }

    #[test]
    fn the_binary_message_is_header_length_header_then_the_jpeg() {
        let p = packet(vec![full(Formats { text: false, binary: true })]);
        let Some(Message::Binary(bin)) = p.message(&Rendition::default(), Format::Binary) else { panic!("no binary message") };
        let n = u32::from_be_bytes(bin[..4].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bin[4..4 + n]).unwrap();
        assert_eq!(header["type"], "frame");
        assert_eq!(header["metadata"]["seq"], 3);
        assert_eq!(header["metadata"]["rendition"]["overlay"], "server");
        assert_eq!(&bin[4 + n..], &[0xff, 0xd8, 0xff, 0xd9]);
        assert!(p.message(&Rendition { width: Some(320), ..Rendition::default() }, Format::Binary).is_none());
    }
}
