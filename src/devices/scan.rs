//! What scanners and card readers send, checked (pure): barcodes with their check digits, card
//! numbers from magstripe tracks or UID lines. Anything else — empty lines, binary noise,
//! over-long input — is rejected with a reason and counted by the device.

use serde::Serialize;

use crate::domain::catalog::upc_e_to_upc_a;
use crate::domain::contact::normalize_card;

/// Longest code accepted (GS1-128 tops out at 48 data characters).
pub const MAX_CODE: usize = 64;
/// Longest swipe accepted: a magstripe reader may send tracks 1, 2 and 3 as one line (ISO
/// 7811: up to 79, 40 and 107 characters); track 1 alone, with its 26-character name field,
/// is longer than any barcode.
pub const MAX_SWIPE: usize = 240;

/// A barcode symbology as far as storebox can tell from the digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Symbology {
    /// 13 digits, check digit verified.
    Ean13,
    /// 8 digits, check digit verified.
    Ean8,
    /// 12 digits, check digit verified.
    UpcA,
    /// 8 digits, number system 0 or 1, whose check digit is that of the UPC-A they stand for
    /// (not an EAN-8's): UPC-E as scanners send it by default.
    UpcE,
    /// Anything else printable (Code 128, Code 39, QR payloads): passed through unchecked.
    Other,
}

/// Why a scan or swipe was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Rejected {
    /// Occurs on an empty line (a bare terminator).
    #[error("empty input")]
    Empty,
    /// Occurs on control characters or bytes outside printable ASCII (line noise, wrong baud).
    #[error("binary or non-ASCII input")]
    Binary,
    /// Occurs on input longer than any barcode or card.
    #[error("input too long")]
    TooLong,
    /// Occurs when an EAN-13, EAN-8 or UPC-A check digit does not match (a misread).
    #[error("check digit does not match")]
    CheckDigit,
    /// Occurs when a swipe holds no card number.
    #[error("not a card number")]
    NotACard,
}

/// A checked scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scan {
    /// The code, trimmed.
    pub code: String,
    /// What it looks like.
    pub symbology: Symbology,
}

/// Trims the line end and rejects what no scanner or reader should send: longer than `max`,
/// control or non-ASCII bytes.
fn printable(raw: &[u8], max: usize) -> Result<&str, Rejected> {
    // Line ends (CR, LF, tab) and surrounding spaces are not part of the code.
    let trimmed = raw.trim_ascii();
    if trimmed.is_empty() {
        return Err(Rejected::Empty);
    }
    if trimmed.len() > max {
        return Err(Rejected::TooLong);
    }
    if !trimmed.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Err(Rejected::Binary);
    }
    std::str::from_utf8(trimmed).map_err(|_| Rejected::Binary)
}

/// Checks one scanned line.
pub fn classify_scan(raw: &[u8]) -> Result<Scan, Rejected> {
    let code = printable(raw, MAX_CODE)?;
    let bytes = code.as_bytes();
    let mut symbology = if bytes.iter().all(u8::is_ascii_digit) {
        match bytes.len() {
            13 => Symbology::Ean13,
            8 => Symbology::Ean8,
            12 => Symbology::UpcA,
            _ => Symbology::Other,
        }
    } else {
        Symbology::Other
    };
    if symbology != Symbology::Other && !crate::domain::catalog::gs1_check_ok(bytes) {
        // Eight digits are a UPC-E too, whose check digit is its UPC-A's.
        if symbology != Symbology::Ean8 || upc_e_to_upc_a(code).is_none() {
            return Err(Rejected::CheckDigit);
        }
        symbology = Symbology::UpcE;
    }
    Ok(Scan {
        code: code.to_string(),
        symbology,
    })
}

/// The card number in a swipe: magstripe track 2 (`;PAN=...?`), track 1 (`%B PAN ^...?`), or
/// a plain UID / number line from an RFID reader.
pub fn parse_card(raw: &[u8]) -> Result<String, Rejected> {
    let line = printable(raw, MAX_SWIPE)?;
    let pan = if let Some(rest) = line.strip_prefix(';') {
        rest.split(['=', '?']).next().unwrap_or_default()
    } else if let Some(rest) = line.strip_prefix("%B") {
        rest.split('^').next().unwrap_or_default()
    } else if line.starts_with('%') {
        return Err(Rejected::NotACard);
    } else {
        line
    };
    normalize_card(pan).map_err(|_| Rejected::NotACard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digits() {
        assert_eq!(
            classify_scan(b"6901234567892\r").unwrap().symbology,
            Symbology::Ean13
        );
        assert_eq!(classify_scan(b"6901234567893\r"), Err(Rejected::CheckDigit));
        assert_eq!(
            classify_scan(b"96385074\n").unwrap().symbology,
            Symbology::Ean8
        );
        assert_eq!(
            classify_scan(b"036000291452\r\n").unwrap().symbology,
            Symbology::UpcA
        );
        assert_eq!(classify_scan(b"036000291453"), Err(Rejected::CheckDigit));
        let code128 = classify_scan(b"SKU-TEA-001\r").unwrap();
        assert_eq!(
            (code128.code.as_str(), code128.symbology),
            ("SKU-TEA-001", Symbology::Other)
        );
    }

    /// UPC-E as scanners send it (a Coca-Cola can): its check digit is its UPC-A's, and the
    /// EAN-8 check of the same digits would be 0. It was rejected as a misread.
    #[test]
    fn a_upc_e_code_is_not_a_misread() {
        let s = classify_scan(b"04963406\r").unwrap();
        assert_eq!(
            (s.code.as_str(), s.symbology),
            ("04963406", Symbology::UpcE)
        );
        assert_eq!(classify_scan(b"04963407\r"), Err(Rejected::CheckDigit));
        // Eight digits right for both readings stay an EAN-8; a wrong EAN-8 that is no UPC-E
        // (number system 2..9) is still a misread.
        assert_eq!(
            classify_scan(b"01234565").unwrap().symbology,
            Symbology::Ean8
        );
        assert_eq!(classify_scan(b"96385075"), Err(Rejected::CheckDigit));
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(classify_scan(b"\r"), Err(Rejected::Empty));
        assert_eq!(classify_scan(b"   \r\n"), Err(Rejected::Empty));
        assert_eq!(classify_scan(b"\x00\xff\x13abc\r"), Err(Rejected::Binary));
        assert_eq!(classify_scan("条码".as_bytes()), Err(Rejected::Binary));
        assert_eq!(classify_scan(&[b'1'; 65]), Err(Rejected::TooLong));
    }

    #[test]
    fn cards() {
        assert_eq!(
            parse_card(b";6222020000001234=25121010000?\r").unwrap(),
            "6222020000001234"
        );
        assert_eq!(
            parse_card(b"%B6222020000001234^ZHANG/SAN^2512101?\r").unwrap(),
            "6222020000001234"
        );
        assert_eq!(parse_card(b"04a1b2c3d4e5f6\r").unwrap(), "04A1B2C3D4E5F6");
        assert_eq!(parse_card(b";=?\r"), Err(Rejected::NotACard));
        assert_eq!(parse_card(b"%E?\r"), Err(Rejected::NotACard));
        assert_eq!(parse_card(b"\r"), Err(Rejected::Empty));
    }

    #[test]
    fn a_full_track_one_and_two_swipe_is_a_card() {
        // ISO 7813 track 1 with its 26-character name field: longer than any barcode.
        let track1 = "%B4815881002861896^YATES/EUGENE JOHN         ^37829821000123456789?";
        let track2 = ";4815881002861896=37829821000123456789?";
        assert_eq!(
            parse_card(format!("{track1}\r").as_bytes()),
            Ok("4815881002861896".into())
        );
        assert_eq!(
            parse_card(format!("{track1}{track2}\r").as_bytes()),
            Ok("4815881002861896".into())
        );
        // A barcode that long is still garbage.
        assert_eq!(classify_scan(track1.as_bytes()), Err(Rejected::TooLong));
        assert_eq!(parse_card(&[b'1'; 300]), Err(Rejected::TooLong));
    }
}
