//! Personal data at rest, through the real binary: no plain personal data in any file of the
//! data directory (UTF-8 or GB18030), none in the log; erasure; backup of a running daemon under
//! load and its restore (the key file's checks: tests/new_store.rs).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use serde_json::{Value, json};

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The files under `dir` that contain `needle` in UTF-8 or in GB18030.
fn holding(dir: &Path, needle: &str) -> Vec<String> {
    let utf8 = needle.as_bytes().to_vec();
    let (gb, _, _) = encoding_rs::GB18030.encode(needle);
    let gb = gb.into_owned();
    let mut out = Vec::new();
    for f in files(dir) {
        let bytes = std::fs::read(&f).unwrap();
        for pat in [&utf8, &gb] {
            if bytes.windows(pat.len()).any(|w| w == pat.as_slice()) {
                out.push(format!("{} ({} bytes)", f.display(), bytes.len()));
                break;
            }
        }
    }
    out
}

/// Members registered by the tests: name, phone, card.
const PEOPLE: [(&str, &str, &str); 4] = [
    ("欧阳明月", "13987654321", "VIP88001234"),
    ("司马长风", "13711112222", "VIP88005678"),
    ("Zhang Wei", "18612345670", "VIP88009012"),
    ("诸葛青云", "15900001111", "VIP88003456"),
];

/// A tag a cashier might write about the person (free text that names them, or their health).
/// The text column every row of `sql` gives.
fn texts(conn: &rusqlite::Connection, sql: &str) -> Vec<String> {
    conn.prepare(sql)
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn tag_of(card: &str) -> String {
    format!("孕妇{}", card.trim_start_matches("VIP"))
}

async fn register_all(d: &Daemon, t: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for (name, phone, card) in PEOPLE {
        ids.push(
            d.register(
                t,
                name,
                phone,
                json!({"card_no": card, "birthday": "1990-05-17", "tags": [tag_of(card)]}),
            )
            .await,
        );
    }
    ids
}

#[tokio::test]
async fn no_personal_data_in_plain_text_on_disk_or_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let ids = register_all(&d, &t).await;
    for (i, id) in ids.iter().enumerate() {
        let (s, v) = d
            .sale(
                &t,
                &json!({"member_id": id, "lines": [{"sku": "TEA", "qty": 1 + i}], "payments": cash(25000 * (1 + i as i64))}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    // Look them up every way a till does, and edit one.
    let tm = d.login(MANAGER).await;
    for (name, phone, card) in PEOPLE {
        assert_eq!(
            d.get(&t, &format!("/v1/members?phone={phone}")).await.0,
            200
        );
        assert_eq!(d.get(&t, &format!("/v1/members?card={card}")).await.0, 200);
        assert_eq!(d.get(&t, &format!("/v1/members?q={name}")).await.0, 200);
    }
    let (s, v) = d
        .send(
            reqwest::Method::PATCH,
            &tm,
            &format!("/v1/members/{}", ids[0]),
            &json!({"phone": "13600001234"}),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = d.get(&tm, &format!("/v1/members/{}", ids[0])).await;
    assert_eq!((s, v["name"].as_str()), (200, Some(PEOPLE[0].0)), "{v}");

    // A backup of the running daemon lands in the data directory too.
    let backup = dir.path().join("data/backups/manual.sbk");
    std::fs::create_dir_all(backup.parent().unwrap()).unwrap();
    let out = storebox(&[
        "backup",
        "--config",
        d.config.to_str().unwrap(),
        backup.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = d.log_text();
    d.terminate();

    let data = dir.path().join("data");
    let mut found = Vec::new();
    for (name, phone, card) in PEOPLE {
        for needle in [name, phone, card, "13600001234"] {
            for f in holding(&data, needle) {
                found.push(format!("{needle:?} in {f}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "personal data in plain text:\n{}",
        found.join("\n")
    );
    assert!(files(&data).iter().any(|f| f.ends_with("journal.sqlite3")));

    // The data is there, sealed: the store key opens it.
    let keys = storebox::security::StoreKeys::load(&data.join("store.key")).unwrap();
    let codec = storebox::pii::PiiCodec::new(Arc::new(keys));
    let conn = rusqlite::Connection::open(data.join("journal.sqlite3")).unwrap();
    let raw: String = conn
        .query_row(
            "SELECT data FROM events WHERE kind = 'member.registered' AND subject = ?1",
            [&ids[1]],
            |r| r.get(0),
        )
        .unwrap();
    let mut doc: Value = serde_json::from_str(&raw).unwrap();
    codec.open(&conn, &ids[1], &mut doc).unwrap();
    assert_eq!(doc["profile"]["name"], PEOPLE[1].0);

    // The log of the whole run: no phones, names, cards or tokens.
    for (name, phone, card) in PEOPLE {
        for needle in [name, phone, card] {
            assert!(!log.contains(needle), "{needle:?} in the log");
        }
    }
    for token in [&t, &tm, &TERMINAL_TOKEN.to_string()] {
        assert!(!log.contains(token.as_str()), "a token in the log");
    }
}

#[tokio::test]
async fn an_erased_member_is_gone_from_the_api_and_the_disk_but_still_counts() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let ids = register_all(&d, &t).await;
    let gone = &ids[2];
    for qty in [1, 2] {
        let (s, v) = d
            .sale(&t, &json!({"member_id": gone, "lines": [{"sku": "MILK", "qty": qty}], "payments": cash(1290 * qty)}))
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let (_, before) = d.get(&t, &format!("/v1/members/{gone}")).await;

    // A cashier may not erase; a manager may.
    let (s, _) = d.erase(&t, gone).await;
    assert_eq!(s, 403);
    let tm = d.login(MANAGER).await;
    let (s, v) = d.erase(&tm, gone).await;
    assert_eq!(s, 204, "{v}");

    let (_, after) = d.get(&tm, &format!("/v1/members/{gone}")).await;
    assert_eq!(after["name"], Value::Null);
    assert_eq!(after["phone"], Value::Null);
    assert_eq!(after["card_no"], Value::Null);
    assert_eq!(after["birthday"], Value::Null);
    assert_eq!(after["erased"], true);
    assert_eq!(after["tags"], json!([]));
    // The anonymous counters stay for reports.
    assert_eq!(after["total_spend"], before["total_spend"]);
    assert_eq!(after["visits"], before["visits"]);
    let (s, v) = d
        .get(&tm, &format!("/v1/members?phone={}", PEOPLE[2].1))
        .await;
    assert_eq!(
        (s, v["members"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );
    let sales = d.sales_on(&tm, &store_today().to_string()).await;
    let theirs: Vec<&Value> = sales
        .iter()
        .filter(|s| s["member_id"] == gone.as_str())
        .collect();
    assert_eq!(theirs.len(), 2, "past sales still count");
    // The others are untouched.
    let (_, other) = d.get(&tm, &format!("/v1/members/{}", ids[3])).await;
    assert_eq!(other["name"], PEOPLE[3].0);

    // The scrub empties the write-ahead logs once nobody reads them.
    let data = dir.path().join("data");
    let mut scrubbed = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if d.log_text().matches("write-ahead log scrubbed").count() >= 2 {
            scrubbed = true;
            break;
        }
    }
    assert!(scrubbed, "no scrub:\n{}", d.log_text());
    d.terminate();

    let conn = rusqlite::Connection::open(data.join("journal.sqlite3")).unwrap();
    let keys: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM member_keys WHERE member_id = ?1",
            [gone],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(keys, 0, "the data key survived");
    // The journal's copies of the profile no longer open, even with the store key.
    let store_keys = storebox::security::StoreKeys::load(&data.join("store.key")).unwrap();
    let codec = storebox::pii::PiiCodec::new(Arc::new(store_keys));
    let raw: String = conn
        .query_row(
            "SELECT data FROM events WHERE kind = 'member.registered' AND subject = ?1",
            [gone],
            |r| r.get(0),
        )
        .unwrap();
    let mut doc: Value = serde_json::from_str(&raw).unwrap();
    codec.open(&conn, gone, &mut doc).unwrap();
    assert_eq!(doc["profile"], Value::Null);
    assert_eq!(doc["tags"], json!([]));
    let (name, phone, card) = PEOPLE[2];
    for needle in [name, phone, card, &tag_of(card)] {
        assert!(holding(&data, needle).is_empty(), "{needle:?} on disk");
    }
}

/// The hash kept with a registration's `Idempotency-Key` comes from the name and phone: the
/// member's erasure forgets that key, and other registrations keep theirs.
#[tokio::test]
async fn an_erasure_forgets_the_idempotency_key_of_the_registration() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let mut ids = Vec::new();
    for (i, (name, phone, _)) in PEOPLE.iter().take(2).enumerate() {
        let body = json!({"name": name, "phone": phone});
        let key = format!("reg-{i}");
        let (s, v) = d
            .send(reqwest::Method::POST, &t, "/v1/members", &body, Some(&key))
            .await;
        assert_eq!(s, 201, "{v}");
        // A retry is answered from the key.
        let (s, again) = d
            .send(reqwest::Method::POST, &t, "/v1/members", &body, Some(&key))
            .await;
        assert_eq!((s, &again["id"]), (200, &v["id"]), "{again}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let tm = d.login(MANAGER).await;
    let (s, _) = d
        .send(
            reqwest::Method::DELETE,
            &tm,
            &format!("/v1/members/{}", ids[0]),
            &Value::Null,
            None,
        )
        .await;
    assert_eq!(s, 204);
    d.terminate();
    let conn = rusqlite::Connection::open(dir.path().join("data/journal.sqlite3")).unwrap();
    let keys = texts(
        &conn,
        "SELECT key FROM idempotency UNION ALL SELECT key FROM idempotency_previous",
    );
    assert_eq!(keys, vec!["reg-1".to_string()]);
    let noted = texts(&conn, "SELECT member_id FROM member_idempotency");
    assert_eq!(noted, vec![ids[1].clone()]);
}

#[tokio::test]
async fn backup_under_load_restores_members_sales_and_outbox_and_numbering_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = Arc::new(Daemon::start_in(dir.path(), ""));
    let t = d.login(CASHIER).await;
    let ids = register_all(&d, &t).await;

    // Sales keep coming while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (d, t, stop, member) = (d.clone(), t.clone(), stop.clone(), ids[0].clone());
        tokio::spawn(async move {
            let mut sales = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (s, v) = d
                    .sale(&t, &json!({"member_id": member, "lines": [{"sku": "MILK", "qty": 1}], "payments": cash(1290)}))
                    .await;
                assert_eq!(s, 201, "{v}");
                sales.push(
                    v["sale"]["id"]
                        .as_str()
                        .or(v["id"].as_str())
                        .unwrap()
                        .to_string(),
                );
            }
            sales
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let file = dir.path().join("store.sbk");
    let config = d.config.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking({
        let (config, file) = (config.clone(), file.clone());
        move || storebox(&["backup", "--config", &config, file.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let sales = load.await.unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    let backup_seq: u64 = report
        .split("events up to seq ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{report}"));
    let original_last = d.health().await["journal"]["last_seq"].as_u64().unwrap();
    assert!(
        original_last > backup_seq,
        "the load went on after the backup"
    );
    let Ok(d) = Arc::try_unwrap(d) else {
        panic!("daemon still shared")
    };
    d.terminate();

    // A new box: the same config, an empty data directory holding only the store key.
    let (dir2, config2) = new_box(&dir.path().join("data/store.key"), "");
    let config2 = config2.to_str().unwrap();
    let out = storebox(&[
        "restore",
        "--config",
        config2,
        "--hq-last-seq",
        "0",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("next event gets seq {}", backup_seq + 2)),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Not twice into the same directory.
    let again = storebox(&[
        "restore",
        "--config",
        config2,
        "--hq-last-seq",
        "0",
        file.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    let d = Daemon::start_with(dir2.path(), Path::new(config2));
    let t = d.login(CASHIER).await;
    for (id, (name, _, _)) in ids.iter().zip(PEOPLE) {
        let (s, v) = d.get(&t, &format!("/v1/members/{id}")).await;
        assert_eq!((s, v["name"].as_str()), (200, Some(name)), "{v}");
    }
    // The sales in the backup are a prefix of those recorded, all of it and nothing else.
    let present: Vec<bool> = {
        let mut p = Vec::new();
        for id in &sales {
            p.push(d.get(&t, &format!("/v1/sales/{id}")).await.0 == 200);
        }
        p
    };
    let kept = present.iter().take_while(|p| **p).count();
    assert!(kept > 0, "no sale in the backup");
    assert!(
        present[kept..].iter().all(|p| !p),
        "a gap in the restored sales"
    );
    let (_, m) = d.get(&t, &format!("/v1/members/{}", ids[0])).await;
    assert_eq!(
        m["visits"].as_u64(),
        Some(kept as u64),
        "the member's counters match the sales"
    );
    // The outbox: nothing was acknowledged, everything is still to send.
    let h = d.health().await;
    let last = h["journal"]["last_seq"].as_u64().unwrap();
    assert!(last > backup_seq);
    assert_eq!(h["uplink"]["backlog"].as_u64(), Some(last));
    // The next sale's seq follows the last one.
    let (s, v) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "RICE", "qty": 1}], "payments": cash(8990)}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        d.health().await["journal"]["last_seq"].as_u64(),
        Some(last + 1)
    );
    d.terminate();

    // HQ already had events the backup lacks: numbering goes on after HQ's, and the new box
    // sends HQ what follows.
    let broker_dir = tempfile::tempdir().unwrap();
    let broker = common::mqtt::Broker::start(broker_dir.path());
    let hq_side = common::mqtt::Hq::connect(broker.port, "sh-001").await;
    let (dir3, config3) = new_box(
        &dir.path().join("data/store.key"),
        &broker.uplink_config(""),
    );
    let hq = original_last.to_string();
    let out = storebox(&[
        "restore",
        "--config",
        config3.to_str().unwrap(),
        "--hq-last-seq",
        &hq,
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = Daemon::start_with(dir3.path(), &config3);
    let h = d.health().await;
    let last = h["journal"]["last_seq"].as_u64().unwrap();
    assert!(
        last > original_last,
        "{last} must follow HQ's {original_last}"
    );
    assert!(
        h["uplink"]["backlog"].as_u64() <= Some(last - original_last),
        "only the events after HQ's are to send: {h}"
    );
    let t = d.login(CASHIER).await;
    let (s, v) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "RICE", "qty": 1}], "payments": cash(8990)}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    common::mqtt::wait_for(10, "journal.restored and the new sale at HQ", || {
        let events = hq_side.events();
        events.iter().any(|e| {
            e["kind"] == "journal.restored" && e["seq"].as_u64() == Some(original_last + 1)
        }) && events.iter().any(|e| e["data"]["id"] == v["id"])
    })
    .await;
    assert!(
        hq_side
            .events()
            .iter()
            .all(|e| e["seq"].as_u64() > Some(original_last)),
        "nothing HQ had is sent again"
    );
    // Nor is an audit position HQ holds from the original box used again: the chain goes on
    // after a gap the restore's own entry declares, and still verifies.
    let original_n: u64 = rusqlite::Connection::open(dir.path().join("data/journal.sqlite3"))
        .unwrap()
        .query_row("SELECT MAX(n) FROM audit", [], |r| r.get::<_, i64>(0))
        .unwrap() as u64;
    let audits: Vec<Value> = hq_side
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "audit.recorded")
        .collect();
    assert!(
        audits
            .iter()
            .any(|e| e["data"]["action"] == "journal.restore"),
        "{audits:?}"
    );
    assert!(
        audits
            .iter()
            .all(|e| e["data"]["n"].as_u64() > Some(original_n)),
        "an audit position used twice (the original box reached {original_n}): {audits:?}"
    );
    d.terminate();
    let out = storebox(&["audit", "verify", "--config", config3.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
