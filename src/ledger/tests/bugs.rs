//! A bug in a batch (a panic, made on purpose by the test-only commands and switches): the
//! ledger fails or drops that batch, brings the cache up to the journal and goes on — or, when
//! even that fails, stops.

use super::*;

/// Sends `cmds` so that they land in one batch (the ledger thread is held by a hook while they
/// queue) and returns their answers in order.
async fn in_one_batch(ledger: &Ledger, cmds: Vec<Command>) -> Vec<Result<Outcome, LedgerError>> {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (started, holding) = oneshot::channel::<()>();
    let hook = {
        let ledger = ledger.clone();
        tokio::spawn(async move {
            ledger
                .run_hook(Box::new(move |_| {
                    let _ = started.send(());
                    let _ = held.recv_timeout(std::time::Duration::from_secs(5));
                }))
                .await
        })
    };
    holding.await.unwrap();
    let tasks: Vec<_> = cmds
        .into_iter()
        .map(|cmd| {
            let ledger = ledger.clone();
            tokio::spawn(async move { ledger.execute(cashier(), cmd).await })
        })
        .collect();
    // Every command queued behind the hook before it lets go.
    let n = tasks.len();
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while ledger.tx.max_capacity() - ledger.tx.capacity() < n {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the commands queue behind the hook");
    release.send(()).unwrap();
    hook.await.unwrap();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn sale_cmd(key: &str) -> Command {
    Command::Sale {
        req: sale(None, 1, 0, 10_000),
        idem: idem(key),
    }
}

/// Sales recorded in the journal, and the stock of A the cache shows.
fn recorded(dir: &Path, cache: &Cache) -> (i64, i64) {
    let journal = rusqlite::Connection::open_with_flags(
        dir.join("journal.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let sales = journal
        .query_row(
            "SELECT COUNT(*) FROM events WHERE kind = 'sale.recorded'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap();
    (sales, cache.stock("A").unwrap().unwrap().on_hand)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bug_in_a_command_fails_it_alone_and_the_ledger_goes_on() {
    let (dir, ledger, thread, cache) = started();
    let answers = in_one_batch(
        &ledger,
        vec![
            sale_cmd("before-the-bug"),
            Command::PanicForTest { after_emit: true },
            sale_cmd("after-the-bug"),
        ],
    )
    .await;
    assert!(
        matches!(&answers[1], Err(LedgerError::Bug(m)) if m.contains("a bug, for a test")),
        "{:?}",
        answers[1]
    );
    // The batch rolled back and the sales beside the bug ran again without it: recorded, once
    // each, and answered as if nothing had happened.
    for a in [&answers[0], &answers[2]] {
        assert!(matches!(a, Ok(Outcome::Sale { .. })), "{a:?}");
    }
    assert_eq!(ledger.stats.failed_batches.load(Ordering::Relaxed), 1);
    assert!(ledger.is_running());
    ledger.caught_up().await;
    assert_eq!(recorded(dir.path(), &cache), (2, 98));
    // A terminal's retry with the same key finds its sale.
    for key in ["before-the-bug", "after-the-bug"] {
        ledger.execute(cashier(), sale_cmd(key)).await.unwrap();
    }
    ledger.caught_up().await;
    assert_eq!(recorded(dir.path(), &cache), (2, 98));
    drop(ledger);
    thread.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bugs_in_one_batch_fail_only_themselves() {
    let (dir, ledger, thread, cache) = started();
    let answers = in_one_batch(
        &ledger,
        vec![
            Command::PanicForTest { after_emit: false },
            sale_cmd("first"),
            Command::PanicForTest { after_emit: true },
            sale_cmd("second"),
            sale_cmd("third"),
        ],
    )
    .await;
    for i in [0, 2] {
        assert!(
            matches!(&answers[i], Err(LedgerError::Bug(_))),
            "{:?}",
            answers[i]
        );
    }
    for i in [1, 3, 4] {
        assert!(
            matches!(&answers[i], Ok(Outcome::Sale { .. })),
            "{:?}",
            answers[i]
        );
    }
    // The first bug failed the batch, the second its rerun; the third run committed.
    assert_eq!(ledger.stats.failed_batches.load(Ordering::Relaxed), 2);
    ledger.caught_up().await;
    assert_eq!(recorded(dir.path(), &cache), (3, 97));
    drop(ledger);
    thread.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bug_outside_a_command_drops_its_batch_and_the_ledger_goes_on() {
    let (dir, ledger, thread, cache) = started();
    ledger.execute(cashier(), sale_cmd("first")).await.unwrap();
    let answers = in_one_batch(
        &ledger,
        vec![
            sale_cmd("beside-the-bug"),
            Command::Session(SessionOp::PanicForTest),
        ],
    )
    .await;
    for a in &answers {
        assert!(matches!(a, Err(LedgerError::Bug(_))), "{a:?}");
    }
    assert!(ledger.is_running());
    // Requests are not held waiting for a cache write that will not come.
    tokio::time::timeout(std::time::Duration::from_millis(500), ledger.caught_up())
        .await
        .expect("caught up");
    ledger
        .execute(cashier(), sale_cmd("beside-the-bug"))
        .await
        .unwrap();
    // Counted by the time the next command is taken (the answers above came while the batch
    // was still unwinding).
    assert_eq!(ledger.stats.failed_batches.load(Ordering::Relaxed), 1);
    ledger.caught_up().await;
    assert_eq!(recorded(dir.path(), &cache), (2, 98));
    drop(ledger);
    thread.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bug_after_the_commit_has_the_cache_caught_up_at_once() {
    let (dir, ledger, thread, cache) = started();
    let answers = in_one_batch(
        &ledger,
        vec![sale_cmd("durable"), Command::PanicAfterCommitForTest],
    )
    .await;
    // Recorded, but its answer was lost with the batch.
    assert!(
        matches!(&answers[0], Err(LedgerError::Bug(_))),
        "{:?}",
        answers[0]
    );
    // The cache shows the sale without waiting for another batch.
    ledger.caught_up().await;
    assert_eq!(recorded(dir.path(), &cache), (1, 99));
    // The terminal's retry finds the sale; nothing is sold twice.
    match ledger.execute(cashier(), sale_cmd("durable")).await {
        Ok(Outcome::Sale { replayed, .. }) => assert!(replayed),
        other => panic!("{other:?}"),
    }
    ledger.execute(cashier(), sale_cmd("next")).await.unwrap();
    ledger.caught_up().await;
    assert_eq!(recorded(dir.path(), &cache), (2, 98));
    drop(ledger);
    thread.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bug_in_the_cache_write_of_answered_sales_holds_no_reader() {
    let (dir, ledger, thread, cache) = started();
    ledger
        .stats
        .panic_in_cache_write
        .store(true, Ordering::Relaxed);
    // A lone sale is answered before its cache write, which then breaks off.
    ledger
        .execute(cashier(), sale_cmd("answered"))
        .await
        .unwrap();
    // The next request neither waits out its limit nor misses the sale.
    tokio::time::timeout(std::time::Duration::from_millis(500), ledger.caught_up())
        .await
        .expect("caught up at once");
    assert_eq!(recorded(dir.path(), &cache), (1, 99));
    assert_eq!(ledger.stats.failed_batches.load(Ordering::Relaxed), 1);
    drop(ledger);
    thread.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hq_data_that_hits_a_bug_is_told_so_and_ends_the_sessions() {
    let (_dir, ledger, thread, cache) = started();
    let now = chrono::Utc::now();
    let token_hash = [7u8; 32];
    let session = Session {
        staff_no: "1001".into(),
        name: "收银员".into(),
        role: Role::Cashier,
        terminal_id: "pos-1".into(),
        created_at: now,
        expires_at: now + chrono::Duration::hours(8),
        grant: None,
    };
    ledger
        .execute(
            cashier(),
            Command::Session(SessionOp::Open {
                token_hash,
                session,
            }),
        )
        .await
        .unwrap();
    assert!(cache.session(&token_hash, now).unwrap().is_some());
    let staff = crate::domain::sync::StaffRecord {
        staff_no: "1001".into(),
        name: "收银员".into(),
        role: Role::Cashier,
        pin_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
        active: false,
        version: 5,
        hq_pin_digest: None,
    };
    ledger
        .stats
        .panic_in_cache_write
        .store(true, Ordering::Relaxed);
    let answer = ledger
        .execute(
            cashier(),
            Command::ApplyHq(Box::new(crate::domain::sync::HqUpdate::Staff(vec![staff]))),
        )
        .await;
    // A bug, not a storage failure: the uplink acknowledges and reports the message.
    assert!(matches!(&answer, Err(LedgerError::Bug(_))), "{answer:?}");
    // The writer goes on (its next command comes after the clean-up)...
    assert!(ledger.is_running());
    ledger.execute(cashier(), sale_cmd("after")).await.unwrap();
    // ... and the staff change may have been meant to end the session; the cache write is
    // lost with the bug, so every session ended.
    assert!(cache.session(&token_hash, now).unwrap().is_none());
    // The removal's journal copy was committed before the bug: the cache, caught up from
    // the journal, holds it (inactive, without HQ's hash).
    let held = cache.staff("1001").unwrap();
    assert!(
        held.as_ref()
            .is_some_and(|s| !s.active && s.pin_hash.is_empty()),
        "{held:?}"
    );
    drop(ledger);
    thread.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_that_cannot_be_replayed_after_a_bug_stops_the_writer() {
    let (dir, ledger, thread, cache) = started();
    ledger
        .stats
        .panic_in_cache_write
        .store(true, Ordering::Relaxed);
    ledger.stats.panic_in_replay.store(true, Ordering::Relaxed);
    // Durable and answered; the cache write and the replay after it both break off.
    ledger.execute(cashier(), sale_cmd("last")).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while ledger.is_running() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the writer stops rather than failing every batch from now on");
    assert!(matches!(
        ledger.execute(cashier(), sale_cmd("refused")).await,
        Err(LedgerError::ShuttingDown)
    ));
    // It stopped, it did not die: the thread ends normally.
    thread.join().unwrap();
    assert_eq!(recorded(dir.path(), &cache).0, 1);
}
