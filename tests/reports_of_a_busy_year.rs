//! A year's reports on a busy store: a store selling 1,500 times a day has more than half a
//! million sales a year, and the sales report reads two years (the period and the one before).
//! The reports must add up the period's sales as they are read, not hold them all: held, a
//! year's sales took about a kilobyte each (~1.1 GB for the sales report of such a store,
//! more than the box's memory).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, FixedOffset, TimeZone};
use common::history;
use common::{Daemon, MANAGER, store_today};

/// Resident memory of a process, KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The most resident memory `pid` reached above `base` (KiB) while `f` ran.
async fn peak_above<T>(pid: u32, base: u64, f: impl std::future::Future<Output = T>) -> (T, u64) {
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let out = f.await;
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    (out, peak.load(Ordering::Relaxed).saturating_sub(base))
}

#[tokio::test]
async fn a_years_reports_do_not_hold_the_years_sales_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tz = FixedOffset::east_opt(8 * 3600).unwrap();
    let today = store_today();
    // Two years of sales, a few a day, each with several lines: the year the report asks for
    // and the year before, which the sales report compares it with.
    const SALES: i64 = 48_000;
    let skus: Vec<String> = (0..40).map(|k| format!("SKU{k:03}")).collect();
    let mut events = Vec::new();
    for i in 0..SALES {
        let day = today - chrono::Duration::days(1 + i * 729 / SALES);
        let at: DateTime<FixedOffset> = tz
            .from_local_datetime(&day.and_hms_opt(9 + (i % 12) as u32, 0, 0).unwrap())
            .unwrap();
        let lines: Vec<(&str, u32, i64)> = (0..8)
            .map(|l| (skus[((i * 7 + l * 13) % 40) as usize].as_str(), 1, 100 + l))
            .collect();
        let id = format!("{:08x}-0000-7000-8000-{:012x}", i, i);
        events.push((at, history::sale_event(&id, at, "1001", None, &lines)));
    }
    history::write_journal(&data, events);
    let d = Daemon::start_in(dir.path(), "");
    let tm = d.login(MANAGER).await;
    let pid = d.child.id();
    // Settled: the start's own work (the replay, the member hints) is over.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = rss_kib(pid);
    let from = today - chrono::Duration::days(365);
    for report in ["sales", "products", "associations", "staff"] {
        let path = format!("/v1/reports/{report}?from={from}&to={today}&min_count=1");
        let ((status, body), grew) = peak_above(pid, base, d.get(&tm, &path)).await;
        assert_eq!(status, 200, "{report}: {body}");
        if report == "sales" {
            let n = body["sales"].as_u64().unwrap() + body["previous"]["sales"].as_u64().unwrap();
            assert!(n > 45_000, "{body}");
        }
        // Held, these sales took ~80 MB (the sales report; ~40 MB the others, one year);
        // added up as they are read, the reading's pages of events (1,000 rows) and the
        // figures: under 10 MB.
        eprintln!("the {report} report: {} KiB more", grew);
        assert!(
            grew < 25 * 1024,
            "the {report} report of a year grew the daemon by {} MiB",
            grew / 1024
        );
    }
    d.terminate();
}
