//! CSV for exports and reports: RFC 4180 quoting, CRLF, and spreadsheet formulas defused.

/// Whether a field is a plain number (`-2`, `-5.00`): a spreadsheet must read it as one.
fn is_number(v: &str) -> bool {
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    !digits.is_empty()
        && digits.bytes().any(|b| b.is_ascii_digit())
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && digits.bytes().filter(|&b| b == b'.').count() <= 1
}

/// Quotes a CSV field when it needs it, and defuses spreadsheet formulas (but not numbers).
fn field(out: &mut String, v: &str) {
    let v = if v.starts_with(['=', '+', '-', '@']) && !is_number(v) {
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
    }
}
