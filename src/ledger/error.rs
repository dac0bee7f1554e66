//! Why the ledger refused or failed a command. Each variant carries a stable `code` that the
//! API passes to the terminal.

use crate::cache::CacheError;
use crate::domain::contact::FieldError;
use crate::domain::pricing::PricingError;
use crate::domain::refund::RefundError;
use crate::domain::sale::SettleError;
use crate::journal::JournalError;

/// A ledger error.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Occurs when the request is malformed in a way only the ledger can see (bad phone).
    #[error("{message}")]
    Invalid {
        /// Stable reason code.
        code: &'static str,
        /// Human-readable detail.
        message: String,
    },
    /// Occurs when a member, product, sale or coupon does not exist.
    #[error("{message}")]
    NotFound {
        /// Stable reason code.
        code: &'static str,
        /// Human-readable detail.
        message: String,
    },
    /// Occurs on a uniqueness or idempotency conflict.
    #[error("{message}")]
    Conflict {
        /// Stable reason code.
        code: &'static str,
        /// Human-readable detail.
        message: String,
    },
    /// Occurs when a business rule refuses the request (not enough points, coupon expired).
    #[error("{message}")]
    Rule {
        /// Stable reason code.
        code: &'static str,
        /// Human-readable detail.
        message: String,
    },
    /// Occurs when the staff member's role is too low for this particular change.
    #[error("{message}")]
    Forbidden {
        /// Stable reason code.
        code: &'static str,
        /// Human-readable detail.
        message: String,
    },
    /// Occurs when the journal, or the cache it must be caught up into, cannot be written
    /// (disk full, a lock another process holds): nothing was recorded. The text says which.
    #[error("nothing can be recorded now: {0}")]
    Unavailable(String),
    /// Occurs when the journal's commit failed in its I/O (a failed `fdatasync`): the
    /// commit may still have reached the disk, and be found there after a crash; or when it
    /// went to a journal file no longer in the data directory (found again if the directory
    /// comes back). Whether it was recorded is answered by a retry with the same
    /// `Idempotency-Key`.
    #[error("the journal could not confirm the write: {0}")]
    Unconfirmed(String),
    /// Occurs when the ledger is shutting down.
    #[error("storebox is shutting down")]
    ShuttingDown,
    /// Occurs on an unexpected storage failure.
    #[error("{0}")]
    Internal(String),
    /// Occurs when executing the command hit a bug (a caught panic). Unlike a storage failure
    /// it would fail the same way again: HQ's messages that hit one are not redelivered.
    #[error("{0}")]
    Bug(String),
}

impl LedgerError {
    pub(crate) fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        LedgerError::NotFound {
            code,
            message: message.into(),
        }
    }
    pub(crate) fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        LedgerError::Conflict {
            code,
            message: message.into(),
        }
    }
    /// An idempotency key already used for another kind of request.
    pub(crate) fn key_reused() -> Self {
        LedgerError::conflict(
            "idempotency_key_reused",
            "key was used for another kind of request",
        )
    }
    pub(crate) fn rule(code: &'static str, message: impl Into<String>) -> Self {
        LedgerError::Rule {
            code,
            message: message.into(),
        }
    }
    pub(crate) fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        LedgerError::Invalid {
            code,
            message: message.into(),
        }
    }
}

impl From<JournalError> for LedgerError {
    fn from(e: JournalError) -> Self {
        if e.is_unwritable() {
            LedgerError::Unavailable(e.to_string())
        } else {
            LedgerError::Internal(e.to_string())
        }
    }
}

impl From<CacheError> for LedgerError {
    fn from(e: CacheError) -> Self {
        LedgerError::Internal(e.to_string())
    }
}

impl LedgerError {
    /// A batch's cache transaction refused before anything ran: by a cache another process
    /// holds locked, or a full or failing disk, it is retryable, as the journal's own refusals
    /// are (nothing was recorded). A cache read failing inside one command stays that
    /// command's own error (`Internal`), which the others in its batch do not share.
    pub(crate) fn cache_refused(e: CacheError) -> LedgerError {
        match &e {
            CacheError::Sql { source, .. } if crate::sqlite::is_unwritable(source) => {
                LedgerError::Unavailable(e.to_string())
            }
            _ => LedgerError::Internal(e.to_string()),
        }
    }
}

impl From<FieldError> for LedgerError {
    fn from(e: FieldError) -> Self {
        let code = match e.field {
            "phone" => "invalid_phone",
            "card_no" => "invalid_card",
            "name" => "invalid_name",
            "tags" => "invalid_tags",
            "birthday" => "invalid_birthday",
            _ => "invalid_field",
        };
        LedgerError::invalid(code, e.to_string())
    }
}

impl From<PricingError> for LedgerError {
    fn from(e: PricingError) -> Self {
        use PricingError::*;
        let message = e.to_string();
        match e {
            EmptyCart
            | TooManyLines
            | BadQuantity { .. }
            | NegativePoints
            | DuplicateCoupon { .. } => {
                let code = match e {
                    EmptyCart => "empty_cart",
                    TooManyLines => "too_many_lines",
                    BadQuantity { .. } => "invalid_quantity",
                    NegativePoints => "invalid_points",
                    _ => "duplicate_coupon",
                };
                LedgerError::invalid(code, message)
            }
            NotForSale { .. } => LedgerError::rule("not_for_sale", message),
            PointsNeedMember => LedgerError::rule("points_need_member", message),
            InsufficientPoints { .. } => LedgerError::rule("insufficient_points", message),
            RedeemAboveLimit { .. } => LedgerError::rule("redeem_above_limit", message),
            RedeemTooSmall { .. } => LedgerError::rule("redeem_too_small", message),
            TooManyCoupons => LedgerError::rule("too_many_coupons", message),
            CouponUsed { .. } => LedgerError::rule("coupon_used", message),
            CouponNotYetValid { .. } => LedgerError::rule("coupon_not_yet_valid", message),
            CouponExpired { .. } => LedgerError::rule("coupon_expired", message),
            CouponNotYours { .. } => LedgerError::rule("coupon_not_yours", message),
            CouponThreshold { .. } => LedgerError::rule("coupon_threshold_not_met", message),
            CouponItemMissing { .. } => LedgerError::rule("coupon_item_missing", message),
            CouponGivesNothing { .. } => LedgerError::rule("coupon_gives_nothing", message),
        }
    }
}

impl From<SettleError> for LedgerError {
    fn from(e: SettleError) -> Self {
        let message = e.to_string();
        match e {
            SettleError::NonPositive | SettleError::Implausible => {
                LedgerError::invalid("invalid_payment", message)
            }
            SettleError::TooMany => LedgerError::invalid("too_many_payments", message),
            SettleError::Underpaid { .. } => LedgerError::rule("underpaid", message),
            SettleError::NonCashOverpaid { .. } => LedgerError::rule("non_cash_overpaid", message),
        }
    }
}

impl From<RefundError> for LedgerError {
    fn from(e: RefundError) -> Self {
        let message = e.to_string();
        match e {
            RefundError::AlreadyRefunded => LedgerError::rule("already_refunded", message),
            RefundError::NotOnSale { .. } => LedgerError::rule("not_on_sale", message),
            RefundError::TooMany { .. } => LedgerError::rule("refund_exceeds_sale", message),
            RefundError::BadLines => LedgerError::invalid("invalid_refund_lines", message),
        }
    }
}

/// What a caught panic said, for the log and the error (the ledger's and the HTTP server's
/// guards against a bug).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    format!("panicked: {what}")
}
