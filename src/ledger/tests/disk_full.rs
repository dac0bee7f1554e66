//! A full disk under the journal: a sale refused whole, and the ledger's view of whether the
//! journal takes writes (`/healthz` reads it).

use super::*;

#[tokio::test]
async fn a_full_disk_refuses_the_sale_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, cache, writer, settings, c) = open(dir.path());
    // Cap the journal file at its current size: the next commit meets SQLITE_FULL, as on a
    // full disk.
    let pages: i64 = journal
        .conn()
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let (ledger, thread) = Ledger::start(journal, writer, settings, &c.products, 30).unwrap();
    let m = register(&ledger, "13800000003").await;
    let before = cache.member(&m.id).unwrap().unwrap();
    let stock_before = cache.stock("A").unwrap().unwrap();
    let last = ledger.stats.last_seq.load(Ordering::Relaxed);
    ledger.limit_journal_pages_for_test(pages).await;

    let mut refused = 0;
    let mut ok = 0;
    for i in 0..50 {
        match ledger
            .execute(
                cashier(),
                Command::Sale {
                    req: sale(Some(&m.id), 1, 0, 10_000),
                    idem: idem(&format!("full-{i}")),
                },
            )
            .await
        {
            Err(LedgerError::Unavailable(_)) => refused += 1,
            Ok(_) => ok += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused > 0, "the capped journal never filled up");
    assert!(!ledger.stats.writable.load(Ordering::Relaxed));
    assert!(ledger.stats.last_seq.load(Ordering::Relaxed) >= last + ok);
    // Whatever was refused left no trace in the cache.
    let member = cache.member(&m.id).unwrap().unwrap();
    assert_eq!(member.visits() - before.visits(), ok);
    let stock = cache.stock("A").unwrap().unwrap();
    assert_eq!(
        stock_before.on_hand - stock.on_hand,
        i64::try_from(ok).unwrap()
    );
    drop(ledger);
    thread.join().unwrap();
    // And nothing of it reached the journal.
    let journal = Journal::open(dir.path(), "sh-001").unwrap();
    let sales: i64 = journal
        .conn()
        .query_row(
            "SELECT COUNT(*) FROM events WHERE kind = 'sale.recorded'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(sales, i64::try_from(ok).unwrap());
}

/// A command refused before it writes anything (an unknown product) commits an empty batch: it
/// says nothing about the disk, and must not make a full journal look writable to `/healthz`.
#[tokio::test]
async fn a_refused_command_does_not_make_a_full_journal_look_writable() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _cache, writer, settings, c) = open(dir.path());
    let pages: i64 = journal
        .conn()
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let (ledger, thread) = Ledger::start(journal, writer, settings, &c.products, 30).unwrap();
    ledger.limit_journal_pages_for_test(pages).await;
    let mut full = false;
    for i in 0..50 {
        let cmd = Command::Sale {
            req: sale(None, 1, 0, 10_000),
            idem: idem(&format!("fill-{i}")),
        };
        if let Err(LedgerError::Unavailable(_)) = ledger.execute(cashier(), cmd).await {
            full = true;
            break;
        }
    }
    assert!(full, "the capped journal never filled up");
    // A refusal is answered before its batch ends: wait for the batch.
    ledger.ping().await.unwrap();
    assert!(!ledger.stats.writable.load(Ordering::Relaxed));
    let mut unknown = sale(None, 1, 0, 10_000);
    unknown.lines[0].sku = "NO-SUCH-SKU".into();
    let refused = ledger
        .execute(
            cashier(),
            Command::Sale {
                req: unknown,
                idem: idem("unknown"),
            },
        )
        .await;
    assert!(
        matches!(refused, Err(LedgerError::NotFound { .. })),
        "{refused:?}"
    );
    ledger.ping().await.unwrap();
    assert!(
        !ledger.stats.writable.load(Ordering::Relaxed),
        "the journal is still full"
    );
    drop(ledger);
    thread.join().unwrap();
}
