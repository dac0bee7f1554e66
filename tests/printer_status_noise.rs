//! A printer that answers DLE EOT and lets a stray byte (an XON of software flow control) come
//! before one of its replies: the byte is not a reply, and the reply that follows it is.

mod common;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::devices::{device_state, printer_only, wait_state};
use common::{CASHIER, Daemon, cash};
use serde_json::json;

/// A TCP printer that answers every DLE EOT with "all fine" (0x12); after its first answer,
/// an XON (0x11) goes just before each reply — the race of a flow-controlled printer whose
/// buffer drained while it was asked. Returns its address and what it received.
fn xon_before_replies() -> (std::net::SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    // Counted over connections: storebox opens a new one for each batch.
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(mut sock) = sock else { return };
            let (sink, answered) = (sink.clone(), answered.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut tail: Vec<u8> = Vec::new();
                loop {
                    let n = match sock.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                    tail.extend_from_slice(&buf[..n]);
                    let chunk = std::mem::take(&mut tail);
                    tail = chunk[chunk.len().saturating_sub(2)..].to_vec();
                    for w in chunk.windows(3) {
                        if w[0] == 0x10 && w[1] == 0x04 {
                            let before = answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let reply: &[u8] = if before < 2 { &[0x12] } else { &[0x11, 0x12] };
                            let _ = sock.write_all(reply);
                        }
                    }
                }
            });
        }
    });
    (addr, received)
}

/// Before: the XON was read as the reply, was not a status, and a printer known to answer was
/// then taken for silent — reported offline ("no longer answers its status") with its receipt
/// held, on every try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xon_before_a_status_reply_does_not_make_an_answering_printer_offline() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, received) = xon_before_replies();
    let config = printer_only(addr);
    let d = Daemon::start_in(dir.path(), &config);
    let t = d.login(CASHIER).await;
    wait_state(&d, &t, "printer-1", "ready").await;
    for n in 1..=2 {
        let (s, sale) = d
            .sale(
                &t,
                &json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(2_000)}),
            )
            .await;
        assert_eq!(s, 201, "{sale}");
        let deadline = std::time::Instant::now() + Duration::from_secs(8);
        loop {
            let cuts = storebox::devices::decode::decode(&received.lock().unwrap()).cuts;
            if cuts >= n {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "receipt {n} never printed: {}",
                device_state(&d, &t, "printer-1").await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let st = device_state(&d, &t, "printer-1").await;
    assert_eq!(st["state"], "ready", "{st}");
    d.terminate();
}
