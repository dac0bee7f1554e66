//! The ledger: the single writer of the store (design section 1, "write path of every store
//! fact").
//!
//! One OS thread owns the journal's write connection and is the only writer of the cache's
//! projections. Terminals' commands reach it over a bounded channel. It takes every command that
//! is waiting (group commit), and for each one: computes in `domain`, appends the events to one
//! SQLite transaction, and applies them to a [`Pending`](crate::cache::Pending) overlay so the
//! next command in the batch sees them. Then it commits — the fsync that makes the batch
//! durable — writes the overlay to the cache, and answers: a batch of sales, refunds and stock
//! movements just before the cache write, every other batch after it (a request that comes
//! after an answer waits for the write, [`Ledger::caught_up`]). A failed commit answers every
//! command of the batch with an error and leaves no trace; a business refusal (not enough
//! points) is answered at once and never touches the journal. Both sides of the channel poll
//! briefly before they sleep ([`wait`]): a lone terminal's sale is not slowed by two wake-ups.

pub mod cart;
mod command;
mod error;
mod execute;
pub(crate) use execute::auto_coupon;
pub(crate) use execute::import as execute_import;
pub mod requests;
mod settings;
mod wait;
use wait::Reply;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};

use crate::cache::{CacheWriter, project};
use crate::config::SeedProduct;
use crate::journal::{Journal, store};
use crate::pii::PiiCodec;

pub use error::LedgerError;
pub(crate) use error::panic_message;
pub use settings::StoreSettings;

pub use command::{Actor, Command, Idem, Outcome, SessionOp};

/// What travels to the ledger thread.
#[allow(clippy::large_enum_variant)]
enum Msg {
    /// A command.
    Job(Job),
    /// A liveness probe: answered once the thread has worked through the batch it arrived
    /// with. Touches neither the journal nor the cache.
    Ping(oneshot::Sender<()>),
    /// Leave the cache's bulk mode (see `cache::CacheWriter::begin_bulk`): write the index
    /// entries it deferred, after the batches queued before. Answers how many.
    FinishBulk(oneshot::Sender<Result<usize, LedgerError>>),
    /// Test only: run a closure on the journal connection (a full disk, a panic).
    #[cfg(test)]
    Hook(
        Box<dyn FnOnce(&rusqlite::Connection) + Send>,
        oneshot::Sender<()>,
    ),
}

struct Job {
    actor: Actor,
    cmd: Command,
    reply: Reply,
}

/// Counters the health endpoint reads.
#[derive(Debug, Default)]
pub struct LedgerStats {
    /// Highest committed `seq`.
    pub last_seq: AtomicU64,
    /// Batches committed.
    pub batches: AtomicU64,
    /// Commands committed.
    pub commands: AtomicU64,
    /// Batches that failed to commit.
    pub failed_batches: AtomicU64,
    /// Whether the last batch committed (false while the disk refuses writes).
    pub writable: AtomicBool,
    /// Whether the journal's file is no longer where the ledger opened it (the data directory
    /// removed or moved while the daemon runs): commands are refused, `writable` is false.
    pub journal_misplaced: AtomicBool,
    /// Batches committed that erased a member's personal data: a reader that opened personal
    /// data before this moved must not hand it on (the uplink reads events ahead).
    pub erasures: AtomicU64,
    /// Whether the cache is behind the journal: a cache write after a commit failed (a full
    /// disk) and the catch-up has not succeeded yet. Commands are refused meanwhile.
    pub cache_behind: AtomicBool,
    /// Whether the cache could not be written the last time it was (locked by another
    /// process, a disk error): sales are refused, or the cache falls behind the journal.
    pub cache_failing: AtomicBool,
    /// Microseconds spent in committed batches: executing the commands (computing, appending
    /// to the journal's transaction, projecting into the overlay), committing the journal
    /// (the fsync), and writing the cache. Divided by `batches`, the cost of a batch by phase.
    /// (A batch of sales is answered between the last two.)
    pub phase_micros: [AtomicU64; 3],
    /// What was answered ahead of the cache write, and how far the cache is written.
    answered: wait::Answered,
    /// Makes the next batch's cache write panic, as a bug would.
    #[cfg(test)]
    panic_in_cache_write: std::sync::atomic::AtomicBool,
    /// Makes the replay after a caught panic panic too.
    #[cfg(test)]
    panic_in_replay: std::sync::atomic::AtomicBool,
}

impl LedgerStats {
    fn note_phases(&self, execute: Duration, commit: Duration, cache: Duration) {
        for (total, d) in self.phase_micros.iter().zip([execute, commit, cache]) {
            total.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        }
    }
}

/// What importing members did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// New members.
    pub added: u64,
    /// Known members given missing fields or tags.
    pub merged: u64,
    /// Known members the row added nothing to.
    pub unchanged: u64,
    /// Rows refused: line and reason.
    pub rejected: Vec<(u64, String)>,
}

/// Handle to the ledger thread. Cheap to clone; the thread ends when every handle is dropped.
#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::Sender<Msg>,
    /// The last committed `seq`, for tasks that wait for new events (the uplink).
    seq: tokio::sync::watch::Receiver<u64>,
    /// Store settings and rules, shared with the API.
    pub settings: Arc<StoreSettings>,
    /// Health counters.
    pub stats: Arc<LedgerStats>,
    /// Commands waiting for their answer (a lone one polls for it, see [`wait`]).
    in_flight: wait::InFlight,
}

/// Most commands committed in one transaction.
const MAX_BATCH: usize = 256;
/// Members of a campaign one batch checks and issues coupons to (see [`Ledger::start_campaign`]).
const CAMPAIGN_PART: usize = 256;
/// Journal events replayed per cache write at start-up.
const REPLAY_CHUNK: usize = if cfg!(test) { 10 } else { 2_000 };

/// Events behind from which the replay at start-up defers its index entries (`cache::bulk`).
const BULK_REPLAY: u64 = if cfg!(test) { 20 } else { 20_000 };

impl Ledger {
    /// Replays the journal into the cache, seeds products, and starts the ledger thread.
    pub fn start(
        journal: Journal,
        cache: CacheWriter,
        settings: Arc<StoreSettings>,
        seeds: &[SeedProduct],
        idempotency_days: u32,
    ) -> Result<(Ledger, JoinHandle<()>), LedgerError> {
        Ledger::start_unless(
            journal,
            cache,
            settings,
            seeds,
            idempotency_days,
            &|_, _| false,
        )
    }

    /// [`Ledger::start`], given up with [`LedgerError::ShuttingDown`] between two chunks of the
    /// replay once `between` says so: a daemon told to stop while it rebuilds its cache
    /// (minutes for a large journal on an SD card) stops then, not after the rebuild — systemd
    /// would kill it first. What was replayed is committed, and the next start goes on from
    /// there. `between` is called after each chunk with the `seq` replayed to and the
    /// journal's last (the daemon tells systemd it is getting on).
    pub fn start_unless(
        mut journal: Journal,
        cache: CacheWriter,
        settings: Arc<StoreSettings>,
        seeds: &[SeedProduct],
        idempotency_days: u32,
        between: &dyn Fn(u64, u64) -> bool,
    ) -> Result<(Ledger, JoinHandle<()>), LedgerError> {
        // A long replay (a rebuilt cache) writes its index entries in bulk, sorted, at the end.
        let bulk = !cache.in_bulk()
            && journal.last_seq().saturating_sub(cache.applied_seq()?) >= BULK_REPLAY;
        if bulk {
            cache.begin_bulk()?;
        }
        let replayed = replay_unless(&journal, &cache, &settings, between);
        if bulk {
            // Also when stopped half-way (systemd's start timeout, which a store's years of
            // journal can outlast on an SD card): with the deferred entries written, the next
            // start goes on from the `seq` reached; left deferred, the cache would be rebuilt
            // from the first event again, and again at every start. (The entries held are of
            // committed chunks only.)
            let finished = cache.finish_bulk();
            match (&replayed, finished) {
                (Ok(_), finished) => {
                    finished?;
                }
                (Err(_), Err(e)) => {
                    tracing::warn!(error = %e, "writing the deferred index entries after a replay that did not finish failed");
                }
                (Err(_), Ok(_)) => {}
            }
        }
        let replayed = replayed?;
        if replayed > 0 {
            tracing::info!(events = replayed, "replayed journal events into the cache");
        }
        purge_idempotency(&mut journal, idempotency_days);
        let stats = Arc::new(LedgerStats::default());
        stats.writable.store(true, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(1024);
        let (seq_tx, seq_rx) = tokio::sync::watch::channel(0);
        let mut worker = worker::Worker {
            seq_tx,
            journal,
            cache,
            settings: settings.clone(),
            stats: stats.clone(),
            idempotency_days,
            last_purge: Instant::now(),
            last_probe: Instant::now(),
            needs_replay: false,
            checkpointers: Vec::new(),
            broken: false,
        };
        worker.seed(seeds)?;
        stats
            .last_seq
            .store(worker.journal.last_seq(), Ordering::Relaxed);
        worker.seq_tx.send_replace(worker.journal.last_seq());
        worker.checkpointers = vec![crate::journal::Checkpointer::start(worker.journal.dir()), {
            let readers = worker.cache.reader();
            crate::journal::Checkpointer::start_file_with(
                worker.journal.dir().join(crate::cache::FILE_NAME),
                Box::new(move |moment| readers.checkpoint_moment(moment)),
            )
        }];
        let handle = std::thread::Builder::new()
            .name("ledger".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| LedgerError::Internal(format!("cannot start the ledger thread: {e}")))?;
        Ok((
            Ledger {
                tx,
                seq: seq_rx,
                settings,
                stats,
                in_flight: wait::InFlight::default(),
            },
            handle,
        ))
    }

    /// A receiver of the last committed `seq`, changed after every commit.
    pub fn subscribe_seq(&self) -> tokio::sync::watch::Receiver<u64> {
        self.seq.clone()
    }

    /// Returns once the cache shows every sale, refund and stock movement answered so far:
    /// those are answered as soon as the journal has them, and written to the cache just after
    /// (see [`wait`]). Every HTTP request calls this first, so a terminal that asks right after
    /// its sale sees the sale.
    pub async fn caught_up(&self) {
        // A ledger thread that died (a bug, not an input: it never panics on one) writes
        // nothing more; waiting for it would hold every request a second.
        if !self.is_running() {
            return;
        }
        if !self.stats.answered.caught_up(wait::CATCH_UP).await {
            tracing::warn!("the cache did not catch up with the answered sales within a second");
        }
    }

    /// Whether the ledger thread still takes commands (false once it stopped: after a panic,
    /// or when the journal could not be kept).
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Executes a command; the answer comes after the journal commit.
    pub async fn execute(&self, actor: Actor, cmd: Command) -> Result<Outcome, LedgerError> {
        let (reply, rx) = oneshot::channel();
        let _counted = self.in_flight.count();
        self.tx
            .send(Msg::Job(Job {
                actor,
                cmd,
                reply: Reply::new(reply),
            }))
            .await
            .map_err(|_| LedgerError::ShuttingDown)?;
        // Unanswered: the thread stopped, or a batch broke off on a bug (see the worker's
        // `guarded_batch`) and the thread goes on.
        self.in_flight
            .answer(rx, wait::ANSWER_POLL)
            .await
            .ok_or_else(|| {
                if self.is_running() {
                    LedgerError::Internal("the command was dropped unanswered".into())
                } else {
                    LedgerError::ShuttingDown
                }
            })?
    }

    /// Starts a campaign ([`Command::StartCampaign`]). One of more than [`CAMPAIGN_PART`]
    /// members has its members checked and its coupons issued that many at a time first
    /// ([`Command::IssueCampaignCoupons`]), each part a batch of its own with the tills' sales
    /// in between, and is then recorded: a campaign of 20,000 members issued as one batch held
    /// a sale for seconds. Broken off half-way (a failed write; `stop` cancelled, which ends it
    /// before the next part), the coupons issued stay, and the campaign started again issues
    /// the rest.
    pub async fn start_campaign(
        &self,
        actor: Actor,
        c: crate::domain::campaign::Campaign,
        stop: Option<&tokio_util::sync::CancellationToken>,
    ) -> Result<Outcome, LedgerError> {
        if c.treated.len() + c.control.len() <= CAMPAIGN_PART {
            let cmd = Command::StartCampaign {
                campaign: Box::new(c),
                issued: false,
            };
            return self.execute(actor, cmd).await;
        }
        let crate::domain::campaign::Campaign {
            spec,
            treated,
            control,
            started_by,
        } = c;
        let part = |treated: &[String], control: &[String]| crate::domain::campaign::Campaign {
            spec: spec.clone(),
            treated: treated.to_vec(),
            control: control.to_vec(),
            started_by: started_by.clone(),
        };
        let mut live = part(&[], &[]);
        let parts = treated
            .chunks(CAMPAIGN_PART)
            .map(|t| part(t, &[]))
            .chain(control.chunks(CAMPAIGN_PART).map(|k| part(&[], k)));
        for p in parts {
            if stop.is_some_and(|s| s.is_cancelled()) {
                return Err(LedgerError::ShuttingDown);
            }
            let cmd = Command::IssueCampaignCoupons {
                campaign: Box::new(p),
            };
            match self.execute(actor.clone(), cmd).await? {
                Outcome::Campaign(p) => {
                    live.treated.extend(p.treated);
                    live.control.extend(p.control);
                }
                other => {
                    return Err(LedgerError::Internal(format!(
                        "issuing a campaign's coupons answered {other:?}"
                    )));
                }
            }
        }
        let cmd = Command::StartCampaign {
            campaign: Box::new(live),
            issued: true,
        };
        self.execute(actor, cmd).await
    }

    /// Leaves the cache's bulk mode once the commands sent before have been executed: the
    /// member index entries it deferred are written. Returns how many.
    pub async fn finish_bulk(&self) -> Result<usize, LedgerError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::FinishBulk(reply))
            .await
            .map_err(|_| LedgerError::ShuttingDown)?;
        rx.await.map_err(|_| LedgerError::ShuttingDown)?
    }

    /// Returns once the ledger thread has taken every message queued before this one and
    /// finished the batch it belonged to: proof that the single writer is alive and not stuck
    /// (the systemd watchdog asks this). Writes nothing.
    pub async fn ping(&self) -> Result<(), LedgerError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Ping(reply))
            .await
            .map_err(|_| LedgerError::ShuttingDown)?;
        rx.await.map_err(|_| LedgerError::ShuttingDown)
    }
}

/// Replays journal events after the cache's applied `seq`. Returns how many were applied.
pub fn replay(
    journal: &Journal,
    cache: &CacheWriter,
    settings: &StoreSettings,
) -> Result<u64, LedgerError> {
    replay_unless(journal, cache, settings, &|_, _| false)
}

/// [`replay`], given up with [`LedgerError::ShuttingDown`] after a chunk once `stop` says so.
fn replay_unless(
    journal: &Journal,
    cache: &CacheWriter,
    settings: &StoreSettings,
    between: &dyn Fn(u64, u64) -> bool,
) -> Result<u64, LedgerError> {
    let codec = cache_codec(cache);
    let mut applied = cache.applied_seq()?;
    let mut count = 0;
    loop {
        let rows = store::events_after(journal.conn(), applied, REPLAY_CHUNK)?;
        if rows.is_empty() {
            break;
        }
        let mut pending = cache.pending(false)?;
        for row in &rows {
            let event = row.decode(journal.conn(), &settings.store_id, &codec)?;
            project(&mut pending, &event)?;
            applied = row.seq;
            count += 1;
        }
        pending.commit()?;
        if between(applied, journal.last_seq()) {
            return Err(LedgerError::ShuttingDown);
        }
    }
    Ok(count)
}

fn cache_codec(cache: &CacheWriter) -> PiiCodec {
    cache.codec().clone()
}

/// Forgets the oldest generation of idempotency keys when it is due (`store::idem_rotate`).
fn purge_idempotency(journal: &mut Journal, days: u32) {
    match store::idem_rotate(journal.conn(), Utc::now(), days) {
        Ok(None) => {}
        Ok(Some(n)) => tracing::info!(
            keys = n,
            "forgot a generation of idempotency keys; the newer one is kept {days} days more"
        ),
        Err(e) => tracing::warn!(error = %e, "could not forget old idempotency keys"),
    }
}

#[cfg(test)]
mod tests;
