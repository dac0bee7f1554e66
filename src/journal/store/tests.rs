//! Tests of the journal's statements: the payload HQ receives, sealed personal data, days.

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
        let pre = codec.preseal("m-1", &profile).unwrap();
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
}

mod idempotency {
    use super::super::*;

    /// Expired keys go, the others stay, and the purge finds them through the age index
    /// instead of reading every key (it runs at start and hourly on the ledger thread).
    #[test]
    fn expired_keys_are_purged_through_the_age_index() {
        let dir = tempfile::tempdir().unwrap();
        let journal = crate::journal::Journal::open(dir.path(), "sh-001").unwrap();
        let c = journal.conn();
        for (seq, key, at) in [
            (1, "old", "2026-01-01T09:00:00+00:00"),
            (2, "recent", "2026-11-30T09:00:00+00:00"),
            (3, "today", "2026-12-02T09:00:00+00:00"),
        ] {
            c.execute(
                "INSERT INTO events (seq, id, kind, occurred_at, day, subject, data)
                 VALUES (?1, ?2, 'sale.recorded', ?3, '2026-12-02', '', '{}')",
                params![seq, format!("id-{seq}"), at],
            )
            .unwrap();
            let rec = IdemRecord {
                body_hash: "h".into(),
                seq: seq as u64,
            };
            idem_put(c, "pos-1", key, &rec, at).unwrap();
        }
        let plan: Vec<String> = c
            .prepare("EXPLAIN QUERY PLAN DELETE FROM idempotency WHERE created_at < ?1")
            .unwrap()
            .query_map(["2026-11-01"], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(|p| p.contains("idempotency_created")),
            "{plan:?}"
        );
        assert_eq!(idem_purge(c, "2026-11-01T00:00:00+00:00").unwrap(), 1);
        assert!(idem_get(c, "pos-1", "old").unwrap().is_none());
        assert!(idem_get(c, "pos-1", "recent").unwrap().is_some());
        assert!(idem_get(c, "pos-1", "today").unwrap().is_some());
    }
}
