//! On the ledger thread: a staff change by an admin removed meanwhile, a campaign and the
//! members erased since they were picked, an erased member's feedback.

use super::*;
use crate::domain::campaign::{Campaign, CampaignSpec, Target};
use crate::domain::catalog::CouponKind;
use crate::domain::feedback::{Feedback, FeedbackCategory, FeedbackStatus};
use crate::domain::sync::StaffRecord;

fn admin(no: &str) -> Actor {
    Actor {
        staff_no: no.into(),
        role: Role::Admin,
        terminal_id: "pos-1".into(),
    }
}

fn removed(no: &str) -> Command {
    Command::PutStaff {
        record: Box::new(StaffRecord {
            staff_no: no.into(),
            name: "管理员".into(),
            role: Role::Admin,
            pin_hash: "h".into(),
            active: false,
            version: 0,
            hq_pin_digest: None,
        }),
        pin_given: false,
    }
}

/// Two admins remove each other at the same moment: both requests passed the API's checks
/// before either reached the ledger. The second must not run: its sender is no admin any more.
#[tokio::test]
async fn an_admin_removed_meanwhile_cannot_remove_the_last_admin() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, cache, writer, settings, c) = open(dir.path());
    let (ledger, thread) = Ledger::start(journal, writer, settings, &c.products, 30).unwrap();
    ledger
        .execute(admin("9001"), removed("9002"))
        .await
        .unwrap();
    let second = ledger.execute(admin("9002"), removed("9001")).await;
    assert!(
        matches!(second, Err(LedgerError::Conflict { .. })),
        "a removed admin removed the last admin: {second:?}"
    );
    assert!(cache.staff("9001").unwrap().is_none_or(|r| r.active));
    drop(ledger);
    thread.join().unwrap();
}

fn feedback(member: &str) -> Feedback {
    let now = chrono::Utc::now().fixed_offset();
    Feedback {
        id: String::new(),
        rating: 1,
        text: "我是张三, 电话 13800000002".into(),
        category: FeedbackCategory::Service,
        sale_id: None,
        member_id: Some(member.into()),
        staff_no: None,
        status: FeedbackStatus::Open,
        due: None,
        notes: vec![],
        recorded_by: String::new(),
        created_at: now,
        updated_at: now,
    }
}

/// A campaign's members are picked from the cache before its command runs; a member erased in
/// between must get no coupon.
#[tokio::test]
async fn a_campaign_issues_no_coupon_to_a_member_erased_since_it_was_picked() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, cache, writer, settings, c) = open(dir.path());
    let (ledger, thread) = Ledger::start(journal, writer, settings, &c.products, 30).unwrap();
    let kept = register(&ledger, "13800000001").await;
    let gone = register(&ledger, "13800000002").await;
    let campaign = Campaign {
        spec: CampaignSpec {
            id: "SPRING".into(),
            name: "春".into(),
            target: Target {
                segment: None,
                tag: Some("vip".into()),
            },
            coupon_title: "满100减20".into(),
            coupon: CouponKind::AmountOff {
                threshold: 10_000,
                amount: 2_000,
            },
            starts: "2026-03-01".parse().unwrap(),
            ends: "2026-03-31".parse().unwrap(),
            control_percent: 0,
        },
        treated: vec![kept.id.clone(), gone.id.clone()],
        control: vec![],
        started_by: "2001".into(),
    };
    ledger
        .execute(
            cashier(),
            Command::Erase {
                member_id: gone.id.clone(),
            },
        )
        .await
        .unwrap();
    ledger
        .execute(
            cashier(),
            Command::StartCampaign {
                campaign: Box::new(campaign),
                issued: false,
            },
        )
        .await
        .unwrap();
    let code = |m: &str| {
        crate::domain::automation::occasion_code(
            &crate::domain::automation::Occasion::Campaign {
                campaign: "SPRING".into(),
            },
            m,
        )
    };
    assert!(cache.coupon(&code(&kept.id)).unwrap().is_some());
    assert!(
        cache.coupon(&code(&gone.id)).unwrap().is_none(),
        "an erased member got a campaign coupon"
    );
    let started = cache.campaign("SPRING").unwrap().unwrap();
    assert_eq!(started.treated, vec![kept.id.clone()]);
    drop(ledger);
    thread.join().unwrap();
}

/// Erasing a member erases what they said in their feedback (it names them), in the cache
/// (the projection of `member.erased` does it, so a rebuilt cache does too).
#[tokio::test]
async fn erasure_takes_the_member_s_feedback_text() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, cache, writer, settings, c) = open(dir.path());
    let (ledger, thread) = Ledger::start(journal, writer, settings, &c.products, 30).unwrap();
    let m = register(&ledger, "13800000002").await;
    let other = register(&ledger, "13800000003").await;
    let id = |o| match o {
        Outcome::Feedback(f) => f.id,
        o => panic!("{o:?}"),
    };
    let f = id(ledger
        .execute(
            cashier(),
            Command::RecordFeedback {
                item: Box::new(feedback(&m.id)),
            },
        )
        .await
        .unwrap());
    let kept = id(ledger
        .execute(
            cashier(),
            Command::RecordFeedback {
                item: Box::new(feedback(&other.id)),
            },
        )
        .await
        .unwrap());
    ledger
        .execute(
            cashier(),
            Command::UpdateFeedback {
                id: f.clone(),
                status: FeedbackStatus::InProgress,
                note: "called 13800000002".into(),
            },
        )
        .await
        .unwrap();
    ledger
        .execute(
            cashier(),
            Command::Erase {
                member_id: m.id.clone(),
            },
        )
        .await
        .unwrap();
    let after = cache.feedback(&f).unwrap().unwrap();
    assert_eq!(
        after.text, "",
        "an erased member's feedback text is still readable"
    );
    assert!(after.notes.iter().all(|n| n.note.is_empty()));
    assert_eq!((after.rating, after.notes.len()), (1, 1));
    assert!(!cache.feedback(&kept).unwrap().unwrap().text.is_empty());
    drop(ledger);
    thread.join().unwrap();
}
