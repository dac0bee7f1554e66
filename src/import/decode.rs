//! Reading the file's bytes as text: UTF-8 or GBK, told apart when asked to (`Auto`), each
//! invalid sequence noted by line so that its row is refused, never kept as U+FFFD.

/// The file's text encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 when the file starts with a UTF-8 BOM or its bytes are valid or mostly UTF-8
    /// (see [`mostly_utf8`]), else GBK.
    Auto,
    /// UTF-8.
    Utf8,
    /// GBK / GB18030 (what Excel on Chinese Windows writes).
    Gbk,
}

/// A line of the file with bytes that are not valid in the encoding it was read in: its first
/// such sequence, which the decoded text holds as U+FFFD. The row on that line is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadBytes {
    /// Where the replacement character is in the decoded text (byte offset).
    pub at: u64,
    /// The invalid sequence (its first `len` bytes).
    bytes: [u8; 4],
    len: u8,
}

impl BadBytes {
    /// The invalid bytes in hex: `FF`, `E6 9D`.
    pub fn hex(&self) -> String {
        self.bytes[..usize::from(self.len).min(4)]
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A decoded file.
#[derive(Debug)]
pub struct Decoded {
    /// The text; each invalid byte sequence replaced by U+FFFD.
    pub text: String,
    /// The encoding it was read in: `utf-8` or `gbk`.
    pub encoding: &'static str,
    /// The lines holding invalid bytes, in order (one entry a line).
    pub bad: Vec<BadBytes>,
}

/// The decoded text as it is built: notes the first invalid sequence of each line.
struct Text {
    text: String,
    /// Where the current line starts in `text`.
    line_start: usize,
    bad: Vec<BadBytes>,
}

impl Text {
    fn new(capacity: usize) -> Text {
        Text {
            text: String::with_capacity(capacity),
            line_start: 0,
            bad: Vec::new(),
        }
    }

    /// Notes that `text` grew from `from` (valid text).
    fn grew(&mut self, from: usize) {
        if let Some(nl) = self.text.get(from..).and_then(|t| t.rfind('\n')) {
            self.line_start = from + nl + 1;
        }
    }

    fn push_str(&mut self, s: &str) {
        let from = self.text.len();
        self.text.push_str(s);
        self.grew(from);
    }

    /// An invalid sequence: replaced by U+FFFD, noted if it is the line's first.
    fn invalid(&mut self, seq: &[u8]) {
        let at = self.text.len();
        if self
            .bad
            .last()
            .is_none_or(|b| b.at < self.line_start as u64)
        {
            let mut bytes = [0; 4];
            let len = seq.len().min(4);
            bytes[..len].copy_from_slice(&seq[..len]);
            self.bad.push(BadBytes {
                at: at as u64,
                bytes,
                len: len as u8,
            });
        }
        self.text.push(char::REPLACEMENT_CHARACTER);
    }

    fn done(self, encoding: &'static str) -> Decoded {
        Decoded {
            text: self.text,
            encoding,
            bad: self.bad,
        }
    }
}

/// Whether bytes that are not valid UTF-8 are still mostly UTF-8: they hold valid multi-byte
/// UTF-8 characters, at least twice as many as invalid sequences. A GBK file of Chinese text
/// has about fifteen invalid sequences for each pair of bytes that happens to be valid UTF-8;
/// a UTF-8 file with a few stray bytes has far more valid characters than stray bytes.
pub fn mostly_utf8(bytes: &[u8]) -> bool {
    let (mut multi, mut invalid) = (0u64, 0u64);
    for chunk in bytes.utf8_chunks() {
        // Each non-ASCII character starts with a byte of 0xC0 or more.
        multi += chunk.valid().bytes().filter(|b| *b >= 0xC0).count() as u64;
        invalid += u64::from(!chunk.invalid().is_empty());
    }
    multi > 0 && invalid * 2 <= multi
}

fn decode_utf8(bytes: &[u8]) -> Decoded {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut text = Text::new(bytes.len());
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            text.invalid(chunk.invalid());
        }
    }
    text.done("utf-8")
}

fn decode_gbk(bytes: &[u8]) -> Decoded {
    use encoding_rs::DecoderResult;
    // BOM sniffing as `Encoding::decode` does it: a UTF-8 BOM makes it UTF-8. GB18030's own
    // BOM (U+FEFF encoded) is dropped, or it would stick to the first column's name.
    let bytes = bytes.strip_prefix(b"\x84\x31\x95\x33").unwrap_or(bytes);
    let mut decoder = encoding_rs::GB18030.new_decoder();
    let room = |d: &encoding_rs::Decoder, n: usize| {
        d.max_utf8_buffer_length_without_replacement(n)
            .unwrap_or(n.saturating_mul(3))
    };
    let mut text = Text::new(room(&decoder, bytes.len()));
    let mut read_total = 0;
    loop {
        let rest = bytes.get(read_total..).unwrap_or_default();
        let from = text.text.len();
        let (result, read) =
            decoder.decode_to_string_without_replacement(rest, &mut text.text, true);
        text.grew(from);
        read_total += read;
        match result {
            DecoderResult::InputEmpty => break,
            DecoderResult::OutputFull => {
                let more = room(&decoder, bytes.len().saturating_sub(read_total));
                text.text.reserve(more.max(16));
            }
            DecoderResult::Malformed(len, extra) => {
                let end = read_total.saturating_sub(usize::from(extra));
                let start = end.saturating_sub(usize::from(len));
                text.invalid(bytes.get(start..end).unwrap_or_default());
            }
        }
    }
    text.done("gbk")
}

/// Ends every line of `bytes` with LF: CRLF (what Excel on Windows writes) becomes LF, and so
/// does a lone CR (old Mac line ends, Excel's "CSV (Macintosh)"). In place, the file shrinking
/// by its CRs. The CSV reader counts lines by LF and ends a record at CR: without this, each
/// row of a CRLF file is reported one line early (the record starts at the LF of the line
/// before), every row of a CR file on line 1, and of a CR file only the first invalid sequence
/// is noted (see [`Text`]). A CR byte is never part of a multi-byte sequence in UTF-8, GBK or
/// GB18030, so the text is otherwise the same.
fn unify_line_ends(bytes: &mut Vec<u8>) {
    if !bytes.contains(&b'\r') {
        return;
    }
    let mut kept = 0;
    for i in 0..bytes.len() {
        let b = bytes[i];
        if b == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            continue;
        }
        bytes[kept] = if b == b'\r' { b'\n' } else { b };
        kept += 1;
    }
    bytes.truncate(kept);
}

/// Decodes the file. Invalid byte sequences become U+FFFD and are listed by line (the rows on
/// those lines are refused, see [`Rows`]), never silently kept. Lines may end in LF, CRLF or a
/// lone CR; the text's end in LF (see [`unify_line_ends`], done in place: no copy of the file).
pub fn decode(mut bytes: Vec<u8>, enc: Encoding) -> Decoded {
    unify_line_ends(&mut bytes);
    let bytes = bytes.as_slice();
    match enc {
        Encoding::Utf8 => decode_utf8(bytes),
        Encoding::Gbk => decode_gbk(bytes),
        Encoding::Auto => {
            if bytes.starts_with(b"\xEF\xBB\xBF")
                || std::str::from_utf8(bytes).is_ok()
                || mostly_utf8(bytes)
            {
                decode_utf8(bytes)
            } else {
                decode_gbk(bytes)
            }
        }
    }
}

/// Why a line with invalid bytes is refused, and what to do.
pub(super) fn bad_bytes_reason(bad: &BadBytes, encoding: &str) -> String {
    let (name, other) = match encoding {
        "gbk" => ("GBK", "utf-8"),
        _ => ("UTF-8", "gbk"),
    };
    let what = if bad.len == 1 { "byte" } else { "bytes" };
    format!(
        "not valid {name} ({what} {}): the file is read as {name}; correct the line, or import the file with --encoding {other} if it is {}",
        bad.hex(),
        other.to_uppercase()
    )
}
