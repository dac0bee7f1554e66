//! Roles and what each may do: the permission matrix, in one place.
//!
//! Every API handler names the [`Action`] it performs; [`Action::min_role`] is the only table
//! that decides who may. The README's matrix is printed from [`Action::ALL`] by a test, so the
//! two cannot drift apart.

use serde::{Deserialize, Serialize};

/// A staff role. Ordered: `Cashier < Manager < Admin`; a higher role may do all a lower one may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Works the till.
    Cashier,
    /// Runs the store: refunds, stock, erasure, reports.
    Manager,
    /// Runs the box: staff, devices, configuration.
    Admin,
}

impl Role {
    /// The role's name as in config and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Cashier => "cashier",
            Role::Manager => "manager",
            Role::Admin => "admin",
        }
    }
}

/// Something a staff member can ask the box to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Register a member.
    MemberRegister,
    /// Look up and read members (phone masked below manager).
    MemberRead,
    /// See a member's full phone number.
    MemberReadFullPhone,
    /// Edit a member's profile.
    MemberEdit,
    /// Change a birthday that is already set (birthday benefits are money).
    MemberEditBirthday,
    /// Erase a member's personal data (PIPL).
    MemberErase,
    /// Adjust a member's points by hand (goodwill credit, correction).
    PointsAdjust,
    /// Read products.
    ProductRead,
    /// Edit a product locally (price override).
    ProductEdit,
    /// Read stock.
    StockRead,
    /// Move stock by hand.
    StockMove,
    /// Price a cart.
    SaleQuote,
    /// Record a sale.
    SaleRecord,
    /// Read sales.
    SaleRead,
    /// Refund a sale.
    SaleRefund,
    /// Read coupons.
    CouponRead,
    /// Issue a coupon locally.
    CouponIssue,
    /// See the uplink's and the devices' state, and the terminal's device events.
    StatusRead,
    /// Print a receipt again.
    ReceiptReprint,
    /// Open the cash drawer without a sale.
    DeviceControl,
    /// Export members' personal data.
    MemberExport,
    /// See the store's staff list.
    StaffRead,
    /// Add, change or remove staff.
    StaffManage,
    /// Read the audit log.
    AuditRead,
    /// See segments, the churn list and reports.
    ReportsRead,
    /// Record a customer's feedback.
    FeedbackRecord,
    /// See and follow up feedback.
    FeedbackManage,
    /// Start a campaign.
    CampaignManage,
}

impl Action {
    /// Every action, in the order of the README's matrix.
    pub const ALL: [Action; 28] = [
        Action::MemberRegister,
        Action::MemberRead,
        Action::MemberReadFullPhone,
        Action::MemberEdit,
        Action::MemberEditBirthday,
        Action::MemberErase,
        Action::PointsAdjust,
        Action::ProductRead,
        Action::ProductEdit,
        Action::StockRead,
        Action::StockMove,
        Action::SaleQuote,
        Action::SaleRecord,
        Action::SaleRead,
        Action::SaleRefund,
        Action::CouponRead,
        Action::CouponIssue,
        Action::StatusRead,
        Action::ReceiptReprint,
        Action::DeviceControl,
        Action::MemberExport,
        Action::StaffRead,
        Action::StaffManage,
        Action::AuditRead,
        Action::ReportsRead,
        Action::FeedbackRecord,
        Action::FeedbackManage,
        Action::CampaignManage,
    ];

    /// The lowest role allowed to perform the action.
    pub fn min_role(self) -> Role {
        match self {
            Action::MemberRegister
            | Action::MemberRead
            | Action::MemberEdit
            | Action::ProductRead
            | Action::StockRead
            | Action::SaleQuote
            | Action::SaleRecord
            | Action::SaleRead
            | Action::CouponRead
            | Action::StatusRead
            | Action::ReceiptReprint
            | Action::FeedbackRecord => Role::Cashier,
            Action::MemberReadFullPhone
            | Action::MemberEditBirthday
            | Action::MemberErase
            | Action::PointsAdjust
            | Action::ProductEdit
            | Action::StockMove
            | Action::SaleRefund
            | Action::CouponIssue
            | Action::DeviceControl
            | Action::MemberExport
            | Action::StaffRead
            | Action::ReportsRead
            | Action::FeedbackManage
            | Action::CampaignManage => Role::Manager,
            Action::StaffManage | Action::AuditRead => Role::Admin,
        }
    }

    /// A short description for the permission matrix.
    pub fn describe(self) -> &'static str {
        match self {
            Action::MemberRegister => "register a member",
            Action::MemberRead => "look up a member (phone masked)",
            Action::MemberReadFullPhone => "see a member's full phone number",
            Action::MemberEdit => "edit a member's profile",
            Action::MemberEditBirthday => "change a birthday already on file",
            Action::MemberErase => "erase a member's personal data",
            Action::PointsAdjust => "adjust a member's points by hand",
            Action::ProductRead => "look up products",
            Action::ProductEdit => "edit a product / override a price",
            Action::StockRead => "read stock levels",
            Action::StockMove => "record a stock movement",
            Action::SaleQuote => "price a cart",
            Action::SaleRecord => "record a sale",
            Action::SaleRead => "read sales",
            Action::SaleRefund => "refund a sale",
            Action::CouponRead => "look up a coupon",
            Action::CouponIssue => "issue a coupon",
            Action::StatusRead => "see uplink and device status, receive device events",
            Action::ReceiptReprint => "reprint a receipt",
            Action::DeviceControl => "open the cash drawer without a sale",
            Action::MemberExport => "export members' personal data",
            Action::StaffRead => "see the staff list",
            Action::StaffManage => "add, change or remove staff",
            Action::AuditRead => "read the audit log",
            Action::ReportsRead => "see segments, the churn list and reports",
            Action::FeedbackRecord => "record a customer's feedback",
            Action::FeedbackManage => "see and follow up feedback",
            Action::CampaignManage => "start a campaign",
        }
    }

    /// Whether `role` may perform the action.
    pub fn allowed(self, role: Role) -> bool {
        role >= self.min_role()
    }
}

/// The permission matrix as a Markdown table (the README carries exactly this table).
pub fn matrix_markdown() -> String {
    let roles = [Role::Cashier, Role::Manager, Role::Admin];
    let mut out = String::from("| action | cashier | manager | admin |\n|---|:-:|:-:|:-:|\n");
    for a in Action::ALL {
        out.push_str(&format!("| {} |", a.describe()));
        for r in roles {
            out.push_str(if a.allowed(r) { " ✓ |" } else { " – |" });
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_carries_the_matrix() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md");
        let matrix = matrix_markdown();
        assert!(
            readme.contains(&matrix),
            "README.md's permission matrix is out of date; it should read:\n{matrix}"
        );
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Cashier < Role::Manager && Role::Manager < Role::Admin);
        assert!(!Action::SaleRefund.allowed(Role::Cashier));
        assert!(Action::SaleRefund.allowed(Role::Admin));
    }
}
