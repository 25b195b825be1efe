//! The API's settings: where it listens (`[server]`), who may call it (`[api]`) and how live
//! viewers (`[stream]`) and alert sockets (`[alerts]`) are paced and timed out.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// Bearer token that POST, PATCH and DELETE requests must carry; empty means none is needed.
    #[serde(default)]
    pub token: String,
    /// Reads need the token too (REST, WebSockets, snapshots, MJPEG, metrics, events); clients that
    /// cannot set a header (a browser's WebSocket or `<img>`) pass it as `?token=`. The UI's own files
    /// stay open.
    #[serde(default)]
    pub protect_reads: bool,
    /// Directories that file sources added through the API must lie in.
    pub media_dirs: Vec<PathBuf>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// `host:port`; port 0 picks a free port (tests).
    pub bind: String,
    /// HTTP worker threads; 0 means one per core.
    #[serde(default)]
    pub workers: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    /// Frames per second a viewer gets unless it asks for another rate with `?fps=`.
    pub fps_limit: f64,
    /// Upper bound a viewer may ask for with `?fps=`.
    pub max_fps: f64,
    /// How often the server pings each viewer.
    pub heartbeat_interval_secs: f64,
    /// A viewer silent (no pong, no message) for this long is closed.
    pub client_timeout_secs: f64,
    /// A viewer whose socket has not accepted a frame for this long is closed: it has stopped reading.
    pub send_timeout_secs: f64,
}

/// `[alerts]`: the timeouts of `/ws/alerts` sockets, as `[stream]` has them for viewers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsSettings {
    /// How often the server pings each alerts socket.
    pub heartbeat_interval_secs: f64,
    /// An alerts socket silent (no pong, no message) for this long is closed.
    pub client_timeout_secs: f64,
    /// An alerts socket that has not taken an alert for this long is closed: it has stopped reading.
    pub send_timeout_secs: f64,
}

impl Default for AlertsSettings {
    fn default() -> Self {
        Self { heartbeat_interval_secs: 10.0, client_timeout_secs: 30.0, send_timeout_secs: 10.0 }
    }
}


/// A socket's heartbeat, client timeout and send timeout (`[stream]`, `[alerts]`).
fn validate_socket(section: &str, heartbeat: f64, client_timeout: f64, send_timeout: f64) -> Result<(), ConfigError> {
    for (name, v) in [("heartbeat_interval_secs", heartbeat), ("client_timeout_secs", client_timeout), ("send_timeout_secs", send_timeout)] {
        if !(v > 0.0 && v <= 3600.0) {
            return Err(ConfigError::new(format!("{section}.{name}"), format!("{v} is out of range (0, 3600]")));
        }
    }
    if client_timeout <= heartbeat {
        return Err(ConfigError::new(format!("{section}.client_timeout_secs"), format!("must be longer than {section}.heartbeat_interval_secs")));
    }
    Ok(())
}

impl StreamSettings {
    /// Every rule about `[stream]`; the error names the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ok_rate = self.fps_limit > 0.0 && self.fps_limit <= self.max_fps && std::time::Duration::try_from_secs_f64(1.0 / self.fps_limit).is_ok();
        if !ok_rate {
            return Err(ConfigError::new("stream.fps_limit", format!("{} must be above 0 and at most stream.max_fps {}", self.fps_limit, self.max_fps)));
        }
        if !(self.max_fps > 0.0 && self.max_fps <= 120.0) {
            return Err(ConfigError::new("stream.max_fps", format!("{} is out of range (0, 120]", self.max_fps)));
        }
        validate_socket("stream", self.heartbeat_interval_secs, self.client_timeout_secs, self.send_timeout_secs)
    }
}

impl AlertsSettings {
    /// Every rule about `[alerts]`; the error names the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_socket("alerts", self.heartbeat_interval_secs, self.client_timeout_secs, self.send_timeout_secs)
    }
}

impl ApiSettings {
    /// Every rule about `[api]`; the error names the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.protect_reads && self.token.is_empty() {
            return Err(ConfigError::new("api.protect_reads", "needs api.token"));
        }
        if !(256..=16 << 20).contains(&self.max_body_bytes) {
            return Err(ConfigError::new("api.max_body_bytes", format!("{} is out of range 256-16777216", self.max_body_bytes)));
        }
        for dir in &self.media_dirs {
            crate::text::check("api.media_dirs", &dir.to_string_lossy(), crate::text::PATH)?;
        }
        Ok(())
    }
}
