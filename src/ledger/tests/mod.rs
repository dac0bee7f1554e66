//! Ledger tests on real journal and cache files: group commit, replay idempotency; a full
//! disk (`disk_full`); a bug in a batch (`bugs`); staff logins' lock-out counts and PIN upgrades (`staff`).

use std::path::Path;
use std::sync::Arc;

use super::requests::{CartLine, RegisterMember, SaleRequest, StockMovement, UpdateMember};
use super::*;
use crate::cache::{Cache, CacheWriter, Session};
use crate::config::Config;
use crate::domain::access::Role;
use crate::domain::event::StockReason;
use crate::domain::member::Member;
use crate::domain::rules::Rules;
use crate::domain::sale::{Payment, PaymentMethod};

mod bugs;
mod catalog;
mod disk_full;
mod duplicate_members;
mod levels;
mod members;
mod staff;
mod staff_marketing;

fn config(dir: &Path) -> Config {
    let text = format!(
        r#"
[store]
id = "sh-001"
name = "测试店"
environment = "development"
[storage]
dir = "{}"
[[products]]
sku = "A"
name = "商品A"
price = 10000
stock = 100
safety_stock = 5
"#,
        dir.display()
    );
    Config::parse(Path::new("test.toml"), &text).unwrap()
}

/// The store key of a test data directory, created on first use like a development box does.
fn codec(dir: &Path) -> PiiCodec {
    let (keys, _) = crate::security::StoreKeys::load_or_create(&dir.join("store.key")).unwrap();
    PiiCodec::new(Arc::new(keys))
}

fn open(dir: &Path) -> (Journal, Cache, CacheWriter, Arc<StoreSettings>, Config) {
    let c = config(dir);
    let journal = Journal::open(dir, "sh-001").unwrap();
    let (cache, writer, _) = Cache::open(dir, 8, codec(dir)).unwrap();
    let settings = Arc::new(StoreSettings::from_config(&c));
    (journal, cache, writer, settings, c)
}

/// Test hooks: code run on the ledger thread, between batches.
impl Ledger {
    /// Runs `hook` on the ledger thread's journal connection and waits until it has run (or
    /// the thread is gone).
    async fn run_hook(&self, hook: Box<dyn FnOnce(&rusqlite::Connection) + Send>) {
        let (done, rx) = oneshot::channel();
        let _ = self.tx.send(Msg::Hook(hook, done)).await;
        let _ = rx.await;
    }

    /// Makes the ledger thread panic, as a bug in it would.
    async fn kill_for_test(&self) {
        self.run_hook(Box::new(|_| panic!("killed by a test")))
            .await;
        // The channel closes as the thread unwinds, just after the hook's answer is dropped.
        while self.is_running() {
            tokio::task::yield_now().await;
        }
    }

    /// Caps the journal at `pages` pages, so the next growth fails like a full disk.
    async fn limit_journal_pages_for_test(&self, pages: i64) {
        self.run_hook(Box::new(move |conn| {
            let _: i64 = conn
                .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                    r.get(0)
                })
                .unwrap_or(0);
        }))
        .await;
    }
}

/// A ledger on a new store: its directory, the ledger, its thread and a reader of its cache.
fn started() -> (
    tempfile::TempDir,
    Ledger,
    std::thread::JoinHandle<()>,
    Cache,
) {
    let dir = tempfile::tempdir().unwrap();
    let (journal, cache, writer, settings, c) = open(dir.path());
    let (ledger, thread) = Ledger::start(journal, writer, settings, &c.products, 30).unwrap();
    (dir, ledger, thread, cache)
}

fn cashier() -> Actor {
    Actor {
        staff_no: "1001".into(),
        role: Role::Cashier,
        terminal_id: "pos-1".into(),
    }
}

/// HQ, as the uplink applies its data.
fn hq() -> Actor {
    Actor {
        staff_no: "hq".into(),
        role: Role::Admin,
        terminal_id: "uplink".into(),
    }
}

fn sale(member: Option<&str>, qty: u32, redeem: i64, pay: i64) -> SaleRequest {
    SaleRequest {
        member_id: member.map(str::to_string),
        lines: vec![CartLine {
            sku: "A".into(),
            qty,
        }],
        coupon_codes: vec![],
        redeem_points: redeem,
        payments: vec![Payment {
            method: PaymentMethod::Cash,
            amount: pay,
        }],
        print: false,
    }
}

fn idem(key: &str) -> Idem {
    Idem {
        key: key.into(),
        body_hash: format!("hash-{key}"),
    }
}

/// A cashier's registration of a member with `phone` and `card_no`.
async fn try_register(
    ledger: &Ledger,
    phone: &str,
    card_no: Option<&str>,
) -> Result<Outcome, LedgerError> {
    let req = RegisterMember {
        name: "测试".into(),
        phone: phone.into(),
        gender: Default::default(),
        birthday: None,
        card_no: card_no.map(Into::into),
        tags: vec![],
        consent: Default::default(),
    };
    ledger
        .execute(cashier(), Command::Register { req, idem: None })
        .await
}

async fn register(ledger: &Ledger, phone: &str) -> Member {
    match try_register(ledger, phone, None).await.unwrap() {
        Outcome::Member { member, .. } => *member,
        o => panic!("{o:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sales_in_one_batch_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, cache, writer, settings, c) = open(dir.path());
    let (ledger, thread) = Ledger::start(journal, writer, settings, &c.products, 30).unwrap();
    let m = register(&ledger, "13800000001").await;
    // ¥1,500 makes the member 普通会员; ¥1,000 more earns 1,000 points.
    for (i, qty) in [15u32, 10].into_iter().enumerate() {
        ledger
            .execute(
                cashier(),
                Command::Sale {
                    req: sale(Some(&m.id), qty, 0, i64::from(qty) * 10_000),
                    idem: idem(&format!("setup-{i}")),
                },
            )
            .await
            .unwrap();
    }
    // Twenty terminals try to spend the same 1,000 points at once: exactly one may.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let ledger = ledger.clone();
            let id = m.id.clone();
            tokio::spawn(async move {
                ledger
                    .execute(
                        cashier(),
                        Command::Sale {
                            req: sale(Some(&id), 1, 1_000, 9_000),
                            idem: idem(&format!("spend-{i}")),
                        },
                    )
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(LedgerError::Rule { code, .. }) => assert_eq!(code, "insufficient_points"),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ok, 1);
    // Sales are answered before their cache write; a reader after the answers waits for it.
    ledger.caught_up().await;
    let rules = Rules::default();
    let member = cache.member(&m.id).unwrap().unwrap();
    let today = chrono::Utc::now().date_naive();
    assert_eq!(
        member.points(&rules, today),
        90,
        "1,000 − 1,000 + 90 earned on ¥90"
    );
    assert!(
        ledger.stats.batches.load(Ordering::Relaxed)
            < ledger.stats.commands.load(Ordering::Relaxed)
    );
    drop(ledger);
    thread.join().unwrap();
}

#[tokio::test]
async fn replaying_the_whole_journal_twice_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, cache, writer, settings, c) = open(dir.path());
    let (ledger, thread) =
        Ledger::start(journal, writer, settings.clone(), &c.products, 30).unwrap();
    let m = register(&ledger, "13800000002").await;
    for i in 0..5u32 {
        ledger
            .execute(
                cashier(),
                Command::Sale {
                    req: sale(Some(&m.id), 3 + i, 0, 1_000_000),
                    idem: idem(&format!("s{i}")),
                },
            )
            .await
            .unwrap();
    }
    ledger
        .execute(
            Actor {
                role: Role::Manager,
                ..cashier()
            },
            Command::MoveStock {
                req: StockMovement {
                    sku: "A".into(),
                    delta: 7,
                    reason: StockReason::Receive,
                    note: String::new(),
                },
                idem: None,
            },
        )
        .await
        .unwrap();
    drop(ledger);
    thread.join().unwrap();
    let member = cache.member(&m.id).unwrap().unwrap();
    let stock = cache.stock("A").unwrap().unwrap();
    assert_eq!(stock.on_hand, 100 - (3 + 4 + 5 + 6 + 7) + 7);

    // Forget the watermark: every event is applied again, and nothing may count twice.
    drop(cache);
    let (cache, writer, _) = Cache::open(dir.path(), 8, codec(dir.path())).unwrap();
    writer
        .conn()
        .execute("UPDATE meta SET value = '0' WHERE key = 'applied_seq'", [])
        .unwrap();
    assert_eq!(cache.applied_seq().unwrap(), 0);
    let journal = Journal::open(dir.path(), "sh-001").unwrap();
    let n = replay(&journal, &writer, &settings).unwrap();
    assert!(n >= 8, "{n}");
    assert_eq!(cache.member(&m.id).unwrap().unwrap(), member);
    assert_eq!(cache.stock("A").unwrap().unwrap(), stock);
}

/// A cache rebuilt from a long journal (`BULK_REPLAY`: 20 events in tests, replayed 10 at a
/// time) defers its member index entries and writes them at the end of the replay: every
/// member is found by phone, also one whose phone changed (the removal, in a later batch than
/// the registration, writes what was deferred first).
#[tokio::test]
async fn a_cache_rebuilt_from_a_long_journal_finds_every_member() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, cache, writer, settings, c) = open(dir.path());
    let (ledger, thread) =
        Ledger::start(journal, writer, settings.clone(), &c.products, 30).unwrap();
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(register(&ledger, &format!("138{i:08}")).await.id);
    }
    let req = UpdateMember {
        phone: Some("13999999999".into()),
        ..Default::default()
    };
    ledger
        .execute(
            cashier(),
            Command::Update {
                member_id: ids[3].clone(),
                req,
            },
        )
        .await
        .unwrap();
    for i in 30..35 {
        ids.push(register(&ledger, &format!("138{i:08}")).await.id);
    }
    drop(ledger);
    thread.join().unwrap();
    drop(cache);
    for f in ["cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }

    let (journal, cache, writer, settings, c) = open(dir.path());
    let (ledger, thread) = Ledger::start(journal, writer, settings, &c.products, 30).unwrap();
    for (i, id) in ids.iter().enumerate() {
        let phone = if i == 3 {
            "13999999999".to_string()
        } else {
            format!("138{i:08}")
        };
        let found = cache.member_by_phone(&phone).unwrap().map(|m| m.id);
        assert_eq!(found.as_ref(), Some(id), "{phone}");
    }
    assert_eq!(cache.member_by_phone("13800000003").unwrap(), None);
    // Still usable, bulk mode finished: new members are indexed at once.
    let late = register(&ledger, "13700000000").await;
    let found = cache.member_by_phone("13700000000").unwrap().map(|m| m.id);
    assert_eq!(found, Some(late.id));
    drop(ledger);
    thread.join().unwrap();
    // Rebuilt and HQ asked (the daemon's part): it opens as existing.
    cache.rebuild_done();
    drop(cache);
    let (_, _, how) = Cache::open(dir.path(), 8, codec(dir.path())).unwrap();
    assert_eq!(how, crate::cache::Opened::Existing);
}

#[tokio::test]
async fn a_member_erased_by_hq_is_erased_here() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, cache, writer, settings, c) = open(dir.path());
    let (ledger, thread) = Ledger::start(journal, writer, settings, &c.products, 30).unwrap();
    let m = register(&ledger, "13800000009").await;
    let kept = register(&ledger, "13800000010").await;
    let mut from_hq = cache.member(&m.id).unwrap().unwrap();
    from_hq.erased_at = Some(chrono::Utc::now().fixed_offset());
    from_hq.profile = None;
    ledger
        .execute(
            hq(),
            Command::ApplyHq(Box::new(crate::domain::sync::HqUpdate::Members(vec![
                from_hq,
            ]))),
        )
        .await
        .unwrap();
    let after = cache.member(&m.id).unwrap().unwrap();
    assert!(after.erased_at.is_some() && after.profile.is_none());
    assert!(cache.member_by_phone("13800000009").unwrap().is_none());
    assert!(cache.member_by_phone("13800000010").unwrap().is_some());
    drop(ledger);
    thread.join().unwrap();

    let journal = Journal::open(dir.path(), "sh-001").unwrap();
    let conn = journal.conn();
    let kinds: Vec<String> = conn
        .prepare("SELECT kind FROM events WHERE subject = ?1 ORDER BY seq")
        .unwrap()
        .query_map([&m.id], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(kinds, ["member.registered", "member.erased"]);
    assert!(
        crate::journal::store::member_key(conn, &m.id)
            .unwrap()
            .is_none()
    );
    assert!(
        crate::journal::store::member_key(conn, &kept.id)
            .unwrap()
            .is_some()
    );
    let audit = crate::journal::audit::list(conn, 0, 100).unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "member.erase" && a.target == m.id)
    );
}

#[tokio::test]
async fn a_ping_is_answered_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _cache, writer, settings, c) = open(dir.path());
    let (ledger, thread) = Ledger::start(journal, writer, settings, &c.products, 30).unwrap();
    let seq = ledger.stats.last_seq.load(Ordering::Relaxed);
    let batches = ledger.stats.batches.load(Ordering::Relaxed);
    for _ in 0..3 {
        ledger.ping().await.unwrap();
    }
    assert_eq!(ledger.stats.last_seq.load(Ordering::Relaxed), seq);
    assert_eq!(ledger.stats.batches.load(Ordering::Relaxed), batches);
    drop(ledger);
    thread.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_is_answered_before_its_cache_write_and_the_next_request_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, cache, writer, settings, c) = open(dir.path());
    let (ledger, thread) = Ledger::start(journal, writer, settings, &c.products, 30).unwrap();
    let m = register(&ledger, "13800000009").await;
    // A registration is answered after its cache write: nothing was answered ahead.
    let (answered, cached) = ledger.stats.answered.positions();
    assert!(answered <= cached);
    for i in 0..50u32 {
        let seq = match ledger
            .execute(
                cashier(),
                Command::Sale {
                    req: sale(Some(&m.id), 1, 0, 10_000),
                    idem: idem(&format!("early-{i}")),
                },
            )
            .await
            .unwrap()
        {
            Outcome::Sale { sale, .. } => sale.seq,
            o => panic!("{o:?}"),
        };
        // The sale was answered ahead of its cache write...
        assert!(ledger.stats.answered.positions().0 >= seq);
        // ...and whoever asks after the answer sees it: the stock and the member's spend.
        ledger.caught_up().await;
        assert!(ledger.stats.answered.positions().1 >= seq);
        let level = cache.stock("A").unwrap().unwrap();
        assert_eq!(level.on_hand, 100 - i64::from(i) - 1, "sale {i}");
        let member = cache.member(&m.id).unwrap().unwrap();
        assert_eq!(member.total_spend(), i64::from(i + 1) * 10_000, "sale {i}");
    }
    drop(ledger);
    thread.join().unwrap();
}

/// A ledger thread that died (by a bug) holds no request for the cache write it will never
/// make, and says it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_ledger_holds_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _cache, writer, settings, c) = open(dir.path());
    let (ledger, thread) = Ledger::start(journal, writer, settings, &c.products, 30).unwrap();
    assert!(ledger.is_running());
    ledger.kill_for_test().await;
    assert!(!ledger.is_running());
    // As if it had died between a sale's answer and its cache write.
    let (_, cached) = ledger.stats.answered.positions();
    ledger.stats.answered.answering(cached + 1);
    tokio::time::timeout(std::time::Duration::from_millis(500), ledger.caught_up())
        .await
        .expect("a request does not wait for a dead ledger");
    assert!(matches!(
        ledger
            .execute(
                cashier(),
                Command::Sale {
                    req: sale(None, 1, 0, 10_000),
                    idem: idem("after-death"),
                },
            )
            .await,
        Err(LedgerError::ShuttingDown)
    ));
    assert!(thread.join().is_err());
}

/// A registration with an empty card number registers a member without a card, as an edit
/// with one removes the card (terminals send the fields they have, empty or not).
#[tokio::test]
async fn an_empty_card_number_is_no_card() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, cache, writer, settings, c) = open(dir.path());
    let (ledger, thread) = Ledger::start(journal, writer, settings, &c.products, 30).unwrap();
    let Ok(Outcome::Member { member, .. }) = try_register(&ledger, "13800138000", Some(" ")).await
    else {
        panic!("registered");
    };
    drop(ledger);
    thread.join().unwrap();
    let stored = cache.member(&member.id).unwrap().unwrap();
    assert_eq!(stored.profile.and_then(|p| p.card_no), None);
}
