//! How the two sides of the ledger channel wait for each other: a short busy wait before
//! sleeping.
//!
//! A sale from one terminal crosses two threads: the HTTP task hands the command to the ledger
//! thread and waits for its answer, and the ledger thread waits for the next command. A thread
//! that sleeps (a futex, or tokio's park) lets its CPU go idle, and waking an idle CPU costs
//! tens of microseconds — on a virtual machine the idle vCPU is halted and the wake-up is an
//! exit to the host. At one terminal selling back to back that was a third of a sale's time,
//! beside an fsync of ~130 µs (docs/benchmarks.md). So each side first polls for a bounded
//! time, and only then sleeps:
//!
//! - the ledger thread, after a batch, yields its CPU once (to whatever the answer woke beside
//!   it) and then polls its channel for [`LEDGER_POLL`] — long enough for the same terminal's
//!   next request to come round (HTTP included), short enough that an idle store costs nothing;
//! - the HTTP task waiting for its answer polls (yielding to every other task between polls,
//!   so it never holds up the runtime) for [`ANSWER_POLL`], a little more than a commit on an
//!   SSD — but only while its command is the only one in flight. With several terminals
//!   selling, the ledger thread needs the CPU the polling would take, and the answers come in
//!   batches anyway.
//!
//! On slow storage (an SD card's fsync takes milliseconds) both polls end unanswered and the
//! threads sleep as before: the wait costs at most the poll's CPU time per command.
//!
//! A sale, refund or stock movement is answered as soon as the journal has it, and written to
//! the cache right after, while the answer travels ([`Answered`]). Whoever asks next must see
//! it: every HTTP request first waits, if need be, until the cache has caught up with every
//! answer already given — in practice never, as the cache write (~15 µs) is done before the
//! terminal's next request has arrived.
//!
//! An answer that a bug kept from being sent still arrives: [`Reply`] sends
//! [`LedgerError::Bug`] when it is dropped unsent while the ledger thread unwinds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::{LedgerError, Outcome};

/// How long the ledger thread polls its channel after a batch before it sleeps.
pub(super) const LEDGER_POLL: Duration = Duration::from_micros(200);

/// How long a lone command's task polls for its answer before it sleeps.
pub(super) const ANSWER_POLL: Duration = Duration::from_micros(400);

/// The next message for the ledger thread; `None` once every sender is gone.
///
/// When nothing is waiting, the thread first yields its CPU once, then polls. Whatever the
/// answer just sent woke on the ledger's own CPU (the bench's terminal client; on a box, an
/// HTTP worker that will carry the terminal's next request) must run before that request can
/// come; without the yield it waits for the poll to end or for the scheduler to preempt it.
/// Yielding at every turn of the poll was measured worse: each yield pushes the thread's
/// deadline back a slice, so one spinning neighbour then keeps it off its CPU
/// (docs/benchmarks.md).
pub(super) fn next_message<T>(rx: &mut mpsc::Receiver<T>, poll: Duration) -> Option<T> {
    let until = Instant::now() + poll;
    let mut yielded = false;
    loop {
        match rx.try_recv() {
            Ok(msg) => return Some(msg),
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
            Err(mpsc::error::TryRecvError::Empty) if !yielded => {
                std::thread::yield_now();
                yielded = true;
            }
            Err(mpsc::error::TryRecvError::Empty) if Instant::now() < until => {
                std::hint::spin_loop();
            }
            Err(mpsc::error::TryRecvError::Empty) => return rx.blocking_recv(),
        }
    }
}

/// Commands sent to the ledger thread and not yet answered.
#[derive(Clone, Default)]
pub(super) struct InFlight(Arc<AtomicUsize>);

/// One command in flight, counted until dropped (answered, or its task cancelled).
pub(super) struct Counted<'a>(&'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl InFlight {
    /// Counts a command until the returned guard is dropped.
    pub(super) fn count(&self) -> Counted<'_> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Counted(&self.0)
    }

    fn alone(&self) -> bool {
        self.0.load(Ordering::Relaxed) <= 1
    }

    /// The answer to a command: polled for up to `poll` while it is the only one in flight,
    /// then awaited. `None` when the ledger thread dropped the command unanswered.
    pub(super) async fn answer<T>(
        &self,
        mut rx: oneshot::Receiver<T>,
        poll: Duration,
    ) -> Option<T> {
        let until = Instant::now() + poll;
        while self.alone() && Instant::now() < until {
            match rx.try_recv() {
                Ok(v) => return Some(v),
                // A receiver that saw the sender go must not be awaited.
                Err(oneshot::error::TryRecvError::Closed) => return None,
                Err(oneshot::error::TryRecvError::Empty) => tokio::task::yield_now().await,
            }
        }
        rx.await.ok()
    }
}

/// Where a command's answer goes. Dropped unanswered while the ledger thread unwinds from a
/// bug (see the worker's `guarded_batch`), it answers [`LedgerError::Bug`] itself: the caller
/// then knows the failure is no storage hiccup (HQ's message is not sent again for it).
pub(super) struct Reply(Option<oneshot::Sender<Result<Outcome, LedgerError>>>);

impl Reply {
    pub(super) fn new(tx: oneshot::Sender<Result<Outcome, LedgerError>>) -> Reply {
        Reply(Some(tx))
    }

    /// Sends the answer; gives it back when nobody waits for it any more.
    pub(super) fn send(
        mut self,
        answer: Result<Outcome, LedgerError>,
    ) -> Result<(), Result<Outcome, LedgerError>> {
        match self.0.take() {
            Some(tx) => tx.send(answer),
            None => Err(answer),
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take()
            && std::thread::panicking()
        {
            let _ = tx.send(Err(LedgerError::Bug(
                "the batch this command was in broke off on a bug".into(),
            )));
        }
    }
}

/// How long a request waits at most for the cache to catch up with the answers given (only a
/// ledger thread stuck in the middle of a cache write makes it wait that long).
pub(super) const CATCH_UP: Duration = Duration::from_secs(1);

/// How long a request polls for the cache write before it sleeps on it.
const CATCH_UP_POLL: Duration = Duration::from_micros(100);

/// The journal `seq` answered before its cache write, and the `seq` the cache has been written
/// up to (see the module notes).
#[derive(Debug, Default)]
pub struct Answered {
    answered: AtomicU64,
    cached: AtomicU64,
    written: tokio::sync::Notify,
}

impl Answered {
    /// The ledger is about to answer commands up to `seq` that the cache does not show yet.
    pub(super) fn answering(&self, seq: u64) {
        self.answered.fetch_max(seq, Ordering::Release);
    }

    /// The ledger has written (or failed to write, and will replay) the cache up to `seq`.
    pub(super) fn cached(&self, seq: u64) {
        self.cached.fetch_max(seq, Ordering::Release);
        self.written.notify_waiters();
    }

    /// The `seq` answered ahead of the cache write, and the one the cache is written up to.
    #[cfg(test)]
    pub(super) fn positions(&self) -> (u64, u64) {
        (
            self.answered.load(Ordering::Acquire),
            self.cached.load(Ordering::Acquire),
        )
    }

    /// Returns once the cache shows every command answered before the call, or after `limit`
    /// (false then).
    pub(super) async fn caught_up(&self, limit: Duration) -> bool {
        let target = self.answered.load(Ordering::Acquire);
        let is_written = || self.cached.load(Ordering::Acquire) >= target;
        if is_written() {
            return true;
        }
        let until = tokio::time::Instant::now() + limit;
        // The write takes ~15 µs: polled for first, like an answer, rather than slept on.
        let poll_until = Instant::now() + CATCH_UP_POLL.min(limit);
        while Instant::now() < poll_until {
            tokio::task::yield_now().await;
            if is_written() {
                return true;
            }
        }
        loop {
            // Made before the check: a write between the check and the wait still wakes it.
            let written = self.written.notified();
            if is_written() {
                return true;
            }
            if tokio::time::timeout_at(until, written).await.is_err() {
                return is_written();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_after_an_early_answer_waits_for_the_cache_write() {
        let a = Arc::new(Answered::default());
        // Nothing answered ahead of the cache: no wait.
        assert!(a.caught_up(Duration::ZERO).await);
        a.cached(3);
        a.answering(5);
        // The cache is behind what was answered: the request waits until it is written.
        let waiting = tokio::spawn({
            let a = a.clone();
            async move { a.caught_up(CATCH_UP).await }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            !waiting.is_finished(),
            "a request went ahead of the cache write"
        );
        a.cached(4);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            !waiting.is_finished(),
            "a request went ahead of the cache write"
        );
        a.cached(5);
        assert!(waiting.await.unwrap_or(false));
        // A ledger stuck mid-write holds a request up to the limit, not forever.
        a.answering(6);
        assert!(!a.caught_up(Duration::from_millis(20)).await);
    }

    #[test]
    fn the_ledger_side_takes_a_message_sent_while_it_polls_and_one_sent_after() {
        let (tx, mut rx) = mpsc::channel(4);
        let sender = std::thread::spawn(move || {
            tx.blocking_send(1).ok();
            std::thread::sleep(Duration::from_millis(20));
            tx.blocking_send(2).ok();
        });
        assert_eq!(next_message(&mut rx, LEDGER_POLL), Some(1));
        // Long after the poll ended: the thread sleeps, and wakes for it.
        assert_eq!(next_message(&mut rx, LEDGER_POLL), Some(2));
        sender.join().ok();
        assert_eq!(next_message(&mut rx, LEDGER_POLL), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_answer_arrives_whether_it_comes_during_the_poll_or_after_it() {
        let in_flight = InFlight::default();
        for delay in [Duration::ZERO, Duration::from_millis(30)] {
            let _counted = in_flight.count();
            let (tx, rx) = oneshot::channel();
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                tx.send(7).ok();
            });
            assert_eq!(in_flight.answer(rx, ANSWER_POLL).await, Some(7));
        }
        // Dropped unanswered, before the poll and during it.
        let _counted = in_flight.count();
        let (tx, rx) = oneshot::channel::<u8>();
        drop(tx);
        assert_eq!(in_flight.answer(rx, ANSWER_POLL).await, None);
        let (tx, rx) = oneshot::channel::<u8>();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_micros(100));
            drop(tx);
        });
        assert_eq!(in_flight.answer(rx, ANSWER_POLL).await, None);
    }

    #[test]
    fn commands_are_counted_until_answered_or_dropped() {
        let in_flight = InFlight::default();
        let a = in_flight.count();
        assert!(in_flight.alone());
        let b = in_flight.count();
        assert!(!in_flight.alone(), "two commands in flight: nobody polls");
        drop(a);
        drop(b);
        assert_eq!(in_flight.0.load(Ordering::Relaxed), 0);
    }
}
