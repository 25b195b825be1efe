//! `[notify]` in the settings file: where notifications go (`[[notify.webhooks]]`), the links they
//! carry, how long an undeliverable one is kept, and when an unacknowledged fall is escalated.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::events::EventKind;

/// `[notify]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySettings {
    /// Where HAVEN is reached from the receivers: the base of the links in each notification.
    pub public_url: String,
    /// A notification not delivered this long after it was written is given up (logged, counted).
    pub max_age_secs: u64,
    /// A fall not acknowledged this long after it started is sent again, as `escalation`, to the
    /// targets marked `escalation = true`; 0: never.
    pub escalate_after_secs: u64,
    pub webhooks: Vec<WebhookSettings>,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self { public_url: "http://127.0.0.1:8000".into(), max_age_secs: 86400, escalate_after_secs: 0, webhooks: Vec::new() }
    }
}

/// One `[[notify.webhooks]]`: a POST of each wanted notification's JSON to `url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Names the target in `/api/notify`, `/metrics` and the outbox.
    pub name: String,
    pub url: String,
    /// The event kinds it wants (`fall`, `person_detected`, `object_detected`).
    #[serde(default = "default_kinds")]
    pub kinds: Vec<String>,
    /// The cameras it wants; empty: all.
    #[serde(default)]
    pub cameras: Vec<String>,
    /// A file holding the HMAC secret: each POST then carries `X-Haven-Signature: sha256=<hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// `https://` only: a PEM file of CA certificates trusted besides the system's (a receiver
    /// with a private CA's or its own certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Also receives escalations of unacknowledged falls.
    #[serde(default)]
    pub escalation: bool,
}

fn default_kinds() -> Vec<String> {
    vec!["fall".into()]
}

fn default_timeout() -> u64 {
    10
}

/// Whether `url` is an absolute http(s) URL with a host.
fn check_http_url(url: &str) -> Result<(), String> {
    let shown = crate::redact::redact_url(url);
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("must be an http:// or https:// URL, got {shown:?}"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') || url.chars().any(char::is_whitespace) {
        return Err(format!("must name a host, got {shown:?}"));
    }
    Ok(())
}

impl WebhookSettings {
    /// The kinds as the events name them (checked by `validate`).
    pub fn event_kinds(&self) -> Vec<EventKind> {
        self.kinds.iter().filter_map(|k| EventKind::parse(k)).collect()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        crate::text::check("name", &self.name, crate::text::ID)?;
        check_http_url(&self.url).map_err(|e| ConfigError::new("url", e))?;
        if let Some(bad) = self.kinds.iter().find(|k| EventKind::parse(k).is_none()) {
            return Err(ConfigError::new("kinds", format!("names {bad:?}, not an event kind (fall, person_detected, object_detected)")));
        }
        if self.kinds.is_empty() {
            return Err(ConfigError::new("kinds", "is empty: the webhook would never be called"));
        }
        if self.ca_file.is_some() && !self.url.starts_with("https://") {
            return Err(ConfigError::new("ca_file", "needs an https:// url"));
        }
        if !(1..=300).contains(&self.timeout_secs) {
            return Err(ConfigError::new("timeout_secs", format!("must lie in 1..=300, got {}", self.timeout_secs)));
        }
        Ok(())
    }
}

impl NotifySettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|e| e.within("notify"))
    }

    fn check(&self) -> Result<(), ConfigError> {
        check_http_url(&self.public_url).map_err(|e| ConfigError::new("public_url", e))?;
        if self.max_age_secs == 0 {
            return Err(ConfigError::new("max_age_secs", "must be at least 1"));
        }
        let mut names = std::collections::HashSet::new();
        for (i, hook) in self.webhooks.iter().enumerate() {
            hook.validate().map_err(|e| e.within(&format!("webhooks[{i}]")))?;
            if hook.name == "mqtt" {
                return Err(ConfigError::new(format!("webhooks[{i}].name"), "\"mqtt\" is the name of MQTT's own target (haven/events); choose another"));
            }
            if !names.insert(hook.name.as_str()) {
                return Err(ConfigError::new(format!("webhooks[{i}].name"), format!("{:?} is taken by another target", hook.name)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(url: &str, kinds: &[&str]) -> NotifySettings {
        let hook = WebhookSettings {
            name: "pager".into(),
            url: url.into(),
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            cameras: vec![],
            secret_file: None,
            ca_file: None,
            timeout_secs: 10,
            escalation: false,
        };
        NotifySettings { webhooks: vec![hook], ..Default::default() }
    }

    #[test]
    fn bad_webhooks_are_refused_naming_the_field() {
        assert!(hook("http://127.0.0.1:9/hook", &["fall"]).validate().is_ok());
        assert!(hook("https://user:pw@example.org/x", &["fall", "person_detected"]).validate().is_ok());
        let e = hook("ftp://user:secret@host/x", &["fall"]).validate().unwrap_err();
        assert_eq!(e.field, "notify.webhooks[0].url");
        assert!(!e.to_string().contains("secret"), "{e}");
        assert_eq!(hook("http:///x", &["fall"]).validate().unwrap_err().field, "notify.webhooks[0].url");
        let e = hook("http://h/x", &["falls"]).validate().unwrap_err();
        assert_eq!(e.field, "notify.webhooks[0].kinds");
        assert!(e.to_string().contains("falls"), "{e}");
        let mut taken = hook("http://h/x", &["fall"]);
        taken.webhooks[0].name = "mqtt".into();
        let e = taken.validate().unwrap_err();
        assert_eq!(e.field, "notify.webhooks[0].name", "MQTT's own target is called mqtt in the outbox");
        let mut plain_ca = hook("http://h/x", &["fall"]);
        plain_ca.webhooks[0].ca_file = Some("/etc/haven/ca.pem".into());
        assert_eq!(plain_ca.validate().unwrap_err().field, "notify.webhooks[0].ca_file");
        plain_ca.webhooks[0].url = "https://h/x".into();
        assert!(plain_ca.validate().is_ok());
    }
}
