//! `storebox generate-config`: a production config to start from.

use super::{hash_pin, token_hash};

/// A production config to start from (`storebox generate-config`), with a new terminal token
/// and a first admin PIN. The config holds only their hashes; the secrets themselves are
/// returned beside it, to be shown once.
pub fn generate(store_id: &str, name: &str) -> (String, String, String) {
    use rand::RngExt;
    let mut rng = rand::rng();
    let token: String = (0..32)
        .map(|_| char::from(b"abcdefghijkmnpqrstuvwxyz23456789"[rng.random_range(0..32)]))
        .collect();
    let pin = format!("{:06}", rng.random_range(0..1_000_000u32));
    let pin_hash = hash_pin(&pin).unwrap_or_default();
    // A TOML basic string: a line break or another control character must be escaped too.
    let name: String = name
        .chars()
        .map(|c| match c {
            '\\' => "\\\\".to_string(),
            '"' => "\\\"".to_string(),
            c if c.is_control() => format!("\\u{:04X}", u32::from(c)),
            c => c.to_string(),
        })
        .collect();
    let text = format!(
        r#"# storebox configuration for store {store_id}, made by `storebox generate-config`.
# Check it with `storebox check-config <file>`; every key is described in the README.

[store]
id = "{store_id}"
name = "{name}"
timezone = "Asia/Shanghai"
currency = "CNY"
environment = "production"

[http]
# The store LAN; terminals reach the box on this address.
listen = "0.0.0.0:8080"
session_hours = 12

[storage]
dir = "/var/lib/storebox"
cache_capacity_mb = 16
min_free_mb = 256

[security]
# The store key: `storebox init --config <this file>` creates it. Under systemd it is passed
# as the credential storebox.key; keep a copy at HQ.
max_pin_failures = 5
terminal_max_failures = 20
lockout_seconds = 900

[backup]
every_hours = 24
keep = 7

[[terminals]]
id = "pos-1"
token_sha256 = "{token_hash}"

# The first admin; more staff are added over the API (PUT /v1/staff/{{no}}) or pushed by HQ.
[[staff]]
staff_no = "9001"
name = "店长"
role = "admin"
pin_hash = "{pin_hash}"

[uplink]
enabled = false
# host = "mqtt.hq.example.com"
# port = 8883
# [uplink.tls]
# ca_file = "/etc/storebox/hq-ca.pem"
"#,
        token_hash = hex::encode(token_hash(&token)),
    );
    (text, token, pin)
}
