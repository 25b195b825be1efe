//! TLS for HAVEN's outgoing connections (https webhooks, mqtts:// brokers): rustls with ring and
//! the system's root certificates (`SSL_CERT_FILE` / `SSL_CERT_DIR` name others, as OpenSSL's do).

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A client configuration trusting the system's roots, read now (those it cannot read are logged
/// and skipped); `None`, logged, if rustls refuses the protocol versions. `who` names the user in
/// the log (`webhooks`, `mqtt`).
pub fn client_config(who: &str) -> Option<rustls::ClientConfig> {
    client_config_with(who, Vec::new(), None)
}

/// A certificate chain and its private key, shown to a server that asks for one.
pub type ClientIdentity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// As [`client_config`], trusting `extra_roots` too (a private CA) and presenting `identity` to a
/// server that asks for a client certificate; `None`, logged, if rustls refuses either.
pub fn client_config_with(who: &str, extra_roots: Vec<CertificateDer<'static>>, identity: Option<ClientIdentity>) -> Option<rustls::ClientConfig> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        log::warn!("{who}: a root certificate could not be read: {e}");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs.into_iter().chain(extra_roots));
    if added == 0 {
        log::warn!("{who}: no root certificates found: TLS connections will fail");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = match rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions() {
        Ok(builder) => builder.with_root_certificates(roots),
        Err(e) => {
            log::error!("{who}: no TLS: {e}");
            return None;
        }
    };
    match identity {
        None => Some(builder.with_no_client_auth()),
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|e| log::error!("{who}: the client certificate is refused: {e}")).ok(),
    }
}

/// The certificates of a PEM file (at least one), or why not (the path, never the content).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1), or why not (the path, never the content).
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("cannot read a private key from {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_or_empty_pem_files_are_named_and_their_content_never_shown() {
        let dir = std::env::temp_dir().join(format!("haven-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "secret-looking text, no PEM").unwrap();
        let e = read_certificates(&junk).unwrap_err();
        assert!(e.contains("junk.pem") && !e.contains("secret"), "{e}");
        let e = read_private_key(&junk).unwrap_err();
        assert!(e.contains("junk.pem") && !e.contains("secret"), "{e}");
        let e = read_certificates(&dir.join("missing.pem")).unwrap_err();
        assert!(e.contains("missing.pem"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
