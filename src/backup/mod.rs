//! Backups: a consistent, compressed and encrypted copy of a store's data, taken while the
//! daemon runs, and its restore into an empty data directory.
//!
//! **Taking one.** Each SQLite file is copied with SQLite's online backup API in a single step,
//! which reads one snapshot of it however busy the writer is. The cache is copied first and the
//! journal second, so the journal copy is never behind the cache copy: at the restored start
//! the replay brings the cache up to the journal (projections are idempotent).
//!
//! **The file.** `SBBACKUP`, a format byte, the 16-character fingerprint of the store key,
//! then frames `[u32 length][sealed chunk]`. The plaintext — a small archive (JSON header,
//! then each file as name, length, bytes) compressed with DEFLATE — is cut into chunks of at
//! most 1 MiB, each sealed with XChaCha20-Poly1305 under the store's backup key, bound to the
//! fingerprint, its index and whether it is the last one. A changed, reordered, truncated or
//! extended file fails to open; a file made with another key says so.
//!
//! **Restoring.** Into an empty data directory (only the key file may be there), with the same
//! key. A restored store must never reuse a `seq` HQ already has from the lost box: the
//! operator gives HQ's last `seq` (`--hq-last-seq`), and when HQ is ahead of the backup the
//! store records `journal.restored` right after HQ's last one and carries on from there.

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

mod sealed;

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

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
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

/// A directory removed when dropped.
/// A backup's working copies of the files, in the data directory, removed when dropped. A
/// backup killed before that (SIGKILL, or SIGTERM to `storebox backup`) leaves them: a full
/// copy of the journal, member keys included, that no erasure reaches. So the copy holds a
/// lock on its `.lock` file while in use, and [`remove_abandoned`] takes away the copies whose
/// lock is free (at the next backup, and at the daemon's start).
struct TempDir(PathBuf, #[allow(dead_code)] File);

impl TempDir {
    fn new(data_dir: &Path) -> anyhow::Result<TempDir> {
        let path = data_dir.join(format!(".backup-{}", crate::ids::new_v7()));
        private_dir(&path)?;
        let lock = private_file(&path.join(TEMP_LOCK))?;
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

const TEMP_LOCK: &str = ".lock";

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

fn private_dir(path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    Ok(())
}

fn private_file(path: &Path) -> anyhow::Result<File> {
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
    let dir = &config.storage.dir;
    if !dir.join(journal::FILE_NAME).exists() {
        bail!("no journal in {}: nothing to back up", dir.display());
    }
    check_no_restore_under_way(dir)?;
    remove_abandoned(dir);
    let tmp = TempDir::new(dir)?;
    for name in FILES {
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
    let partial = Partial(partial, false);
    let sealed = SealWriter::new(BufWriter::new(file), keys)?;
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
        let copied = std::io::copy(&mut File::open(&path)?.take(len), &mut z)?;
        if copied != len {
            bail!("{} changed while it was archived", path.display());
        }
    }
    let file = z
        .finish()?
        .finish()?
        .into_inner()
        .map_err(|e| e.into_error())?;
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
/// HQ received from this store (see the module notes).
pub fn restore(
    config: &Config,
    keys: &StoreKeys,
    file: &Path,
    hq_last_seq: u64,
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
    let _lock = crate::app::lock_data_dir(dir)?;
    if dir.exists() {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry?;
            let path = entry.path();
            if path != key_path && entry.file_name() != "storebox.lock" {
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
    std::fs::remove_file(dir.join(RESTORING))
        .with_context(|| format!("removing {}", dir.join(RESTORING).display()))?;
    sync_dir(dir)?;
    Ok(Restored { header, next_seq })
}

/// Gives the files in `dir` to the directory's owner. A restore run as root (as the IT
/// person does) writes them as root, and the daemon, running as the directory's owner
/// (`storebox`), then cannot open them.
fn give_to_owner(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let meta = std::fs::symlink_metadata(&path)?;
            if meta.uid() != owner.uid() || meta.gid() != owner.gid() {
                std::os::unix::fs::lchown(&path, Some(owner.uid()), Some(owner.gid()))
                    .with_context(|| {
                        format!("giving {} to the data directory's owner", path.display())
                    })?;
            }
        }
    }
    Ok(())
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
    if hq_last_seq > last {
        let now = chrono::Utc::now()
            .with_timezone(&config.store.timezone)
            .fixed_offset();
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
        let tx = journal.conn_mut().transaction()?;
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
        tx.commit()?;
    } else {
        store::set_outbox_position(
            journal.conn(),
            hq_last_seq,
            &chrono::Utc::now().to_rfc3339(),
        )?;
    }
    journal.resync_seq()?;
    let next_seq = journal.last_seq() + 1;
    journal
        .conn()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    drop(journal);
    // Sessions and wrong-PIN counts belong to the old box.
    if let Ok(c) = Connection::open(dir.join(crate::cache::FILE_NAME)) {
        let _ = c.execute_batch("DELETE FROM sessions; DELETE FROM strikes;");
    }
    Ok(next_seq)
}

/// Why the last scheduled backup failed, or `None` (it worked, or none ran yet): `/healthz`
/// reports the store degraded while it is `Some`.
pub type Failing = std::sync::Arc<std::sync::Mutex<Option<String>>>;

/// Backups by the daemon: one every `every`, into `dir`, keeping the newest `keep`. A failure
/// is noted in `failing` and, with a `ledger`, sent to HQ as an alert (`backup_failed`, then
/// `backup_ok` at the next one that works): a box whose backups stopped should not be found out
/// on the day it is lost.
#[allow(clippy::too_many_arguments)]
pub async fn scheduled(
    config: Config,
    keys: std::sync::Arc<StoreKeys>,
    every: Duration,
    backup_dir: PathBuf,
    keep: usize,
    failing: Failing,
    ledger: Option<crate::ledger::Ledger>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    // Counted from the newest backup there is, not from this start: a box switched off every
    // night never stayed up `every` (24 h by default) and got none. One overdue (or none yet)
    // is taken a minute after the start, once the start's own work is done.
    let newest = newest_age(&backup_dir, &config.store.id);
    let first = match newest {
        Some(age) if age < every => every - age,
        _ => every.min(Duration::from_secs(60)),
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (config, keys, dir) = (config.clone(), keys.clone(), backup_dir.clone());
        let result = tokio::task::spawn_blocking(move || -> anyhow::Result<(PathBuf, Header)> {
            private_dir(&dir)?;
            let name = format!(
                "storebox-{}-{}.sbk",
                config.store.id,
                chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
            );
            let path = dir.join(name);
            let h = backup(&config, &keys, &path)?;
            prune(&dir, &config.store.id, keep)?;
            Ok((path, h))
        })
        .await;
        let error = match result {
            Ok(Ok((path, h))) => {
                tracing::info!(
                    file = %path.display(),
                    last_seq = h.last_seq,
                    "scheduled backup written"
                );
                None
            }
            Ok(Err(e)) => {
                let e = format!("{e:#}");
                tracing::error!(error = %e, "scheduled backup failed");
                Some(e)
            }
            Err(e) => {
                tracing::error!(error = %e, "scheduled backup task failed");
                Some(e.to_string())
            }
        };
        let was_failing = match failing.lock() {
            Ok(mut f) => std::mem::replace(&mut *f, error.clone()).is_some(),
            Err(p) => std::mem::replace(&mut *p.into_inner(), error.clone()).is_some(),
        };
        let alert = match (&error, was_failing) {
            (Some(e), false) => Some(("backup_failed", format!("scheduled backup failed: {e}"))),
            (None, true) => Some(("backup_ok", "scheduled backups work again".to_string())),
            _ => None,
        };
        if let (Some((code, message)), Some(ledger)) = (alert, &ledger) {
            let cmd = crate::ledger::Command::Alert(crate::domain::event::Alert {
                source: "backup".into(),
                code: code.into(),
                message,
                detail: serde_json::json!({ "dir": backup_dir.display().to_string() }),
            });
            let actor = crate::ledger::Actor {
                staff_no: "storebox".into(),
                role: crate::domain::access::Role::Admin,
                terminal_id: "storebox".into(),
            };
            if let Err(e) = ledger.execute(actor, cmd).await {
                tracing::error!(error = %e, "cannot record the backup alert");
            }
        }
    }
}

/// The store's scheduled backups in `dir`.
fn scheduled_files(dir: &Path, store_id: &str) -> std::io::Result<Vec<PathBuf>> {
    let prefix = format!("storebox-{store_id}-");
    Ok(std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".sbk"))
        })
        .collect())
}

/// How long ago the newest scheduled backup in `dir` was written, if there is one.
fn newest_age(dir: &Path, store_id: &str) -> Option<Duration> {
    scheduled_files(dir, store_id)
        .ok()?
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .filter_map(|t| t.elapsed().ok())
        .min()
}

/// Removes all but the newest `keep` scheduled backups of the store in `dir`.
fn prune(dir: &Path, store_id: &str, keep: usize) -> anyhow::Result<()> {
    let mut files = scheduled_files(dir, store_id)?;
    // The timestamp in the name sorts in time order.
    files.sort();
    let excess = files.len().saturating_sub(keep);
    for old in &files[..excess] {
        std::fs::remove_file(old).with_context(|| format!("removing {}", old.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> (Config, StoreKeys) {
        let text = format!(
            "[store]\nid = \"sh-001\"\nname = \"店\"\nenvironment = \"development\"\n[storage]\ndir = \"{}\"\n",
            dir.display()
        );
        let config = Config::parse(Path::new("test.toml"), &text).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let (keys, _) = StoreKeys::load_or_create(&config.key_path()).unwrap();
        (config, keys)
    }

    /// The files in `dir` but the lock every daemon and restore leaves.
    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n != "storebox.lock")
            .collect();
        n.sort();
        n
    }

    /// A backup taken of `store`'s directory, in `root`.
    fn a_backup(root: &Path) -> (PathBuf, PathBuf) {
        let (old, keys) = store(&root.join("old"));
        drop(Journal::open(&old.storage.dir, "sh-001").unwrap());
        let file = root.join("b.sbk");
        backup(&old, &keys, &file).unwrap();
        (file, old.key_path())
    }

    #[test]
    fn a_restore_killed_half_way_is_named_not_taken_for_a_store() {
        let root = tempfile::tempdir().unwrap();
        let (file, key) = a_backup(root.path());
        let new_dir = root.path().join("new");
        std::fs::create_dir_all(&new_dir).unwrap();
        std::fs::copy(key, new_dir.join("store.key")).unwrap();
        let (new, keys) = store(&new_dir);
        restore(&new, &keys, &file, 0).unwrap();
        check_no_restore_under_way(&new_dir).unwrap();
        // As a restore killed between writing the files and settling them leaves it.
        std::fs::write(new_dir.join(RESTORING), b"").unwrap();
        let err = check_no_restore_under_way(&new_dir).unwrap_err();
        assert!(format!("{err}").contains("was interrupted"), "{err}");
        let err = restore(&new, &keys, &file, 0).unwrap_err();
        assert!(format!("{err}").contains("was interrupted"), "{err}");
    }

    #[test]
    fn a_restore_is_refused_while_a_daemon_holds_the_directory() {
        let root = tempfile::tempdir().unwrap();
        let (file, key) = a_backup(root.path());
        let new_dir = root.path().join("new");
        std::fs::create_dir_all(&new_dir).unwrap();
        std::fs::copy(key, new_dir.join("store.key")).unwrap();
        let (new, keys) = store(&new_dir);
        let daemon = crate::app::lock_data_dir(&new_dir).unwrap();
        let err = restore(&new, &keys, &file, 0).unwrap_err();
        assert!(format!("{err:#}").contains("already running"), "{err:#}");
        assert!(!new_dir.join(journal::FILE_NAME).exists());
        drop(daemon);
        restore(&new, &keys, &file, 0).unwrap();
    }

    #[test]
    fn restored_files_belong_to_the_data_directorys_owner() {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: giving files to another user takes root");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let (file, key) = a_backup(root.path());
        let new_dir = root.path().join("new");
        std::fs::create_dir_all(&new_dir).unwrap();
        std::fs::copy(key, new_dir.join("store.key")).unwrap();
        let (new, keys) = store(&new_dir);
        // The daemon's user (here `nobody`) owns the directory; root restores.
        std::os::unix::fs::chown(&new_dir, Some(65534), Some(65534)).unwrap();
        std::os::unix::fs::chown(new_dir.join("store.key"), Some(65534), Some(65534)).unwrap();
        restore(&new, &keys, &file, 0).unwrap();
        for entry in std::fs::read_dir(&new_dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            assert_eq!(
                (meta.uid(), meta.gid()),
                (65534, 65534),
                "{:?} left to root",
                entry.file_name()
            );
        }
    }

    #[test]
    fn the_copy_of_a_killed_backup_is_removed_but_not_a_live_ones() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        // A backup killed half-way: its copy is there, its lock free (the kernel let go of it
        // with the process).
        let killed = dir.join(".backup-killed");
        std::fs::create_dir_all(&killed).unwrap();
        std::fs::write(killed.join(TEMP_LOCK), b"").unwrap();
        std::fs::write(killed.join(journal::FILE_NAME), b"a copy").unwrap();
        // One killed before it made its lock, an hour ago; one being made this instant.
        let old = dir.join(".backup-old");
        std::fs::create_dir_all(&old).unwrap();
        File::open(&old)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        let fresh = dir.join(".backup-fresh");
        std::fs::create_dir_all(&fresh).unwrap();
        let live = TempDir::new(dir).unwrap();
        assert_eq!(remove_abandoned(dir), 2);
        assert!(!killed.exists() && !old.exists());
        assert!(fresh.exists(), "a copy being made (no lock yet) stays");
        assert!(live.0.exists(), "a live backup's copy stays");
        drop(live);
        assert_eq!(names(dir), vec![".backup-fresh".to_string()]);
    }

    /// The schedule counts from the newest backup, not from the start: a box that never stays
    /// up `every` still gets its backups.
    #[tokio::test]
    async fn a_scheduled_backup_is_due_from_the_newest_one_not_from_the_start() {
        let root = tempfile::tempdir().unwrap();
        let (config, keys) = store(&root.path().join("data"));
        drop(Journal::open(&config.storage.dir, "sh-001").unwrap());
        let dir = root.path().join("backups");
        std::fs::create_dir_all(&dir).unwrap();
        let last = dir.join("storebox-sh-001-20261206T000000Z.sbk");
        std::fs::write(&last, b"an older backup").unwrap();
        File::options()
            .write(true)
            .open(&last)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(9))
            .unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let failing = Failing::default();
        let task = tokio::spawn(scheduled(
            config.clone(),
            std::sync::Arc::new(keys.clone()),
            Duration::from_secs(10),
            dir.clone(),
            5,
            failing.clone(),
            None,
            stop.clone(),
        ));
        // Due a second after the start (the last one is 9 s old); counted from the start, it
        // would come after 10 s.
        tokio::time::sleep(Duration::from_secs(4)).await;
        stop.cancel();
        task.await.unwrap();
        assert_eq!(scheduled_files(&dir, "sh-001").unwrap().len(), 2);
        assert_eq!(*failing.lock().unwrap(), None);

        // A backup directory that cannot be written: the failure is noted (for /healthz).
        let blocked = root.path().join("not-a-dir");
        std::fs::write(&blocked, b"a file").unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(scheduled(
            config,
            std::sync::Arc::new(keys),
            Duration::from_secs(1),
            blocked,
            5,
            failing.clone(),
            None,
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.cancel();
        task.await.unwrap();
        let noted = failing.lock().unwrap().clone();
        assert!(
            noted.is_some_and(|e| e.contains("not-a-dir")),
            "{:?}",
            failing
        );
    }

    #[test]
    fn a_restore_that_fails_leaves_the_directory_as_it_found_it() {
        let root = tempfile::tempdir().unwrap();
        let (old, keys) = store(&root.path().join("old"));
        drop(Journal::open(&old.storage.dir, "sh-001").unwrap());
        let good = root.path().join("good.sbk");
        backup(&old, &keys, &good).unwrap();
        // A journal of a storebox newer than this one.
        Connection::open(old.storage.dir.join(journal::FILE_NAME))
            .unwrap()
            .execute(
                "UPDATE meta SET value = '999' WHERE key = 'schema_version'",
                [],
            )
            .unwrap();
        let file = root.path().join("newer.sbk");
        backup(&old, &keys, &file).unwrap();

        let new_dir = root.path().join("new");
        std::fs::create_dir_all(&new_dir).unwrap();
        std::fs::copy(old.key_path(), new_dir.join("store.key")).unwrap();
        let (new, keys) = store(&new_dir);
        let before = names(&new_dir);
        let err = restore(&new, &keys, &file, 0).unwrap_err();
        assert!(format!("{err:#}").contains("newer"), "{err:#}");
        assert_eq!(
            names(&new_dir),
            before,
            "the failed restore left files behind"
        );

        // The same directory takes a good backup afterwards.
        restore(&new, &keys, &good, 0).unwrap();
        assert!(new_dir.join(journal::FILE_NAME).exists());
    }

    #[test]
    fn retention_keeps_the_newest_of_this_store_only() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "storebox-sh-001-20261120T000000Z.sbk",
            "storebox-sh-001-20261121T000000Z.sbk",
            "storebox-sh-001-20261122T000000Z.sbk",
            "storebox-sh-002-20261101T000000Z.sbk",
            "notes.txt",
        ];
        for n in names {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        prune(dir.path(), "sh-001", 2).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        let mut want = names[1..].to_vec();
        want.sort();
        assert_eq!(left, want);
    }
}
