//! `[http.tls]`: the certificate and key the API serves HTTPS with on the store's LAN.
//!
//! The PEM files are read and checked here, when the config is validated, so that
//! `storebox check-config` (and a start-up) fails on a missing file, a file without a
//! certificate or key, or a key that belongs to another certificate, naming the key at fault —
//! rather than a store opening with terminals that cannot connect.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use serde::Deserialize;

use super::{Invalid, bad};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttpTls {
    cert_file: PathBuf,
    key_file: PathBuf,
}

/// The validated `[http.tls]`: where the certificate and key come from, and what they hold.
#[derive(Clone)]
pub struct TlsFiles {
    /// PEM file with the certificate chain, the store's own certificate first.
    pub cert_file: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// The chain and the key as loaded when the config was read, checked to belong together;
    /// this is what is served, so a file changed after start-up has no effect until a restart.
    pub certified: Arc<CertifiedKey>,
}

impl fmt::Debug for TlsFiles {
    // The chain's bytes are noise in a config dump; the key never prints (rustls elides it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("certificates", &self.certified.cert.len())
            .finish()
    }
}

pub(super) fn to_tls(raw: Option<RawHttpTls>) -> Result<Option<TlsFiles>, Invalid> {
    let Some(raw) = raw else { return Ok(None) };
    const CERT: &str = "http.tls.cert_file";
    const KEY: &str = "http.tls.key_file";

    let cert_pem = read(CERT, &raw.cert_file)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(CERT, pem_error(&raw.cert_file, "certificate", &e)))?;
    if chain.is_empty() {
        return Err(bad(
            CERT,
            format!("no certificate found in {}", raw.cert_file.display()),
        ));
    }

    let key_pem = read(KEY, &raw.key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        _ if is_encrypted_key(&key_pem) => bad(
            KEY,
            format!(
                "the private key in {} is encrypted; storebox needs it without a passphrase (openssl pkey -in <encrypted> -out <plain>)",
                raw.key_file.display()
            ),
        ),
        e => bad(KEY, pem_error(&raw.key_file, "private key", &e)),
    })?;

    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider.key_provider.load_private_key(key).map_err(|e| {
        bad(
            KEY,
            format!("unusable private key in {}: {e}", raw.key_file.display()),
        )
    })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // Unknown: the key cannot tell its public half; rustls accepts such keys too.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(bad(
                KEY,
                format!(
                    "{} does not belong to the certificate in {} (the first certificate must be the store's own)",
                    raw.key_file.display(),
                    raw.cert_file.display()
                ),
            ));
        }
        Err(e) => {
            return Err(bad(
                CERT,
                format!("bad certificate in {}: {e}", raw.cert_file.display()),
            ));
        }
    }
    Ok(Some(TlsFiles {
        cert_file: raw.cert_file,
        key_file: raw.key_file,
        certified: Arc::new(certified),
    }))
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, Invalid> {
    std::fs::read(path).map_err(|e| bad(key, format!("cannot read {}: {e}", path.display())))
}

fn pem_error(path: &Path, what: &str, e: &pem::Error) -> String {
    match e {
        pem::Error::NoItemsFound => format!("no {what} found in {}", path.display()),
        e => format!("{} is not valid PEM: {e}", path.display()),
    }
}

/// Whether PEM text holds a passphrase-protected key (PKCS#8 or OpenSSL's legacy form), which
/// rustls cannot use and would otherwise report as "no private key found".
fn is_encrypted_key(pem: &[u8]) -> bool {
    let text = String::from_utf8_lossy(pem);
    text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
}
