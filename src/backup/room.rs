//! Room for a backup: its working copies and its file must not take the free space the
//! journal keeps for sales (`storage.min_free_mb`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::bail;

use super::FILES;

pub(super) const MIB: u64 = 1024 * 1024;

/// Whether the working copies fit in the data directory's file system with
/// `storage.min_free_mb` to spare. A backup filled it before: for as long as it compressed
/// (minutes on a large store) the journal could not grow, and every sale was refused
/// (`503 journal_unavailable`). The backup file itself, when it goes to the same file system,
/// is watched as it is written ([`RoomGuard`]): how far it compresses is not known before.
pub(super) fn check_room(dir: &Path, min_free_mb: u64) -> anyhow::Result<()> {
    let Some(free) = crate::app::free_bytes(dir) else {
        return Ok(());
    };
    // A snapshot holds the pages in the write-ahead log too.
    let copies: u64 = FILES
        .iter()
        .flat_map(|name| [name.to_string(), format!("{name}-wal")])
        .filter_map(|name| std::fs::metadata(dir.join(name)).ok())
        .map(|m| m.len())
        .sum();
    if free < copies.saturating_add(min_free_mb.saturating_mul(MIB)) {
        bail!(
            "not enough free space for a backup in {}: its working copies need {} MiB and the \
             journal keeps storage.min_free_mb = {min_free_mb} MiB for sales, but {} MiB are \
             free; free some space",
            dir.display(),
            copies.div_ceil(MIB),
            free / MIB
        );
    }
    Ok(())
}

/// The backup file's writer, when the file is on the data directory's file system: fails the
/// backup once the free space there falls under the journal's reserve (checked every few MiB),
/// rather than take the room sales need.
pub(super) struct RoomGuard<W> {
    pub(super) inner: W,
    /// The data directory, and the reserve in bytes; `None` when the file goes elsewhere.
    watch: Option<(PathBuf, u64)>,
    since_check: u64,
}

impl<W> RoomGuard<W> {
    pub(super) fn new(inner: W, dir: &Path, out: &Path, min_free_mb: u64) -> Self {
        use std::os::unix::fs::MetadataExt;
        let out_dir = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let same_fs = match (std::fs::metadata(dir), std::fs::metadata(out_dir)) {
            (Ok(d), Ok(o)) => d.dev() == o.dev(),
            _ => false,
        };
        let watch = same_fs.then(|| (dir.to_path_buf(), min_free_mb.saturating_mul(MIB)));
        RoomGuard {
            inner,
            watch,
            since_check: 0,
        }
    }
}

impl<W: Write> Write for RoomGuard<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some((dir, reserve)) = &self.watch {
            if self.since_check >= 4 * MIB || self.since_check == 0 {
                let free = crate::app::free_bytes(dir).unwrap_or(u64::MAX);
                if free < reserve.saturating_add(buf.len() as u64) {
                    return Err(std::io::Error::other(format!(
                        "not enough free space for the backup file in {}: {} MiB left, and the \
                         journal keeps storage.min_free_mb = {} MiB for sales; write the backup \
                         to another disk or free some space",
                        dir.display(),
                        free / MIB,
                        reserve / MIB
                    )));
                }
                self.since_check = 0;
            }
            self.since_check += buf.len() as u64;
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
