//! Secrets on disk that every user on the box can read: the config itself (the uplink
//! password, staff PINs or their hashes, development tokens) and the private keys it names.
//!
//! A box copied from `storebox.toml.example` with `cp` gets a config of mode 0644; a key made
//! by `openssl` as root without a `chmod` is often 0644 too. Neither stops a store (the till
//! must sell), so they are warned about — by `storebox check-config` and at every start —
//! rather than refused. The store key, from which every other key is derived, is refused by
//! the daemon itself ([`crate::security::StoreKeys::load`]); check-config says so beforehand.

use std::path::Path;

use super::{Config, PinCheck};

impl Config {
    /// What on disk is exposed to every user on the box, one sentence each, saying what to
    /// run; empty when nothing is.
    pub fn exposed_secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut held = Vec::new();
        if matches!(&self.uplink.credentials, Some((_, p)) if !p.0.is_empty()) {
            held.push("uplink.password");
        }
        if self.terminals.iter().any(|t| t.plain_token) {
            held.push("terminal tokens");
        }
        if self
            .staff
            .iter()
            .any(|s| matches!(s.pin, PinCheck::Plain(_)))
        {
            held.push("staff PINs");
        }
        if self
            .staff
            .iter()
            .any(|s| matches!(s.pin, PinCheck::Argon2(_)))
        {
            // A 4–8 digit PIN is found from its hash by trying them all.
            held.push("staff PIN hashes");
        }
        let config = &self.source;
        if let Some(mode) = others_can(config, 0o006) {
            let what = if mode & 0o002 != 0 {
                "read and changed"
            } else {
                "read"
            };
            if mode & 0o002 != 0 || !held.is_empty() {
                let holds = if held.is_empty() {
                    String::new()
                } else {
                    format!(", and it holds {}", held.join(", "))
                };
                out.push(format!(
                    "{file} can be {what} by every user on this box (mode {mode:04o}){holds}; \
                     run `chown root:storebox {file} && chmod 640 {file}`",
                    file = config.display()
                ));
            }
        }
        let mut keys = Vec::new();
        if let Some(tls) = &self.http.tls {
            keys.push(("http.tls.key_file", tls.key_file.as_path()));
        }
        if let Some((_, key)) = self
            .uplink
            .tls
            .as_ref()
            .and_then(|t| t.client_auth.as_ref())
        {
            keys.push(("uplink.tls.client_key", key.as_path()));
        }
        for (name, key) in keys {
            if let Some(mode) = others_can(key, 0o004) {
                out.push(format!(
                    "{name}: the private key {file} can be read by every user on this box \
                     (mode {mode:04o}); run `chown storebox {file} && chmod 600 {file}`",
                    file = key.display()
                ));
            }
        }
        let store_key = self.key_path();
        if let Some(mode) = mode_of(&store_key)
            && mode & 0o077 != 0
        {
            out.push(format!(
                "the store key {file} can be read by others (mode {mode:04o}): storebox will \
                 refuse to start; run `chmod 600 {file}`",
                file = store_key.display()
            ));
        }
        out
    }
}

/// The file's mode when users other than its owner and group have any of `bits` on it and
/// can reach it (every directory above it lets others through); else `None`. A file that
/// cannot be looked at is left to the code that reads it.
fn others_can(path: &Path, bits: u32) -> Option<u32> {
    let mode = mode_of(path)?;
    if mode & bits == 0 {
        return None;
    }
    let full = std::fs::canonicalize(path).ok()?;
    let reachable = full
        .ancestors()
        .skip(1)
        .all(|dir| mode_of(dir).is_none_or(|m| m & 0o001 != 0));
    reachable.then_some(mode)
}

#[cfg(unix)]
fn mode_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn mode_of(_path: &Path) -> Option<u32> {
    None
}
