//! Feedback and complaints: a rating, text and category, linked to a sale, member or staff
//! member, followed up until closed.

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};

/// Where a feedback item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackStatus {
    /// Waiting for follow-up.
    Open,
    /// Someone is on it.
    InProgress,
    /// Done.
    Closed,
}

/// What the feedback is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackCategory {
    /// Praise.
    Praise,
    /// Service.
    Service,
    /// A product.
    Product,
    /// Prices and promotions.
    Price,
    /// The store itself.
    Environment,
    /// Anything else.
    Other,
}

/// A feedback item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    /// UUIDv7.
    pub id: String,
    /// 1 (bad) – 5 (good).
    pub rating: u8,
    /// What the customer said (up to 1,000 characters).
    pub text: String,
    /// Category.
    pub category: FeedbackCategory,
    /// The sale it is about.
    pub sale_id: Option<String>,
    /// The member who gave it.
    pub member_id: Option<String>,
    /// The staff member it is about.
    pub staff_no: Option<String>,
    /// Follow-up status.
    pub status: FeedbackStatus,
    /// Follow up by this day.
    pub due: Option<NaiveDate>,
    /// Notes of the follow-up, oldest first.
    #[serde(default)]
    pub notes: Vec<FeedbackNote>,
    /// Who recorded it.
    pub recorded_by: String,
    /// When.
    pub created_at: DateTime<FixedOffset>,
    /// Last change.
    pub updated_at: DateTime<FixedOffset>,
}

/// A follow-up note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackNote {
    /// Staff.
    pub by: String,
    /// When.
    pub at: DateTime<FixedOffset>,
    /// Status set with it.
    pub status: FeedbackStatus,
    /// Text.
    pub note: String,
}
