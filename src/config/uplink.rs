//! `[uplink]`: the MQTT link to HQ (design section 5).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Invalid, Secret, bad};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUplink {
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    topic_prefix: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    keep_alive_secs: Option<u64>,
    #[serde(default)]
    inflight: Option<u16>,
    #[serde(default)]
    max_packet_bytes: Option<usize>,
    #[serde(default)]
    max_message_bytes: Option<usize>,
    #[serde(default)]
    outbox_alarm: Option<u64>,
    #[serde(default)]
    reconnect_min_ms: Option<u64>,
    #[serde(default)]
    reconnect_max_ms: Option<u64>,
    #[serde(default)]
    healthy_after_secs: Option<u64>,
    #[serde(default)]
    status_interval_secs: Option<u64>,
    #[serde(default)]
    tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: PathBuf,
    #[serde(default)]
    client_cert: Option<PathBuf>,
    #[serde(default)]
    client_key: Option<PathBuf>,
}

/// TLS towards the broker (rustls with the `ring` provider).
#[derive(Debug, Clone)]
pub struct UplinkTls {
    /// PEM file with the CA certificate(s) that sign the broker's certificate.
    pub ca_file: PathBuf,
    /// PEM certificate chain and key for client-certificate authentication.
    pub client_auth: Option<(PathBuf, PathBuf)>,
}

/// The validated `[uplink]`.
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    /// Whether to connect at all; disabled, events still queue in the outbox.
    pub enabled: bool,
    /// Broker host.
    pub host: String,
    /// Broker port (1883 plain, 8883 TLS by default).
    pub port: u16,
    /// MQTT client id; one persistent session per id.
    pub client_id: String,
    /// Topic prefix (`storebox`).
    pub topic_prefix: String,
    /// Username and password, if the broker wants them.
    pub credentials: Option<(String, Secret)>,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// Events published and not yet acknowledged, at most.
    pub inflight: u16,
    /// The broker's largest accepted packet; a bigger event is reported, not sent.
    pub max_packet_bytes: usize,
    /// Largest downlink message applied; bigger ones are reported and acknowledged.
    pub max_message_bytes: usize,
    /// Outbox size (events) above which the store raises an alert.
    pub outbox_alarm: u64,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// A connection up this long resets the reconnect delay.
    pub healthy_after: Duration,
    /// How often the retained status is refreshed while connected.
    pub status_interval: Duration,
    /// TLS, when the broker needs it.
    pub tls: Option<UplinkTls>,
}

/// Why `host` cannot be the broker's host name or address, if it cannot: what HQ mails is
/// often a URL (`mqtts://mqtt.hq.example.cn:8883`) or a `host:port`, which the resolver takes
/// as one long name and fails to find at every retry. An IPv6 address is written bare
/// (`fd00::5`), without brackets.
pub fn host_problem(host: &str) -> Option<String> {
    const HINT: &str = "give the broker's host name or IP address alone, the port in \
                        uplink.port and TLS in [uplink.tls] (e.g. host = \"mqtt.hq.example.cn\", \
                        port = 8883)";
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        return None;
    }
    let what = if host.contains("://") {
        "is a URL"
    } else if host.chars().any(char::is_whitespace) {
        "has spaces in it"
    } else if host.starts_with('[') {
        "is in brackets"
    } else if host.contains(':') {
        "has a port in it"
    } else if host.contains(['/', '@', '?', '#']) {
        "is not a host name"
    } else {
        return None;
    };
    Some(format!("{host:?} {what}: {HINT}"))
}

pub(super) fn to_uplink(raw: Option<RawUplink>, store_id: &str) -> Result<UplinkConfig, Invalid> {
    let r = raw.unwrap_or_default();
    let tls = match r.tls {
        None => None,
        Some(t) => {
            let client_auth = match (t.client_cert, t.client_key) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => {
                    return Err(bad(
                        "uplink.tls.client_cert",
                        "client_cert and client_key go together",
                    ));
                }
            };
            Some(UplinkTls {
                ca_file: t.ca_file,
                client_auth,
            })
        }
    };
    let host = r.host.unwrap_or_default();
    if r.enabled && host.trim().is_empty() {
        return Err(bad("uplink.host", "required when the uplink is enabled"));
    }
    let prefix = r.topic_prefix.unwrap_or_else(|| "storebox".into());
    if prefix.is_empty()
        || prefix.len() > 64
        || prefix
            .chars()
            .any(|c| matches!(c, '+' | '#' | '\0') || c.is_whitespace())
        || prefix.starts_with('/')
        || prefix.ends_with('/')
    {
        return Err(bad(
            "uplink.topic_prefix",
            "must be 1–64 characters without '+', '#', spaces or a leading/trailing '/'",
        ));
    }
    let client_id = r
        .client_id
        .unwrap_or_else(|| format!("storebox-{store_id}"));
    if client_id.is_empty() || client_id.len() > 64 {
        return Err(bad("uplink.client_id", "must be 1–64 characters"));
    }
    let keep_alive = r.keep_alive_secs.unwrap_or(30);
    if !(5..=3600).contains(&keep_alive) {
        return Err(bad("uplink.keep_alive_secs", "must be 5..=3600"));
    }
    let inflight = r.inflight.unwrap_or(32);
    if !(1..=1000).contains(&inflight) {
        return Err(bad("uplink.inflight", "must be 1..=1000"));
    }
    let max_packet = r.max_packet_bytes.unwrap_or(256 * 1024);
    if !(1024..=256 * 1024 * 1024).contains(&max_packet) {
        return Err(bad("uplink.max_packet_bytes", "must be 1 KiB..=256 MiB"));
    }
    let max_message = r.max_message_bytes.unwrap_or(4 * 1024 * 1024);
    if !(1024..=64 * 1024 * 1024).contains(&max_message) {
        return Err(bad("uplink.max_message_bytes", "must be 1 KiB..=64 MiB"));
    }
    let min = r.reconnect_min_ms.unwrap_or(500);
    let max = r.reconnect_max_ms.unwrap_or(30_000);
    if min == 0 || max < min || max > 3_600_000 {
        return Err(bad(
            "uplink.reconnect_max_ms",
            "need 0 < reconnect_min_ms <= reconnect_max_ms <= 3600000",
        ));
    }
    if r.port == Some(0) {
        return Err(bad("uplink.port", "must be 1..=65535"));
    }
    // 0 would read as "off" to whoever wrote it, and as "always" to the daemon.
    let outbox_alarm = r.outbox_alarm.unwrap_or(100_000);
    if outbox_alarm == 0 {
        return Err(bad(
            "uplink.outbox_alarm",
            "must be at least 1 (events waiting for HQ that raise an alert)",
        ));
    }
    let healthy_after = r.healthy_after_secs.unwrap_or(30);
    if !(1..=3600).contains(&healthy_after) {
        return Err(bad("uplink.healthy_after_secs", "must be 1..=3600"));
    }
    let credentials = match (r.username, r.password) {
        (Some(u), p) if !u.is_empty() => Some((u, Secret(p.unwrap_or_default()))),
        (_, Some(p)) if !p.is_empty() => {
            return Err(bad("uplink.username", "a password needs a username"));
        }
        _ => None,
    };
    Ok(UplinkConfig {
        enabled: r.enabled,
        host,
        port: r.port.unwrap_or(if tls.is_some() { 8883 } else { 1883 }),
        client_id,
        topic_prefix: prefix,
        credentials,
        keep_alive: Duration::from_secs(keep_alive),
        inflight,
        max_packet_bytes: max_packet,
        max_message_bytes: max_message,
        outbox_alarm,
        reconnect_min: Duration::from_millis(min),
        reconnect_max: Duration::from_millis(max),
        healthy_after: Duration::from_secs(healthy_after),
        status_interval: Duration::from_secs(r.status_interval_secs.unwrap_or(60).clamp(5, 3600)),
        tls,
    })
}
