//! Test harness: runs the real `storebox` binary on 127.0.0.1:0 with a config in a temporary
//! directory, and talks to it over HTTP.

#![allow(dead_code)]

pub mod crash;
pub mod devices;
pub mod history;
pub mod hw;
pub mod mqtt;
pub mod race;
pub mod spoil;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde_json::{Value, json};

pub const TERMINAL_TOKEN: &str = "test-terminal-token-0001";
pub const CASHIER: (&str, &str) = ("1001", "1111");
pub const MANAGER: (&str, &str) = ("2001", "2222");
pub const ADMIN: (&str, &str) = ("9001", "9999");

/// Runs the `storebox` binary with `args` (an offline command) and waits for it.
pub fn storebox(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_storebox"))
        .args(args)
        .output()
        .expect("running storebox")
}

/// Writes `dir/storebox.toml`: the test store's config ([`config_text`], data under
/// `dir/data`) with `extra`. Returns its path.
pub fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let config = dir.join("storebox.toml");
    std::fs::write(&config, config_text(&dir.join("data"), extra)).unwrap();
    config
}

/// Runs `storebox members import` of `csv` for the store of `config`, which must succeed.
pub fn import_members(config: &Path, csv: &Path) {
    let out = storebox(&[
        "members",
        "import",
        "--config",
        config.to_str().unwrap(),
        csv.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new box for a restore: an empty data directory holding only the store key (copied from
/// `key`), and a config with `extra`. Returns the directory and the config file.
pub fn new_box(key: &Path, extra: &str) -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(key, data.join("store.key")).unwrap();
    std::fs::set_permissions(
        data.join("store.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let config = dir.path().join("storebox.toml");
    std::fs::write(&config, config_text(&data, extra)).unwrap();
    (dir, config)
}

/// The base config used by tests; `extra` is appended (more sections).
pub fn config_text(data_dir: &Path, extra: &str) -> String {
    format!(
        r#"
[store]
id = "sh-001"
name = "上海南京西路店"
timezone = "Asia/Shanghai"
environment = "development"

[http]
listen = "127.0.0.1:0"

[storage]
dir = "{}"
# The disk-space alert (default: under 256 MiB) would be a journal event that no test asked
# for, on a CI machine short of space.
min_free_mb = 16

[[terminals]]
id = "pos-1"
token = "{TERMINAL_TOKEN}"

[[terminals]]
id = "pos-2"
token = "test-terminal-token-0002"

[[staff]]
staff_no = "1001"
name = "王芳"
role = "cashier"
pin = "1111"

[[staff]]
staff_no = "2001"
name = "李强"
role = "manager"
pin = "2222"

[[staff]]
staff_no = "9001"
name = "管理员"
role = "admin"
pin = "9999"

# Automations off unless a test turns them on (they depend on the time of day).
[insight.automation]
enabled = false

[[products]]
sku = "TEA"
name = "西湖龙井 250g"
price = 25000
barcodes = ["6901234567892"]
stock = 1000
safety_stock = 10

[[products]]
sku = "MILK"
name = "纯牛奶 1L"
price = 1290
barcodes = ["6901234567915"]
stock = 1000

[[products]]
sku = "RICE"
name = "五常大米 5kg"
price = 8990
stock = 1000
{extra}
"#,
        data_dir.display()
    )
}

/// A running daemon.
pub struct Daemon {
    pub child: Child,
    /// `http://127.0.0.1:port`, or `https://...` when the config has `[http.tls]`.
    pub base: String,
    /// The address the daemon listens on.
    pub addr: std::net::SocketAddr,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub log: Arc<Mutex<String>>,
    /// Plain HTTP only (reqwest is built without TLS): with `[http.tls]`, talk to `addr` over
    /// TLS yourself (tests/https.rs).
    pub client: reqwest::Client,
}

impl Daemon {
    /// Writes a config into `dir` (data under `dir/data`) and starts the daemon.
    pub fn start_in(dir: &Path, extra: &str) -> Daemon {
        Daemon::start_with(dir, &write_config(dir, extra))
    }

    /// Starts the daemon with an existing config file.
    pub fn start_with(dir: &Path, config: &Path) -> Daemon {
        Daemon::start_env(dir, config, &[])
    }

    /// Starts the daemon with an existing config file and extra environment variables
    /// (`NOTIFY_SOCKET`, ...). systemd's own variables are never inherited from the test run.
    pub fn start_env(dir: &Path, config: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_storebox"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting storebox");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    // Logged first, so the line is in the log when the start is announced.
                    log.lock().unwrap().push_str(&line);
                    log.lock().unwrap().push('\n');
                    // `listening on http://addr`, or `https://addr` with [http.tls].
                    if let Some(i) = line.find("listening on http") {
                        let url = line[i + "listening on ".len()..]
                            .split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_string();
                        let _ = tx.send(url);
                    }
                }
            });
        }
        // Generous: a start that rebuilds the cache of a year of sales (tests/insight.rs) takes
        // a debug build tens of seconds on a loaded machine. The start-up time is the bench's.
        let base = match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("storebox did not start:\n{}", log.lock().unwrap());
            }
        };
        let addr = base
            .rsplit("://")
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {base}"));
        Daemon {
            child,
            base,
            addr,
            dir: dir.to_path_buf(),
            config: config.to_path_buf(),
            log,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    /// `kill -9`.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn terminate(mut self) -> Option<i32> {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let status = self.child.wait().unwrap();
        status.code()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGHUP: the config is reloaded.
    pub fn hup(&self) {
        // SAFETY: kill(2) on the daemon's own pid with a signal number.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGHUP);
        }
    }

    /// Waits (10 s at most) until the log holds `needle` `n` times.
    pub fn wait_log(&self, needle: &str, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.log_text().matches(needle).count() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "no {needle:?} ({n}) in:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A one-MILK cash sale sent in the background (one a test holds up), its status.
    pub fn spawn_sale(&self, token: String) -> tokio::task::JoinHandle<reqwest::Result<u16>> {
        let client = self.client.clone();
        let url = self.url("/v1/sales");
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
                .json(&json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(1290)}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    }

    /// Logs in `staff` on terminal pos-1 and returns the session token.
    pub async fn login(&self, staff: (&str, &str)) -> String {
        let r = self
            .client
            .post(self.url("/v1/sessions"))
            .bearer_auth(TERMINAL_TOKEN)
            .json(&json!({"staff_no": staff.0, "pin": staff.1}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "login failed");
        r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The body of a GET, as text (CSV reports and exports).
    pub async fn text(&self, token: &str, path: &str) -> String {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: &Value,
        idem: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token)
            .json(body);
        if let Some(k) = idem {
            req = req.header("Idempotency-Key", k);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, token, path, body, None)
            .await
    }

    /// Erases a member's personal data (`DELETE /v1/members/{id}`).
    pub async fn erase(&self, token: &str, id: &str) -> (u16, Value) {
        let path = format!("/v1/members/{id}");
        self.send(reqwest::Method::DELETE, token, &path, &Value::Null, None)
            .await
    }

    /// Sells `n` bottles of milk for cash, one sale each, each acknowledged.
    pub async fn sell_milk(&self, token: &str, n: usize) {
        for _ in 0..n {
            let body = json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(1290)});
            let (s, v) = self.sale(token, &body).await;
            assert_eq!(s, 201, "{v}");
        }
    }

    /// Records a sale with a fresh idempotency key.
    pub async fn sale(&self, token: &str, body: &Value) -> (u16, Value) {
        let key = uuid::Uuid::now_v7().to_string();
        self.send(reqwest::Method::POST, token, "/v1/sales", body, Some(&key))
            .await
    }

    /// Registers a member; returns its id.
    pub async fn register(&self, token: &str, name: &str, phone: &str, extra: Value) -> String {
        let mut body = json!({"name": name, "phone": phone});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let (s, v) = self.post(token, "/v1/members", &body).await;
        assert_eq!(s, 201, "register: {v}");
        v["id"].as_str().unwrap().to_string()
    }

    pub async fn health(&self) -> Value {
        self.client
            .get(self.url("/healthz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Every sale of a store-local day, following pages.
    pub async fn sales_on(&self, token: &str, date: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = 0u64;
        loop {
            let (s, v) = self
                .get(token, &format!("/v1/sales?date={date}&after_seq={after}"))
                .await;
            assert_eq!(s, 200, "{v}");
            out.extend(v["sales"].as_array().unwrap().iter().cloned());
            match v["next_after_seq"].as_u64() {
                Some(n) => after = n,
                None => break,
            }
        }
        out
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Today in the store's timezone (Asia/Shanghai).
pub fn store_today() -> chrono::NaiveDate {
    chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive()
}

/// A cash payment of exactly `amount`.
pub fn cash(amount: i64) -> Value {
    json!([{"method": "cash", "amount": amount}])
}

/// The `error.code` of an API error body (design section 4), or a marker when there is none.
pub fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no error code>")
}

/// `POST /v1/sessions` on `terminal`: (status, answer, `Retry-After`).
pub async fn login_status(
    d: &Daemon,
    terminal: &str,
    staff_no: &str,
    pin: &str,
) -> (u16, Value, Option<String>) {
    let r = d
        .client
        .post(d.url("/v1/sessions"))
        .bearer_auth(terminal)
        .json(&json!({"staff_no": staff_no, "pin": pin}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, r.json().await.unwrap_or(Value::Null), retry)
}

/// pos-2's terminal token (the test config's second terminal).
pub const POS2: &str = "test-terminal-token-0002";

/// `PUT /v1/staff/{staff_no}` with `body`, as the session `token`: (status, answer).
pub async fn put_staff(d: &Daemon, token: &str, staff_no: &str, body: Value) -> (u16, Value) {
    d.send(
        reqwest::Method::PUT,
        token,
        &format!("/v1/staff/{staff_no}"),
        &body,
        None,
    )
    .await
}

/// libfaketime runs the daemon with its wall clock moved (tests/clock_and_timezone.rs,
/// tests/uplink_erasure.rs). Its thread-safe build: the daemon reads the clock from many
/// threads, and with the offset file read at every call the other build now and then gave a
/// call the real time (3 runs in 30 of tests/week_of_reports.rs on a loaded machine, none with
/// this one).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// libfaketime, if this machine has it; the test skips without it, except under `CI=true`,
/// where .ci/run installs it.
pub fn libfaketime() -> Option<&'static str> {
    if std::path::Path::new(LIBFAKETIME).exists() {
        return Some(LIBFAKETIME);
    }
    let reason = format!("no {LIBFAKETIME} (apt-get install faketime)");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{reason}; .ci/run installs it under CI=true");
    }
    eprintln!("skipped: {reason}");
    None
}

/// Starts the daemon on `config` under libfaketime (`lib`) with its wall clock as `faketime`
/// says: `("FAKETIME", "+1d")` a day ahead, `("FAKETIME", "@2026-03-10 09:00:00")` from then,
/// `("FAKETIME_TIMESTAMP_FILE", path)` at the offset written in that file, read at every
/// call (to step it while the daemon runs). The monotonic clock stays real.
pub fn start_faked(
    dir: &std::path::Path,
    config: &std::path::Path,
    lib: &str,
    faketime: (&str, &str),
    more: &[(&str, &str)],
) -> Daemon {
    let mut env = vec![
        ("LD_PRELOAD", lib),
        faketime,
        ("FAKETIME_NO_CACHE", "1"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    env.extend_from_slice(more);
    Daemon::start_env(dir, config, &env)
}

/// Writes a config (at `dir/storebox.toml`) whose only device is a TCP printer on a port where
/// nothing listens yet; returns the config and the port's address.
pub fn printer_not_there_yet(dir: &std::path::Path) -> (std::path::PathBuf, std::net::SocketAddr) {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = dir.join("storebox.toml");
    std::fs::write(
        &config,
        config_text(&dir.join("data"), &devices::printer_only(addr)),
    )
    .unwrap();
    (config, addr)
}

/// How many times the journal in `data` asked HQ for its data because the cache was rebuilt
/// (`sync.requested`, reason `cache_rebuilt`).
pub fn cache_rebuilt_resyncs(data: &Path) -> i64 {
    rusqlite::Connection::open(data.join("journal.sqlite3"))
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM events WHERE kind = 'sync.requested'
             AND data LIKE '%cache_rebuilt%'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

/// Restores `backup` with `storebox restore` onto the box of `config`, HQ's last seq given;
/// asserts that it succeeded.
pub fn restore_ok(config: &Path, hq_last_seq: u64, backup: &Path) {
    let out = storebox(&[
        "restore",
        "--config",
        config.to_str().unwrap(),
        "--hq-last-seq",
        &hq_last_seq.to_string(),
        backup.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
