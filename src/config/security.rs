//! `[security]`: where the store key lives and how PIN guessing is stopped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{Environment, Invalid, bad};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecurity {
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    max_pin_failures: Option<u32>,
    #[serde(default)]
    terminal_max_failures: Option<u32>,
    #[serde(default)]
    lockout_seconds: Option<u64>,
}

/// `[security]`.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// The store key file, when set explicitly (see [`super::Config::key_path`]).
    pub key_file: Option<PathBuf>,
    /// Wrong PINs in a row, from any terminal, that lock a staff number.
    pub max_pin_failures: u32,
    /// Wrong PINs from one terminal, for any staff numbers, that lock the terminal's logins
    /// (someone trying numbers and PINs at one till).
    pub terminal_max_failures: u32,
    /// How long a lock lasts.
    pub lockout: Duration,
}

/// The systemd credential name of the store key (`LoadCredentialEncrypted=storebox.key:...`).
pub const CREDENTIAL_NAME: &str = "storebox.key";
/// Where a production store key is looked for when the config does not say.
pub const DEFAULT_KEY_FILE: &str = "/etc/storebox/store.key";

pub(super) fn to_security(raw: Option<RawSecurity>) -> Result<SecurityConfig, Invalid> {
    let raw = raw.unwrap_or_default();
    if let Some(p) = &raw.key_file
        && p.as_os_str().is_empty()
    {
        return Err(bad("security.key_file", "must not be empty"));
    }
    let max_pin_failures = raw.max_pin_failures.unwrap_or(5);
    if !(3..=20).contains(&max_pin_failures) {
        return Err(bad("security.max_pin_failures", "must be between 3 and 20"));
    }
    let terminal_max_failures = raw.terminal_max_failures.unwrap_or(20);
    if !(max_pin_failures..=200).contains(&terminal_max_failures) {
        return Err(bad(
            "security.terminal_max_failures",
            format!("must be between max_pin_failures ({max_pin_failures}) and 200"),
        ));
    }
    let lockout_seconds = raw.lockout_seconds.unwrap_or(15 * 60);
    if !(1..=24 * 3600).contains(&lockout_seconds) {
        return Err(bad(
            "security.lockout_seconds",
            "must be between 1 and 86400",
        ));
    }
    Ok(SecurityConfig {
        key_file: raw.key_file,
        max_pin_failures,
        terminal_max_failures,
        lockout: Duration::from_secs(lockout_seconds),
    })
}

/// The store key file: `security.key_file` if set; else the systemd credential
/// `storebox.key` if the service was given one; else `<storage.dir>/store.key` in development
/// and [`DEFAULT_KEY_FILE`] in production.
pub(super) fn key_path(
    sec: &SecurityConfig,
    env: Environment,
    data_dir: &Path,
    credentials_dir: Option<&Path>,
) -> PathBuf {
    if let Some(p) = &sec.key_file {
        return p.clone();
    }
    if let Some(dir) = credentials_dir {
        let p = dir.join(CREDENTIAL_NAME);
        if p.exists() {
            return p;
        }
    }
    match env {
        Environment::Development => data_dir.join("store.key"),
        Environment::Production => PathBuf::from(DEFAULT_KEY_FILE),
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackup {
    #[serde(default)]
    dir: Option<PathBuf>,
    #[serde(default)]
    every_hours: Option<u32>,
    #[serde(default)]
    keep: Option<u32>,
}

/// `[backup]`: scheduled backups by the daemon (`storebox backup` works regardless).
#[derive(Debug, Clone)]
pub struct BackupConfig {
    /// Where scheduled backups go (default `<storage.dir>/backups`).
    pub dir: PathBuf,
    /// Hours between backups; `None` when scheduled backups are off (`every_hours = 0`, the
    /// default).
    pub every: Option<Duration>,
    /// How many scheduled backups are kept (the oldest are removed).
    pub keep: usize,
}

pub(super) fn to_backup(
    raw: Option<RawBackup>,
    storage_dir: &Path,
) -> Result<BackupConfig, Invalid> {
    let raw = raw.unwrap_or_default();
    let every_hours = raw.every_hours.unwrap_or(0);
    if every_hours > 24 * 31 {
        return Err(bad("backup.every_hours", "must be between 0 (off) and 744"));
    }
    let keep = raw.keep.unwrap_or(7);
    if !(1..=1000).contains(&keep) {
        return Err(bad("backup.keep", "must be between 1 and 1000"));
    }
    let dir = match raw.dir {
        Some(d) if d.as_os_str().is_empty() => {
            return Err(bad("backup.dir", "must not be empty"));
        }
        Some(d) => d,
        None => storage_dir.join("backups"),
    };
    Ok(BackupConfig {
        dir,
        every: (every_hours > 0).then(|| Duration::from_secs(u64::from(every_hours) * 3600)),
        keep: keep as usize,
    })
}
