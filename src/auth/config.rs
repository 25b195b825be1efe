//! `[auth]`: how long a session lasts, how many failed sign-ins a minute are let through, and which
//! reverse proxies' `X-Forwarded-For` is believed.

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// A session (a sign-in in the browser) ends this many hours after it began.
    pub session_hours: f64,
    /// Failed sign-ins a minute let through per account and per address; the next ones get 429.
    pub failed_sign_ins_per_minute: u32,
    /// Addresses or networks of reverse proxies in front of HAVEN whose `X-Forwarded-For` names the
    /// client (for the throttle and the audit log); empty: the connection's address, always.
    pub trusted_proxies: Vec<String>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self { session_hours: 12.0, failed_sign_ins_per_minute: 10, trusted_proxies: Vec::new() }
    }
}

impl AuthSettings {
    /// Every rule about `[auth]`; the error names the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.session_hours > 0.0 && self.session_hours <= 24.0 * 90.0) {
            return Err(ConfigError::new("auth.session_hours", format!("{} is out of range (0, 2160]", self.session_hours)));
        }
        if !(1..=1000).contains(&self.failed_sign_ins_per_minute) {
            return Err(ConfigError::new("auth.failed_sign_ins_per_minute", format!("{} is out of range 1-1000", self.failed_sign_ins_per_minute)));
        }
        super::proxies::TrustedProxies::parse(&self.trusted_proxies).map_err(|e| ConfigError::new("auth.trusted_proxies", e))?;
        Ok(())
    }
}
