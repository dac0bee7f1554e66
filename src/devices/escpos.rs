//! A small ESC/POS byte builder, the text encodings printers understand, and the DLE EOT
//! status reply parser.
//!
//! Written here rather than taken from the `escpos` crate: that crate sends the drawer kick
//! without its pulse bytes (the printer then eats the next two bytes of the job), appends a
//! stray NUL to status requests, has no Chinese mode, and silently falls back to UTF-8 for
//! characters outside the selected code page. We need about fifteen commands; each is a few
//! bytes with its hex spelled out next to it, so the decoder in [`super::decode`] can mirror
//! them exactly.
//!
//! Everything here is pure: the builder only appends to a `Vec<u8>`.

use encoding_rs::GBK;

/// Characters 0x80–0xFF of IBM code page 437 (the Epson default, table 0).
const CP437_HIGH: &str = concat!(
    "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐",
    "└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{a0}",
);

/// Characters 0x80–0xFF of code page 858 (850 with € at 0xD5; Epson table 19).
const CP858_HIGH: &str = concat!(
    "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜø£Ø×ƒáíóúñÑªº¿®¬½¼¡«»░▒▓│┤ÁÂÀ©╣║╗╝¢¥┐",
    "└┴┬├─┼ãÃ╚╔╩╦╠═╬¤ðÐÊËÈ€ÍÎÏ┘┌█▄¦Ì▀ÓßÔÒõÕµþÞÚÛÙýÝ¯´\u{ad}±‗¾¶§÷¸°¨·¹³²■\u{a0}",
);

/// Most bytes a model 2 QR code holds at error correction M (version 40, byte mode).
pub const QR_MAX_BYTES: usize = 2331;

/// A single-byte Western code page: ASCII plus 128 table characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodePage {
    /// IBM PC 437: box drawing, some accented letters, `¥` at 0x9D.
    Cp437,
    /// PC 858: Western European letters and `€` at 0xD5, `¥` at 0xBE.
    Cp858,
}

impl CodePage {
    fn high_half(self) -> &'static str {
        match self {
            CodePage::Cp437 => CP437_HIGH,
            CodePage::Cp858 => CP858_HIGH,
        }
    }

    /// The byte for `c`, or `None` when the page has no such character.
    pub fn encode_char(self, c: char) -> Option<u8> {
        if c.is_ascii() {
            return u8::try_from(u32::from(c)).ok();
        }
        let pos = self.high_half().chars().position(|h| h == c)?;
        u8::try_from(0x80 + pos).ok()
    }

    /// The character a byte prints as on this page.
    pub fn decode_byte(self, b: u8) -> char {
        if b < 0x80 {
            return char::from(b);
        }
        self.high_half()
            .chars()
            .nth(usize::from(b - 0x80))
            .unwrap_or('\u{FFFD}')
    }

    /// The `ESC t` number Epson uses for this page. Clones renumber their tables, so this is
    /// only the default; [`Encoding`] carries the number actually sent.
    pub const fn epson_table(self) -> u8 {
        match self {
            CodePage::Cp437 => 0,
            CodePage::Cp858 => 19,
        }
    }
}

/// How receipt text becomes bytes, chosen per printer in config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Chinese printers: text is sent inside `FS &` Chinese mode, encoded as GBK (the
    /// two-byte subset of GB18030), because many printers only carry GB2312/GBK fonts and
    /// print four-byte GB18030 sequences as garbage. `¥` becomes full-width `￥` (`A3 A4`);
    /// any other character GBK lacks becomes `?`.
    Gb18030,
    /// Code page 437, selected with `ESC t esc_t`.
    Cp437 {
        /// The table number this printer uses for CP437 (Epson: 0).
        esc_t: u8,
    },
    /// Code page 858, selected with `ESC t esc_t`.
    Cp858 {
        /// The table number this printer uses for CP858 (Epson: 19).
        esc_t: u8,
    },
}

impl Encoding {
    /// CP437 with Epson's table number.
    pub const CP437: Encoding = Encoding::Cp437 { esc_t: 0 };
    /// CP858 with Epson's table number.
    pub const CP858: Encoding = Encoding::Cp858 { esc_t: 19 };

    /// The Western page and its `ESC t` number, or `None` for Chinese mode.
    pub fn code_page(self) -> Option<(CodePage, u8)> {
        match self {
            Encoding::Gb18030 => None,
            Encoding::Cp437 { esc_t } => Some((CodePage::Cp437, esc_t)),
            Encoding::Cp858 { esc_t } => Some((CodePage::Cp858, esc_t)),
        }
    }

    /// Whether text goes out in Chinese (double-byte) mode.
    pub fn is_chinese(self) -> bool {
        self == Encoding::Gb18030
    }

    /// Encodes text for the printer. Never emits control bytes (a product name from HQ
    /// cannot smuggle in a command: controls become spaces) and never emits UTF-8:
    /// unencodable characters become `?`.
    pub fn encode(self, text: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len());
        for c in text.chars() {
            self.encode_char_into(c, &mut out);
        }
        out
    }

    fn encode_char_into(self, c: char, out: &mut Vec<u8>) {
        if prints_nothing(c) {
            return;
        }
        if c.is_ascii_control() {
            out.push(b' ');
            return;
        }
        if c.is_ascii() {
            out.push(c as u8);
            return;
        }
        match self.code_page() {
            Some((page, _)) => out.push(page.encode_char(c).unwrap_or(b'?')),
            None => out.extend_from_slice(&gbk_char(c)),
        }
    }
}

/// Characters that take no room on a screen, so none on paper either (rather than a `?`):
/// zero-width spaces and joiners, direction marks, the BOM (pasted into product names with
/// web or spreadsheet text) and the variation selectors that follow emoji and symbols
/// (`★️` is `★` and U+FE0F).
fn prints_nothing(c: char) -> bool {
    crate::domain::contact::is_invisible(c) || ('\u{FE00}'..='\u{FE0F}').contains(&c)
}

/// The GBK bytes for one non-ASCII character, with our replacements applied.
fn gbk_char(c: char) -> Vec<u8> {
    if c == '¥' {
        return vec![0xA3, 0xA4]; // full-width ￥: ¥ only exists as a 4-byte GB18030 code
    }
    // Private-use code points map into GBK's user-defined areas: no glyph on a printer.
    if ('\u{E000}'..='\u{F8FF}').contains(&c) {
        return vec![b'?'];
    }
    let mut tmp = [0u8; 4];
    let (bytes, _, unmappable) = GBK.encode(c.encode_utf8(&mut tmp));
    // One byte out of a non-ASCII character is CP936's € at 0x80, not a GBK lead byte.
    if unmappable || bytes.len() != 2 {
        return vec![b'?'];
    }
    bytes.into_owned()
}

/// Columns one character takes in `encoding` at normal size: none for what prints nothing,
/// 1 for every single byte
/// (ASCII, code-page characters, `?` replacements), 2 for every double-byte GBK character —
/// including full-width punctuation and GBK-encoded Latin like `é` (`A8 A6`), which Chinese
/// printers draw from the 24×24 font. Unicode East-Asian-width rules get those wrong, which
/// is why width follows the bytes. Multiply by the `GS !` width factor for enlarged text.
pub fn char_width(c: char, encoding: Encoding) -> usize {
    if prints_nothing(c) {
        0
    } else if c.is_ascii() || encoding.code_page().is_some() {
        1
    } else {
        gbk_char(c).len()
    }
}

/// Columns `text` takes in `encoding` at normal size (see [`char_width`]).
pub fn display_width(text: &str, encoding: Encoding) -> usize {
    text.chars().map(|c| char_width(c, encoding)).sum()
}

/// Horizontal alignment (`ESC a n`); takes effect at the start of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// `n = 0`.
    Left,
    /// `n = 1`.
    Center,
    /// `n = 2`.
    Right,
}

/// Which drawer connector pin the kick pulses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DrawerPin {
    /// Pin 2, drawer 1 (`m = 0`); what almost every single-drawer store uses.
    Pin2,
    /// Pin 5, drawer 2 (`m = 1`).
    Pin5,
}

/// Which status byte a `DLE EOT n` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusRequest {
    /// `n = 1`: online/offline, drawer pin 3.
    Printer,
    /// `n = 2`: why the printer is offline (cover, paper end).
    OfflineCause,
    /// `n = 3`: error causes (cutter, unrecoverable).
    ErrorCause,
    /// `n = 4`: roll paper sensor (near end, out).
    PaperSensor,
}

impl StatusRequest {
    /// The `n` of `DLE EOT n`.
    pub const fn n(self) -> u8 {
        match self {
            StatusRequest::Printer => 1,
            StatusRequest::OfflineCause => 2,
            StatusRequest::ErrorCause => 3,
            StatusRequest::PaperSensor => 4,
        }
    }
}

/// A parsed one-byte `DLE EOT` reply; each variant answers the request of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Reply to [`StatusRequest::Printer`].
    Printer {
        /// Bit 3: the printer is offline (cover open, paper out, error).
        offline: bool,
        /// Bit 2: drawer connector pin 3 is high (open or closed depends on the drawer).
        drawer_pin3_high: bool,
        /// Bit 5: waiting for online recovery.
        waiting_recovery: bool,
        /// Bit 6: the paper-feed button is pressed.
        feed_button: bool,
    },
    /// Reply to [`StatusRequest::OfflineCause`].
    OfflineCause {
        /// Bit 2: the cover is open.
        cover_open: bool,
        /// Bit 3: paper is being fed by the FEED button.
        feeding_by_button: bool,
        /// Bit 5: printing stopped because the paper ran out.
        paper_end_stop: bool,
        /// Bit 6: an error occurred.
        error: bool,
    },
    /// Reply to [`StatusRequest::ErrorCause`].
    ErrorCause {
        /// Bit 2: recoverable (mechanical) error.
        recoverable: bool,
        /// Bit 3: autocutter error.
        autocutter: bool,
        /// Bit 5: unrecoverable error.
        unrecoverable: bool,
        /// Bit 6: auto-recoverable error (e.g. head temperature).
        auto_recoverable: bool,
    },
    /// Reply to [`StatusRequest::PaperSensor`]. Either bit of a pair counts, so a printer
    /// that sets only one of the two still reports the condition.
    Paper {
        /// Bits 2–3 (`0x0C`): the roll is nearly used up.
        near_end: bool,
        /// Bits 5–6 (`0x60`): no paper.
        end: bool,
    },
}

impl Status {
    /// Whether this reply means the cashier has to do something before printing works.
    pub fn needs_attention(&self) -> bool {
        match *self {
            Status::Printer { offline, .. } => offline,
            Status::OfflineCause {
                cover_open,
                paper_end_stop,
                error,
                ..
            } => cover_open || paper_end_stop || error,
            Status::ErrorCause {
                recoverable,
                autocutter,
                unrecoverable,
                auto_recoverable,
            } => recoverable || autocutter || unrecoverable || auto_recoverable,
            Status::Paper { end, .. } => end,
        }
    }
}

/// Why a status reply byte was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    /// Occurs when the byte lacks the fixed bits of a DLE EOT reply (`b & 0x93 != 0x12`):
    /// line noise, the tail of an ASB message, or a printer that speaks something else.
    #[error("0x{0:02X} is not a DLE EOT status reply")]
    NotAStatusReply(u8),
}

/// Whether `byte` has the fixed bits of a reply to `DLE EOT n` (bits 1 and 4 set, 0 and 7
/// clear), whichever `n`.
pub fn is_status_reply(byte: u8) -> bool {
    byte & 0x93 == 0x12
}

/// Parses the one-byte reply to `DLE EOT n`.
pub fn parse_status(request: StatusRequest, byte: u8) -> Result<Status, StatusError> {
    if !is_status_reply(byte) {
        return Err(StatusError::NotAStatusReply(byte));
    }
    let bit = |n: u8| byte & (1 << n) != 0;
    Ok(match request {
        StatusRequest::Printer => Status::Printer {
            offline: bit(3),
            drawer_pin3_high: bit(2),
            waiting_recovery: bit(5),
            feed_button: bit(6),
        },
        StatusRequest::OfflineCause => Status::OfflineCause {
            cover_open: bit(2),
            feeding_by_button: bit(3),
            paper_end_stop: bit(5),
            error: bit(6),
        },
        StatusRequest::ErrorCause => Status::ErrorCause {
            recoverable: bit(2),
            autocutter: bit(3),
            unrecoverable: bit(5),
            auto_recoverable: bit(6),
        },
        StatusRequest::PaperSensor => Status::Paper {
            near_end: byte & 0x0C != 0,
            end: byte & 0x60 != 0,
        },
    })
}

/// Why a QR code cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QrError {
    /// Occurs when the content is empty (printers misbehave on an empty symbol).
    #[error("QR content is empty")]
    Empty,
    /// Occurs when the content exceeds [`QR_MAX_BYTES`].
    #[error("QR content of {0} bytes exceeds {QR_MAX_BYTES}")]
    TooLong(usize),
}

/// Builds an ESC/POS job in memory. Methods append and return `&mut Self` for chaining.
#[derive(Debug, Clone)]
pub struct EscPos {
    /// The job so far.
    buf: Vec<u8>,
    /// How [`EscPos::text`] encodes.
    encoding: Encoding,
}

impl EscPos {
    /// An empty job whose text is encoded with `encoding`.
    pub fn new(encoding: Encoding) -> Self {
        EscPos {
            buf: Vec::with_capacity(1024),
            encoding,
        }
    }

    /// `1B 40` initialise, then the text mode of the encoding: `1C 26` (Chinese mode on) for
    /// GBK, or `1C 2E` (off) and `1B 74 n` for a code page. Both are sent explicitly because
    /// what init leaves on depends on a memory switch of Chinese-market printers.
    pub fn init(&mut self) -> &mut Self {
        self.buf.extend_from_slice(&[0x1B, 0x40]);
        match self.encoding.code_page() {
            None => self.chinese_mode(true),
            Some((_, n)) => self.chinese_mode(false).code_page(n),
        }
    }

    /// `1C 26` / `1C 2E`: Chinese (double-byte) mode on or off.
    pub fn chinese_mode(&mut self, on: bool) -> &mut Self {
        let cmd = if on { 0x26 } else { 0x2E };
        self.buf.extend_from_slice(&[0x1C, cmd]);
        self
    }

    /// `1B 74 n`: select character table `n`.
    pub fn code_page(&mut self, n: u8) -> &mut Self {
        self.buf.extend_from_slice(&[0x1B, 0x74, n]);
        self
    }

    /// `1B 61 n`: alignment for the following lines.
    pub fn align(&mut self, align: Align) -> &mut Self {
        let n = match align {
            Align::Left => 0,
            Align::Center => 1,
            Align::Right => 2,
        };
        self.buf.extend_from_slice(&[0x1B, 0x61, n]);
        self
    }

    /// `1B 45 n`: emphasis on or off.
    pub fn bold(&mut self, on: bool) -> &mut Self {
        self.buf.extend_from_slice(&[0x1B, 0x45, u8::from(on)]);
        self
    }

    /// `1D 21 n`: character size, each factor clamped to 1..=8. Width multiplies columns.
    pub fn size(&mut self, width: u8, height: u8) -> &mut Self {
        let w = width.clamp(1, 8) - 1;
        let h = height.clamp(1, 8) - 1;
        self.buf.extend_from_slice(&[0x1D, 0x21, (w << 4) | h]);
        self
    }

    /// Text in the job's encoding (see [`Encoding::encode`]); no line feed.
    pub fn text(&mut self, text: &str) -> &mut Self {
        for c in text.chars() {
            self.encoding.encode_char_into(c, &mut self.buf);
        }
        self
    }

    /// `0A`: print the line and feed one line.
    pub fn line_feed(&mut self) -> &mut Self {
        self.buf.push(0x0A);
        self
    }

    /// Text followed by a line feed.
    pub fn line(&mut self, text: &str) -> &mut Self {
        self.text(text).line_feed()
    }

    /// `1B 64 n`: print and feed `n` lines.
    pub fn feed_lines(&mut self, n: u8) -> &mut Self {
        self.buf.extend_from_slice(&[0x1B, 0x64, n]);
        self
    }

    /// A model 2 QR code at error correction M, `module` dots per module (clamped 1..=16),
    /// sent as model, size, correction, store, print (`1D 28 6B ...`). The content goes as
    /// raw bytes (UTF-8), which is what phone scanners expect; it is not text for the font.
    pub fn qr(&mut self, content: &str, module: u8) -> Result<&mut Self, QrError> {
        let data = content.as_bytes();
        if data.is_empty() {
            return Err(QrError::Empty);
        }
        if data.len() > QR_MAX_BYTES {
            return Err(QrError::TooLong(data.len()));
        }
        let module = module.clamp(1, 16);
        self.qr_function(&[0x41, 0x32, 0x00], &[]); // model 2
        self.qr_function(&[0x43, module], &[]); // module size
        self.qr_function(&[0x45, 0x31], &[]); // error correction M
        self.qr_function(&[0x50, 0x30], data); // store
        self.qr_function(&[0x51, 0x30], &[]); // print
        Ok(self)
    }

    /// `1D 28 6B pL pH 31 fn ...`: one QR function; `pL + 256·pH` counts the bytes after `pH`.
    fn qr_function(&mut self, params: &[u8], data: &[u8]) {
        let len = 1 + params.len() + data.len(); // the caller keeps data within QR_MAX_BYTES
        let [p_l, p_h] = u16::try_from(len).unwrap_or(u16::MAX).to_le_bytes();
        self.buf
            .extend_from_slice(&[0x1D, 0x28, 0x6B, p_l, p_h, 0x31]);
        self.buf.extend_from_slice(params);
        self.buf.extend_from_slice(data);
    }

    /// `1D 56 42 n`: feed to the cutter plus `n` motion units, then partial cut. Function B,
    /// because a plain `1D 56 m` cuts where the paper is and the last lines would still be
    /// below the cutter.
    pub fn cut_with_feed(&mut self, n: u8) -> &mut Self {
        self.buf.extend_from_slice(&[0x1D, 0x56, 0x42, n]);
        self
    }

    /// `1B 70 m 19 FA`: open the drawer on `pin` with the common 50 ms on / 500 ms off pulse.
    pub fn drawer_kick(&mut self, pin: DrawerPin) -> &mut Self {
        self.drawer_kick_pulse(pin, 0x19, 0xFA)
    }

    /// `1B 70 m t1 t2`: drawer pulse of `t1 × 2` ms on, `t2 × 2` ms off. Both pulse bytes are
    /// always sent; without them the printer swallows the next two bytes of the job.
    pub fn drawer_kick_pulse(&mut self, pin: DrawerPin, t1: u8, t2: u8) -> &mut Self {
        let m = match pin {
            DrawerPin::Pin2 => 0,
            DrawerPin::Pin5 => 1,
        };
        self.buf.extend_from_slice(&[0x1B, 0x70, m, t1, t2]);
        self
    }

    /// `10 04 n`: ask for one status byte. Send only between whole jobs: the printer acts on
    /// it immediately, even inside another command's data.
    pub fn status_request(&mut self, request: StatusRequest) -> &mut Self {
        self.buf.extend_from_slice(&[0x10, 0x04, request.n()]);
        self
    }

    /// The bytes built so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The finished job.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests;
