//! The camera side of a cluster node: what the book's `Start`, `Stop` and `Fence` mean here (the
//! hub runs or stops the worker, the relay publisher serves the other nodes, the fence moves).

use std::sync::atomic::Ordering;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::leases::Action;
use super::round::Hands;
use super::{relay, Cluster};
use crate::hub::SetRunning;

impl Hands for Cluster {
    fn apply(&self, action: Action) -> BoxFuture<'_, ()> {
        async move {
            match action {
                Action::Start(id) => self.start(&id).await,
                Action::Stop(id) => self.stop(&id).await,
                Action::Fence { camera, until } => {
                    if let Some(local) = self.state.lock().unwrap().cameras.get(&camera) {
                        local.port.fence.extend_to(until);
                    }
                }
                Action::Renew { .. } | Action::Take(_) | Action::Release { .. } => {}
            }
        }
        .boxed()
    }
}

impl Cluster {
    /// This node took the camera's lease: its worker runs here and its packets go to the others.
    async fn start(&self, id: &str) {
        let Some(port) = self.state.lock().unwrap().cameras.get(id).map(|c| c.port.clone()) else { return };
        let publisher = tokio::spawn(relay::publish(self.client.clone(), id.to_string(), port, (self.relay.published(id), self.relay.published_bytes(id))));
        match self.state.lock().unwrap().cameras.get_mut(id) {
            Some(c) => {
                c.owned.store(true, Ordering::Release);
                c.publisher = Some(publisher);
            }
            None => publisher.abort(),
        }
        // Events the previous owner left open (it died, or was cut off) end now.
        if let Some(hub) = self.events.get().cloned() {
            let camera = id.to_string();
            let ended = tokio::task::spawn_blocking(move || hub.end_abandoned(&camera, crate::events::now())).await.unwrap_or_default();
            if !ended.is_empty() {
                log::info!("[{id}] ended {} events its previous owner left open", ended.len());
            }
        }
        let _ = self.hub.send(SetRunning(id.to_string(), true)).await;
    }

    /// Stops a camera this node no longer owns (its viewers stay, fed by the relay from now on).
    async fn stop(&self, id: &str) {
        let publisher = self.state.lock().unwrap().cameras.get_mut(id).and_then(|c| {
            c.port.fence.close();
            c.owned.store(false, Ordering::Release);
            c.publisher.take()
        });
        if let Some(publisher) = publisher {
            publisher.abort();
        }
        let _ = self.hub.send(SetRunning(id.to_string(), false)).await;
    }
}
