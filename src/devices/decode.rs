//! Turns an ESC/POS byte stream back into what the customer holds: the printed lines, QR
//! codes, cuts and drawer kicks.
//!
//! Used by the tests that check what a printer received (storebox has no preview command). It
//! follows the parameter counts of the commands printers know (the grammar in the device
//! notes), so parameter bytes never show up as text, and it gives up on nothing: any byte
//! sequence decodes, unknown commands are listed in [`Paper::unknown`], a truncated command
//! ends the decode. Styling (bold, height, alignment) does not change the text; width does
//! change how many columns a line takes, reported in [`Paper::line_widths`].

use encoding_rs::GB18030;

use super::escpos::{CodePage, Encoding};

/// What a printer would have produced from a byte stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paper {
    /// Printed lines, in order, as text (no alignment padding; alignment is the printer's).
    pub lines: Vec<String>,
    /// Columns each line of [`Paper::lines`] took: 1 per single-byte character, 2 per
    /// double-byte one, times the character width (`GS !`, `ESC !`, `FS !`) in effect.
    pub line_widths: Vec<usize>,
    /// Number of paper cuts.
    pub cuts: usize,
    /// Drawer kicks as `(connector pin 2 or 5, t1, t2)`, pulse times in 2 ms units.
    pub drawer_kicks: Vec<(u8, u8, u8)>,
    /// Contents of the QR codes printed (stored data, read as UTF-8).
    pub qr: Vec<String>,
    /// The `n` of each `DLE EOT n` status request.
    pub status_requests: Vec<u8>,
    /// Commands the decoder skipped without understanding, and truncated ones, described
    /// with their offset.
    pub unknown: Vec<String>,
    /// The order in which lines, QR codes, cuts, kicks and requests happened.
    pub timeline: Vec<Mark>,
}

/// One entry of [`Paper::timeline`]; indices point into the matching `Paper` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// `Paper::lines[i]` was printed.
    Line(usize),
    /// `Paper::qr[i]` was printed.
    Qr(usize),
    /// The paper was cut.
    Cut,
    /// `Paper::drawer_kicks[i]` was sent.
    DrawerKick(usize),
    /// `Paper::status_requests[i]` was sent.
    StatusRequest(usize),
}

/// What the decoder assumes about the printer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Which code page each `ESC t n` selects. Clones renumber tables, so a printer
    /// configured with a non-Epson number needs its mapping here.
    pub code_pages: Vec<(u8, CodePage)>,
    /// Whether Chinese mode is on at start and after `ESC @` (a memory switch on real
    /// printers; storebox always sends `FS &`/`FS .` explicitly).
    pub chinese_after_init: bool,
}

impl Default for DecodeOptions {
    /// Epson numbering (0 = CP437, 19 = CP858), Chinese mode off after init.
    fn default() -> Self {
        DecodeOptions {
            code_pages: vec![
                (CodePage::Cp437.epson_table(), CodePage::Cp437),
                (CodePage::Cp858.epson_table(), CodePage::Cp858),
            ],
            chinese_after_init: false,
        }
    }
}

impl DecodeOptions {
    /// The defaults plus the table number `encoding` uses, so bytes built for a printer
    /// decode with that printer's numbering.
    pub fn for_encoding(encoding: Encoding) -> Self {
        let mut opts = DecodeOptions::default();
        if let Some((page, n)) = encoding.code_page() {
            opts.code_pages.retain(|(t, _)| *t != n);
            opts.code_pages.push((n, page));
        }
        opts
    }
}

/// Decodes with [`DecodeOptions::default`].
pub fn decode(bytes: &[u8]) -> Paper {
    decode_with(bytes, &DecodeOptions::default())
}

/// Decodes `bytes` as a printer configured like `opts` would print them. Never panics.
pub fn decode_with(bytes: &[u8], opts: &DecodeOptions) -> Paper {
    let mut d = Decoder {
        bytes,
        opts,
        paper: Paper::default(),
        line: String::new(),
        line_width: 0,
        chinese: opts.chinese_after_init,
        table: 0,
        width: 1,
        cjk_double: false,
        qr_store: None,
    };
    let mut i = 0;
    while i < bytes.len() {
        // Every step consumes at least one byte, so the loop ends.
        i = d.step(i).max(i + 1);
    }
    if !d.line.is_empty() {
        d.end_line();
    }
    d.paper
}

struct Decoder<'a> {
    bytes: &'a [u8],
    opts: &'a DecodeOptions,
    paper: Paper,
    /// Text of the line being filled.
    line: String,
    /// Its columns so far.
    line_width: usize,
    /// `FS &` in effect.
    chinese: bool,
    /// Last `ESC t n`.
    table: u8,
    /// Width factor from `GS !` or `ESC !`.
    width: usize,
    /// `FS !` double width for double-byte characters.
    cjk_double: bool,
    /// Data of the last QR "store" function, printed by "print".
    qr_store: Option<String>,
}

impl Decoder<'_> {
    fn at(&self, i: usize) -> Option<u8> {
        self.bytes.get(i).copied()
    }

    /// Index after a command of `len` bytes starting at `i`, or the end if it is truncated.
    fn skip(&mut self, i: usize, len: usize) -> usize {
        let end = i.saturating_add(len);
        if end > self.bytes.len() {
            self.unknown(i, "truncated command");
            return self.bytes.len();
        }
        end
    }

    fn unknown(&mut self, i: usize, what: &str) {
        let head: Vec<String> = self.bytes[i.min(self.bytes.len())..]
            .iter()
            .take(3)
            .map(|b| format!("{b:02X}"))
            .collect();
        self.paper
            .unknown
            .push(format!("{what} at {i}: {}", head.join(" ")));
    }

    fn end_line(&mut self) {
        let idx = self.paper.lines.len();
        self.paper.lines.push(std::mem::take(&mut self.line));
        self.paper.line_widths.push(self.line_width);
        self.paper.timeline.push(Mark::Line(idx));
        self.line_width = 0;
    }

    fn push_char(&mut self, c: char, columns: usize) {
        self.line.push(c);
        self.line_width += columns * self.width;
    }

    /// Decodes the command or character at `i`; returns the index after it.
    fn step(&mut self, i: usize) -> usize {
        let Some(b) = self.at(i) else {
            return i + 1;
        };
        match b {
            0x0A => {
                self.end_line();
                i + 1
            }
            0x0D => i + 1, // CR: ignored by receipt printers in their default setting
            0x09 => {
                self.push_char(' ', 1);
                i + 1
            }
            0x1B => self.esc(i),
            0x1C => self.fs(i),
            0x1D => self.gs(i),
            0x10 => self.dle(i),
            0x00..=0x1F | 0x7F => {
                self.unknown(i, "control byte");
                i + 1
            }
            0x20..=0x7E => {
                self.push_char(char::from(b), 1);
                i + 1
            }
            _ if self.chinese => self.gb_char(i),
            _ => {
                let page = self
                    .opts
                    .code_pages
                    .iter()
                    .find(|(n, _)| *n == self.table)
                    .map(|(_, p)| *p);
                let c = page.map_or('\u{FFFD}', |p| p.decode_byte(b));
                self.push_char(c, 1);
                i + 1
            }
        }
    }

    /// A double-byte or four-byte GB18030 character in Chinese mode.
    fn gb_char(&mut self, i: usize) -> usize {
        let lead = self.at(i).unwrap_or(0);
        let b1 = self.at(i + 1);
        let len = match b1 {
            _ if !(0x81..=0xFE).contains(&lead) => 1,
            Some(0x40..=0x7E | 0x80..=0xFE) => 2,
            Some(0x30..=0x39)
                if matches!(self.at(i + 2), Some(0x81..=0xFE))
                    && matches!(self.at(i + 3), Some(0x30..=0x39)) =>
            {
                4
            }
            _ => 1,
        };
        if len == 1 {
            self.push_char('\u{FFFD}', 1);
            return i + 1;
        }
        let (text, _) = GB18030.decode_without_bom_handling(&self.bytes[i..i + len]);
        let factor = if self.cjk_double { 2 } else { 1 };
        for c in text.chars() {
            self.push_char(c, 2 * factor);
        }
        i + len
    }

    fn esc(&mut self, i: usize) -> usize {
        let Some(cmd) = self.at(i + 1) else {
            return self.skip(i, 2);
        };
        let param = self.at(i + 2);
        match cmd {
            0x40 => {
                // Init clears the print buffer and every mode.
                self.line.clear();
                self.line_width = 0;
                self.chinese = self.opts.chinese_after_init;
                self.table = 0;
                self.width = 1;
                self.cjk_double = false;
                i + 2
            }
            0x32 => i + 2,
            0x21 => {
                if let Some(n) = param {
                    self.width = if n & 0x20 != 0 { 2 } else { 1 };
                }
                self.skip(i, 3)
            }
            0x74 => {
                if let Some(n) = param {
                    self.table = n;
                }
                self.skip(i, 3)
            }
            0x64 => {
                if let Some(n) = param {
                    self.end_line();
                    for _ in 1..n {
                        self.end_line();
                    }
                }
                self.skip(i, 3)
            }
            0x70 => {
                let end = self.skip(i, 5);
                if let (Some(m), Some(t1), Some(t2)) = (param, self.at(i + 3), self.at(i + 4)) {
                    match m {
                        0 | 0x30 => self.kick(2, t1, t2),
                        1 | 0x31 => self.kick(5, t1, t2),
                        _ => self.unknown(i, "drawer kick to an unknown pin"),
                    }
                }
                end
            }
            0x20 | 0x2D | 0x33 | 0x3D | 0x45 | 0x47 | 0x4A | 0x4D | 0x52 | 0x56 | 0x61 | 0x7B => {
                self.skip(i, 3)
            }
            0x24 | 0x5C | 0x63 => self.skip(i, 4),
            _ => {
                self.unknown(i, "unknown ESC command");
                i + 2
            }
        }
    }

    fn kick(&mut self, pin: u8, t1: u8, t2: u8) {
        let idx = self.paper.drawer_kicks.len();
        self.paper.drawer_kicks.push((pin, t1, t2));
        self.paper.timeline.push(Mark::DrawerKick(idx));
    }

    fn fs(&mut self, i: usize) -> usize {
        match self.at(i + 1) {
            Some(0x26) => {
                self.chinese = true;
                i + 2
            }
            Some(0x2E) => {
                self.chinese = false;
                i + 2
            }
            Some(0x21) => {
                if let Some(n) = self.at(i + 2) {
                    self.cjk_double = n & 0x04 != 0;
                }
                self.skip(i, 3)
            }
            Some(0x2D | 0x43 | 0x57) => self.skip(i, 3),
            Some(0x53 | 0x70) => self.skip(i, 4),
            Some(_) => {
                self.unknown(i, "unknown FS command");
                i + 2
            }
            None => self.skip(i, 2),
        }
    }

    fn gs(&mut self, i: usize) -> usize {
        let Some(cmd) = self.at(i + 1) else {
            return self.skip(i, 2);
        };
        let param = self.at(i + 2);
        match cmd {
            0x21 => {
                if let Some(n) = param {
                    self.width = usize::from((n >> 4) & 0x07) + 1;
                }
                self.skip(i, 3)
            }
            0x2F | 0x42 | 0x45 | 0x48 | 0x49 | 0x61 | 0x66 | 0x68 | 0x72 | 0x77 => self.skip(i, 3),
            0x24 | 0x4C | 0x50 | 0x57 => self.skip(i, 4),
            0x3A => i + 2,
            0x56 => {
                let len = match param {
                    Some(65 | 66 | 97 | 98 | 103 | 104) => 4,
                    _ => 3,
                };
                let end = self.skip(i, len);
                if end == i + len {
                    if !self.line.is_empty() {
                        self.end_line();
                    }
                    self.paper.cuts += 1;
                    self.paper.timeline.push(Mark::Cut);
                }
                end
            }
            0x28 => self.gs_paren(i),
            0x6B => self.barcode(i),
            0x76 => self.raster(i),
            _ => {
                self.unknown(i, "unknown GS command");
                i + 2
            }
        }
    }

    /// `1D 28 fn pL pH` + `pL + 256·pH` bytes; QR functions of `GS ( k` are interpreted.
    fn gs_paren(&mut self, i: usize) -> usize {
        let (Some(func), Some(p_l), Some(p_h)) = (self.at(i + 2), self.at(i + 3), self.at(i + 4))
        else {
            return self.skip(i, 5);
        };
        let len = usize::from(p_l) + 256 * usize::from(p_h);
        let end = self.skip(i, 5 + len);
        if end != i + 5 + len {
            return end;
        }
        let body = &self.bytes[i + 5..end];
        match (func, body) {
            (0x6B, [0x31, 0x50, _, data @ ..]) => {
                self.qr_store = Some(String::from_utf8_lossy(data).into_owned());
            }
            (0x6B, [0x31, 0x51, ..]) => match self.qr_store.clone() {
                Some(content) => {
                    let idx = self.paper.qr.len();
                    self.paper.qr.push(content);
                    self.paper.timeline.push(Mark::Qr(idx));
                }
                None => self.unknown(i, "QR print with nothing stored"),
            },
            (0x6B, [0x31, ..]) => {} // QR model, size, error correction
            (0x6B, _) => self.unknown(i, "2D code other than QR"),
            _ => {}
        }
        end
    }

    /// `1D 6B m`: m ≤ 6 data up to NUL; m ≥ 65 then n and n bytes. Skipped, listed.
    fn barcode(&mut self, i: usize) -> usize {
        let Some(m) = self.at(i + 2) else {
            return self.skip(i, 3);
        };
        self.unknown(i, "barcode (not decoded)");
        if m <= 6 {
            match self.bytes.iter().skip(i + 3).position(|b| *b == 0) {
                Some(p) => i + 3 + p + 1,
                None => self.skip(i, self.bytes.len().saturating_sub(i) + 1),
            }
        } else {
            let n = self.at(i + 3).map_or(usize::MAX, usize::from);
            self.skip(i, n.saturating_add(4))
        }
    }

    /// `1D 76 30 m xL xH yL yH` + `(xL + 256·xH)·(yL + 256·yH)` bytes of raster image.
    fn raster(&mut self, i: usize) -> usize {
        let head: Option<Vec<u8>> = (2..8).map(|k| self.at(i + k)).collect();
        let Some([_, _, x_l, x_h, y_l, y_h]) = head.as_deref() else {
            return self.skip(i, 8);
        };
        let x = usize::from(*x_l) + 256 * usize::from(*x_h);
        let y = usize::from(*y_l) + 256 * usize::from(*y_h);
        self.unknown(i, "raster image (not decoded)");
        self.skip(i, x.saturating_mul(y).saturating_add(8))
    }

    fn dle(&mut self, i: usize) -> usize {
        match self.at(i + 1) {
            Some(0x04) => {
                let end = self.skip(i, 3);
                if let Some(n) = self.at(i + 2) {
                    let idx = self.paper.status_requests.len();
                    self.paper.status_requests.push(n);
                    self.paper.timeline.push(Mark::StatusRequest(idx));
                }
                end
            }
            Some(0x05) => self.skip(i, 3),
            Some(0x14) => {
                self.unknown(i, "real-time command DLE DC4");
                self.skip(i, 5)
            }
            Some(_) => {
                self.unknown(i, "unknown DLE command");
                i + 2
            }
            None => self.skip(i, 2),
        }
    }
}

#[cfg(test)]
mod tests;
