//! `StreamHub`: the registry of cameras and owner of the one shared AI engine.

use std::time::{Duration, Instant};

use actix::{Actor, Context, Handler, Message, MessageResult, ResponseFuture};
use serde::Serialize;

use crate::camera::{Camera, CameraDeps, CameraPort, CameraPatch, CameraState, CameraStatus, CameraStatusView, HistogramView};
use crate::inference::{Engines, Task};
use crate::camera::config::CameraConfig;
use crate::config::ConfigError;

pub use crate::camera::CameraLink;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("camera \"{0}\" already exists")]
    Duplicate(String),
    #[error("unknown camera: {0}")]
    UnknownCamera(String),
    #[error("{0}")]
    InvalidCamera(#[from] ConfigError),
    #[error("{0}")]
    Persist(String),
    #[error("{0}")]
    Reload(String),
}

/// What cameras may name: the models of the settings (loaded or not) and the classes of the loaded
/// detect models (for `object_events`).
#[derive(Debug, Clone, Default)]
pub struct ModelCatalog {
    /// `None`: anything goes (a hub built without settings, in tests).
    configured: Option<Vec<String>>,
    /// Class names of the loaded detect models; `None` when none is loaded (nothing to check against).
    classes: Option<std::collections::HashSet<String>>,
}

impl ModelCatalog {
    /// `configured`: the names of the settings' `[models.<name>]` sections.
    pub fn new(configured: impl IntoIterator<Item = String>, engines: &Engines) -> Self {
        let detect: Vec<_> = engines.0.iter().filter(|e| e.task() == Task::Detect).collect();
        let classes = (!detect.is_empty()).then(|| detect.iter().flat_map(|e| e.info().class_names.iter().cloned()).collect());
        Self { configured: Some(configured.into_iter().collect()), classes }
    }

    /// A camera's `models` and `object_events`; the message names the camera and the setting.
    pub fn check(&self, config: &CameraConfig) -> Result<(), ConfigError> {
        let Some(configured) = &self.configured else { return Ok(()) };
        let list = if configured.is_empty() { "none".to_string() } else { configured.join(", ") };
        let classes = self.classes.as_ref().map(|c| move |name: &str| c.contains(name));
        config.validate_models(|n| configured.iter().any(|c| c == n), &list, classes.as_ref().map(|f| f as &dyn Fn(&str) -> bool))
    }
}

/// The registry of cameras; a camera's own life (thread, feed, status) is its `Camera`'s.
pub struct StreamHub {
    cameras: Vec<Camera>,
    /// What every camera is given: the shared model, settings, events, source opener and clock.
    deps: CameraDeps,
    running: bool,
    /// The settings file that run-time changes are written back to (none in tests that build
    /// settings in memory, and on a cluster node).
    settings_file: Option<Box<dyn SettingsFile>>,
    catalog: ModelCatalog,
}

impl StreamHub {
    pub fn new(deps: CameraDeps, settings_file: Option<Box<dyn SettingsFile>>) -> Self {
        Self { cameras: Vec::new(), deps, running: false, settings_file, catalog: ModelCatalog::default() }
    }

    /// What cameras added or changed through the API may name in `models` and `object_events`.
    pub fn with_catalog(mut self, catalog: ModelCatalog) -> Self {
        self.catalog = catalog;
        self
    }

    fn engine_loaded(&self) -> bool {
        self.deps.inference.is_some()
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.cameras.iter().position(|c| c.id() == id)
    }

    fn find(&self, id: &str) -> Option<&Camera> {
        self.position(id).map(|i| &self.cameras[i])
    }

    fn configs(&self) -> Vec<CameraConfig> {
        self.cameras.iter().map(Camera::config).collect()
    }

    /// Writes `cameras` to the settings file before the change is applied: a change that cannot be
    /// saved is not made, so the file and the running server never disagree.
    fn persist(&self, cameras: &[CameraConfig]) -> Result<(), HubError> {
        match &self.settings_file {
            Some(file) => file.save_cameras(cameras).map_err(HubError::Persist),
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
        let mut camera = Camera::new(config, self.deps.clone());
        if self.running {
            camera.start();
        }
        let view = camera.status(self.engine_loaded());
        self.cameras.push(camera);
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
        self.catalog.check(&config).map_err(HubError::InvalidCamera)?;
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

/// Checks a camera's `models` and `object_events` against this server's models (a cluster node checks
/// a camera before it goes into the inventory).
#[derive(Message)]
#[rtype(result = "Result<(), HubError>")]
pub struct CheckModels(pub CameraConfig);

impl Handler<CheckModels> for StreamHub {
    type Result = Result<(), HubError>;

    fn handle(&mut self, CheckModels(config): CheckModels, _: &mut Context<Self>) -> Self::Result {
        self.catalog.check(&config).map_err(HubError::InvalidCamera)
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
        self.cameras.remove(i).stop(Some("camera removed"));
        log::info!("Removed camera: {id}");
        Ok(())
    }
}

#[derive(Message)]
#[rtype(result = "Result<CameraStatusView, HubError>")]
pub struct Update(pub String, pub CameraPatch);

impl Handler<Update> for StreamHub {
    type Result = Result<CameraStatusView, HubError>;

    fn handle(&mut self, Update(id, patch): Update, _: &mut Context<Self>) -> Self::Result {
        let i = self.position(&id).ok_or_else(|| HubError::UnknownCamera(id.clone()))?;
        let mut all = self.configs();
        patch.apply(&mut all[i]);
        all[i].validate().map_err(HubError::InvalidCamera)?;
        self.catalog.check(&all[i]).map_err(HubError::InvalidCamera)?;
        self.persist(&all)?;
        self.cameras[i].update(&patch);
        log::info!("Updated camera: {id} ({patch:?})");
        Ok(self.cameras[i].status(self.engine_loaded()))
    }
}

/// Applies a new camera list (settings file edited, SIGHUP): added cameras start, removed ones stop,
/// changed ones restart; unchanged cameras and their viewers are not touched.
#[derive(Message)]
#[rtype(result = "ReloadSummary")]
pub struct Reload(pub Vec<CameraConfig>);

#[derive(Debug, Default, PartialEq, Serialize)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub restarted: Vec<String>,
    /// Changed only in settings that apply live (what `PATCH` changes: models, detect rate,
    /// quality, …): updated in place, not restarted.
    pub updated: Vec<String>,
}

impl ReloadSummary {
    /// What must change to go from the `current` cameras to the `wanted` ones, by camera id: a
    /// camera whose settings differ only in live ones (what `PATCH` changes) is updated in place,
    /// one that differs in others restarts; one that is equal is not touched.
    pub fn diff(current: &[CameraConfig], wanted: &[CameraConfig]) -> Self {
        let find = |list: &[CameraConfig], id: &str| list.iter().find(|c| c.camera_id == id).cloned();
        let mut summary = Self::default();
        for c in current {
            match find(wanted, &c.camera_id) {
                None => summary.removed.push(c.camera_id.clone()),
                Some(w) if w != *c && CameraPatch::between(c, &w).is_some() => summary.updated.push(c.camera_id.clone()),
                Some(w) if w != *c => summary.restarted.push(c.camera_id.clone()),
                Some(_) => {}
            }
        }
        for w in wanted {
            if find(current, &w.camera_id).is_none() && !summary.added.contains(&w.camera_id) {
                summary.added.push(w.camera_id.clone());
            }
        }
        summary
    }

    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.restarted.is_empty() && self.updated.is_empty()
    }
}

impl Handler<Reload> for StreamHub {
    type Result = MessageResult<Reload>;

    fn handle(&mut self, Reload(wanted): Reload, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.reload(wanted))
    }
}

impl StreamHub {
    fn reload(&mut self, wanted: Vec<CameraConfig>) -> ReloadSummary {
        let summary = ReloadSummary::diff(&self.configs(), &wanted);
        for id in &summary.removed {
            if let Some(i) = self.position(id) {
                self.cameras.remove(i).stop(Some("camera removed"));
            }
        }
        for w in &wanted {
            if summary.restarted.contains(&w.camera_id) {
                if let Some(i) = self.position(&w.camera_id) {
                    self.cameras[i].restart(w.clone());
                }
            } else if summary.updated.contains(&w.camera_id) {
                if let Some(i) = self.position(&w.camera_id) {
                    self.cameras[i].set_config(w.clone());
                }
            } else if summary.added.contains(&w.camera_id) && self.find(&w.camera_id).is_none() {
                self.add(w.clone());
            }
        }
        if summary.is_empty() {
            return summary;
        }
        log::info!(
            "Reloaded cameras: added [{}], removed [{}], restarted [{}], updated live [{}]",
            summary.added.join(", "),
            summary.removed.join(", "),
            summary.restarted.join(", "),
            summary.updated.join(", ")
        );
        summary
    }
}

/// The settings file as the hub sees it: where the camera list is written back after a change made
/// at run time, and read again on reload. The hub does both itself, in order: a copy read elsewhere
/// and applied later could be older than a change the API made meanwhile, and would undo it. The
/// loader at the top implements it (`crate::reload::WatchedFile`), so that the hub needs nothing of
/// the settings but the cameras.
pub trait SettingsFile: Send {
    fn save_cameras(&self, cameras: &[CameraConfig]) -> Result<(), String>;

    /// Reads the file again and applies every section that can change live but the cameras,
    /// which it returns (already checked) for the hub to apply.
    fn reload(&self) -> Result<ReloadedFile, String>;
}

/// What a reload of the settings file found: the cameras to apply, the sections it applied live
/// (`detection`, `stream`…) and the changed settings that need a restart (`server.bind`…).
#[derive(Debug, Clone, Default)]
pub struct ReloadedFile {
    pub cameras: Vec<CameraConfig>,
    pub applied: Vec<String>,
    pub needs_restart: Vec<String>,
}

/// The reload's answer: what happened to the cameras, the sections applied live, and the changes
/// that take effect only after a restart.
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct ReloadAnswer {
    pub cameras: ReloadSummary,
    pub applied: Vec<String>,
    pub needs_restart: Vec<String>,
}

/// Reloads the settings file from inside the hub, in order with `persist`.
#[derive(Message)]
#[rtype(result = "Result<ReloadAnswer, HubError>")]
pub struct ReloadFile;

impl Handler<ReloadFile> for StreamHub {
    type Result = Result<ReloadAnswer, HubError>;

    fn handle(&mut self, _: ReloadFile, _: &mut Context<Self>) -> Self::Result {
        let file = self.settings_file.as_ref().ok_or_else(|| HubError::Persist("no settings file to reload".into()))?;
        let reloaded = file.reload().map_err(HubError::Reload)?;
        for camera in &reloaded.cameras {
            self.catalog.check(camera)?;
        }
        let answer = ReloadAnswer { cameras: self.reload(reloaded.cameras), applied: reloaded.applied, needs_restart: reloaded.needs_restart };
        if !answer.applied.is_empty() {
            log::info!("Reloaded settings applied live: {}", answer.applied.join(", "));
        }
        if !answer.needs_restart.is_empty() {
            log::warn!("Reloaded settings that take effect only after a restart: {}", answer.needs_restart.join(", "));
        }
        Ok(answer)
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct StartAll;

impl Handler<StartAll> for StreamHub {
    type Result = ();

    fn handle(&mut self, _: StartAll, _: &mut Context<Self>) {
        self.running = true;
        self.cameras.iter_mut().for_each(Camera::start);
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
        for camera in &mut self.cameras {
            if camera.is_running() {
                waiting.push((camera.id(), camera.counters()));
            }
            camera.stop(Some("server shutting down"));
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

/// Cluster: starts (`true`) or stops the worker of a camera this node has come to own or has lost;
/// its viewers stay either way. `None` if the camera is not registered.
#[derive(Message)]
#[rtype(result = "Option<CameraPort>")]
pub struct SetRunning(pub String, pub bool);

impl Handler<SetRunning> for StreamHub {
    type Result = Option<CameraPort>;

    fn handle(&mut self, SetRunning(id, run): SetRunning, _: &mut Context<Self>) -> Self::Result {
        let i = self.position(&id)?;
        let camera = &mut self.cameras[i];
        match (run, camera.is_running()) {
            // A fresh worker (its own stop flag and counters) on the same feed, demand and fence.
            (true, false) => {
                camera.restart(camera.config());
                camera.start();
            }
            (false, true) => camera.stop(None),
            _ => {}
        }
        Some(camera.port())
    }
}

#[derive(Message)]
#[rtype(result = "Option<CameraPort>")]
pub struct Port(pub String);

impl Handler<Port> for StreamHub {
    type Result = Option<CameraPort>;

    fn handle(&mut self, Port(id): Port, _: &mut Context<Self>) -> Self::Result {
        self.find(&id).map(Camera::port)
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
        let camera = match &msg.camera_id {
            Some(id) => self.find(id)?,
            None => self.cameras.first()?,
        };
        Some(camera.subscribe())
    }
}

#[derive(Message)]
#[rtype(result = "Vec<CameraStatusView>")]
pub struct Statuses;

impl Handler<Statuses> for StreamHub {
    type Result = MessageResult<Statuses>;

    fn handle(&mut self, _: Statuses, _: &mut Context<Self>) -> Self::Result {
        let loaded = self.engine_loaded();
        MessageResult(self.cameras.iter().map(|c| c.status(loaded)).collect())
    }
}

#[derive(Message)]
#[rtype(result = "Result<CameraStatusView, HubError>")]
pub struct GetStatus(pub String);

impl Handler<GetStatus> for StreamHub {
    type Result = Result<CameraStatusView, HubError>;

    fn handle(&mut self, GetStatus(id): GetStatus, _: &mut Context<Self>) -> Self::Result {
        self.find(&id).map(|c| c.status(self.engine_loaded())).ok_or(HubError::UnknownCamera(id))
    }
}

/// The shared models as `GET /api/engine` reports them.
#[derive(Debug, Clone, Serialize)]
pub struct EngineInfo {
    /// Whether any model is loaded.
    pub loaded: bool,
    /// The first model's description (the pose model's, where there is one).
    pub name: Option<String>,
    /// Passes of the models since start, all models and cameras together.
    pub calls: u64,
    /// Threads running the models, shared by every camera.
    pub workers: usize,
    /// Cameras whose frame waits for a worker now.
    pub waiting: usize,
    /// Whole frames resized and padded once for several models (their inputs had the same size).
    pub shared_inputs: u64,
    /// Every loaded model, each loaded once and shared by the cameras that name it.
    pub models: Vec<ModelView>,
}

/// One loaded model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelView {
    /// Its name in the settings (`[models.<name>]`).
    pub name: String,
    /// What the engine says it is (weights, architecture, input).
    pub description: String,
    #[serde(flatten)]
    pub info: crate::inference::ModelInfo,
    /// How many classes it tells apart.
    pub classes: usize,
    /// Its passes since start, all cameras together.
    pub calls: u64,
    /// The cameras that run it (their `models`).
    pub cameras: Vec<String>,
    /// The events' fall model (`[events.fall] model`): cameras ask it where someone may be down,
    /// not on every look, so it is no camera's switch.
    pub fall_model: bool,
}

#[derive(Message)]
#[rtype(result = "EngineInfo")]
pub struct GetEngineInfo;

impl Handler<GetEngineInfo> for StreamHub {
    type Result = MessageResult<GetEngineInfo>;

    fn handle(&mut self, _: GetEngineInfo, _: &mut Context<Self>) -> Self::Result {
        let scheduler = self.deps.inference.as_ref();
        let configs = self.configs();
        let fall_model = self.deps.events.as_ref().map(|e| e.settings().fall.model.clone()).unwrap_or_default();
        let models: Vec<ModelView> = scheduler
            .map(|s| s.engines().0.clone())
            .unwrap_or_default()
            .iter()
            .map(|e| ModelView {
                name: e.model().to_string(),
                description: e.name(),
                info: e.info().clone(),
                classes: e.info().class_names.len(),
                calls: e.calls(),
                cameras: configs.iter().filter(|c| c.model_names().iter().any(|n| n == &**e.model())).map(|c| c.camera_id.clone()).collect(),
                fall_model: !fall_model.is_empty() && *fall_model == **e.model(),
            })
            .collect();
        MessageResult(EngineInfo {
            loaded: !models.is_empty(),
            name: models.first().map(|m| m.description.clone()),
            calls: models.iter().map(|m| m.calls).sum(),
            workers: scheduler.map_or(0, |s| s.workers()),
            waiting: scheduler.map_or(0, |s| s.waiting()),
            shared_inputs: scheduler.map_or(0, |s| s.shared_inputs()),
            models,
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
        let loaded = self.engine_loaded();
        let cameras = self
            .cameras
            .iter()
            .map(|c| {
                let counters = c.counters();
                CameraMetrics {
                    view: c.status(loaded),
                    inference: counters.inference_histogram(),
                    queue: counters.queue_histogram(),
                }
            })
            .collect();
        let MessageResult(engine) = self.handle(GetEngineInfo, ctx);
        MessageResult((cameras, engine))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::watch;

    use super::*;
    use crate::camera::clock::SimClock;
    use crate::camera::scripted::{Opening, ScriptedOpener};
    use crate::camera::Feed;
    use crate::camera::config::{CaptureSettings, SourceType};
    use crate::config::Live;

    fn cam(id: &str) -> CameraConfig {
        CameraConfig::new(id, &format!("{id}.mp4"), SourceType::VideoFile)
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_reload_diff_restarts_only_what_changed() {
        let mut b2 = cam("b");
        b2.loop_video = false;
        b2.source = "b2.mp4".into();
        let diff = ReloadSummary::diff(&[cam("a"), cam("b"), cam("c")], &[cam("a"), b2, cam("d")]);
        assert_eq!(diff, ReloadSummary { added: ids(&["d"]), removed: ids(&["c"]), restarted: ids(&["b"]), updated: vec![] });
        assert!(ReloadSummary::diff(&[cam("a"), cam("b")], &[cam("b"), cam("a")]).is_empty(), "order alone changes nothing");
        assert_eq!(ReloadSummary::diff(&[], &[cam("a"), cam("a")]).added, ids(&["a"]), "a camera is added once");
        assert_eq!(ReloadSummary::diff(&[cam("a")], &[]).removed, ids(&["a"]));
        let mut moved = cam("a");
        moved.source = "elsewhere.mp4".into();
        assert_eq!(ReloadSummary::diff(&[cam("a")], &[moved]).restarted, ids(&["a"]));
        // Models, detect rate, quality: applied live, no restart.
        let mut objects = cam("a");
        objects.models = Some(ids(&["pose", "objects"]));
        objects.detect_fps = Some(2.0);
        objects.jpeg_quality = 50;
        let diff = ReloadSummary::diff(&[cam("a")], &[objects]);
        assert_eq!((diff.updated, diff.restarted), (ids(&["a"]), vec![]));
    }

    async fn next_frame(feed: &mut watch::Receiver<Feed>, after_seq: u64) -> u64 {
        let wait = async {
            loop {
                if let Feed::Frame(p) = &*feed.borrow_and_update() {
                    if p.seq > after_seq {
                        return p.seq;
                    }
                }
                feed.changed().await.expect("feed open");
            }
        };
        tokio::time::timeout(Duration::from_secs(20), wait).await.expect("a frame within 20 s")
    }

    /// A hub (not started) whose cameras open endless scripted files, `opens` times in all.
    fn scripted_hub(opens: usize) -> (actix::Addr<StreamHub>, Arc<ScriptedOpener>) {
        let clock = Arc::new(SimClock::new(0.0));
        let endless = || Opening::File { frames: usize::MAX, fps: 10.0, read_cost: Duration::ZERO };
        let opener = Arc::new(ScriptedOpener::new(clock.clone(), (0..opens).map(|_| endless()).collect()));
        let capture = CaptureSettings {
            open_timeout_secs: 5.0,
            read_timeout_secs: 5.0,
            watchdog_secs: 2.0,
            reconnect_initial_secs: 1.0,
            reconnect_max_secs: 4.0,
        };
        let deps = CameraDeps {
            inference: None,
            capture: Arc::new(capture),
            detection: Live::default(),
            events: None,
            opener: opener.clone(),
            clock,
            wait_for_models: false,
        };
        (StreamHub::new(deps, None).start(), opener)
    }

    #[actix_web::test]
    async fn a_cluster_node_starts_stops_and_starts_again_a_camera_it_comes_to_own() {
        // As a cluster node does: registered (no StartAll), started only where it holds the lease.
        let (hub, opener) = scripted_hub(3);
        hub.send(Register { config: cam("a"), persist: false }).await.unwrap().unwrap();
        let mut feed = hub.send(Subscribe { camera_id: Some("a".into()) }).await.unwrap().unwrap().feed;
        assert!(opener.opens.lock().unwrap().is_empty(), "not owned: not started");
        assert!(hub.send(SetRunning("a".into(), true)).await.unwrap().is_some());
        let seq = next_frame(&mut feed, 0).await;
        hub.send(SetRunning("a".into(), false)).await.unwrap();
        assert!(matches!(&*feed.borrow(), Feed::Frame(_)), "lost: stopped, its viewers kept");
        hub.send(SetRunning("a".into(), true)).await.unwrap();
        let later = next_frame(&mut feed, seq).await;
        assert!(later > seq, "taken again: a fresh worker publishes again");
        assert!(hub.send(SetRunning("nope".into(), true)).await.unwrap().is_none());
        hub.send(StopAll { timeout: Duration::from_secs(5) }).await.unwrap();
    }

    #[actix_web::test]
    async fn a_reload_keeps_unchanged_cameras_and_their_viewers_restarts_changed_ones_and_closes_removed_ones() {
        let (hub, opener) = scripted_hub(5);
        for id in ["a", "b", "c"] {
            hub.send(Register { config: cam(id), persist: false }).await.unwrap().unwrap();
        }
        hub.send(StartAll).await.unwrap();
        let subscribe = |id: &str| hub.send(Subscribe { camera_id: Some(id.to_string()) });
        let (mut a, mut b, mut c) = (
            subscribe("a").await.unwrap().unwrap().feed,
            subscribe("b").await.unwrap().unwrap().feed,
            subscribe("c").await.unwrap().unwrap().feed,
        );
        let (a_seq, b_seq) = (next_frame(&mut a, 0).await, next_frame(&mut b, 0).await);
        next_frame(&mut c, 0).await;
        assert_eq!(opener.opens.lock().unwrap().len(), 3);

        let mut b2 = cam("b");
        b2.source = "b2.mp4".into();
        let summary = hub.send(Reload(vec![cam("a"), b2, cam("d")])).await.unwrap();
        assert_eq!(summary, ReloadSummary { added: ids(&["d"]), removed: ids(&["c"]), restarted: ids(&["b"]), updated: vec![] });

        assert!(matches!(&*c.borrow(), Feed::Closed("camera removed")), "c's viewer is told why");
        // b (restarted) and d (added) open their sources; b's viewer stays and gets the new worker's
        // frames; a's worker is not touched.
        let opened = || opener.opens.lock().unwrap().len();
        for _ in 0..1000 {
            if opened() >= 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let b_seq = next_frame(&mut b, b_seq).await;
        next_frame(&mut b, b_seq).await;
        next_frame(&mut a, a_seq).await;
        assert_eq!(opened(), 5, "only b and d opened their sources again");
        let listed: Vec<_> = hub.send(Statuses).await.unwrap().into_iter().map(|s| s.camera_id).collect();
        assert_eq!(listed, ids(&["a", "b", "d"]));
        hub.send(StopAll { timeout: Duration::from_secs(5) }).await.unwrap();
        assert!(matches!(&*a.borrow(), Feed::Closed("server shutting down")));
    }

    #[actix_web::test]
    async fn a_reload_patches_what_a_patch_could_change_and_restarts_only_for_the_rest() {
        let (hub, opener) = scripted_hub(3);
        for id in ["a", "b"] {
            hub.send(Register { config: cam(id), persist: false }).await.unwrap().unwrap();
        }
        hub.send(StartAll).await.unwrap();
        let mut a = hub.send(Subscribe { camera_id: Some("a".into()) }).await.unwrap().unwrap().feed;
        let seq = next_frame(&mut a, 0).await;
        let (mut a2, mut b2) = (cam("a"), cam("b"));
        a2.jpeg_quality = 55;
        b2.source = "elsewhere.mp4".into();
        let summary = hub.send(Reload(vec![a2, b2])).await.unwrap();
        assert_eq!(summary, ReloadSummary { restarted: ids(&["b"]), updated: ids(&["a"]), ..Default::default() });
        next_frame(&mut a, seq).await;
        let status = hub.send(GetStatus("a".into())).await.unwrap().unwrap();
        assert_eq!(status.jpeg_quality, 55);
        for _ in 0..1000 {
            if opener.opens.lock().unwrap().len() >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let b = hub.send(GetStatus("b".into())).await.unwrap().unwrap();
        assert_eq!(opener.opens.lock().unwrap().len(), 3, "a kept its source open; b opened its new one: {:?} b: {b:?}", opener.opens.lock().unwrap());
        hub.send(StopAll { timeout: Duration::from_secs(5) }).await.unwrap();
    }
}
