//! storebox: the customer-management and device hub of a store.
pub mod api;
pub mod app;
pub mod cache;
pub mod config;
pub mod domain;
pub mod journal;
pub mod ledger;
pub mod pii;
