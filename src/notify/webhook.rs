//! `[[notify.webhooks]]`: each notification POSTed as JSON, signed with HMAC-SHA256 when the
//! webhook has a `secret_file`. Any 2xx is delivered; any other answer, or none, is retried.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use sha2::{Digest, Sha256};

use super::config::WebhookSettings;
use super::target::{ChangeType, DeliveryError, Notification, Target};
use super::NotifyError;
use crate::events::EventKind;

/// The header carrying `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Haven-Signature";

/// HMAC-SHA256 (RFC 2104) of `body` under `key`.
pub fn hmac_sha256(key: &[u8], body: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(body).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// The header's value for `body`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mac = hmac_sha256(secret, body);
    format!("sha256={}", mac.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The TLS settings of https webhooks (`crate::tls`, HTTP/1.1 by ALPN), trusting `extra_roots`
/// besides the system's.
fn http1_tls(extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>) -> Option<Arc<rustls::ClientConfig>> {
    let mut config = crate::tls::client_config_with("webhooks", extra_roots, None)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Some(Arc::new(config))
}

/// [`http1_tls`] with the system's roots only, built once per process.
fn tls() -> Option<Arc<rustls::ClientConfig>> {
    static TLS: OnceLock<Option<Arc<rustls::ClientConfig>>> = OnceLock::new();
    TLS.get_or_init(|| http1_tls(Vec::new())).clone()
}

/// [`http1_tls`] trusting the CA certificates of `path` too (`ca_file`; read now).
fn tls_trusting(path: &std::path::Path, index: usize) -> Result<Arc<rustls::ClientConfig>, NotifyError> {
    let field = format!("notify.webhooks[{index}].ca_file");
    let roots = crate::tls::read_certificates(path).map_err(|reason| NotifyError::Secret { field: field.clone(), reason })?;
    http1_tls(roots).ok_or_else(|| NotifyError::Secret { field, reason: "TLS cannot be set up here (see the log)".into() })
}

/// One webhook. The secret is kept only here (never in `Debug`, logs or answers).
pub struct Webhook {
    settings: WebhookSettings,
    kinds: Vec<EventKind>,
    secret: Option<Vec<u8>>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Webhook {
    /// Reads the secret file now: a webhook whose secret cannot be read does not start.
    pub fn new(settings: &WebhookSettings, index: usize) -> Result<Self, NotifyError> {
        let secret = match &settings.secret_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| NotifyError::Secret {
                    field: format!("notify.webhooks[{index}].secret_file"),
                    reason: format!("cannot read {}: {e}", path.display()),
                })?;
                let secret = text.trim_end_matches(['\r', '\n']).as_bytes().to_vec();
                if secret.is_empty() {
                    return Err(NotifyError::Secret { field: format!("notify.webhooks[{index}].secret_file"), reason: format!("{} is empty", path.display()) });
                }
                Some(secret)
            }
        };
        let tls = match (&settings.ca_file, settings.url.starts_with("https://")) {
            (Some(path), true) => Some(tls_trusting(path, index)?),
            (None, true) => tls(),
            _ => None,
        };
        Ok(Self { kinds: settings.event_kinds(), settings: settings.clone(), secret, tls })
    }

    async fn post(&self, body: Vec<u8>) -> Result<(), DeliveryError> {
        let timeout = Duration::from_secs(self.settings.timeout_secs);
        let mut connector = awc::Connector::new().timeout(timeout);
        if let Some(tls) = &self.tls {
            connector = connector.rustls_0_23(tls.clone());
        }
        let client = awc::Client::builder().connector(connector).timeout(timeout).disable_redirects().finish();
        let mut request = client.post(&self.settings.url).insert_header(("Content-Type", "application/json"));
        if let Some(secret) = &self.secret {
            request = request.insert_header((SIGNATURE_HEADER, signature(secret, &body)));
        }
        // Errors may quote the URL: its credentials are masked.
        let masked = |e: String| crate::redact::redact_in(&e, &self.settings.url);
        let response = request.send_body(body).await.map_err(|e| DeliveryError::Unreachable(masked(e.to_string())))?;
        match response.status() {
            s if s.is_success() => Ok(()),
            s => Err(DeliveryError::Refused(format!("HTTP {}", s.as_u16()))),
        }
    }
}

impl Target for Webhook {
    fn name(&self) -> &str {
        &self.settings.name
    }

    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn address(&self) -> String {
        crate::redact::redact_url(&self.settings.url)
    }

    fn wants(&self, n: &Notification) -> bool {
        let camera = self.settings.cameras.is_empty() || self.settings.cameras.iter().any(|c| c == n.camera());
        let kind = match n.change {
            ChangeType::Escalation => self.settings.escalation,
            _ => n.kind().is_some_and(|k| self.kinds.contains(&k)),
        };
        camera && kind
    }

    fn deliver<'a>(&'a self, notification: &'a Notification) -> LocalBoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(notification).map_err(|e| DeliveryError::Refused(e.to_string()))?;
            self.post(body).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn a_webhook_shows_its_url_masked_and_wants_its_kinds_and_cameras() {
        let settings = WebhookSettings {
            name: "pager".into(),
            url: "https://user:pw@hooks.example.org/x".into(),
            kinds: vec!["fall".into()],
            cameras: vec!["ward".into()],
            secret_file: None,
            ca_file: None,
            timeout_secs: 10,
            escalation: false,
        };
        let hook = Webhook::new(&settings, 0).unwrap();
        assert_eq!(hook.address(), "https://user:***@hooks.example.org/x");
        let mut event = crate::events::store::tests::event("ward", EventKind::Fall, 1.0);
        event.id = Some(1);
        let n = |change, event: &crate::events::Event| Notification::new(change, None, event, "http://h");
        assert!(hook.wants(&n(ChangeType::New, &event)));
        assert!(!hook.wants(&n(ChangeType::Escalation, &event)), "escalation = false");
        event.kind = EventKind::PersonDetected;
        assert!(!hook.wants(&n(ChangeType::New, &event)), "kinds");
        event.kind = EventKind::Fall;
        event.camera_id = "hall".into();
        assert!(!hook.wants(&n(ChangeType::New, &event)), "cameras");
        let missing = WebhookSettings { secret_file: Some("/nonexistent/secret".into()), ..settings };
        let err = Webhook::new(&missing, 2).err().unwrap().to_string();
        assert!(err.starts_with("notify.webhooks[2].secret_file cannot read /nonexistent/secret"), "{err}");
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test cases 2 (a short key) and 6 (a key longer than a block).
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert!(signature(b"Jefe", b"what do ya want for nothing?").starts_with("sha256=5bdcc146"));
    }
}
