//! A login's answer time does not tell whether its staff number exists: through the real
//! binary, with PINs stored as argon2id hashes (as in production).

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The time one wrong-PIN login takes to be answered `401`.
async fn wrong_pin(d: &Daemon, staff_no: &str) -> Duration {
    let t = Instant::now();
    let (s, v, _) = login_status(d, TERMINAL_TOKEN, staff_no, "0000").await;
    let took = t.elapsed();
    assert_eq!(
        (s, code(&v)),
        (401, "invalid_credentials"),
        "{staff_no}: {v}"
    );
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A staff number nobody has was answered without a PIN check, a known one after its argon2id
/// check: a terminal could tell which staff numbers exist (the manager's, the admin's) from
/// how long a wrong PIN took, though the answer is the same. Both now take a PIN check.
#[tokio::test]
async fn an_unknown_staff_number_takes_as_long_as_a_wrong_pin() {
    let dir = tempfile::tempdir().unwrap();
    let hash = storebox::config::hash_pin("4321").unwrap();
    let d = Daemon::start_in(
        dir.path(),
        &format!(
            "[security]\nmax_pin_failures = 20\nterminal_max_failures = 200\n\
             [[staff]]\nstaff_no = \"5001\"\nname = \"赵敏\"\nrole = \"manager\"\npin_hash = \"{hash}\"\n"
        ),
    );
    // Warm up (the first PIN check allocates argon2's memory, the first audit opens files).
    wrong_pin(&d, "5001").await;
    wrong_pin(&d, "5999").await;
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..7 {
        known.push(wrong_pin(&d, "5001").await);
        unknown.push(wrong_pin(&d, &format!("59{i:02}")).await);
    }
    let (known, unknown) = (median(known), median(unknown));
    d.terminate();
    assert!(
        unknown * 2 >= known,
        "an unknown staff number is answered in {unknown:?}, a known one's wrong PIN in {known:?}"
    );
}
