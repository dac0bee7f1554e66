//! Stand-ins for store hardware with real transports: serial devices as pseudo-terminals
//! behind a stable symlink (so "unplug" and "replug" are a closed and a new pty), a receipt
//! printer as a local TCP server that records every byte and answers DLE EOT, and a reader of
//! a terminal's server-sent event stream.

#![allow(dead_code)]

use std::ffi::CStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A pseudo-terminal: the test holds the master; the daemon opens the slave by path.
pub struct Pty {
    master: Option<File>,
    pub slave: PathBuf,
}

impl Pty {
    pub fn open() -> Pty {
        let (mut master, mut slave) = (0, 0);
        let r = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "openpty failed");
        // openpty's descriptors are inherited by children unless marked: the daemon must not
        // hold the master, or closing it here would not unplug anything.
        unsafe {
            libc::fcntl(master, libc::F_SETFD, libc::FD_CLOEXEC);
        }
        let mut buf = [0 as libc::c_char; 128];
        let r = unsafe { libc::ptsname_r(master, buf.as_mut_ptr(), buf.len()) };
        assert_eq!(r, 0, "ptsname_r failed");
        let name = unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .to_string();
        assert!(
            name.starts_with("/dev/pts/") && name.len() > 9,
            "pty name {name}"
        );
        // The daemon opens the slave itself; this end is not needed.
        unsafe { libc::close(slave) };
        Pty {
            master: Some(unsafe { File::from_raw_fd(master) }),
            slave: PathBuf::from(name),
        }
    }

    /// Sends bytes as the device would.
    pub fn send(&mut self, bytes: &[u8]) {
        let m = self.master.as_mut().expect("pty is closed");
        m.write_all(bytes).unwrap();
        m.flush().unwrap();
    }

    /// Hands the master end over (to a thread playing the device); the pty no longer sends.
    pub fn take_master(&mut self) -> File {
        self.master.take().expect("pty is closed")
    }

    /// Unplugs: the daemon's next read fails.
    pub fn close(&mut self) {
        self.master = None;
    }
}

/// Points `link` at `target` atomically (a replugged device under its stable name).
pub fn point(link: &Path, target: &Path) {
    let tmp = link.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

/// A receipt printer on TCP that records what it receives.
pub struct FakePrinter {
    pub addr: std::net::SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
    paper_out: Arc<AtomicBool>,
    hung: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl FakePrinter {
    /// Listens on `addr` (or a free loopback port).
    pub async fn start(addr: Option<std::net::SocketAddr>) -> FakePrinter {
        let listener =
            tokio::net::TcpListener::bind(addr.unwrap_or("127.0.0.1:0".parse().unwrap()))
                .await
                .unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let paper_out = Arc::new(AtomicBool::new(false));
        let hung = Arc::new(AtomicBool::new(false));
        let (sink, paper, stuck) = (received.clone(), paper_out.clone(), hung.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (sink, paper, stuck) = (sink.clone(), paper.clone(), stuck.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    // The last two bytes of the read before: a request may straddle two reads.
                    let mut tail: Vec<u8> = Vec::new();
                    loop {
                        // Hung firmware: nothing is read (and so nothing answered).
                        while stuck.load(Ordering::Relaxed) {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        let n = match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        sink.lock().unwrap().extend_from_slice(&buf[..n]);
                        tail.extend_from_slice(&buf[..n]);
                        let chunk = std::mem::take(&mut tail);
                        tail = chunk[chunk.len().saturating_sub(2)..].to_vec();
                        // Answer DLE EOT n like a printer: 0x12 is "all fine".
                        for w in chunk.windows(3) {
                            if w[0] == 0x10 && w[1] == 0x04 {
                                let reply = match (w[2], paper.load(Ordering::Relaxed)) {
                                    (4, true) => 0x72,
                                    (1, true) => 0x1A,
                                    (2, true) => 0x32,
                                    _ => 0x12,
                                };
                                let _ = sock.write_all(&[reply]).await;
                            }
                        }
                    }
                });
            }
        });
        FakePrinter {
            addr,
            received,
            paper_out,
            hung,
            task,
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }

    pub fn set_paper_out(&self, out: bool) {
        self.paper_out.store(out, Ordering::Relaxed);
    }

    /// Hung firmware: connections are still accepted (by the network stack) but nothing more is
    /// read or answered until it is set back, when reading resumes where it stopped.
    pub fn set_hung(&self, hung: bool) {
        self.hung.store(hung, Ordering::Relaxed);
    }

    /// What the paper shows so far.
    pub fn paper(&self) -> storebox::devices::decode::Paper {
        storebox::devices::decode::decode(&self.bytes())
    }

    /// Waits until `n` receipts (cuts) were printed.
    pub async fn wait_cuts(&self, n: usize, secs: u64) -> storebox::devices::decode::Paper {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let p = self.paper();
            if p.cuts >= n {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {n} receipts, got {}",
                p.cuts
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for FakePrinter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A receipt printer whose firmware hangs while its network interface still accepts: it takes
/// connections and never reads from them. Its receive buffer is small, as a printer's embedded
/// network stack's is, so what does not fit stays in the sender's queue.
pub struct DeafPrinter {
    pub addr: std::net::SocketAddr,
    held: Arc<Mutex<Vec<tokio::net::TcpStream>>>,
    task: tokio::task::JoinHandle<()>,
}

impl DeafPrinter {
    /// Listens on a free loopback port.
    pub async fn start() -> DeafPrinter {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_reuseaddr(true).unwrap();
        // Inherited by the accepted connections (set before listening, so the window is small
        // from the handshake on).
        sock.set_recv_buffer_size(2048).unwrap();
        sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = sock.listen(16).unwrap();
        let addr = listener.local_addr().unwrap();
        let held = Arc::new(Mutex::new(Vec::new()));
        let sink = held.clone();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                sink.lock().unwrap().push(s);
            }
        });
        DeafPrinter { addr, held, task }
    }

    /// Connections taken so far.
    pub fn connections(&self) -> usize {
        self.held.lock().unwrap().len()
    }

    /// Bytes its network stack took and the firmware never read.
    pub fn unread(&self) -> usize {
        use std::os::fd::AsRawFd;
        self.held
            .lock()
            .unwrap()
            .iter()
            .map(|s| {
                let mut n: libc::c_int = 0;
                unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut n) };
                n as usize
            })
            .sum()
    }

    /// Switched off: the port is free, every connection reset.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
        self.held.lock().unwrap().clear();
    }
}

/// A terminal's `GET /v1/events` stream, read in the background.
pub struct Events {
    events: Arc<Mutex<Vec<(String, Value, Instant)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Events {
    pub async fn open(client: &reqwest::Client, base: &str, token: &str) -> Events {
        let mut resp = client
            .get(format!("{base}/v1/events"))
            .bearer_auth(token)
            .timeout(Duration::from_secs(3600))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let task = tokio::spawn(async move {
            let mut text = String::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                text.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = text.find("\n\n") {
                    let block: String = text.drain(..end + 2).collect();
                    let mut kind = String::new();
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(k) = line.strip_prefix("event:") {
                            kind = k.trim().to_string();
                        } else if let Some(d) = line.strip_prefix("data:") {
                            data.push_str(d.trim());
                        }
                    }
                    if !kind.is_empty() {
                        let v = serde_json::from_str(&data).unwrap_or(Value::Null);
                        sink.lock().unwrap().push((kind, v, Instant::now()));
                    }
                }
            }
        });
        Events { events, task }
    }

    pub fn all(&self) -> Vec<(String, Value)> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v, _)| (k.clone(), v.clone()))
            .collect()
    }

    /// The data of the events of `kind`, in order.
    pub fn of(&self, kind: &str) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _, _)| k == kind)
            .map(|(_, v, _)| v.clone())
            .collect()
    }

    /// Events with the instant each was read off the stream.
    pub fn all_timed(&self) -> Vec<(String, Value, Instant)> {
        self.events.lock().unwrap().clone()
    }

    /// Waits for an event of `kind` matching `pred`.
    pub async fn wait(&self, kind: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some((_, v)) = self.all().into_iter().find(|(k, v)| k == kind && pred(v)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no {kind} event in {secs} s; got {:?}",
                self.all()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.task.abort();
    }
}
