//! What a backup killed half-way leaves behind, and its removal: the working copies of the
//! files in the data directory (`.backup-*`), and the backup file it was writing (`.partial`).
//! Each holds a lock while in use, so a leftover is told from a backup under way.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{give_like, private_dir, private_file};

/// A backup's working copies of the files, in the data directory, removed when dropped. A
/// backup killed before that (SIGKILL, or SIGTERM to `storebox backup`) leaves them: a full
/// copy of the journal, member keys included, that no erasure reaches. So the copy holds a
/// lock on its `.lock` file while in use, and [`remove_abandoned`] takes away the copies whose
/// lock is free (at the next backup, and at the daemon's start).
pub(super) struct TempDir(pub(super) PathBuf, #[allow(dead_code)] File);

impl TempDir {
    pub(super) fn new(data_dir: &Path) -> anyhow::Result<TempDir> {
        let path = data_dir.join(format!(".backup-{}", crate::ids::new_v7()));
        private_dir(&path)?;
        // A backup run as root (as the IT person does) would leave a directory and lock the
        // daemon, running as the data directory's owner, can neither open nor remove: the
        // copy a killed backup left would stay for good. Both are the data directory owner's
        // (best effort: a user who may not give files away made them as that owner anyway).
        let _ = give_like(&path, data_dir);
        let lock = private_file(&path.join(TEMP_LOCK))?;
        let _ = give_like(&path.join(TEMP_LOCK), data_dir);
        lock.try_lock()
            .map_err(|e| anyhow::anyhow!("locking {}: {e}", path.display()))?;
        Ok(TempDir(path, lock))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) const TEMP_LOCK: &str = ".lock";

/// Removes the working copies that backups killed half-way left in `data_dir` (see
/// [`TempDir`]); returns how many.
pub fn remove_abandoned(data_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(".backup-"));
        if !ours || !path.is_dir() {
            continue;
        }
        let abandoned = match File::open(path.join(TEMP_LOCK)) {
            // Free: the backup that held it is gone.
            Ok(lock) => lock.try_lock().is_ok(),
            // Killed between making the directory and its lock (or an older storebox's copy):
            // a live backup locks within microseconds of making it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(60)),
            Err(_) => false,
        };
        if abandoned {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    removed += 1;
                    tracing::warn!(dir = %path.display(), "removed the copy an interrupted backup left");
                }
                Err(e) => {
                    tracing::error!(dir = %path.display(), error = %e, "cannot remove the copy an interrupted backup left");
                }
            }
        }
    }
    removed
}

/// Removes the backup files (`storebox-{store_id}-*.partial`) in `backup_dir` that backups
/// killed half-way left (SIGKILL, a power cut): a file of the store's data keys and members
/// that nothing else would ever remove. A backup under way holds a lock on its `.partial`
/// (see `backup_until`), so its file stays. Returns how many were removed.
pub fn remove_abandoned_partials(backup_dir: &Path, store_id: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(backup_dir) else {
        return 0;
    };
    let prefix = format!("storebox-{store_id}-");
    let mut removed = 0;
    for entry in entries.flatten() {
        let ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".partial"));
        if !ours {
            continue;
        }
        let path = entry.path();
        let free = File::open(&path).is_ok_and(|f| f.try_lock().is_ok());
        if !free {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                removed += 1;
                tracing::warn!(file = %path.display(), "removed the file an interrupted backup left");
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "cannot remove the file an interrupted backup left");
            }
        }
    }
    removed
}
