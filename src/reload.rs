//! Applying an edited settings file without a restart: on SIGHUP, or when the file changes on disk.
//! Every section that can change live is applied (`[detection]`, `[events]`, `[stream]`,
//! `[alerts]`, the cameras); a changed setting that cannot is named in the log and in the answer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use actix::Addr;
use serde::Serialize;
use serde_json::Value;
use tokio::signal::unix::{signal, SignalKind};

use crate::api::config::{AlertsSettings, StreamSettings};
use crate::camera::config::{CameraConfig, DetectionSettings};
use crate::config::Live;
use crate::events::EventSettings;
use crate::hub::{ReloadAnswer, ReloadFile, ReloadedFile, SettingsFile, StreamHub};
use crate::settings::{save_cameras, Settings};

/// How often the file's modification time is checked.
const POLL: Duration = Duration::from_secs(2);

/// The sections a reload replaces while the server runs, shared with the parts that read them.
#[derive(Debug, Clone)]
pub struct LiveSections {
    pub detection: Live<DetectionSettings>,
    pub events: Live<EventSettings>,
    pub stream: Live<StreamSettings>,
    pub alerts: Live<AlertsSettings>,
}

impl LiveSections {
    /// `events`: the event hub's own handle (it and every camera's engine follow it).
    pub fn new(settings: &Settings, events: Live<EventSettings>) -> Self {
        Self {
            detection: Live::new(settings.detection.clone()),
            events,
            stream: Live::new(settings.stream.clone()),
            alerts: Live::new(settings.alerts.clone()),
        }
    }
}

/// Settings inside a live section that still need a restart: what was built from them at start-up
/// (the inference threads, the event store's directory, whether cameras feed events at all).
const STARTUP_ONLY: &[&str] = &["detection.workers", "events.data_dir", "events.enabled"];

/// The settings file the server was started with, as the hub writes and re-reads it.
pub struct WatchedFile {
    path: PathBuf,
    /// The settings last applied: a reload names what changed since.
    applied: Mutex<Settings>,
    live: LiveSections,
}

impl WatchedFile {
    pub fn new(path: PathBuf, settings: Settings, live: LiveSections) -> Self {
        Self { path, applied: Mutex::new(settings), live }
    }

    /// Applies the live sections of `new` and names every changed setting that needs a restart.
    fn apply(&self, old: &Settings, new: &Settings) -> (Vec<String>, Vec<String>) {
        let (mut applied, mut needs_restart) = (Vec::new(), Vec::new());
        let mut apply_live = |name: &str, changed: bool, set: &dyn Fn()| {
            if changed {
                set();
                applied.push(name.to_string());
            }
        };
        let l = &self.live;
        apply_live("detection", differs(&old.detection, &new.detection), &|| l.detection.set(new.detection.clone()));
        apply_live("events", differs(&old.events, &new.events), &|| l.events.set(new.events.clone()));
        apply_live("stream", differs(&old.stream, &new.stream), &|| l.stream.set(new.stream.clone()));
        apply_live("alerts", differs(&old.alerts, &new.alerts), &|| l.alerts.set(new.alerts.clone()));
        for (section, before, after) in [
            ("detection", json(&old.detection), json(&new.detection)),
            ("events", json(&old.events), json(&new.events)),
        ] {
            needs_restart.extend(changed_keys(section, &before, &after).into_iter().filter(|k| STARTUP_ONLY.contains(&k.as_str())));
        }
        for (section, before, after) in [
            ("server", json(&old.server), json(&new.server)),
            ("api", json(&old.api), json(&new.api)),
            ("capture", json(&old.capture), json(&new.capture)),
            ("models", json(&old.models), json(&new.models)),
            ("cluster", json(&old.cluster), json(&new.cluster)),
            ("notify", json(&old.notify), json(&new.notify)),
            ("mqtt", json(&old.mqtt), json(&new.mqtt)),
            ("auth", json(&old.auth), json(&new.auth)),
        ] {
            needs_restart.extend(changed_keys(section, &before, &after));
        }
        (applied, needs_restart)
    }
}

impl SettingsFile for WatchedFile {
    fn save_cameras(&self, cameras: &[CameraConfig]) -> Result<(), String> {
        save_cameras(&self.path, cameras).map_err(|e| e.to_string())?;
        self.applied.lock().unwrap_or_else(|e| e.into_inner()).cameras = cameras.to_vec();
        Ok(())
    }

    fn reload(&self) -> Result<ReloadedFile, String> {
        let new = Settings::load(&self.path).map_err(|e| e.to_string())?;
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        let (live, needs_restart) = self.apply(&applied, &new);
        let cameras = new.cameras.clone();
        *applied = new;
        Ok(ReloadedFile { cameras, applied: live, needs_restart })
    }
}

fn json(value: &impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn differs(a: &impl Serialize, b: &impl Serialize) -> bool {
    json(a) != json(b)
}

/// `section.key` for every key whose value differs (the section itself when it appeared or went).
fn changed_keys(section: &str, before: &Value, after: &Value) -> Vec<String> {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().filter(|k| b.get(*k) != a.get(*k)).map(|k| format!("{section}.{k}")).collect()
        }
        (b, a) if b != a => vec![section.to_string()],
        _ => Vec::new(),
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Has the hub reload the file (it reads it itself, in order with its write-backs). A broken file
/// changes nothing and says why.
pub async fn reload(hub: &Addr<StreamHub>) -> Option<ReloadAnswer> {
    match hub.send(ReloadFile).await {
        Ok(Ok(answer)) => Some(answer),
        Ok(Err(e)) => {
            log::error!("Settings not reloaded, cameras unchanged: {e}");
            None
        }
        Err(e) => {
            log::error!("Settings not reloaded: the camera registry is not answering ({e})");
            None
        }
    }
}

/// Reloads the file on SIGHUP or when it changes on disk; each reload that changed something goes
/// into the audit log (`accounts`), by "settings file".
pub async fn watch(path: PathBuf, hub: Addr<StreamHub>, accounts: Option<Arc<crate::auth::AccountStore>>) {
    let audit = |answer: Option<ReloadAnswer>| {
        if let (Some(answer), Some(accounts)) = (answer, &accounts) {
            if let Some(detail) = audit_detail(&answer) {
                accounts.audit("settings file", "reload", &path.display().to_string(), &detail);
            }
        }
    };
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
                audit(reload(&hub).await);
            }
            _ = tick.tick() => {
                let now = modified(&path);
                if now != last {
                    last = now;
                    log::info!("{} changed: reloading", path.display());
                    audit(reload(&hub).await);
                }
            }
        }
    }
}

/// What a reload changed, for the audit log: `cameras added [a], updated [b]; applied [stream.fps]`
/// (`None`: nothing).
fn audit_detail(answer: &ReloadAnswer) -> Option<String> {
    let c = &answer.cameras;
    let mut parts = Vec::new();
    for (what, ids) in [("added", &c.added), ("removed", &c.removed), ("restarted", &c.restarted), ("updated", &c.updated)] {
        if !ids.is_empty() {
            parts.push(format!("cameras {what} {ids:?}"));
        }
    }
    for (what, keys) in [("applied", &answer.applied), ("needing a restart", &answer.needs_restart)] {
        if !keys.is_empty() {
            parts.push(format!("settings {what} {keys:?}"));
        }
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_is_audited_by_what_it_changed_and_not_at_all_when_nothing_did() {
        let mut answer = ReloadAnswer { cameras: Default::default(), applied: vec![], needs_restart: vec![] };
        assert_eq!(audit_detail(&answer), None);
        answer.cameras.added = vec!["yard".into()];
        answer.needs_restart = vec!["server.bind".into()];
        assert_eq!(audit_detail(&answer).unwrap(), r#"cameras added ["yard"]; settings needing a restart ["server.bind"]"#);
    }

    #[test]
    fn a_changed_setting_is_named_with_its_section() {
        let before = serde_json::json!({"bind": "127.0.0.1:8080", "workers": 0});
        let after = serde_json::json!({"bind": "0.0.0.0:8080", "workers": 0});
        assert_eq!(changed_keys("server", &before, &after), vec!["server.bind"]);
        assert_eq!(changed_keys("cluster", &Value::Null, &after), vec!["cluster"]);
        assert!(changed_keys("server", &after, &after).is_empty());
    }

    #[test]
    fn a_reload_applies_the_live_sections_and_names_what_needs_a_restart() {
        let dir = std::env::temp_dir().join(format!("haven-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("haven.toml");
        let shipped = include_str!("../settings/default.toml");
        std::fs::write(&path, shipped).unwrap();
        let settings = Settings::load(&path).unwrap();
        let events = Live::new(settings.events.clone());
        let live = LiveSections::new(&settings, events);
        let file = WatchedFile::new(path.clone(), settings, live.clone());
        let (detection, stream) = (live.detection.version(), live.stream.version());

        let edited = shipped
            .replacen("\ndetect_fps = 5\n", "\ndetect_fps = 2\n", 1)
            .replacen("\nfps_limit = 10", "\nfps_limit = 5", 1)
            .replacen("bind = \"127.0.0.1:8000\"", "bind = \"127.0.0.1:8001\"", 1)
            .replacen("escalate_after_secs = 0", "escalate_after_secs = 60", 1)
            .replacen("topic_prefix = \"haven\"", "topic_prefix = \"home\"", 1);
        std::fs::write(&path, edited).unwrap();
        let reloaded = file.reload().unwrap();
        assert_eq!(reloaded.applied, ["detection", "stream"]);
        assert_eq!(reloaded.needs_restart, ["server.bind", "notify.escalate_after_secs", "mqtt.topic_prefix"]);
        assert_eq!((live.detection.get().detect_fps, live.stream.get().fps_limit), (2.0, 5.0));
        assert!(live.detection.version() > detection && live.stream.version() > stream);
        assert_eq!(file.reload().unwrap().applied, Vec::<String>::new(), "the same file again changes nothing");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
