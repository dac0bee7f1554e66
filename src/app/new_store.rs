//! A production daemon never starts a new journal by itself. A data directory without a journal
//! is more often a data partition that did not mount (or a disk swapped without a restore) than
//! a new store, and a new journal numbers its events from seq 1 again: HQ, which already holds
//! this store's seqs, would see them twice. `storebox init` marks the directory of a new store
//! (`new-store`); the first start, an import or a restore takes the mark away once the journal
//! is there.

use std::path::Path;

use anyhow::{Context, bail};

use crate::config::{Config, Environment};

/// The mark `storebox init` leaves in a new store's data directory.
pub const NEW_STORE: &str = "new-store";

/// What the daemon and an offline command check of their locked data directory before they
/// open it: no restore was killed half-way in it, and, in production, it holds a journal or
/// `storebox init` marked it as a new store's.
pub(crate) fn check_data_dir(config: &Config) -> anyhow::Result<()> {
    crate::backup::check_no_restore_under_way(&config.storage.dir)?;
    check_journal_or_new_store(config)
}

/// Refuses a production data directory with no journal that `storebox init` did not mark.
fn check_journal_or_new_store(config: &Config) -> anyhow::Result<()> {
    if config.store.environment != Environment::Production {
        return Ok(());
    }
    let dir = &config.storage.dir;
    let present = |name: &str| {
        // A directory that cannot be read is the journal's opening's error to report.
        dir.join(name).try_exists().unwrap_or(true)
    };
    if present(crate::journal::FILE_NAME) || present(NEW_STORE) {
        return Ok(());
    }
    bail!(
        "{} holds no journal, and storebox does not start a new one by itself in production: \
         if this store ever ran, HQ holds its events, and a new journal would number them from \
         seq 1 again. If the data partition is not mounted, mount it. A new store: \
         `storebox init --config <file>`, then start again. A box replacing one: \
         `storebox restore` its backup.",
        dir.display()
    )
}

/// Takes away the mark of a new store once its journal is there.
pub(crate) fn journal_started(dir: &Path) -> anyhow::Result<()> {
    let mark = dir.join(NEW_STORE);
    match std::fs::remove_file(&mark) {
        Ok(()) => crate::backup::sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", mark.display())),
    }
}

/// `storebox init`'s part for the data directory: in production, marks a directory with no
/// journal as a new store's. Returns what it did, for the report.
pub(crate) fn mark_new_store(config: &Config) -> anyhow::Result<Option<String>> {
    if config.store.environment != Environment::Production {
        return Ok(None);
    }
    let dir = &config.storage.dir;
    crate::backup::check_no_restore_under_way(dir)?;
    if dir.join(crate::journal::FILE_NAME).exists() {
        return Ok(Some(format!(
            "the journal in {} is in place",
            dir.display()
        )));
    }
    crate::backup::private_dir(dir)?;
    let mark = dir.join(NEW_STORE);
    let mut f = crate::backup::private_file(&mark)?;
    std::io::Write::write_all(
        &mut f,
        b"Written by `storebox init`: the first start begins a new journal here.\n",
    )
    .and_then(|()| f.sync_all())
    .with_context(|| format!("writing {}", mark.display()))?;
    crate::backup::give_to_owner(dir)?;
    crate::backup::sync_dir(dir)?;
    Ok(Some(format!(
        "{} has no journal: the first start begins this store's journal (seq 1).\n\
         If this box replaces one whose events HQ already has, do not start it: restore that \
         box's backup (`storebox restore`) instead.",
        dir.display()
    )))
}

/// Journals `sync.requested` `new_journal` straight into a journal that begins here, before
/// the ledger starts and journals the config's opening products: HQ, which may hold seqs 1, 2,
/// … of this store from a box before, learns that the numbering starts again from the first
/// event of the new journal, not after ones it took for the old box's.
pub(crate) fn announce_new_journal(
    journal: &mut crate::journal::Journal,
    config: &Config,
    codec: &crate::pii::PiiCodec,
) -> anyhow::Result<()> {
    use crate::domain::event::{Event, EventBody};
    let now = chrono::Utc::now()
        .with_timezone(&config.store.timezone)
        .fixed_offset();
    let event = Event {
        id: crate::ids::new_v7().to_string(),
        store_id: config.store.id.clone(),
        seq: journal.last_seq() + 1,
        occurred_at: now,
        body: EventBody::SyncRequested {
            reason: "new_journal".into(),
        },
    };
    let tx = journal.conn_mut().transaction()?;
    crate::journal::store::append(&tx, &event, &now.date_naive().to_string(), codec)
        .context("journaling sync.requested new_journal")?;
    tx.commit()?;
    journal.resync_seq()?;
    Ok(())
}
