//! Terminals that give up on a request and close their connection before the answer: what
//! the request had begun is seen through or taken back, never left half done.

mod common;

use std::time::Duration;

use common::{CASHIER, Daemon, TERMINAL_TOKEN};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Before: a login whose client closed its connection right after sending it (a terminal's
/// HTTP client giving up, a cashier tapping again) was dropped by hyper — which drops a
/// request once it reads the end of the client's stream — while its attempt was being counted,
/// before anything could take the attempt back. Six such logins with the right PIN locked the
/// cashier's staff number out for 15 minutes ("too many wrong PINs").
#[tokio::test]
async fn logins_whose_client_hangs_up_are_not_counted_as_wrong_pins() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let login = json!({"staff_no": CASHIER.0, "pin": CASHIER.1}).to_string();
    let request = format!(
        "POST /v1/sessions HTTP/1.1\r\nHost: box\r\nAuthorization: Bearer {TERMINAL_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{login}",
        login.len()
    );
    // Sent and closed at once, several together: the daemon reads each request with the end of
    // its stream behind it, as it does when it is busy and the terminal has given up.
    for _ in 0..3 {
        let mut conns = Vec::new();
        for _ in 0..6 {
            let mut conn = TcpStream::connect(d.addr).await.unwrap();
            conn.write_all(request.as_bytes()).await.unwrap();
            conn.shutdown().await.unwrap();
            conns.push(conn);
        }
        drop(conns);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Let whatever the dropped logins left behind settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = d
        .client
        .post(d.url("/v1/sessions"))
        .bearer_auth(TERMINAL_TOKEN)
        .body(login)
        .header("Content-Type", "application/json")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    assert_eq!(status, 201, "the right PIN refused: {body}");
    d.terminate();
}
