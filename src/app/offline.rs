//! The store opened by an offline command (`storebox members import`): the daemon stopped,
//! the data directory locked, the ledger running without the HTTP API.

use std::fs::File;
use std::sync::Arc;

use anyhow::Context;

use crate::cache::{Cache, Opened};
use crate::config::Config;
use crate::journal::Journal;
use crate::ledger::{Ledger, StoreSettings};
use crate::pii::PiiCodec;
use crate::security::KeyError;

use super::{load_keys, lock_data_dir, request_resync};

/// The cache writer's page cache in an offline command, at least (MiB): the phone and card
/// index pages of a million members, for the uniqueness lookups.
const OFFLINE_PAGE_CACHE_MB: u64 = 96;

/// The store opened by an offline command (the daemon stopped): the data directory locked,
/// the journal replayed into the cache, the ledger running.
pub struct OfflineStore {
    /// The ledger.
    pub ledger: Ledger,
    /// Read access to the cache.
    pub cache: Cache,
    thread: std::thread::JoinHandle<()>,
    dir: std::path::PathBuf,
    _lock: File,
}

impl OfflineStore {
    /// Opens the store of `config`; fails if the daemon runs on it. A cache that had to be
    /// rebuilt (an earlier import stopped before its index entries were written, or a damaged
    /// or missing file) lost HQ's master data, which only the cache holds, and a new store's
    /// has none yet: as the daemon does, HQ is asked for all of it (a journaled request, sent
    /// when the daemon next runs).
    pub async fn open(config: &Config) -> anyhow::Result<OfflineStore> {
        let dir = &config.storage.dir;
        let lock = lock_data_dir(dir)
            .context("the daemon must be stopped for this (systemctl stop storebox)")?;
        // Run as root (as the IT person does: the store key is root's), the command creates
        // files the daemon, running as the data directory's owner, could not open: a cache
        // rebuilt here (an older layout, a damaged or missing one) kept it from starting.
        // They are given to that owner once open (a killed command leaves none behind), and
        // again when the command ends, whichever way.
        let opened = Self::open_locked(config, lock).await;
        let given = crate::backup::give_to_owner(dir);
        let store = opened?;
        given?;
        Ok(store)
    }

    async fn open_locked(config: &Config, lock: File) -> anyhow::Result<OfflineStore> {
        let dir = &config.storage.dir;
        super::check_data_dir(config)?;
        let keys = Arc::new(load_keys(config)?);
        let mut journal = Journal::open(dir, &config.store.id)
            .with_context(|| format!("opening the journal in {}", dir.display()))?;
        if let Some(expected) = journal.bind_key(keys.fingerprint())? {
            return Err(KeyError::WrongKey {
                path: config.key_path(),
                found: keys.fingerprint().to_string(),
                expected,
            }
            .into());
        }
        super::journal_started(dir)?;
        journal.set_offline()?;
        crate::cache::watch_damage(dir);
        let (cache, writer, opened) =
            Cache::open(dir, config.storage.cache_capacity_mb, PiiCodec::new(keys))
                .with_context(|| format!("opening the cache in {}", dir.display()))?;
        // Offline work (a bulk import) looks up every phone and card in the cache's indices
        // while no reader runs: the writer gets a page cache of the whole `cache_capacity_mb`,
        // and at least 96 MiB; the idle readers keep their shares. New members' index entries
        // are written sorted when the store closes (`cache::bulk`).
        writer.set_offline(config.storage.cache_capacity_mb.max(OFFLINE_PAGE_CACHE_MB))?;
        writer.begin_bulk()?;
        let mut resync = super::resync_reason(&opened, journal.last_seq() == 0);
        if resync == Some("new_journal") {
            super::new_store::announce_new_journal(&mut journal, config, cache.codec())?;
            cache.rebuild_done();
            resync = None;
        }
        let settings = Arc::new(StoreSettings::from_config(config));
        if let Some((_, rules)) = cache.rules()? {
            settings.set_rules(rules);
        }
        let (ledger, thread) = Ledger::start(
            journal,
            writer,
            settings,
            &config.products,
            config.storage.idempotency_days,
        )?;
        match &opened {
            Opened::Rebuilt(aside) => {
                tracing::warn!(aside = %aside.display(), "the cache was rebuilt from the journal");
            }
            Opened::Resumed => {
                tracing::warn!(
                    "the cache was rebuilt from the journal, going on from where an earlier start stopped"
                );
            }
            Opened::Existing | Opened::Created => {}
        }
        if let Some(reason) = resync {
            request_resync(&ledger, reason)
                .await
                .context("asking HQ for its data for a new or rebuilt cache")?;
            cache.rebuild_done();
        }
        Ok(OfflineStore {
            ledger,
            cache,
            thread,
            dir: dir.clone(),
            _lock: lock,
        })
    }

    /// Lets the ledger finish and stop.
    pub async fn close(self) -> anyhow::Result<()> {
        let finished = self
            .ledger
            .finish_bulk()
            .await
            .context("writing the member index entries");
        drop(self.ledger);
        let thread = self.thread;
        let joined = tokio::task::spawn_blocking(move || thread.join())
            .await
            .context("waiting for the ledger")
            .and_then(|r| r.map_err(|_| anyhow::anyhow!("the ledger thread panicked")));
        // Files made since the open (a cache moved aside, a damage marker) go to the owner too.
        let given = crate::backup::give_to_owner(&self.dir);
        finished?;
        joined?;
        given
    }
}
