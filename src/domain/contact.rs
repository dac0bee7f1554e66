//! Personal fields as a till sees them: phone numbers, card numbers, names; normalising,
//! validating and masking them.

use std::fmt;

/// Why a personal field was rejected. The message is shown to the cashier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The request field at fault (`phone`, `card_no`, `name`...).
    pub field: &'static str,
    /// What is wrong with it, in words a cashier understands.
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

fn err(field: &'static str, reason: impl Into<String>) -> FieldError {
    FieldError {
        field,
        reason: reason.into(),
    }
}

/// Characters that print as nothing: zero-width spaces and joiners, direction marks and
/// embeddings (a phone number copied from a phone's contacts or a chat comes wrapped in
/// U+202A … U+202C), the soft hyphen and the byte-order mark. They are dropped from phones and
/// names, so what the cashier sees is what is stored and searched; a receipt prints nothing for
/// them.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
    )
}

/// A full-width character (`！`–`～`: digits, letters and punctuation as a Chinese input
/// method's full-width mode types them) as its ASCII twin; any other character as it is.
pub fn half_width(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(u32::from(c) - 0xFF01 + 0x21).unwrap_or(c),
        _ => c,
    }
}

/// An ASCII or full-width digit, as ASCII.
fn ascii_digit(c: char) -> Option<char> {
    Some(half_width(c)).filter(char::is_ascii_digit)
}

/// Normalises a mainland-China mobile number to its 11 digits: full-width digits (as a Chinese
/// input method types them) become ASCII; white space of any kind (no-break and ideographic
/// spaces, tabs), invisible characters, dashes, dots, brackets and a leading
/// `+86`/`0086`/`86` are removed. Anything that is not then `1[3-9]` followed by nine digits is
/// rejected.
pub fn normalize_phone(raw: &str) -> Result<String, FieldError> {
    let mut digits = String::with_capacity(16);
    for c in raw.chars() {
        if let Some(d) = ascii_digit(c) {
            digits.push(d);
            continue;
        }
        match c {
            c if c.is_whitespace() || is_invisible(c) => {}
            '-' | '－' | '.' | '(' | ')' | '（' | '）' => {}
            '+' | '＋' if digits.is_empty() => {}
            _ => {
                return Err(err(
                    "phone",
                    "may contain only digits, spaces, dashes, dots, brackets and a leading +",
                ));
            }
        }
    }
    let digits = if digits.len() == 15 && digits.starts_with("0086") {
        digits[4..].to_string()
    } else if digits.len() == 13 && digits.starts_with("86") {
        digits[2..].to_string()
    } else {
        digits
    };
    let bytes = digits.as_bytes();
    if bytes.len() != 11 || bytes[0] != b'1' || !(b'3'..=b'9').contains(&bytes[1]) {
        return Err(err(
            "phone",
            "must be an 11-digit mobile number starting with 13–19",
        ));
    }
    Ok(digits)
}

/// The last four digits, the "手机尾号" a cashier asks for.
pub fn phone_tail(phone: &str) -> &str {
    let n = phone.len();
    if n >= 4 && phone.is_char_boundary(n - 4) {
        &phone[n - 4..]
    } else {
        phone
    }
}

/// Normalises a phone-tail query to its four ASCII digits: full-width digits become ASCII and
/// surrounding white space goes, as for a whole phone number.
pub fn normalize_tail(raw: &str) -> Result<String, FieldError> {
    let tail: Option<String> = raw
        .trim_matches(|c: char| c.is_whitespace() || is_invisible(c))
        .chars()
        .map(ascii_digit)
        .collect();
    match tail {
        Some(t) if t.len() == 4 => Ok(t),
        _ => Err(err("phone_tail", "must be exactly four digits")),
    }
}

/// Masks a phone for people who may not see it whole: `13812345678` → `138****5678`.
pub fn mask_phone(phone: &str) -> String {
    // The usual case, an 11-digit mobile number, without collecting characters.
    if phone.len() == 11 && phone.is_ascii() {
        let mut out = String::with_capacity(11);
        out.push_str(&phone[..3]);
        out.push_str("****");
        out.push_str(&phone[7..]);
        return out;
    }
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() < 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

/// Masks a name for logs: `张伟` → `张*`, `Alice` → `A****`.
pub fn mask_name(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => format!("{first}{}", "*".repeat(chars.count())),
        None => String::new(),
    }
}

/// Checks a birthday: a date after 1900 and not after `today` (the store's date). The same
/// check for a terminal's registration or edit, an imported row and HQ's member data.
pub fn check_birthday(
    birthday: chrono::NaiveDate,
    today: chrono::NaiveDate,
) -> Result<(), FieldError> {
    use chrono::Datelike;
    if birthday > today || birthday.year() < 1900 {
        return Err(err("birthday", "must be a past date after 1900"));
    }
    Ok(())
}

/// Normalises a member card number: upper-case ASCII letters and digits, 4–32 long; spaces
/// of any kind, dashes and invisible characters are dropped and full-width letters and digits
/// (a Chinese input method's full-width mode) made ASCII.
pub fn normalize_card(raw: &str) -> Result<String, FieldError> {
    let card: String = raw
        .chars()
        .filter(|c| !c.is_whitespace() && !is_invisible(*c) && *c != '-' && *c != '－')
        .map(half_width)
        .collect();
    if !(4..=32).contains(&card.len()) || !card.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(err("card_no", "must be 4–32 letters or digits"));
    }
    Ok(card.to_ascii_uppercase())
}

/// Validates and trims a person's name: 1–50 characters, no control characters; invisible
/// characters (zero-width spaces, direction marks) are dropped, so a name of nothing but them
/// is blank.
pub fn normalize_name(raw: &str) -> Result<String, FieldError> {
    let visible: String = raw.chars().filter(|c| !is_invisible(*c)).collect();
    let name = visible.trim();
    let len = name.chars().count();
    if len == 0 {
        return Err(err("name", "must not be blank"));
    }
    if len > 50 {
        return Err(err("name", "must be at most 50 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(err("name", "must not contain control characters"));
    }
    Ok(name.to_string())
}

/// The form of a name used for exact-name search: invisible characters dropped, trimmed, inner
/// whitespace collapsed, lower-case (Chinese is unaffected).
pub fn name_search_key(name: &str) -> String {
    let visible: String = name.chars().filter(|c| !is_invisible(*c)).collect();
    visible
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The length of a name typed in a search, counted as a stored name's (invisible characters
/// dropped, inner spaces collapsed) and before lower-casing, which makes some letters two
/// characters (`İ` becomes `i̇`): what the 50 characters of a name are checked against, so
/// that every name a member has can be searched for.
pub fn name_search_len(name: &str) -> usize {
    let visible: String = name.chars().filter(|c| !is_invisible(*c)).collect();
    visible
        .split_whitespace()
        .map(|w| w.chars().count() + 1)
        .sum::<usize>()
        .saturating_sub(1)
}

/// Validates member tags: at most 20, each 1–32 characters, no control characters; duplicates
/// are removed, order kept.
pub fn normalize_tags(tags: &[String]) -> Result<Vec<String>, FieldError> {
    if tags.len() > 20 {
        return Err(err("tags", "at most 20 tags"));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for t in tags {
        let t = t.trim();
        let n = t.chars().count();
        if n == 0 || n > 32 || t.chars().any(char::is_control) {
            return Err(err("tags", "each tag must be 1–32 characters"));
        }
        if !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_normalise() {
        assert_eq!(normalize_phone("138 0013 8000").unwrap(), "13800138000");
        assert_eq!(normalize_phone("+86 138-0013-8000").unwrap(), "13800138000");
        assert_eq!(normalize_phone("008613800138000").unwrap(), "13800138000");
        assert!(normalize_phone("12800138000").is_err());
        assert!(normalize_phone("1380013800").is_err());
        assert!(normalize_phone("13800138000x").is_err());
        assert!(normalize_phone("").is_err());
        // As Chinese input methods and contact cards write them.
        assert_eq!(
            normalize_phone("１３８００１３８０００").unwrap(),
            "13800138000"
        );
        assert_eq!(
            normalize_phone("（+86）138\u{3000}0013－8000").unwrap(),
            "13800138000"
        );
        assert_eq!(normalize_phone("138.0013.8000").unwrap(), "13800138000");
        assert!(normalize_phone("138+00138000").is_err());
        // Copied from a phone's contacts or a chat: no-break spaces, direction marks,
        // zero-width spaces; a tab from a spreadsheet.
        for raw in [
            "\u{202A}+86 138 0013 8000\u{202C}",
            "+86\u{00A0}138\u{00A0}0013\u{00A0}8000",
            "138\u{2002}0013\u{2009}8000",
            "138\u{200B}00138000\u{FEFF}",
            "138\t0013\t8000",
        ] {
            assert_eq!(normalize_phone(raw).unwrap(), "13800138000", "{raw:?}");
        }
        assert!(normalize_phone("\u{200B}").is_err());
    }

    #[test]
    fn tails_normalise_as_phones_do() {
        assert_eq!(normalize_tail("8000").unwrap(), "8000");
        assert_eq!(normalize_tail("８０００").unwrap(), "8000");
        assert_eq!(normalize_tail(" 8000\u{3000}").unwrap(), "8000");
        for bad in ["800", "80000", "80a0", "", "８００", "8 000"] {
            assert!(normalize_tail(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn invisible_characters_leave_names() {
        assert_eq!(normalize_name("张三\u{200B}").unwrap(), "张三");
        assert_eq!(normalize_name("\u{FEFF}李娜\u{202C}").unwrap(), "李娜");
        assert!(normalize_name("\u{200B}").is_err());
        assert!(normalize_name("\u{200B} \u{3000}\u{200D}").is_err());
        assert_eq!(name_search_key("张三\u{200B}"), name_search_key("张三"));
    }

    #[test]
    fn masks() {
        assert_eq!(mask_phone("13812345678"), "138****5678");
        assert_eq!(mask_name("张伟"), "张*");
        assert_eq!(phone_tail("13812345678"), "5678");
    }

    #[test]
    fn cards_and_names() {
        assert_eq!(normalize_card(" 6222-0000 1234 ").unwrap(), "622200001234");
        assert!(normalize_card("12").is_err());
        assert!(normalize_card("卡号1234").is_err());
        assert_eq!(
            normalize_card("６２２２\u{3000}ａｂ－12").unwrap(),
            "6222AB12"
        );
        assert_eq!(
            normalize_card("\u{202A}6222 0000\u{00A0}1234\u{202C}").unwrap(),
            "622200001234"
        );
        assert_eq!(normalize_name("  李娜 ").unwrap(), "李娜");
        assert!(normalize_name("   ").is_err());
        assert!(normalize_name("a\u{0}b").is_err());
        assert_eq!(name_search_key("  Li   Na "), "li na");
        assert_eq!(name_search_len("  Li   Na\u{200B} "), 5);
        // Lower-cased, `İ` is two characters; typed, one.
        assert_eq!(name_search_key("İ").chars().count(), 2);
        assert_eq!(name_search_len("İ"), 1);
        assert_eq!(name_search_len(" \u{200B} "), 0);
    }
}
