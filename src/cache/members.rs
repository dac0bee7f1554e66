//! Reading members from the cache: by id, by phone and card (through the in-memory hints
//! first), by phone tail and by name, page by page, and their count.

use rusqlite::{OptionalExtension, params};

use super::*;

impl Cache {
    /// A member by id.
    pub fn member(&self, id: &str) -> Result<Option<Member>, CacheError> {
        self.read(|c| get_member(c, &self.inner.codec, id))
    }

    /// Members in storage order after position `after` (0 for the first page), at most
    /// `limit`, each with its position (pass the last one as the next `after`).
    pub fn members_page(&self, after: i64, limit: usize) -> Result<Vec<(i64, Member)>, CacheError> {
        self.read(|c| {
            let rows: Vec<(i64, String, Vec<u8>)> = c
                .prepare_cached(
                    "SELECT rid, id, data FROM members WHERE rid > ?1 ORDER BY rid LIMIT ?2",
                )
                .and_then(|mut st| {
                    st.query_map(params![after, limit as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?
                    .collect()
                })
                .map_err(sql_err("listing members"))?;
            rows.into_iter()
                .map(|(rid, id, data)| {
                    codec::decode_member(&self.inner.codec, &id, &data).map(|m| (rid, m))
                })
                .collect()
        })
    }

    /// Calls `f` with every member, in storage order, reading a page at a time.
    pub fn scan_members(&self, mut f: impl FnMut(i64, Member)) -> Result<(), CacheError> {
        self.scan_members_while(|rid, m| {
            f(rid, m);
            std::ops::ControlFlow::Continue(())
        })
    }

    /// Like [`Cache::scan_members`], until `f` breaks.
    pub fn scan_members_while(
        &self,
        mut f: impl FnMut(i64, Member) -> std::ops::ControlFlow<()>,
    ) -> Result<(), CacheError> {
        let mut pos = 0;
        loop {
            let page = self.members_page(pos, 2_000)?;
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            pos = *last;
            for (rid, m) in page {
                if f(rid, m).is_break() {
                    return Ok(());
                }
            }
        }
    }

    /// The member with this (normalised) phone.
    pub fn member_by_phone(&self, phone: &str) -> Result<Option<Member>, CacheError> {
        self.member_by_index(hints::Field::Phone, phone)
    }

    /// The member with this (normalised) card number.
    pub fn member_by_card(&self, card: &str) -> Result<Option<Member>, CacheError> {
        self.member_by_index(hints::Field::Card, card)
    }

    /// A member by a unique personal value: through its hint when there is one and the member
    /// found holds the value, else through the index table (leaving a hint behind).
    fn member_by_index(
        &self,
        field: hints::Field,
        value: &str,
    ) -> Result<Option<Member>, CacheError> {
        let (index_field, sql) = match field {
            hints::Field::Phone => (
                IndexField::Phone,
                "SELECT m.rid, m.id, m.data FROM idx_phone i JOIN members m ON m.rid = i.rid WHERE i.k = ?1",
            ),
            hints::Field::Card => (
                IndexField::Card,
                "SELECT m.rid, m.id, m.data FROM idx_card i JOIN members m ON m.rid = i.rid WHERE i.k = ?1",
            ),
        };
        let holds = |m: &Member| {
            m.profile.as_ref().is_some_and(|p| match field {
                hints::Field::Phone => p.phone == value,
                hints::Field::Card => p.card_no.as_deref() == Some(value),
            })
        };
        let key = self.inner.codec.index_key(index_field, value);
        let inner = &self.inner;
        inner.readers.with_snapshot(|c, seen| {
            if let Some(rid) = inner.hints.get(field, &key) {
                let row: Option<(String, Vec<u8>)> = c
                    .prepare_cached("SELECT id, data FROM members WHERE rid = ?1")
                    .and_then(|mut st| {
                        st.query_row(params![rid], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()
                    })
                    .map_err(sql_err("reading a member by its hint"))?;
                if let Some((id, data)) = row {
                    let m = codec::decode_member(&inner.codec, &id, &data)?;
                    if holds(&m) {
                        return Ok(Some(m));
                    }
                }
            }
            let row: Option<(i64, String, Vec<u8>)> = c
                .prepare_cached(sql)
                .and_then(|mut st| {
                    st.query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .optional()
                })
                .map_err(sql_err("reading a member by index"))?;
            match row {
                Some((rid, id, data)) => {
                    inner
                        .hints
                        .offer(field, &key, rid, seen, inner.readers.generation());
                    codec::decode_member(&inner.codec, &id, &data).map(Some)
                }
                None => Ok(None),
            }
        })
    }

    /// Loads the member hints (see [`hints`]): a scan of the phone and card indexes on a
    /// connection of its own. Blocking; the store answers without hints until it is done.
    pub fn load_hints(&self) -> Result<(usize, usize), CacheError> {
        let conn = db::connect(&self.inner.path, false, 1024)?;
        self.inner.hints.load(&conn)
    }

    /// Members whose phone ends in `tail` (four digits), at most `limit`.
    pub fn members_by_tail(&self, tail: &str, limit: usize) -> Result<Vec<Member>, CacheError> {
        self.members_by_multi(Idx::Tail, IndexField::PhoneTail, tail, limit)
    }

    /// Members whose name search key equals `name`, at most `limit`.
    pub fn members_by_name(&self, name: &str, limit: usize) -> Result<Vec<Member>, CacheError> {
        self.members_by_multi(Idx::Name, IndexField::Name, name, limit)
    }

    fn members_by_multi(
        &self,
        idx: Idx,
        field: IndexField,
        value: &str,
        limit: usize,
    ) -> Result<Vec<Member>, CacheError> {
        let key = self.inner.codec.index_key(field, value);
        self.read(|c| {
            let rows: Vec<(String, Vec<u8>)> = c
                .prepare_cached(&format!(
                    "SELECT m.id, m.data FROM {} i JOIN members m ON m.rid = i.rid
                     WHERE i.k = ?1 ORDER BY i.rid LIMIT ?2",
                    idx.table()
                ))
                .and_then(|mut st| {
                    st.query_map(params![key, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect()
                })
                .map_err(sql_err("scanning a member index"))?;
            rows.iter()
                .map(|(id, data)| codec::decode_member(&self.inner.codec, id, data))
                .collect()
        })
    }

    /// Number of members cached.
    pub fn member_count(&self) -> Result<u64, CacheError> {
        self.read(|c| {
            c.prepare_cached("SELECT n FROM counts WHERE name = 'members'")
                .and_then(|mut st| st.query_row([], |r| r.get::<_, i64>(0)))
                .optional()
                .map(|n| n.unwrap_or(0).max(0) as u64)
                .map_err(sql_err("counting members"))
        })
    }
}
