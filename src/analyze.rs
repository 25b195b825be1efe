//! `haven analyze`: a camera's whole pipeline (motion gate, detect rate, the shared scheduler, regions,
//! every model the settings give the camera, tracker, fall rule, events) over video files, in the
//! video's own time and as fast as the CPU allows. The camera is the server's own worker, fed by
//! OpenCV from the file, on a simulated clock, with each look's answer taken before the next frame
//! (in simulated time the models take no time); events go to a throw-away event store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use opencv::core::Mat;
use opencv::prelude::*;
use serde::Serialize;
use tokio::sync::watch;

use crate::camera::clock::{Clock, SimClock, SIM_EPOCH};
use crate::config::Live;
use crate::camera::packet::Feed;
use crate::camera::source::{FrameSource, Opener, SourceError, SourceInfo, VideoSource};
use crate::camera::worker::{self, CameraDeps, WorkerContext};
use crate::events::{EventFilter, EventHub, FallReason};
use crate::inference::scheduler::Scheduler;
use crate::inference::Engines;
use crate::settings::{CameraConfig, Settings, SourceType};

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// The video is missing, unreadable or not a video (exit 6).
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    /// `--camera` names no camera of the settings.
    #[error("{0}")]
    Camera(String),
    #[error("event store: {0}")]
    Store(String),
}

/// One event as the analysis saw it, its times in seconds of the video.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnalyzedEvent {
    pub kind: String,
    pub track_id: u64,
    /// When it began (a fall: when the person went down) ...
    pub start_s: f64,
    /// ... when the alert was raised ...
    pub raised_s: f64,
    /// ... and when it ended (the person up again, or gone; the video's end for what was still on).
    pub end_s: Option<f64>,
    pub score: f32,
    /// A fall still going on `long_lie_secs` after it was raised ...
    pub long_lie: bool,
    /// ... from this second of the video.
    pub long_lie_s: Option<f64>,
    pub model: Option<String>,
    pub class: Option<String>,
    /// A fall's evidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<FallReason>,
    /// The camera's zones its person or object was in when it started (`--camera` with zones).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
}

/// What one video gave.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub file: String,
    /// Seconds of video analysed (the held last frame included).
    pub duration_s: f64,
    pub frames: u64,
    /// Passes of each model over the video's frames.
    pub looks: BTreeMap<String, u64>,
    pub events: Vec<AnalyzedEvent>,
}

impl FileReport {
    pub fn falls(&self) -> impl Iterator<Item = &AnalyzedEvent> {
        self.events.iter().filter(|e| e.kind == "fall")
    }
}

/// The models loaded once, and the settings every video is analysed with.
pub struct Analyzer {
    settings: Settings,
    scheduler: Option<Arc<Scheduler>>,
    camera: CameraConfig,
    /// Seconds the last frame is shown again at the end of each video (a real camera would go on
    /// showing a fallen person lying there).
    hold_last_secs: f64,
}

static RUNS: AtomicU64 = AtomicU64::new(0);

impl Analyzer {
    /// `camera`: the settings' camera whose own settings (detect rate, motion, models, fall rule)
    /// apply; none: a camera with every setting at the settings file's defaults.
    pub fn new(settings: Settings, engines: Engines, camera: Option<&str>, hold_last_secs: f64) -> Result<Self, AnalyzeError> {
        let camera = match camera {
            Some(id) => settings.cameras.iter().find(|c| c.camera_id == id).cloned().ok_or_else(|| {
                let known: Vec<&str> = settings.cameras.iter().map(|c| c.camera_id.as_str()).collect();
                AnalyzeError::Camera(format!("{}: no camera \"{id}\" (cameras: {})", settings.origin, known.join(", ")))
            })?,
            None => CameraConfig::new("analyze", "", SourceType::VideoFile),
        };
        let scheduler = (!engines.is_empty()).then(|| Scheduler::with_engines(engines, settings.detection.worker_count()));
        Ok(Self { settings, scheduler, camera, hold_last_secs: hold_last_secs.max(0.0) })
    }

    /// Runs one video through the camera's pipeline and returns its events.
    pub fn run(&self, video: &Path) -> Result<FileReport, AnalyzeError> {
        let path = video.display().to_string();
        let input = |message: String| AnalyzeError::Input { path: path.clone(), message };
        let mut config = self.camera.clone();
        config.source = path.clone();
        config.source_type = SourceType::VideoFile;
        config.loop_video = false;
        probe(video, &config, &self.settings.capture).map_err(input)?;

        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("haven-analyze-{}-{n}", std::process::id()));
        let _cleanup = RemoveOnDrop(dir.clone());
        let mut event_settings = self.settings.events.clone();
        event_settings.enabled = true;
        event_settings.data_dir = dir;
        event_settings.retention_days = 0.0;
        event_settings.retention_max_bytes = 0;
        let hub = EventHub::open(&event_settings).map_err(|e| AnalyzeError::Store(e.to_string()))?;

        let clock = Arc::new(SimClock::instant());
        let opener = Arc::new(OnceOpener::new(self.hold_last_secs));
        let deps = CameraDeps {
            inference: self.scheduler.clone(),
            capture: Arc::new(self.settings.capture.clone()),
            detection: Live::new(self.settings.detection.clone()),
            events: Some(hub.clone()),
            opener: opener.clone(),
            clock: clock.clone(),
            wait_for_models: true,
        };
        let ctx = WorkerContext::new(config, Arc::new(watch::channel(Feed::Waiting).0), Default::default(), deps);
        *opener.stop.lock().unwrap() = Some(ctx.stop.clone());
        worker::run(&ctx);
        if let Some(message) = opener.failure.lock().unwrap().take() {
            return Err(input(message));
        }

        let events = analysed_events(&hub)?;
        let status = &ctx.status;
        Ok(FileReport {
            file: path,
            duration_s: sim_secs(clock.wall()),
            frames: status.frames_processed.load(Ordering::Relaxed),
            looks: status.model_stats().into_iter().map(|(name, s)| (name, s.inferences)).collect(),
            events,
        })
    }
}

/// A clear error before anything starts: missing, unreadable, or not a video.
fn probe(video: &Path, config: &CameraConfig, capture: &crate::camera::config::CaptureSettings) -> Result<(), String> {
    if !video.exists() {
        return Err("no such file".into());
    }
    std::fs::File::open(video).map_err(|e| e.to_string())?;
    let mut probe = VideoSource::open(config, capture).map_err(|e| source_message(&e))?;
    let mut first = Mat::default();
    match probe.read(&mut first).unwrap_or(false) {
        true => Ok(()),
        false => Err("not a video: no frame could be decoded".into()),
    }
}

/// Seconds of the video: a simulated wall time less the clock's epoch, to the millisecond.
fn sim_secs(t: f64) -> f64 {
    ((t - SIM_EPOCH) * 1000.0).round() / 1000.0
}

/// The events the run left in its store, in the order they were raised.
fn analysed_events(hub: &EventHub) -> Result<Vec<AnalyzedEvent>, AnalyzeError> {
    let stored = hub
        .store()
        .list(&EventFilter { limit: Some(usize::MAX >> 1), ..EventFilter::default() })
        .map_err(|e| AnalyzeError::Store(e.to_string()))?;
    let secs = sim_secs;
    let mut events: Vec<AnalyzedEvent> = stored
        .into_iter()
        .map(|e| AnalyzedEvent {
            kind: e.kind.as_str().to_string(),
            track_id: e.track_id,
            start_s: secs(e.started_at),
            raised_s: secs(e.raised_at.unwrap_or(e.started_at)),
            end_s: e.ended_at.map(secs),
            score: (e.score * 1000.0).round() / 1000.0,
            long_lie: e.long_lie,
            long_lie_s: e.long_lie_at.map(secs),
            model: e.model,
            class: e.class,
            reason: e.reason,
            zones: e.zones,
        })
        .collect();
    events.sort_by(|a, b| a.raised_s.total_cmp(&b.raised_s).then(a.kind.cmp(&b.kind)));
    Ok(events)
}

/// What a failed open says, without repeating the path (the caller's message names it).
fn source_message(e: &SourceError) -> String {
    match e {
        SourceError::NotFound(_) => "no such file".into(),
        SourceError::Open(_) => "not a readable video (corrupt file or unsupported codec)".into(),
        other => other.to_string(),
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Opens the video once. A second open means the video failed part-way (a server camera would
/// retry): the analysis stops there and says why.
struct OnceOpener {
    opened: AtomicBool,
    hold_last_secs: f64,
    stop: Mutex<Option<Arc<AtomicBool>>>,
    failure: Mutex<Option<String>>,
}

impl OnceOpener {
    fn new(hold_last_secs: f64) -> Self {
        Self { opened: AtomicBool::new(false), hold_last_secs, stop: Mutex::default(), failure: Mutex::default() }
    }
}

impl Opener for OnceOpener {
    fn open(&self, config: &CameraConfig, capture: &crate::settings::CaptureSettings) -> Result<Box<dyn FrameSource>, SourceError> {
        if self.opened.swap(true, Ordering::SeqCst) {
            if let Some(stop) = &*self.stop.lock().unwrap() {
                stop.store(true, Ordering::SeqCst);
            }
            let why = "the video could not be read to its end".to_string();
            self.failure.lock().unwrap().get_or_insert(why.clone());
            return Err(SourceError::OpenCv(why));
        }
        let source = VideoSource::open(config, capture)?;
        let hold_frames = (self.hold_last_secs * source.info().fps).round() as u64;
        Ok(Box::new(HoldLast { inner: Box::new(source), last: Mat::default(), hold_frames, held: 0 }))
    }
}

/// A file source whose last frame is shown again `hold_frames` times at its end.
struct HoldLast {
    inner: Box<dyn FrameSource>,
    last: Mat,
    hold_frames: u64,
    held: u64,
}

impl HoldLast {
    fn hold(&mut self, frame: Option<&mut Mat>) -> Result<bool, SourceError> {
        if self.held >= self.hold_frames || self.last.empty() {
            return Ok(false);
        }
        self.held += 1;
        if let Some(frame) = frame {
            self.last.copy_to(frame).map_err(|e| SourceError::OpenCv(e.to_string()))?;
        }
        Ok(true)
    }
}

impl FrameSource for HoldLast {
    fn info(&self) -> SourceInfo {
        self.inner.info()
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn read(&mut self, frame: &mut Mat) -> Result<bool, SourceError> {
        if self.held == 0 && self.inner.read(frame)? {
            self.last = frame.try_clone().map_err(|e| SourceError::OpenCv(e.to_string()))?;
            return Ok(true);
        }
        self.hold(Some(frame))
    }

    fn skip(&mut self) -> Result<bool, SourceError> {
        if self.held == 0 {
            let mut frame = Mat::default();
            if self.inner.read(&mut frame)? {
                self.last = frame;
                return Ok(true);
            }
        }
        self.hold(None)
    }

    fn rewind(&mut self) -> Result<bool, SourceError> {
        self.held = 0;
        self.inner.rewind()
    }
}
