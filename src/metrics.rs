//! Counters and latency histograms for `GET /metrics`, in the Prometheus text format (0.0.4).
//!
//! Everything is a relaxed atomic or a short mutex held to add one sample; label sets are
//! bounded (route patterns, static error codes, configured devices), so the output cannot grow
//! with traffic. Store facts (sales, refunds, registrations) are counted by the ledger after
//! their commit; HTTP figures by the request middleware.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the latency buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }
}

/// The process's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Sales recorded (first time, not idempotent replays).
    pub sales: AtomicU64,
    /// Refunds recorded.
    pub refunds: AtomicU64,
    /// Members registered here.
    pub registrations: AtomicU64,
    /// Member lookups answered, by key.
    lookups: Mutex<BTreeMap<&'static str, u64>>,
    /// Requests by (method, route pattern, status).
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// Latency by (method, route pattern).
    latency: Mutex<BTreeMap<(String, String), Histogram>>,
    /// API errors by code.
    errors: Mutex<BTreeMap<&'static str, u64>>,
}

fn bump<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, k: K) {
    if let Ok(mut m) = m.lock() {
        *m.entry(k).or_insert(0) += 1;
    }
}

impl Metrics {
    /// A member lookup by `by` (`phone`, `card`, `phone_tail`, `name`, `id`).
    pub fn lookup(&self, by: &'static str) {
        bump(&self.lookups, by);
    }

    /// One HTTP request. A method outside the standard ones counts as `other`: any token is a
    /// method to HTTP, and each new one would add label sets to every scrape, for ever.
    pub fn request(&self, method: &str, route: &str, status: u16, secs: f64) {
        let method = method_label(method);
        bump(
            &self.requests,
            (method.to_string(), route.to_string(), status),
        );
        if let Ok(mut m) = self.latency.lock() {
            m.entry((method.to_string(), route.to_string()))
                .or_default()
                .observe(secs);
        }
    }

    /// One API error, by its code.
    pub fn error(&self, code: &'static str) {
        bump(&self.errors, code);
    }
}

/// The `method` label: a standard method as it is, anything else `other`.
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("other")
}

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Figures read at scrape time (not counted here).
#[derive(Debug, Default)]
pub struct Gauges {
    /// Highest committed `seq`.
    pub last_seq: u64,
    /// Batches and commands committed, batches failed.
    pub batches: u64,
    /// Commands committed.
    pub commands: u64,
    /// Batches that failed.
    pub failed_batches: u64,
    /// Seconds committed batches spent executing, committing the journal, writing the cache.
    pub phase_seconds: [f64; 3],
    /// Whether the journal takes writes.
    pub writable: bool,
    /// Events not yet acknowledged by HQ.
    pub outbox_backlog: u64,
    /// Age of the oldest of them, seconds.
    pub outbox_oldest_age: Option<f64>,
    /// Whether the uplink is connected (None: disabled).
    pub uplink_connected: Option<bool>,
    /// Devices: (id, kind, state, handled, rejected).
    pub devices: Vec<(String, &'static str, &'static str, u64, u64)>,
    /// Members in the cache.
    pub members: u64,
    /// Free bytes on the data directory's file system.
    pub disk_free_bytes: Option<u64>,
    /// Seconds since start.
    pub uptime: f64,
    /// What `/healthz` reports as a problem, each on its own.
    pub troubles: Troubles,
}

/// The troubles `/healthz` lists, as 0/1 gauges: a monitoring system alerts on each by name.
#[derive(Debug, Default)]
pub struct Troubles {
    /// The outbox alarm is raised.
    pub outbox_alarm: bool,
    /// Free space below `storage.min_free_mb`.
    pub disk_low: bool,
    /// Scheduled backups are failing.
    pub backup_failing: bool,
    /// The clock reads a time before 2026 (never set).
    pub clock_not_set: bool,
    /// The cache could not read some record.
    pub cache_damaged: bool,
    /// The cache refuses writes.
    pub cache_failing: bool,
}

fn flag(b: bool) -> f64 {
    f64::from(u8::from(b))
}

/// Renders every metric.
pub fn render(m: &Metrics, g: &Gauges) -> String {
    let mut o = String::with_capacity(8 * 1024);
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    for (name, help, v) in [
        (
            "storebox_sales_total",
            "Sales recorded.",
            m.sales.load(Ordering::Relaxed),
        ),
        (
            "storebox_refunds_total",
            "Refunds recorded.",
            m.refunds.load(Ordering::Relaxed),
        ),
        (
            "storebox_member_registrations_total",
            "Members registered at this store.",
            m.registrations.load(Ordering::Relaxed),
        ),
        (
            "storebox_ledger_batches_total",
            "Journal transactions committed.",
            g.batches,
        ),
        (
            "storebox_ledger_commands_total",
            "Commands committed.",
            g.commands,
        ),
        (
            "storebox_ledger_failed_batches_total",
            "Journal transactions that failed.",
            g.failed_batches,
        ),
    ] {
        family(&mut o, name, "counter", help);
        let _ = writeln!(o, "{name} {v}");
    }
    for (name, help, v) in [
        (
            "storebox_journal_last_seq",
            "Highest committed seq.",
            g.last_seq as f64,
        ),
        (
            "storebox_journal_writable",
            "1 while the journal takes writes.",
            flag(g.writable),
        ),
        (
            "storebox_outbox_backlog",
            "Events not yet acknowledged by HQ.",
            g.outbox_backlog as f64,
        ),
        (
            "storebox_outbox_oldest_age_seconds",
            "Age of the oldest event not yet acknowledged by HQ (0 when none).",
            g.outbox_oldest_age.unwrap_or(0.0),
        ),
        (
            "storebox_members_cached",
            "Members in the cache.",
            g.members as f64,
        ),
        (
            "storebox_uptime_seconds",
            "Seconds since the daemon started.",
            g.uptime,
        ),
        (
            "storebox_outbox_alarm",
            "1 while the outbox backlog alarm is raised (uplink.outbox_alarm).",
            flag(g.troubles.outbox_alarm),
        ),
        (
            "storebox_disk_low",
            "1 while free space is below storage.min_free_mb.",
            flag(g.troubles.disk_low),
        ),
        (
            "storebox_backup_failing",
            "1 while scheduled backups fail.",
            flag(g.troubles.backup_failing),
        ),
        (
            "storebox_clock_not_set",
            "1 while the clock reads a time before 2026 (never set: no battery-backed clock, no NTP yet).",
            flag(g.troubles.clock_not_set),
        ),
        (
            "storebox_cache_damaged",
            "1 once a cache record could not be read (a restart rebuilds it).",
            flag(g.troubles.cache_damaged),
        ),
        (
            "storebox_cache_failing",
            "1 while the cache refuses writes.",
            flag(g.troubles.cache_failing),
        ),
    ] {
        family(&mut o, name, "gauge", help);
        let _ = writeln!(o, "{name} {v}");
    }
    if let Some(c) = g.uplink_connected {
        family(
            &mut o,
            "storebox_uplink_connected",
            "gauge",
            "1 while connected to HQ's broker.",
        );
        let _ = writeln!(o, "storebox_uplink_connected {}", u8::from(c));
    }
    if let Some(free) = g.disk_free_bytes {
        family(
            &mut o,
            "storebox_disk_free_bytes",
            "gauge",
            "Free bytes on the data directory's file system.",
        );
        let _ = writeln!(o, "storebox_disk_free_bytes {free}");
    }

    family(
        &mut o,
        "storebox_ledger_phase_seconds_total",
        "counter",
        "Time committed batches spent by phase: execute (compute and append), commit (the journal's fsync), cache (writing the projections).",
    );
    for (phase, v) in ["execute", "commit", "cache"].iter().zip(g.phase_seconds) {
        let _ = writeln!(
            o,
            "storebox_ledger_phase_seconds_total{{phase=\"{phase}\"}} {v}"
        );
    }

    family(
        &mut o,
        "storebox_member_lookups_total",
        "counter",
        "Member lookups answered, by key.",
    );
    if let Ok(l) = m.lookups.lock() {
        for (by, n) in l.iter() {
            let _ = writeln!(o, "storebox_member_lookups_total{{by=\"{by}\"}} {n}");
        }
    }

    family(
        &mut o,
        "storebox_device_up",
        "gauge",
        "1 for the state each device is in (ready, offline, paper_out, error).",
    );
    for (id, kind, state, _, _) in &g.devices {
        for s in ["ready", "offline", "paper_out", "error"] {
            let _ = writeln!(
                o,
                "storebox_device_up{{device=\"{}\",kind=\"{kind}\",state=\"{s}\"}} {}",
                label(id),
                u8::from(*state == s)
            );
        }
    }
    family(
        &mut o,
        "storebox_device_inputs_total",
        "counter",
        "Scans and card reads handled or rejected, by device.",
    );
    for (id, _, _, handled, rejected) in &g.devices {
        let id = label(id);
        let _ = writeln!(
            o,
            "storebox_device_inputs_total{{device=\"{id}\",result=\"handled\"}} {handled}"
        );
        let _ = writeln!(
            o,
            "storebox_device_inputs_total{{device=\"{id}\",result=\"rejected\"}} {rejected}"
        );
    }

    family(
        &mut o,
        "storebox_errors_total",
        "counter",
        "API errors answered, by code.",
    );
    if let Ok(e) = m.errors.lock() {
        for (code, n) in e.iter() {
            let _ = writeln!(o, "storebox_errors_total{{code=\"{code}\"}} {n}");
        }
    }

    family(
        &mut o,
        "storebox_http_requests_total",
        "counter",
        "HTTP requests, by method, route and status.",
    );
    if let Ok(r) = m.requests.lock() {
        for ((method, route, status), n) in r.iter() {
            let _ = writeln!(
                o,
                "storebox_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                label(route)
            );
        }
    }
    family(
        &mut o,
        "storebox_http_request_duration_seconds",
        "histogram",
        "HTTP request latency, by method and route.",
    );
    let latency: Vec<((String, String), Histogram)> = m
        .latency
        .lock()
        .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    for ((method, route), h) in latency {
        let labels = format!("method=\"{method}\",route=\"{}\"", label(&route));
        for (le, n) in BUCKETS.iter().zip(h.counts) {
            let _ = writeln!(
                o,
                "storebox_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            o,
            "storebox_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(
            o,
            "storebox_http_request_duration_seconds_sum{{{labels}}} {}",
            h.sum
        );
        let _ = writeln!(
            o,
            "storebox_http_request_duration_seconds_count{{{labels}}} {}",
            h.count
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.request("GET", "/v1/members", 200, 0.0007);
        m.request("GET", "/v1/members", 200, 0.2);
        m.request("GET", "/v1/members", 404, 3.0);
        let text = render(&m, &Gauges::default());
        assert!(text.contains(
            "storebox_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/members\",le=\"0.001\"} 1"
        ));
        assert!(text.contains(
            "storebox_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/members\",le=\"0.25\"} 2"
        ));
        assert!(text.contains(
            "storebox_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/members\",le=\"+Inf\"} 3"
        ));
        assert!(text.contains(
            "storebox_http_requests_total{method=\"GET\",route=\"/v1/members\",status=\"404\"} 1"
        ));
    }

    #[test]
    fn methods_made_up_by_clients_share_one_label() {
        let m = Metrics::default();
        for i in 0..100 {
            m.request(&format!("X{i}"), "(unmatched)", 404, 0.001);
        }
        m.request("POST", "/v1/sales", 201, 0.001);
        let text = render(&m, &Gauges::default());
        assert!(text.contains(
            "storebox_http_requests_total{method=\"other\",route=\"(unmatched)\",status=\"404\"} 100"
        ));
        assert!(text.contains("method=\"POST\",route=\"/v1/sales\""));
        assert!(!text.contains("method=\"X"), "{text}");
    }
}
