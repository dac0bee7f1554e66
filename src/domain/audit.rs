//! Audit entries: what a sensitive action leaves behind (stored in the journal's hash chain,
//! see [`crate::journal::audit`], and sent to HQ as `audit.recorded`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the chain, from 1, without gaps.
    pub n: u64,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Who (staff number, `hq` or `system`).
    pub staff_no: String,
    /// From which terminal (empty when not from a terminal).
    pub terminal_id: String,
    /// What (`login`, `login.failed`, `sale.refund`, `member.erase` ...).
    pub action: String,
    /// On what (sale id, member id, sku, staff number); never personal data.
    pub target: String,
    /// Particulars (amounts, reasons), as JSON; never personal data.
    pub detail: Value,
}

/// An entry to append: everything but its position and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAudit {
    /// Who.
    pub staff_no: String,
    /// From which terminal.
    pub terminal_id: String,
    /// What.
    pub action: String,
    /// On what.
    pub target: String,
    /// Particulars.
    pub detail: Value,
}
