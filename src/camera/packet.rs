//! The immutable unit of fan-out: everything that is the same for every viewer, computed once.

use std::sync::Arc;

use base64::Engine as _;
use actix_web::web::Bytes;
use bytestring::ByteString;
use serde::Serialize;

use super::motion::Motion;
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
    /// The annotated frame as JPEG (for snapshots and MJPEG without encoding again).
    pub jpeg: Bytes,
    pub detections: Vec<Detection>,
    /// The WebSocket message `{"type":"frame","data":…,"metadata":…}`, serialised once.
    pub text: ByteString,
}

/// Per-frame facts that go into the message's `metadata`.
#[derive(Debug, Serialize)]
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
    pub detections: &'a [Detection],
    /// Which frame the detections come from and how much older than this frame it is.
    pub poses: Option<PosesMeta>,
    /// What moved in this frame (boxes in its pixels); absent when the camera runs no model.
    pub motion: Option<&'a Motion>,
    /// The camera's events still in progress (a fall, a person in view).
    pub events: &'a [Event],
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
    pub fn new(meta: FrameMetadata<'_>, jpeg: Bytes) -> Arc<Self> {
        let metadata = serde_json::to_string(&meta).expect("frame metadata serialises");
        let b64_len = jpeg.len().div_ceil(3) * 4;
        let mut text = String::with_capacity(b64_len + metadata.len() + 48);
        text.push_str(r#"{"type":"frame","data":""#);
        base64::engine::general_purpose::STANDARD.encode_string(&jpeg, &mut text);
        text.push_str(r#"","metadata":"#);
        text.push_str(&metadata);
        text.push('}');
        Arc::new(Self {
            seq: meta.seq,
            frame_index: meta.frame_index,
            timestamp: meta.timestamp,
            created: std::time::Instant::now(),
            width: meta.width,
            height: meta.height,
            jpeg,
            detections: meta.detections.to_vec(),
            text: ByteString::from(text),
        })
    }
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
mod tests {
    use super::*;

    #[test]
    fn message_is_valid_json_with_metadata() {
        let p = FramePacket::new(
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
            },
            Bytes::from_static(&[0xff, 0xd8, 0xff, 0xd9]),
        );
        let v: serde_json::Value = serde_json::from_str(&p.text).unwrap();
        assert_eq!(v["type"], "frame");
        assert_eq!(v["data"], "/9j/2Q==");
        assert_eq!(v["metadata"]["camera_id"], "cam1");
        assert_eq!(v["metadata"]["frame_index"], 7);
        assert_eq!(v["metadata"]["detections"].as_array().unwrap().len(), 0);
    }
}
