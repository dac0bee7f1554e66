//! A terminal's event stream across a Wi-Fi drop: each event carries an `id:`, and a terminal
//! reconnecting with `Last-Event-ID` (as every SSE client does by itself) gets the scans and
//! card reads of its till made while it was away, once, and not the ones it already had; and
//! a SIGTERM with many terminals' streams open stops the daemon promptly.

mod common;

use std::time::{Duration, Instant};

use common::devices::{store_with_scanner, wait_state};
use common::{CASHIER, Daemon, POS2, login_status};
use serde_json::Value;

/// One event off a raw stream: its `id:` (if any), `event:` and data.
#[derive(Debug, Clone)]
struct Sse {
    id: Option<String>,
    kind: String,
    data: Value,
}

/// Reads `resp` until an event whose data satisfies `pred` (or `secs` pass); every event read.
async fn read_until(
    resp: &mut reqwest::Response,
    secs: u64,
    pred: impl Fn(&Sse) -> bool,
) -> Vec<Sse> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut text, mut out) = (String::new(), Vec::new());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Ok(Some(chunk))) = tokio::time::timeout(left, resp.chunk()).await else {
            return out;
        };
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let (mut id, mut kind, mut data) = (None, String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("event:") {
                    kind = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if kind.is_empty() {
                continue;
            }
            let e = Sse {
                id,
                kind,
                data: serde_json::from_str(&data).unwrap_or(Value::Null),
            };
            let done = pred(&e);
            out.push(e);
            if done {
                return out;
            }
        }
    }
}

async fn open(d: &Daemon, token: &str, last: Option<&str>) -> reqwest::Response {
    let mut req = d
        .client
        .get(d.url("/v1/events"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(600));
    if let Some(last) = last {
        req = req.header("Last-Event-ID", last);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_made_while_the_terminal_was_away_arrive_when_it_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let (mut scanner, d) = store_with_scanner(dir.path(), "");
    let t = d.login(CASHIER).await;
    wait_state(&d, &t, "scanner-1", "ready").await;

    let mut stream = open(&d, &t, None).await;
    scanner.send(b"6901234567892\r");
    let got = read_until(&mut stream, 10, |e| e.data["code"] == "6901234567892").await;
    let first = got.last().expect("the first scan");
    assert_eq!(first.kind, "scan");
    let last_id = first
        .id
        .clone()
        .expect("an event without an id: cannot resume");

    // The Wi-Fi drops: the stream is gone; the cashier scans twice meanwhile.
    drop(stream);
    tokio::time::sleep(Duration::from_millis(300)).await;
    scanner.send(b"ABC-1\r");
    scanner.send(b"ABC-2\r");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = d.get(&t, "/v1/devices").await;
        let handled = v["devices"][0]["handled"].as_u64().unwrap_or(0);
        if handled >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "scans not read: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Back: the two scans of the gap arrive, in order, and the one already shown does not.
    let mut stream = open(&d, &t, Some(&last_id)).await;
    let got = read_until(&mut stream, 10, |e| e.data["code"] == "ABC-2").await;
    let codes: Vec<&str> = got
        .iter()
        .filter(|e| e.kind == "scan")
        .filter_map(|e| e.data["code"].as_str())
        .collect();
    assert_eq!(codes, ["ABC-1", "ABC-2"], "after a reconnect: {got:?}");
    // And it goes on live.
    scanner.send(b"ABC-3\r");
    let got = read_until(&mut stream, 10, |e| e.data["code"] == "ABC-3").await;
    assert!(got.iter().any(|e| e.data["code"] == "ABC-3"), "{got:?}");

    // Another till reconnecting with the same id hears none of pos-1's scans.
    let (s, r, _) = login_status(&d, POS2, CASHIER.0, CASHIER.1).await;
    assert_eq!(s, 201, "{r}");
    let t2 = r["token"].as_str().unwrap().to_string();
    let mut other = open(&d, &t2, Some(&last_id)).await;
    let got = read_until(&mut other, 2, |_| false).await;
    assert!(got.iter().all(|e| e.kind != "scan"), "pos-2 got {got:?}");
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_with_twenty_streams_open_is_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let mut streams = Vec::new();
    for _ in 0..20 {
        streams.push(open(&d, &t, None).await);
    }
    let started = Instant::now();
    let code = d.terminate();
    // The grace for unfinished requests is 20 s: streams must not use it up.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopping took {:?} with streams open",
        started.elapsed()
    );
    assert_eq!(code, Some(0));
    drop(streams);
}

/// A till that has heard nothing of its own yet (the first scan of the day made while its
/// Wi-Fi was down) resumes too: the stream gives it an id to come back with from the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_till_that_heard_nothing_yet_gets_what_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut scanner, d) = store_with_scanner(dir.path(), "");
    let t = d.login(CASHIER).await;
    wait_state(&d, &t, "scanner-1", "ready").await;

    let mut stream = open(&d, &t, None).await;
    // What an SSE client keeps as its last event id, from what arrived before the drop.
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && !text.contains("\n\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Ok(Ok(Some(c))) = tokio::time::timeout(left, stream.chunk()).await {
            text.push_str(&String::from_utf8_lossy(&c));
        }
    }
    let last_id = text
        .lines()
        .filter_map(|l| l.strip_prefix("id:"))
        .map(|v| v.trim().to_string())
        .next_back();
    drop(stream);
    scanner.send(b"QUIET-1\r");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut stream = open(&d, &t, last_id.as_deref()).await;
    let got = read_until(&mut stream, 5, |e| e.data["code"] == "QUIET-1").await;
    assert!(
        got.iter().any(|e| e.data["code"] == "QUIET-1"),
        "the scan made while away was lost (kept id {last_id:?}): {got:?}"
    );
    d.terminate();
}
