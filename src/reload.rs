//! Applying an edited settings file without a restart: on SIGHUP, or when the file changes on disk.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use actix::Addr;
use tokio::signal::unix::{signal, SignalKind};

use crate::hub::{ReloadFile, StreamHub};

/// How often the file's modification time is checked.
const POLL: Duration = Duration::from_secs(2);

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Has the hub load the file and apply its cameras. The hub reads it itself, in order with the API's
/// write-backs to the same file: a copy read here and applied later could be older than a change the
/// API made meanwhile, and would undo it (a deleted camera would come back). A broken file changes
/// nothing and says why.
pub async fn reload(path: &Path, hub: &Addr<StreamHub>) {
    match hub.send(ReloadFile(path.to_path_buf())).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => log::error!("Settings not reloaded, cameras unchanged: {e}"),
        Err(e) => log::error!("Settings not reloaded: the camera registry is not answering ({e})"),
    }
}

pub async fn watch(path: PathBuf, hub: Addr<StreamHub>) {
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("no SIGHUP handler: {e}");
            return;
        }
    };
    let mut last = modified(&path);
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                log::info!("SIGHUP: reloading {}", path.display());
                last = modified(&path);
                reload(&path, &hub).await;
            }
            _ = tick.tick() => {
                let now = modified(&path);
                if now != last {
                    last = now;
                    log::info!("{} changed: reloading", path.display());
                    reload(&path, &hub).await;
                }
            }
        }
    }
}
