//! The bench's loads: wrk for many connections, and its own one-terminal client.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::machine::last_cpu;

pub(crate) struct Load {
    pub(crate) rate: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) errors: u64,
}

/// Runs `wrk` (a C load generator, so the client's cost stays small and equal for every
/// phase) with `conns` connections for `secs` seconds; `script` is a Lua `request` function.
pub(crate) fn wrk(dir: &Path, name: &str, conns: u32, secs: u64, base: &str, script: &str) -> Load {
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, script).expect("lua script");
    let threads = conns.clamp(1, 2);
    let out = Command::new("wrk")
        .args([
            "--latency",
            "-t",
            &threads.to_string(),
            "-c",
            &conns.to_string(),
        ])
        .args(["-d", &format!("{secs}s"), "-s"])
        .arg(&path)
        .arg(base)
        .output()
        .expect("running wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let number = |prefix: &str| -> Option<String> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| {
                l[prefix.len()..]
                    .split_whitespace()
                    .next()
                    .map(str::to_string)
            })
    };
    let ms = |v: Option<String>| -> f64 {
        let v = v.unwrap_or_default();
        let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
        let n: f64 = num.parse().unwrap_or(f64::NAN);
        match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            _ => f64::NAN,
        }
    };
    let errors = number("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0u64)
        + text
            .lines()
            .find(|l| l.trim_start().starts_with("Socket errors"))
            .map(|l| {
                l.split(|c: char| !c.is_ascii_digit())
                    .filter_map(|n| n.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0);
    Load {
        rate: number("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN),
        p50_ms: ms(number("50%")),
        p99_ms: ms(number("99%")),
        errors,
    }
}

/// One terminal selling back to back, as a till does: a keep-alive HTTP/1.1 connection, one
/// sale at a time (a new `Idempotency-Key` each), every request timed.
///
/// Not wrk, for two reasons measured on the Intel VM (docs/benchmarks.md). With a single
/// connection wrk's latencies disagree with its own rate (a mean of 532 µs at 3,409 requests a
/// second, where one connection allows at most 293 µs), so its p50 and p99 there meant little.
/// And wrk (its Lua `request` function, its event loop) takes CPU per sale from the two cores
/// the daemon runs on, which a real terminal, on its own machine, does not: this client, which
/// does nothing per sale but format the request and find the end of the answer, sold 3–9 % more
/// in alternating pairs against the same daemon.
///
/// Every 64th sale it also notes whether it runs on the vCPU the daemon's ledger thread last ran
/// on ([`Placement`]): on a 2-vCPU machine that decides much of the round's rate, as the two
/// then share one vCPU (docs/benchmarks.md).
pub(crate) fn one_terminal(
    base: &str,
    token: &str,
    tag: &str,
    secs: u64,
    ledger: Option<&Path>,
) -> (Load, Placement) {
    use std::io::Read;
    let addr = base.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).expect("connecting to the daemon");
    conn.set_nodelay(true).expect("TCP_NODELAY");
    let tag = unique(tag);
    let body = r#"{"lines":[{"sku":"MILK","qty":1}],"payments":[{"method":"cash","amount":2000}]}"#;
    let mut request = Vec::with_capacity(512);
    let mut buf = vec![0u8; 64 * 1024];
    let mut times = Vec::new();
    let mut errors = 0u64;
    let mut placement = Placement::default();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(secs) {
        n += 1;
        request.clear();
        write!(
            request,
            "POST /v1/sales HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nIdempotency-Key: {tag}-{n}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("formatting a request");
        let sent = Instant::now();
        conn.write_all(&request).expect("sending a sale");
        // Read until the head and the Content-Length it announces are in.
        let mut have = 0;
        let (status, end) = loop {
            let got = conn.read(&mut buf[have..]).expect("reading an answer");
            assert!(got > 0, "the daemon closed the connection");
            have += got;
            let Some(head_end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") else {
                assert!(have < buf.len(), "an answer's head over 64 KiB");
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .expect("an HTTP status line");
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("a Content-Length");
            let end = head_end + 4 + length;
            assert!(end <= buf.len(), "an answer over 64 KiB");
            if have >= end {
                break (status, end);
            }
        };
        times.push(sent.elapsed());
        if n.is_multiple_of(64)
            && let Some(ledger) = ledger
            && let (Some(mine), Some(its)) = (
                last_cpu(Path::new("/proc/thread-self/stat")),
                last_cpu(ledger),
            )
        {
            placement.samples += 1;
            placement.shared += u32::from(mine == its);
        }
        assert_eq!(have, end, "bytes after the answer to a lone request");
        if status != 201 {
            errors += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    times.sort();
    let ms = |q: f64| {
        times
            .get(((times.len().saturating_sub(1)) as f64 * q) as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    let load = Load {
        rate: times.len() as f64 / elapsed,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        errors,
    };
    (load, placement)
}

/// How often the one-terminal client ran on the same vCPU as the daemon's ledger thread.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Placement {
    samples: u32,
    shared: u32,
}

impl Placement {
    /// The share of samples on the ledger's vCPU, or `None` without samples.
    pub(crate) fn shared(&self) -> Option<f64> {
        (self.samples > 0).then(|| f64::from(self.shared) / f64::from(self.samples))
    }
}

/// `tag` made unique to this run (it carries the time), for idempotency keys.
pub(crate) fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{tag}-{nanos}")
}
