//! Staff on the ledger thread: a login's lock-out attempt, counted before its PIN check and
//! taken back from its own count; the PIN upgrade's compare-and-set.

use super::*;

/// A login's PIN upgrade (HQ's unpeppered hash replaced by a peppered one) comes after the PIN
/// check; a change made in between — here HQ removing the staff member — must stand, not be
/// overwritten by the record as the login read it.
#[tokio::test]
async fn a_pin_upgrade_leaves_a_change_made_while_the_pin_was_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, cache, writer, settings, c) = open(dir.path());
    let (ledger, thread) = Ledger::start(journal, writer, settings, &c.products, 30).unwrap();
    let hq = hq();
    let record = |pin_hash: &str, active: bool, version: u64| crate::domain::sync::StaffRecord {
        staff_no: "5001".into(),
        name: "周芷若".into(),
        role: Role::Manager,
        pin_hash: pin_hash.into(),
        active,
        version,
        hq_pin_digest: None,
    };
    let from_hq = |r| Command::ApplyHq(Box::new(crate::domain::sync::HqUpdate::Staff(vec![r])));
    ledger
        .execute(hq.clone(), from_hq(record("hq-hash-1", true, 1)))
        .await
        .unwrap();
    let me = Actor {
        staff_no: "5001".into(),
        role: Role::Manager,
        terminal_id: "pos-1".into(),
    };
    let upgrade = |from: &str| Command::UpgradePin {
        staff_no: "5001".into(),
        from: from.into(),
        to: "peppered".into(),
    };

    // The record the PIN was checked against is still in force: upgraded.
    ledger
        .execute(me.clone(), upgrade("hq-hash-1"))
        .await
        .unwrap();
    let now = cache.staff("5001").unwrap().unwrap();
    assert_eq!((now.pin_hash.as_str(), now.active), ("peppered", true));
    assert_eq!(
        now.hq_pin_digest,
        Some(crate::domain::sync::pin_hash_digest("hq-hash-1"))
    );

    // HQ sends its hash of the same PIN again with a newer version: the peppered hash stays.
    ledger
        .execute(hq.clone(), from_hq(record("hq-hash-1", true, 2)))
        .await
        .unwrap();
    let now = cache.staff("5001").unwrap().unwrap();
    assert_eq!((now.pin_hash.as_str(), now.version), ("peppered", 2));

    // HQ removes them while a login with the old hash is being checked: the upgrade that
    // follows leaves them removed.
    ledger
        .execute(hq.clone(), from_hq(record("peppered", false, 3)))
        .await
        .unwrap();
    ledger
        .execute(me.clone(), upgrade("peppered"))
        .await
        .unwrap();
    assert!(!cache.staff("5001").unwrap().unwrap().active);

    // Back with a new PIN: an upgrade from the old one leaves the new one.
    ledger
        .execute(hq, from_hq(record("hq-hash-2", true, 4)))
        .await
        .unwrap();
    ledger.execute(me, upgrade("hq-hash-1")).await.unwrap();
    let now = cache.staff("5001").unwrap().unwrap();
    assert_eq!((now.pin_hash.as_str(), now.active), ("hq-hash-2", true));
    assert_eq!(now.hq_pin_digest, None);
    drop(ledger);
    thread.join().unwrap();
}

/// A login's attempt is counted on the ledger thread before its PIN is checked, and taken back
/// only from the count it went into.
#[tokio::test]
async fn a_login_attempt_is_counted_at_once_and_taken_back_from_its_own_count() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, cache, writer, settings, c) = open(dir.path());
    let (ledger, thread) = Ledger::start(journal, writer, settings, &c.products, 30).unwrap();
    let scopes = || {
        vec![
            ("terminal:pos-1".to_string(), 3),
            ("staff:1001".to_string(), 2),
        ]
    };
    let attempt = |window| {
        ledger.execute(
            cashier(),
            Command::Session(SessionOp::Attempt {
                scopes: scopes(),
                window,
            }),
        )
    };
    let minute = chrono::Duration::seconds(60);
    let Outcome::Attempted { since } = attempt(minute).await.unwrap() else {
        panic!("counted")
    };
    assert_eq!(since.len(), 2);
    // The second attempt reaches the staff number's limit of 2: the third is refused.
    attempt(minute).await.unwrap();
    match attempt(minute).await.unwrap() {
        Outcome::Locked { scope, .. } => assert_eq!(scope, "staff:1001"),
        other => panic!("{other:?}"),
    }
    let failures = |scope: &str| cache.strikes(scope).unwrap().map(|s| s.failures);
    assert_eq!(
        (failures("terminal:pos-1"), failures("staff:1001")),
        (Some(2), Some(2))
    );

    // The first attempt's PIN was right: taken back from the terminal, the staff count cleared.
    let attempts: Vec<_> = scopes()
        .into_iter()
        .zip(since.iter().copied())
        .map(|((scope, max), since)| (scope, max, since))
        .collect();
    let take_back = |attempts, clear| {
        ledger.execute(
            cashier(),
            Command::Session(SessionOp::TakeBack { attempts, clear }),
        )
    };
    take_back(attempts.clone(), Some("staff:1001".to_string()))
        .await
        .unwrap();
    assert_eq!(
        (failures("terminal:pos-1"), failures("staff:1001")),
        (Some(1), None)
    );

    // A count started later (the old one forgotten) never held that attempt: kept whole.
    ledger
        .execute(
            cashier(),
            Command::Session(SessionOp::TakeBack {
                attempts: Vec::new(),
                clear: Some("terminal:pos-1".to_string()),
            }),
        )
        .await
        .unwrap();
    attempt(minute).await.unwrap();
    take_back(attempts, None).await.unwrap();
    assert_eq!(
        (failures("terminal:pos-1"), failures("staff:1001")),
        (Some(1), Some(1))
    );
    drop(ledger);
    thread.join().unwrap();
}
