//! Offline commands for the IT person: `init`, `audit verify`, `backup`, `restore`. Each
//! returns its report and whether it succeeded; `main.rs` prints it and sets the exit code.

use std::path::Path;

use anyhow::Context;
use rusqlite::{Connection, OpenFlags};

use crate::config::Config;
use crate::journal::audit::{self, Verdict};
use crate::security::StoreKeys;

/// `storebox init`: creates the store key (mode 0600) if there is none, checks it otherwise;
/// in production, marks a data directory with no journal as a new store's (the daemon starts
/// no journal of its own accord there).
pub fn init(config: &Config) -> anyhow::Result<(String, bool)> {
    let path = config.key_path();
    let (keys, created) = StoreKeys::load_or_create(&path)?;
    let mut report = if created {
        format!(
            "created the store key {}\nfingerprint {}\n\
             Keep a copy at HQ (key escrow): without it the data and backups of this store \
             cannot be read if the box is lost.",
            path.display(),
            keys.fingerprint()
        )
    } else {
        format!(
            "the store key {} is in place (fingerprint {})",
            path.display(),
            keys.fingerprint()
        )
    };
    if let Some(data) = crate::app::mark_new_store(config)? {
        report.push('\n');
        report.push_str(&data);
    }
    Ok((report, true))
}

/// `storebox audit verify`: walks the audit chain in the journal.
pub fn audit_verify(config: &Config) -> anyhow::Result<(String, bool)> {
    let keys = StoreKeys::load(&config.key_path())?;
    let path = config.storage.dir.join(crate::journal::FILE_NAME);
    if !path.exists() {
        anyhow::bail!("no journal at {}", path.display());
    }
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(match audit::verify(&conn, &keys.audit)? {
        Verdict::Intact { entries } => (
            format!(
                "audit chain intact: {entries} entries in {}",
                path.display()
            ),
            true,
        ),
        Verdict::Broken {
            n,
            at,
            action,
            reason,
        } => (
            format!("audit chain broken at entry {n} ({action} at {at}): {reason}"),
            false,
        ),
    })
}

/// `storebox backup`.
pub fn backup(config: &Config, file: &Path) -> anyhow::Result<(String, bool)> {
    let keys = StoreKeys::load(&config.key_path())?;
    let h = crate::backup::backup(config, &keys, file)?;
    Ok((
        format!(
            "backup of store {} written to {}: {} members, events up to seq {} (HQ acknowledged {})",
            h.store_id,
            file.display(),
            h.members,
            h.last_seq,
            h.acked_seq
        ),
        true,
    ))
}

/// `storebox restore`.
pub fn restore(
    config: &Config,
    file: &Path,
    hq_last_seq: u64,
    hq_lost_events: bool,
) -> anyhow::Result<(String, bool)> {
    let keys = StoreKeys::load(&config.key_path())?;
    let r = crate::backup::restore(config, &keys, file, hq_last_seq, hq_lost_events)?;
    let mut report = format!(
        "restored store {} from the backup of {} into {}: {} members, events up to seq {}; \
         the next event gets seq {}",
        r.header.store_id,
        r.header.created_at,
        config.storage.dir.display(),
        r.header.members,
        r.header.last_seq,
        r.next_seq
    );
    if hq_last_seq > r.header.last_seq {
        report.push_str(&format!(
            "\nwarning: HQ holds events seq {} to {} that this backup lacks: the sales, refunds \
             and registrations among them are not on this box (a sale of theirs cannot be \
             refunded or reprinted here), and a terminal retrying one of those sales records it \
             again (HQ recognises it by its terminal_id and idempotency_key). HQ has been asked \
             to send its members and master data again.",
            r.header.last_seq + 1,
            hq_last_seq
        ));
    }
    if hq_last_seq < r.header.last_seq {
        // HQ behind the backup (events the broker lost, with --hq-lost-events, or never sent).
        report.push_str(&format!(
            "
events seq {} to {} are sent to HQ again when the daemon starts",
            hq_last_seq + 1,
            r.header.last_seq
        ));
    }
    Ok((report, true))
}
