//! One person, several records: the member here who still holds a phone or card that HQ's
//! copies of other members took over is found by it again once the last of them lets go — after
//! more than one copy took it in turn, and after a cache rebuilt from a long journal.

use super::*;
use crate::domain::sync::HqUpdate;

async fn apply(ledger: &Ledger, items: Vec<Member>) {
    ledger
        .execute(hq(), Command::ApplyHq(Box::new(HqUpdate::Members(items))))
        .await
        .unwrap();
}

/// HQ's copy of a member registered at another store with `phone` and `card`.
fn hq_copy(id: &str, phone: &str, card: Option<&str>, version: u64) -> Member {
    Member {
        id: id.into(),
        profile: Some(crate::domain::member::Profile {
            name: "总部".into(),
            phone: phone.into(),
            gender: Default::default(),
            birthday: None,
            card_no: card.map(str::to_string),
        }),
        tags: vec![],
        consent: Default::default(),
        level: None,
        created_at: chrono::Utc::now().fixed_offset(),
        created_store: "sh-002".into(),
        counters: Default::default(),
        version,
        seq: 0,
        erased_at: None,
    }
}

fn erased(id: &str, version: u64) -> Member {
    let mut m = hq_copy(id, "13000000000", None, version);
    m.profile = None;
    m.erased_at = Some(chrono::Utc::now().fixed_offset());
    m
}

async fn edit(ledger: &Ledger, id: &str, req: UpdateMember) {
    ledger
        .execute(
            cashier(),
            Command::Update {
                member_id: id.into(),
                req,
            },
        )
        .await
        .unwrap();
}

/// Stops the ledger, deletes the cache beside the journal and starts again: the cache is
/// rebuilt from the journal.
fn with_cache_rebuilt(
    dir: &Path,
    (ledger, thread, cache): (Ledger, std::thread::JoinHandle<()>, Cache),
) -> (Ledger, std::thread::JoinHandle<()>, Cache) {
    drop(ledger);
    thread.join().unwrap();
    drop(cache);
    for f in ["cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let (journal, cache, writer, settings, c) = open(dir);
    let (ledger, thread) = Ledger::start(journal, writer, settings, &c.products, 30).unwrap();
    (ledger, thread, cache)
}

/// A person registered here with a chain card and, with the same card, at two other stores
/// before HQ synced: HQ's two copies take the card over in turn. HQ merges the three into the
/// member here by erasing its two copies: the member here, who still holds the card, must be
/// found by it again (a swipe finds them; the card is not free for someone else).
#[tokio::test]
async fn a_card_two_copies_took_in_turn_goes_back_to_the_member_here() {
    let (_dir, ledger, thread, cache) = started();
    let a = register(&ledger, "13800000041").await;
    edit(
        &ledger,
        &a.id,
        UpdateMember {
            card_no: Some("CHAIN0041".into()),
            ..Default::default()
        },
    )
    .await;
    apply(
        &ledger,
        vec![hq_copy("hq-b", "13900000041", Some("CHAIN0041"), 1)],
    )
    .await;
    apply(
        &ledger,
        vec![hq_copy("hq-c", "13700000041", Some("CHAIN0041"), 1)],
    )
    .await;
    ledger.caught_up().await;
    assert_eq!(
        cache.member_by_card("CHAIN0041").unwrap().map(|m| m.id),
        Some("hq-c".to_string())
    );
    apply(&ledger, vec![erased("hq-c", 2)]).await;
    ledger.caught_up().await;
    assert_eq!(
        cache.member_by_card("CHAIN0041").unwrap().map(|m| m.id),
        Some("hq-b".to_string()),
        "the copy before still holds the card"
    );
    apply(&ledger, vec![erased("hq-b", 2)]).await;
    ledger.caught_up().await;
    assert_eq!(
        cache.member_by_card("CHAIN0041").unwrap().map(|m| m.id),
        Some(a.id.clone()),
        "the member here still holds the card"
    );
    let again = try_register(&ledger, "13600000041", Some("CHAIN0041")).await;
    assert!(
        matches!(&again, Err(LedgerError::Conflict { .. })),
        "{again:?}"
    );
    drop(ledger);
    thread.join().unwrap();
}

/// HQ's copy of a duplicate takes the phone of the member here; a cashier edits that copy
/// (a journal event that gives it the phone), and later gives it the person's new number: the
/// member here is found by the phone again. A cache rebuilt from the journal — long enough to be replayed in bulk —
/// must find them the same way, and keep the phone taken.
#[tokio::test]
async fn a_phone_given_back_is_found_after_a_long_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, cache, writer, settings, c) = open(dir.path());
    let (ledger, thread) =
        Ledger::start(journal, writer, settings.clone(), &c.products, 30).unwrap();
    let a = register(&ledger, "13800000042").await;
    for i in 0..12 {
        register(&ledger, &format!("137{i:08}")).await;
    }
    apply(&ledger, vec![hq_copy("hq-b", "13800000042", None, 1)]).await;
    edit(
        &ledger,
        "hq-b",
        UpdateMember {
            name: Some("改名".into()),
            ..Default::default()
        },
    )
    .await;
    for i in 12..30 {
        register(&ledger, &format!("137{i:08}")).await;
    }
    edit(
        &ledger,
        "hq-b",
        UpdateMember {
            phone: Some("13900000042".into()),
            ..Default::default()
        },
    )
    .await;
    ledger.caught_up().await;
    assert_eq!(
        cache.member_by_phone("13800000042").unwrap().map(|m| m.id),
        Some(a.id.clone())
    );
    let (ledger, thread, cache) = with_cache_rebuilt(dir.path(), (ledger, thread, cache));
    assert_eq!(
        cache.member_by_phone("13800000042").unwrap().map(|m| m.id),
        Some(a.id.clone()),
        "the member here still holds the phone"
    );
    let again = try_register(&ledger, "13800000042", None).await;
    assert!(
        matches!(&again, Err(LedgerError::Conflict { .. })),
        "{again:?}"
    );
    drop(ledger);
    thread.join().unwrap();
}

/// The same for a card, after a rebuild of any length: HQ's copy took the card of the member here, a
/// cashier edited the copy (giving it the card in the journal) and then gave it a new card.
#[tokio::test]
async fn a_card_given_back_is_found_after_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, cache, writer, settings, c) = open(dir.path());
    let (ledger, thread) =
        Ledger::start(journal, writer, settings.clone(), &c.products, 30).unwrap();
    let a = register(&ledger, "13800000043").await;
    edit(
        &ledger,
        &a.id,
        UpdateMember {
            card_no: Some("CHAIN0043".into()),
            ..Default::default()
        },
    )
    .await;
    apply(
        &ledger,
        vec![hq_copy("hq-b", "13900000043", Some("CHAIN0043"), 1)],
    )
    .await;
    edit(
        &ledger,
        "hq-b",
        UpdateMember {
            name: Some("改名".into()),
            ..Default::default()
        },
    )
    .await;
    // Later, in another chunk of the replay (but short of a bulk one).
    for i in 0..5 {
        register(&ledger, &format!("137{i:08}")).await;
    }
    edit(
        &ledger,
        "hq-b",
        UpdateMember {
            card_no: Some("NEW0043".into()),
            ..Default::default()
        },
    )
    .await;
    ledger.caught_up().await;
    assert_eq!(
        cache.member_by_card("CHAIN0043").unwrap().map(|m| m.id),
        Some(a.id.clone())
    );
    let (ledger, thread, cache) = with_cache_rebuilt(dir.path(), (ledger, thread, cache));
    assert_eq!(
        cache.member_by_card("CHAIN0043").unwrap().map(|m| m.id),
        Some(a.id.clone()),
        "the member here still holds the card"
    );
    drop(ledger);
    thread.join().unwrap();
}
