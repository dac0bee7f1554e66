//! Level changes told to HQ (`level.changed`) from the level a member holds.

use super::*;

/// Where levels can drop, a 银卡 member whose spend has left the rolling window holds no level
/// at their next sale: the drop is a `level.changed` (silver → none) with that sale, not a
/// silent change HQ never hears of; the refund of that sale changes nothing more.
#[tokio::test]
async fn a_level_lapsed_with_the_spend_window_is_told_with_the_next_sale() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, cache, writer, settings, c) = open(dir.path());
    settings.set_rules(Rules {
        levels_can_drop: true,
        spend_window: crate::domain::rules::SpendWindow::Rolling365d,
        ..Rules::default()
    });
    let (ledger, thread) = Ledger::start(journal, writer, settings, &c.products, 30).unwrap();
    let m = register(&ledger, "13800000021").await;
    // HQ: ¥3,500 spent at another store three years ago, and the silver level it gave.
    let mut from_hq = cache.member(&m.id).unwrap().unwrap();
    from_hq.level = Some("silver".into());
    from_hq
        .counters
        .entry("sh-002".into())
        .or_default()
        .month_mut("2023-01")
        .spend = 350_000;
    from_hq.version += 1;
    ledger
        .execute(
            hq(),
            Command::ApplyHq(Box::new(crate::domain::sync::HqUpdate::Members(vec![
                from_hq,
            ]))),
        )
        .await
        .unwrap();
    let sold = match ledger
        .execute(
            cashier(),
            Command::Sale {
                req: sale(Some(&m.id), 1, 0, 10_000),
                idem: idem("after-the-window"),
            },
        )
        .await
        .unwrap()
    {
        Outcome::Sale { sale, .. } => sale,
        o => panic!("{o:?}"),
    };
    assert_eq!(sold.level, None, "no level at the sale's start");
    ledger
        .execute(
            cashier(),
            Command::Refund {
                sale_id: sold.id.clone(),
                req: crate::ledger::requests::RefundRequest {
                    lines: None,
                    reason: "退货".into(),
                    restock: true,
                },
                idem: None,
            },
        )
        .await
        .unwrap();
    drop(ledger);
    thread.join().unwrap();

    let journal = Journal::open(dir.path(), "sh-001").unwrap();
    let changes: Vec<serde_json::Value> = journal
        .conn()
        .prepare("SELECT data FROM events WHERE kind = 'level.changed' ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|p| serde_json::from_str(&p.unwrap()).unwrap())
        .collect();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["from"]["code"], "silver", "{changes:?}");
    assert_eq!(changes[0]["to"], serde_json::Value::Null, "{changes:?}");
    assert_eq!(changes[0]["cause_id"], sold.id.as_str(), "{changes:?}");
}
