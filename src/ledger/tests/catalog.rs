//! Products and stock on the ledger thread: a receipt onto negative stock, HQ's price change
//! that came before its product, HQ's count across a cache rebuild.

use super::*;

/// Stock below zero (HQ's count, here) takes a receipt of any size; only a movement that takes
/// stock out is refused for being short.
#[tokio::test]
async fn a_receipt_onto_negative_stock_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, cache, writer, _, mut c) = open(dir.path());
    c.store.allow_negative_stock = false;
    let settings = Arc::new(StoreSettings::from_config(&c));
    let (ledger, thread) = Ledger::start(journal, writer, settings, &c.products, 30).unwrap();
    let manager = Actor {
        role: Role::Manager,
        ..cashier()
    };
    let count = crate::domain::sync::StockCount {
        sku: "A".into(),
        on_hand: -10,
        safety_stock: None,
        version: 1,
    };
    ledger
        .execute(
            manager.clone(),
            Command::ApplyHq(Box::new(crate::domain::sync::HqUpdate::Stock(vec![count]))),
        )
        .await
        .unwrap();
    let movement = |delta, reason| Command::MoveStock {
        req: StockMovement {
            sku: "A".into(),
            delta,
            reason,
            note: String::new(),
        },
        idem: None,
    };
    ledger
        .execute(manager.clone(), movement(5, StockReason::Receive))
        .await
        .unwrap();
    let short = ledger
        .execute(manager, movement(-1, StockReason::Damage))
        .await;
    assert!(
        matches!(&short, Err(e) if e.to_string().contains("only -5 of A")),
        "{short:?}"
    );
    drop(ledger);
    thread.join().unwrap();
    assert_eq!(cache.stock("A").unwrap().unwrap().on_hand, -5);
}

/// HQ's price change for a product the store does not know yet waits for the product: an
/// older product push then takes the newer price; a newer one keeps its own.
#[tokio::test]
async fn a_price_before_its_product_waits_for_it() {
    use crate::domain::sync::{HqUpdate, PriceUpdate};
    let dir = tempfile::tempdir().unwrap();
    let (journal, cache, writer, settings, c) = open(dir.path());
    let (ledger, thread) = Ledger::start(journal, writer, settings, &c.products, 30).unwrap();
    let apply = |u: HqUpdate| ledger.execute(hq(), Command::ApplyHq(Box::new(u)));
    let price = |sku: &str, price, version| PriceUpdate {
        sku: sku.into(),
        price,
        promo: None,
        version,
    };
    let product = |sku: &str, price, version| crate::domain::catalog::Product {
        version,
        ..crate::domain::pricing::tests::product(sku, price)
    };
    let Outcome::Applied {
        unknown_products, ..
    } = apply(HqUpdate::Prices(vec![
        price("N1", 450, 6),
        price("N2", 450, 6),
    ]))
    .await
    .unwrap()
    else {
        panic!("applied")
    };
    assert_eq!(unknown_products, vec!["N1".to_string(), "N2".to_string()]);
    apply(HqUpdate::Products(vec![
        product("N1", 500, 5),
        product("N2", 700, 7),
    ]))
    .await
    .unwrap();
    drop(ledger);
    thread.join().unwrap();
    let n1 = cache.product("N1").unwrap().unwrap();
    assert_eq!((n1.price, n1.version, n1.name.as_str()), (450, 6, "商品N1"));
    let n2 = cache.product("N2").unwrap().unwrap();
    assert_eq!((n2.price, n2.version), (700, 7));
}

/// HQ's count is in the journal: the sales after it count on top of it, a cache rebuilt from
/// the journal holds it, and the same count sent again (HQ's answer to the rebuild's resync)
/// is the version already held, not a reset that undoes the sales since.
#[tokio::test]
async fn hq_stock_count_survives_a_cache_rebuild_and_its_resend() {
    let dir = tempfile::tempdir().unwrap();
    let count = |on_hand, version| {
        Command::ApplyHq(Box::new(crate::domain::sync::HqUpdate::Stock(vec![
            crate::domain::sync::StockCount {
                sku: "A".into(),
                on_hand,
                safety_stock: Some(5),
                version,
            },
        ])))
    };
    {
        let (journal, cache, writer, settings, c) = open(dir.path());
        let (ledger, thread) = Ledger::start(journal, writer, settings, &c.products, 30).unwrap();
        ledger.execute(hq(), count(50, 7)).await.unwrap();
        ledger
            .execute(
                cashier(),
                Command::Sale {
                    req: sale(None, 3, 0, 30_000),
                    idem: idem("after-the-count"),
                },
            )
            .await
            .unwrap();
        ledger.caught_up().await;
        let level = cache.stock("A").unwrap().unwrap();
        assert_eq!((level.on_hand, level.safety_stock), (47, 5));
        drop(ledger);
        thread.join().unwrap();
    }
    // The cache is lost; the journal rebuilds it.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("cache.sqlite3{suffix}")));
    }
    let (journal, cache, writer, settings, c) = open(dir.path());
    let (ledger, thread) = Ledger::start(journal, writer, settings, &c.products, 30).unwrap();
    ledger.caught_up().await;
    let level = cache.stock("A").unwrap().unwrap();
    assert_eq!(
        (level.on_hand, level.safety_stock, level.version),
        (47, 5, 7),
        "after the rebuild"
    );
    // HQ sends its count again: already held.
    match ledger.execute(hq(), count(50, 7)).await.unwrap() {
        Outcome::Applied {
            applied, ignored, ..
        } => assert_eq!((applied, ignored), (0, 1)),
        o => panic!("{o:?}"),
    }
    ledger.caught_up().await;
    assert_eq!(cache.stock("A").unwrap().unwrap().on_hand, 47);
    // A new count takes effect, as the movement the books were off by.
    ledger.execute(hq(), count(40, 8)).await.unwrap();
    ledger.caught_up().await;
    assert_eq!(cache.stock("A").unwrap().unwrap().on_hand, 40);
    drop(ledger);
    thread.join().unwrap();
    let journal = Journal::open(dir.path(), "sh-001").unwrap();
    let moves: Vec<serde_json::Value> = journal
        .conn()
        .prepare("SELECT data FROM events WHERE kind = 'stock.moved' ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|d| serde_json::from_str(&d.unwrap()).unwrap())
        .collect();
    let counts: Vec<(i64, i64, u64)> = moves
        .iter()
        .filter(|m| m["hq_count"].is_object())
        .map(|m| {
            (
                m["delta"].as_i64().unwrap(),
                m["on_hand_after"].as_i64().unwrap(),
                m["hq_count"]["version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts, [(50 - 100, 50, 7), (-7, 40, 8)], "{moves:?}");
}
