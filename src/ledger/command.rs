//! What the ledger is asked (`Command`, `SessionOp`, by whom: `Actor`, under which key: `Idem`)
//! and what it answers (`Outcome`).

use crate::cache::Session;
use crate::domain::access::Role;
use crate::domain::catalog::{Coupon, Product, StockLevel};
use crate::domain::event::Alert;
use crate::domain::member::Member;
use crate::domain::refund::Refund;
use crate::domain::rules::Rules;
use crate::domain::sale::Sale;
use crate::domain::sync::HqUpdate;

use super::ImportReport;
use super::requests::{
    self, IssueCoupon, ProductEdit, RefundRequest, RegisterMember, SaleRequest, StockMovement,
    UpdateMember,
};

/// Who asks: the staff member and terminal of the session.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Staff number.
    pub staff_no: String,
    /// Role.
    pub role: Role,
    /// Terminal.
    pub terminal_id: String,
}

/// An idempotency key with the hash of the request it came with.
#[derive(Debug, Clone)]
pub struct Idem {
    /// The terminal's `Idempotency-Key`.
    pub key: String,
    /// Hash of the canonical request.
    pub body_hash: String,
}

/// A command for the ledger.
#[derive(Debug, Clone)]
pub enum Command {
    /// Register a member.
    Register {
        /// Request.
        req: RegisterMember,
        /// Optional idempotency key.
        idem: Option<Idem>,
    },
    /// Edit a member.
    Update {
        /// Member.
        member_id: String,
        /// Request.
        req: UpdateMember,
    },
    /// Erase a member's personal data.
    Erase {
        /// Member.
        member_id: String,
    },
    /// Record a sale.
    Sale {
        /// Request.
        req: SaleRequest,
        /// Required idempotency key.
        idem: Idem,
    },
    /// Refund a sale.
    Refund {
        /// Sale.
        sale_id: String,
        /// Request.
        req: RefundRequest,
        /// Optional idempotency key.
        idem: Option<Idem>,
    },
    /// Adjust a member's points by hand.
    AdjustPoints {
        /// Member.
        member_id: String,
        /// Request.
        req: requests::AdjustPoints,
        /// Required idempotency key.
        idem: Idem,
    },
    /// Move stock.
    MoveStock {
        /// Request.
        req: StockMovement,
        /// Optional idempotency key.
        idem: Option<Idem>,
    },
    /// Edit a product.
    PutProduct {
        /// Product.
        sku: String,
        /// Request.
        req: ProductEdit,
    },
    /// Issue a coupon.
    IssueCoupon {
        /// Request.
        req: IssueCoupon,
    },
    /// Record a sensitive action that changes nothing else (login, export, config reload).
    Audit {
        /// What (`login`, `login.failed`, `member.export`).
        action: String,
        /// On what (never personal data).
        target: String,
        /// Particulars (never personal data).
        detail: serde_json::Value,
    },
    /// Import members (one transaction for the whole chunk): new phones are registered,
    /// known phones merged (missing fields filled, tags added), bad rows reported by line. (A row
    /// repeating an earlier row's phone or card never comes here: `import` refuses it.)
    ImportMembers {
        /// Rows with their line numbers in the file.
        rows: Vec<requests::ImportRow>,
    },
    /// Act on an occasion for a member: issue its coupon, if it has one, and tell HQ (once:
    /// nothing happens if the occasion or its coupon code is known).
    Automate {
        /// Member.
        member_id: String,
        /// The occasion.
        occasion: crate::domain::automation::Occasion,
        /// The coupon (code from `occasion_code`); `None` for a win-back occasion without
        /// a coupon configured, which only flags the member to HQ.
        coupon: Option<Box<crate::domain::catalog::Coupon>>,
    },
    /// Start a campaign: record it, then issue its coupons to the treated members. A big
    /// campaign is started by [`crate::ledger::Ledger::start_campaign`], its coupons issued in
    /// parts first.
    StartCampaign {
        /// The campaign.
        campaign: Box<crate::domain::campaign::Campaign>,
        /// Its coupons were issued, and its members checked, by
        /// [`Command::IssueCampaignCoupons`] for each part: only the campaign is recorded.
        issued: bool,
    },
    /// Issue a campaign's coupons to some of its members ahead of its start (a part of a big
    /// campaign): to the treated members still here who do not hold theirs yet. Answers with
    /// the part's members still here.
    IssueCampaignCoupons {
        /// The campaign, with the part's members.
        campaign: Box<crate::domain::campaign::Campaign>,
    },
    /// Record a customer's feedback.
    RecordFeedback {
        /// The item (id, status, times and recorder are set by the ledger).
        item: Box<crate::domain::feedback::Feedback>,
    },
    /// Follow up a feedback item.
    UpdateFeedback {
        /// Item.
        id: String,
        /// New status.
        status: crate::domain::feedback::FeedbackStatus,
        /// Note.
        note: String,
    },
    /// Add, change or remove (`active: false`) a staff member at this store.
    PutStaff {
        /// The record after the change.
        record: Box<crate::domain::sync::StaffRecord>,
        /// Whether the admin gave a PIN (a new one, or the same typed again): a lock of the
        /// number by wrong PINs ends.
        pin_given: bool,
    },
    /// Replace a staff member's PIN hash made without this store's pepper (one from HQ) by a
    /// peppered one, after a login with the right PIN — only if the record still holds `from`
    /// and is active: a change made while the PIN was checked (a removal, another role, a new
    /// PIN) stands.
    UpgradePin {
        /// Staff number.
        staff_no: String,
        /// The hash the PIN was checked against.
        from: String,
        /// The peppered hash.
        to: String,
    },
    /// Open, end or prune staff sessions (cache only, no journal event).
    Session(SessionOp),
    /// HQ has acknowledged every event up to `seq`: move the outbox position.
    OutboxAcked {
        /// Highest `seq` acknowledged with all before it.
        seq: u64,
    },
    /// Record an alert (an event for HQ).
    Alert(Alert),
    /// Ask HQ for a full snapshot (an event for HQ).
    RequestSync {
        /// Why.
        reason: String,
    },
    /// Apply master data from HQ to the cache (no journal event).
    ApplyHq(Box<HqUpdate>),
    /// Panics while it executes, as a bug would, after appending an event when `after_emit`.
    #[cfg(test)]
    PanicForTest {
        /// Append an event first.
        after_emit: bool,
    },
    /// Appends an event, and its batch panics after the journal commit, before the cache write.
    #[cfg(test)]
    PanicAfterCommitForTest,
    /// Print a sale's receipt, or the slip of one of its refunds, again on the actor's
    /// terminal's printer.
    Reprint {
        /// Sale.
        sale_id: String,
        /// The refund whose slip to print instead of the receipt.
        refund_id: Option<String>,
    },
    /// Open the cash drawer on a printer, with no sale.
    OpenDrawer {
        /// The printer the drawer hangs on.
        device_id: String,
    },
    /// A printer took a job's bytes.
    PrintDone {
        /// The job.
        job_id: i64,
    },
    /// A queued drawer opening reached its printer too late: removed without opening the
    /// drawer, and audited (`drawer.expired`), as its request was (`drawer.open`).
    DrawerExpired {
        /// The job.
        job_id: i64,
        /// The printer.
        device_id: String,
        /// The sale it was for, if any (empty for one asked for without a sale).
        sale_id: String,
        /// When it was queued (RFC 3339).
        queued_at: String,
    },
}

/// A change to the session table.
#[derive(Debug, Clone)]
pub enum SessionOp {
    /// Store a new session under the SHA-256 of its token.
    Open {
        /// Token hash.
        token_hash: [u8; 32],
        /// The session.
        session: Session,
    },
    /// End a session.
    Close {
        /// Token hash.
        token_hash: [u8; 32],
    },
    /// Forget expired sessions.
    Prune,
    /// End these sessions (those the config no longer grants, after a start or a reload).
    End {
        /// Their token hashes.
        token_hashes: Vec<[u8; 32]>,
    },
    /// A login's attempt, before its PIN is checked: refused ([`Outcome::Locked`]) when a scope
    /// (`terminal:<id>`, `staff:<no>`, checked in that order) is locked, else counted against
    /// each with its limit as if the PIN were wrong ([`Outcome::Attempted`]). Counted here, on
    /// the ledger thread, so that logins sent at once cannot all pass the lock before any is
    /// counted.
    Attempt {
        /// Scopes and their limits.
        scopes: Vec<(String, u32)>,
        /// How long a count lasts, and a lock.
        window: chrono::Duration,
    },
    /// Takes a login's attempt back — its PIN was right, or no PIN was answered — from each
    /// count it went into (scope, limit, when the count started), if that count is still the
    /// one in force; then forgets the count of `clear` (a right PIN's staff number).
    TakeBack {
        /// The counts the attempt went into.
        attempts: Vec<(String, u32, chrono::DateTime<chrono::Utc>)>,
        /// The staff number's scope, after a right PIN.
        clear: Option<String>,
    },
    /// Panics in the batch outside any command's execution, as a bug would.
    #[cfg(test)]
    PanicForTest,
}

/// What a command produced.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A login's attempt counted: when each count it went into started (in the order of the
    /// scopes asked).
    Attempted {
        /// Start of each count.
        since: Vec<chrono::DateTime<chrono::Utc>>,
    },
    /// A login's attempt refused: `scope` is locked until then.
    Locked {
        /// The locked scope.
        scope: String,
        /// Until when.
        until: chrono::DateTime<chrono::Utc>,
    },
    /// The member after the command.
    Member {
        /// The member.
        member: Box<Member>,
        /// Whether this is the original answer to a repeated request.
        replayed: bool,
    },
    /// A recorded sale; `replayed` when an idempotency key returned an earlier one.
    Sale {
        /// The sale.
        sale: Box<Sale>,
        /// Whether this is the original answer to a repeated request.
        replayed: bool,
        /// The sale's JSON as the journal holds it, when just recorded: the answer's body,
        /// which then need not be written again.
        json: Option<String>,
    },
    /// A refund.
    Refund {
        /// The refund.
        refund: Box<Refund>,
        /// Whether this is the original answer to a repeated request.
        replayed: bool,
    },
    /// A points adjustment: its event (as recorded, or as first recorded when `replayed`).
    PointsAdjusted {
        /// The `points.adjusted` event.
        event: Box<crate::domain::event::Event>,
        /// Whether this is the original answer to a repeated request.
        replayed: bool,
    },
    /// A stock movement.
    Stock {
        /// Level after the movement.
        level: StockLevel,
        /// Movement id.
        movement_id: String,
        /// Whether this is the original answer to a repeated request.
        replayed: bool,
    },
    /// A product after an edit.
    Product(Box<Product>),
    /// A coupon issued.
    Coupon(Box<Coupon>),
    /// What an import chunk did.
    Imported(Box<ImportReport>),
    /// Whether the store acted on an occasion now (false: it already had).
    Automated {
        /// Acted on now.
        issued: bool,
    },
    /// A feedback item after the command.
    Feedback(Box<crate::domain::feedback::Feedback>),
    /// A campaign as started (its members those still there when it started).
    Campaign(Box<crate::domain::campaign::Campaign>),
    /// A staff record after an admin's change.
    Staff {
        /// The record.
        record: Box<crate::domain::sync::StaffRecord>,
        /// Whether the staff member's open sessions were ended.
        revoke: bool,
        /// Whether a lock of the staff number by wrong PINs ends: an admin gave them a PIN (a
        /// new one, or the same typed again), so they log in at once, not after
        /// `lockout_seconds`.
        unlock: bool,
    },
    /// A member's personal data is erased (now or before).
    Erased,
    /// Done, nothing to report (session changes, outbox position, alerts).
    Done,
    /// A test's command whose batch panics after the commit.
    #[cfg(test)]
    PanicAfterCommitForTest,
    /// A print job is queued.
    Queued {
        /// Job id.
        job_id: i64,
        /// Printer.
        device_id: String,
    },
    /// HQ data applied.
    Applied {
        /// Items that changed the cache.
        applied: usize,
        /// Items ignored (not newer than the cache, or for an unknown product).
        ignored: usize,
        /// Products of price changes this store does not know (yet): HQ is told, to send the
        /// product (a price that overtook its product's first push would be lost).
        unknown_products: Vec<String>,
        /// New membership rules, to put in force once committed.
        rules: Option<Box<Rules>>,
        /// Staff numbers HQ deactivated or gave another role or PIN, whose sessions end once
        /// committed.
        removed_staff: Vec<String>,
    },
}
