//! The ledger thread: takes commands off the channel in batches, executes each batch in one
//! journal transaction, commits, then writes the cache and answers.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};

use crate::cache::{CacheWriter, Session};
use crate::config::SeedProduct;
use crate::domain::access::Role;
use crate::journal::Journal;

use super::requests::{ProductEdit, StockMovement};
mod recover;
mod sessions;

use super::{
    Actor, Command, Job, LedgerError, LedgerStats, MAX_BATCH, Msg, Outcome, Reply, StoreSettings,
    cache_codec, execute, purge_idempotency, replay,
};

pub(super) struct Worker {
    /// Tells waiting tasks (the uplink) the last committed `seq`.
    pub(super) seq_tx: tokio::sync::watch::Sender<u64>,
    pub(super) journal: Journal,
    pub(super) cache: CacheWriter,
    pub(super) settings: Arc<StoreSettings>,
    pub(super) stats: Arc<LedgerStats>,
    pub(super) idempotency_days: u32,
    pub(super) last_purge: Instant,
    /// When [`Worker::probe`] last tried the journal or the cache.
    pub(super) last_probe: Instant,
    /// Set when a cache write failed after a journal commit: the next batch replays first.
    pub(super) needs_replay: bool,
    /// The journal's and the cache's checkpoint threads (stopped when the worker is dropped).
    pub(super) checkpointers: Vec<crate::journal::Checkpointer>,
    /// Set when the cache could not be replayed after a bug: the thread stops.
    pub(super) broken: bool,
}

impl Worker {
    /// Records the config's products that the store does not know yet, with their opening
    /// stock, as journal events (so a rebuilt cache gets them back, and HQ hears of them).
    pub(super) fn seed(&mut self, seeds: &[SeedProduct]) -> Result<(), LedgerError> {
        let actor = Actor {
            staff_no: "config".into(),
            role: Role::Admin,
            terminal_id: "storebox".into(),
        };
        let mut jobs = Vec::new();
        let mut replies = Vec::new();
        for s in seeds {
            if self.cache.reader().product(&s.product.sku)?.is_some() {
                continue;
            }
            let p = &s.product;
            let mut cmds = vec![Command::PutProduct {
                sku: p.sku.clone(),
                req: ProductEdit {
                    name: p.name.clone(),
                    price: p.price,
                    barcodes: p.barcodes.clone(),
                    promo: p.promo.clone(),
                    category: p.category.clone(),
                    unit: p.unit.clone(),
                    member_discount: p.member_discount,
                    active: p.active,
                    safety_stock: s.safety_stock,
                },
            }];
            if let Some(stock) = s.stock.filter(|n| *n != 0) {
                cmds.push(Command::MoveStock {
                    req: StockMovement {
                        sku: p.sku.clone(),
                        delta: stock,
                        reason: crate::domain::event::StockReason::Adjust,
                        note: "opening stock from the config".into(),
                    },
                    idem: None,
                });
            }
            for cmd in cmds {
                let (reply, rx) = oneshot::channel();
                jobs.push(Job {
                    actor: actor.clone(),
                    cmd,
                    reply: super::Reply::new(reply),
                });
                replies.push(rx);
            }
        }
        if jobs.is_empty() {
            return Ok(());
        }
        let n = jobs.len();
        self.batch(jobs);
        for mut rx in replies {
            match rx.try_recv() {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(LedgerError::Internal("seeding got no answer".into())),
            }
        }
        tracing::info!(events = n, "recorded the config's products");
        Ok(())
    }

    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        while let Some(first) = super::wait::next_message(&mut rx, super::wait::LEDGER_POLL) {
            let mut jobs = Vec::new();
            let mut pings = Vec::new();
            let mut next = Some(first);
            // Messages taken this round, batched or not (HQ's data is batched alone): a round
            // ends after MAX_BATCH of them, so that pings are answered in time.
            let mut taken = 0;
            while let Some(msg) = next.take() {
                taken += 1;
                match msg {
                    // HQ's data and campaigns (HQ's or a manager's: a big cache write) go in a
                    // batch of their own (after the commands that came before): one that
                    // fails, or hits a bug, takes no terminal's sale down with it, and a batch
                    // of sales never pays the HQ batch's fsynced cache write.
                    Msg::Job(job)
                        if matches!(
                            job.cmd,
                            Command::ApplyHq(_)
                                | Command::StartCampaign { .. }
                                | Command::IssueCampaignCoupons { .. }
                        ) =>
                    {
                        self.guarded_batch(std::mem::take(&mut jobs));
                        self.guarded_batch(vec![job]);
                    }
                    Msg::Job(job) => jobs.push(job),
                    Msg::Ping(reply) => pings.push(reply),
                    Msg::FinishBulk(reply) => {
                        self.guarded_batch(std::mem::take(&mut jobs));
                        let _ = reply.send(self.finish_bulk());
                    }
                    #[cfg(test)]
                    Msg::Hook(f, done) => {
                        self.guarded_batch(std::mem::take(&mut jobs));
                        f(self.journal.conn());
                        let _ = done.send(());
                    }
                }
                if taken < MAX_BATCH && !self.broken {
                    next = rx.try_recv().ok();
                }
            }
            self.guarded_batch(jobs);
            // A cache write failed (a full disk): retried at every round (the watchdog's pings
            // come even in a quiet hour), so lookups show what was answered once space is freed.
            if self.needs_replay && !self.broken {
                let _ = self.catch_up();
            }
            self.probe();
            if self.broken {
                // The cache cannot be brought up to the journal: no more writes. The thread
                // ends, the daemon reports it (`/healthz`, the watchdog) and a restart rebuilds.
                tracing::error!("the ledger stops: the cache cannot be replayed after a bug");
                break;
            }
            // Only now: a ping answered means the thread got through the batch it came with.
            for reply in pings {
                let _ = reply.send(());
            }
            if self.last_purge.elapsed() > Duration::from_secs(3600) {
                purge_idempotency(&mut self.journal, self.idempotency_days);
                self.last_purge = Instant::now();
            }
        }
        // Unless asked before: a bulk write left unfinished would make the next start rebuild
        // the cache.
        if let Err(e) = self.finish_bulk() {
            tracing::error!(error = %e, "writing the deferred index entries at shutdown failed");
        }
        self.cache
            .reader()
            .checkpoint_moment(crate::journal::Moment::Before { empty: true });
        if let Err(e) = self.cache.flush() {
            tracing::error!(error = %e, "flushing the cache at shutdown failed");
        }
        tracing::info!("ledger stopped");
    }

    /// Notes whether the cache is behind the journal (a cache write after a commit failed):
    /// the next batch replays first, and `/healthz` says so meanwhile.
    pub(super) fn behind(&mut self, behind: bool) {
        self.needs_replay = behind;
        self.stats.cache_behind.store(behind, Ordering::Relaxed);
    }

    /// Brings the cache up to the journal if a cache write failed; fails while it cannot.
    fn catch_up(&mut self) -> Result<(), LedgerError> {
        if !self.needs_replay {
            return Ok(());
        }
        match replay(&self.journal, &self.cache, &self.settings) {
            Ok(n) => {
                tracing::info!(events = n, "the cache caught up with the journal");
                self.behind(false);
                self.stats.cache_failing.store(false, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "cache catch-up failed; commands are refused until it succeeds");
                Err(e)
            }
        }
    }

    /// Leaves the cache's bulk mode, timing it: the cache first catches up with the journal
    /// (a batch's cache write failed), so that the index entries written are all of them.
    fn finish_bulk(&mut self) -> Result<usize, LedgerError> {
        self.catch_up()?;
        let t = Instant::now();
        let n = self.cache.finish_bulk()?;
        if n > 0 {
            tracing::info!(
                entries = n,
                secs = t.elapsed().as_secs_f64(),
                "wrote the deferred member index entries"
            );
        }
        Ok(n)
    }

    /// Executes `jobs` in one transaction and commits them with one fsync (group commit).
    /// Returns the commands to run again: when one command fails the batch (which then rolls
    /// back), the others in it, to be run without it.
    fn batch(&mut self, jobs: Vec<Job>) -> Vec<Job> {
        if jobs.is_empty() {
            return Vec::new();
        }
        let codec = cache_codec(&self.cache);
        let rules = self.settings.rules();
        let now = Utc::now();
        let first_seq = self.journal.last_seq() + 1;
        let mut done: Vec<(Reply, Outcome)> = Vec::new();
        let mut failure: Option<LedgerError> = None;
        let mut last_seq = first_seq - 1;
        let mut erased = false;

        let jobs = self.session_jobs(jobs);
        if jobs.is_empty() {
            return Vec::new();
        }
        // A journal whose file is gone from the data directory takes commits no later start
        // finds: refused until it is back. A command executed on a cache that lacks committed
        // events would decide on stale facts (a phone already taken, points already spent) and
        // journal the result: until the cache catches up (a full disk freed), commands are
        // refused, nothing recorded.
        let ready = self.misplaced().map_err(LedgerError::from).and_then(|()| {
            self.catch_up().map_err(|e| LedgerError::Unavailable(format!(
                "nothing was recorded: the cache is behind the journal and cannot be written ({e})"
            )))
        });
        if let Err(err) = ready {
            self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
            for job in jobs {
                let _ = job.reply.send(Err(clone_err(&err)));
            }
            return Vec::new();
        }
        let t0 = Instant::now();
        let durable = jobs.iter().any(|j| matches!(j.cmd, Command::ApplyHq(_)));
        let mut pending = match self.cache.pending(durable) {
            Ok(p) => p,
            Err(e) => {
                let err = LedgerError::cache_refused(e);
                self.stats.cache_failing.store(true, Ordering::Relaxed);
                tracing::error!(error = %err, "cannot start a batch");
                for job in jobs {
                    let _ = job.reply.send(Err(clone_err(&err)));
                }
                return Vec::new();
            }
        };
        let conn = self.journal.conn_mut();
        // IMMEDIATE: the write lock is taken at BEGIN (waiting out a checkpoint), so a batch
        // never starts reading a snapshot it then cannot write on.
        let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                let err =
                    LedgerError::from(crate::journal::JournalError::sql("starting a batch")(e));
                // Refused before anything ran (the journal locked past the busy timeout, a
                // read-only file): as unwritable as a failed commit, for `/healthz` too.
                self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                if matches!(err, LedgerError::Unavailable(_)) {
                    self.stats.writable.store(false, Ordering::Relaxed);
                }
                tracing::error!(error = %err, commands = jobs.len(), "batch not recorded");
                for job in jobs {
                    let _ = job.reply.send(Err(clone_err(&err)));
                }
                return Vec::new();
            }
        };
        // With more than one command, each is copied before it runs, so that the others can run
        // again should one of them fail the batch.
        let shared = jobs.len() > 1;
        let mut copies: Vec<(Actor, Command)> = Vec::new();
        let mut again: Vec<Job> = Vec::new();
        let mut next_seq = first_seq;
        for job in jobs {
            if let Some(f) = &failure {
                if shared && is_own(f) {
                    again.push(job);
                } else {
                    let _ = job.reply.send(Err(clone_err(f)));
                }
                continue;
            }
            let copy = shared.then(|| (job.actor.clone(), job.cmd.clone()));
            let mut ctx = execute::Ctx::new(
                &tx,
                &mut pending,
                &self.settings,
                &rules,
                &codec,
                now,
                next_seq,
                &job.actor,
            );
            // A command that panics (a bug: input is checked before it gets here) fails its
            // batch, which rolls back, instead of taking the store's only writer down.
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ctx.run(job.cmd)))
                    .unwrap_or_else(|panic| Err(LedgerError::Bug(super::panic_message(&*panic))));
            let emitted = ctx.emitted();
            let after = ctx.next_seq();
            let erasing = ctx.erased();
            match result {
                Ok(outcome) => {
                    next_seq = after;
                    last_seq = after - 1;
                    erased |= erasing;
                    done.push((job.reply, outcome));
                    copies.extend(copy);
                }
                Err(e)
                    if emitted == 0
                        && !matches!(
                            e,
                            LedgerError::Internal(_)
                                | LedgerError::Unavailable(_)
                                | LedgerError::Unconfirmed(_)
                                | LedgerError::Bug(_)
                        ) =>
                {
                    let _ = job.reply.send(Err(e));
                }
                Err(e) => {
                    tracing::error!(error = %e, "batch failed; rolling back");
                    // The command gets its own error (a bug stays a bug); the others in the
                    // batch run again without it, or (the journal cannot be written) hear of
                    // it as a failure to retry.
                    failure = Some(clone_err(&e));
                    let _ = job.reply.send(Err(e));
                }
            }
        }
        let t1 = Instant::now();
        let command_failed = failure.is_some();
        let commit = match failure {
            Some(e) => {
                drop(tx);
                Err(e)
            }
            None if done.is_empty() => {
                drop(tx);
                Ok(())
            }
            None => tx.commit().map_err(|e| {
                // An I/O error at the commit (not a full disk, which fails the write of the
                // frames): SQLite rolls back in memory, but the commit's frames may be on disk
                // whole, and a recovery after a crash would replay them. Not "nothing was
                // recorded", then: the terminal must retry with the same key.
                let io = e.sqlite_error_code() == Some(rusqlite::ErrorCode::SystemIoFailure);
                let e =
                    LedgerError::from(crate::journal::JournalError::sql("committing a batch")(e));
                if io {
                    LedgerError::Unconfirmed(e.to_string())
                } else {
                    e
                }
            }),
        };
        // Committed, but perhaps to a file the data directory lost meanwhile: not answered as
        // recorded. A retry with the same key finds the sale if the directory comes back.
        let commit = commit.and_then(|()| {
            if done.is_empty() {
                return Ok(());
            }
            recover::in_place(&self.journal, &self.stats)
                .map_err(|e| LedgerError::Unconfirmed(e.to_string()))
        });
        match commit {
            Ok(()) => {
                if erased {
                    // Before the new `seq` is announced: the uplink, woken by it, finds out.
                    self.stats.erasures.fetch_add(1, Ordering::SeqCst);
                }
                if !done.is_empty() {
                    self.journal.note_staged(last_seq);
                    self.stats.last_seq.store(last_seq, Ordering::Relaxed);
                    self.seq_tx.send_replace(last_seq);
                    self.stats.batches.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .commands
                        .fetch_add(done.len() as u64, Ordering::Relaxed);
                }
                // Only a commit that wrote events shows the journal takes writes: a batch whose
                // commands were all refused (an unknown product) wrote nothing, and must not
                // clear a full disk's `writable = false`.
                if last_seq >= first_seq {
                    self.stats.writable.store(true, Ordering::Relaxed);
                }
                // Sales, refunds and stock movements are answered now that they are durable,
                // and the cache is written while the answers travel; a request that comes after
                // an answer waits for that write (`Ledger::caught_up`). Everything else — HQ
                // data (acknowledged to the broker only once in the cache), staff changes that
                // end sessions, erasures, members' index changes — is answered after it.
                // Requests that come after this wait for the cache to show the batch (answered
                // now or after the write, or lost with a bug in between) — but not for HQ's
                // data, whose fsynced cache write (a whole resync's worth, perhaps) would hold
                // the tills: they read the cache as it was until then.
                if !durable {
                    self.stats.answered.answering(last_seq);
                }
                if early_answer(durable, erased, &done) {
                    for (reply, outcome) in done.drain(..) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                #[cfg(test)]
                if done
                    .iter()
                    .any(|(_, o)| matches!(o, Outcome::PanicAfterCommitForTest))
                    || self
                        .stats
                        .panic_in_cache_write
                        .swap(false, Ordering::Relaxed)
                {
                    panic!("a bug after the commit, for a test");
                }
                let t2 = Instant::now();
                let cache_failed = match pending.commit() {
                    Ok(()) => {
                        // The batch began caught up (`catch_up` above), so it is now too.
                        self.stats.cache_failing.store(false, Ordering::Relaxed);
                        false
                    }
                    Err(e) => {
                        self.stats.cache_failing.store(true, Ordering::Relaxed);
                        // The journal has the facts; the cache catches up before the next
                        // batch. HQ data is not in the journal: its sender hears of the
                        // failure and keeps the message for redelivery.
                        tracing::error!(error = %e, "cache write after commit failed; will replay");
                        self.behind(true);
                        true
                    }
                };
                // Written, or failed and to be replayed before the next batch (as before the
                // early answers: readers see the cache as it is until then).
                self.stats.answered.cached(last_seq);
                let t3 = Instant::now();
                self.stats.note_phases(t1 - t0, t2 - t1, t3 - t2);
                if erased {
                    // The data keys are gone from the database; their old pages go from the
                    // write-ahead logs too.
                    for c in &self.checkpointers {
                        c.scrub();
                    }
                }
                for (reply, outcome) in done {
                    if cache_failed && matches!(outcome, Outcome::Applied { .. }) {
                        let _ = reply.send(Err(LedgerError::Internal(
                            "the cache could not be written".into(),
                        )));
                        continue;
                    }
                    if let Outcome::Staff {
                        record,
                        revoke,
                        unlock,
                    } = &outcome
                    {
                        // Removed, demoted or given a new PIN: their open sessions end.
                        let no = record.staff_no.clone();
                        if *revoke
                            && let Err(e) =
                                self.cache.prune_sessions(Utc::now(), |s| s.staff_no != no)
                        {
                            tracing::error!(error = %e, "ending sessions of a changed staff member failed");
                        }
                        if *unlock
                            && let Err(e) = self
                                .cache
                                .clear_strikes(&crate::security::lockout_scope(&record.staff_no))
                        {
                            tracing::error!(error = %e, "unlocking a staff number failed");
                        }
                    }
                    if let Outcome::Applied {
                        rules,
                        removed_staff,
                        ..
                    } = &outcome
                    {
                        if let Some(r) = rules {
                            self.settings.set_rules((**r).clone());
                            tracing::info!("membership rules from HQ in force");
                        }
                        if !removed_staff.is_empty() {
                            let gone = |s: &Session| !removed_staff.contains(&s.staff_no);
                            if let Err(e) = self.cache.prune_sessions(Utc::now(), gone) {
                                tracing::error!(error = %e, "ending sessions of removed or changed staff failed");
                            }
                        }
                    }
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                if matches!(e, LedgerError::Unavailable(_) | LedgerError::Unconfirmed(_)) {
                    self.stats.writable.store(false, Ordering::Relaxed);
                }
                drop(pending);
                if let Err(e) = self.journal.resync_seq() {
                    tracing::error!(error = %e, "cannot re-read the journal position");
                }
                // The journal took the batch after all (see above): the cache replays it.
                if self.journal.last_seq() >= first_seq {
                    self.behind(true);
                }
                // A command failed the batch (a failed commit fails them all): the others run
                // again without it.
                if shared && command_failed && is_own(&e) {
                    let mut run_again: Vec<Job> = done
                        .into_iter()
                        .zip(copies)
                        .map(|((reply, _), (actor, cmd))| Job { actor, cmd, reply })
                        .collect();
                    run_again.append(&mut again);
                    tracing::warn!(
                        commands = run_again.len(),
                        "the rest of the batch runs again without the failed command"
                    );
                    return run_again;
                }
                tracing::error!(error = %e, commands = done.len(), "batch not recorded");
                for (reply, _) in done {
                    let _ = reply.send(Err(clone_err(&e)));
                }
            }
        }
        Vec::new()
    }
}

/// Whether a committed batch is answered before its cache write: only when every command in it
/// is a sale, refund or stock movement, and the batch holds no HQ data and erased nobody.
fn early_answer(durable: bool, erased: bool, done: &[(Reply, Outcome)]) -> bool {
    !durable
        && !erased
        && !done.is_empty()
        && done.iter().all(|(_, o)| {
            matches!(
                o,
                Outcome::Sale { .. } | Outcome::Refund { .. } | Outcome::Stock { .. }
            )
        })
}

/// Whether a batch's failure was a command's own (a bug, an unexpected error in its
/// execution), which the other commands need not share, rather than the journal's.
fn is_own(e: &LedgerError) -> bool {
    !matches!(
        e,
        LedgerError::Unavailable(_) | LedgerError::Unconfirmed(_) | LedgerError::ShuttingDown
    )
}

/// Errors are not `Clone` (they wrap sources); the batch's failure is told to every command.
fn clone_err(e: &LedgerError) -> LedgerError {
    match e {
        LedgerError::Unavailable(m) => LedgerError::Unavailable(m.clone()),
        LedgerError::Unconfirmed(m) => LedgerError::Unconfirmed(m.clone()),
        LedgerError::ShuttingDown => LedgerError::ShuttingDown,
        other => LedgerError::Internal(other.to_string()),
    }
}
