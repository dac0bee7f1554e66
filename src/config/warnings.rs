//! What a config may say that a store runs on but is most likely a mistake: warned about at
//! every start and by `check-config`, not refused.
//!
//! A time zone that parses but is very likely not the one meant: `Etc/GMT+8` is eight hours
//! *behind* UTC (the POSIX sign is reversed in the `Etc/` names), so a store in China given it
//! would count "today", birthdays and report days sixteen hours off (a store may really be
//! there, hence not refused).

use super::Config;

impl Config {
    /// Likely mistakes, one sentence each: two devices on one port, an `Etc/GMT±N` zone.
    pub fn likely_mistakes(&self) -> Vec<String> {
        let mut out = self.devices_sharing_a_port();
        out.extend(reversed_sign(self.store.timezone.name()));
        out
    }
}

/// The warning for an `Etc/GMT+N` or `Etc/GMT-N` zone: which offset it really is.
fn reversed_sign(name: &str) -> Option<String> {
    let rest = name.strip_prefix("Etc/GMT")?;
    let (sign, hours) = match rest.split_at_checked(1)? {
        ("+", h) => ('−', h),
        ("-", h) => ('+', h),
        _ => return None,
    };
    let hours: u8 = hours.parse().ok().filter(|h| *h > 0)?;
    Some(format!(
        "store.timezone: {name} is UTC{sign}{hours} (in the Etc/ names the sign is reversed: \
         Etc/GMT-8 is UTC+8); a place's name such as Asia/Shanghai says what is meant"
    ))
}

#[cfg(test)]
mod tests {
    use super::reversed_sign;

    #[test]
    fn an_etc_gmt_zone_is_said_with_its_real_offset() {
        let w = reversed_sign("Etc/GMT+8").unwrap();
        assert!(w.contains("is UTC−8"), "{w}");
        assert!(reversed_sign("Etc/GMT-8").unwrap().contains("is UTC+8"));
        for fine in ["Asia/Shanghai", "Etc/GMT", "Etc/GMT0", "Etc/UTC", "UTC"] {
            assert_eq!(reversed_sign(fine), None, "{fine}");
        }
    }
}
