//! Security: the store key and what is derived from it.
//!
//! - [`keys`]: the key file (`storebox init`), its permission check, and the purpose keys
//!   derived from it;
//! - [`seal`]: authenticated encryption and keyed hashes, the primitives below everything else;
//! - [`pin`]: argon2id PIN hashes with the store's pepper.
//!
//! Personal data itself goes through [`crate::pii::PiiCodec`], built on these.

pub mod keys;
pub mod pin;
pub mod seal;

pub use keys::{KeyError, StoreKeys};

/// The lock-out scope of a staff number: wrong PINs for it are counted under this key, from any
/// terminal, and an admin's new PIN for them clears it.
pub fn lockout_scope(staff_no: &str) -> String {
    format!("staff:{staff_no}")
}
