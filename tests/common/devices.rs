//! The daemon's devices as a test sees them: their states in `/v1/devices`, and paper.

use std::time::Duration;

use serde_json::Value;

use super::Daemon;

/// Device `id`'s entry in `/v1/devices` (null when there is none).
pub async fn device_state(d: &Daemon, t: &str, id: &str) -> Value {
    let (_, v) = d.get(t, "/v1/devices").await;
    v["devices"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"] == id).cloned())
        .unwrap_or(Value::Null)
}

/// Waits (`secs` at most) until device `id` is in `state`; its entry in `/v1/devices`.
pub async fn wait_state_for(d: &Daemon, t: &str, id: &str, state: &str, secs: u64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let s = device_state(d, t, id).await;
        if s["state"] == state {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} never became {state}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (10 s at most) until device `id` is in `state`; its entry in `/v1/devices`.
pub async fn wait_state(d: &Daemon, t: &str, id: &str, state: &str) -> Value {
    wait_state_for(d, t, id, state, 10).await
}

/// Whether a line of `paper` holds every one of `parts`.
pub fn has(paper: &storebox::devices::decode::Paper, parts: &[&str]) -> bool {
    paper
        .lines
        .iter()
        .any(|l| parts.iter().all(|p| l.contains(p)))
}

/// A `[[devices]]` entry: terminal pos-1's receipt printer `printer-1` on TCP at `address`,
/// every other setting its default.
pub fn printer_only(address: impl std::fmt::Display) -> String {
    format!(
        r#"
[[devices]]
id = "printer-1"
kind = "printer"
terminal = "pos-1"
transport = "tcp"
address = "{address}"
"#
    )
}
