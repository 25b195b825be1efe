//! One inference queue shared by every camera.
//!
//! A camera hands over its newest frame through its [`Lane`] and goes on streaming; it never waits
//! for the model. Each lane holds at most one waiting frame (a newer one replaces it: a camera that
//! is behind skips frames instead of queueing them) and has at most one frame in the model at a
//! time. Workers take a camera with a fall in progress first; otherwise the frame that has waited
//! longest, a person event's wait counting twice and a watched camera's one and a half times, so
//! those come first without starving the rest, and equals are served in turn. The interface is
//! narrow (frame in, detections out) so that batching, other back-ends or remote workers can plug
//! in here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use opencv::core::{Mat, Rect};
use opencv::prelude::*;

use super::{Detection, Engines, EngineError, SharedEngine};

/// Who goes first when several cameras wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Priority {
    /// Nobody watches and nothing is happening: events still need the frames.
    Background = 0,
    /// Someone is watching the camera.
    Watched = 1,
    /// A person event is in progress.
    Person = 2,
    /// A fall is in progress: always first.
    Fall = 3,
}

impl Priority {
    fn from_u8(v: u8) -> Self {
        match v {
            3 => Priority::Fall,
            2 => Priority::Person,
            1 => Priority::Watched,
            _ => Priority::Background,
        }
    }

    /// How much a waiting frame's wait counts.
    fn weight(self) -> f64 {
        match self {
            Priority::Background => 1.0,
            Priority::Watched => 1.5,
            Priority::Person | Priority::Fall => 2.0,
        }
    }
}

/// A frame handed to the models: decoded once, looked at by each model it names.
pub struct Job {
    /// The decoded BGR frame (owned: the camera goes on with the next one; a copy from
    /// `frame_pool`, given back there once the models are done).
    pub frame: Mat,
    pub frame_index: u64,
    /// Capture time, seconds since the Unix epoch.
    pub timestamp: f64,
    /// One pass per model.
    pub runs: Vec<Run>,
}

/// One model's pass over a [`Job`]'s frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The model: its index in the scheduler's [`Engines`].
    pub model: usize,
    /// Parts of the frame to look at, in its pixels; empty means the whole frame.
    pub regions: Vec<Rect>,
    /// Regions are looked at this many times the frame's own resolution.
    pub region_scale: f32,
}

impl Run {
    /// The whole frame, at the model's own input size.
    pub fn whole(model: usize) -> Self {
        Self { model, regions: Vec::new(), region_scale: 1.0 }
    }
}

/// What the models made of a [`Job`].
#[derive(Debug)]
pub struct Inferred {
    pub frame_index: u64,
    pub timestamp: f64,
    /// How long the frame waited for a worker.
    pub queue_ms: f64,
    /// How long the models took together (preparing their inputs included).
    pub inference_ms: f64,
    /// Each model's answer, in the job's order.
    pub results: Vec<ModelResult>,
}

/// One model's answer about a frame.
#[derive(Debug)]
pub struct ModelResult {
    pub model: usize,
    pub detections: Result<Vec<Detection>, EngineError>,
    /// How long this model took (its share of a batch, on a GPU).
    pub inference_ms: f64,
    /// Regions looked at (0: the whole frame).
    pub regions: usize,
}

impl Inferred {
    /// The first model's detections (tests, and callers with one model).
    pub fn detections(&self) -> Option<&Result<Vec<Detection>, EngineError>> {
        self.results.first().map(|r| &r.detections)
    }
}

struct Slot {
    waiting: Option<Job>,
    /// When the lane's oldest unserved frame arrived; a replacing frame keeps its place in line.
    waiting_since: Instant,
    running: bool,
    lane: Weak<LaneShared>,
}

#[derive(Default)]
struct State {
    slots: HashMap<u64, Slot>,
    stopping: bool,
}

struct Shared {
    engines: Engines,
    /// Whole-frame inputs letterboxed once and given to more than one model.
    shared_inputs: AtomicU64,
    state: Mutex<State>,
    wake: Condvar,
    next_lane: AtomicU64,
}

/// The lane's side that the workers write to.
struct LaneShared {
    result: Mutex<Option<Inferred>>,
    priority: AtomicU8,
    replaced: AtomicU64,
}

/// Owns the worker threads; dropping it stops them once their current frame is done.
pub struct Scheduler {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

/// Worker threads for `cores` CPU cores: the model spreads one pass over every core itself (rayon),
/// so one worker per two cores keeps them busy without passes fighting over them.
pub fn default_workers(cores: usize) -> usize {
    (cores / 2).max(1)
}

impl Scheduler {
    /// One model (the pose model of servers before models had names, and tests).
    pub fn new(engine: Arc<SharedEngine>, workers: usize) -> Arc<Self> {
        Self::with_engines(Engines(vec![engine]), workers)
    }

    /// Every model of the server behind one queue: a frame waits once, whatever the models it needs.
    pub fn with_engines(engines: Engines, workers: usize) -> Arc<Self> {
        let shared = Arc::new(Shared {
            engines,
            shared_inputs: AtomicU64::new(0),
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            next_lane: AtomicU64::new(1),
        });
        let workers = (0..workers.max(1))
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("haven-infer-{i}"))
                    .spawn(move || work(&shared))
                    .expect("spawn an inference worker")
            })
            .collect();
        Arc::new(Self { shared, workers })
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// The first model (the pose model where there is one).
    pub fn engine(&self) -> &Arc<SharedEngine> {
        &self.shared.engines.0[0]
    }

    pub fn engines(&self) -> &Engines {
        &self.shared.engines
    }

    /// Whole-frame inputs letterboxed once and given to more than one model.
    pub fn shared_inputs(&self) -> u64 {
        self.shared.shared_inputs.load(Ordering::Relaxed)
    }

    /// A camera's way in; its waiting frame is dropped with it.
    pub fn lane(self: &Arc<Self>) -> Lane {
        let id = self.shared.next_lane.fetch_add(1, Ordering::Relaxed);
        let inner = Arc::new(LaneShared {
            result: Mutex::new(None),
            priority: AtomicU8::new(Priority::Background as u8),
            replaced: AtomicU64::new(0),
        });
        self.shared.state.lock().unwrap().slots.insert(
            id,
            Slot { waiting: None, waiting_since: Instant::now(), running: false, lane: Arc::downgrade(&inner) },
        );
        Lane { id, shared: self.shared.clone(), inner }
    }

    /// Frames waiting for a worker, all cameras together.
    pub fn waiting(&self) -> usize {
        self.shared.state.lock().unwrap().slots.values().filter(|s| s.waiting.is_some()).count()
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shared.state.lock().unwrap().stopping = true;
        self.shared.wake.notify_all();
    }
}

/// One camera's place in the shared queue.
pub struct Lane {
    id: u64,
    shared: Arc<Shared>,
    inner: Arc<LaneShared>,
}

impl Lane {
    /// Hands a frame over; a frame of this camera still waiting is replaced (and counted).
    pub fn submit(&self, job: Job) {
        let replaced = {
            let mut state = self.shared.state.lock().unwrap();
            let Some(slot) = state.slots.get_mut(&self.id) else { return };
            let old = slot.waiting.replace(job);
            if old.is_none() {
                slot.waiting_since = Instant::now();
            }
            old
        };
        if let Some(old) = replaced {
            crate::frame_pool::give_back(old.frame);
            self.inner.replaced.fetch_add(1, Ordering::Relaxed);
        }
        self.shared.wake.notify_one();
    }

    /// Whether a frame of this camera is waiting or in the model.
    pub fn busy(&self) -> bool {
        let state = self.shared.state.lock().unwrap();
        state.slots.get(&self.id).is_some_and(|s| s.running || s.waiting.is_some())
    }

    /// Blocks until this camera's frame has been through its models (its result is then waiting
    /// for `take`): `haven analyze` runs a video in simulated time, where the models answer before
    /// the next frame.
    pub fn wait_idle(&self) {
        while self.busy() {
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
    }

    /// The newest result not yet taken.
    pub fn take(&self) -> Option<Inferred> {
        self.inner.result.lock().unwrap().take()
    }

    pub fn set_priority(&self, p: Priority) {
        self.inner.priority.store(p as u8, Ordering::Relaxed);
    }

    /// The network input a whole `w` x `h` frame is looked at in by `model` (what one pass over it costs).
    pub fn whole_frame_input(&self, model: usize, w: usize, h: usize) -> (usize, usize) {
        self.shared.engines.0.get(model).map_or((w, h), |e| e.input_for(w, h))
    }

    /// The models behind this lane.
    pub fn engines(&self) -> &Engines {
        &self.shared.engines
    }

    /// Frames that a newer frame replaced before a worker took them.
    pub fn replaced(&self) -> u64 {
        self.inner.replaced.load(Ordering::Relaxed)
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        self.shared.state.lock().unwrap().slots.remove(&self.id);
    }
}

/// The waiting frame to run next: a fall's first, then the longest weighted wait (`whole_only`: among
/// frames looked at whole, the ones a batch can take).
fn pick(state: &mut State, whole_only: bool) -> Option<(u64, Job, Instant, Arc<LaneShared>)> {
    let now = Instant::now();
    let rank = |s: &Slot| {
        let p = Priority::from_u8(s.lane.upgrade().map_or(0, |l| l.priority.load(Ordering::Relaxed)));
        ((p == Priority::Fall) as u8, (now - s.waiting_since).as_secs_f64() * p.weight())
    };
    let (&id, _) = state
        .slots
        .iter()
        .filter(|(_, s)| !s.running && s.waiting.as_ref().is_some_and(|j| !whole_only || j.is_whole()))
        .max_by(|(_, a), (_, b)| {
            let (ra, rb) = (rank(a), rank(b));
            ra.0.cmp(&rb.0).then(ra.1.total_cmp(&rb.1))
        })?;
    let slot = state.slots.get_mut(&id)?;
    let lane = slot.lane.upgrade()?;
    slot.running = true;
    Some((id, slot.waiting.take()?, slot.waiting_since, lane))
}

impl Job {
    /// Whether every model looks at the whole frame (a batch can take it).
    fn is_whole(&self) -> bool {
        self.runs.iter().all(|r| r.regions.is_empty())
    }
}

/// Runs a job's models over its frame, one pass each. Models that take a letterboxed whole frame of
/// the same input size share one: the frame is resized and padded once for all of them.
fn run_job(shared: &Shared, job: &Job) -> Vec<ModelResult> {
    let (w, h) = (job.frame.cols().max(0) as usize, job.frame.rows().max(0) as usize);
    let mut inputs: Vec<((usize, usize), Result<super::Prepared, String>, usize)> = Vec::new();
    let mut out = Vec::with_capacity(job.runs.len());
    for run in &job.runs {
        let Some(engine) = shared.engines.0.get(run.model) else { continue };
        let started = Instant::now();
        let detections = if run.regions.is_empty() && engine.takes_letterboxed() {
            let size = engine.input_for(w, h);
            let i = match inputs.iter().position(|(s, _, _)| *s == size) {
                Some(i) => i,
                None => {
                    let made = super::pose::letterbox(&job.frame, size).map(|(boxed, lb)| super::Prepared::new(boxed, lb)).map_err(|e| e.to_string());
                    inputs.push((size, made, 0));
                    inputs.len() - 1
                }
            };
            inputs[i].2 += 1;
            if inputs[i].2 == 2 {
                shared.shared_inputs.fetch_add(1, Ordering::Relaxed);
            }
            match &inputs[i].1 {
                Ok(prepared) => engine.detect_letterboxed(&job.frame, prepared),
                Err(_) => engine.detect_regions(&job.frame, &[], 1.0),
            }
        } else {
            engine.detect_regions(&job.frame, &run.regions, run.region_scale)
        };
        out.push(ModelResult { model: run.model, detections, inference_ms: started.elapsed().as_secs_f64() * 1000.0, regions: run.regions.len() });
    }
    out
}

/// Several cameras' whole frames in one pass per model (an engine that batches: a GPU).
fn run_batch(shared: &Shared, jobs: &[&Job]) -> Vec<Vec<ModelResult>> {
    let mut out: Vec<Vec<ModelResult>> = jobs.iter().map(|_| Vec::new()).collect();
    for (m, engine) in shared.engines.0.iter().enumerate() {
        let mine: Vec<usize> = (0..jobs.len()).filter(|&j| jobs[j].runs.iter().any(|r| r.model == m)).collect();
        if mine.is_empty() {
            continue;
        }
        let started = Instant::now();
        let results = engine.detect_batch(&mine.iter().map(|&j| &jobs[j].frame).collect::<Vec<_>>());
        let ms = started.elapsed().as_secs_f64() * 1000.0 / mine.len() as f64;
        for (j, detections) in mine.into_iter().zip(results) {
            out[j].push(ModelResult { model: m, detections, inference_ms: ms, regions: 0 });
        }
    }
    out
}

/// A worker: takes the next frame (with engines that batch, and that frame looked at whole, up to
/// `max_batch` whole frames of other cameras in the same order), runs its models, hands each lane its result.
fn work(shared: &Shared) {
    let max_batch = shared.engines.0.iter().map(|e| e.max_batch()).min().unwrap_or(1);
    loop {
        let batch = {
            let mut state = shared.state.lock().unwrap();
            loop {
                if state.stopping {
                    return;
                }
                if let Some(first) = pick(&mut state, false) {
                    let mut batch = vec![first];
                    while batch.len() < max_batch && batch[0].1.is_whole() {
                        match pick(&mut state, true) {
                            Some(next) => batch.push(next),
                            None => break,
                        }
                    }
                    break batch;
                }
                state = shared.wake.wait(state).unwrap();
            }
        };
        let started = Instant::now();
        let results = match batch.as_slice() {
            [(_, job, _, _)] => vec![run_job(shared, job)],
            _ => run_batch(shared, &batch.iter().map(|(_, job, _, _)| job).collect::<Vec<_>>()),
        };
        let inference_ms = started.elapsed().as_secs_f64() * 1000.0;
        let mut ids = Vec::with_capacity(batch.len());
        for ((id, job, since, lane), results) in batch.into_iter().zip(results) {
            *lane.result.lock().unwrap() = Some(Inferred {
                frame_index: job.frame_index,
                timestamp: job.timestamp,
                queue_ms: (started - since).as_secs_f64() * 1000.0,
                inference_ms,
                results,
            });
            crate::frame_pool::give_back(job.frame);
            ids.push(id);
        }
        let mut state = shared.state.lock().unwrap();
        for id in ids {
            if let Some(slot) = state.slots.get_mut(&id) {
                slot.running = false;
            }
        }
        drop(state);
        // The lanes may have frames waiting that only their running ones held back.
        shared.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::AiEngine;
    use opencv::core::{Scalar, CV_8UC3};
    use std::time::Duration;

    /// Takes `ms` per frame and remembers which frames it saw (the frame's first pixel is its number).
    struct SlowEngine {
        ms: u64,
        seen: Mutex<Vec<u8>>,
    }

    impl AiEngine for SlowEngine {
        fn name(&self) -> String {
            "slow".into()
        }
        fn detect(&self, frame: &Mat) -> Result<Vec<Detection>, EngineError> {
            std::thread::sleep(Duration::from_millis(self.ms));
            self.seen.lock().unwrap().push(*frame.at_2d::<opencv::core::Vec3b>(0, 0)?.first().unwrap());
            Ok(Vec::new())
        }
    }

    fn numbered(n: u8) -> Job {
        let frame = Mat::new_rows_cols_with_default(4, 4, CV_8UC3, Scalar::all(n as f64)).unwrap();
        Job { frame, frame_index: n as u64, timestamp: n as f64, runs: vec![Run::whole(0)] }
    }

    fn scheduler(ms: u64, workers: usize) -> (Arc<Scheduler>, Arc<SlowEngine>) {
        let engine = Arc::new(SlowEngine { ms, seen: Mutex::new(Vec::new()) });
        (Scheduler::new(SharedEngine::new(engine.clone()), workers), engine)
    }

    /// Until a worker has taken every waiting frame (on a loaded machine that may take a while).
    fn until_taken(s: &Scheduler) {
        let until = Instant::now() + Duration::from_secs(10);
        while s.waiting() > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn wait_idle(lanes: &[&Lane]) {
        let until = Instant::now() + Duration::from_secs(10);
        while lanes.iter().any(|l| l.busy()) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_camera_behind_the_model_skips_to_its_newest_frame_instead_of_queueing() {
        let (s, engine) = scheduler(100, 1);
        let lane = s.lane();
        lane.submit(numbered(1));
        until_taken(&s); // frame 1 is in the model
        for n in 2..=5 {
            lane.submit(numbered(n));
        }
        wait_idle(&[&lane]);
        assert_eq!(*engine.seen.lock().unwrap(), vec![1, 5]);
        assert_eq!(lane.replaced(), 3);
        assert_eq!(lane.take().unwrap().frame_index, 5, "the newest result is kept");
        assert!(lane.take().is_none(), "a result is taken once");
    }

    #[test]
    fn a_camera_never_has_two_frames_in_the_model_at_once() {
        let (s, engine) = scheduler(200, 2);
        let lane = s.lane();
        lane.submit(numbered(1));
        until_taken(&s);
        lane.submit(numbered(2));
        std::thread::sleep(Duration::from_millis(20));
        // The second worker is idle, yet frame 2 waits for frame 1.
        assert!(lane.take().is_none());
        wait_idle(&[&lane]);
        assert_eq!(*engine.seen.lock().unwrap(), vec![1, 2]);
    }

    #[test]
    fn waiting_cameras_are_served_in_turn() {
        let (s, engine) = scheduler(5, 1);
        let lanes: Vec<Lane> = (0..3).map(|_| s.lane()).collect();
        // Each camera submits as fast as it can for a while: every one gets about a third.
        let until = Instant::now() + Duration::from_millis(600);
        let mut counts = [0usize; 3];
        while Instant::now() < until {
            for (i, lane) in lanes.iter().enumerate() {
                if lane.take().is_some() {
                    counts[i] += 1;
                }
                if !lane.busy() {
                    lane.submit(numbered(i as u8));
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
        assert!(min > 0 && max - min <= 2, "served {counts:?}");
        drop(engine);
    }

    /// A scheduler whose one worker is busy for `ms` with frame 9 (taken first, however late the
    /// worker wakes), while the test queues up others.
    fn occupied(ms: u64) -> (Arc<Scheduler>, Arc<SlowEngine>, Lane) {
        let (s, engine) = scheduler(ms, 1);
        let busy = s.lane();
        busy.set_priority(Priority::Fall);
        busy.submit(numbered(9));
        until_taken(&s);
        (s, engine, busy)
    }

    #[test]
    fn a_camera_with_an_event_goes_first_then_a_watched_one() {
        let (s, engine, busy) = occupied(40);
        let (quiet, watched, person) = (s.lane(), s.lane(), s.lane());
        quiet.submit(numbered(1));
        watched.set_priority(Priority::Watched);
        watched.submit(numbered(2));
        person.set_priority(Priority::Person);
        person.submit(numbered(3));
        wait_idle(&[&busy, &quiet, &watched, &person]);
        assert_eq!(*engine.seen.lock().unwrap(), vec![9, 3, 2, 1]);
    }

    #[test]
    fn a_fall_goes_first_however_long_the_others_waited() {
        let (s, engine, busy) = occupied(150);
        let person = s.lane();
        person.set_priority(Priority::Person);
        person.submit(numbered(1));
        std::thread::sleep(Duration::from_millis(30));
        let fall = s.lane();
        fall.set_priority(Priority::Fall);
        fall.submit(numbered(2));
        wait_idle(&[&busy, &person, &fall]);
        assert_eq!(*engine.seen.lock().unwrap(), vec![9, 2, 1]);
    }

    #[test]
    fn a_camera_nobody_watches_is_not_starved_by_watched_ones() {
        let (s, engine) = scheduler(20, 1);
        let quiet = s.lane();
        let watched: Vec<Lane> = (0..3).map(|_| s.lane()).collect();
        watched.iter().for_each(|l| l.set_priority(Priority::Watched));
        quiet.submit(numbered(7));
        // The watched cameras keep the worker busy with fresh frames; the quiet one's wait grows
        // until it outweighs theirs.
        let until = Instant::now() + Duration::from_millis(400);
        while Instant::now() < until && !engine.seen.lock().unwrap().contains(&7) {
            for (i, l) in watched.iter().enumerate() {
                if !l.busy() {
                    l.submit(numbered(i as u8));
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(engine.seen.lock().unwrap().contains(&7), "the quiet camera was never served");
    }

    #[test]
    fn results_say_how_long_the_frame_waited_and_ran() {
        let (s, _engine) = scheduler(30, 1);
        let (a, b) = (s.lane(), s.lane());
        a.submit(numbered(1));
        b.submit(numbered(2));
        wait_idle(&[&a, &b]);
        let (ra, rb) = (a.take().unwrap(), b.take().unwrap());
        assert!(ra.inference_ms >= 25.0 && rb.inference_ms >= 25.0, "{ra:?} {rb:?}");
        assert!(rb.queue_ms >= 25.0, "the second frame waited for the first: {rb:?}");
    }

    #[test]
    fn dropping_a_lane_drops_its_waiting_frame() {
        let (s, engine) = scheduler(50, 1);
        let (a, b) = (s.lane(), s.lane());
        a.submit(numbered(1));
        until_taken(&s);
        b.submit(numbered(2));
        drop(b);
        wait_idle(&[&a]);
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(*engine.seen.lock().unwrap(), vec![1]);
        assert_eq!(s.waiting(), 0);
    }

    #[test]
    fn a_frame_for_two_models_waits_once_and_each_model_looks_at_it_once() {
        let pose = Arc::new(SlowEngine { ms: 10, seen: Mutex::new(Vec::new()) });
        let objects = Arc::new(SlowEngine { ms: 10, seen: Mutex::new(Vec::new()) });
        let s = Scheduler::with_engines(Engines::named(vec![("pose", pose.clone()), ("objects", objects.clone())]), 1);
        let (both, only_pose) = (s.lane(), s.lane());
        let mut job = numbered(1);
        job.runs = vec![Run::whole(0), Run::whole(1)];
        both.submit(job);
        only_pose.submit(numbered(2));
        wait_idle(&[&both, &only_pose]);
        let r = both.take().unwrap();
        assert_eq!(r.results.iter().map(|m| m.model).collect::<Vec<_>>(), vec![0, 1]);
        assert!(r.results.iter().all(|m| m.detections.is_ok() && m.inference_ms >= 9.0), "{r:?}");
        assert_eq!(only_pose.take().unwrap().results.len(), 1);
        let (mut p, o) = (pose.seen.lock().unwrap().clone(), objects.seen.lock().unwrap().clone());
        p.sort();
        assert_eq!((p, o), (vec![1, 2], vec![1]));
        assert_eq!((s.engines().0[0].calls(), s.engines().0[1].calls()), (2, 1));
        assert_eq!(s.engines().get("objects").unwrap().model().as_ref(), "objects");
    }

    /// Takes up to `max` whole frames per pass and remembers each pass's frames.
    struct BatchEngine {
        max: usize,
        passes: Mutex<Vec<Vec<u8>>>,
    }

    impl AiEngine for BatchEngine {
        fn name(&self) -> String {
            "batch".into()
        }
        fn detect(&self, frame: &Mat) -> Result<Vec<Detection>, EngineError> {
            self.detect_batch(&[frame]).pop().unwrap()
        }
        fn max_batch(&self) -> usize {
            self.max
        }
        fn detect_batch(&self, frames: &[&Mat]) -> Vec<Result<Vec<Detection>, EngineError>> {
            std::thread::sleep(Duration::from_millis(100));
            let numbers = frames.iter().map(|f| *f.at_2d::<opencv::core::Vec3b>(0, 0).unwrap().first().unwrap()).collect();
            self.passes.lock().unwrap().push(numbers);
            frames.iter().map(|_| Ok(Vec::new())).collect()
        }
    }

    #[test]
    fn an_engine_that_batches_gets_the_waiting_whole_frames_in_one_pass() {
        let engine = Arc::new(BatchEngine { max: 3, passes: Mutex::new(Vec::new()) });
        let s = Scheduler::new(SharedEngine::new(engine.clone()), 1);
        let lanes: Vec<Lane> = (0..6).map(|_| s.lane()).collect();
        lanes[0].submit(numbered(1));
        until_taken(&s); // frame 1 is in the model, alone
        let mut in_regions = numbered(9);
        in_regions.runs[0].regions = vec![Rect::new(0, 0, 2, 2)];
        lanes[1].submit(in_regions);
        for n in 2..=5 {
            lanes[n as usize].submit(numbered(n));
        }
        wait_idle(&lanes.iter().collect::<Vec<_>>());
        // The frame looked at in regions waited longest: it goes alone, then three whole frames in one
        // pass (the longest waits first), then the last one.
        assert_eq!(*engine.passes.lock().unwrap(), vec![vec![1], vec![9], vec![2, 3, 4], vec![5]]);
        for (lane, n) in lanes.iter().zip([1, 9, 2, 3, 4, 5]) {
            let r = lane.take().unwrap();
            assert_eq!((r.frame_index, r.results[0].regions), (n, (n == 9) as usize));
            assert!(r.results[0].detections.is_ok());
        }
        assert_eq!(s.engine().calls(), 6);
    }
}
