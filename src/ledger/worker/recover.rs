//! Outliving a bug: the ledger thread runs every batch under `catch_unwind`, reruns the rest of
//! a batch that one command failed, and after a panic elsewhere brings the cache and its own
//! state up to the journal. And noticing that a journal or cache which refused writes (a lock
//! another process held, a full disk) takes them again.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::Worker;
use crate::journal::{Journal, JournalError};
use crate::ledger::{Command, Job, LedgerStats, replay};

/// How often, at most, the ledger tries whether a journal or a cache that refused a write takes
/// one again ([`Worker::probe`]).
const PROBE_EVERY: Duration = Duration::from_secs(1);

impl Worker {
    /// Runs a batch and outlives a bug in it. A command that fails its batch (a bug in its
    /// execution, an unexpected storage error) gets its error, and the others in the batch run
    /// again without it (see [`Self::batch`]), so that one poisoned request, retried by its
    /// terminal, does not fail every sale that shares its batch. A panic anywhere else in the
    /// batch (the session changes, the cache write, the work after the commit) drops its
    /// unanswered commands, which answer [`crate::ledger::LedgerError::Bug`] themselves (a sale among them may
    /// have been recorded: its terminal's retry with the same key finds it), and the cache is
    /// brought up to the journal at once (or, failing that, before the next batch, as after a
    /// failed cache write). The store's only writer goes on.
    pub(super) fn guarded_batch(&mut self, mut jobs: Vec<Job>) {
        while !jobs.is_empty() && !self.broken {
            // What a panic after the commit may have left undone, besides the cache write.
            let staff_changes = jobs.iter().any(|j| match &j.cmd {
                Command::PutStaff { .. } | Command::UpgradePin { .. } => true,
                Command::ApplyHq(u) => matches!(**u, crate::domain::sync::HqUpdate::Staff(_)),
                _ => false,
            });
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.batch(jobs))) {
                Ok(again) => jobs = again,
                Err(panic) => {
                    self.after_bug(&*panic, staff_changes);
                    return;
                }
            }
        }
    }

    /// Brings the cache and the ledger's state up to the journal after a panic outside a
    /// command's execution.
    fn after_bug(&mut self, panic: &(dyn std::any::Any + Send), staff_changes: bool) {
        tracing::error!(
            error = %crate::ledger::panic_message(panic),
            "a batch failed on a bug; the cache is brought up to the journal"
        );
        self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
        self.cache.forget_memo();
        if let Err(e) = self.journal.resync_seq() {
            tracing::error!(error = %e, "cannot re-read the journal position");
        }
        // Now rather than at the next batch, which in a quiet hour may be a while.
        let replayed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            #[cfg(test)]
            if self.stats.panic_in_replay.load(Ordering::Relaxed) {
                panic!("a bug in the replay, for a test");
            }
            replay(&self.journal, &self.cache, &self.settings)
        }));
        self.behind(!matches!(replayed, Ok(Ok(_))));
        // A replay that itself hits a bug would fail every batch from now on.
        self.broken = replayed.is_err();
        if self.needs_replay && !self.broken {
            tracing::error!(
                "cache catch-up after the bug failed; tried again before the next batch"
            );
        }
        self.cache.note_write();
        // HQ's rules and staff are not in the journal: what the batch may have committed to the
        // cache but not put in force is taken from the cache again.
        match self.cache.reader().rules() {
            Ok(Some((_, rules))) => self.settings.set_rules(rules),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot re-read HQ's rules"),
        }
        if staff_changes {
            // Which sessions the batch meant to end is lost with it: all of them end.
            if let Err(e) = self.cache.prune_sessions(Utc::now(), |_| false) {
                tracing::error!(error = %e, "ending the sessions after a bug failed");
            }
        }
        let seq = self.journal.last_seq();
        self.stats.last_seq.store(seq, Ordering::Relaxed);
        self.seq_tx.send_replace(seq);
        // Requests waiting for the cache to show what was answered stop waiting: it shows the
        // journal now, or (the replay failed) it is as it is until the next batch's replay, as
        // after a failed cache write.
        self.stats.answered.cached(seq);
    }

    /// After the journal or the cache refused a write, tries whether it takes one again, at
    /// most once a [`PROBE_EVERY`]: in a quiet hour no sale comes to show it, and `/healthz`
    /// (which pings the ledger while it fails) would say `failed` until one did. A cache left
    /// behind the journal is `catch_up`'s.
    pub(super) fn probe(&mut self) {
        let journal = !self.stats.writable.load(Ordering::Relaxed);
        let cache = self.stats.cache_failing.load(Ordering::Relaxed) && !self.needs_replay;
        if !(journal || cache) || self.last_probe.elapsed() < PROBE_EVERY {
            return;
        }
        self.last_probe = Instant::now();
        if journal {
            match in_place(&self.journal, &self.stats).and_then(|()| self.journal.probe_write()) {
                Ok(()) => {
                    tracing::info!("the journal takes writes again");
                    self.stats.writable.store(true, Ordering::Relaxed);
                }
                Err(e) => tracing::debug!(error = %e, "the journal still refuses writes"),
            }
        }
        if cache {
            match self.cache.probe_write() {
                Ok(()) => {
                    tracing::info!("the cache takes writes again");
                    self.stats.cache_failing.store(false, Ordering::Relaxed);
                }
                Err(e) => tracing::debug!(error = %e, "the cache still refuses writes"),
            }
        }
    }
}

impl Worker {
    /// Once a commit found the journal gone from the data directory, whether it is back: until
    /// it is, batches are refused before they run. (Otherwise a batch checks [`in_place`] after
    /// its commit only, before it answers: two `stat`s, ~2 µs each on the development VM.)
    pub(super) fn misplaced(&self) -> Result<(), JournalError> {
        if !self.stats.journal_misplaced.load(Ordering::Relaxed) {
            return Ok(());
        }
        in_place(&self.journal, &self.stats)
    }
}

/// Whether the journal's files are still where the writer opened them
/// ([`Journal::check_in_place`]); if not, the journal counts as unwritable (`/healthz`, the
/// probe) and the first refusal is logged. Back in place, the probe clears it.
pub(super) fn in_place(journal: &Journal, stats: &LedgerStats) -> Result<(), JournalError> {
    let checked = journal.check_in_place();
    match &checked {
        Ok(()) => {
            if stats.journal_misplaced.swap(false, Ordering::Relaxed) {
                tracing::info!("the journal's files are back in the data directory");
            }
        }
        Err(e) => {
            stats.writable.store(false, Ordering::Relaxed);
            if !stats.journal_misplaced.swap(true, Ordering::Relaxed) {
                tracing::error!(error = %e, "sales are refused: the journal is gone from the data directory");
            }
        }
    }
    checked
}
