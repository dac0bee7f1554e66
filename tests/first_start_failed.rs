//! A new store's first start that fails after making its cache (the HTTP port taken, the LAN
//! address not up yet: systemd starts it again every 5 s).

mod common;

use common::*;

/// The `sync.requested` events in the journal of `dir/data`: their seq and reason.
fn sync_requests(dir: &std::path::Path) -> Vec<(i64, String)> {
    let journal = rusqlite::Connection::open(dir.join("data/journal.sqlite3")).unwrap();
    let mut st = journal
        .prepare("SELECT seq, data FROM events WHERE kind = 'sync.requested' ORDER BY seq")
        .unwrap();
    st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|row| {
            let (seq, data) = row.unwrap();
            let v: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
            (seq, v["reason"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

/// A box set up afresh under a known store id tells HQ its numbering starts again
/// (`sync.requested` `new_journal`). The first start journaled the config's opening products
/// (a `product.updated` and a `stock.moved` each) first, so HQ got seqs 1, 2, … of the new
/// journal — seqs it already held for the old box — before it was told.
#[tokio::test]
async fn a_new_journal_says_so_with_its_first_event() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let _ = d.health().await;
    d.terminate();
    let asked = sync_requests(dir.path());
    assert_eq!(
        asked.first(),
        Some(&(1, "new_journal".to_string())),
        "the new journal's first events went up before HQ was told its seqs start again"
    );
}

/// The first start of a new store cannot listen (its port taken): it made the cache, marked it
/// until HQ is asked for its data, and stopped. The next start found the mark, moved the new
/// cache aside as damaged and asked HQ with `cache_rebuilt`: HQ was never told that this
/// store's journal begins again at seq 1 (`new_journal`).
#[tokio::test]
async fn a_new_journal_is_said_when_the_first_start_could_not_listen() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap();
    let config = write_config(dir.path(), "");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("127.0.0.1:0", &port.to_string())).unwrap();
    let out = storebox(&["run", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success(), "a start on a taken port ran");
    drop(taken);

    std::fs::write(&config, &text).unwrap();
    let d = Daemon::start_with(dir.path(), &config);
    let _ = d.health().await;
    d.terminate();
    let asked = sync_requests(dir.path());
    assert!(
        asked.first().is_some_and(|(_, r)| r == "new_journal"),
        "the new store's journal never said it begins at seq 1: {asked:?}"
    );
}
