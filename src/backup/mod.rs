//! Backups: a consistent, compressed and encrypted copy of a store's data, taken while the
//! daemon runs, and its restore into an empty data directory.
//!
//! **Taking one.** Each SQLite file is copied with SQLite's online backup API in a single step,
//! which reads one snapshot of it however busy the writer is. The cache is copied first and the
//! journal second, so the journal copy is never behind the cache copy: at the restored start
//! the replay brings the cache up to the journal (projections are idempotent). A cache marked
//! damaged is left out (its pages would be copied damage and all, the mark not): the restored
//! store rebuilds it from the journal.
//!
//! **The file.** `SBBACKUP`, a format byte, the 16-character fingerprint of the store key,
//! then frames `[u32 length][sealed chunk]`. The plaintext — a small archive (JSON header,
//! then each file as name, length, bytes) compressed with DEFLATE — is cut into chunks of at
//! most 1 MiB, each sealed with XChaCha20-Poly1305 under the store's backup key, bound to the
//! fingerprint, its index and whether it is the last one. A changed, reordered, truncated or
//! extended file fails to open; a file made with another key says so.
//!
//! **Restoring.** Into an empty data directory (only the key file and `storebox init`'s
//! `new-store` mark may be there), with the same key. A restored store must never reuse a
//! `seq` HQ already has from the lost box: the operator gives HQ's last `seq`
//! (`--hq-last-seq`, refused below what the backup shows the broker acknowledged), and when HQ
//! is ahead of the backup the store records `journal.restored` right after HQ's last one and
//! carries on from there.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::domain::event::{Event, EventBody};
use crate::journal::{self, Journal, store};
use crate::pii::PiiCodec;
use crate::security::StoreKeys;

mod leftovers;
mod owner;
mod room;
mod schedule;
mod sealed;

use leftovers::TempDir;
pub use leftovers::{remove_abandoned, remove_abandoned_partials};
use owner::give_like;
pub(crate) use owner::give_to_owner;
use room::{RoomGuard, check_room};
pub use schedule::{Failing, failing_before, scheduled};
use sealed::{OpenReader, SealWriter};

/// The files a backup holds, in the order they are copied.
const FILES: [&str; 2] = [crate::cache::FILE_NAME, journal::FILE_NAME];

/// In the data directory while a restore is under way: a restore killed half-way leaves a
/// journal that looks whole but goes on at the backup's numbering, not after HQ's, so the
/// daemon refuses to start on it (see [`check_no_restore_under_way`]).
pub const RESTORING: &str = "restore.incomplete";

/// Refuses a data directory a restore was killed in.
pub fn check_no_restore_under_way(dir: &Path) -> anyhow::Result<()> {
    if dir.join(RESTORING).exists() {
        bail!(
            "a restore into {} was interrupted: remove everything in it but the store key and \
             run the restore again",
            dir.display()
        );
    }
    Ok(())
}

pub(crate) fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// What a backup holds, written at its start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    /// The store.
    pub store_id: String,
    /// When it was taken (RFC 3339, UTC).
    pub created_at: String,
    /// The last `seq` in the journal copy.
    pub last_seq: u64,
    /// How far HQ had acknowledged, in the journal copy.
    pub acked_seq: u64,
    /// Members in the cache copy.
    pub members: u64,
}

/// Copies the SQLite file at `src` into a new file at `dst`, in one consistent step.
fn snapshot(src: &Path, dst: &Path) -> anyhow::Result<()> {
    let from = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {}", src.display()))?;
    from.busy_timeout(Duration::from_secs(10))?;
    let mut to = Connection::open(dst).with_context(|| format!("creating {}", dst.display()))?;
    // The working copy is read back at once and removed: it needs no rollback journal and no
    // fsync. Its fsync (gigabytes on a large store, at the end of the copy) held up the sales'
    // own fsyncs on the same disk: a sale's p99 went from 36 ms to 200 ms on the bench store.
    to.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")
        .with_context(|| format!("setting up {}", dst.display()))?;
    let b = rusqlite::backup::Backup::new(&from, &mut to)
        .with_context(|| format!("starting the backup of {}", src.display()))?;
    // -1: every page in one step, under one read transaction — one snapshot.
    for _ in 0..200 {
        match b
            .step(-1)
            .with_context(|| format!("copying {}", src.display()))?
        {
            rusqlite::backup::StepResult::Done => return Ok(()),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    bail!("{} stayed locked for 10 s; try again", src.display())
}

/// A backup file being written, removed when dropped unless [`Partial::done`].
struct Partial(PathBuf, bool);

impl Partial {
    fn done(mut self) {
        self.1 = true;
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.1 {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

pub(crate) fn private_dir(path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    Ok(())
}

pub(crate) fn private_file(path: &Path) -> anyhow::Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// Takes a backup of the store's data directory (the daemon may be running) into `out`.
pub fn backup(config: &Config, keys: &StoreKeys, out: &Path) -> anyhow::Result<Header> {
    backup_until(config, keys, out, &|| false)
}

/// What a backup stopped by [`backup_until`]'s `stopped` says.
pub const STOPPED: &str = "the backup was stopped (the daemon is stopping)";

/// [`backup`], given up as soon as `stopped` says so (the daemon is stopping): between the
/// files and every few MiB of the archive, its working copies and its `.partial` file
/// removed. A daemon stopped during a scheduled backup of a large store (minutes of
/// compression) waited for the whole backup, past systemd's `TimeoutStopSec`, and was killed:
/// no clean stop, and the `.partial` file (member keys included) left for good.
pub fn backup_until(
    config: &Config,
    keys: &StoreKeys,
    out: &Path,
    stopped: &(dyn Fn() -> bool + Sync),
) -> anyhow::Result<Header> {
    let dir = &config.storage.dir;
    if !dir.join(journal::FILE_NAME).exists() {
        bail!("no journal in {}: nothing to back up", dir.display());
    }
    check_no_restore_under_way(dir)?;
    remove_abandoned(dir);
    check_room(dir, config.storage.min_free_mb)?;
    let tmp = TempDir::new(dir)?;
    // A cache marked damaged (a read found a malformed page) is left out: SQLite's backup
    // copies its pages damage and all, and not the mark, so a restored store served the copy
    // as a sound cache. Without it, the restored store rebuilds it from the journal.
    let damaged = crate::cache::marked_damaged(dir);
    if damaged {
        tracing::warn!(
            "the cache is marked damaged: left out of the backup (a restore rebuilds it from the journal)"
        );
    }
    for name in FILES {
        if damaged && name == crate::cache::FILE_NAME {
            continue;
        }
        if stopped() {
            bail!(STOPPED);
        }
        if dir.join(name).exists() {
            snapshot(&dir.join(name), &tmp.0.join(name))?;
        }
    }
    let header = {
        let j = Connection::open(tmp.0.join(journal::FILE_NAME))?;
        let store_id: Option<String> = j
            .query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |r| {
                r.get(0)
            })
            .optional()?;
        if store_id.as_deref() != Some(config.store.id.as_str()) {
            bail!(
                "the journal in {} belongs to store {}, not {}",
                dir.display(),
                store_id.unwrap_or_default(),
                config.store.id
            );
        }
        let key: Option<String> = j
            .query_row("SELECT value FROM meta WHERE key = 'key'", [], |r| r.get(0))
            .optional()?;
        if key.as_deref().is_some_and(|k| k != keys.fingerprint()) {
            bail!(
                "the journal was written with store key {}, not {}",
                key.unwrap_or_default(),
                keys.fingerprint()
            );
        }
        let members = Connection::open(tmp.0.join(crate::cache::FILE_NAME))
            .and_then(|c| c.query_row("SELECT COUNT(*) FROM members", [], |r| r.get::<_, i64>(0)))
            .unwrap_or(0) as u64;
        Header {
            store_id: config.store.id.clone(),
            created_at: chrono::Utc::now().to_rfc3339(),
            last_seq: store::last_seq(&j)?,
            acked_seq: store::outbox_position(&j)?.0,
            members,
        }
    };

    let partial = out.with_extension("partial");
    let file = private_file(&partial)?;
    // Held while the file is written: a leftover is told from a backup under way
    // ([`remove_abandoned_partials`]).
    file.try_lock()
        .map_err(|e| anyhow::anyhow!("locking {}: {e}", partial.display()))?;
    let partial = Partial(partial, false);
    let guarded = RoomGuard::new(file, dir, out, config.storage.min_free_mb);
    let sealed = SealWriter::new(BufWriter::new(guarded), keys)?;
    let mut z = flate2::write::DeflateEncoder::new(sealed, flate2::Compression::default());
    let head = serde_json::to_vec(&header)?;
    z.write_all(&(head.len() as u32).to_le_bytes())?;
    z.write_all(&head)?;
    for name in FILES {
        let path = tmp.0.join(name);
        if !path.exists() {
            continue;
        }
        let len = std::fs::metadata(&path)?.len();
        z.write_all(&(name.len() as u16).to_le_bytes())?;
        z.write_all(name.as_bytes())?;
        z.write_all(&len.to_le_bytes())?;
        let mut from = Stoppable(File::open(&path)?.take(len), stopped);
        let copied = std::io::copy(&mut from, &mut z)?;
        if copied != len {
            bail!("{} changed while it was archived", path.display());
        }
    }
    if stopped() {
        bail!(STOPPED);
    }
    let file = z
        .finish()?
        .finish()?
        .into_inner()
        .map_err(|e| e.into_error())?
        .inner;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&partial.0, out)
        .with_context(|| format!("moving the backup to {}", out.display()))?;
    partial.done();
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        let _ = File::open(parent).and_then(|d| d.sync_all());
    }
    Ok(header)
}

/// A reader that fails once `stopped` says so (checked every read: `io::copy` reads 8 KiB at a
/// time, so a stop is seen within milliseconds).
struct Stoppable<'a, R>(R, &'a (dyn Fn() -> bool + Sync));

impl<R: Read> Read for Stoppable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if (self.1)() {
            return Err(std::io::Error::other(STOPPED));
        }
        self.0.read(buf)
    }
}

fn read_header(z: &mut impl Read) -> anyhow::Result<Header> {
    let mut len = [0u8; 4];
    z.read_exact(&mut len)
        .context("reading the backup header")?;
    let len = u32::from_le_bytes(len) as usize;
    if len > 64 * 1024 {
        bail!("the backup header is damaged");
    }
    let mut head = vec![0u8; len];
    z.read_exact(&mut head)
        .context("reading the backup header")?;
    serde_json::from_slice(&head).context("the backup header is damaged")
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    /// The backup's header.
    pub header: Header,
    /// The `seq` the next event will get.
    pub next_seq: u64,
}

/// Restores `file` into the config's (empty) data directory. `hq_last_seq` is the last `seq`
/// HQ received from this store (see the module notes); below what the backup shows the broker
/// acknowledged it is refused unless `hq_lost_events`: the broker acknowledged events HQ never
/// got (a broker that lost its queue), and the restored store sends them again.
pub fn restore(
    config: &Config,
    keys: &StoreKeys,
    file: &Path,
    hq_last_seq: u64,
    hq_lost_events: bool,
) -> anyhow::Result<Restored> {
    // The journal keeps a seq as SQLite's signed 64-bit integer, and the restore's own event
    // takes the one after HQ's.
    if hq_last_seq >= (i64::MAX - 2) as u64 {
        bail!("--hq-last-seq {hq_last_seq} is not a seq this store can have sent");
    }
    let dir = &config.storage.dir;
    let key_path = config.key_path();
    // A daemon running on the directory would go on writing into the files the restore
    // replaces, and answer sales the restored journal never has.
    let _lock = crate::app::lock_data_dir(dir)
        .context("the daemon must be stopped for this (systemctl stop storebox)")?;
    if dir.exists() {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name();
            if path != key_path && name != "storebox.lock" && name != crate::app::NEW_STORE {
                check_no_restore_under_way(dir)?;
                bail!(
                    "{} is not empty ({} is there); restore into an empty data directory",
                    dir.display(),
                    entry.file_name().to_string_lossy()
                );
            }
        }
    }
    private_dir(dir)?;
    let f = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut z = flate2::read::DeflateDecoder::new(OpenReader::new(BufReader::new(f), keys)?);
    let header = read_header(&mut z)?;
    if header.store_id != config.store.id {
        bail!(
            "the backup is of store {}, but the config is for store {}",
            header.store_id,
            config.store.id
        );
    }
    // The broker had acknowledged up to `acked_seq` when the backup was taken: HQ's last seq
    // cannot be lower. A lower number (a typo, another store's, 0) would have the restored
    // store number its events with seqs HQ already holds for other events.
    if hq_last_seq < header.acked_seq && !hq_lost_events {
        bail!(
            "--hq-last-seq {hq_last_seq} is below seq {}, which the broker had already \
             acknowledged from store {} when this backup was taken: it cannot be HQ's last seq \
             for this store unless the broker lost events it had taken. Read the number again \
             on HQ's console (once HQ has taken in everything the broker holds for the store) \
             and run the restore again; if HQ really lacks those events, add --hq-lost-events \
             and the restored store sends them again",
            header.acked_seq,
            header.store_id
        );
    }
    private_file(&dir.join(RESTORING))?.sync_all()?;
    sync_dir(dir)?;
    let mut written = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        loop {
            let mut len = [0u8; 2];
            match z.read_exact(&mut len) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e).context("reading the backup"),
            }
            let mut name = vec![0u8; u16::from_le_bytes(len) as usize];
            z.read_exact(&mut name)?;
            let name = String::from_utf8(name).context("the backup is damaged")?;
            if !FILES.contains(&name.as_str()) {
                bail!("the backup holds an unexpected file {name:?}");
            }
            let mut size = [0u8; 8];
            z.read_exact(&mut size)?;
            let size = u64::from_le_bytes(size);
            let path = dir.join(&name);
            let mut out = private_file(&path)?;
            written.push(path.clone());
            let copied = std::io::copy(&mut (&mut z).take(size), &mut out)?;
            if copied != size {
                bail!("the backup is truncated in {name}");
            }
            out.sync_all()?;
        }
        if !written.iter().any(|p| p.ends_with(journal::FILE_NAME)) {
            bail!("the backup holds no journal");
        }
        Ok(())
    })();
    // A restore that fails takes its files away again, so that the directory is as empty as
    // it was and the restore can be tried again (with another backup, or a newer storebox).
    let undo = |e: anyhow::Error| {
        for p in &written {
            for suffix in ["", "-wal", "-shm"] {
                let mut f = p.clone().into_os_string();
                f.push(suffix);
                let _ = std::fs::remove_file(f);
            }
        }
        let _ = std::fs::remove_file(dir.join(RESTORING));
        // The lock file this restore made, run as root, must not keep the daemon out.
        let _ = give_to_owner(dir);
        e
    };
    result.map_err(undo)?;
    let next_seq = settle(config, keys, &header, hq_last_seq).map_err(undo)?;
    give_to_owner(dir)?;
    crate::app::journal_started(dir)?;
    std::fs::remove_file(dir.join(RESTORING))
        .with_context(|| format!("removing {}", dir.join(RESTORING).display()))?;
    sync_dir(dir)?;
    Ok(Restored { header, next_seq })
}

/// Brings a restored journal up to this storebox's schema and numbering: it goes on after HQ's
/// last seq. Returns the `seq` the next event will get.
fn settle(
    config: &Config,
    keys: &StoreKeys,
    header: &Header,
    hq_last_seq: u64,
) -> anyhow::Result<u64> {
    let dir = &config.storage.dir;
    let mut journal =
        Journal::open(dir, &config.store.id).context("opening the restored journal")?;
    let codec = PiiCodec::new(std::sync::Arc::new(keys.clone()));
    let last = journal.last_seq();
    let now = chrono::Utc::now()
        .with_timezone(&config.store.timezone)
        .fixed_offset();
    let tx = journal.conn_mut().transaction()?;
    if hq_last_seq > last {
        let event = Event {
            id: crate::ids::new_v7().to_string(),
            store_id: config.store.id.clone(),
            seq: hq_last_seq + 1,
            occurred_at: now,
            body: EventBody::JournalRestored {
                backup_last_seq: last,
                hq_last_seq,
                backup_created_at: header.created_at.clone(),
            },
        };
        store::append(&tx, &event, &now.date_naive().to_string(), &codec)?;
        // The audit chain goes on after the entries HQ may hold from the lost events (at most
        // one an event), so that none of their positions is used again.
        let entry = crate::journal::audit::append_after_restore(
            &tx,
            &keys.audit,
            &chrono::Utc::now().to_rfc3339(),
            crate::journal::audit::NewAudit {
                staff_no: "storebox".into(),
                terminal_id: "storebox".into(),
                action: String::new(),
                target: config.store.id.clone(),
                detail: serde_json::json!({
                    "backup_last_seq": last,
                    "hq_last_seq": hq_last_seq,
                    "backup_created_at": header.created_at,
                }),
            },
            hq_last_seq - last,
        )?;
        let audit_event = Event {
            id: crate::ids::new_v7().to_string(),
            store_id: config.store.id.clone(),
            seq: hq_last_seq + 2,
            occurred_at: now,
            body: EventBody::AuditRecorded(entry),
        };
        store::append(&tx, &audit_event, &now.date_naive().to_string(), &codec)?;
        // HQ has everything up to its last seq, which covers all of the backup: the link goes
        // on with `journal.restored` (at `last` it waited for `last + 1`, which this journal
        // never has, and sent nothing again).
        store::set_outbox_position(&tx, hq_last_seq, &chrono::Utc::now().to_rfc3339())?;
    } else {
        // HQ's last seq, even below the backup's position (`--hq-lost-events`): sent again.
        store::reset_outbox_position(&tx, hq_last_seq, &chrono::Utc::now().to_rfc3339())?;
    }
    // HQ's master data (products, prices, staff, coupons, its members and their erasures) is
    // applied to the cache alone, and the broker forgets a message once the store took it: what
    // came after the cache was copied — the hours or days the box ran on after the backup — is
    // in no backup. Without a snapshot from HQ the restored store would sell at old prices, let
    // in staff HQ removed and show the name and phone of members erased since.
    let sync = Event {
        id: crate::ids::new_v7().to_string(),
        store_id: config.store.id.clone(),
        seq: store::last_seq(&tx)? + 1,
        occurred_at: now,
        body: EventBody::SyncRequested {
            reason: "restored".into(),
        },
    };
    store::append(&tx, &sync, &now.date_naive().to_string(), &codec)?;
    tx.commit()?;
    journal.resync_seq()?;
    let next_seq = journal.last_seq() + 1;
    journal
        .conn()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    drop(journal);
    // Sessions and wrong-PIN counts belong to the old box. A backup without a cache (one
    // marked damaged is left out) gets none here: an empty file would open as the existing
    // cache, not as a new one to fill from the journal and HQ.
    if let Ok(c) = Connection::open_with_flags(
        dir.join(crate::cache::FILE_NAME),
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) {
        let _ = c.execute_batch("DELETE FROM sessions; DELETE FROM strikes;");
    }
    Ok(next_seq)
}

#[cfg(test)]
mod tests;
