//! Scanner benchmark (issue 4): `cargo bench --bench devices`.
//!
//! A scanner on a pseudo-terminal: one barcode at a time is written to the pty, and the time
//! until the matching `scan` event (with its product looked up) arrives on the terminal's
//! `GET /v1/events` stream is measured. Prints p50, p99 and the worst case.
//!
//! Environment: `BENCH_SCANS` (default 2000).

use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "../tests/common/hw.rs"]
mod hw;
mod support;

use support::{config_head, env_or, login, pct, start_daemon};

fn main() {
    let scans = env_or("BENCH_SCANS", 2000) as usize;
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-devices");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("bench dir");
    let mut pty = hw::Pty::open();
    let link = root.join("scanner");
    hw::point(&link, &pty.slave);
    let config = root.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[[devices]]\nid = \"scanner-1\"\nkind = \"scanner\"\nterminal = \"pos-1\"\n\
             transport = \"serial\"\npath = \"{}\"\nbaud = 115200\nsuffix = \"cr\"\n",
            config_head(&root.join("data")),
            link.display()
        ),
    )
    .expect("config");
    let daemon = start_daemon(&config);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let latencies = rt.block_on(async {
        let client = reqwest::Client::new();
        let token = login(&daemon.base).await;
        // Wait for the scanner to be open.
        for _ in 0..400 {
            let v: Value = client
                .get(format!("{}/v1/devices", daemon.base))
                .bearer_auth(&token)
                .send()
                .await
                .expect("devices")
                .json()
                .await
                .expect("devices json");
            if v["devices"][0]["state"] == "ready" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let events = hw::Events::open(&client, &daemon.base, &token).await;
        let mut lat = Vec::with_capacity(scans);
        for i in 0..scans {
            let sent = Instant::now();
            pty.send(b"6901234567915\r");
            loop {
                let got = events.all_timed();
                let scans_seen = got.iter().filter(|(k, _, _)| k == "scan").count();
                if scans_seen > i {
                    let at = got
                        .iter()
                        .filter(|(k, _, _)| k == "scan")
                        .nth(i)
                        .map(|(_, _, t)| *t);
                    if let Some(at) = at {
                        lat.push(at.saturating_duration_since(sent).as_secs_f64() * 1000.0);
                    }
                    break;
                }
                assert!(
                    sent.elapsed() < Duration::from_secs(5),
                    "scan {i} never arrived"
                );
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        lat
    });
    let mut lat = latencies;
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    println!();
    println!(
        "storebox scanner benchmark — pty at 115200 baud, {} scans, one at a time",
        lat.len()
    );
    println!(
        "barcode written → scan event on the terminal's stream: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  (goal p99 < 50 ms)",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
}
