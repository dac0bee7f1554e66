//! TLS towards the broker: rustls with the `ring` provider (no aws-lc, so the binary
//! cross-compiles to ARM with no C toolchain beyond SQLite's).

use std::sync::Arc;

use rumqttc::tokio_rustls::rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::UplinkTls;

/// Builds the client TLS configuration from the PEM files named in the config; on failure,
/// the config key whose file is wrong and why. Run when the config is checked (so
/// `check-config` and a reload refuse a missing or unreadable file) and again at every
/// connection (so a renewed CA or client certificate is read without a restart).
pub fn client_config(tls: &UplinkTls) -> Result<rustls::ClientConfig, (&'static str, String)> {
    const CA: &str = "uplink.tls.ca_file";
    const CERT: &str = "uplink.tls.client_cert";
    const KEY: &str = "uplink.tls.client_key";
    let ca = |e: &dyn std::fmt::Display| (CA, format!("{}: {e}", tls.ca_file.display()));
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&tls.ca_file).map_err(|e| ca(&e))?;
    for cert in certs {
        let cert = cert.map_err(|e| ca(&e))?;
        roots.add(cert).map_err(|e| ca(&e))?;
    }
    if roots.is_empty() {
        return Err(ca(&"no CA certificate found"));
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ("uplink.tls", e.to_string()))?
    .with_root_certificates(roots);
    match &tls.client_auth {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| (CERT, format!("{}: {e}", cert.display())))?;
            if chain.is_empty() {
                return Err((CERT, format!("{}: no certificate found", cert.display())));
            }
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| (KEY, format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| (KEY, format!("client certificate and key: {e}")))
        }
    }
}
