//! The blocking half of a camera, on its own thread: what it shares with its handle, and its life
//! (open the source, stream it through the frame step, retry with backoff until stopped).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Handler, Message, SyncContext};
use tokio::sync::watch;

use super::clock::Clock;
pub use super::frame_step::{process, Pipeline};
use super::fence::Fence;
use super::stream::{stream_file, stream_live, Outcome};
use super::live_config::LiveConfig;
use super::packet::Feed;
use super::rendition::Demand;
use super::source::Opener;
use super::status::{CameraState, CameraStatus};
use crate::events::EventHub;
use crate::inference::scheduler::Scheduler;
use crate::camera::config::{CameraConfig, CaptureSettings, DetectionSettings, SourceType};
use crate::config::Live;

/// The longest the worker sleeps before looking at its stop flag again.
pub const STOP_POLL: Duration = Duration::from_millis(50);

/// What every camera of a server shares: the model, the settings, the events, and the seams that
/// tests replace (how a source is opened, what time it is).
#[derive(Clone)]
pub struct CameraDeps {
    /// The model, shared by every camera; `None` when no model is loaded.
    pub inference: Option<Arc<Scheduler>>,
    pub capture: Arc<CaptureSettings>,
    /// `[detection]`: the detect rate and motion defaults of cameras that set none of their own,
    /// shared by every camera and replaced for all by a reload of the settings file.
    pub detection: Live<DetectionSettings>,
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

    /// The same camera's next worker: fresh status and stop flag, a new configuration.
    pub fn renewed(&self, config: CameraConfig) -> Self {
        Self { fence: self.fence.clone(), ..Self::new(config, self.feed.clone(), self.demand.clone(), self.deps.clone()) }
    }

    pub fn now(&self) -> Duration {
        self.deps.clock.monotonic()
    }

    pub fn stopping(&self) -> bool {
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

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
