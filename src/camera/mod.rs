//! One camera: a `Camera` handle that owns its worker thread, stop flag, feed, status and settings.
//! The worker (capture, motion, inference hand-off, annotation, encoding) runs on a `SyncArbiter`
//! thread and sees its source and its time only through the `Opener` and `Clock` seams.

pub mod analyse;
pub mod clock;
pub mod config;
pub mod encoder;
pub mod error;
pub mod event_feed;
pub mod fence;
pub mod frame_settings;
pub mod frame_step;
pub mod gate;
pub mod live;
pub mod live_config;
pub mod looks;
pub mod motion;
pub mod packet;
pub mod patch;
pub mod publish;
pub mod render;
pub mod rendition;
#[cfg(test)]
pub mod scripted;
pub mod source;
#[cfg(test)]
mod stage_tests;
pub mod status;
pub mod stream;
pub mod worker;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::{Addr, SyncArbiter};
use tokio::sync::watch;

pub use packet::{Feed, FramePacket};
pub use patch::CameraPatch;
pub use status::{CameraState, CameraStatus, CameraStatusView, HistogramView};
pub use worker::CameraDeps;

use crate::camera::config::CameraConfig;
use fence::Fence;
use rendition::{Demand, Format, Rendition, Wanted};
use worker::{CameraWorker, Run, WorkerContext};

/// What a viewer needs to follow one camera.
#[derive(Clone)]
pub struct CameraLink {
    pub camera_id: String,
    pub feed: watch::Receiver<Feed>,
    demand: Demand,
}

impl CameraLink {
    /// Asks the camera for `rendition` in `format` from its next frame on, for as long as the
    /// returned guard lives.
    pub fn want(&self, rendition: Rendition, format: Format) -> Wanted {
        self.demand.want(rendition, format)
    }
}

/// What a cluster node needs of a camera beside its viewers: its feed (to fill it with packets
/// relayed from the owner), what its viewers want, and its fence.
#[derive(Clone)]
pub struct CameraPort {
    pub feed: Arc<watch::Sender<Feed>>,
    pub demand: Demand,
    pub fence: Fence,
}

/// One camera for as long as it is registered. Its feed (and so its viewers) outlives restarts;
/// each start gets a fresh worker with its own status and stop flag.
pub struct Camera {
    ctx: WorkerContext,
    worker: Option<Addr<CameraWorker>>,
}

impl Camera {
    pub fn new(config: CameraConfig, deps: CameraDeps) -> Self {
        let (feed, _) = watch::channel(Feed::Waiting);
        Self { ctx: WorkerContext::new(config, Arc::new(feed), Demand::default(), deps), worker: None }
    }

    pub fn id(&self) -> String {
        self.ctx.config.read().unwrap().camera_id.clone()
    }

    pub fn config(&self) -> CameraConfig {
        self.ctx.config.read().unwrap().clone()
    }

    pub fn is_running(&self) -> bool {
        self.worker.is_some()
    }

    /// Starts the worker thread, unless it runs already.
    pub fn start(&mut self) {
        if self.worker.is_none() {
            let ctx = self.ctx.clone();
            let worker = SyncArbiter::start(1, move || CameraWorker { ctx: ctx.clone() });
            worker.do_send(Run);
            self.worker = Some(worker);
        }
    }

    /// Stops the worker (it notices within a frame or a poll step). With a reason, viewers are closed
    /// with it; without one they stay for what comes next.
    pub fn stop(&mut self, reason: Option<&'static str>) {
        self.ctx.stop.store(true, Ordering::Relaxed);
        // Dropping the address lets the SyncArbiter thread exit once `Run` returns.
        self.worker = None;
        if let Some(reason) = reason {
            self.ctx.feed.send_replace(Feed::Closed(reason));
        }
    }

    /// A fresh worker with a new configuration, feeding the same viewers.
    pub fn restart(&mut self, config: CameraConfig) {
        let running = self.is_running();
        self.stop(None);
        self.ctx = self.ctx.renewed(config);
        if running {
            self.start();
        }
    }

    /// Applies settings that change live; the worker uses them from its next frame.
    pub fn update(&self, patch: &CameraPatch) {
        patch.apply(&mut self.ctx.config.write().unwrap());
    }

    /// A new configuration that differs only in live settings (a reload): used from the next frame.
    pub fn set_config(&self, config: CameraConfig) {
        *self.ctx.config.write().unwrap() = config;
    }

    pub fn subscribe(&self) -> CameraLink {
        CameraLink { camera_id: self.id(), feed: self.ctx.feed.subscribe(), demand: self.ctx.demand.clone() }
    }

    pub fn port(&self) -> CameraPort {
        CameraPort { feed: self.ctx.feed.clone(), demand: self.ctx.demand.clone(), fence: self.ctx.fence.clone() }
    }

    pub fn status(&self, engine_loaded: bool) -> CameraStatusView {
        let config = self.ctx.config.read().unwrap();
        let ai = config.ai_enabled && engine_loaded;
        self.ctx.status.snapshot(&config, &self.ctx.config.detection(), ai, self.ctx.feed.receiver_count(), self.ctx.demand.view())
    }

    /// The live counters of the current worker: to wait for it to stop, and for `/metrics`.
    pub fn counters(&self) -> Arc<CameraStatus> {
        self.ctx.status.clone()
    }
}
