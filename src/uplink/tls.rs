//! TLS towards the broker: rustls with the `ring` provider (no aws-lc, so the binary
//! cross-compiles to ARM with no C toolchain beyond SQLite's).

use std::sync::Arc;

use rumqttc::tokio_rustls::rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::UplinkTls;

/// Builds the client TLS configuration from the PEM files named in the config.
pub fn client_config(tls: &UplinkTls) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&tls.ca_file)
        .map_err(|e| format!("{}: {e}", tls.ca_file.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: {e}", tls.ca_file.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", tls.ca_file.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "{}: no CA certificate found",
            tls.ca_file.display()
        ));
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    match &tls.client_auth {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))
        }
    }
}
