//! Spoiling valid requests and messages for the fuzz tests: hostile values (extreme and
//! negative numbers, floats, wrong types, long and odd strings, the calendar's edges), keys
//! dropped or added, arrays repeated, bodies cut short or replaced by random bytes.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

const MEGABYTE: usize = 1 << 20;

/// A run's seed (`FUZZ_SEED`, else random), its number of cases (`FUZZ_CASES`, else
/// `default_cases`) and the generator seeded with it. The seed is printed first (the test
/// harness shows it with any failure, whichever assertion or panic it is).
pub fn seeded(default_cases: usize) -> (u64, usize, StdRng) {
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_cases);
    eprintln!("FUZZ_SEED={seed} FUZZ_CASES={cases} replays this run");
    (seed, cases, StdRng::seed_from_u64(seed))
}

/// A hostile value.
pub fn hostile(rng: &mut StdRng) -> Value {
    let long = "长".repeat(rng.random_range(100..20_000));
    let deep = (0..rng.random_range(10..300)).fold(json!(1), |v, _| json!([v]));
    let pick = rng.random_range(0..37);
    match pick {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(0),
        3 => json!(-1),
        4 => json!(i64::MAX),
        5 => json!(i64::MIN),
        6 => json!(u64::MAX),
        7 => json!(1e308),
        8 => json!(-1e308),
        9 => json!(0.5),
        10 => json!(9_007_199_254_740_993_i64),
        11 => json!(""),
        12 => json!(" "),
        13 => json!(long),
        14 => json!("\u{0}\u{1}\u{7f}"),
        15 => json!("😀👍🏽"),
        16 => json!("2024-02-29"),
        17 => json!("0000-01-01"),
        18 => json!("9999-12-31"),
        19 => json!("+262143-12-31"),
        20 => json!("2026-13-45"),
        21 => json!("1970-01-01T00:00:00Z"),
        22 => json!("NaN"),
        23 => json!([]),
        24 => json!([null]),
        25 => json!({}),
        26 => json!({"a": 1}),
        27 => deep,
        28 => json!(rng.random_range(i64::MIN..i64::MAX)),
        29 => json!(rng.random_range(-1_000_000..1_000_000_i64)),
        30 => json!(rng.random::<f64>() * 1e6),
        31 => json!("13800138000"),
        32 => json!("../../etc/passwd"),
        // The calendar's last and first days (chrono's), and a timestamp at its end.
        33 => json!("+262142-12-31"),
        34 => json!("-262143-01-01"),
        35 => json!("+262142-12-31T23:59:59+08:00"),
        _ => json!("' OR 1=1; --"),
    }
}

/// A hostile string, for paths, queries and headers (at most 2,000 characters: the client
/// refuses to send a longer address).
pub fn hostile_text(rng: &mut StdRng) -> String {
    let text = match hostile(rng) {
        Value::String(s) => s,
        other => other.to_string(),
    };
    text.chars().take(2_000).collect()
}

/// Every place in `v` a value can be swapped: object keys and array slots, as paths.
fn slots(v: &Value, at: &mut Vec<Vec<Value>>, here: &mut Vec<Value>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                here.push(json!(k));
                at.push(here.clone());
                slots(child, at, here);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                here.push(json!(i));
                at.push(here.clone());
                slots(child, at, here);
                here.pop();
            }
        }
        _ => {}
    }
}

fn at_mut<'a>(v: &'a mut Value, path: &[Value]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, step| match step {
        Value::String(k) => v.get_mut(k.as_str()),
        Value::Number(i) => v.get_mut(i.as_u64()? as usize),
        _ => None,
    })
}

/// Spoils a JSON body in one to three ways.
pub fn spoil_json(rng: &mut StdRng, body: &mut Value) {
    for _ in 0..rng.random_range(1..=3) {
        let mut at = Vec::new();
        slots(body, &mut at, &mut Vec::new());
        let kind = rng.random_range(0..10);
        if at.is_empty() || kind == 0 {
            *body = hostile(rng);
            continue;
        }
        let path = at[rng.random_range(0..at.len())].clone();
        let (last, parent) = match path.split_last() {
            Some(x) => x,
            None => continue,
        };
        let value = hostile(rng);
        let Some(parent) = at_mut(body, parent) else {
            continue;
        };
        match (kind, parent) {
            // Drop a key.
            (1 | 2, Value::Object(m)) => {
                m.remove(last.as_str().unwrap_or_default());
            }
            // Add one nobody knows.
            (3, Value::Object(m)) => {
                m.insert("unexpected".into(), value);
            }
            // Repeat an array's element many times.
            (4, Value::Array(a)) if !a.is_empty() => {
                let first = a[0].clone();
                // Up to a megabyte of repeats.
                let most = (MEGABYTE / first.to_string().len().max(1)).clamp(2, 2_000);
                let n = rng.random_range(2..=most);
                a.extend(std::iter::repeat_n(first, n));
            }
            (_, Value::Object(m)) => {
                if let Some(slot) = m.get_mut(last.as_str().unwrap_or_default()) {
                    *slot = value;
                }
            }
            (_, Value::Array(a)) => {
                if let Some(slot) = last.as_u64().and_then(|i| a.get_mut(i as usize)) {
                    *slot = value;
                }
            }
            _ => {}
        }
    }
}

/// The bytes of a spoiled body: usually spoiled JSON, sometimes JSON cut short, sometimes
/// bytes that are not JSON at all.
pub fn spoil_body(rng: &mut StdRng, body: &Value) -> Vec<u8> {
    match rng.random_range(0..10) {
        0 => {
            let text = body.to_string().into_bytes();
            let cut = rng.random_range(0..text.len().max(1));
            text[..cut].to_vec()
        }
        1 => (0..rng.random_range(0..512))
            .map(|_| rng.random::<u8>())
            .collect(),
        _ => {
            let mut body = body.clone();
            spoil_json(rng, &mut body);
            // Repeats of repeats can grow past what a server reads before refusing it: such a
            // body is cut (it is then simply not JSON).
            let mut text = body.to_string().into_bytes();
            text.truncate(3 * MEGABYTE);
            text
        }
    }
}
