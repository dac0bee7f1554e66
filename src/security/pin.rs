//! Staff PINs: argon2id with a secret pepper derived from the store key.
//!
//! A PIN has 4–8 digits: at most 10⁸ candidates, which no hash makes safe once the hashes and
//! their salts are copied off the box. The pepper is what keeps them safe — it lives in the key
//! file, not beside the hashes — and the lock-out after a few wrong PINs is what keeps guessing
//! at the till useless.
//!
//! Hashes made here carry `keyid=c2JwMQ` (`sbp1`, "storebox pepper v1") in their PHC string.
//! Hashes without it were made elsewhere (HQ, which has no store's key, or an older
//! `storebox hash-pin`): they are checked without the pepper and replaced by a peppered hash
//! at the first successful login.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, KeyId, Params, ParamsBuilder, Version};

use super::keys::StoreKeys;

/// The key id that marks a peppered hash.
const PEPPER_ID: &[u8] = b"sbp1";
/// The same, as it appears in a PHC string (unpadded base64).
const PEPPER_ID_B64: &str = "c2JwMQ";

/// The outcome of checking a PIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinMatch {
    /// Right PIN, hash peppered with this store's key.
    Peppered,
    /// Right PIN, hash made without the pepper (should be upgraded).
    Unpeppered,
    /// Wrong PIN, or a hash that cannot be read.
    No,
}

impl PinMatch {
    /// Whether the PIN was right.
    pub fn ok(self) -> bool {
        self != PinMatch::No
    }
}

fn params() -> Result<Params, String> {
    let keyid = KeyId::new(PEPPER_ID).map_err(|e| e.to_string())?;
    ParamsBuilder::new()
        .m_cost(Params::DEFAULT_M_COST)
        .t_cost(Params::DEFAULT_T_COST)
        .p_cost(Params::DEFAULT_P_COST)
        .keyid(keyid)
        .build()
        .map_err(|e| e.to_string())
}

/// Hashes a PIN with argon2id and the store's pepper. Slow by design (tens of milliseconds):
/// call it off the async runtime.
pub fn hash(keys: &StoreKeys, pin: &str) -> Result<String, String> {
    let argon = Argon2::new_with_secret(
        keys.pepper.as_slice(),
        Algorithm::Argon2id,
        Version::V0x13,
        params()?,
    )
    .map_err(|e| e.to_string())?;
    argon
        .hash_password(pin.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// The costliest argon2id parameters a stored PIN hash may ask for: 64 MiB, 4 passes, 4 lanes
/// — RFC 9106's second recommendation (64 MiB, 3 passes, 4 lanes) fits; `hash` uses argon2's
/// defaults (19 MiB, 2 passes, 1 lane). Checking a PIN runs whatever its hash asks for, two at
/// a time, so a hash from HQ or a config with absurd costs would tie up the box's memory, or a
/// thread for minutes, at every login.
const MAX_M_COST: u32 = 64 * 1024;
const MAX_T_COST: u32 = 4;
const MAX_P_COST: u32 = 4;

/// Checks that `phc` is an argon2id hash whose costs a store box can afford to verify.
pub fn check_hash(phc: &str) -> Result<(), String> {
    let hash = PasswordHash::new(phc).map_err(|e| format!("not a PHC hash string: {e}"))?;
    if hash.algorithm.as_str() != "argon2id" {
        return Err("must be an argon2id hash".into());
    }
    let within = |name: &str, max: u32| {
        hash.params
            .get_decimal(name)
            .is_some_and(|v| (1..=max).contains(&v))
    };
    if !(within("m", MAX_M_COST) && within("t", MAX_T_COST) && within("p", MAX_P_COST)) {
        return Err(format!(
            "its costs must be m ≤ {MAX_M_COST}, t ≤ {MAX_T_COST}, p ≤ {MAX_P_COST}"
        ));
    }
    Ok(())
}

/// A hash of a PIN nobody knows, with the costs of [`hash`] and of HQ's hashes (argon2's
/// defaults). A login for a staff number nobody has checks its PIN against this, and is refused
/// whatever the outcome: answered without a check, it came back in a fraction of the time a
/// wrong PIN for a real staff number takes, and the time told a terminal which numbers exist.
pub const NOBODY: &str = "$argon2id$v=19$m=19456,t=2,p=1$pCwBiXOdbwy0oh//EhpQRw$Bb4GHjHfeXL2wAa/eFyF6G4hAqm6I4SeGTxVLRHykBQ";

/// Checks a PIN against an argon2id PHC string, peppered or not. Slow by design: call it off
/// the async runtime.
pub fn verify(keys: &StoreKeys, phc: &str, pin: &str) -> PinMatch {
    let Ok(hash) = PasswordHash::new(phc) else {
        return PinMatch::No;
    };
    let peppered = hash.params.get_str("keyid") == Some(PEPPER_ID_B64);
    let argon = if peppered {
        match Argon2::new_with_secret(
            keys.pepper.as_slice(),
            Algorithm::Argon2id,
            Version::V0x13,
            Params::default(),
        ) {
            Ok(a) => a,
            Err(_) => return PinMatch::No,
        }
    } else {
        Argon2::default()
    };
    match argon.verify_password(pin.as_bytes(), &hash) {
        Ok(()) if peppered => PinMatch::Peppered,
        Ok(()) => PinMatch::Unpeppered,
        Err(_) => PinMatch::No,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_with_unaffordable_costs_are_refused() {
        let keys = StoreKeys::random();
        let ours = hash(&keys, "1234").unwrap();
        assert_eq!(check_hash(&ours), Ok(()));
        let costly = ours.replacen("m=19456", "m=4194304", 1);
        assert_ne!(costly, ours, "{ours}");
        assert!(check_hash(&costly).is_err());
        assert!(check_hash(&ours.replacen("t=2", "t=100000", 1)).is_err());
        assert_eq!(
            check_hash(&ours.replacen("m=19456,t=2,p=1", "m=65536,t=3,p=4", 1)),
            Ok(())
        );
        assert!(check_hash(&ours.replacen("$argon2id$", "$argon2i$", 1)).is_err());
        assert!(check_hash("$argon2id$nonsense").is_err());
    }

    #[test]
    fn peppered_hashes_need_the_store_key() {
        let keys = StoreKeys::random();
        let h = hash(&keys, "1234").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(h.contains(&format!("keyid={PEPPER_ID_B64}$")), "{h}");
        assert_eq!(verify(&keys, &h, "1234"), PinMatch::Peppered);
        assert_eq!(verify(&keys, &h, "1235"), PinMatch::No);
        let other = StoreKeys::random();
        assert_eq!(
            verify(&other, &h, "1234"),
            PinMatch::No,
            "another store's key"
        );
        assert_eq!(verify(&keys, "not a hash", "1234"), PinMatch::No);
    }

    /// The stand-in for a staff number nobody has costs what a real check costs.
    #[test]
    fn the_hash_for_nobody_costs_what_a_pin_hash_costs() {
        let keys = StoreKeys::random();
        let cost = |phc: &str| {
            let h = PasswordHash::new(phc).unwrap();
            ["m", "t", "p"].map(|k| h.params.get_decimal(k))
        };
        assert_eq!(check_hash(NOBODY), Ok(()));
        assert_eq!(cost(NOBODY), cost(&hash(&keys, "1234").unwrap()));
        assert_eq!(verify(&keys, NOBODY, "1234"), PinMatch::No);
    }

    #[test]
    fn hashes_from_hq_work_unpeppered() {
        let keys = StoreKeys::random();
        let hq = Argon2::default()
            .hash_password(b"4321")
            .unwrap()
            .to_string();
        assert_eq!(verify(&keys, &hq, "4321"), PinMatch::Unpeppered);
        assert_eq!(verify(&keys, &hq, "4320"), PinMatch::No);
    }
}
