//! The blocking half of a camera: capture, inference, annotation and JPEG encoding, on its own thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::{Actor, Handler, Message, SyncContext};
use opencv::core::{Mat, Size, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};
use tokio::sync::watch;

use super::packet::{Feed, FrameMetadata, FramePacket};
use super::live::LatestFrame;
use super::source::{SourceError, VideoSource};
use super::status::{CameraState, CameraStatus};
use crate::events::{Event, EventEngine, EventHub};
use crate::inference::SharedEngine;
use crate::settings::{CameraConfig, CaptureSettings, SourceType};

/// The longest the worker sleeps before looking at its stop flag again.
const STOP_POLL: Duration = Duration::from_millis(50);

/// Everything a worker thread shares with the rest of the server.
#[derive(Clone)]
pub struct WorkerContext {
    pub config: Arc<RwLock<CameraConfig>>,
    pub status: Arc<CameraStatus>,
    pub engine: Option<Arc<SharedEngine>>,
    pub feed: Arc<watch::Sender<Feed>>,
    pub stop: Arc<AtomicBool>,
    pub capture: Arc<CaptureSettings>,
    /// Where events go; `None` when events are turned off.
    pub events: Option<Arc<EventHub>>,
}

impl WorkerContext {
    /// A context for a camera's (next) worker: fresh status and stop flag, the given feed.
    pub fn new(
        config: CameraConfig,
        engine: Option<Arc<SharedEngine>>,
        feed: Arc<watch::Sender<Feed>>,
        capture: Arc<CaptureSettings>,
        events: Option<Arc<EventHub>>,
    ) -> Self {
        Self {
            config: Arc::new(RwLock::new(config)),
            status: Arc::new(CameraStatus::default()),
            engine,
            feed,
            stop: Arc::new(AtomicBool::new(false)),
            capture,
            events,
        }
    }
}

/// Runs in a `SyncArbiter` thread; one `Run` message keeps it busy until the stop flag is set.
pub struct CameraWorker {
    pub ctx: WorkerContext,
}

impl Actor for CameraWorker {
    type Context = SyncContext<Self>;
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Run;

impl Handler<Run> for CameraWorker {
    type Result = ();

    fn handle(&mut self, _: Run, _: &mut SyncContext<Self>) {
        run(&self.ctx);
    }
}

enum Outcome {
    Stopped,
    Ended,
    Failed(SourceError),
}

fn camera_id(ctx: &WorkerContext) -> String {
    ctx.config.read().unwrap().camera_id.clone()
}

/// Opens the source, streams it, and on failure retries with capped exponential backoff.
pub fn run(ctx: &WorkerContext) {
    let config = ctx.config.read().unwrap().clone();
    let id = config.camera_id.clone();
    log::info!("[{id}] Worker started: {}", config.display_source());
    let mut pipe = Pipeline {
        cap: RateCap::new(),
        events: ctx.events.as_ref().map(|hub| {
            let mut engine = hub.engine(&id);
            if let Some(fall) = config.fall {
                engine.set_fall_config(fall);
            }
            engine
        }),
    };
    let backoff_start = Duration::from_secs_f64(ctx.capture.reconnect_initial_secs);
    let backoff_max = Duration::from_secs_f64(ctx.capture.reconnect_max_secs);
    let mut backoff = backoff_start;
    while !ctx.stop.load(Ordering::Relaxed) {
        let config = ctx.config.read().unwrap().clone();
        let outcome = match VideoSource::open(&config, &ctx.capture) {
            Ok(source) => {
                log::info!("[{id}] Opened: {}x{} @ {:.1}fps", source.width, source.height, source.fps);
                ctx.status.opened(source.width, source.height, source.fps);
                ctx.status.set_error(None);
                let opened_at = Instant::now();
                let outcome = match config.source_type {
                    SourceType::VideoFile => stream_file(ctx, &mut pipe, source),
                    SourceType::Rtsp => stream_live(ctx, &mut pipe, source),
                };
                // A source that streamed for a while starts its next backoff afresh.
                if opened_at.elapsed() > backoff_max {
                    backoff = backoff_start;
                }
                outcome
            }
            Err(e) => Outcome::Failed(e),
        };
        match outcome {
            Outcome::Stopped => break,
            Outcome::Ended => {
                log::info!("[{id}] Video ended");
                pipe.finish();
                ctx.status.set_state(CameraState::Ended);
                return;
            }
            Outcome::Failed(e) => {
                let wait = with_jitter(backoff);
                log::warn!("[{id}] {e}; retrying in {:.1}s", wait.as_secs_f64());
                ctx.status.set_error(Some(e.to_string()));
                ctx.status.set_state(match config.source_type {
                    SourceType::VideoFile => CameraState::Retrying,
                    SourceType::Rtsp => CameraState::Reconnecting,
                });
                ctx.status.set_rates(0.0, 0.0, 0.0);
                if !sleep_unless_stopped(ctx, wait) {
                    break;
                }
                ctx.status.reconnects.fetch_add(1, Ordering::Relaxed);
                backoff = (backoff * 2).min(backoff_max);
            }
        }
    }
    pipe.finish();
    ctx.status.set_state(CameraState::Stopped);
    log::info!("[{id}] Worker stopped");
}

/// Up to +25% so that cameras that failed together do not retry in lockstep.
fn with_jitter(d: Duration) -> Duration {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    d.mul_f64(1.0 + (nanos % 1000) as f64 / 4000.0)
}

/// Sleeps for `d` in short steps; `false` if the worker was asked to stop meanwhile.
fn sleep_unless_stopped(ctx: &WorkerContext, d: Duration) -> bool {
    let until = Instant::now() + d;
    loop {
        if ctx.stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep((until - now).min(STOP_POLL));
    }
}

/// Measures processed, decoded and inferred frames per second over windows of about a second.
struct RateMeter {
    since: Instant,
    start: [u64; 3],
}

impl RateMeter {
    fn counters(status: &CameraStatus) -> [u64; 3] {
        [&status.frames_processed, &status.frames_decoded, &status.inferences].map(|c| c.load(Ordering::Relaxed))
    }

    fn new(status: &CameraStatus) -> Self {
        Self { since: Instant::now(), start: Self::counters(status) }
    }

    fn tick(&mut self, status: &CameraStatus) {
        let elapsed = self.since.elapsed().as_secs_f64();
        if elapsed >= 1.0 {
            let now = Self::counters(status);
            let rate = |i: usize| (now[i] - self.start[i]) as f64 / elapsed;
            status.set_rates(rate(0), rate(1), rate(2));
            *self = Self::new(status);
        }
    }
}

/// A live camera: always the newest frame; no frame within the watchdog time is a failure.
fn stream_live(ctx: &WorkerContext, pipe: &mut Pipeline, source: VideoSource) -> Outcome {
    let id = camera_id(ctx);
    let watchdog = Duration::from_secs_f64(ctx.capture.watchdog_secs);
    let stalled = source.stalled(ctx.capture.watchdog_secs);
    let latest = LatestFrame::spawn(source, ctx.status.clone(), id.clone());
    let mut meter = RateMeter::new(&ctx.status);
    let mut last_frame = Instant::now();
    while !ctx.stop.load(Ordering::Relaxed) {
        match latest.next(STOP_POLL) {
            Ok(Some((mut frame, index))) => {
                last_frame = Instant::now();
                finish_frame(ctx, pipe, &id, &mut frame, index);
            }
            Ok(None) if last_frame.elapsed() > watchdog => return Outcome::Failed(stalled),
            Ok(None) => {}
            Err(e) => return Outcome::Failed(e),
        }
        meter.tick(&ctx.status);
    }
    Outcome::Stopped
}

/// Holds processing to the camera's `max_fps`, if it has one: a token bucket of one frame, so the
/// average rate is the cap even when it does not divide the source's rate.
struct RateCap {
    allowance: f64,
    last: Option<Instant>,
}

impl RateCap {
    fn new() -> Self {
        Self { allowance: 1.0, last: None }
    }

    /// Whether a frame arriving now may be processed; frames over the cap are passed over.
    fn admit(&mut self, ctx: &WorkerContext) -> bool {
        let Some(max_fps) = ctx.config.read().unwrap().max_fps else {
            return true;
        };
        let now = Instant::now();
        if let Some(last) = self.last {
            self.allowance = (self.allowance + (now - last).as_secs_f64() * max_fps).min(1.0);
        }
        self.last = Some(now);
        if self.allowance >= 0.999 {
            self.allowance -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What a camera's frames go through besides the source: its rate cap and its events.
struct Pipeline {
    cap: RateCap,
    events: Option<EventEngine>,
}

impl Pipeline {
    /// Ends active events and completes their clips, so they play.
    fn finish(&mut self) {
        if let Some(events) = self.events.as_mut() {
            events.finish();
        }
    }
}

/// Processes one frame (if the rate cap lets it through) and counts it, whatever happens to it.
fn finish_frame(ctx: &WorkerContext, pipe: &mut Pipeline, id: &str, frame: &mut Mat, frame_index: u64) {
    if !pipe.cap.admit(ctx) {
        return;
    }
    if let Err(e) = process(ctx, pipe, id, frame, frame_index) {
        log::warn!("[{id}] frame {frame_index}: {e}");
        ctx.status.set_error(Some(e));
    }
    ctx.status.frames_processed.fetch_add(1, Ordering::Relaxed);
}

/// Delivers frames at the source's pace: a file as fast as a live camera would, never faster; when
/// processing falls behind, the frames it missed are skipped (and counted) rather than queued.
fn stream_file(ctx: &WorkerContext, pipe: &mut Pipeline, mut source: VideoSource) -> Outcome {
    let id = camera_id(ctx);
    let period = 1.0 / source.fps;
    let mut clock = Instant::now();
    let mut next_index: u64 = 0;
    let mut frames_this_pass: u64 = 0;
    let mut frame = Mat::default();
    let mut meter = RateMeter::new(&ctx.status);
    loop {
        if ctx.stop.load(Ordering::Relaxed) {
            return Outcome::Stopped;
        }
        let due = clock + Duration::from_secs_f64(next_index as f64 * period);
        let now = Instant::now();
        if now < due {
            std::thread::sleep((due - now).min(STOP_POLL));
            continue;
        }
        let mut at_end = false;
        let due_index = ((now - clock).as_secs_f64() / period).floor() as u64;
        while next_index < due_index {
            match source.skip() {
                Ok(true) => {
                    next_index += 1;
                    frames_this_pass += 1;
                    ctx.status.frames_decoded.fetch_add(1, Ordering::Relaxed);
                    ctx.status.dropped_frames.fetch_add(1, Ordering::Relaxed);
                }
                Ok(false) => {
                    at_end = true;
                    break;
                }
                Err(e) => return Outcome::Failed(e),
            }
        }
        if !at_end {
            match source.read(&mut frame) {
                Ok(true) => {}
                Ok(false) => at_end = true,
                Err(e) => return Outcome::Failed(e),
            }
        }
        if at_end {
            if let Some(changed) = source.changed_on_disk() {
                return Outcome::Failed(changed);
            }
            if frames_this_pass == 0 {
                return Outcome::Failed(source.no_frames());
            }
            if !ctx.config.read().unwrap().loop_video {
                return Outcome::Ended;
            }
            log::info!("[{id}] Video ended, looping...");
            ctx.status.loops.fetch_add(1, Ordering::Relaxed);
            match source.rewind() {
                Ok(true) => {}
                _ => return Outcome::Failed(source.no_frames()),
            }
            clock = Instant::now();
            next_index = 0;
            frames_this_pass = 0;
            continue;
        }
        let frame_index = next_index;
        next_index += 1;
        frames_this_pass += 1;
        ctx.status.frames_decoded.fetch_add(1, Ordering::Relaxed);
        finish_frame(ctx, pipe, &id, &mut frame, frame_index);
        meter.tick(&ctx.status);
    }
}

/// One frame's work. Inference and encoding are done only when someone consumes the result — a
/// viewer, or the camera's events — and then exactly once, whatever the number of viewers.
fn process(ctx: &WorkerContext, pipe: &mut Pipeline, id: &str, frame: &mut Mat, frame_index: u64) -> Result<(), String> {
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let (resize_width, jpeg_quality, ai_enabled) = {
        let c = ctx.config.read().unwrap();
        (c.resize_width, c.jpeg_quality, c.ai_enabled)
    };
    let infer = ctx.engine.is_some() && ai_enabled;
    let events = pipe.events.as_mut().filter(|_| infer);
    if ctx.feed.receiver_count() == 0 && events.is_none() {
        return Ok(());
    }
    if let Some(w) = resize_width {
        let w = w as i32;
        if frame.cols() > w {
            let h = ((frame.rows() as f64) * (w as f64) / (frame.cols() as f64)).round() as i32;
            let mut small = Mat::default();
            imgproc::resize(&*frame, &mut small, Size::new(w, h), 0.0, 0.0, imgproc::INTER_AREA)
                .map_err(|e| e.to_string())?;
            *frame = small;
        }
    }
    let engine = ctx.engine.as_ref().filter(|_| infer);
    let (annotated, detections, inference_ms) = match engine {
        Some(engine) => {
            let started = Instant::now();
            let (annotated, detections) = engine.process_frame(frame).map_err(|e| e.to_string())?;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            ctx.status.record_inference(ms);
            (Some(annotated), detections, Some((ms * 100.0).round() / 100.0))
        }
        None => (None, Vec::new(), None),
    };
    let shown = annotated.as_ref().unwrap_or(frame);
    let encode_started = Instant::now();
    ctx.status.set_frame_size(shown.cols(), shown.rows());
    let mut jpeg = Vector::<u8>::new();
    let params = Vector::<i32>::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, jpeg_quality as i32]);
    imgcodecs::imencode(".jpg", shown, &mut jpeg, &params).map_err(|e| e.to_string())?;
    let encode_ms = encode_started.elapsed().as_secs_f64() * 1000.0;
    ctx.status.frames_encoded.fetch_add(1, Ordering::Relaxed);
    let seq = ctx.status.frames_encoded.load(Ordering::Relaxed);
    let active_events: Vec<Event> = match events {
        Some(events) => {
            events.on_frame(shown, Some(jpeg.as_slice()), &detections, timestamp);
            events.active()
        }
        None => Vec::new(),
    };
    if ctx.feed.receiver_count() == 0 {
        return Ok(()); // encoded for the events' clips only: no message to build
    }
    let packet = FramePacket::new(
        FrameMetadata {
            camera_id: id,
            seq,
            frame_index,
            timestamp,
            fps: ((ctx.status.fps() as f64) * 100.0).round() / 100.0,
            width: shown.cols(),
            height: shown.rows(),
            ai_enabled: engine.is_some(),
            inference_ms,
            detections: &detections,
            events: &active_events,
        },
        jpeg.to_vec(),
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
        "[{id}] frame {seq}: published {:.1} ms after capture (inference {:.1} ms, encode {encode_ms:.1} ms)",
        (SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64() - timestamp) * 1000.0,
        inference_ms.unwrap_or(0.0)
    );
    Ok(())
}
