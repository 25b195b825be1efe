//! How a source's frames reach the frame step: a live camera's newest frame, a file's at the file's
//! own pace; each frame held to the camera's `max_fps`, counted, and measured (rates, CPU).

use std::sync::atomic::Ordering;
use std::time::Duration;

use opencv::core::Mat;

use super::frame_step::{process, Pipeline};
use super::live::LatestFrame;
use super::source::{FrameSource, SourceError};
use super::status::CameraStatus;
use super::worker::{WorkerContext, STOP_POLL};

/// Why streaming a source ended.
pub enum Outcome {
    Stopped,
    Ended,
    Failed(SourceError),
}

/// The camera's id, as of now.
fn camera_id(ctx: &WorkerContext) -> String {
    ctx.config.read().unwrap().camera_id.clone()
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
pub fn stream_live(ctx: &WorkerContext, pipe: &mut Pipeline, source: Box<dyn FrameSource>) -> Outcome {
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
                latest.recycle(frame);
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

impl Default for RateCap {
    fn default() -> Self {
        Self { allowance: 1.0, last: None }
    }
}

impl RateCap {
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
pub fn stream_file(ctx: &WorkerContext, pipe: &mut Pipeline, mut source: Box<dyn FrameSource>) -> Outcome {
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
