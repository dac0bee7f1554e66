//! Members on the ledger thread and HQ's copies of them: a phone or card HQ's duplicate took
//! over goes back to the member here when the duplicate lets go of it; an edit is checked only
//! for what it changes; HQ's older snapshot lowers nothing of this store's; erased stays erased.

use super::*;
use crate::domain::sync::HqUpdate;

async fn apply(ledger: &Ledger, items: Vec<Member>) {
    ledger
        .execute(hq(), Command::ApplyHq(Box::new(HqUpdate::Members(items))))
        .await
        .unwrap();
}

/// HQ's copy of a member registered elsewhere with `phone`.
fn hq_member(id: &str, phone: &str, version: u64) -> Member {
    Member {
        id: id.into(),
        profile: Some(crate::domain::member::Profile {
            name: "总部".into(),
            phone: phone.into(),
            gender: Default::default(),
            birthday: None,
            card_no: None,
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

/// A member registered here and, with the same phone, at another store: HQ's copy takes over
/// the phone (uplink.md). When HQ then merges the duplicates by erasing its copy, the local
/// member — who still holds the phone — must be found by it again, and the phone must stay
/// taken for a new registration.
#[tokio::test]
async fn the_local_member_gets_the_phone_back_when_hqs_duplicate_is_erased() {
    let (_dir, ledger, thread, cache) = started();
    let a = register(&ledger, "13800000031").await;
    apply(&ledger, vec![hq_member("hq-b", "13800000031", 1)]).await;
    ledger.caught_up().await;
    assert_eq!(
        cache.member_by_phone("13800000031").unwrap().map(|m| m.id),
        Some("hq-b".to_string())
    );
    // HQ merges the duplicates: its copy is erased.
    let mut erased = hq_member("hq-b", "13800000031", 2);
    erased.profile = None;
    erased.erased_at = Some(chrono::Utc::now().fixed_offset());
    apply(&ledger, vec![erased]).await;
    ledger.caught_up().await;
    assert_eq!(
        cache.member_by_phone("13800000031").unwrap().map(|m| m.id),
        Some(a.id.clone()),
        "the local member still holds the phone"
    );
    drop(ledger);
    thread.join().unwrap();
}

/// The same when HQ moves its copy to another phone.
#[tokio::test]
async fn the_local_member_gets_the_phone_back_when_hqs_copy_changes_phone() {
    let (_dir, ledger, thread, cache) = started();
    let a = register(&ledger, "13800000032").await;
    apply(&ledger, vec![hq_member("hq-b", "13800000032", 1)]).await;
    apply(&ledger, vec![hq_member("hq-b", "13900000032", 2)]).await;
    ledger.caught_up().await;
    assert_eq!(
        cache.member_by_phone("13800000032").unwrap().map(|m| m.id),
        Some(a.id.clone()),
    );
    // A new registration with the local member's phone is refused.
    let again = try_register(&ledger, "13800000032", None).await;
    assert!(
        matches!(&again, Err(LedgerError::Conflict { .. })),
        "{again:?}"
    );
    drop(ledger);
    thread.join().unwrap();
}

async fn patch(ledger: &Ledger, id: &str, req: UpdateMember) -> Result<Outcome, LedgerError> {
    ledger
        .execute(
            cashier(),
            Command::Update {
                member_id: id.into(),
                req,
            },
        )
        .await
}

/// The local member whose phone HQ's duplicate took over can still have its name corrected:
/// the phone is not what the edit changes.
#[tokio::test]
async fn an_edit_that_leaves_the_phone_alone_is_not_refused_for_it() {
    let (_dir, ledger, thread, _cache) = started();
    let a = register(&ledger, "13800000033").await;
    apply(&ledger, vec![hq_member("hq-b", "13800000033", 1)]).await;
    let edited = patch(
        &ledger,
        &a.id,
        UpdateMember {
            name: Some("李四".into()),
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(&edited, Ok(Outcome::Member { .. })), "{edited:?}");
    drop(ledger);
    thread.join().unwrap();
}

/// Same for a card HQ's copy took over and then gave up.
#[tokio::test]
async fn the_local_member_gets_the_card_back_when_hqs_copy_changes_card() {
    let (_dir, ledger, thread, cache) = started();
    let a = register(&ledger, "13800000034").await;
    patch(
        &ledger,
        &a.id,
        UpdateMember {
            card_no: Some("CARD0034".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut b = hq_member("hq-b", "13900000034", 1);
    b.profile.as_mut().unwrap().card_no = Some("CARD0034".into());
    apply(&ledger, vec![b.clone()]).await;
    b.version = 2;
    b.profile.as_mut().unwrap().card_no = Some("CARD9999".into());
    apply(&ledger, vec![b]).await;
    ledger.caught_up().await;
    assert_eq!(
        cache.member_by_card("CARD0034").unwrap().map(|m| m.id),
        Some(a.id.clone())
    );
    drop(ledger);
    thread.join().unwrap();
}

/// HQ's copy made before sales here (an older snapshot of this store's counters, under a newer
/// version) lowers none of this store's counters, and an equal version does not undo an edit.
#[tokio::test]
async fn hqs_older_snapshot_lowers_nothing_of_this_store() {
    let (_dir, ledger, thread, cache) = started();
    let a = register(&ledger, "13800000035").await;
    apply(
        &ledger,
        vec![{
            let mut m = cache.member(&a.id).unwrap().unwrap();
            m.version = 1;
            m
        }],
    )
    .await;
    for (i, (qty, redeem)) in [(15u32, 0i64), (15, 0), (1, 500)].into_iter().enumerate() {
        ledger
            .execute(
                cashier(),
                Command::Sale {
                    req: sale(Some(&a.id), qty, redeem, i64::from(qty) * 10_000),
                    idem: idem(&format!("s{i}")),
                },
            )
            .await
            .unwrap();
    }
    ledger.caught_up().await;
    let snapshot_after_first = cache.member(&a.id).unwrap().unwrap();
    patch(
        &ledger,
        &a.id,
        UpdateMember {
            name: Some("新名字".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    ledger.caught_up().await;
    let before = cache.member(&a.id).unwrap().unwrap();
    // HQ's copy: this store's counters as of an earlier snapshot, equal version.
    let mut old = before.clone();
    old.profile.as_mut().unwrap().name = "旧名字".into();
    let here = old.counters.get_mut("sh-001").unwrap();
    here.visits = 1;
    here.last_visit_at = None;
    here.months
        .values_mut()
        .for_each(|m| *m = Default::default());
    old.version = 1;
    apply(&ledger, vec![old.clone()]).await;
    ledger.caught_up().await;
    let after = cache.member(&a.id).unwrap().unwrap();
    assert_eq!(after, before);
    old.version = 2;
    apply(&ledger, vec![old]).await;
    ledger.caught_up().await;
    let after = cache.member(&a.id).unwrap().unwrap();
    assert_eq!(after.counters, before.counters);
    let _ = snapshot_after_first;
    drop(ledger);
    thread.join().unwrap();
}

/// Erase, erase again, edit after erasure, and HQ resending the member with personal data.
#[tokio::test]
async fn erased_stays_erased() {
    let (_dir, ledger, thread, cache) = started();
    let a = register(&ledger, "13800000036").await;
    let manager = Actor {
        role: Role::Manager,
        ..cashier()
    };
    let from_hq = {
        let mut m = cache.member(&a.id).unwrap().unwrap();
        m.version = 9;
        m.tags = vec!["孕妇".into()];
        m
    };
    for _ in 0..2 {
        ledger
            .execute(
                manager.clone(),
                Command::Erase {
                    member_id: a.id.clone(),
                },
            )
            .await
            .unwrap();
    }
    let e = patch(
        &ledger,
        &a.id,
        UpdateMember {
            name: Some("x".into()),
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(e, Err(LedgerError::NotFound { .. })), "{e:?}");
    apply(&ledger, vec![from_hq]).await;
    ledger.caught_up().await;
    let m = cache.member(&a.id).unwrap().unwrap();
    assert!(m.profile.is_none() && m.tags.is_empty() && m.erased_at.is_some());
    assert!(cache.member_by_phone("13800000036").unwrap().is_none());
    assert!(cache.members_by_tail("0036", 10).unwrap().is_empty());
    drop(ledger);
    thread.join().unwrap();
}

/// Phone changes: to one taken (409), and back again; clearing a card.
#[tokio::test]
async fn phone_and_card_edits_keep_the_indexes_right() {
    let (_dir, ledger, thread, cache) = started();
    let a = register(&ledger, "13800000037").await;
    let _b = register(&ledger, "13800000038").await;
    let to = |phone: &str| UpdateMember {
        phone: Some(phone.into()),
        ..Default::default()
    };
    let e = patch(&ledger, &a.id, to("13800000038")).await;
    assert!(matches!(e, Err(LedgerError::Conflict { .. })), "{e:?}");
    patch(&ledger, &a.id, to("13800000039")).await.unwrap();
    patch(&ledger, &a.id, to("13800000037")).await.unwrap();
    patch(
        &ledger,
        &a.id,
        UpdateMember {
            card_no: Some("C0037".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    patch(
        &ledger,
        &a.id,
        UpdateMember {
            card_no: Some("".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    ledger.caught_up().await;
    assert_eq!(
        cache.member_by_phone("13800000037").unwrap().map(|m| m.id),
        Some(a.id.clone())
    );
    assert!(cache.member_by_phone("13800000039").unwrap().is_none());
    assert!(cache.member_by_card("C0037").unwrap().is_none());
    assert_eq!(cache.members_by_tail("0037", 10).unwrap().len(), 1);
    assert!(cache.members_by_tail("0039", 10).unwrap().is_empty());
    drop(ledger);
    thread.join().unwrap();
}
