//! Reads of the store's marketing tables: campaigns, the use of a family of coupons, feedback.

use rusqlite::params;

use super::{Cache, CacheError, codec, sql_err};
use crate::domain::catalog::Coupon;

impl Cache {
    /// Every campaign, by id.
    pub fn campaigns(&self) -> Result<Vec<crate::domain::campaign::Campaign>, CacheError> {
        self.read(|c| {
            let rows: Vec<(String, Vec<u8>)> = c
                .prepare_cached("SELECT id, data FROM campaigns ORDER BY id")
                .and_then(|mut st| st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
                .map_err(sql_err("listing campaigns"))?;
            rows.iter()
                .map(|(id, d)| codec::decode_json("campaigns", id, d))
                .collect()
        })
    }

    /// A campaign by id.
    pub fn campaign(
        &self,
        id: &str,
    ) -> Result<Option<crate::domain::campaign::Campaign>, CacheError> {
        self.read(|c| codec::get_json(c, "campaigns", "id", id))
    }

    /// Coupons whose code starts with `prefix` and that `counts` (given the code) takes: how
    /// many were issued and how many used.
    pub fn coupon_use(
        &self,
        prefix: &str,
        counts: impl Fn(&str) -> bool,
    ) -> Result<(u64, u64), CacheError> {
        // Codes are A-Z, 0-9 and '-', all below '~'.
        let (lo, hi) = (prefix.to_string(), format!("{prefix}~"));
        self.read(|c| {
            let rows: Vec<(String, Vec<u8>)> = c
                .prepare_cached("SELECT code, data FROM coupons WHERE code >= ?1 AND code < ?2")
                .and_then(|mut st| {
                    st.query_map(params![lo, hi], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect()
                })
                .map_err(sql_err("counting coupons"))?;
            let (mut issued, mut used) = (0, 0);
            for (code, d) in rows.iter().filter(|(code, _)| counts(code)) {
                issued += 1;
                let coupon: Coupon = codec::decode_json("coupons", code, d)?;
                if coupon.used.is_some() {
                    used += 1;
                }
            }
            Ok((issued, used))
        })
    }

    /// A feedback item.
    pub fn feedback(
        &self,
        id: &str,
    ) -> Result<Option<crate::domain::feedback::Feedback>, CacheError> {
        self.read(|c| codec::get_json(c, "feedback", "id", id))
    }

    /// Feedback items, open ones only or all, oldest first, at most `limit`.
    pub fn feedback_list(
        &self,
        open_only: bool,
        limit: usize,
    ) -> Result<Vec<crate::domain::feedback::Feedback>, CacheError> {
        self.read(|c| {
            let rows: Vec<(String, Vec<u8>)> = c
                .prepare_cached(
                    "SELECT id, data FROM feedback WHERE open >= ?1 ORDER BY id LIMIT ?2",
                )
                .and_then(|mut st| {
                    st.query_map(params![open_only, limit as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?
                    .collect()
                })
                .map_err(sql_err("listing feedback"))?;
            rows.iter()
                .map(|(id, d)| codec::decode_json("feedback", id, d))
                .collect()
        })
    }
}
