//! `[mqtt]`: where HAVEN publishes its events and states, and takes commands (Home Assistant's way).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// `[mqtt]`. An empty `url` leaves MQTT off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSettings {
    /// `mqtt://host:port` (port 1883 when left out); empty: MQTT is off.
    pub url: String,
    /// The first level of every topic HAVEN publishes (`haven/available`, `haven/<camera>/fall`).
    pub topic_prefix: String,
    pub client_id: String,
    /// Empty: connect without credentials.
    pub username: String,
    /// A file holding the password (read at start; its content is never logged or shown).
    pub password_file: Option<PathBuf>,
    /// `mqtts://` only: a PEM file of CA certificates trusted besides the system's (a private CA).
    pub ca_file: Option<PathBuf>,
    /// `mqtts://` only: a PEM client certificate (chain) for a broker that asks for one, and its
    /// private key (read at start; never logged).
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// Publish Home Assistant discovery configs.
    pub discovery: bool,
    pub discovery_prefix: String,
}

impl Default for MqttSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            topic_prefix: "haven".into(),
            client_id: "haven".into(),
            username: String::new(),
            password_file: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            discovery: true,
            discovery_prefix: "homeassistant".into(),
        }
    }
}

/// Where the broker is, from `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
    /// `mqtts://`: TLS, the broker's certificate checked against the system's roots.
    pub tls: bool,
}

impl MqttSettings {
    pub fn enabled(&self) -> bool {
        !self.url.trim().is_empty()
    }

    /// The broker's host and port; `None` when MQTT is off.
    pub fn broker(&self) -> Result<Option<BrokerAddr>, ConfigError> {
        if !self.enabled() {
            return Ok(None);
        }
        let shown = crate::redact::redact_url(&self.url);
        let bad = |why: &str| ConfigError::new("url", format!("{shown:?} {why}"));
        let url = self.url.trim();
        let (rest, tls) = match (url.strip_prefix("mqtt://"), url.strip_prefix("mqtts://")) {
            (Some(rest), _) => (rest, false),
            (_, Some(rest)) => (rest, true),
            _ => return Err(bad("must start with mqtt:// or mqtts:// (TLS)")),
        };
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.contains('@') {
            return Err(bad("must not hold credentials: use mqtt.username and mqtt.password_file"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad("has a port that is not a number in 1-65535"))?),
            None => (authority, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() || port == 0 {
            return Err(bad("names no host and port (mqtt://host:1883)"));
        }
        Ok(Some(BrokerAddr { host: host.to_string(), port, tls }))
    }

    /// The rules of `[mqtt]` (the password file is read when MQTT starts).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let checked = || -> Result<(), ConfigError> {
            self.broker()?;
            for (field, value) in [("topic_prefix", &self.topic_prefix), ("discovery_prefix", &self.discovery_prefix)] {
                if value.is_empty() || value.contains(['+', '#', '\0']) || value.starts_with('/') || value.ends_with('/') {
                    return Err(ConfigError::new(field, format!("{value:?} must be a topic without wildcards, not empty, not starting or ending with /")));
                }
            }
            if self.enabled() && self.client_id.trim().is_empty() {
                return Err(ConfigError::new("client_id", "must not be empty"));
            }
            if self.password_file.is_some() && self.username.is_empty() {
                return Err(ConfigError::new("password_file", "needs mqtt.username"));
            }
            self.check_tls_files()
        };
        checked().map_err(|e| e.within("mqtt"))
    }

    fn check_tls_files(&self) -> Result<(), ConfigError> {
        match (&self.client_cert_file, &self.client_key_file) {
            (Some(_), None) => return Err(ConfigError::new("client_cert_file", "needs mqtt.client_key_file")),
            (None, Some(_)) => return Err(ConfigError::new("client_key_file", "needs mqtt.client_cert_file")),
            _ => {}
        }
        let tls = self.broker()?.is_some_and(|b| b.tls);
        let given = [("ca_file", &self.ca_file), ("client_cert_file", &self.client_cert_file)];
        match given.iter().find(|(_, f)| f.is_some()) {
            Some((field, _)) if !tls => Err(ConfigError::new(*field, "needs an mqtts:// url")),
            _ => Ok(()),
        }
    }

    /// The CA certificates of `ca_file` and the client identity of `client_cert_file` /
    /// `client_key_file`, read now (errors name the setting and the file, never its content).
    pub fn tls_files(&self) -> Result<(Vec<rustls::pki_types::CertificateDer<'static>>, Option<crate::tls::ClientIdentity>), ConfigError> {
        let roots = match &self.ca_file {
            Some(path) => crate::tls::read_certificates(path).map_err(|e| ConfigError::new("mqtt.ca_file", e))?,
            None => Vec::new(),
        };
        let identity = match (&self.client_cert_file, &self.client_key_file) {
            (Some(cert), Some(key)) => Some((
                crate::tls::read_certificates(cert).map_err(|e| ConfigError::new("mqtt.client_cert_file", e))?,
                crate::tls::read_private_key(key).map_err(|e| ConfigError::new("mqtt.client_key_file", e))?,
            )),
            _ => None,
        };
        Ok((roots, identity))
    }

    /// The password, read from `password_file` (its last line break dropped).
    pub fn password(&self) -> Result<Option<String>, ConfigError> {
        let Some(path) = &self.password_file else { return Ok(None) };
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("mqtt.password_file", format!("cannot read {}: {e}", path.display())))?;
        Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(url: &str) -> MqttSettings {
        MqttSettings { url: url.into(), ..MqttSettings::default() }
    }

    #[test]
    fn urls_are_read_or_refused_naming_mqtt_url() {
        assert_eq!(with_url("").broker().unwrap(), None);
        assert_eq!(with_url("mqtt://127.0.0.1:1884").broker().unwrap(), Some(BrokerAddr { host: "127.0.0.1".into(), port: 1884, tls: false }));
        assert_eq!(with_url("mqtt://broker").broker().unwrap().unwrap().port, 1883);
        assert_eq!(with_url("mqtts://broker").broker().unwrap(), Some(BrokerAddr { host: "broker".into(), port: 8883, tls: true }));
        for bad in ["http://x:1883", "mqtt://x:port", "mqtt://:1883", "mqtts://:8883", "tls://x"] {
            let e = with_url(bad).validate().unwrap_err().to_string();
            assert!(e.starts_with("mqtt.url "), "{e}");
        }
        let e = with_url("mqtt://me:s3cret@x:1883").validate().unwrap_err().to_string();
        assert!(e.starts_with("mqtt.url ") && !e.contains("s3cret"), "{e}");
    }

    #[test]
    fn certificate_files_go_with_mqtts_and_a_client_certificate_with_its_key() {
        let file = || Some(PathBuf::from("/etc/haven/x.pem"));
        let err = |s: MqttSettings| s.validate().unwrap_err().to_string();
        let e = err(MqttSettings { ca_file: file(), ..with_url("mqtt://x") });
        assert!(e.starts_with("mqtt.ca_file") && e.contains("mqtts://"), "{e}");
        let e = err(MqttSettings { client_cert_file: file(), client_key_file: file(), ..with_url("mqtt://x") });
        assert!(e.starts_with("mqtt.client_cert_file") && e.contains("mqtts://"), "{e}");
        let e = err(MqttSettings { client_cert_file: file(), ..with_url("mqtts://x") });
        assert!(e.starts_with("mqtt.client_cert_file") && e.contains("client_key_file"), "{e}");
        let e = err(MqttSettings { client_key_file: file(), ..with_url("mqtts://x") });
        assert!(e.starts_with("mqtt.client_key_file"), "{e}");
        let ok = MqttSettings { ca_file: file(), client_cert_file: file(), client_key_file: file(), ..with_url("mqtts://x") };
        assert!(ok.validate().is_ok());
        // Read when MQTT starts: a missing file is named with its setting.
        let e = ok.tls_files().unwrap_err().to_string();
        assert!(e.starts_with("mqtt.ca_file") && e.contains("/etc/haven/x.pem"), "{e}");
    }

    #[test]
    fn prefixes_are_plain_topics() {
        let s = MqttSettings { topic_prefix: "a/#".into(), ..with_url("mqtt://x") };
        assert!(s.validate().unwrap_err().to_string().starts_with("mqtt.topic_prefix"));
        assert!(MqttSettings::default().validate().is_ok());
    }
}
