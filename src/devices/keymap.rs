//! USB keyboard-wedge scanners and card readers: evdev key events to characters (pure).
//!
//! A wedge "types" its data as US-layout key presses followed by Enter. The decoder keeps the
//! Shift state, turns key-down events into characters and hands back a line at Enter (or Tab,
//! or keypad Enter). Key repeats are ignored; unknown keys are dropped.

/// A key event as evdev reports it: key code (Linux `KEY_*` number) and value
/// (0 up, 1 down, 2 repeat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyEvent {
    /// `KEY_*` code.
    pub code: u16,
    /// 0 release, 1 press, 2 auto-repeat.
    pub value: i32,
}

const KEY_ENTER: u16 = 28;
const KEY_KPENTER: u16 = 96;
const KEY_TAB: u16 = 15;
const KEY_LEFTSHIFT: u16 = 42;
const KEY_RIGHTSHIFT: u16 = 54;

/// `KEY_*` code → (unshifted, shifted) on a US layout.
fn us_key(code: u16) -> Option<(char, char)> {
    const ROW1: &[(u16, char, char)] = &[
        (2, '1', '!'),
        (3, '2', '@'),
        (4, '3', '#'),
        (5, '4', '$'),
        (6, '5', '%'),
        (7, '6', '^'),
        (8, '7', '&'),
        (9, '8', '*'),
        (10, '9', '('),
        (11, '0', ')'),
        (12, '-', '_'),
        (13, '=', '+'),
        (26, '[', '{'),
        (27, ']', '}'),
        (39, ';', ':'),
        (40, '\'', '"'),
        (41, '`', '~'),
        (43, '\\', '|'),
        (51, ',', '<'),
        (52, '.', '>'),
        (53, '/', '?'),
        (57, ' ', ' '),
        (55, '*', '*'),
        (74, '-', '-'),
        (78, '+', '+'),
        (71, '7', '7'),
        (72, '8', '8'),
        (73, '9', '9'),
        (75, '4', '4'),
        (76, '5', '5'),
        (77, '6', '6'),
        (79, '1', '1'),
        (80, '2', '2'),
        (81, '3', '3'),
        (82, '0', '0'),
        (83, '.', '.'),
    ];
    const LETTERS: &[(u16, char)] = &[
        (16, 'q'),
        (17, 'w'),
        (18, 'e'),
        (19, 'r'),
        (20, 't'),
        (21, 'y'),
        (22, 'u'),
        (23, 'i'),
        (24, 'o'),
        (25, 'p'),
        (30, 'a'),
        (31, 's'),
        (32, 'd'),
        (33, 'f'),
        (34, 'g'),
        (35, 'h'),
        (36, 'j'),
        (37, 'k'),
        (38, 'l'),
        (44, 'z'),
        (45, 'x'),
        (46, 'c'),
        (47, 'v'),
        (48, 'b'),
        (49, 'n'),
        (50, 'm'),
    ];
    if let Some((_, c)) = LETTERS.iter().find(|(k, _)| *k == code) {
        return Some((*c, c.to_ascii_uppercase()));
    }
    ROW1.iter()
        .find(|(k, _, _)| *k == code)
        .map(|(_, a, b)| (*a, *b))
}

/// Turns a stream of key events into lines.
#[derive(Debug, Default)]
pub struct KeyDecoder {
    shift: bool,
    line: String,
    /// Characters dropped because the line was already too long.
    overflow: bool,
}

impl KeyDecoder {
    /// A decoder with Shift released and an empty line.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one event; returns a finished line (bytes, with the `\r` terminator) at Enter.
    pub fn feed(&mut self, ev: KeyEvent) -> Option<Vec<u8>> {
        match (ev.code, ev.value) {
            (KEY_LEFTSHIFT | KEY_RIGHTSHIFT, v) => {
                self.shift = v != 0;
                None
            }
            (_, 1) => match ev.code {
                KEY_ENTER | KEY_KPENTER | KEY_TAB => {
                    let mut line = std::mem::take(&mut self.line).into_bytes();
                    if std::mem::take(&mut self.overflow) {
                        // Report it as too long: pad past the limit rather than cut silently.
                        line.resize(super::scan::MAX_SWIPE + 1, b'#');
                    }
                    line.push(b'\r');
                    Some(line)
                }
                code => {
                    if let Some((plain, shifted)) = us_key(code) {
                        // The longest a scanner or reader may send (a swipe); a barcode's
                        // own limit is checked on the line.
                        if self.line.len() > super::scan::MAX_SWIPE {
                            self.overflow = true;
                        } else {
                            self.line.push(if self.shift { shifted } else { plain });
                        }
                    }
                    None
                }
            },
            _ => None,
        }
    }

    /// Whether a line has been started and not finished.
    pub fn has_partial(&self) -> bool {
        !self.line.is_empty() || self.overflow
    }

    /// Forgets a half-typed line (a read cut short); the Shift state stays as the keys left it.
    pub fn drop_partial(&mut self) {
        self.line.clear();
        self.overflow = false;
    }

    /// Forgets a half-typed line and the Shift state (after the device went away).
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: u16) -> [KeyEvent; 2] {
        [KeyEvent { code, value: 1 }, KeyEvent { code, value: 0 }]
    }

    fn typed(events: &[KeyEvent]) -> Vec<Vec<u8>> {
        let mut d = KeyDecoder::new();
        events.iter().filter_map(|e| d.feed(*e)).collect()
    }

    #[test]
    fn digits_letters_and_shift() {
        let mut ev = Vec::new();
        for code in [7, 10, 2, 3] {
            ev.extend(press(code)); // 6 9 1 2
        }
        ev.push(KeyEvent {
            code: KEY_LEFTSHIFT,
            value: 1,
        });
        ev.extend(press(31)); // S
        ev.extend(press(2)); // !
        ev.push(KeyEvent {
            code: KEY_LEFTSHIFT,
            value: 0,
        });
        ev.extend(press(31)); // s
        ev.push(KeyEvent { code: 3, value: 2 }); // repeat ignored
        ev.extend(press(KEY_ENTER));
        assert_eq!(typed(&ev), vec![b"6912S!s\r".to_vec()]);
    }

    #[test]
    fn a_dropped_partial_line_is_not_glued_to_the_next() {
        let mut d = KeyDecoder::new();
        for code in [7, 10] {
            for e in press(code) {
                assert_eq!(d.feed(e), None);
            }
        }
        assert!(d.has_partial());
        d.drop_partial();
        assert!(!d.has_partial());
        let mut out = Vec::new();
        for code in [2, 3, KEY_ENTER] {
            out.extend(press(code).into_iter().filter_map(|e| d.feed(e)));
        }
        assert_eq!(out, vec![b"12\r".to_vec()]);
    }

    #[test]
    fn a_swipe_longer_than_a_barcode_is_kept_whole() {
        // A magstripe track 1 is up to 79 characters: a card reader's line, not an overflow.
        let mut ev = Vec::new();
        for _ in 0..79 {
            ev.extend(press(2));
        }
        ev.extend(press(KEY_ENTER));
        let mut want = vec![b'1'; 79];
        want.push(b'\r');
        assert_eq!(typed(&ev), vec![want]);
    }

    #[test]
    fn over_long_lines_are_flagged_not_cut() {
        let mut ev = Vec::new();
        for _ in 0..200 {
            ev.extend(press(2));
        }
        ev.extend(press(KEY_ENTER));
        let lines = typed(&ev);
        assert_eq!(
            super::super::scan::classify_scan(&lines[0]),
            Err(super::super::scan::Rejected::TooLong)
        );
    }
}
