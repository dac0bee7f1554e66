//! Tests of the journal's statements: the payload HQ receives, sealed personal data, days.

/// A journal as storebox wrote it at schema `version`, of store `store_id`.
fn older_journal(dir: &std::path::Path, store_id: &str, version: usize) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(dir.join(crate::journal::FILE_NAME)).unwrap();
    c.execute_batch("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;")
        .unwrap();
    for step in &crate::journal::MIGRATIONS[..version] {
        c.execute_batch(step).unwrap();
    }
    c.execute(
        "INSERT INTO meta VALUES ('store_id', ?1), ('schema_version', ?2)",
        rusqlite::params![store_id, version.to_string()],
    )
    .unwrap();
    c
}

mod payload {
    use super::super::*;

    #[test]
    fn framed_payload_equals_the_decoded_event() {
        let row = StoredEvent {
            seq: 42,
            id: "01a2-id".into(),
            kind: "stock.low".into(),
            occurred_at: "2026-11-23T10:15:00+08:00".into(),
            data: r#"{"sku":"TEA","on_hand":3,"safety_stock":10}"#.into(),
        };
        let codec = PiiCodec::random();
        let conn = Connection::open_in_memory().unwrap();
        let framed: serde_json::Value =
            serde_json::from_slice(&row.payload(&conn, "sh-001", &codec).unwrap()).unwrap();
        let decoded = serde_json::to_value(row.decode(&conn, "sh-001", &codec).unwrap()).unwrap();
        assert_eq!(framed, decoded);
    }
}

mod pii {
    use super::super::*;
    use crate::domain::event::{Event, EventBody, MemberRegistered};
    use crate::domain::member::{Consent, Profile};

    fn registered(seq: u64, member_id: &str) -> Event {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-23T12:00:00+08:00").unwrap();
        Event {
            id: format!("id-{seq}"),
            store_id: "sh-001".into(),
            seq,
            occurred_at: at,
            body: EventBody::MemberRegistered(MemberRegistered {
                member_id: member_id.into(),
                profile: Some(Profile {
                    name: "张小红".into(),
                    phone: "13912345678".into(),
                    gender: Default::default(),
                    birthday: None,
                    card_no: Some("8800123456".into()),
                }),
                tags: vec![],
                consent: Consent::default(),
                store_id: "sh-001".into(),
                staff_no: "1001".into(),
                created_at: at,
            }),
        }
    }

    #[test]
    fn profiles_are_sealed_in_the_journal_and_unreadable_once_the_key_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let j = crate::journal::Journal::open(dir.path(), "sh-001").unwrap();
        let codec = PiiCodec::random();
        append(j.conn(), &registered(1, "m-1"), "2026-11-23", &codec).unwrap();
        append(j.conn(), &registered(2, "m-2"), "2026-11-23", &codec).unwrap();
        let row = event_at(j.conn(), 1).unwrap().unwrap();
        for plain in ["张小红", "13912345678", "8800123456"] {
            assert!(!row.data.contains(plain), "{plain} in {}", row.data);
        }
        assert!(!codec.is_open(&row.data));
        let payload: serde_json::Value =
            serde_json::from_slice(&row.payload(j.conn(), "sh-001", &codec).unwrap()).unwrap();
        assert_eq!(payload["data"]["profile"]["phone"], "13912345678");

        assert!(codec.forget_member(j.conn(), "m-1").unwrap());
        let e = row.decode(j.conn(), "sh-001", &codec).unwrap();
        let EventBody::MemberRegistered(m) = e.body else {
            panic!("kind")
        };
        assert_eq!(m.profile, None, "erased: the journal copy is unreadable");
        let other = event_at(j.conn(), 2).unwrap().unwrap();
        let e = other.decode(j.conn(), "sh-001", &codec).unwrap();
        assert!(matches!(e.body, EventBody::MemberRegistered(m) if m.profile.is_some()));

        let wrong = PiiCodec::random();
        assert!(matches!(
            other.decode(j.conn(), "sh-001", &wrong),
            Err(JournalError::Corrupt { .. })
        ));
    }

    /// Tags are sealed with the member's key like the profile: HQ receives them open, and once
    /// the member is erased they open as none. Tags written open before that still read.
    #[test]
    fn tags_are_sealed_and_go_with_the_member_key() {
        let dir = tempfile::tempdir().unwrap();
        let j = crate::journal::Journal::open(dir.path(), "sh-001").unwrap();
        let codec = PiiCodec::random();
        let mut e = registered(1, "m-1");
        let EventBody::MemberRegistered(r) = &mut e.body else {
            panic!("kind")
        };
        r.tags = vec!["孕妇".into()];
        append(j.conn(), &e, "2026-11-23", &codec).unwrap();
        let row = event_at(j.conn(), 1).unwrap().unwrap();
        assert!(!row.data.contains("孕妇"), "{}", row.data);
        assert!(!codec.is_open(&row.data));
        let payload: serde_json::Value =
            serde_json::from_slice(&row.payload(j.conn(), "sh-001", &codec).unwrap()).unwrap();
        assert_eq!(payload["data"]["tags"], serde_json::json!(["孕妇"]));
        assert_eq!(row.decode(j.conn(), "sh-001", &codec).unwrap(), e);

        // A row from before tags were sealed.
        let mut old = row.clone();
        let mut doc: serde_json::Value = serde_json::from_str(&row.data).unwrap();
        doc["tags"] = serde_json::json!(["常客"]);
        old.data = doc.to_string();
        let EventBody::MemberRegistered(r) = old.decode(j.conn(), "sh-001", &codec).unwrap().body
        else {
            panic!("kind")
        };
        assert_eq!(r.tags, vec!["常客".to_string()]);

        assert!(codec.forget_member(j.conn(), "m-1").unwrap());
        let EventBody::MemberRegistered(r) = row.decode(j.conn(), "sh-001", &codec).unwrap().body
        else {
            panic!("kind")
        };
        assert_eq!((r.profile, r.tags), (None, vec![]));
    }

    /// A new member sealed ahead (the import) is written without a `Value` tree: the same
    /// bytes as the generic path, tags and consent included, and it reads back.
    #[test]
    fn a_presealed_registration_is_stored_as_the_generic_path_stores_it() {
        let codec = PiiCodec::random();
        let mut e = registered(1, "m-1");
        let EventBody::MemberRegistered(r) = &mut e.body else {
            panic!("kind")
        };
        r.tags = vec!["常客".into(), "a \"quoted\" tag".into()];
        r.consent.marketing = true;
        let profile = r.profile.clone().unwrap();
        let pre = codec.preseal("m-1", &profile, &r.tags).unwrap();
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let direct = crate::journal::Journal::open(a.path(), "sh-001").unwrap();
        let generic = crate::journal::Journal::open(b.path(), "sh-001").unwrap();
        append_with(direct.conn(), &e, "2026-11-23", &codec, Some(&pre)).unwrap();
        let expected = sealed_data(generic.conn(), &e, &codec, Some(&pre)).unwrap();
        let row = event_at(direct.conn(), 1).unwrap().unwrap();
        assert_eq!(row.data, expected);
        assert_eq!(row.decode(direct.conn(), "sh-001", &codec).unwrap(), e);
    }
}

mod sales {
    use super::super::*;
    use crate::domain::event::{Event, EventBody};

    /// A sale goes to the journal straight as JSON (no `Value` on the way): the same document
    /// the generic path writes, and it reads back as the event appended.
    #[test]
    fn a_sale_is_stored_as_the_generic_path_would_and_reads_back() {
        let codec = PiiCodec::random();
        let sale = crate::devices::receipt::tests::sale();
        let e = Event {
            id: "id-1".into(),
            store_id: "sh-001".into(),
            seq: 1,
            occurred_at: sale.created_at,
            body: EventBody::SaleRecorded(Box::new(sale)),
        };
        let dir = tempfile::tempdir().unwrap();
        let journal = crate::journal::Journal::open(dir.path(), "sh-001").unwrap();
        append_with(journal.conn(), &e, "2026-11-23", &codec, None).unwrap();
        let row = event_at(journal.conn(), 1).unwrap().unwrap();
        let generic = sealed_data(journal.conn(), &e, &codec, None).unwrap();
        let as_value = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        assert_eq!(as_value(&row.data), as_value(&generic));
        assert_eq!(row.decode(journal.conn(), "sh-001", &codec).unwrap(), e);
    }
}

mod days {
    use super::super::*;
    use crate::domain::event::{Event, EventBody};

    fn event(seq: u64, day: &str) -> (Event, String) {
        let at = chrono::DateTime::parse_from_rfc3339(&format!("{day}T12:00:00+08:00")).unwrap();
        (
            Event {
                id: format!("id-{seq}"),
                store_id: "sh-001".into(),
                seq,
                occurred_at: at,
                body: EventBody::StockLow {
                    sku: "A".into(),
                    on_hand: 1,
                    safety_stock: 2,
                },
            },
            day.to_string(),
        )
    }

    #[test]
    fn a_day_is_a_range_of_seqs() {
        let dir = tempfile::tempdir().unwrap();
        let j = crate::journal::Journal::open(dir.path(), "sh-001").unwrap();
        let codec = PiiCodec::random();
        for (seq, day) in [
            (1, "2026-11-22"),
            (2, "2026-11-22"),
            (3, "2026-11-23"),
            (4, "2026-11-23"),
            (5, "2026-11-25"),
        ] {
            let (e, d) = event(seq, day);
            append(j.conn(), &e, &d, &codec).unwrap();
        }
        let seqs = |day: &str, after: u64| -> Vec<u64> {
            events_on_day(j.conn(), "stock.low", day, after, 100)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect()
        };
        assert_eq!(seqs("2026-11-22", 0), vec![1, 2]);
        assert_eq!(seqs("2026-11-23", 0), vec![3, 4]);
        assert_eq!(seqs("2026-11-23", 3), vec![4]);
        assert_eq!(seqs("2026-11-24", 0), Vec::<u64>::new());
        assert_eq!(seqs("2026-11-25", 0), vec![5]);
        assert!(
            events_on_day(j.conn(), "sale.recorded", "2026-11-23", 0, 100)
                .unwrap()
                .is_empty()
        );
    }

    fn on_day(c: &Connection, day: &str) -> Vec<u64> {
        events_on_day(c, "stock.low", day, 0, 100)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect()
    }

    fn between(c: &Connection, from: &str, to: &str) -> Vec<u64> {
        let mut out = Vec::new();
        for_events_between(c, &["stock.low"], from, to, |e| {
            out.push(e.seq);
            Ok(())
        })
        .unwrap();
        out
    }

    /// The clock went back across midnight twice: the events of the earlier day written after
    /// the later day began are still that day's, in its list and in its period, and in no
    /// other day's.
    #[test]
    fn a_day_keeps_the_events_written_after_the_clock_went_back() {
        let dir = tempfile::tempdir().unwrap();
        let j = crate::journal::Journal::open(dir.path(), "sh-001").unwrap();
        let codec = PiiCodec::random();
        for (seq, day) in [
            (1, "2026-11-22"),
            (2, "2026-11-23"),
            (3, "2026-11-22"),
            (4, "2026-11-23"),
            (5, "2026-11-24"),
            (6, "2026-11-22"),
            (7, "2026-11-24"),
        ] {
            let (e, d) = event(seq, day);
            append(j.conn(), &e, &d, &codec).unwrap();
        }
        let c = j.conn();
        assert_eq!(on_day(c, "2026-11-22"), vec![1, 3, 6]);
        assert_eq!(on_day(c, "2026-11-23"), vec![2, 4]);
        assert_eq!(on_day(c, "2026-11-24"), vec![5, 7]);
        assert_eq!(between(c, "2026-11-22", "2026-11-23"), vec![1, 3, 6]);
        assert_eq!(between(c, "2026-11-23", "2026-11-24"), vec![2, 4]);
        assert_eq!(between(c, "2026-11-22", "2026-11-24"), vec![1, 2, 3, 4, 6]);
        assert_eq!(between(c, "2026-11-24", "2026-11-25"), vec![5, 7]);
        assert_eq!(between(c, "2026-11-25", "2026-11-26"), Vec::<u64>::new());
    }

    #[test]
    fn another_stores_older_journal_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        drop(super::older_journal(dir.path(), "bj-002", 6));
        let err = crate::journal::Journal::open(dir.path(), "sh-001").err();
        assert!(
            matches!(err, Some(crate::journal::JournalError::WrongStore { .. })),
            "{err:?}"
        );
        let c = Connection::open(dir.path().join(crate::journal::FILE_NAME)).unwrap();
        let version: String = c
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(version, "6", "brought to this schema before being refused");
    }

    /// A journal written before late events were marked: the upgrade finds them.
    #[test]
    fn the_upgrade_finds_the_late_events_written_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let codec = PiiCodec::random();
        {
            let c = super::older_journal(dir.path(), "sh-001", 6);
            // As the journal wrote them then: the event and its day's first `seq`.
            for (seq, day) in [
                (1, "2026-11-22"),
                (2, "2026-11-23"),
                (3, "2026-11-22"),
                (4, "2026-11-24"),
                (5, "2026-11-23"),
            ] {
                let (e, d) = event(seq, day);
                c.execute(
                    "INSERT INTO events (seq, id, kind, occurred_at, day, subject, data)
                     VALUES (?1, ?2, 'stock.low', ?3, ?4, 'A', '{}')",
                    params![seq as i64, e.id, e.occurred_at.to_rfc3339(), d],
                )
                .unwrap();
                c.execute(
                    "INSERT OR IGNORE INTO days (day, first_seq) VALUES (?1, ?2)",
                    params![d, seq as i64],
                )
                .unwrap();
            }
        }
        let j = crate::journal::Journal::open(dir.path(), "sh-001").unwrap();
        let (e, d) = event(6, "2026-11-22");
        append(j.conn(), &e, &d, &codec).unwrap();
        let c = j.conn();
        assert_eq!(on_day(c, "2026-11-22"), vec![1, 3, 6]);
        assert_eq!(on_day(c, "2026-11-23"), vec![2, 5]);
        assert_eq!(on_day(c, "2026-11-24"), vec![4]);
        assert_eq!(between(c, "2026-11-23", "2026-11-24"), vec![2, 5]);
    }
}

mod idempotency {
    use super::super::*;
    use chrono::{DateTime, Utc};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Puts key `key` for a new event `seq`.
    fn put(c: &Connection, seq: i64, key: &str) {
        c.execute(
            "INSERT INTO events (seq, id, kind, occurred_at, day, subject, data)
             VALUES (?1, ?2, 'sale.recorded', '2026-11-01T09:00:00+00:00', '2026-11-01', '', '{}')",
            params![seq, format!("id-{seq}")],
        )
        .unwrap();
        let rec = IdemRecord {
            body_hash: format!("h{seq}"),
            seq: seq as u64,
        };
        idem_put(c, "pos-1", key, &rec, "2026-11-01T09:00:00+00:00").unwrap();
    }

    /// A new journal whose current generation of keys began at `since`.
    fn generation_since(since: &str) -> (tempfile::TempDir, crate::journal::Journal) {
        let dir = tempfile::tempdir().unwrap();
        let journal = crate::journal::Journal::open(dir.path(), "sh-001").unwrap();
        journal
            .conn()
            .execute(
                "UPDATE meta SET value = ?1 WHERE key = 'idempotency_since'",
                [since],
            )
            .unwrap();
        (dir, journal)
    }

    /// A key is kept for at least `idempotency_days` (here 30) and forgotten within twice that,
    /// a whole generation at a time.
    #[test]
    fn keys_are_forgotten_a_generation_at_a_time() {
        let (_dir, journal) = generation_since("2026-11-01T00:00:00Z");
        let c = journal.conn();
        put(c, 1, "a");
        assert_eq!(
            idem_rotate(c, at("2026-11-30T23:00:00Z"), 30).unwrap(),
            None
        );
        // 30 days on: "a" moves to the previous generation and is still known.
        assert_eq!(
            idem_rotate(c, at("2026-12-01T00:00:00Z"), 30).unwrap(),
            Some(0)
        );
        assert_eq!(idem_get(c, "pos-1", "a").unwrap().map(|r| r.seq), Some(1));
        put(c, 2, "b");
        assert_eq!(
            idem_rotate(c, at("2026-12-20T00:00:00Z"), 30).unwrap(),
            None
        );
        assert_eq!(idem_get(c, "pos-1", "a").unwrap().map(|r| r.seq), Some(1));
        // 60 days after "a": its generation goes; "b" (from the next) stays.
        assert_eq!(
            idem_rotate(c, at("2026-12-31T00:00:00Z"), 30).unwrap(),
            Some(1)
        );
        assert_eq!(idem_get(c, "pos-1", "a").unwrap(), None);
        let b = idem_get(c, "pos-1", "b").unwrap().unwrap();
        assert_eq!((b.seq, b.body_hash.as_str()), (2, "h2"));
        // A forgotten key can be used again.
        put(c, 3, "a");
        assert_eq!(idem_get(c, "pos-1", "a").unwrap().map(|r| r.seq), Some(3));
    }

    /// Forgetting a generation frees its pages without deleting row by row (which would write
    /// every leaf page again and hold the ledger for a second with a month of keys), and leaves
    /// foreign keys and secure_delete on for what comes after.
    #[test]
    fn a_generation_is_forgotten_in_one_pass_and_the_pragmas_come_back() {
        let (dir, journal) = generation_since("2026-10-01T00:00:00Z");
        let c = journal.conn();
        let tx = c.unchecked_transaction().unwrap();
        for seq in 1..=5000 {
            put(&tx, seq, &format!("{:x}", scattered(seq)));
        }
        tx.commit().unwrap();
        assert_eq!(
            idem_rotate(c, at("2026-11-01T00:00:00Z"), 30).unwrap(),
            Some(0)
        );
        let _: (i64, i64, i64) = c
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(
            idem_rotate(c, at("2026-12-01T00:00:00Z"), 30).unwrap(),
            Some(5000)
        );
        let wal = std::fs::metadata(dir.path().join("journal.sqlite3-wal"))
            .unwrap()
            .len();
        let frames = wal.saturating_sub(32) / (4096 + 24);
        // 5,000 keys fill ~200 leaf pages; freeing them whole writes the schema, meta and a
        // freelist page or two.
        assert!(frames < 20, "{frames} WAL frames");
        let pragma = |p: &str| -> i64 {
            c.query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!((pragma("foreign_keys"), pragma("secure_delete")), (1, 1));
        assert_eq!(
            idem_get(c, "pos-1", &format!("{:x}", scattered(7))).unwrap(),
            None
        );
    }

    /// Scattered keys, as terminals' UUIDs are.
    fn scattered(n: i64) -> u64 {
        (n as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(17)
    }

    /// Every index is one more page in each sale's commit: the keys have none beside their
    /// primary key (forgetting them needs none, see `idem_rotate`).
    #[test]
    fn the_keys_have_no_index_beside_their_primary_key() {
        let dir = tempfile::tempdir().unwrap();
        let journal = crate::journal::Journal::open(dir.path(), "sh-001").unwrap();
        let indexes: Vec<String> = journal
            .conn()
            .prepare(
                "SELECT name FROM sqlite_schema
                 WHERE type = 'index' AND tbl_name LIKE 'idempotency%' AND sql IS NOT NULL",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(indexes.is_empty(), "{indexes:?}");
    }

    /// A journal written before the generations keeps its keys: they are the current
    /// generation, counted from the upgrade.
    #[test]
    fn keys_from_before_the_generations_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = super::older_journal(dir.path(), "sh-001", 5);
            put(&c, 1, "old");
        }
        let journal = crate::journal::Journal::open(dir.path(), "sh-001").unwrap();
        let c = journal.conn();
        assert_eq!(idem_get(c, "pos-1", "old").unwrap().map(|r| r.seq), Some(1));
        assert_eq!(idem_rotate(c, Utc::now(), 30).unwrap(), None);
        assert_eq!(
            idem_rotate(c, Utc::now() + chrono::Duration::days(31), 30).unwrap(),
            Some(0)
        );
        assert_eq!(idem_get(c, "pos-1", "old").unwrap().map(|r| r.seq), Some(1));
    }
}
