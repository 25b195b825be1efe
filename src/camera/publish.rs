//! Stage (e) of the frame step: the frame's packet (its metadata and JPEGs) into the camera's feed,
//! for every viewer at once.

use super::analyse::{Analyser, Analysis};
use super::frame_settings::FrameSettings;
use super::frame_step::Captured;
use super::packet::{Feed, FrameMetadata, FramePacket, PosesMeta};
use super::render::Rendered;
use super::worker::WorkerContext;
use crate::events::Event;

/// Numbers a camera's packets.
#[derive(Default)]
pub struct Publisher {
    /// Packets published (each packet's `seq`).
    packets: u64,
}

/// What was published.
pub struct Published {
    pub seq: u64,
}

impl Publisher {
    /// Builds the frame's packet and replaces the feed's with it, unless the camera was closed.
    #[allow(clippy::too_many_arguments)]
    pub fn publish(&mut self, ctx: &WorkerContext, frame: &Captured, s: &FrameSettings, analyser: &Analyser, analysis: &Analysis, events: &[Event], rendered: Rendered) -> Published {
        let seq = self.next_seq(ctx);
        let infer = analysis.infer;
        let timestamp = frame.timestamp;
        // Which frame the newest people (or, without a pose model, objects) come from.
        let poses = s.pose_model.or(s.models.first().copied()).and_then(|m| analyser.looks.get(m)).filter(|_| infer);
        let shown = analyser.looks.shown();
        let packet = FramePacket::new(
            FrameMetadata {
                camera_id: frame.camera_id,
                seq,
                frame_index: frame.index,
                timestamp,
                fps: ((ctx.status.fps() as f64) * 100.0).round() / 100.0,
                width: frame.width(),
                height: frame.height(),
                ai_enabled: infer,
                inference_ms: (infer && !shown.is_empty()).then(|| (analyser.inference_ms * 100.0).round() / 100.0),
                detections: shown,
                poses: poses.map(|p| PosesMeta {
                    frame_index: p.frame_index,
                    timestamp: p.timestamp,
                    age_ms: ((timestamp - p.timestamp) * 1000.0 * 10.0).round() / 10.0,
                    regions: p.regions,
                }),
                motion: infer.then_some(&analysis.motion),
                events,
                rendition: None,
            },
            rendered.full,
            rendered.renditions,
        );
        // A frame finished after the camera was closed (SIGTERM, removed) must not replace the close: its
        // viewers would keep waiting for frames and end without the reason.
        ctx.feed.send_if_modified(|feed| {
            if matches!(feed, Feed::Closed(_)) {
                return false;
            }
            *feed = Feed::Frame(packet);
            true
        });
        log::trace!(
            target: "haven::latency",
            "[{}] frame {seq}: published {:.1} ms after capture (encode {:.1} ms)",
            frame.camera_id,
            (ctx.deps.clock.wall() - timestamp) * 1000.0,
            rendered.encode_ms,
        );
        Published { seq }
    }

    /// `seq` grows across the camera's restarts too: viewers keep their feed and wait for a higher one.
    fn next_seq(&mut self, ctx: &WorkerContext) -> u64 {
        let previous_seq = match &*ctx.feed.borrow() {
            Feed::Frame(p) => p.seq,
            _ => 0,
        };
        self.packets = self.packets.max(previous_seq) + 1;
        self.packets
    }
}

/// A camera nobody watches publishes no packets, so the one in its feed grows old: drop it, so that
/// the next viewer's first frame (and a snapshot) is the next one processed, not a scene from
/// whenever someone last watched. Viewers are not woken: there are none.
pub fn forget_stale_packet(ctx: &WorkerContext) {
    ctx.feed.send_if_modified(|feed| {
        if matches!(feed, Feed::Frame(_)) {
            *feed = Feed::Waiting;
        }
        false
    });
}
