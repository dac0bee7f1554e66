//! The two primitives everything else is built on: authenticated encryption
//! (XChaCha20-Poly1305 with a random 192-bit nonce, so nonces never need a counter) and keyed
//! hashes (HMAC-SHA256).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes a sealed message adds to its plaintext: the nonce and the tag.
pub const OVERHEAD: usize = NONCE + 16;
const NONCE: usize = 24;

/// Encryption failed (only for messages larger than any storebox writes).
#[derive(Debug, thiserror::Error)]
#[error("encryption failed")]
pub struct SealError;

/// Encrypts `plain`, binding it to `aad`: `nonce || ciphertext || tag`.
pub fn seal(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, SealError> {
    use rand::Rng;
    let mut nonce = [0u8; NONCE];
    rand::rng().fill_bytes(&mut nonce);
    let cipher = XChaCha20Poly1305::new(&(*key).into());
    let ct = cipher
        .encrypt(&XNonce::from(nonce), Payload { msg: plain, aad })
        .map_err(|_| SealError)?;
    let mut out = Vec::with_capacity(NONCE + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Decrypts what [`seal`] made with the same key and `aad`; `None` if it was made with another
/// key or `aad`, or altered.
pub fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < OVERHEAD {
        return None;
    }
    let (nonce, ct) = sealed.split_at(NONCE);
    let nonce: [u8; NONCE] = nonce.try_into().ok()?;
    let cipher = XChaCha20Poly1305::new(&(*key).into());
    cipher
        .decrypt(&XNonce::from(nonce), Payload { msg: ct, aad })
        .ok()
}

/// HMAC-SHA256 of the concatenation of `parts`, each prefixed by its length (so `["ab","c"]`
/// and `["a","bc"]` differ).
pub fn mac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    Mac256::new(key).mac(parts)
}

/// An HMAC-SHA256 key with its inner and outer pads already hashed: for a key used on every
/// request (the index key), half the hashing of [`mac`].
#[derive(Clone)]
pub struct Mac256(Hmac<Sha256>);

impl Mac256 {
    /// Prepares `key`.
    pub fn new(key: &[u8; 32]) -> Mac256 {
        // A key shorter than SHA-256's block is zero-padded to it (RFC 2104): the same MAC as
        // `new_from_slice(key)`, without its `Result`.
        let mut block = zeroize::Zeroizing::new([0u8; 64]);
        block[..32].copy_from_slice(key);
        Mac256(<Hmac<Sha256> as KeyInit>::new(&(*block).into()))
    }

    /// The same as [`mac`] with this key.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = self.0.clone();
        for p in parts {
            m.update(&(p.len() as u64).to_le_bytes());
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_with_its_key_and_context() {
        let k = [7u8; 32];
        let s = seal(&k, b"m1", "张三 13800138000".as_bytes()).unwrap();
        assert!(!s.windows(11).any(|w| w == b"13800138000"));
        assert_eq!(open(&k, b"m1", &s).unwrap(), "张三 13800138000".as_bytes());
        assert!(open(&k, b"m2", &s).is_none(), "other context");
        assert!(open(&[8u8; 32], b"m1", &s).is_none(), "other key");
        let mut bad = s.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(open(&k, b"m1", &bad).is_none(), "altered");
        assert!(open(&k, b"m1", &s[..10]).is_none(), "truncated");
        assert_ne!(
            seal(&k, b"m1", b"x").unwrap(),
            seal(&k, b"m1", b"x").unwrap()
        );
    }

    #[test]
    fn a_prepared_key_macs_like_the_key() {
        let k = [9u8; 32];
        let direct = <Hmac<Sha256> as KeyInit>::new_from_slice(&k)
            .unwrap()
            .chain_update(b"x")
            .finalize()
            .into_bytes();
        let mut m = Mac256::new(&k).0;
        m.update(b"x");
        assert_eq!(m.finalize().into_bytes(), direct);
    }

    #[test]
    fn macs_are_keyed_and_framed() {
        let k = [1u8; 32];
        assert_eq!(mac(&k, &[b"ab", b"c"]), mac(&k, &[b"ab", b"c"]));
        assert_ne!(mac(&k, &[b"ab", b"c"]), mac(&k, &[b"a", b"bc"]));
        assert_ne!(mac(&k, &[b"ab"]), mac(&[2u8; 32], &[b"ab"]));
    }
}
