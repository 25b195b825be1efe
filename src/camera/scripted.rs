//! Frame sources that play a script in simulated time, and a model that counts its passes, for unit
//! tests of the worker without FFmpeg or weights.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opencv::core::{Mat, Scalar, CV_8UC3};
use tokio::sync::watch;

use super::clock::{Clock, SimClock};
use super::packet::Feed;
use super::source::{FrameSource, Opener, SourceError, SourceInfo};
use super::status::CameraStatus;
use super::worker::{CameraDeps, WorkerContext};
use crate::events::EventHub;
use crate::inference::scheduler::Scheduler;
use crate::inference::{AiEngine, Detection, EngineError, Engines, ModelInfo, Task};
use crate::camera::config::{CameraConfig, CaptureSettings};
use crate::config::Live;

/// What one open of the source gives.
pub enum Opening {
    /// A file of `frames` frames at `fps`, each read taking `read_cost` of simulated time.
    File { frames: usize, fps: f64, read_cost: Duration },
    /// A live camera that plays `steps`, then stalls.
    Live { fps: f64, steps: Vec<Step> },
    /// The source cannot be opened.
    Unreachable,
}

#[derive(Debug, Clone, Copy)]
pub enum Step {
    Frame,
    /// A read error (the camera went away).
    Fail,
    /// The stream ends.
    End,
    /// No frame comes: simulated time runs on in steps; the read blocks until the source is
    /// opened again (the real reader is bounded by its read timeout).
    Stall,
}

/// Hands out the scripted openings in order; once they run out it stops the camera.
pub struct ScriptedOpener {
    clock: Arc<SimClock>,
    openings: Mutex<VecDeque<Opening>>,
    /// Simulated time of every open, and the camera's last error at that moment.
    pub opens: Mutex<Vec<(Duration, Option<String>)>>,
    /// Frames read from every source this opener made (not skipped ones).
    pub reads: Arc<AtomicUsize>,
    /// Set when all openings are used up, or when `reads` reaches `stop_after_reads`.
    stop: Mutex<Option<Arc<AtomicBool>>>,
    stop_after_reads: Option<usize>,
    status: Mutex<Option<Arc<CameraStatus>>>,
    /// Released by each open: a stalled source of an earlier open gives up.
    released: Mutex<Arc<AtomicBool>>,
}

impl ScriptedOpener {
    pub fn new(clock: Arc<SimClock>, openings: Vec<Opening>) -> Self {
        Self {
            clock,
            openings: Mutex::new(openings.into()),
            opens: Mutex::default(),
            reads: Arc::default(),
            stop: Mutex::default(),
            stop_after_reads: None,
            status: Mutex::default(),
            released: Mutex::new(Arc::default()),
        }
    }

    /// Sets the camera's stop flag once this many frames were read (decoded, not skipped).
    pub fn stop_after_reads(mut self, n: usize) -> Self {
        self.stop_after_reads = Some(n);
        self
    }

    /// The camera it serves: its stop flag, and its status to note errors from.
    pub fn attach(&self, stop: Arc<AtomicBool>, status: Arc<CameraStatus>) {
        *self.stop.lock().unwrap() = Some(stop);
        *self.status.lock().unwrap() = Some(status);
    }

    pub fn open_times(&self) -> Vec<f64> {
        self.opens.lock().unwrap().iter().map(|(t, _)| t.as_secs_f64()).collect()
    }

    fn stop_camera(&self) {
        if let Some(stop) = &*self.stop.lock().unwrap() {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

impl Opener for ScriptedOpener {
    fn open(&self, config: &CameraConfig, _: &CaptureSettings) -> Result<Box<dyn FrameSource>, SourceError> {
        let error = self.status.lock().unwrap().as_ref().and_then(|s| s.last_error());
        self.opens.lock().unwrap().push((self.clock.monotonic(), error));
        let released = std::mem::take(&mut *self.released.lock().unwrap());
        released.store(true, Ordering::Relaxed);
        let Some(opening) = self.openings.lock().unwrap().pop_front() else {
            self.stop_camera();
            return Err(SourceError::Open(config.source.clone()));
        };
        let stop = self.stop.lock().unwrap().clone().filter(|_| self.stop_after_reads.is_some());
        let source = Scripted {
            name: config.source.clone(),
            clock: self.clock.clone(),
            reads: self.reads.clone(),
            stop_at: stop.map(|s| (self.stop_after_reads.unwrap_or(usize::MAX), s)),
            position: 0,
            released: self.released.lock().unwrap().clone(),
        };
        match opening {
            Opening::File { frames, fps, read_cost } => Ok(Box::new(ScriptedFile { source, frames, fps, read_cost })),
            Opening::Live { fps, steps } => Ok(Box::new(ScriptedLive { source, fps, steps: steps.into() })),
            Opening::Unreachable => Err(SourceError::Open(config.source.clone())),
        }
    }
}

/// What both kinds of scripted source share.
struct Scripted {
    name: String,
    clock: Arc<SimClock>,
    reads: Arc<AtomicUsize>,
    stop_at: Option<(usize, Arc<AtomicBool>)>,
    /// The next frame's index.
    position: usize,
    released: Arc<AtomicBool>,
}

impl Scripted {
    /// A small frame whose pixels tell its index.
    fn frame(&mut self, frame: &mut Mat) -> Result<bool, SourceError> {
        let value = (self.position % 256) as f64;
        *frame = Mat::new_rows_cols_with_default(48, 64, CV_8UC3, Scalar::all(value))
            .map_err(|e| SourceError::OpenCv(e.to_string()))?;
        self.position += 1;
        let reads = self.reads.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some((n, stop)) = &self.stop_at {
            if reads >= *n {
                stop.store(true, Ordering::Relaxed);
            }
        }
        Ok(true)
    }

    fn info(&self, fps: f64) -> SourceInfo {
        SourceInfo { width: 64, height: 48, fps }
    }
}

struct ScriptedFile {
    source: Scripted,
    frames: usize,
    fps: f64,
    read_cost: Duration,
}

impl FrameSource for ScriptedFile {
    fn info(&self) -> SourceInfo {
        self.source.info(self.fps)
    }

    fn name(&self) -> &str {
        &self.source.name
    }

    fn read(&mut self, frame: &mut Mat) -> Result<bool, SourceError> {
        if self.source.position >= self.frames {
            return Ok(false);
        }
        self.source.clock.advance(self.read_cost);
        self.source.frame(frame)
    }

    fn skip(&mut self) -> Result<bool, SourceError> {
        if self.source.position >= self.frames {
            return Ok(false);
        }
        self.source.position += 1;
        Ok(true)
    }

    fn rewind(&mut self) -> Result<bool, SourceError> {
        self.source.position = 0;
        Ok(true)
    }
}

struct ScriptedLive {
    source: Scripted,
    fps: f64,
    steps: VecDeque<Step>,
}

impl FrameSource for ScriptedLive {
    fn info(&self) -> SourceInfo {
        self.source.info(self.fps)
    }

    fn name(&self) -> &str {
        &self.source.name
    }

    fn read(&mut self, frame: &mut Mat) -> Result<bool, SourceError> {
        match self.steps.pop_front().unwrap_or(Step::Stall) {
            Step::Frame => {
                self.source.clock.advance(Duration::from_secs_f64(1.0 / self.fps));
                self.source.frame(frame)
            }
            Step::Fail => Err(SourceError::OpenCv(format!("{}: connection reset", self.source.name))),
            Step::End => Ok(false),
            Step::Stall => {
                // Time passes with no frame until the camera is opened again (or a real minute).
                for _ in 0..30_000 {
                    if self.source.released.load(Ordering::Relaxed) {
                        break;
                    }
                    self.source.clock.advance(Duration::from_millis(20));
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(SourceError::OpenCv(format!("{}: read timed out", self.source.name)))
            }
        }
    }

    fn skip(&mut self) -> Result<bool, SourceError> {
        let mut frame = Mat::default();
        self.read(&mut frame)
    }

    fn rewind(&mut self) -> Result<bool, SourceError> {
        Ok(false)
    }
}

/// A scripted model that counts its passes: a pose model finds nobody, a detect model one car
/// wherever it looks.
pub struct Counting {
    task: Task,
    pub calls: Mutex<u32>,
}

impl Counting {
    pub fn new(task: Task) -> Arc<Self> {
        Arc::new(Self { task, calls: Mutex::default() })
    }
}

impl AiEngine for Counting {
    fn name(&self) -> String {
        "counting".into()
    }

    fn info(&self) -> ModelInfo {
        let names = match self.task {
            Task::Pose => vec!["person".to_string()],
            Task::Detect => haven_pose::COCO_NAMES.iter().map(|s| s.to_string()).collect(),
        };
        ModelInfo { task: self.task, arch: None, scale: None, class_names: names, input: "any".into(), device: "cpu".into(), precision: "f32".into() }
    }

    fn detect(&self, _frame: &Mat) -> Result<Vec<Detection>, EngineError> {
        *self.calls.lock().unwrap() += 1;
        Ok(match self.task {
            Task::Pose => Vec::new(),
            Task::Detect => vec![Detection { class_id: 2, class: "car".into(), score: 0.9, bbox: [1.0, 1.0, 20.0, 20.0], keypoints: Vec::new() }],
        })
    }
}

/// A camera's worker context in simulated time: `engines` behind a one-worker scheduler (empty: no
/// model), events into `events` (none: off), no source (the tests hand frames over themselves).
pub fn context(clock: Arc<SimClock>, engines: Engines, events: Option<Arc<EventHub>>, config: CameraConfig) -> WorkerContext {
    let deps = CameraDeps {
        inference: (!engines.is_empty()).then(|| Scheduler::with_engines(engines, 1)),
        capture: Arc::new(CaptureSettings {
            open_timeout_secs: 5.0,
            read_timeout_secs: 5.0,
            watchdog_secs: 2.0,
            reconnect_initial_secs: 1.0,
            reconnect_max_secs: 4.0,
        }),
        detection: Live::default(),
        events,
        opener: Arc::new(ScriptedOpener::new(clock.clone(), Vec::new())),
        clock,
        wait_for_models: false,
    };
    WorkerContext::new(config, Arc::new(watch::channel(Feed::Waiting).0), Default::default(), deps)
}

/// A uniform `width` x `height` frame of grey `value`.
pub fn still_frame(width: i32, height: i32, value: f64) -> Mat {
    Mat::new_rows_cols_with_default(height, width, CV_8UC3, Scalar::all(value)).unwrap()
}
