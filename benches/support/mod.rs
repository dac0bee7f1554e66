//! What the benchmarks share: starting the release daemon, logging in, percentiles.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The terminal token every benchmark config uses.
pub const TOKEN: &str = "bench-terminal-token-0001";

/// An environment variable as a number, or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The `[store]`, `[http]`, `[storage]`, terminal, cashier and one product of a bench config.
pub fn config_head(data: &Path) -> String {
    format!(
        r#"
[store]
id = "bench-001"
name = "压测店"
environment = "development"
[http]
listen = "127.0.0.1:0"
[storage]
dir = "{}"
[[terminals]]
id = "pos-1"
token = "{TOKEN}"
[[staff]]
staff_no = "1001"
name = "收银员"
role = "cashier"
pin = "1111"
[[products]]
sku = "MILK"
name = "纯牛奶 1L"
price = 1290
barcodes = ["6901234567915"]
stock = 1000000
"#,
        data.display()
    )
}

/// The release daemon, started with a config.
pub struct Daemon {
    pub child: Child,
    pub base: String,
    /// From spawning the process to its "listening" line.
    pub startup: Duration,
    /// When it listened.
    listening: Instant,
    /// Hears each "morning automation done" line.
    automation: std::sync::mpsc::Receiver<()>,
}

impl Daemon {
    /// Waits (at most `limit`) for the daemon's morning automation run to finish; how long
    /// it took since the daemon listened, or `None` if it did not finish in time.
    pub fn wait_automation(&self, limit: Duration) -> Option<Duration> {
        self.automation
            .recv_timeout(limit)
            .ok()
            .map(|()| self.listening.elapsed())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `storebox run --config <config>` and waits for it to listen.
pub fn start_daemon(config: &Path) -> Daemon {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_storebox"))
        .args(["run", "--config"])
        .arg(config)
        .env(
            "RUST_LOG",
            "warn,storebox::app=info,storebox::automation=info",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn storebox");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, automation) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("morning automation done") {
                let _ = done_tx.send(());
            } else if let Some(i) = line.find("listening on http://") {
                let addr = line[i + 20..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("storebox did not start");
    Daemon {
        startup: started.elapsed(),
        listening: Instant::now(),
        child,
        base: format!("http://{addr}"),
        automation,
    }
}

/// Logs the cashier in on pos-1; returns the session token.
pub async fn login(base: &str) -> String {
    let v: Value = reqwest::Client::new()
        .post(format!("{base}/v1/sessions"))
        .bearer_auth(TOKEN)
        .json(&json!({"staff_no": "1001", "pin": "1111"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login json");
    v["token"].as_str().expect("token").to_string()
}

/// The `p` quantile of sorted values.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Resident memory of a process, MiB.
pub fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Writes `n` events built by `body(i, seq, now)` straight into a new store's journal (in
/// large transactions), then projects them into the cache as the daemon would at start-up.
/// Returns the encoded size of the last event.
pub fn seed_journal(
    dir: &Path,
    config: &storebox::config::Config,
    n: u64,
    mut body: impl FnMut(
        u64,
        u64,
        chrono::DateTime<chrono::FixedOffset>,
    ) -> storebox::domain::event::EventBody,
) -> usize {
    use storebox::journal::{Journal, store};
    let mut journal = Journal::open(dir, &config.store.id).expect("journal");
    let keys = storebox::app::load_keys(config).expect("store key");
    let codec = storebox::pii::PiiCodec::new(std::sync::Arc::new(keys));
    let now = chrono::Utc::now()
        .with_timezone(&config.store.timezone)
        .fixed_offset();
    let day = now.date_naive().to_string();
    let mut seq = journal.last_seq();
    let mut size = 0;
    let mut i = 0;
    while i < n {
        let tx = journal.conn_mut().transaction().expect("tx");
        for _ in 0..(n - i).min(20_000) {
            seq += 1;
            let event = storebox::domain::event::Event {
                id: uuid::Uuid::now_v7().to_string(),
                store_id: config.store.id.clone(),
                seq,
                occurred_at: now,
                body: body(i, seq, now),
            };
            size = serde_json::to_vec(&event).map(|v| v.len()).unwrap_or(0);
            store::append(&tx, &event, &day, &codec).expect("append");
            i += 1;
        }
        tx.commit().expect("commit");
    }
    journal.resync_seq().expect("seq");
    journal
        .conn()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    let (_, cache, _) =
        storebox::cache::Cache::open(dir, config.storage.cache_capacity_mb, codec).expect("cache");
    // As the daemon rebuilds a cache: index entries deferred and written sorted at the end.
    let t = std::time::Instant::now();
    cache.begin_bulk().expect("bulk");
    storebox::ledger::replay(
        &journal,
        &cache,
        &storebox::ledger::StoreSettings::from_config(config),
    )
    .expect("replay");
    cache.finish_bulk().expect("bulk");
    cache.flush().expect("flush");
    eprintln!(
        "cache built from the journal's {seq} events in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    size
}
