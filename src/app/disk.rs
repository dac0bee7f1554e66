//! The disk-space watch: free space on the data directory's file system, measured every 30 s,
//! and the alerts HQ gets when it runs low and when it is fine again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::system_actor;
use crate::journal::JournalReader;
use crate::ledger::Ledger;

/// Free space on the data directory's file system, as last measured.
#[derive(Debug)]
pub struct DiskWatch {
    dir: PathBuf,
    min_free: u64,
    /// Bytes free; `u64::MAX` until measured (or when it cannot be).
    free: std::sync::atomic::AtomicU64,
    low: std::sync::atomic::AtomicBool,
}

impl DiskWatch {
    /// Watches `dir`; below `min_free_mb` the disk is "low".
    pub fn new(dir: &Path, min_free_mb: u64) -> DiskWatch {
        let w = DiskWatch {
            dir: dir.to_path_buf(),
            min_free: min_free_mb.saturating_mul(1024 * 1024),
            free: std::sync::atomic::AtomicU64::new(u64::MAX),
            low: std::sync::atomic::AtomicBool::new(false),
        };
        w.measure();
        w
    }

    /// Bytes free, if known.
    pub fn free_bytes(&self) -> Option<u64> {
        let f = self.free.load(std::sync::atomic::Ordering::Relaxed);
        (f != u64::MAX).then_some(f)
    }

    /// Whether free space is below the limit.
    pub fn is_low(&self) -> bool {
        self.low.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Measures now (a file system that cannot be measured leaves the last figures). The
    /// watch compares [`Self::is_low`] with what HQ was told.
    fn measure(&self) {
        let Some(free) = free_bytes(&self.dir) else {
            return;
        };
        self.free.store(free, std::sync::atomic::Ordering::Relaxed);
        let was = self.low.load(std::sync::atomic::Ordering::Relaxed);
        let low = still_low(free, self.min_free, was);
        self.low.store(low, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Whether the disk is low with `free` bytes free against `min_free`, `was` low at the last
/// measure. One that was low is fine again only with a tenth more than the limit free (at least
/// 16 MiB more): a disk hovering at the limit, as logs come and go, would otherwise send HQ
/// `disk_low` and `disk_ok` in turn every 30 s.
fn still_low(free: u64, min_free: u64, was: bool) -> bool {
    let margin = (min_free / 10).max(16 * 1024 * 1024);
    if was {
        free < min_free.saturating_add(margin)
    } else {
        free < min_free
    }
}

/// Bytes available to this user on the file system holding `dir`.
pub(crate) fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `st` is a valid out-pointer for statvfs.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    // u64 here; `c_ulong` (32 bits) on armv7.
    #[allow(clippy::unnecessary_cast)]
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Measures free space every 30 s; when it falls below `storage.min_free_mb` (and again when it
/// recovers) an alert goes to HQ and `/healthz` says `degraded`, before the journal is refused
/// writes. What HQ was last told is read from the journal at start: a disk low at start is
/// reported (a box restarted on a full disk told HQ nothing), and one an earlier run reported
/// low and that is fine now is reported fine (freed while the box was off, HQ's `disk_low`
/// stayed open for ever). An alert the ledger could not record is tried again at the next
/// measure.
pub(super) async fn disk_watch(
    watch: Arc<DiskWatch>,
    ledger: Ledger,
    journal: JournalReader,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    let mut told_low = journal
        .last_alert_from("storage")
        .await
        .is_some_and(|(code, _)| code == "disk_low");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let w = watch.clone();
        if tokio::task::spawn_blocking(move || w.measure())
            .await
            .is_err()
        {
            continue;
        }
        let low = watch.is_low();
        if low == told_low {
            continue;
        }
        let free_mb = watch.free_bytes().unwrap_or(0) / (1024 * 1024);
        let (code, message) = if low {
            tracing::warn!(free_mb, dir = %watch.dir.display(), "disk space low");
            (
                "disk_low",
                format!("{free_mb} MiB free on the data directory's disk"),
            )
        } else {
            tracing::info!(free_mb, "disk space back above the limit");
            ("disk_ok", format!("{free_mb} MiB free again"))
        };
        let alert = crate::ledger::Command::Alert(crate::domain::event::Alert {
            source: "storage".into(),
            code: code.into(),
            message,
            detail: serde_json::json!({ "free_bytes": watch.free_bytes() }),
        });
        match ledger.execute(system_actor(), alert).await {
            Ok(_) => told_low = low,
            Err(e) => tracing::error!(error = %e, "cannot record the disk alert"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::still_low;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn a_disk_hovering_at_the_limit_does_not_flap() {
        let limit = 256 * MIB;
        assert!(!still_low(300 * MIB, limit, false));
        assert!(still_low(255 * MIB, limit, false), "below the limit: low");
        // Back just above the limit: still low, until a tenth more is free.
        assert!(still_low(257 * MIB, limit, true));
        assert!(still_low(281 * MIB, limit, true));
        assert!(
            !still_low(282 * MIB, limit, true),
            "a tenth more free: fine"
        );
        // A small limit gets 16 MiB of margin.
        assert!(still_low(20 * MIB, 10 * MIB, true));
        assert!(!still_low(26 * MIB, 10 * MIB, true));
    }
}
