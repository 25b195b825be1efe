//! `StreamHub`: the registry of cameras and owner of the one shared AI engine.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Addr, Context, Handler, Message, MessageResult, ResponseFuture};
use serde::Serialize;
use tokio::sync::watch;

use crate::camera::actor::StopCamera;
use crate::camera::worker::WorkerContext;
use crate::camera::status::HistogramView;
use crate::camera::{CameraActor, CameraState, CameraStatus, CameraStatusView, Feed};
use crate::events::EventHub;
use crate::inference::scheduler::Scheduler;
use crate::settings::{save_cameras, CameraConfig, CaptureSettings, DetectionSettings};

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("camera \"{0}\" already exists")]
    Duplicate(String),
    #[error("unknown camera: {0}")]
    UnknownCamera(String),
    #[error("{0}")]
    InvalidCamera(String),
    #[error("{0}")]
    Persist(String),
}

struct CameraEntry {
    ctx: WorkerContext,
    actor: Option<Addr<CameraActor>>,
}

impl CameraEntry {
    fn new(
        config: CameraConfig,
        inference: Option<Arc<Scheduler>>,
        capture: Arc<CaptureSettings>,
        detection: Arc<DetectionSettings>,
        events: Option<Arc<EventHub>>,
    ) -> Self {
        let (feed, _) = watch::channel(Feed::Waiting);
        CameraEntry { ctx: WorkerContext::new(config, inference, Arc::new(feed), capture, detection, events), actor: None }
    }

    fn config(&self) -> CameraConfig {
        self.ctx.config.read().unwrap().clone()
    }

    fn start(&mut self) {
        if self.actor.is_none() {
            self.actor = Some(CameraActor::new(self.ctx.clone()).start());
        }
    }

    /// Stops the worker; with a reason, viewers are closed with it, without one they stay for what comes next.
    fn stop(&mut self, reason: Option<&'static str>) {
        self.ctx.stop.store(true, Ordering::Relaxed);
        if let Some(actor) = self.actor.take() {
            actor.do_send(StopCamera { reason });
        } else if let Some(reason) = reason {
            self.ctx.feed.send_replace(Feed::Closed(reason));
        }
    }

    /// A fresh worker with a new configuration, feeding the same viewers.
    fn restart(&mut self, config: CameraConfig) {
        self.stop(None);
        self.ctx = self.ctx.renewed(config);
        self.start();
    }

    fn id(&self) -> String {
        self.ctx.config.read().unwrap().camera_id.clone()
    }

    fn view(&self, engine_loaded: bool) -> CameraStatusView {
        let config = self.ctx.config.read().unwrap();
        let ai = config.ai_enabled && engine_loaded;
        self.ctx.status.snapshot(&config, &self.ctx.detection, ai, self.ctx.feed.receiver_count())
    }
}

/// What a viewer needs to follow one camera.
#[derive(Clone)]
pub struct CameraLink {
    pub camera_id: String,
    pub feed: watch::Receiver<Feed>,
}

pub struct StreamHub {
    cameras: Vec<CameraEntry>,
    /// The shared model's queue; `None` when no model is loaded.
    inference: Option<Arc<Scheduler>>,
    capture: Arc<CaptureSettings>,
    detection: Arc<DetectionSettings>,
    /// Where cameras send their events; `None` when events are turned off.
    events: Option<Arc<EventHub>>,
    running: bool,
    /// The settings file that run-time changes are written back to (none in tests that build settings in memory).
    settings_file: Option<PathBuf>,
}

impl StreamHub {
    pub fn new(
        inference: Option<Arc<Scheduler>>,
        capture: CaptureSettings,
        detection: DetectionSettings,
        events: Option<Arc<EventHub>>,
        settings_file: Option<PathBuf>,
    ) -> Self {
        Self {
            cameras: Vec::new(),
            inference,
            capture: Arc::new(capture),
            detection: Arc::new(detection),
            events,
            running: false,
            settings_file,
        }
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.cameras.iter().position(|c| c.ctx.config.read().unwrap().camera_id == id)
    }

    fn find(&self, id: &str) -> Option<&CameraEntry> {
        self.position(id).map(|i| &self.cameras[i])
    }

    fn configs(&self) -> Vec<CameraConfig> {
        self.cameras.iter().map(CameraEntry::config).collect()
    }

    /// Writes `cameras` to the settings file before the change is applied: a change that cannot be
    /// saved is not made, so the file and the running server never disagree.
    fn persist(&self, cameras: &[CameraConfig]) -> Result<(), HubError> {
        match &self.settings_file {
            Some(path) => save_cameras(path, cameras).map_err(|e| HubError::Persist(e.to_string())),
            None => Ok(()),
        }
    }

    fn add(&mut self, config: CameraConfig) -> CameraStatusView {
        log::info!(
            "Registered camera: {} → {} ({})",
            config.camera_id,
            config.display_source(),
            config.source_type.as_str()
        );
        let mut entry = CameraEntry::new(
            config,
            self.inference.clone(),
            self.capture.clone(),
            self.detection.clone(),
            self.events.clone(),
        );
        if self.running {
            entry.start();
        }
        let view = entry.view(self.inference.is_some());
        self.cameras.push(entry);
        view
    }
}

impl Actor for StreamHub {
    type Context = Context<Self>;
}

/// Adds a camera (started at once if the hub is running).
#[derive(Message)]
#[rtype(result = "Result<CameraStatusView, HubError>")]
pub struct Register {
    pub config: CameraConfig,
    /// Write the new camera list back to the settings file (cameras added at run time).
    pub persist: bool,
}

impl Handler<Register> for StreamHub {
    type Result = Result<CameraStatusView, HubError>;

    fn handle(&mut self, Register { config, persist }: Register, _: &mut Context<Self>) -> Self::Result {
        config.validate().map_err(HubError::InvalidCamera)?;
        if self.find(&config.camera_id).is_some() {
            return Err(HubError::Duplicate(config.camera_id));
        }
        if persist {
            let mut all = self.configs();
            all.push(config.clone());
            self.persist(&all)?;
        }
        Ok(self.add(config))
    }
}

/// Stops a camera, closes its viewers ("camera removed") and forgets it.
#[derive(Message)]
#[rtype(result = "Result<(), HubError>")]
pub struct Remove(pub String);

impl Handler<Remove> for StreamHub {
    type Result = Result<(), HubError>;

    fn handle(&mut self, Remove(id): Remove, _: &mut Context<Self>) -> Self::Result {
        let i = self.position(&id).ok_or_else(|| HubError::UnknownCamera(id.clone()))?;
        let mut all = self.configs();
        all.remove(i);
        self.persist(&all)?;
        let mut entry = self.cameras.remove(i);
        entry.stop(Some("camera removed"));
        log::info!("Removed camera: {id}");
        Ok(())
    }
}

/// Settings that take effect on the next frame, without restarting the camera.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraPatch {
    #[serde(default, deserialize_with = "present::deserialize")]
    pub ai_enabled: Option<bool>,
    #[serde(default, deserialize_with = "present::deserialize")]
    pub jpeg_quality: Option<u8>,
    /// `null` removes the limit.
    #[serde(default, with = "double_option")]
    pub resize_width: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present::deserialize")]
    pub loop_video: Option<bool>,
    /// `null` removes the cap.
    #[serde(default, with = "double_option")]
    pub max_fps: Option<Option<f64>>,
    /// `null` returns to `[detection]`'s rate.
    #[serde(default, with = "double_option")]
    pub detect_fps: Option<Option<f64>>,
}

mod present {
    use serde::{Deserialize, Deserializer};

    /// A field that may be left out but not set to `null` (it has no "unset" meaning).
    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
        T::deserialize(d).map(Some)
    }
}

mod double_option {
    use serde::{Deserialize, Deserializer};

    /// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

impl CameraPatch {
    pub fn apply(&self, config: &mut CameraConfig) {
        if let Some(v) = self.ai_enabled {
            config.ai_enabled = v;
        }
        if let Some(v) = self.jpeg_quality {
            config.jpeg_quality = v;
        }
        if let Some(v) = self.resize_width {
            config.resize_width = v;
        }
        if let Some(v) = self.loop_video {
            config.loop_video = v;
        }
        if let Some(v) = self.max_fps {
            config.max_fps = v;
        }
        if let Some(v) = self.detect_fps {
            config.detect_fps = v;
        }
    }
}

#[derive(Message)]
#[rtype(result = "Result<CameraStatusView, HubError>")]
pub struct Update(pub String, pub CameraPatch);

impl Handler<Update> for StreamHub {
    type Result = Result<CameraStatusView, HubError>;

    fn handle(&mut self, Update(id, patch): Update, _: &mut Context<Self>) -> Self::Result {
        let i = self.position(&id).ok_or_else(|| HubError::UnknownCamera(id.clone()))?;
        let mut changed = self.cameras[i].config();
        patch.apply(&mut changed);
        changed.validate().map_err(HubError::InvalidCamera)?;
        let mut all = self.configs();
        all[i] = changed.clone();
        self.persist(&all)?;
        *self.cameras[i].ctx.config.write().unwrap() = changed;
        log::info!("Updated camera: {id} ({patch:?})");
        Ok(self.cameras[i].view(self.inference.is_some()))
    }
}

/// Applies a new camera list (settings file edited, SIGHUP): added cameras start, removed ones stop,
/// changed ones restart; unchanged cameras and their viewers are not touched.
#[derive(Message)]
#[rtype(result = "ReloadSummary")]
pub struct Reload(pub Vec<CameraConfig>);

#[derive(Debug, Default, Serialize)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub restarted: Vec<String>,
}

impl Handler<Reload> for StreamHub {
    type Result = MessageResult<Reload>;

    fn handle(&mut self, Reload(wanted): Reload, _: &mut Context<Self>) -> Self::Result {
        let mut summary = ReloadSummary::default();
        let mut i = 0;
        while i < self.cameras.len() {
            let current = self.cameras[i].config();
            match wanted.iter().find(|w| w.camera_id == current.camera_id) {
                None => {
                    let mut entry = self.cameras.remove(i);
                    entry.stop(Some("camera removed"));
                    summary.removed.push(current.camera_id);
                    continue;
                }
                Some(w) if *w != current => {
                    self.cameras[i].restart(w.clone());
                    summary.restarted.push(current.camera_id);
                }
                Some(_) => {}
            }
            i += 1;
        }
        for w in wanted {
            if self.find(&w.camera_id).is_none() {
                summary.added.push(w.camera_id.clone());
                self.add(w);
            }
        }
        if summary.added.is_empty() && summary.removed.is_empty() && summary.restarted.is_empty() {
            return MessageResult(summary);
        }
        log::info!(
            "Reloaded cameras: added [{}], removed [{}], restarted [{}]",
            summary.added.join(", "),
            summary.removed.join(", "),
            summary.restarted.join(", ")
        );
        MessageResult(summary)
    }
}

/// Reloads the settings file from inside the hub, so that the read is ordered with `persist`: the
/// cameras applied are never older than a change the API has already made and written.
#[derive(Message)]
#[rtype(result = "Result<ReloadSummary, crate::settings::SettingsError>")]
pub struct ReloadFile(pub PathBuf);

impl Handler<ReloadFile> for StreamHub {
    type Result = Result<ReloadSummary, crate::settings::SettingsError>;

    fn handle(&mut self, ReloadFile(path): ReloadFile, ctx: &mut Context<Self>) -> Self::Result {
        let settings = crate::settings::Settings::load(&path)?;
        Ok(<Self as Handler<Reload>>::handle(self, Reload(settings.cameras), ctx).0)
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct StartAll;

impl Handler<StartAll> for StreamHub {
    type Result = ();

    fn handle(&mut self, _: StartAll, _: &mut Context<Self>) {
        self.running = true;
        self.cameras.iter_mut().for_each(CameraEntry::start);
    }
}

/// Stops every camera and resolves once their threads have let go of their sources
/// (or after `timeout`, naming those that did not).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAll {
    pub timeout: Duration,
}

impl Handler<StopAll> for StreamHub {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: StopAll, _: &mut Context<Self>) -> Self::Result {
        self.running = false;
        let mut waiting = Vec::new();
        for entry in &mut self.cameras {
            if entry.actor.is_some() {
                waiting.push((entry.id(), entry.ctx.status.clone()));
            }
            entry.stop(Some("server shutting down"));
        }
        Box::pin(async move {
            let deadline = Instant::now() + msg.timeout;
            let done = |s: &CameraStatus| matches!(s.state(), CameraState::Stopped | CameraState::Ended);
            while waiting.iter().any(|(_, s)| !done(s)) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let stuck: Vec<_> = waiting.iter().filter(|(_, s)| !done(s)).map(|(id, _)| id.as_str()).collect();
            if stuck.is_empty() {
                log::info!("All cameras stopped");
            } else {
                log::warn!("Cameras still stopping after {:?}: {}", msg.timeout, stuck.join(", "));
            }
        })
    }
}

#[derive(Message)]
#[rtype(result = "Option<CameraLink>")]
pub struct Subscribe {
    /// `None` means the first configured camera (the legacy `/ws/stream`).
    pub camera_id: Option<String>,
}

impl Handler<Subscribe> for StreamHub {
    type Result = Option<CameraLink>;

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) -> Self::Result {
        let entry = match &msg.camera_id {
            Some(id) => self.find(id)?,
            None => self.cameras.first()?,
        };
        Some(CameraLink {
            camera_id: entry.id(),
            feed: entry.ctx.feed.subscribe(),
        })
    }
}

#[derive(Message)]
#[rtype(result = "Vec<CameraStatusView>")]
pub struct Statuses;

impl Handler<Statuses> for StreamHub {
    type Result = MessageResult<Statuses>;

    fn handle(&mut self, _: Statuses, _: &mut Context<Self>) -> Self::Result {
        let loaded = self.inference.is_some();
        MessageResult(self.cameras.iter().map(|c| c.view(loaded)).collect())
    }
}

#[derive(Message)]
#[rtype(result = "Result<CameraStatusView, HubError>")]
pub struct GetStatus(pub String);

impl Handler<GetStatus> for StreamHub {
    type Result = Result<CameraStatusView, HubError>;

    fn handle(&mut self, GetStatus(id): GetStatus, _: &mut Context<Self>) -> Self::Result {
        self.find(&id).map(|c| c.view(self.inference.is_some())).ok_or(HubError::UnknownCamera(id))
    }
}

/// The shared engine as `GET /api/engine` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct EngineInfo {
    pub loaded: bool,
    pub name: Option<String>,
    /// Frames the model looked at since start, all cameras together.
    pub calls: u64,
    /// Threads running the model, shared by every camera.
    pub workers: usize,
    /// Cameras whose frame waits for a worker now.
    pub waiting: usize,
}

#[derive(Message)]
#[rtype(result = "EngineInfo")]
pub struct GetEngineInfo;

impl Handler<GetEngineInfo> for StreamHub {
    type Result = MessageResult<GetEngineInfo>;

    fn handle(&mut self, _: GetEngineInfo, _: &mut Context<Self>) -> Self::Result {
        let engine = self.inference.as_ref().map(|s| s.engine());
        MessageResult(EngineInfo {
            loaded: engine.is_some(),
            name: engine.map(|e| e.name()),
            calls: engine.map_or(0, |e| e.calls()),
            workers: self.inference.as_ref().map_or(0, |s| s.workers()),
            waiting: self.inference.as_ref().map_or(0, |s| s.waiting()),
        })
    }
}

/// One camera's figures for `/metrics`.
pub struct CameraMetrics {
    pub view: CameraStatusView,
    pub inference: HistogramView,
    pub queue: HistogramView,
}

#[derive(Message)]
#[rtype(result = "(Vec<CameraMetrics>, EngineInfo)")]
pub struct GetMetrics;

impl Handler<GetMetrics> for StreamHub {
    type Result = MessageResult<GetMetrics>;

    fn handle(&mut self, _: GetMetrics, ctx: &mut Context<Self>) -> Self::Result {
        let loaded = self.inference.is_some();
        let cameras = self
            .cameras
            .iter()
            .map(|c| CameraMetrics {
                view: c.view(loaded),
                inference: c.ctx.status.inference_histogram(),
                queue: c.ctx.status.queue_histogram(),
            })
            .collect();
        let MessageResult(engine) = self.handle(GetEngineInfo, ctx);
        MessageResult((cameras, engine))
    }
}
