//! The blocking half of a camera: capture, inference, annotation and JPEG encoding, on its own thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix::{Actor, Handler, Message, SyncContext};
use actix_web::web::Bytes;
use opencv::core::{Mat, Rect, Size};
use opencv::prelude::*;
use opencv::imgproc;
use tokio::sync::watch;

use super::clock::Clock;
use super::error::FrameError;
use super::fence::Fence;
use super::gate::{Decision, DetectGate};
use super::live::LatestFrame;
use super::motion::{Motion, MotionDetector, MotionSettings};
use super::packet::{EncodedRendition, Feed, FrameMetadata, FramePacket, PosesMeta, RenditionMeta};
use super::encoder::{FrameEncoder, JpegSpec};
use super::rendition::{Demand, Overlay, Rendition};
use super::source::{FrameSource, Opener, SourceError};
use super::status::{CameraState, CameraStatus};
use crate::events::{Event, EventEngine, EventHub, EventKind};
use crate::inference::regions::{self, BudgetControl, Plan, RegionPlan};
use crate::inference::scheduler::{Job, Lane, Priority, Run as ModelRun, Scheduler};
use crate::inference::{Detection, ModelDetections, Task};
use crate::camera::config::{CameraConfig, CaptureSettings, DetectionSettings, SourceType};
use crate::config::Live;

/// The longest the worker sleeps before looking at its stop flag again.
const STOP_POLL: Duration = Duration::from_millis(50);

/// What every camera of a server shares: the model, the settings, the events, and the seams that
/// tests replace (how a source is opened, what time it is).
#[derive(Clone)]
pub struct CameraDeps {
    /// The model, shared by every camera; `None` when no model is loaded.
    pub inference: Option<Arc<Scheduler>>,
    pub capture: Arc<CaptureSettings>,
    /// Detect rate and motion defaults for cameras that set none of their own.
    /// `[detection]`: the defaults of every camera, replaced by a reload of the settings file.
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
    pub config: Arc<RwLock<CameraConfig>>,
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
            config: Arc::new(RwLock::new(config)),
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

    fn now(&self) -> Duration {
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
struct RateCap {
    allowance: f64,
    last: Option<Duration>,
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

/// The newest answer one model gave for this camera, drawn on every frame until a newer one comes.
struct Looked {
    detections: Vec<Detection>,
    frame_index: u64,
    timestamp: f64,
    /// Regions the model looked at (0: the whole frame).
    regions: usize,
}

/// What a camera's frames go through besides the source: its rate cap, its motion gate, its lane
/// into the shared models, and its events.
struct Pipeline {
    cap: RateCap,
    events: Option<EventEngine>,
    lane: Option<Lane>,
    motion: MotionDetector,
    gate: DetectGate,
    /// Each model's newest answer, by the model's index in the scheduler (none: not looked yet, or
    /// switched off).
    looked: Vec<Option<Looked>>,
    /// Models that have had their first look at this camera since they were switched on.
    first_looked: Vec<bool>,
    /// Bumped whenever `looked` changes: what is drawn and sent is rebuilt then.
    generation: u64,
    shown_generation: u64,
    /// The newest detections of the camera's models, by model (metadata) and all together (drawing).
    shown: Vec<ModelDetections>,
    shown_flat: Vec<Detection>,
    /// This camera's share of the region budget, by how long its frames wait for the model.
    budget: BudgetControl,
    encoder: FrameEncoder,
    /// When this worker started: the gate's clock.
    epoch: Duration,
    /// Packets published (each packet's `seq`).
    packets: u64,
    /// The last look's time, all models together.
    inference_ms: f64,
    /// The fall model the events ask where the pose saw someone go down or vanish (its index in
    /// the scheduler), and its newest answer not yet handed to them.
    fall_model: Option<usize>,
    fall_looked: Option<Looked>,
}

impl Pipeline {
    fn new(ctx: &WorkerContext, config: &CameraConfig) -> Self {
        let (detect_fps, idle, motion) = detection_settings(config, &ctx.deps.detection.get());
        ctx.status.set_region_budget(ctx.deps.detection.get().region_budget);
        let models = ctx.deps.inference.as_ref().map_or(0, |s| s.engines().0.len());
        let mut events = ctx.deps.events.as_ref().map(|hub| {
            let mut engine = hub.engine(&config.camera_id);
            if let Some(fall) = &config.fall {
                engine.set_fall_config(fall.clone());
            }
            engine
        });
        let fall_model = match (&mut events, &ctx.deps.inference) {
            (Some(events), Some(scheduler)) => {
                let found = fall_model_index(scheduler.engines(), &events.fall_config().model);
                events.set_fall_model(found.map(|m| &**scheduler.engines().0[m].model()));
                found
            }
            _ => None,
        };
        Self {
            cap: RateCap::new(),
            events,
            lane: ctx.deps.inference.as_ref().map(|s| s.lane()),
            motion: MotionDetector::new(motion),
            gate: DetectGate::new(detect_fps, idle),
            looked: (0..models).map(|_| None).collect(),
            first_looked: vec![false; models],
            generation: 0,
            shown_generation: u64::MAX,
            shown: Vec::new(),
            shown_flat: Vec::new(),
            budget: BudgetControl::default(),
            encoder: FrameEncoder::default(),
            epoch: ctx.now(),
            packets: 0,
            inference_ms: 0.0,
            fall_model,
            fall_looked: None,
        }
    }

    /// Ends active events and completes their clips, so they play.
    fn finish(&mut self) {
        if let Some(events) = self.events.as_mut() {
            events.finish();
        }
    }

    fn task(&self, model: usize) -> Option<Task> {
        self.lane.as_ref().and_then(|l| l.engines().0.get(model)).map(|e| e.task())
    }

    /// The camera's first pose model: its people feed the person and fall events.
    fn pose_model(&self, wanted: &[usize]) -> Option<usize> {
        wanted.iter().copied().find(|&m| self.task(m) == Some(Task::Pose))
    }

    /// Whether anyone is tracked (events on: or a fall story followed, a person lying where the pose
    /// model no longer sees them), or was seen in the newest poses (events off).
    fn people_tracked(&self, wanted: &[usize]) -> bool {
        match &self.events {
            Some(events) => !events.tracks().is_empty() || events.fall_watch_active(),
            None => self.pose_model(wanted).and_then(|m| self.looked[m].as_ref()).is_some_and(|p| !p.detections.is_empty()),
        }
    }

    /// Whether objects of the camera's event classes are followed (events on), or a detect model saw
    /// something in its newest look (events off): a still scene is looked at again now and then.
    fn objects_tracked(&self, wanted: &[usize]) -> bool {
        match &self.events {
            Some(events) => !events.object_tracks().is_empty(),
            None => wanted
                .iter()
                .filter(|&&m| self.task(m) == Some(Task::Detect))
                .any(|&m| self.looked[m].as_ref().is_some_and(|l| !l.detections.is_empty())),
        }
    }

    /// Forgets the answers of models the camera no longer runs: their detections leave the picture
    /// at once, and a model switched on again gets a first look of its own.
    fn keep_only(&mut self, wanted: &[usize]) {
        for m in 0..self.looked.len() {
            if !wanted.contains(&m) && (self.looked[m].is_some() || self.first_looked[m]) {
                self.looked[m] = None;
                self.first_looked[m] = false;
                self.generation += 1;
            }
        }
    }

    /// Takes the models' newest answer for this camera, if one came; returns the models with a fresh one.
    fn collect(&mut self, ctx: &WorkerContext, id: &str, detect_fps: f64, wanted: &[usize]) -> Vec<usize> {
        let Some(result) = self.lane.as_ref().and_then(Lane::take) else { return Vec::new() };
        ctx.status.record_inference(result.inference_ms, result.queue_ms);
        self.inference_ms = result.inference_ms;
        // At every frame (detect_fps 0) a 10 fps camera's period.
        let period_ms = 1000.0 / if detect_fps > 0.0 { detect_fps } else { 10.0 };
        // In simulated time (`haven analyze`) frames never wait for the model: the regions keep their
        // whole budget, whatever else the machine is doing (the analysis repeats exactly).
        if !ctx.deps.wait_for_models {
            self.budget.observe(result.queue_ms, period_ms);
        }
        ctx.status.set_region_budget(self.budget.share() * ctx.deps.detection.get().region_budget);
        let mut fresh = Vec::new();
        for r in result.results {
            let name = self.lane.as_ref().and_then(|l| l.engines().0.get(r.model)).map(|e| e.model().clone());
            let Some(name) = name else { continue };
            match r.detections {
                Ok(detections) => {
                    ctx.status.record_model(&name, r.inference_ms, detections.len());
                    log::debug!(
                        target: "haven::detect",
                        "[{id}] frame {}: {name}: {} found in {} ({:.1} ms, waited {:.1} ms): {:?}",
                        result.frame_index,
                        detections.len(),
                        match r.regions {
                            0 => "the whole frame".to_string(),
                            n => format!("{n} regions"),
                        },
                        r.inference_ms,
                        result.queue_ms,
                        detections.iter().map(|d| (&*d.class, d.bbox.map(|v| v.round() as i32), (d.score * 100.0).round() / 100.0)).collect::<Vec<_>>()
                    );
                    // The fall model's answer goes to the events (and is shown only where the
                    // camera names the model among its own).
                    if Some(r.model) == self.fall_model {
                        let looked = Looked { detections: detections.clone(), frame_index: result.frame_index, timestamp: result.timestamp, regions: r.regions };
                        self.fall_looked = Some(looked);
                    }
                    // A model switched off while its pass ran: its answer is not shown.
                    if !wanted.contains(&r.model) {
                        continue;
                    }
                    self.looked[r.model] = Some(Looked {
                        detections,
                        frame_index: result.frame_index,
                        timestamp: result.timestamp,
                        regions: r.regions,
                    });
                    self.generation += 1;
                    fresh.push(r.model);
                }
                Err(e) => {
                    log::warn!("[{id}] frame {}: {name}: {e}", result.frame_index);
                    ctx.status.set_error(Some(format!("{name}: {e}")));
                }
            }
        }
        fresh
    }

    /// The detections shown and sent, rebuilt when an answer came or a model was switched off.
    fn refresh_shown(&mut self, wanted: &[usize]) {
        if self.shown_generation == self.generation {
            return;
        }
        self.shown_generation = self.generation;
        let engines = self.lane.as_ref().map(|l| l.engines().clone()).unwrap_or_default();
        self.shown = wanted
            .iter()
            .filter_map(|&m| {
                let looked = self.looked.get(m)?.as_ref()?;
                let engine = engines.0.get(m)?;
                Some(ModelDetections { model: engine.model().clone(), task: engine.task(), detections: looked.detections.clone() })
            })
            .collect();
        self.shown_flat = self.shown.iter().flat_map(|g| g.detections.iter().cloned()).collect();
    }

    /// Hands the frame to the models the gate says are worth a pass.
    #[allow(clippy::too_many_arguments)]
    fn maybe_detect(&mut self, ctx: &WorkerContext, frame: &Mat, frame_index: u64, timestamp: f64, motion: &Motion, watched: bool, wanted: &[usize]) -> Result<(), FrameError> {
        if self.lane.is_none() || wanted.is_empty() {
            return Ok(());
        }
        let (people, objects) = (self.people_tracked(wanted), self.objects_tracked(wanted));
        let now = (ctx.now() - self.epoch).as_secs_f64();
        let decision = self.gate.decide(now, motion.moving, people || objects);
        // A model switched on looks at once, whatever the gate says: a parked car is there though nothing moves.
        let newly: Vec<usize> = wanted.iter().copied().filter(|&m| !self.first_looked[m]).collect();
        let chosen: Vec<usize> = match decision {
            Decision::FirstCheck | Decision::Motion => wanted.to_vec(),
            // Still: the models with something to keep following (people, objects), and new ones.
            Decision::IdleCheck => wanted
                .iter()
                .copied()
                .filter(|&m| newly.contains(&m) || matches!(self.task(m), Some(Task::Pose) if people) || matches!(self.task(m), Some(Task::Detect) if objects))
                .collect(),
            Decision::NoMotion | Decision::RateLimited => newly.clone(),
        };
        if chosen.is_empty() {
            if decision == Decision::NoMotion {
                ctx.status.inferences_skipped.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(());
        }
        let active = self.events.as_ref().map(|e| e.active()).unwrap_or_default();
        let Some(lane) = &self.lane else { return Ok(()) };
        lane.set_priority(if active.iter().any(|e| e.kind == EventKind::Fall) {
            Priority::Fall
        } else if !active.is_empty() {
            Priority::Person
        } else if watched {
            Priority::Watched
        } else {
            Priority::Background
        });
        let mut runs = Vec::with_capacity(chosen.len());
        for &m in &chosen {
            // People: where something moves or people are tracked, in regions (small, far people are
            // found there). Objects: the whole frame at the model's input, so that what stands still
            // (a parked car) is seen as well as what moves.
            let run = match (decision, self.task(m)) {
                (Decision::FirstCheck, _) => ModelRun::whole(m),
                _ if newly.contains(&m) => ModelRun::whole(m),
                (_, Some(Task::Pose)) if ctx.deps.detection.get().regions => {
                    let (regions, region_scale) = self.regions(m, frame, motion, &ctx.deps.detection.get());
                    ModelRun { model: m, regions, region_scale }
                }
                _ => ModelRun::whole(m),
            };
            runs.push(run);
        }
        // The fall model, where a person's story asks for it (with the pose model's look).
        if let (Some(f), Some(events)) = (self.fall_model, &self.events) {
            if !chosen.contains(&f) && chosen.iter().any(|&m| self.task(m) == Some(Task::Pose)) && events.wants_fall_look(timestamp) {
                runs.push(ModelRun::whole(f));
            }
        }
        for &m in &chosen {
            self.first_looked[m] = true;
        }
        let Some(lane) = &self.lane else { return Ok(()) };
        let replaced = lane.replaced();
        lane.submit(Job { frame: frame.try_clone()?, frame_index, timestamp, runs });
        ctx.status.inferences_replaced.fetch_add(lane.replaced() - replaced, Ordering::Relaxed);
        if ctx.deps.wait_for_models {
            lane.wait_idle();
        }
        Ok(())
    }

    /// Where the pose model `model` looks: around what moves and the people tracked, in regions of the
    /// full frame enlarged within the cost of one square pass; none (the whole frame) where regions
    /// would look no finer than the whole frame does, or would be too many.
    fn regions(&self, model: usize, frame: &Mat, motion: &Motion, settings: &DetectionSettings) -> (Vec<Rect>, f32) {
        let Some(lane) = &self.lane else { return (Vec::new(), 1.0) };
        let (w, h) = (frame.cols(), frame.rows());
        let whole = lane.whole_frame_input(model, w as usize, h as usize);
        let tracked: Vec<[f32; 4]> = self.looked[model].iter().flat_map(|p| p.detections.iter().map(|d| d.bbox)).collect();
        let budget = settings.region_budget * self.budget.share();
        let opts = RegionPlan { scale: settings.region_scale, budget, ..RegionPlan::default() };
        let plan = regions::plan(w, h, &motion.boxes, &tracked, &opts, whole);
        log::trace!(target: "haven::detect", "motion {:?}, tracked {:?}: {plan:?}", motion.boxes, tracked);
        match plan {
            Plan::Regions(r, scale) => (r, scale),
            Plan::WholeFrame | Plan::Nothing => (Vec::new(), 1.0),
        }
    }
}

/// The scheduler's index of the fall model `name`: a detect model with a class `Fall`. `None` (the
/// pose rule alone) when the name is empty or no such model is loaded.
fn fall_model_index(engines: &crate::inference::Engines, name: &str) -> Option<usize> {
    if name.is_empty() {
        return None;
    }
    let found = engines.0.iter().position(|e| &**e.model() == name);
    let usable = found.filter(|&m| {
        let e = &engines.0[m];
        e.task() == Task::Detect && e.info().class_names.iter().any(|c| crate::events::story::is_fall_class(c))
    });
    match (found, usable) {
        (Some(_), None) => log::warn!("events.fall.model names \"{name}\", which is not a detect model with a class \"Fall\": falls from the pose rule alone"),
        (None, _) => log::debug!("events.fall.model \"{name}\" is not loaded: falls from the pose rule alone"),
        _ => {}
    }
    usable
}

/// A camera's detect rate, idle re-check interval and motion settings: its own, else `[detection]`'s.
fn detection_settings(config: &CameraConfig, defaults: &DetectionSettings) -> (f64, f64, MotionSettings) {
    let d = config.detection(defaults);
    (d.detect_fps, d.idle_detect_interval_secs, d.motion)
}

/// Processes one frame (if the rate cap lets it through) and counts it, whatever happens to it.
fn finish_frame(ctx: &WorkerContext, pipe: &mut Pipeline, id: &str, frame: &mut Mat, frame_index: u64) {
    if !pipe.cap.admit(ctx) {
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
            if !ctx.config.read().unwrap().loop_video {
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

/// One frame's work: motion, a pass of the shared model when the gate lets it, the newest poses
/// drawn, one JPEG, the events, one packet for every viewer. Nothing is done when nobody consumes
/// the result (no viewer, no events). Without `analyse` (fenced), no model and no events.
fn process(ctx: &WorkerContext, pipe: &mut Pipeline, id: &str, frame: &mut Mat, frame_index: u64, analyse: bool) -> Result<(), FrameError> {
    let timestamp = ctx.deps.clock.wall();
    let (resize_width, jpeg_quality, ai_enabled, (detect_fps, idle, motion_settings), model_names, object_classes) = {
        let c = ctx.config.read().unwrap();
        (c.resize_width, c.jpeg_quality, c.ai_enabled, detection_settings(&c, &ctx.deps.detection.get()), c.model_names(), c.object_event_classes().to_vec())
    };
    // The camera's models that this server has loaded, by their index in the scheduler.
    let wanted: Vec<usize> = match &pipe.lane {
        Some(lane) => model_names.iter().filter_map(|n| lane.engines().0.iter().position(|e| &**e.model() == n.as_str())).collect(),
        None => Vec::new(),
    };
    let infer = analyse && pipe.lane.is_some() && ai_enabled && !wanted.is_empty();
    let watched = ctx.feed.receiver_count() > 0;
    let has_events = pipe.events.is_some() && infer;
    if !watched {
        forget_stale_packet(ctx);
        if !has_events {
            return Ok(());
        }
    }
    if let Some(w) = resize_width {
        let w = w as i32;
        if frame.cols() > w {
            let h = ((frame.rows() as f64) * (w as f64) / (frame.cols() as f64)).round() as i32;
            let mut small = Mat::default();
            imgproc::resize(&*frame, &mut small, Size::new(w, h), 0.0, 0.0, imgproc::INTER_AREA)?;
            *frame = small;
        }
    }
    pipe.gate.set_rates(detect_fps, idle);
    if *pipe.motion.settings() != motion_settings {
        pipe.motion.set_settings(motion_settings);
    }
    let motion = pipe.motion.update(frame)?;
    ctx.status.set_motion(motion.moving, motion.area);

    // New answers first, so that this frame shows them and the events see them with this frame.
    let fresh = if infer {
        pipe.keep_only(&wanted);
        let fresh = pipe.collect(ctx, id, detect_fps, &wanted);
        pipe.maybe_detect(ctx, frame, frame_index, timestamp, &motion, watched, &wanted)?;
        fresh
    } else {
        pipe.keep_only(&[]);
        Vec::new()
    };
    pipe.refresh_shown(if infer { &wanted } else { &[] });

    let encode_started = Instant::now();
    let (width, height) = (frame.cols(), frame.rows());
    ctx.status.set_frame_size(width, height);
    // What is drawn changes with each answer: the JPEG cache keys on it.
    let drawn_at = (!pipe.shown.is_empty()).then_some(pipe.shown_generation as f64);
    pipe.encoder.begin(ctx.now(), motion.moving, drawn_at, (width, height));
    let wanted_renditions = if watched { ctx.demand.current() } else { Vec::new() };
    // The full annotated JPEG: for the events' clips and snapshots, and for viewers of the full frame.
    let full_spec = JpegSpec { width, height, quality: jpeg_quality, drawn: true };
    let full_wanted = wanted_renditions.iter().any(|(r, _)| spec_of(r, width, height, jpeg_quality) == full_spec);
    let full = match has_events || full_wanted {
        true => Some(jpeg(ctx, &mut pipe.encoder, frame, full_spec, &pipe.shown_flat)?),
        false => None,
    };

    let pose_model = pipe.pose_model(&wanted);
    let active_events: Vec<Event> = match (pipe.events.as_mut().filter(|_| infer), &full) {
        (Some(events), Some(jpeg)) => {
            events.push_frame(jpeg, timestamp);
            events.set_object_classes(&object_classes);
            events.set_frame_size(width, height);
            for &m in &fresh {
                let Some(looked) = pipe.looked[m].as_ref() else { continue };
                let Some(engine) = pipe.lane.as_ref().and_then(|l| l.engines().0.get(m)) else { continue };
                match engine.task() {
                    Task::Pose if Some(m) == pose_model => {
                        events.on_detections(&looked.detections, looked.timestamp, Some(jpeg));
                    }
                    Task::Detect => {
                        events.on_objects(engine.model(), &looked.detections, looked.timestamp, Some(jpeg));
                    }
                    Task::Pose => {}
                }
            }
            // The fall model's look, after the pose model's of the same frame.
            if let (Some(looked), Some(f)) = (pipe.fall_looked.take(), pipe.fall_model) {
                if let Some(engine) = pipe.lane.as_ref().and_then(|l| l.engines().0.get(f)) {
                    events.on_fall_model(engine.model(), &looked.detections, looked.timestamp, Some(jpeg));
                }
            }
            events.active()
        }
        _ => Vec::new(),
    };
    if ctx.feed.receiver_count() == 0 {
        return Ok(()); // encoded for the events' clips only: no message to build
    }
    let mut renditions = Vec::with_capacity(wanted_renditions.len());
    for (rendition, formats) in wanted_renditions {
        let spec = spec_of(&rendition, width, height, jpeg_quality);
        let jpeg = jpeg(ctx, &mut pipe.encoder, frame, spec, &pipe.shown_flat)?;
        let meta = RenditionMeta { width: spec.width, height: spec.height, quality: spec.quality, overlay: rendition.overlay };
        renditions.push(EncodedRendition { rendition, formats, meta, jpeg });
    }
    let encode_ms = encode_started.elapsed().as_secs_f64() * 1000.0;
    // `seq` grows across the camera's restarts too: viewers keep their feed and wait for a higher one.
    let previous_seq = match &*ctx.feed.borrow() {
        Feed::Frame(p) => p.seq,
        _ => 0,
    };
    pipe.packets = pipe.packets.max(previous_seq) + 1;
    // Which frame the newest people (or, without a pose model, objects) come from.
    let poses = pose_model.or(wanted.first().copied()).and_then(|m| pipe.looked[m].as_ref()).filter(|_| infer);
    let packet = FramePacket::new(
        FrameMetadata {
            camera_id: id,
            seq: pipe.packets,
            frame_index,
            timestamp,
            fps: ((ctx.status.fps() as f64) * 100.0).round() / 100.0,
            width,
            height,
            ai_enabled: infer,
            inference_ms: (infer && !pipe.shown.is_empty()).then(|| (pipe.inference_ms * 100.0).round() / 100.0),
            detections: &pipe.shown,
            poses: poses.map(|p| PosesMeta {
                frame_index: p.frame_index,
                timestamp: p.timestamp,
                age_ms: ((timestamp - p.timestamp) * 1000.0 * 10.0).round() / 10.0,
                regions: p.regions,
            }),
            motion: infer.then_some(&motion),
            events: &active_events,
            rendition: None,
        },
        full,
        renditions,
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
        "[{id}] frame {}: published {:.1} ms after capture (encode {encode_ms:.1} ms)",
        pipe.packets,
        (ctx.deps.clock.wall() - timestamp) * 1000.0,
    );
    Ok(())
}

/// A camera nobody watches publishes no packets, so the one in its feed grows old: drop it, so that
/// the next viewer's first frame (and a snapshot) is the next one processed, not a scene from
/// whenever someone last watched. Viewers are not woken: there are none.
fn forget_stale_packet(ctx: &WorkerContext) {
    ctx.feed.send_if_modified(|feed| {
        if matches!(feed, Feed::Frame(_)) {
            *feed = Feed::Waiting;
        }
        false
    });
}

/// What a rendition is for this frame: its size, its quality, whether the server draws the poses.
fn spec_of(rendition: &Rendition, width: i32, height: i32, camera_quality: u8) -> JpegSpec {
    let (w, h) = rendition.size(width, height);
    JpegSpec { width: w, height: h, quality: rendition.quality_or(camera_quality), drawn: rendition.overlay == Overlay::Server }
}

/// One of the frame's JPEGs, counted when it is encoded now: the full frame in `frames_encoded`, other
/// renditions in `renditions_encoded`.
fn jpeg(ctx: &WorkerContext, encoder: &mut FrameEncoder, frame: &Mat, spec: JpegSpec, detections: &[Detection]) -> Result<Bytes, FrameError> {
    let (jpeg, encoded) = encoder.jpeg(frame, spec, detections)?;
    if encoded {
        let full = (spec.width, spec.height) == (frame.cols(), frame.rows()) && spec.drawn;
        let counter = if full { &ctx.status.frames_encoded } else { &ctx.status.renditions_encoded };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    Ok(jpeg)
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
