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

/// The config of one serial scanner, `scanner-1` at pos-1, at `dir/scanner` (pointed at a
/// pseudo-terminal by [`store_with_scanner`]).
pub fn scanner_config(dir: &std::path::Path) -> String {
    format!(
        "\n[[devices]]\nid = \"scanner-1\"\nkind = \"scanner\"\nterminal = \"pos-1\"\n\
         transport = \"serial\"\npath = \"{}\"\nsuffix = \"cr\"\n",
        dir.join("scanner").display()
    )
}

/// A store in `dir` with one scanner on a pseudo-terminal (and `extra` config): the scanner's
/// end and the daemon. The scanner is not yet known to be ready.
pub fn store_with_scanner(dir: &std::path::Path, extra: &str) -> (super::hw::Pty, Daemon) {
    let scanner = super::hw::Pty::open();
    super::hw::point(&dir.join("scanner"), &scanner.slave);
    let d = Daemon::start_in(dir, &format!("{}{extra}", scanner_config(dir)));
    (scanner, d)
}
