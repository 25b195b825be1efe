//! Applying an edited settings file without a restart: on SIGHUP, or when the file changes on disk.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use actix::Addr;
use tokio::signal::unix::{signal, SignalKind};

use crate::hub::{Reload, StreamHub};
use crate::settings::Settings;

/// How often the file's modification time is checked.
const POLL: Duration = Duration::from_secs(2);

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Loads the file and hands its cameras to the hub. A broken file changes nothing and says why.
pub async fn reload(path: &Path, hub: &Addr<StreamHub>) {
    match Settings::load(path) {
        Ok(settings) => {
            let _ = hub.send(Reload(settings.cameras)).await;
        }
        Err(e) => log::error!("Settings not reloaded, cameras unchanged: {e}"),
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
