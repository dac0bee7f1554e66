//! Store devices. Today: the pure ESC/POS side of the receipt printer — no IO here.
//!
//! - [`escpos`]: the byte builder (init, Chinese mode, code pages, size, QR, cut, drawer kick,
//!   status request), text encodings with their column widths, and the DLE EOT reply parser.
//! - [`receipt`]: a recorded sale laid out for 58 mm or 80 mm paper, as ESC/POS bytes.
//! - [`decode`]: those bytes back into printed lines, QR contents, cuts and drawer kicks, for
//!   the receipt preview and for tests that check what a printer received.
//!
//! Transports (TCP 9100, serial, USB lp) and the per-printer task will sit next to these and
//! only move bytes.

pub mod decode;
pub mod escpos;
pub mod receipt;
