//! The blocking half of a camera: capture, inference, annotation and JPEG encoding, on its own thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Handler, Message, SyncContext};
use opencv::core::Mat;
use tokio::sync::watch;

use super::clock::Clock;
pub use super::frame_step::{process, Pipeline};
use super::fence::Fence;
use super::live::LatestFrame;
use super::live_config::LiveConfig;
use super::packet::Feed;
use super::rendition::Demand;
use super::source::{FrameSource, Opener, SourceError};
use super::status::{CameraState, CameraStatus};
use crate::events::EventHub;
use crate::inference::scheduler::Scheduler;
use crate::settings::{CameraConfig, CaptureSettings, DetectionSettings, SourceType};

/// The longest the worker sleeps before looking at its stop flag again.
const STOP_POLL: Duration = Duration::from_millis(50);

/// What every camera of a server shares: the model, the settings, the events, and the seams that
/// tests replace (how a source is opened, what time it is).
#[derive(Clone)]
pub struct CameraDeps {
    /// The model, shared by every camera; `None` when no model is loaded.
    pub inference: Option<Arc<Scheduler>>,
    pub capture: Arc<CaptureSettings>,
    /// Detect rate and motion defaults for cameras that set none of their own, as the camera
    /// starts (each camera's `LiveConfig` holds its current ones).
    pub detection: Arc<DetectionSettings>,
    /// Where events go; `None` when events are turned off.
    pub events: Option<Arc<EventHub>>,
    pub opener: Arc<dyn Opener>,
    pub clock: Arc<dyn Clock>,
    /// Wait for each look's answer before the next frame (`haven analyze`: in simulated time the
    /// models take no time); a server's cameras never wait for the model.
    pub wait_for_models: bool,
}

/// Everything one worker thread shares with its camera's handle.
#[derive(Clone)]
pub struct WorkerContext {
    pub config: Arc<LiveConfig>,
    pub status: Arc<CameraStatus>,
    pub feed: Arc<watch::Sender<Feed>>,
    /// The renditions the feed's viewers want; like the feed, it outlives restarts.
    pub demand: Demand,
    pub stop: Arc<AtomicBool>,
    /// Past it, frames are shown to this node's viewers but not analysed (cluster: the lease may be
    /// another node's by now); like the feed, it outlives restarts.
    pub fence: Fence,
    pub deps: CameraDeps,
}

impl WorkerContext {
    /// A context for a camera's (next) worker: fresh status and stop flag, the given feed.
    pub fn new(config: CameraConfig, feed: Arc<watch::Sender<Feed>>, demand: Demand, deps: CameraDeps) -> Self {
        Self {
            config: Arc::new(LiveConfig::new(config, deps.detection.clone())),
            status: Arc::new(CameraStatus::default()),
            feed,
            demand,
            stop: Arc::new(AtomicBool::new(false)),
            fence: Fence::open(),
            deps,
        }
    }

    /// The same camera's next worker: fresh status and stop flag, a new configuration (and the
    /// `[detection]` defaults the last one had).
    pub fn renewed(&self, config: CameraConfig) -> Self {
        let deps = CameraDeps { detection: self.config.detection(), ..self.deps.clone() };
        Self { fence: self.fence.clone(), ..Self::new(config, self.feed.clone(), self.demand.clone(), deps) }
    }

    pub fn now(&self) -> Duration {
        self.deps.clock.monotonic()
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
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
    let mut pipe = Pipeline::new(ctx, &config);
    let capture = &ctx.deps.capture;
    let backoff_start = Duration::from_secs_f64(capture.reconnect_initial_secs);
    let backoff_max = Duration::from_secs_f64(capture.reconnect_max_secs);
    let mut backoff = backoff_start;
    while !ctx.stopping() {
        let config = ctx.config.read().unwrap().clone();
        let outcome = match ctx.deps.opener.open(&config, capture) {
            Ok(source) => {
                let info = source.info();
                log::info!("[{id}] Opened: {}x{} @ {:.1}fps", info.width, info.height, info.fps);
                ctx.status.opened(info.width, info.height, info.fps);
                ctx.status.set_error(None);
                let opened_at = ctx.now();
                let outcome = match config.source_type {
                    SourceType::VideoFile => stream_file(ctx, &mut pipe, source),
                    SourceType::Rtsp => stream_live(ctx, &mut pipe, source),
                };
                // A source that streamed for a while starts its next backoff afresh.
                if ctx.now() - opened_at > backoff_max {
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
                let wait = with_jitter(backoff, ctx.deps.clock.jitter());
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

/// Up to +25% (`jitter` in [0, 1)) so that cameras that failed together do not retry in lockstep.
fn with_jitter(d: Duration, jitter: f64) -> Duration {
    d.mul_f64(1.0 + jitter.clamp(0.0, 1.0) / 4.0)
}

/// Sleeps for `d` in short steps; `false` if the worker was asked to stop meanwhile.
fn sleep_unless_stopped(ctx: &WorkerContext, d: Duration) -> bool {
    let until = ctx.now() + d;
    loop {
        if ctx.stopping() {
            return false;
        }
        let now = ctx.now();
        if now >= until {
            return true;
        }
        ctx.deps.clock.sleep((until - now).min(STOP_POLL));
    }
}

/// Measures processed, decoded and inferred frames per second, and the camera thread's CPU, over
/// windows of about a second.
struct RateMeter {
    since: Duration,
    start: [u64; 3],
    cpu_start: f64,
}

impl RateMeter {
    fn counters(status: &CameraStatus) -> [u64; 3] {
        [&status.frames_processed, &status.frames_decoded, &status.inferences].map(|c| c.load(Ordering::Relaxed))
    }

    fn new(ctx: &WorkerContext) -> Self {
        Self { since: ctx.now(), start: Self::counters(&ctx.status), cpu_start: thread_cpu_secs() }
    }

    fn tick(&mut self, ctx: &WorkerContext) {
        let elapsed = (ctx.now() - self.since).as_secs_f64();
        if elapsed >= 1.0 {
            let now = Self::counters(&ctx.status);
            let rate = |i: usize| (now[i] - self.start[i]) as f64 / elapsed;
            ctx.status.set_rates(rate(0), rate(1), rate(2));
            ctx.status.set_cpu_percent((thread_cpu_secs() - self.cpu_start) / elapsed * 100.0);
            *self = Self::new(ctx);
        }
    }
}

/// CPU time the calling thread has used, in seconds (0 where the clock is not available).
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes one timespec through the pointer, which points to a live,
    // properly aligned local; CLOCK_THREAD_CPUTIME_ID is a valid clock id on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc == 0 {
        ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
    } else {
        0.0
    }
}

/// A live camera: always the newest frame; no frame within the watchdog time is a failure.
fn stream_live(ctx: &WorkerContext, pipe: &mut Pipeline, source: Box<dyn FrameSource>) -> Outcome {
    let id = camera_id(ctx);
    let watchdog_secs = ctx.deps.capture.watchdog_secs;
    let stalled = SourceError::stalled(source.name(), watchdog_secs);
    let latest = LatestFrame::spawn(source, ctx.status.clone(), id.clone());
    let mut meter = RateMeter::new(ctx);
    let mut last_frame = ctx.now();
    while !ctx.stopping() {
        match latest.next(STOP_POLL) {
            Ok(Some((mut frame, index))) => {
                last_frame = ctx.now();
                finish_frame(ctx, pipe, &id, &mut frame, index);
            }
            Ok(None) if (ctx.now() - last_frame).as_secs_f64() > watchdog_secs => return Outcome::Failed(stalled),
            Ok(None) => {}
            Err(e) => return Outcome::Failed(e),
        }
        meter.tick(ctx);
    }
    Outcome::Stopped
}

/// Holds processing to the camera's `max_fps`, if it has one: a token bucket of one frame, so the
/// average rate is the cap even when it does not divide the source's rate.
pub struct RateCap {
    allowance: f64,
    last: Option<Duration>,
}

impl RateCap {
    pub fn new() -> Self {
        Self { allowance: 1.0, last: None }
    }

    /// Whether a frame arriving now may be processed; frames over the cap are passed over.
    fn admit(&mut self, ctx: &WorkerContext, max_fps: Option<f64>) -> bool {
        let Some(max_fps) = max_fps else {
            return true;
        };
        let now = ctx.now();
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

/// Processes one frame (if the rate cap lets it through) and counts it, whatever happens to it.
fn finish_frame(ctx: &WorkerContext, pipe: &mut Pipeline, id: &str, frame: &mut Mat, frame_index: u64) {
    let max_fps = pipe.settings(ctx).max_fps;
    if !pipe.cap.admit(ctx, max_fps) {
        return;
    }
    // Past the fence this node may no longer own the camera: its local viewers still see it, but
    // the model, the events and the other nodes get nothing from here (docs/scaling.md, Fencing).
    let fenced = ctx.fence.expired();
    if let Err(e) = process(ctx, pipe, id, frame, frame_index, !fenced) {
        log::warn!("[{id}] frame {frame_index}: {e}");
        ctx.status.set_error(Some(e.to_string()));
    }
    let counter = if fenced { &ctx.status.frames_fenced } else { &ctx.status.frames_processed };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Delivers frames at the source's pace: a file as fast as a live camera would, never faster; when
/// processing falls behind, the frames it missed are skipped (and counted) rather than queued.
fn stream_file(ctx: &WorkerContext, pipe: &mut Pipeline, mut source: Box<dyn FrameSource>) -> Outcome {
    let id = camera_id(ctx);
    let period = 1.0 / source.info().fps;
    let mut clock = ctx.now();
    let mut next_index: u64 = 0;
    let mut frames_this_pass: u64 = 0;
    let mut frame = Mat::default();
    let mut meter = RateMeter::new(ctx);
    loop {
        if ctx.stopping() {
            return Outcome::Stopped;
        }
        let due = clock + Duration::from_secs_f64(next_index as f64 * period);
        let now = ctx.now();
        if now < due {
            ctx.deps.clock.sleep((due - now).min(STOP_POLL));
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
                return Outcome::Failed(SourceError::no_frames(source.name()));
            }
            if !pipe.settings(ctx).loop_video {
                return Outcome::Ended;
            }
            log::info!("[{id}] Video ended, looping...");
            ctx.status.loops.fetch_add(1, Ordering::Relaxed);
            match source.rewind() {
                Ok(true) => {}
                _ => return Outcome::Failed(SourceError::no_frames(source.name())),
            }
            clock = ctx.now();
            next_index = 0;
            frames_this_pass = 0;
            continue;
        }
        let frame_index = next_index;
        next_index += 1;
        frames_this_pass += 1;
        ctx.status.frames_decoded.fetch_add(1, Ordering::Relaxed);
        finish_frame(ctx, pipe, &id, &mut frame, frame_index);
        meter.tick(ctx);
    }
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
