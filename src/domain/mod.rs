//! Pure store logic: money, membership, pricing, sales, refunds, events, permissions.
//!
//! Nothing in here does IO or reads a clock: callers pass `now` (store-local) and the values the
//! rules need, and get values back. That is what lets the same code run at the till, in the
//! journal replay and in property tests.

pub mod access;
pub mod adjustment;
pub mod audit;
pub mod automation;
pub mod calendar;
pub mod campaign;
pub mod catalog;
pub mod contact;
pub mod event;
pub mod feedback;
pub mod insight;
pub mod lockout;
pub mod member;
pub mod money;
pub mod pricing;
pub mod refund;
pub mod report;
pub mod rules;
pub mod sale;
pub mod sync;
pub mod timestamp;

#[cfg(test)]
mod limits;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod refund_properties;
