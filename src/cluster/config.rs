//! `[cluster]`: this node's NATS servers, name, share of the cameras and lease length.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::redact::redact_url;

/// `[cluster]`: this server is one node of a cluster whose camera inventory, ownership leases and
/// relayed frames live in NATS (JetStream key-value buckets and core subjects). docs/scaling.md.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// One NATS URL or a list of them (`nats://host:4222`); the client tries each.
    pub nats_url: NatsUrls,
    /// This node's name, unique in the cluster: its leases and heartbeats carry it.
    pub node_name: String,
    /// A NATS credentials file (`.creds`: JWT and NKey seed); never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
    /// This node's share of the cameras against the others' (rendezvous hashing weight).
    #[serde(default = "default_capacity")]
    pub capacity: f64,
    /// How long a camera's lease lasts unless renewed (renewed every third of it).
    #[serde(default = "default_lease_secs")]
    pub lease_secs: f64,
    /// Move cameras to the node rendezvous hashing picks when nodes join (false: a camera stays
    /// with its owner until the owner stops or dies).
    #[serde(default)]
    pub rebalance: bool,
    /// JetStream replicas of the buckets, the events stream and the media store when this node
    /// creates them: 1 on a single nats-server, 3 on a three-server NATS cluster (so that losing
    /// one server loses nothing).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
}

fn default_replicas() -> usize {
    1
}

/// `nats_url = "nats://a:4222"` or `nats_url = ["nats://a:4222", "nats://b:4222"]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NatsUrls {
    One(String),
    Many(Vec<String>),
}

impl NatsUrls {
    pub fn list(&self) -> Vec<String> {
        match self {
            NatsUrls::One(u) => vec![u.clone()],
            NatsUrls::Many(v) => v.clone(),
        }
    }
}

fn default_capacity() -> f64 {
    1.0
}

fn default_lease_secs() -> f64 {
    6.0
}

/// The credentials file's path is shown as set or not, never its contents (nor its path).
impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("nats_url", &self.nats_url.list().iter().map(|u| redact_url(u)).collect::<Vec<_>>())
            .field("node_name", &self.node_name)
            .field("credentials_file", &self.credentials_file.as_ref().map(|_| "<set>"))
            .field("capacity", &self.capacity)
            .field("lease_secs", &self.lease_secs)
            .field("rebalance", &self.rebalance)
            .field("replicas", &self.replicas)
            .finish()
    }
}

impl ClusterSettings {
    /// Every rule about `[cluster]`; the error names the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_fields().map_err(|e| e.within("cluster"))
    }

    fn validate_fields(&self) -> Result<(), ConfigError> {
        let urls = self.nats_url.list();
        if urls.is_empty() {
            return Err(ConfigError::new("nats_url", "must name at least one NATS server"));
        }
        for url in &urls {
            crate::text::check("nats_url", url, crate::text::SOURCE)?;
            let scheme_ok = ["nats://", "tls://", "ws://", "wss://"].iter().any(|s| url.starts_with(s)) || !url.contains("://");
            if !scheme_ok {
                return Err(ConfigError::new("nats_url", format!("{} must be nats://, tls://, ws:// or wss://", redact_url(url))));
            }
        }
        crate::text::check("node_name", &self.node_name, crate::text::ID)?;
        if self.node_name.contains('.') {
            return Err(ConfigError::new("node_name", format!("{:?} must not contain '.' (it is one token of NATS subjects)", self.node_name)));
        }
        if let Some(path) = &self.credentials_file {
            crate::text::check("credentials_file", &path.to_string_lossy(), crate::text::PATH)?;
        }
        if !(self.capacity > 0.0 && self.capacity <= 1000.0) {
            return Err(ConfigError::new("capacity", format!("{} is out of range (0, 1000]", self.capacity)));
        }
        if !(self.lease_secs >= 1.0 && self.lease_secs <= 300.0) {
            return Err(ConfigError::new("lease_secs", format!("{} is out of range [1, 300]", self.lease_secs)));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(ConfigError::new("replicas", format!("{} is out of range [1, 5]", self.replicas)));
        }
        Ok(())
    }
}
