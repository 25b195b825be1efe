//! Counters the worker thread updates and the API reads, without locks on the frame path.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use super::rendition::RenditionView;
use crate::camera::config::{CameraConfig, DetectionSettings};

/// Where a camera is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraState {
    Starting,
    Streaming,
    /// Opening or reading a file failed; the worker waits out its backoff and tries again.
    Retrying,
    /// A live camera failed or went silent; the worker waits out its backoff and reconnects.
    Reconnecting,
    /// A file source without `loop_video` reached its end.
    Ended,
    Stopped,
}

/// Shared between a camera's worker (writer) and everything that reports on it (readers).
pub struct CameraStatus {
    started: Instant,
    connected: AtomicBool,
    state: Mutex<CameraState>,
    last_error: Mutex<Option<String>>,
    source_fps: AtomicU32,
    fps: AtomicU32,
    decode_fps: AtomicU32,
    detection_fps: AtomicU32,
    inference_ms: AtomicU32,
    queue_ms: AtomicU32,
    cpu_percent: AtomicU32,
    region_budget: AtomicU32,
    /// The fall rule's sensitivity the camera's events use now (NaN: no events).
    fall_sensitivity: AtomicU32,
    /// How long the model took, and how long frames waited for it.
    inference_hist: Histogram,
    queue_hist: Histogram,
    motion: AtomicBool,
    motion_area: AtomicU32,
    /// Frames not looked at because nothing moved and nobody was tracked.
    pub inferences_skipped: AtomicU64,
    /// Frames handed to the model that a newer frame replaced before a worker was free.
    pub inferences_replaced: AtomicU64,
    width: AtomicU32,
    height: AtomicU32,
    pub frames_decoded: AtomicU64,
    pub frames_processed: AtomicU64,
    /// Frames shown to local viewers only, past the camera's fence (cluster: lease not renewed).
    pub frames_fenced: AtomicU64,
    pub frames_encoded: AtomicU64,
    /// JPEGs encoded for renditions other than the full frame.
    pub renditions_encoded: AtomicU64,
    pub inferences: AtomicU64,
    pub dropped_frames: AtomicU64,
    pub loops: AtomicU64,
    pub reconnects: AtomicU64,
    /// Each model's passes over this camera's frames, by model name.
    per_model: Mutex<BTreeMap<String, ModelStats>>,
}

/// One model's work on one camera, as `GET /api/cameras` reports it (`models_stats`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModelStats {
    /// Frames of this camera the model looked at (one pass each).
    pub inferences: u64,
    /// Time of its last pass, in milliseconds.
    pub inference_ms: f64,
    /// What it found in its last pass.
    pub detections: u64,
}

/// Upper bounds of the time histograms' buckets, in milliseconds (`+Inf` is implied).
pub const INFERENCE_BUCKETS_MS: [f64; 10] = [10.0, 25.0, 50.0, 100.0, 150.0, 200.0, 300.0, 500.0, 1000.0, 2000.0];

/// Times in milliseconds: counts per bucket of `INFERENCE_BUCKETS_MS`, their sum and count.
#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; INFERENCE_BUCKETS_MS.len()],
    sum_us: AtomicU64,
    count: AtomicU64,
}

/// A histogram as Prometheus shows it: `(upper bound ms, cumulative count)` per bucket, the total
/// count and the sum in seconds.
pub type HistogramView = (Vec<(f64, u64)>, u64, f64);

impl Histogram {
    fn record(&self, ms: f64) {
        if let Some(i) = INFERENCE_BUCKETS_MS.iter().position(|le| ms <= *le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add((ms * 1000.0) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn view(&self) -> HistogramView {
        let mut cumulative = 0;
        let buckets = INFERENCE_BUCKETS_MS
            .iter()
            .zip(&self.buckets)
            .map(|(le, n)| {
                cumulative += n.load(Ordering::Relaxed);
                (*le, cumulative)
            })
            .collect();
        (buckets, self.count.load(Ordering::Relaxed), self.sum_us.load(Ordering::Relaxed) as f64 / 1e6)
    }
}

fn f32_bits(v: f32) -> u32 {
    v.to_bits()
}

impl Default for CameraStatus {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            connected: AtomicBool::new(false),
            state: Mutex::new(CameraState::Starting),
            last_error: Mutex::new(None),
            source_fps: AtomicU32::new(0),
            fps: AtomicU32::new(0),
            decode_fps: AtomicU32::new(0),
            detection_fps: AtomicU32::new(0),
            inference_ms: AtomicU32::new(0),
            queue_ms: AtomicU32::new(0),
            cpu_percent: AtomicU32::new(0),
            region_budget: AtomicU32::new(0),
            fall_sensitivity: AtomicU32::new(f32::NAN.to_bits()),
            inference_hist: Histogram::default(),
            queue_hist: Histogram::default(),
            motion: AtomicBool::new(false),
            motion_area: AtomicU32::new(0),
            inferences_skipped: AtomicU64::new(0),
            inferences_replaced: AtomicU64::new(0),
            width: AtomicU32::new(0),
            height: AtomicU32::new(0),
            frames_decoded: AtomicU64::new(0),
            frames_processed: AtomicU64::new(0),
            frames_fenced: AtomicU64::new(0),
            frames_encoded: AtomicU64::new(0),
            inferences: AtomicU64::new(0),
            dropped_frames: AtomicU64::new(0),
            loops: AtomicU64::new(0),
            renditions_encoded: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            per_model: Mutex::new(BTreeMap::new()),
        }
    }
}

impl CameraStatus {
    pub fn state(&self) -> CameraState {
        *self.state.lock().unwrap()
    }

    pub fn set_state(&self, state: CameraState) {
        *self.state.lock().unwrap() = state;
        self.connected.store(state == CameraState::Streaming, Ordering::Relaxed);
    }

    pub fn set_error(&self, message: Option<String>) {
        *self.last_error.lock().unwrap() = message;
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap().clone()
    }

    pub fn opened(&self, width: i32, height: i32, source_fps: f64) {
        self.width.store(width.max(0) as u32, Ordering::Relaxed);
        self.height.store(height.max(0) as u32, Ordering::Relaxed);
        self.source_fps.store(f32_bits(source_fps as f32), Ordering::Relaxed);
        self.set_state(CameraState::Streaming);
    }

    pub fn set_frame_size(&self, width: i32, height: i32) {
        self.width.store(width.max(0) as u32, Ordering::Relaxed);
        self.height.store(height.max(0) as u32, Ordering::Relaxed);
    }

    /// Rates measured over the last window: frames processed, decoded and run through the model per second.
    pub fn set_rates(&self, processed: f64, decoded: f64, detected: f64) {
        self.fps.store(f32_bits(processed as f32), Ordering::Relaxed);
        self.decode_fps.store(f32_bits(decoded as f32), Ordering::Relaxed);
        self.detection_fps.store(f32_bits(detected as f32), Ordering::Relaxed);
    }

    pub fn decode_fps(&self) -> f32 {
        f32::from_bits(self.decode_fps.load(Ordering::Relaxed))
    }

    pub fn detection_fps(&self) -> f32 {
        f32::from_bits(self.detection_fps.load(Ordering::Relaxed))
    }

    pub fn inference_histogram(&self) -> HistogramView {
        self.inference_hist.view()
    }

    pub fn queue_histogram(&self) -> HistogramView {
        self.queue_hist.view()
    }

    /// The camera thread's CPU over the last window, in percent of one core.
    pub fn set_cpu_percent(&self, v: f64) {
        self.cpu_percent.store(f32_bits(v as f32), Ordering::Relaxed);
    }

    /// The region budget in force (a fraction of one square pass), after the load's share.
    pub fn set_fall_sensitivity(&self, v: f32) {
        self.fall_sensitivity.store(v.to_bits(), Ordering::Relaxed);
    }

    pub fn set_region_budget(&self, v: f32) {
        self.region_budget.store(f32_bits(v), Ordering::Relaxed);
    }

    pub fn set_motion(&self, moving: bool, area: f32) {
        self.motion.store(moving, Ordering::Relaxed);
        self.motion_area.store(f32_bits(area), Ordering::Relaxed);
    }

    pub fn fps(&self) -> f32 {
        f32::from_bits(self.fps.load(Ordering::Relaxed))
    }

    /// One pass of the model over this camera's frame: how long it took and how long the frame waited.
    pub fn record_inference(&self, ms: f64, queue_ms: f64) {
        self.inference_hist.record(ms);
        self.queue_hist.record(queue_ms);
        self.inferences.fetch_add(1, Ordering::Relaxed);
        self.inference_ms.store(f32_bits(ms as f32), Ordering::Relaxed);
        self.queue_ms.store(f32_bits(queue_ms as f32), Ordering::Relaxed);
    }

    /// One model's pass over one of this camera's frames.
    pub fn record_model(&self, model: &str, ms: f64, detections: usize) {
        let mut all = self.per_model.lock().unwrap();
        let stats = all.entry(model.to_string()).or_default();
        stats.inferences += 1;
        stats.inference_ms = (ms * 100.0).round() / 100.0;
        stats.detections = detections as u64;
    }

    /// Each model's passes over this camera's frames so far.
    pub fn model_stats(&self) -> BTreeMap<String, ModelStats> {
        self.per_model.lock().unwrap().clone()
    }

    pub fn inference_ms(&self) -> f32 {
        f32::from_bits(self.inference_ms.load(Ordering::Relaxed))
    }

    /// A point-in-time copy for the API.
    pub fn snapshot(
        &self,
        config: &CameraConfig,
        detection: &DetectionSettings,
        ai_active: bool,
        viewers: usize,
        renditions: Vec<RenditionView>,
    ) -> CameraStatusView {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let round2 = |v: f32| ((v as f64) * 100.0).round() / 100.0;
        CameraStatusView {
            camera_id: config.camera_id.clone(),
            source: config.display_source(),
            source_type: config.source_type.as_str(),
            state: self.state(),
            connected: self.connected.load(Ordering::Relaxed),
            fps: round2(self.fps()),
            decode_fps: round2(self.decode_fps()),
            detection_fps: round2(self.detection_fps()),
            source_fps: round2(f32::from_bits(self.source_fps.load(Ordering::Relaxed))),
            width: self.width.load(Ordering::Relaxed),
            height: self.height.load(Ordering::Relaxed),
            dropped_frames: load(&self.dropped_frames),
            uptime_seconds: (self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            ai_enabled: config.ai_enabled,
            ai_active,
            viewers: viewers as u64,
            frames_decoded: load(&self.frames_decoded),
            frames_processed: load(&self.frames_processed),
            frames_fenced: load(&self.frames_fenced),
            frames_encoded: load(&self.frames_encoded),
            renditions_encoded: load(&self.renditions_encoded),
            renditions,
            inferences: load(&self.inferences),
            inference_ms: round2(self.inference_ms()),
            queue_ms: round2(f32::from_bits(self.queue_ms.load(Ordering::Relaxed))),
            cpu_percent: round2(f32::from_bits(self.cpu_percent.load(Ordering::Relaxed))),
            region_budget: round2(f32::from_bits(self.region_budget.load(Ordering::Relaxed))),
            fall_sensitivity: Some(f32::from_bits(self.fall_sensitivity.load(Ordering::Relaxed))).filter(|v| !v.is_nan()).map(round2),
            motion: self.motion.load(Ordering::Relaxed),
            motion_area: (f32::from_bits(self.motion_area.load(Ordering::Relaxed)) as f64 * 1e4).round() / 1e4,
            inferences_skipped: load(&self.inferences_skipped),
            inferences_replaced: load(&self.inferences_replaced),
            detect_fps: config.detection(detection).detect_fps,
            loops: load(&self.loops),
            reconnects: load(&self.reconnects),
            loop_video: config.loop_video,
            models: config.model_names(),
            object_events: config.object_event_classes().to_vec(),
            zones: config.zones.clone(),
            models_stats: self.model_stats(),
            jpeg_quality: config.jpeg_quality,
            resize_width: config.resize_width,
            max_fps: config.max_fps,
            last_error: self.last_error.lock().unwrap().clone(),
            snoozed_until: None,
        }
    }
}

/// What `GET /api/cameras` reports per camera.
#[derive(Debug, Clone, Serialize)]
pub struct CameraStatusView {
    pub camera_id: String,
    /// RTSP credentials masked.
    pub source: String,
    pub source_type: &'static str,
    pub state: CameraState,
    pub connected: bool,
    /// Frames processed per second, measured over the last second or so.
    pub fps: f64,
    /// Frames decoded per second (processed and skipped).
    pub decode_fps: f64,
    /// Frames run through the model per second.
    pub detection_fps: f64,
    /// The rate the source delivers (a file's native FPS).
    pub source_fps: f64,
    pub width: u32,
    pub height: u32,
    pub dropped_frames: u64,
    pub uptime_seconds: f64,
    /// The camera's setting (what PATCH changes).
    pub ai_enabled: bool,
    /// Whether inference really runs: the setting, and a loaded model.
    pub ai_active: bool,
    pub viewers: u64,
    pub frames_decoded: u64,
    pub frames_processed: u64,
    /// Frames past the camera's fence: shown to this node's viewers, not analysed (cluster only).
    pub frames_fenced: u64,
    pub frames_encoded: u64,
    /// JPEGs encoded for renditions other than the full frame (each once for all its viewers).
    pub renditions_encoded: u64,
    /// The renditions viewers want now (sockets, MJPEG, snapshots), with how many viewers each.
    pub renditions: Vec<RenditionView>,
    /// Frames looked at (by one model or several: each frame once).
    pub inferences: u64,
    /// Time of the last look, every model's pass together.
    pub inference_ms: f64,
    /// How long the last inferred frame waited for the shared model.
    pub queue_ms: f64,
    /// The camera's own thread over the last second, in percent of one core: decoding (files),
    /// motion, drawing, encoding; the shared model's work is in `inference_ms`.
    pub cpu_percent: f64,
    /// What the regions of the last pass could cost, as a fraction of one square pass at the model's
    /// size: `detection.region_budget`, less while frames wait for the shared model.
    pub region_budget: f64,
    /// The fall rule's sensitivity this camera's events use (its own `fall`, else `[events.fall]`,
    /// as of a reload too); none while its events are off or it has not started.
    pub fall_sensitivity: Option<f64>,
    /// Whether something moved in the newest frame, and the fraction of the frame that did.
    pub motion: bool,
    pub motion_area: f64,
    /// Frames not looked at because nothing moved and nobody was tracked.
    pub inferences_skipped: u64,
    /// Frames a newer frame of this camera replaced while they waited for the model.
    pub inferences_replaced: u64,
    /// The detect rate in force (passes per second while something moves; 0: every frame).
    pub detect_fps: f64,
    pub loops: u64,
    pub reconnects: u64,
    pub loop_video: bool,
    /// The models that look at this camera's frames (the setting; PATCH changes it live).
    pub models: Vec<String>,
    /// Classes that raise `object_detected` events here.
    pub object_events: Vec<String>,
    /// The camera's zones (the setting; PATCH changes them live).
    pub zones: Vec<crate::zones::Zone>,
    /// Each model's passes over this camera's frames: how many, the last one's time and findings.
    pub models_stats: BTreeMap<String, ModelStats>,
    pub jpeg_quality: u8,
    pub resize_width: Option<u32>,
    pub max_fps: Option<f64>,
    pub last_error: Option<String>,
    /// Until when the camera's notifications are snoozed (unix seconds; its events go on): the
    /// camera does not know, the API fills it in from the notifier.
    pub snoozed_until: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::config::SourceType;

    #[test]
    fn the_openapi_camera_status_lists_every_field_the_api_gives() {
        let doc: serde_json::Value = serde_json::from_str(include_str!("../api/openapi.json")).unwrap();
        let schema = &doc["components"]["schemas"]["CameraStatus"];
        let config = CameraConfig::new("cam1", "a.mp4", SourceType::VideoFile);
        let view = CameraStatus::default().snapshot(&config, &DetectionSettings::default(), true, 0, Vec::new());
        let value = serde_json::to_value(view).unwrap();
        let mut fields: Vec<&String> = value.as_object().unwrap().keys().collect();
        let mut documented: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
        fields.sort();
        documented.sort();
        assert_eq!(fields, documented);
        let mut required: Vec<&str> = schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        required.sort();
        assert_eq!(required, fields.iter().map(|s| s.as_str()).collect::<Vec<_>>(), "every field is always there");
    }
}
