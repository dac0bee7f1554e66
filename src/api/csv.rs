//! CSV for exports and reports: RFC 4180 quoting, CRLF, and spreadsheet formulas defused.

/// Quotes a CSV field when it needs it, and defuses spreadsheet formulas.
fn field(out: &mut String, v: &str) {
    let v = if v.starts_with(['=', '+', '-', '@']) {
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
