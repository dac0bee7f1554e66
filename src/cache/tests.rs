//! Tests of the cache: its files, snapshots and checkpoints.

use super::*;

#[test]
fn a_rebuilt_cache_is_kept_on_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let codec = PiiCodec::random();
    let (_, w, how) = Cache::open(dir.path(), 4, codec.clone()).unwrap();
    assert_eq!(how, Opened::Created);
    w.conn()
        .execute("UPDATE meta SET value = '0' WHERE key = 'layout'", [])
        .unwrap();
    drop(w);
    let (_, w, how) = Cache::open(dir.path(), 4, codec.clone()).unwrap();
    assert!(matches!(how, Opened::Rebuilt(_)), "{how:?}");
    drop(w);
    // Left before it was done (a full disk in the replay, a stop, HQ not asked yet): taken up
    // again where it got to, not taken for a filled cache, nor moved aside and started over.
    let (_, w, how) = Cache::open(dir.path(), 4, codec.clone()).unwrap();
    assert_eq!(how, Opened::Resumed);
    drop(w);
    let (c, w, how) = Cache::open(dir.path(), 4, codec.clone()).unwrap();
    assert_eq!(how, Opened::Resumed);
    c.rebuild_done();
    drop(w);
    let (_, w, how) = Cache::open(dir.path(), 4, codec).unwrap();
    assert_eq!(how, Opened::Existing);
    drop(w);
    // Sealed with another store key: useless, rebuilt.
    let (_, _, how) = Cache::open(dir.path(), 4, PiiCodec::random()).unwrap();
    assert!(matches!(how, Opened::Rebuilt(_)), "{how:?}");
}

/// A cache that cannot be opened for a reason of the machine's (here: a directory where the
/// file should be, which SQLite cannot open) is not moved aside and rebuilt — that would not
/// mend it, and would lose HQ's data in it: the start fails and leaves it.
#[test]
fn a_cache_the_machine_cannot_open_is_not_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(db::FILE_NAME);
    std::fs::create_dir(&path).unwrap();
    let err = Cache::open(dir.path(), 4, PiiCodec::random()).err();
    assert!(matches!(err, Some(CacheError::Sql { .. })), "{err:?}");
    assert!(path.is_dir(), "moved aside");
    let entries = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(entries, 1, "nothing else made or moved");
}

/// Readers keep their snapshot between reads; a write must still be seen by the next
/// read, and a scrub must be able to empty the WAL past idle readers.
#[test]
fn a_read_after_a_write_sees_it_and_idle_readers_let_the_wal_go() {
    let dir = tempfile::tempdir().unwrap();
    let (c, w, _) = Cache::open(dir.path(), 4, PiiCodec::random()).unwrap();
    for price in [100, 250, 90] {
        let mut p = w.pending(false).unwrap();
        p.put_product(crate::domain::pricing::tests::product("A", price))
            .unwrap();
        p.commit().unwrap();
        // Twice: the second read reuses the first one's snapshot.
        for _ in 0..2 {
            assert_eq!(c.product("A").unwrap().map(|p| p.price), Some(price));
        }
    }
    let truncate = |conn: &Connection| -> i64 {
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .unwrap()
    };
    let mut p = w.pending(false).unwrap();
    p.put_product(crate::domain::pricing::tests::product("B", 1))
        .unwrap();
    p.commit().unwrap();
    assert_eq!(c.product("A").unwrap().map(|p| p.price), Some(90));
    // An idle reader holds a snapshot: the WAL cannot be emptied until it lets go.
    w.conn()
        .busy_timeout(std::time::Duration::from_millis(20))
        .unwrap();
    let mut p = w.pending(false).unwrap();
    p.put_product(crate::domain::pricing::tests::product("B", 2))
        .unwrap();
    p.commit().unwrap();
    assert_eq!(truncate(w.conn()), 1, "busy while a reader holds the WAL");
    c.checkpoint_moment(crate::journal::Moment::Before { empty: false });
    assert_eq!(truncate(w.conn()), 0);
    assert_eq!(c.product("B").unwrap().map(|p| p.price), Some(2));
}

/// A member with this phone and card.
fn person(id: &str, phone: &str, card: Option<&str>) -> Member {
    let mut m = crate::domain::pricing::tests::member(0, 0, None);
    m.id = id.into();
    if let Some(p) = m.profile.as_mut() {
        p.phone = phone.into();
        p.card_no = card.map(str::to_string);
    }
    m
}

/// The hints never answer with what the index no longer says: a phone that moved to
/// another member, a changed card, a member added after the load.
#[test]
fn lookups_through_hints_follow_every_change_of_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let (c, w, _) = Cache::open(dir.path(), 4, PiiCodec::random()).unwrap();
    let put = |ms: Vec<Member>| {
        let mut p = w.pending(false).unwrap();
        for m in ms {
            p.put_member(m).unwrap();
        }
        p.commit().unwrap();
    };
    let by_phone = |phone: &str| c.member_by_phone(phone).unwrap().map(|m| m.id);
    let by_card = |card: &str| c.member_by_card(card).unwrap().map(|m| m.id);
    put(vec![
        person("a", "13800000001", Some("C1")),
        person("b", "13800000002", None),
    ]);
    assert_eq!(c.load_hints().unwrap(), (2, 1));
    let used = || {
        c.inner
            .hints
            .used
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!(by_phone("13800000001").as_deref(), Some("a"));
    assert_eq!(by_card("C1").as_deref(), Some("a"));
    assert_eq!(used(), 2, "both answered from hints");

    // b takes a's phone (the index moves, a keeps the number in its profile); a's card
    // changes; c arrives after the load.
    let mut p = w.pending(false).unwrap();
    p.put_member(person("b", "13800000001", None)).unwrap();
    p.put_member(person("a", "13800000001", Some("C9")))
        .unwrap();
    p.put_member(person("c", "13800000003", None)).unwrap();
    p.commit().unwrap();
    let via_sql = used();
    assert_eq!(by_card("C1"), None);
    assert_eq!(by_card("C9").as_deref(), Some("a"));
    assert_eq!(by_phone("13800000003").as_deref(), Some("c"));
    assert_eq!(by_phone("13800000002"), None);
    assert_eq!(by_phone("13800000001").as_deref(), Some("b"));
    assert_eq!(used(), via_sql, "tombstones and misses ask the index");
    // The hint left behind says the same.
    assert_eq!(by_phone("13800000001").as_deref(), Some("b"));
    assert_eq!(by_phone("13800000003").as_deref(), Some("c"));
    assert!(used() > via_sql, "found through SQLite, then hinted");
}

/// The member count follows every write without counting the table, survives a restart,
/// and a cache from before the counter is counted once when opened.
#[test]
fn the_member_count_is_kept_across_writes_restarts_and_an_older_cache() {
    let dir = tempfile::tempdir().unwrap();
    let codec = PiiCodec::random();
    let (c, w, _) = Cache::open(dir.path(), 4, codec.clone()).unwrap();
    // Filled (the daemon says so once HQ was asked for its data): it opens as existing.
    c.rebuild_done();
    assert_eq!(c.member_count().unwrap(), 0);
    let mut p = w.pending(false).unwrap();
    p.put_member(person("a", "13800000001", None)).unwrap();
    p.put_member(person("b", "13800000002", None)).unwrap();
    p.commit().unwrap();
    // An edit of a known member is not a new one.
    let mut p = w.pending(false).unwrap();
    p.put_member(person("a", "13800000009", Some("C1")))
        .unwrap();
    p.put_member(person("c", "13800000003", None)).unwrap();
    p.commit().unwrap();
    assert_eq!(c.member_count().unwrap(), 3);
    // A batch that is not committed counts nothing.
    let mut p = w.pending(false).unwrap();
    p.put_member(person("d", "13800000004", None)).unwrap();
    drop(p);
    assert_eq!(c.member_count().unwrap(), 3);
    drop((c, w));
    let (c, w, how) = Cache::open(dir.path(), 4, codec.clone()).unwrap();
    assert_eq!(how, Opened::Existing);
    assert_eq!(c.member_count().unwrap(), 3);
    // As an older cache: no counter, no triggers.
    w.conn()
        .execute_batch(
            "DROP TRIGGER members_count_in; DROP TRIGGER members_count_out; DROP TABLE counts;",
        )
        .unwrap();
    drop((c, w));
    let (c, _w, how) = Cache::open(dir.path(), 4, codec).unwrap();
    assert_eq!(how, Opened::Existing);
    assert_eq!(c.member_count().unwrap(), 3);
}

#[test]
fn garbage_in_place_of_the_cache_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE_NAME), vec![0xA5u8; 8192]).unwrap();
    let (c, _w, how) = Cache::open(dir.path(), 4, PiiCodec::random()).unwrap();
    assert!(matches!(how, Opened::Rebuilt(_)), "{how:?}");
    assert_eq!(c.applied_seq().unwrap(), 0);
}

/// Only the newest copy moved aside stays: a cache rebuilt again and again does not fill the
/// disk. Other files of the directory are left alone.
#[test]
fn only_the_newest_broken_copy_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("journal.sqlite3"), b"not the cache").unwrap();
    let copies = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("cache.broken-"))
            .collect();
        v.sort();
        v
    };
    let mut kept = Vec::new();
    for round in 0..3u8 {
        std::fs::write(dir.path().join(FILE_NAME), vec![0xA5 ^ round; 8192]).unwrap();
        let (_c, w, how) = Cache::open(dir.path(), 4, PiiCodec::random()).unwrap();
        let Opened::Rebuilt(aside) = how else {
            panic!("{how:?}")
        };
        drop(w);
        let name = aside.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(copies(), std::slice::from_ref(&name), "round {round}");
        assert_eq!(std::fs::read(&aside).unwrap(), vec![0xA5 ^ round; 8192]);
        kept.push(name);
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert_eq!(
        kept.iter().collect::<std::collections::BTreeSet<_>>().len(),
        3
    );
    assert_eq!(
        std::fs::read(dir.path().join("journal.sqlite3")).unwrap(),
        b"not the cache"
    );
}

/// Bulk mode: the entries added to member indexes wait in memory, the writer's uniqueness
/// lookups see them, a removal writes them first, the finish writes the rest; a cache closed
/// with entries unwritten is rebuilt when opened.
#[test]
fn bulk_mode_defers_member_entries_and_an_unfinished_bulk_write_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let codec = PiiCodec::random();
    let (c, w, _) = Cache::open(dir.path(), 4, codec.clone()).unwrap();
    c.rebuild_done();
    let put = |ms: Vec<Member>| {
        let mut p = w.pending(false).unwrap();
        for m in ms {
            p.put_member(m).unwrap();
        }
        p.commit().unwrap();
    };
    let entries = || -> i64 {
        w.conn()
            .query_row("SELECT COUNT(*) FROM idx_phone", [], |r| r.get(0))
            .unwrap()
    };
    put(vec![person("a", "13800000001", None)]);
    w.begin_bulk().unwrap();
    assert!(w.in_bulk());
    put(vec![
        person("b", "13800000002", Some("C2")),
        person("c", "13800000003", None),
    ]);
    assert_eq!(entries(), 1, "b's and c's entries are held back");
    {
        let p = w.pending(false).unwrap();
        let phone = |n: &str| p.member_id_by_phone(n).unwrap();
        assert_eq!(phone("13800000001").as_deref(), Some("a"));
        assert_eq!(phone("13800000002").as_deref(), Some("b"));
        assert_eq!(p.member_id_by_card("C2").unwrap().as_deref(), Some("b"));
        assert_eq!(phone("13800000009"), None);
    }
    // c's phone changes: its old entry is removed, so the held entries are written first.
    put(vec![person("c", "13800000004", None)]);
    assert_eq!(
        entries(),
        2,
        "a and b: c's old entry written and removed, its new one held"
    );
    put(vec![person("d", "13800000005", None)]);
    assert_eq!(
        w.finish_bulk().unwrap(),
        5,
        "c's new phone and tail; d's phone, tail and name"
    );
    assert!(!w.in_bulk());
    let by_phone = |n: &str| c.member_by_phone(n).unwrap().map(|m| m.id);
    assert_eq!(by_phone("13800000003"), None);
    for (phone, id) in [
        ("13800000001", "a"),
        ("13800000002", "b"),
        ("13800000004", "c"),
        ("13800000005", "d"),
    ] {
        assert_eq!(by_phone(phone).as_deref(), Some(id), "{phone}");
    }
    assert_eq!(
        c.member_by_card("C2").unwrap().map(|m| m.id).as_deref(),
        Some("b")
    );
    assert_eq!(c.members_by_tail("0005", 10).unwrap().len(), 1);
    drop((c, w));
    let (_, w, how) = Cache::open(dir.path(), 4, codec.clone()).unwrap();
    assert_eq!(
        how,
        Opened::Existing,
        "a finished bulk write leaves a usable cache"
    );

    // Stopped before the finish: what only memory held is gone, so the cache is rebuilt.
    w.begin_bulk().unwrap();
    let mut p = w.pending(false).unwrap();
    p.put_member(person("e", "13800000006", None)).unwrap();
    p.commit().unwrap();
    drop(w);
    let (_, _, how) = Cache::open(dir.path(), 4, codec).unwrap();
    assert!(matches!(how, Opened::Rebuilt(_)), "{how:?}");
}

/// The writer's memo of products and stock (see `memo`) answers what the cache holds: what a
/// committed batch wrote, never what a rolled-back or failed one tried to.
#[test]
fn the_writers_memo_holds_only_committed_products_and_stock() {
    let dir = tempfile::tempdir().unwrap();
    let (c, w, _) = Cache::open(dir.path(), 4, PiiCodec::random()).unwrap();
    let level = |on_hand: i64| crate::domain::catalog::StockLevel {
        sku: "A".into(),
        on_hand,
        safety_stock: 0,
        version: 0,
        seq: 0,
        updated_at: None,
        awaiting_delivery: false,
    };
    let mut p = w.pending(false).unwrap();
    p.put_product(crate::domain::pricing::tests::product("A", 100))
        .unwrap();
    p.put_stock(level(10));
    p.commit().unwrap();
    // Read through the memo by a later batch, and by the readers from the file: the same.
    let p = w.pending(false).unwrap();
    assert_eq!(p.product("A").unwrap().map(|p| p.price), Some(100));
    assert_eq!(p.stock("A").unwrap().map(|s| s.on_hand), Some(10));
    drop(p);
    assert_eq!(w.memo.borrow().len(), (1, 1));
    // A batch that changes both and is dropped (rolled back) leaves the memo as it was.
    let mut p = w.pending(false).unwrap();
    p.put_product(crate::domain::pricing::tests::product("A", 999))
        .unwrap();
    p.put_stock(level(-5));
    assert_eq!(p.product("A").unwrap().map(|p| p.price), Some(999));
    drop(p);
    let p = w.pending(false).unwrap();
    assert_eq!(p.product("A").unwrap().map(|p| p.price), Some(100));
    assert_eq!(p.stock("A").unwrap().map(|s| s.on_hand), Some(10));
    drop(p);
    // A committed change is what the next batch and the readers see.
    let mut p = w.pending(false).unwrap();
    p.put_stock(level(7));
    p.commit().unwrap();
    let p = w.pending(false).unwrap();
    assert_eq!(p.stock("A").unwrap().map(|s| s.on_hand), Some(7));
    drop(p);
    assert_eq!(c.stock("A").unwrap().map(|s| s.on_hand), Some(7));
    // A product written behind the memo's back (by hand, as no code does) is not seen until
    // the memo is emptied — which a failed commit does.
    w.conn()
        .execute("DELETE FROM products WHERE sku = 'A'", [])
        .unwrap();
    let p = w.pending(false).unwrap();
    assert!(p.product("A").unwrap().is_some(), "answered from the memo");
    drop(p);
    let mut p = w.pending(false).unwrap();
    p.put_stock(level(1));
    // Inside the batch's transaction: its stock write fails, and the drop is rolled back.
    w.conn().execute_batch("DROP TABLE stock").unwrap();
    assert!(p.commit().is_err(), "the stock table was gone");
    assert_eq!(
        w.memo.borrow().len(),
        (0, 0),
        "a failed commit empties the memo"
    );
    let p = w.pending(false).unwrap();
    assert!(p.product("A").unwrap().is_none());
    assert_eq!(p.stock("A").unwrap().map(|s| s.on_hand), Some(7));
}

/// A feedback item of `member`, with a note.
fn said_by(id: &str, member: &str) -> crate::domain::feedback::Feedback {
    serde_json::from_value(serde_json::json!({
        "id": id, "rating": 1, "text": "赵七说店员态度差", "category": "service",
        "sale_id": null, "member_id": member, "staff_no": null, "status": "in_progress",
        "due": null, "recorded_by": "1001",
        "notes": [{"by": "2001", "at": "2026-12-01T11:00:00+08:00", "status": "in_progress",
                   "note": "called 赵七 back"}],
        "created_at": "2026-12-01T10:00:00+08:00", "updated_at": "2026-12-01T11:00:00+08:00"
    }))
    .unwrap()
}

/// Members erased by a storebox from before 2026-12-07 kept, in the cache, their tags (free
/// text such as "孕妇"; cleared by erasures since 2026-12-06) and the text of their feedback
/// and the staff's notes on it (since 2026-12-07); the cache's layout did not change, so a box
/// upgraded since still showed them on the erased member, in campaigns by tag and in
/// `GET /v1/feedback`. The first open of such a cache clears them, once; a living member's
/// stay.
#[test]
fn what_an_older_storebox_left_of_erased_members_is_cleared_at_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let codec = PiiCodec::random();
    let (c, w, _) = Cache::open(dir.path(), 4, codec.clone()).unwrap();
    c.rebuild_done();
    let mut gone = person("gone", "13800000001", None);
    gone.profile = None;
    gone.tags = vec!["孕妇".into()];
    gone.erased_at =
        Some(chrono::DateTime::parse_from_rfc3339("2026-12-01T12:00:00+08:00").unwrap());
    let mut here = person("here", "13800000002", None);
    here.tags = vec!["vip".into()];
    let mut p = w.pending(false).unwrap();
    p.put_member(gone).unwrap();
    p.put_member(here).unwrap();
    p.put_feedback(said_by("f-gone", "gone"));
    p.put_feedback(said_by("f-here", "here"));
    p.commit().unwrap();
    // As the older storebox left it: its cache had not been through the clearing.
    w.conn()
        .execute("DELETE FROM meta WHERE key = 'erasures_completed'", [])
        .unwrap();
    drop((c, w));
    let (c, w, how) = Cache::open(dir.path(), 4, codec.clone()).unwrap();
    assert_eq!(how, Opened::Existing);
    assert_eq!(
        c.member("gone").unwrap().unwrap().tags,
        Vec::<String>::new()
    );
    assert_eq!(c.member("here").unwrap().unwrap().tags, vec!["vip"]);
    let p = w.pending(false).unwrap();
    let gone = p.feedback("f-gone").unwrap().unwrap();
    assert_eq!((gone.text.as_str(), gone.notes[0].note.as_str()), ("", ""));
    assert_eq!(gone.rating, 1, "the rest of the item stays");
    let here = p.feedback("f-here").unwrap().unwrap();
    assert_eq!(here, said_by("f-here", "here"));
    drop(p);
    // Once: the next open does not read every member again.
    let done: i64 = w
        .conn()
        .query_row(
            "SELECT COUNT(*) FROM meta WHERE key = 'erasures_completed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(done, 1);
}
