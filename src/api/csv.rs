//! CSV for exports and reports: RFC 4180 quoting, CRLF, spreadsheet formulas defused, and
//! codes that look like numbers kept as text.

/// Whether a field is a plain number (`-2`, `-5.00`): a spreadsheet must read it as one.
fn is_number(v: &str) -> bool {
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    !digits.is_empty()
        && digits.bytes().any(|b| b.is_ascii_digit())
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && digits.bytes().filter(|&b| b == b'.').count() <= 1
}

/// Whether a code (card number, phone, SKU, staff or store number) would be read by a
/// spreadsheet as a number or a date: it begins with a digit, or is a number. Excel and WPS
/// drop its leading zeros, keep 15 significant digits (a 19-digit card loses its last four)
/// and show long ones as `6.22202E+18`.
fn looks_numeric(code: &str) -> bool {
    !code.is_empty()
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && (code.as_bytes()[0].is_ascii_digit() || is_number(code))
}

/// A code as a spreadsheet must keep it: one that looks like a number gets a tab in front, so
/// Excel and WPS read it as text (`storebox members import` trims it again). Only for codes of
/// letters, digits, `-`, `_` and `.`: nothing after the tab can be read as a formula.
pub(crate) fn code(v: &str) -> String {
    if looks_numeric(v) {
        format!("\t{v}")
    } else {
        v.to_string()
    }
}

/// Quotes a CSV field when it needs it, and defuses spreadsheet formulas (but not numbers, nor
/// a [`code`] marked as text): a field beginning with `=`, `+`, `-`, `@`, a tab or a carriage
/// return (which a spreadsheet may drop before reading a formula) gets a `'` in front.
fn field(out: &mut String, v: &str) {
    let marked_code = v.strip_prefix('\t').is_some_and(looks_numeric);
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) && !is_number(v) && !marked_code {
        format!("'{v}")
    } else {
        v.to_string()
    };
    if v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&v);
    }
}

pub(crate) fn row(out: &mut String, fields: &[&str]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(out, f);
    }
    out.push_str("\r\n");
}

/// The last row of a CSV list cut short, `columns` wide: a spreadsheet has no field to say
/// more were left out, so a row says it (and how to ask for them, `how`), where the manager
/// reading the list ends up.
pub(crate) fn more_not_listed(how: &str, columns: usize) -> Vec<String> {
    let mut row = vec![format!("(更多未列出 more not listed: {how})")];
    row.resize(columns, String::new());
    row
}

/// A CSV response (UTF-8 with a byte-order mark, so spreadsheets read Chinese) named `name`.
pub(crate) fn response(
    name: &str,
    header: &[&str],
    rows: &[Vec<String>],
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut out = String::from("\u{feff}");
    row(&mut out, header);
    for r in rows {
        let fields: Vec<&str> = r.iter().map(String::as_str).collect();
        row(&mut out, &fields);
    }
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/csv; charset=utf-8".to_string(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.csv\""),
            ),
        ],
        out,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Formulas are defused; numbers, negative ones included, stay numbers.
    #[test]
    fn formulas_are_defused_and_numbers_are_not() {
        let line = |fields: &[&str]| {
            let mut out = String::new();
            row(&mut out, fields);
            out
        };
        assert_eq!(line(&["-2", "-5.00", "+3", "12"]), "-2,-5.00,+3,12\r\n");
        assert_eq!(
            line(&["=1+1", "-1+1", "@SUM(A1)", "+", "-", "-.", "1.2.3"]),
            "'=1+1,'-1+1,'@SUM(A1),'+,'-,'-.,1.2.3\r\n"
        );
        // White space a spreadsheet may drop before a formula.
        assert_eq!(
            line(&["\t=1+1", "\r=1+1", "\t-A1", "\t"]),
            "'\t=1+1,\"'\r=1+1\",'\t-A1,'\t\r\n"
        );
    }

    /// Codes that a spreadsheet would read as numbers are written as text, and only those.
    #[test]
    fn codes_that_look_like_numbers_are_text() {
        let line = |fields: &[&str]| {
            let mut out = String::new();
            let fields: Vec<String> = fields.iter().map(|f| code(f)).collect();
            let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
            row(&mut out, &fields);
            out
        };
        assert_eq!(
            line(&["0001234567", "6222021234567890123", "1E5", "3-12", "-05"]),
            "\t0001234567,\t6222021234567890123,\t1E5,\t3-12,\t-05\r\n"
        );
        assert_eq!(
            line(&["TEA-001", "sh-001", "", "-A1", "1+1"]),
            "TEA-001,sh-001,,'-A1,1+1\r\n"
        );
    }
}
