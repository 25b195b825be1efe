//! `StreamHub`: the registry of cameras and owner of the one shared AI engine.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix::{Actor, Addr, Context, Handler, Message, MessageResult, ResponseFuture};
use serde::Serialize;
use tokio::sync::watch;

use crate::camera::actor::StopCamera;
use crate::camera::worker::WorkerContext;
use crate::camera::{CameraActor, CameraState, CameraStatus, CameraStatusView, Feed};
use crate::inference::SharedEngine;
use crate::settings::CameraConfig;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("camera \"{0}\" already exists")]
    Duplicate(String),
    #[error("unknown camera: {0}")]
    UnknownCamera(String),
    #[error("{0}")]
    InvalidCamera(String),
}

struct CameraEntry {
    ctx: WorkerContext,
    actor: Option<Addr<CameraActor>>,
}

impl CameraEntry {
    fn id(&self) -> String {
        self.ctx.config.read().unwrap().camera_id.clone()
    }

    fn view(&self, engine_loaded: bool) -> CameraStatusView {
        let config = self.ctx.config.read().unwrap();
        let ai = config.ai_enabled && engine_loaded;
        self.ctx.status.snapshot(&config, ai, self.ctx.feed.receiver_count())
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
    engine: Option<Arc<SharedEngine>>,
    running: bool,
}

impl StreamHub {
    pub fn new(engine: Option<Arc<SharedEngine>>) -> Self {
        Self { cameras: Vec::new(), engine, running: false }
    }

    fn find(&self, id: &str) -> Option<&CameraEntry> {
        self.cameras.iter().find(|c| c.ctx.config.read().unwrap().camera_id == id)
    }

    fn start_camera(entry: &mut CameraEntry) {
        if entry.actor.is_none() {
            entry.actor = Some(CameraActor::new(entry.ctx.clone()).start());
        }
    }
}

impl Actor for StreamHub {
    type Context = Context<Self>;
}

/// Adds a camera (started at once if the hub is running).
#[derive(Message)]
#[rtype(result = "Result<CameraStatusView, HubError>")]
pub struct Register(pub CameraConfig);

impl Handler<Register> for StreamHub {
    type Result = Result<CameraStatusView, HubError>;

    fn handle(&mut self, Register(config): Register, _: &mut Context<Self>) -> Self::Result {
        config.validate().map_err(HubError::InvalidCamera)?;
        if self.find(&config.camera_id).is_some() {
            return Err(HubError::Duplicate(config.camera_id));
        }
        log::info!(
            "Registered camera: {} → {} ({})",
            config.camera_id,
            config.display_source(),
            config.source_type.as_str()
        );
        let (feed, _) = watch::channel(Feed::Waiting);
        let mut entry = CameraEntry {
            ctx: WorkerContext {
                config: Arc::new(RwLock::new(config)),
                status: Arc::new(CameraStatus::default()),
                engine: self.engine.clone(),
                feed: Arc::new(feed),
                stop: Arc::new(AtomicBool::new(false)),
            },
            actor: None,
        };
        if self.running {
            Self::start_camera(&mut entry);
        }
        let view = entry.view(self.engine.is_some());
        self.cameras.push(entry);
        Ok(view)
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct StartAll;

impl Handler<StartAll> for StreamHub {
    type Result = ();

    fn handle(&mut self, _: StartAll, _: &mut Context<Self>) {
        self.running = true;
        self.cameras.iter_mut().for_each(Self::start_camera);
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
            if let Some(actor) = entry.actor.take() {
                actor.do_send(StopCamera { reason: "server shutting down" });
                waiting.push((entry.id(), entry.ctx.status.clone()));
            }
            entry.ctx.stop.store(true, Ordering::Relaxed);
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
        let loaded = self.engine.is_some();
        MessageResult(self.cameras.iter().map(|c| c.view(loaded)).collect())
    }
}

#[derive(Message)]
#[rtype(result = "Result<CameraStatusView, HubError>")]
pub struct GetStatus(pub String);

impl Handler<GetStatus> for StreamHub {
    type Result = Result<CameraStatusView, HubError>;

    fn handle(&mut self, GetStatus(id): GetStatus, _: &mut Context<Self>) -> Self::Result {
        self.find(&id).map(|c| c.view(self.engine.is_some())).ok_or(HubError::UnknownCamera(id))
    }
}

/// The shared engine as `GET /api/engine` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct EngineInfo {
    pub loaded: bool,
    pub name: Option<String>,
    /// Inference calls since start, all cameras together.
    pub calls: u64,
}

#[derive(Message)]
#[rtype(result = "EngineInfo")]
pub struct GetEngineInfo;

impl Handler<GetEngineInfo> for StreamHub {
    type Result = MessageResult<GetEngineInfo>;

    fn handle(&mut self, _: GetEngineInfo, _: &mut Context<Self>) -> Self::Result {
        MessageResult(EngineInfo {
            loaded: self.engine.is_some(),
            name: self.engine.as_ref().map(|e| e.name()),
            calls: self.engine.as_ref().map_or(0, |e| e.calls()),
        })
    }
}
