//! TLS for HAVEN's outgoing connections (https webhooks, mqtts:// brokers): rustls with ring and
//! the system's root certificates (`SSL_CERT_FILE` / `SSL_CERT_DIR` name others, as OpenSSL's do).

/// A client configuration trusting the system's roots, read now (those it cannot read are logged
/// and skipped); `None`, logged, if rustls refuses the protocol versions. `who` names the user in
/// the log (`webhooks`, `mqtt`).
pub fn client_config(who: &str) -> Option<rustls::ClientConfig> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        log::warn!("{who}: a root certificate could not be read: {e}");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        log::warn!("{who}: no root certificates found: TLS connections will fail");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    match rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions() {
        Ok(builder) => Some(builder.with_root_certificates(roots).with_no_client_auth()),
        Err(e) => {
            log::error!("{who}: no TLS: {e}");
            None
        }
    }
}
