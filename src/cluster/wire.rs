//! What travels between nodes on core NATS subjects: a camera's packets (`haven.frames.<id>`) and
//! the renditions a relaying node's viewers want (`haven.want.<id>`).
//!
//! A frame message is a 4-byte big-endian header length, the header JSON
//! `{seq, frame_index, timestamp, width, height, renditions: [{rendition, metadata_json, jpeg_len}]}`,
//! then each rendition's JPEG in that order. The metadata is the string the owner serialised once
//! for its own viewers, so the relaying node builds the very same WebSocket messages from it.

use std::sync::Arc;

use actix_web::web::Bytes;
use serde::{Deserialize, Serialize};

use crate::camera::packet::{RelayedHead, RenditionFrame};
use crate::camera::rendition::{Format, Formats, Overlay, Rendition};
use crate::camera::FramePacket;

pub fn frames_subject(camera_id: &str) -> String {
    format!("haven.frames.{camera_id}")
}

pub fn want_subject(camera_id: &str) -> String {
    format!("haven.want.{camera_id}")
}

/// A rendition as it travels: the ladder's rung and the formats wanted of it (none: JPEG only).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WireRendition {
    pub width: Option<u32>,
    pub quality: Option<u8>,
    /// `true`: the viewer draws the poses (`overlay=client`).
    pub client_overlay: bool,
    #[serde(default)]
    pub text: bool,
    #[serde(default)]
    pub binary: bool,
}

impl WireRendition {
    pub fn from_demand((r, f): (Rendition, Formats)) -> Self {
        Self { width: r.width, quality: r.quality, client_overlay: r.overlay == Overlay::Client, text: f.text, binary: f.binary }
    }

    pub fn rendition(&self) -> Rendition {
        Rendition {
            width: self.width,
            quality: self.quality,
            overlay: if self.client_overlay { Overlay::Client } else { Overlay::Server },
        }
    }

    /// The owner's demand this stands for: one `Wanted` per format (JPEG alone when none is set).
    pub fn wants(&self) -> Vec<(Rendition, Format)> {
        let r = self.rendition();
        let mut out = Vec::new();
        if self.text {
            out.push((r, Format::Text));
        }
        if self.binary {
            out.push((r, Format::Binary));
        }
        if out.is_empty() {
            out.push((r, Format::Jpeg));
        }
        out
    }
}

/// `haven.want.<id>`: sent every second by a node whose viewers follow a camera it does not own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Want {
    pub node: String,
    pub renditions: Vec<WireRendition>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    seq: u64,
    frame_index: u64,
    timestamp: f64,
    width: i32,
    height: i32,
    renditions: Vec<WireFrame>,
}

#[derive(Serialize, Deserialize)]
struct WireFrame {
    rendition: WireRendition,
    metadata_json: String,
    jpeg_len: usize,
}

/// One packet as one message: the header, then the JPEGs.
pub fn encode(packet: &FramePacket) -> Bytes {
    let header = Header {
        seq: packet.seq,
        frame_index: packet.frame_index,
        timestamp: packet.timestamp,
        width: packet.width,
        height: packet.height,
        renditions: packet
            .renditions
            .iter()
            .map(|r| WireFrame {
                rendition: WireRendition::from_demand((r.rendition, Formats { text: r.text.is_some(), binary: r.binary.is_some() })),
                metadata_json: r.metadata.to_string(),
                jpeg_len: r.jpeg.len(),
            })
            .collect(),
    };
    let header = serde_json::to_vec(&header).expect("a frame header serialises");
    let jpegs: usize = packet.renditions.iter().map(|r| r.jpeg.len()).sum();
    let mut out = Vec::with_capacity(4 + header.len() + jpegs);
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(&header);
    for r in &packet.renditions {
        out.extend_from_slice(&r.jpeg);
    }
    Bytes::from(out)
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("frame message too short")]
    Short,
    #[error("frame header: {0}")]
    Header(String),
}

/// A relayed packet from one message; each rendition's messages are built in the formats that
/// `formats_of` says this node's viewers want (the JPEG alone for the others).
pub fn decode(payload: &Bytes, formats_of: impl Fn(&Rendition) -> Formats) -> Result<Arc<FramePacket>, WireError> {
    let len = payload.get(..4).ok_or(WireError::Short)?;
    let n = u32::from_be_bytes(len.try_into().expect("four bytes")) as usize;
    let body = payload.get(4..4 + n).ok_or(WireError::Short)?;
    let header: Header = serde_json::from_slice(body).map_err(|e| WireError::Header(e.to_string()))?;
    let mut at = 4 + n;
    let mut renditions = Vec::with_capacity(header.renditions.len());
    for r in header.renditions {
        let end = at.checked_add(r.jpeg_len).filter(|&end| end <= payload.len()).ok_or(WireError::Short)?;
        let jpeg = payload.slice(at..end);
        at = end;
        let rendition = r.rendition.rendition();
        renditions.push(RenditionFrame::new(rendition, formats_of(&rendition), Arc::from(r.metadata_json), jpeg));
    }
    let head = RelayedHead { seq: header.seq, frame_index: header.frame_index, timestamp: header.timestamp, width: header.width, height: header.height };
    Ok(FramePacket::relayed(head, renditions))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::packet::{EncodedRendition, Message, RenditionMeta};

    fn packet() -> Arc<FramePacket> {
        let jpeg = Bytes::from_static(&[0xff, 0xd8, 1, 2, 3, 0xff, 0xd9]);
        let small = Rendition { width: Some(320), quality: Some(40), overlay: Overlay::Client };
        let meta = RenditionMeta { width: 4, height: 2, quality: 80, overlay: Overlay::Server };
        crate::camera::packet::tests::packet(vec![
            EncodedRendition { rendition: Rendition::default(), formats: Formats { text: true, binary: true }, meta, jpeg },
            EncodedRendition { rendition: small, formats: Formats { text: false, binary: true }, meta: RenditionMeta { width: 2, height: 1, quality: 40, overlay: Overlay::Client }, jpeg: Bytes::from_static(&[0xff, 0xd8, 7, 0xff, 0xd9]) },
        ])
    }

    fn bytes(m: Option<Message>) -> Vec<u8> {
        match m.expect("a message") {
            Message::Text(t) => t.as_bytes().to_vec(),
            Message::Binary(b) => b.to_vec(),
        }
    }

    #[test]
    fn a_relayed_packet_gives_viewers_the_owners_very_messages() {
        let original = packet();
        let wire = encode(&original);
        let relayed = decode(&wire, |_| Formats { text: true, binary: true }).unwrap();
        assert_eq!((relayed.seq, relayed.frame_index, relayed.timestamp, relayed.width), (3, 7, 1.5, 4));
        for r in [Rendition::default(), Rendition { width: Some(320), quality: Some(40), overlay: Overlay::Client }] {
            assert_eq!(relayed.jpeg_of(&r), original.jpeg_of(&r));
            assert_eq!(bytes(relayed.message(&r, Format::Binary)), bytes(original.message(&r, Format::Binary)));
        }
        let full = Rendition::default();
        assert_eq!(bytes(relayed.message(&full, Format::Text)), bytes(original.message(&full, Format::Text)));
        let jpeg_only = decode(&wire, |_| Formats::default()).unwrap();
        assert!(jpeg_only.message(&full, Format::Text).is_none() && jpeg_only.jpeg_of(&full).is_some());
    }

    #[test]
    fn a_packet_without_the_full_frame_has_no_full_jpeg_and_bad_messages_are_refused() {
        let wire = encode(&packet());
        let cut = wire.slice(..wire.len() - 1);
        assert_eq!(decode(&cut, |_| Formats::default()).unwrap_err(), WireError::Short);
        assert!(matches!(decode(&Bytes::from_static(b"\0\0\0\x02{x"), |_| Formats::default()), Err(WireError::Header(_))));
        let relayed = decode(&Bytes::from(encode_empty()), |_| Formats::default()).unwrap();
        assert_eq!(relayed.jpeg_of(&Rendition::default()), None);
    }

    fn encode_empty() -> Vec<u8> {
        let header = br#"{"seq":1,"frame_index":0,"timestamp":0.0,"width":4,"height":2,"renditions":[]}"#;
        let mut out = (header.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(header);
        out
    }

    #[test]
    fn wants_say_which_formats_the_owner_must_build() {
        let w = WireRendition::from_demand((Rendition::default(), Formats { text: true, binary: false }));
        assert_eq!(w.wants(), vec![(Rendition::default(), Format::Text)]);
        let jpeg = WireRendition::from_demand((Rendition::default(), Formats::default()));
        assert_eq!(jpeg.wants(), vec![(Rendition::default(), Format::Jpeg)]);
    }
}
