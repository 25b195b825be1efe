//! Counters the worker thread updates and the API reads, without locks on the frame path.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use crate::settings::CameraConfig;

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
    /// Inference times: counts per bucket of `INFERENCE_BUCKETS_MS` (cumulative when read), sum in µs.
    inference_hist: [AtomicU64; INFERENCE_BUCKETS_MS.len()],
    inference_sum_us: AtomicU64,
    width: AtomicU32,
    height: AtomicU32,
    pub frames_decoded: AtomicU64,
    pub frames_processed: AtomicU64,
    pub frames_encoded: AtomicU64,
    pub inferences: AtomicU64,
    pub dropped_frames: AtomicU64,
    pub loops: AtomicU64,
    pub reconnects: AtomicU64,
}

/// Upper bounds of the inference-time histogram's buckets, in milliseconds (`+Inf` is implied).
pub const INFERENCE_BUCKETS_MS: [f64; 10] = [10.0, 25.0, 50.0, 100.0, 150.0, 200.0, 300.0, 500.0, 1000.0, 2000.0];

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
            inference_hist: Default::default(),
            inference_sum_us: AtomicU64::new(0),
            width: AtomicU32::new(0),
            height: AtomicU32::new(0),
            frames_decoded: AtomicU64::new(0),
            frames_processed: AtomicU64::new(0),
            frames_encoded: AtomicU64::new(0),
            inferences: AtomicU64::new(0),
            dropped_frames: AtomicU64::new(0),
            loops: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
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

    /// `(upper bound ms, cumulative count)` per bucket, then the total count and the sum in seconds.
    pub fn inference_histogram(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let mut cumulative = 0;
        let buckets = INFERENCE_BUCKETS_MS
            .iter()
            .zip(&self.inference_hist)
            .map(|(le, n)| {
                cumulative += n.load(Ordering::Relaxed);
                (*le, cumulative)
            })
            .collect();
        let count = self.inferences.load(Ordering::Relaxed);
        (buckets, count, self.inference_sum_us.load(Ordering::Relaxed) as f64 / 1e6)
    }

    pub fn fps(&self) -> f32 {
        f32::from_bits(self.fps.load(Ordering::Relaxed))
    }

    pub fn record_inference(&self, ms: f64) {
        if let Some(i) = INFERENCE_BUCKETS_MS.iter().position(|le| ms <= *le) {
            self.inference_hist[i].fetch_add(1, Ordering::Relaxed);
        }
        self.inference_sum_us.fetch_add((ms * 1000.0) as u64, Ordering::Relaxed);
        self.inferences.fetch_add(1, Ordering::Relaxed);
        self.inference_ms.store(f32_bits(ms as f32), Ordering::Relaxed);
    }

    pub fn inference_ms(&self) -> f32 {
        f32::from_bits(self.inference_ms.load(Ordering::Relaxed))
    }

    /// A point-in-time copy for the API.
    pub fn snapshot(&self, config: &CameraConfig, ai_active: bool, viewers: usize) -> CameraStatusView {
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
            frames_encoded: load(&self.frames_encoded),
            inferences: load(&self.inferences),
            inference_ms: round2(self.inference_ms()),
            loops: load(&self.loops),
            reconnects: load(&self.reconnects),
            loop_video: config.loop_video,
            jpeg_quality: config.jpeg_quality,
            resize_width: config.resize_width,
            max_fps: config.max_fps,
            last_error: self.last_error.lock().unwrap().clone(),
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
    pub frames_encoded: u64,
    pub inferences: u64,
    /// Time of the last inference.
    pub inference_ms: f64,
    pub loops: u64,
    pub reconnects: u64,
    pub loop_video: bool,
    pub jpeg_quality: u8,
    pub resize_width: Option<u32>,
    pub max_fps: Option<f64>,
    pub last_error: Option<String>,
}
