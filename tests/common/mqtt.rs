//! A real Mosquitto broker on a free loopback port, and an HQ client that records what the
//! store sends and can publish HQ's messages.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

fn mosquitto_binary() -> PathBuf {
    for p in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "mosquitto is not installed: apt-get install mosquitto (the uplink tests need a real broker)"
    );
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A Mosquitto process with persistence, so a graceful restart keeps sessions and queues.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    /// A second listener's port and its settings (TLS), beside the plain one HQ uses.
    tls: Option<(u16, String)>,
    /// Global settings beyond the harness's own.
    extra: String,
}

impl Broker {
    pub fn start(dir: &Path) -> Broker {
        Broker::start_with(dir, "")
    }

    /// A broker with global `settings` (mosquitto.conf lines) beside the harness's own.
    pub fn start_with(dir: &Path, settings: &str) -> Broker {
        let dir = dir.join("mosquitto");
        std::fs::create_dir_all(&dir).unwrap();
        let mut b = Broker {
            child: None,
            port: free_port(),
            dir,
            tls: None,
            extra: settings.to_string(),
        };
        b.spawn();
        b
    }

    /// A broker with, beside its plain listener (for HQ), a TLS listener at [`Broker::tls_port`]
    /// presenting `cert`/`key` and asking every client for a certificate signed by `ca`.
    pub fn start_tls(dir: &Path, ca: &Path, cert: &Path, key: &Path) -> Broker {
        let dir = dir.join("mosquitto");
        std::fs::create_dir_all(&dir).unwrap();
        let settings = format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
            ca.display(),
            cert.display(),
            key.display()
        );
        let mut b = Broker {
            child: None,
            port: free_port(),
            dir,
            tls: Some((free_port(), settings)),
            extra: String::new(),
        };
        b.spawn();
        b
    }

    /// The TLS listener's port (see [`Broker::start_tls`]).
    pub fn tls_port(&self) -> u16 {
        self.tls.as_ref().map_or(0, |(p, _)| *p)
    }

    fn spawn(&mut self) {
        let conf = self.dir.join("mosquitto.conf");
        // Run as root, mosquitto switches to the `mosquitto` user, which cannot write the
        // test's private directory: keep root so persistence works.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root\n"
        } else {
            ""
        };
        let tls = self.tls.as_ref().map_or(String::new(), |(port, settings)| {
            format!("listener {port} 127.0.0.1\n{settings}")
        });
        std::fs::write(
            &conf,
            format!(
                "{user}allow_anonymous true\npersistence true\n\
                 persistence_location {dir}/\nautosave_interval 1\nmax_queued_messages 0\n\
                 log_dest file {dir}/mosquitto.log\nlog_type all\n{extra}\n\
                 listener {port} 127.0.0.1\n{tls}",
                port = self.port,
                dir = self.dir.display(),
                extra = self.extra
            ),
        )
        .unwrap();
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mosquitto");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the broker gracefully (it saves its persistence file).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let _ = c.wait();
        }
    }

    /// The broker's process id (to stop it with SIGSTOP or kill it with SIGKILL).
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// `kill -9` (no persistence saved after the last autosave).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (after [`Broker::kill9`] or [`Broker::stop`]).
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// For a failure message: how many PUBLISHes the broker's log shows in and out, and its
    /// lines about dropped, expired or refused messages (a broker that loses what it
    /// acknowledged shows here, not in the store's log).
    pub fn log_summary(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default();
        let count = |what: &str| log.lines().filter(|l| l.contains(what)).count();
        let notable: Vec<&str> = log
            .lines()
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                [
                    "drop", "expir", "quota", "error", "warning", "denied", "persist",
                ]
                .iter()
                .any(|w| l.contains(w))
            })
            .take(30)
            .collect();
        format!(
            "{} PUBLISH received, {} sent, {} PUBACK received; notable lines:\n{}",
            count("Received PUBLISH"),
            count("Sending PUBLISH"),
            count("Received PUBACK"),
            notable.join("\n")
        )
    }

    /// The `[uplink]` section that points a store at this broker.
    pub fn uplink_config(&self, extra: &str) -> String {
        format!(
            "\n[uplink]\nenabled = true\nhost = \"127.0.0.1\"\nport = {}\nkeep_alive_secs = 5\n\
             reconnect_min_ms = 100\nreconnect_max_ms = 1000\nhealthy_after_secs = 2\n\
             status_interval_secs = 5\n{extra}\n",
            self.port
        )
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One message HQ received.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: Value,
    pub at: Instant,
}

/// HQ: a real MQTT client with a persistent session, subscribed to the store's events and
/// status; it records everything and keeps reconnecting.
pub struct Hq {
    pub client: AsyncClient,
    pub received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Hq {
    pub async fn connect(port: u16, store_id: &str) -> Hq {
        let mut opts = MqttOptions::new(format!("hq-{store_id}-{port}"), "127.0.0.1", port);
        opts.set_clean_session(false)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(16 << 20, 16 << 20);
        let (client, mut eventloop) = AsyncClient::new(opts, 1000);
        for filter in [
            format!("storebox/stores/{store_id}/events/#"),
            format!("storebox/stores/{store_id}/status"),
        ] {
            client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        }
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        // Returns once the broker acknowledged both subscriptions: an event published before
        // that would never reach this HQ (a test on one thread may not poll it in time).
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let mut subscribed_tx = Some(subscribed_tx);
        let mut acks = 0;
        let resubscribe = client.clone();
        let filters = [
            format!("storebox/stores/{store_id}/events/#"),
            format!("storebox/stores/{store_id}/status"),
        ];
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) if !ack.session_present => {
                        for f in &filters {
                            let _ = resubscribe.try_subscribe(f.clone(), QoS::AtLeastOnce);
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        acks += 1;
                        if acks == 2
                            && let Some(tx) = subscribed_tx.take()
                        {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let payload = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                        sink.lock().unwrap().push(Received {
                            topic: p.topic,
                            payload,
                            at: Instant::now(),
                        });
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed)
            .await
            .expect("HQ's subscriptions acknowledged in time")
            .expect("HQ's client running");
        Hq {
            client,
            received,
            task,
        }
    }

    /// Event payloads received so far (duplicates included), in arrival order.
    pub fn events(&self) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.topic.contains("/events/"))
            .map(|r| r.payload.clone())
            .collect()
    }

    /// The last status message received.
    pub fn last_status(&self) -> Option<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|r| r.topic.ends_with("/status"))
            .map(|r| r.payload.clone())
    }

    /// Waits (up to 15 s) for the store's retained status to say it is online.
    pub async fn wait_online(&self) {
        wait_for(15, "online status", || {
            self.last_status()
                .is_some_and(|s| s["online"] == serde_json::json!(true))
        })
        .await;
    }

    /// Waits for the store's online status, then half a second more: the store subscribes to
    /// HQ's topics after it says it is online, and on a first connect a message published
    /// before the subscription reaches it would have no session to wait in.
    pub async fn wait_subscribed(&self) {
        self.wait_online().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    /// Publishes an HQ message (QoS 1).
    pub async fn publish(&self, topic: &str, payload: Value) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.to_string())
            .await
            .unwrap();
    }

    /// Publishes raw bytes (for malformed-message tests).
    pub async fn publish_raw(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
}

impl Drop for Hq {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A broker, HQ listening on it (store `sh-001`), then the daemon in `dir` with its uplink to
/// that broker: the set-up of a store online.
pub async fn store_with_hq(dir: &Path) -> (Broker, Hq, super::Daemon) {
    let broker = Broker::start(dir);
    let hq = Hq::connect(broker.port, "sh-001").await;
    let d = super::Daemon::start_in(dir, &broker.uplink_config(""));
    (broker, hq, d)
}

/// Waits until `cond` holds, polling; panics with `what` after `secs`.
pub async fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The kinds of `events`, in order.
pub fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Forty products with long names, for a sale of one of each: an event too big for a 4 KiB
/// packet limit (`uplink.max_packet_bytes = 4096`).
pub fn big_products() -> String {
    (0..40)
        .map(|i| {
            format!(
                "[[products]]\nsku = \"BIG-{i:02}\"\nname = \"一个名字很长很长很长的商品编号{i:02}\"\nprice = 100\n"
            )
        })
        .collect()
}

/// The lines of a sale of one of each of [`big_products`].
pub fn big_sale_lines() -> Vec<serde_json::Value> {
    (0..40)
        .map(|i| serde_json::json!({"sku": format!("BIG-{i:02}"), "qty": 1}))
        .collect()
}
