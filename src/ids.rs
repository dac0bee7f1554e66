//! Ids: UUIDv7 (design section 2), from the clock and the thread's random number generator.
//! `uuid`'s own `now_v7` asks the kernel for its random bits on every call (a system call per
//! id, a few per sale and one per imported member); the thread's generator is a ChaCha stream
//! seeded from the kernel, as good for 74 random bits and without the system call.

use rand::Rng;
use uuid::Uuid;

/// A new UUIDv7.
pub fn new_v7() -> Uuid {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut random = [0u8; 10];
    rand::rng().fill_bytes(&mut random);
    uuid::Builder::from_unix_timestamp_millis(ms, &random).into_uuid()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_version_7_distinct_and_in_time_order() {
        let a = super::new_v7();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = super::new_v7();
        assert_eq!(a.get_version_num(), 7);
        assert_eq!(b.get_variant(), uuid::Variant::RFC4122);
        assert!(a < b);
        let many: std::collections::HashSet<_> = (0..10_000).map(|_| super::new_v7()).collect();
        assert_eq!(many.len(), 10_000);
    }
}
