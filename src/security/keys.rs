//! The store key: one 256-bit master key in a file readable by its owner only, and the keys
//! derived from it (HKDF-SHA256, one purpose each) — so one file backs the encryption of
//! personal data, the keyed hashes of the lookup indices, the PIN pepper, the audit chain and
//! the backups, and no derived key can be turned into another.
//!
//! File format: one line, `storebox-key v1 <base64 of 32 bytes>`. `storebox init` writes it
//! with mode 0600; the daemon refuses a key that group or others can read. A systemd
//! credential (`LoadCredentialEncrypted=storebox.key:...`) works the same way: systemd hands
//! the decrypted file to the service in `$CREDENTIALS_DIRECTORY`, readable by it alone.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// The first word of a key file.
const MAGIC: &str = "storebox-key v1 ";

/// Why the store key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Occurs when the key file does not exist.
    #[error(
        "the store key {0} does not exist; create it with `storebox init --config <file>` \
         and keep a copy at HQ (without it the data and backups cannot be read)"
    )]
    Missing(PathBuf),
    /// Occurs when group or others may read the key file.
    #[error("the store key {path} can be read by others (mode {mode:04o}); run `chmod 600 {path}`")]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Occurs when the file is not a storebox key.
    #[error("{path} is not a storebox key: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Occurs when the file cannot be read or written. (The OS error is said here, not as a
    /// source as well: a start's error chain then said it twice.)
    #[error("the store key {path}: {error}{}", denied_hint(error))]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// Occurs when the key does not belong to the data it should open.
    #[error(
        "the store key {path} (fingerprint {found}) is not the key this data directory was \
         written with (fingerprint {expected})"
    )]
    WrongKey {
        /// The key file.
        path: PathBuf,
        /// The key's fingerprint.
        found: String,
        /// The fingerprint the data records.
        expected: String,
    },
}

/// A 256-bit key, wiped from memory when dropped.
pub type Key = Zeroizing<[u8; 32]>;

/// The keys derived from the store's master key.
#[derive(Clone)]
pub struct StoreKeys {
    /// Wraps each member's data key (journal personal data).
    pub(crate) kek: Key,
    /// Seals personal data in the cache.
    pub(crate) cache: Key,
    /// Keys the HMACs that index phone, card, phone tail and name.
    pub(crate) index: Key,
    /// The argon2id secret ("pepper") of PIN hashes.
    pub(crate) pepper: Key,
    /// Encrypts backups.
    pub(crate) backup: Key,
    /// Keys the audit chain's MACs.
    pub(crate) audit: Key,
    /// Keys what a staff session was granted under (terminal token, role, PIN check).
    pub(crate) session: Key,
    /// Keys the hashes of request bodies kept with idempotency keys (a registration's body
    /// holds a phone number).
    pub(crate) idempotency: Key,
    /// Public fingerprint: tells keys apart without revealing them.
    fingerprint: String,
}

impl std::fmt::Debug for StoreKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreKeys({})", self.fingerprint)
    }
}

impl StoreKeys {
    /// Derives every purpose key from the master key.
    pub fn from_master(master: &[u8; 32]) -> StoreKeys {
        let hk = Hkdf::<Sha256>::new(Some(b"storebox"), master);
        let derive = |info: &str| {
            let mut k = Zeroizing::new([0u8; 32]);
            // 32 bytes is far below HKDF-SHA256's limit of 8160: expand cannot fail.
            let _ = hk.expand(info.as_bytes(), k.as_mut_slice());
            k
        };
        let check = derive("storebox fingerprint v1");
        StoreKeys {
            kek: derive("storebox member key wrap v1"),
            cache: derive("storebox cache personal data v1"),
            index: derive("storebox lookup index v1"),
            pepper: derive("storebox pin pepper v1"),
            backup: derive("storebox backup v1"),
            audit: derive("storebox audit chain v1"),
            session: derive("storebox session grant v1"),
            idempotency: derive("storebox idempotency v1"),
            fingerprint: hex::encode(&check[..8]),
        }
    }

    /// Fresh random keys (tests and benchmarks).
    pub fn random() -> StoreKeys {
        StoreKeys::from_master(&new_master())
    }

    /// The key's fingerprint (16 hex digits), recorded in the journal so a wrong key file is
    /// caught at start-up rather than by undecryptable data.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Reads the key file at `path`, refusing one that group or others can read.
    pub fn load(path: &Path) -> Result<StoreKeys, KeyError> {
        let io = |error| KeyError::Io {
            path: path.to_path_buf(),
            error,
        };
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyError::Missing(path.to_path_buf()));
            }
            Err(e) => return Err(io(e)),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Exposed {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        if meta.len() > 1024 {
            return Err(malformed(path, "the file is too large"));
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        let b64 = text
            .trim_end()
            .strip_prefix(MAGIC)
            .ok_or_else(|| malformed(path, "it does not start with `storebox-key v1`"))?;
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| malformed(path, &e.to_string()))?,
        );
        let master: Zeroizing<[u8; 32]> = Zeroizing::new(
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| malformed(path, "the key is not 32 bytes"))?,
        );
        Ok(StoreKeys::from_master(&master))
    }

    /// Creates a new key file at `path` (mode 0600, parent directories 0700). Fails if the file
    /// exists: a key is never overwritten.
    pub fn create(path: &Path) -> Result<StoreKeys, KeyError> {
        let io = |error| KeyError::Io {
            path: path.to_path_buf(),
            error,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            b.create(parent).map_err(io)?;
        }
        let master = Zeroizing::new(new_master());
        let line = Zeroizing::new(format!(
            "{MAGIC}{}\n",
            base64::engine::general_purpose::STANDARD.encode(master.as_slice())
        ));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(path).map_err(io)?;
        f.write_all(line.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && let Ok(d) = std::fs::File::open(parent)
        {
            let _ = d.sync_all();
        }
        Ok(StoreKeys::from_master(&master))
    }

    /// Loads the key at `path`, creating it first if it does not exist (`storebox init`, and
    /// the development environment). Returns the keys and whether the file was created.
    pub fn load_or_create(path: &Path) -> Result<(StoreKeys, bool), KeyError> {
        match StoreKeys::load(path) {
            Ok(k) => Ok((k, false)),
            Err(KeyError::Missing(_)) => StoreKeys::create(path).map(|k| (k, true)),
            Err(e) => Err(e),
        }
    }
}

/// What to do about a key file this user may not read: under systemd the service runs as
/// `storebox` and gets the root-owned key as a credential, unless `key_file` names the file.
fn denied_hint(error: &std::io::Error) -> String {
    if error.kind() != std::io::ErrorKind::PermissionDenied {
        return String::new();
    }
    format!(
        " (storebox runs as uid {}); under systemd leave security.key_file unset: the unit \
         hands {} to the service as the credential {}; else give the file to this user, mode 0600",
        // SAFETY: getuid(2) cannot fail.
        unsafe { libc::getuid() },
        crate::config::DEFAULT_KEY_FILE,
        crate::config::CREDENTIAL_NAME,
    )
}

fn malformed(path: &Path, reason: &str) -> KeyError {
    KeyError::Malformed {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn new_master() -> [u8; 32] {
    use rand::Rng;
    let mut k = [0u8; 32];
    rand::rng().fill_bytes(&mut k);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_load_gives_the_same_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/store.key");
        let a = StoreKeys::create(&path).unwrap();
        let b = StoreKeys::load(&path).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(*a.cache, *b.cache);
        assert_ne!(*a.cache, *a.index, "purposes get different keys");
        assert!(matches!(StoreKeys::create(&path), Err(KeyError::Io { .. })));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_readable_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.key");
        StoreKeys::create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = StoreKeys::load(&path).unwrap_err();
        assert!(matches!(e, KeyError::Exposed { mode: 0o644, .. }), "{e}");
        assert!(e.to_string().contains("chmod 600"));
    }

    #[test]
    fn garbage_and_missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.key");
        assert!(matches!(StoreKeys::load(&path), Err(KeyError::Missing(_))));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        opts.open(&path)
            .unwrap()
            .write_all(b"storebox-key v1 c2hvcnQ=\n")
            .unwrap();
        let e = StoreKeys::load(&path).unwrap_err();
        assert!(e.to_string().contains("not 32 bytes"), "{e}");
    }
}
