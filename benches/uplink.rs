//! Uplink benchmark (issue 3): `cargo bench --bench uplink`. Needs Mosquitto
//! (`apt-get install mosquitto`); the bench starts its own on a free loopback port.
//!
//! 1. A bare QoS 1 publisher (rumqttc, same in-flight window, no journal) publishes as many
//!    messages of a sale event's size as the backlog holds: messages per second.
//! 2. A store whose journal holds a backlog of 100,000 events starts with the uplink on: events
//!    per second until the broker has acknowledged them all, as a ratio of (1).
//! 3. With the store online and an HQ subscriber, sales one at a time: time from the sale's
//!    HTTP answer to its arrival at HQ, p50 and p99.
//!
//! Environment: `BENCH_EVENTS` (default 100000), `BENCH_SALES` (default 400).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde_json::{Value, json};
use storebox::config::Config;
use storebox::domain::catalog::Product;
use storebox::domain::event::EventBody;
use storebox::domain::pricing::{CartItem, PricingInput, price};
use storebox::domain::sale::{Payment, PaymentMethod, SaleContext, build_sale, settle};
use support::{TOKEN, env_or, free_port, pct, start_daemon};

mod support;

const WINDOW: u16 = 32;
struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_broker(dir: &Path, port: u16) -> Broker {
    let conf = dir.join("mosquitto.conf");
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root\n"
    } else {
        ""
    };
    std::fs::write(
        &conf,
        format!("{user}listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"),
    )
    .expect("broker config");
    let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("mosquitto is not installed (apt-get install mosquitto)");
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Broker(child)
}

fn config_text(data: &Path, port: u16) -> String {
    format!(
        "{}\n[uplink]\nenabled = true\nhost = \"127.0.0.1\"\nport = {port}\ninflight = {WINDOW}\n",
        support::config_head(data)
    )
}

fn product(sku: &str, name: &str, price: i64) -> Product {
    Product {
        sku: sku.into(),
        name: name.into(),
        barcodes: vec![],
        price,
        promo: None,
        category: None,
        unit: None,
        member_discount: true,
        active: true,
        version: 0,
        seq: 0,
    }
}

/// Writes `n` realistic sale events (three lines each) to a new journal and projects them.
fn seed(data: &Path, config: &Config, n: u64) -> usize {
    let products = [
        product("MILK", "纯牛奶 1L", 1290),
        product("TEA", "西湖龙井 250g", 25_000),
        product("RICE", "五常大米 5kg", 8990),
    ];
    let rules = config.membership.clone();
    support::seed_journal(data, config, n, |_, seq, now| {
        let items: Vec<CartItem> = products
            .iter()
            .map(|p| CartItem { product: p, qty: 2 })
            .collect();
        let quote = price(&PricingInput {
            items: &items,
            member: None,
            coupons: &[],
            redeem_points: 0,
            rules: &rules,
            now,
            rounding: Default::default(),
        })
        .expect("price");
        let payments = vec![Payment {
            method: PaymentMethod::Cash,
            amount: quote.total + 1000,
        }];
        let (paid, change) = settle(quote.total, &payments).expect("settle");
        EventBody::SaleRecorded(Box::new(build_sale(
            SaleContext {
                id: uuid::Uuid::now_v7().to_string(),
                seq,
                store_id: config.store.id.clone(),
                now,
                staff_no: "1001".into(),
                terminal_id: "pos-1".into(),
            },
            quote,
            payments,
            paid,
            change,
            None,
            &rules,
        )))
    })
}

/// Publishes `n` QoS 1 messages of `size` bytes with a window of `WINDOW`; messages per second.
async fn bare_publisher(port: u16, n: u64, size: usize) -> f64 {
    let mut opts = MqttOptions::new("bench-bare", "127.0.0.1", port);
    opts.set_inflight(WINDOW)
        .set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = AsyncClient::new(opts, usize::from(WINDOW) * 2);
    let payload = vec![b'x'; size];
    let started = Instant::now();
    let (mut sent, mut acked, mut outstanding) = (0u64, 0u64, 0u64);
    loop {
        while sent < n && outstanding < u64::from(WINDOW) {
            if client
                .try_publish(
                    "storebox/bench/bare",
                    QoS::AtLeastOnce,
                    false,
                    payload.clone(),
                )
                .is_err()
            {
                break;
            }
            sent += 1;
            outstanding += 1;
        }
        match el.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                acked += 1;
                outstanding -= 1;
                if acked == n {
                    break;
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(_))) | Ok(_) => {}
            Err(e) => panic!("bare publisher: {e}"),
        }
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let events = env_or("BENCH_EVENTS", 100_000);
    let sales = env_or("BENCH_SALES", 400);
    let root = std::env::var("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-uplink"));
    let _ = std::fs::remove_dir_all(&root);
    let data = root.join("data");
    std::fs::create_dir_all(&data).expect("bench dir");
    let port = free_port();
    let _broker = start_broker(&root, port);
    let config_path = root.join("bench.toml");
    std::fs::write(&config_path, config_text(&data, port)).expect("config");
    let config = Config::load(&config_path).expect("config parses");

    eprintln!("seeding {events} sale events ...");
    let size = seed(&data, &config, events);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let bare = rt.block_on(bare_publisher(port, events, size));

    // Drain: from daemon start until /healthz shows an empty backlog.
    let started = Instant::now();
    let daemon = start_daemon(&config_path);
    let base = daemon.base.clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let drained = loop {
        let h: Value = rt
            .block_on(async {
                http.get(format!("{base}/healthz"))
                    .send()
                    .await?
                    .json()
                    .await
            })
            .unwrap_or(Value::Null);
        if h["uplink"]["backlog"] == json!(0) && h["uplink"]["connected"] == json!(true) {
            break started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let drain_rate = events as f64 / drained.as_secs_f64();

    // Sale-to-HQ latency while online.
    let latencies = rt.block_on(async {
        let arrived: Arc<Mutex<std::collections::HashMap<String, Instant>>> = Default::default();
        let mut opts = MqttOptions::new("bench-hq", "127.0.0.1", port);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (hq, mut el) = AsyncClient::new(opts, 100);
        hq.subscribe("storebox/stores/bench-001/events/sale.recorded", QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        let sink = arrived.clone();
        let subscriber = tokio::spawn(async move {
            while let Ok(ev) = el.poll().await {
                if let Event::Incoming(Packet::Publish(p)) = ev {
                    let v: Value = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                    if let Some(id) = v["data"]["id"].as_str() {
                        sink.lock().expect("lock").insert(id.to_string(), Instant::now());
                    }
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let token: Value = http
            .post(format!("{base}/v1/sessions"))
            .bearer_auth(TOKEN)
            .json(&json!({"staff_no": "1001", "pin": "1111"}))
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("login json");
        let token = token["token"].as_str().expect("token").to_string();
        let mut answered = Vec::new();
        for i in 0..sales {
            let r: Value = http
                .post(format!("{base}/v1/sales"))
                .bearer_auth(&token)
                .header("Idempotency-Key", format!("lat-{i}"))
                .json(&json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": [{"method": "cash", "amount": 2000}]}))
                .send()
                .await
                .expect("sale")
                .json()
                .await
                .expect("sale json");
            answered.push((r["id"].as_str().unwrap_or("").to_string(), Instant::now()));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        subscriber.abort();
        let arrived = arrived.lock().expect("lock");
        let mut lat: Vec<f64> = answered
            .iter()
            .filter_map(|(id, t)| arrived.get(id).map(|a| a.saturating_duration_since(*t).as_secs_f64() * 1000.0))
            .collect();
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        (lat, answered.len())
    });
    drop(daemon);

    let (lat, sent) = latencies;
    println!();
    println!("storebox uplink benchmark — local Mosquitto, in-flight window {WINDOW}");
    println!("sale event size:                    {size} bytes");
    println!("bare QoS 1 publisher:               {bare:>8.0} msg/s");
    println!(
        "draining {events} events:           {drain_rate:>8.0} events/s  ({:.1} s, start-up included)",
        drained.as_secs_f64()
    );
    println!(
        "  ÷ bare publisher:                 {:>8.2}        (goal ≥ 0.5 and ≥ 5000 events/s)",
        drain_rate / bare
    );
    println!(
        "sale → HQ latency, {} of {sent} sales: p50 {:.1} ms  p99 {:.1} ms  (goal p99 < 200 ms)",
        lat.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
}
