//! The async face of a camera: starts its worker thread and stops it on request.

use std::sync::atomic::Ordering;

use actix::{Actor, ActorContext, Addr, Context, Handler, Message, SyncArbiter};

use super::packet::Feed;
use super::worker::{CameraWorker, Run, WorkerContext};

pub struct CameraActor {
    ctx: WorkerContext,
    worker: Option<Addr<CameraWorker>>,
}

impl CameraActor {
    pub fn new(ctx: WorkerContext) -> Self {
        Self { ctx, worker: None }
    }
}

impl Actor for CameraActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        let ctx = self.ctx.clone();
        let worker = SyncArbiter::start(1, move || CameraWorker { ctx: ctx.clone() });
        worker.do_send(Run);
        self.worker = Some(worker);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.ctx.stop.store(true, Ordering::Relaxed);
    }
}

/// Stops the worker (it notices within a frame or a poll step) and tells viewers why.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopCamera {
    /// Viewers are closed with this reason; `None` keeps them for the camera's next worker.
    pub reason: Option<&'static str>,
}

impl Handler<StopCamera> for CameraActor {
    type Result = ();

    fn handle(&mut self, msg: StopCamera, ctx: &mut Context<Self>) {
        self.ctx.stop.store(true, Ordering::Relaxed);
        if let Some(reason) = msg.reason {
            self.ctx.feed.send_replace(Feed::Closed(reason));
        }
        // Dropping the address lets the SyncArbiter thread exit once `Run` returns.
        self.worker = None;
        ctx.stop();
    }
}
