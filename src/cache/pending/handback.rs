//! A phone or card HQ's copy of a member took over from a member here goes back to that member
//! when the copy lets go of it (erased, or given another): HQ's data is the only way one phone
//! or card comes to two members (docs/uplink.md) — and then the journal too, once a cashier
//! edits HQ's copy, so a replay takes the phone or card over again. Phones are found again
//! through their tail's index; a card's former holders are remembered in `meta` (each member
//! a copy took it from, the latest last) when a copy takes it.

use rusqlite::{OptionalExtension, params};

use super::Pending;
use crate::cache::{CacheError, Idx, sql_err};
use crate::domain::member::Member;
use crate::pii::IndexField;

fn phone_of(m: Option<&Member>) -> Option<&String> {
    m.and_then(|m| m.profile.as_ref()).map(|p| &p.phone)
}

fn card_of(m: Option<&Member>) -> Option<&String> {
    m.and_then(|m| m.profile.as_ref())
        .and_then(|p| p.card_no.as_ref())
}

/// Whether `m` is a member here, not erased, whose profile holds what `holds` looks for.
fn still_holds(m: Option<Member>, holds: impl Fn(&Member) -> bool) -> bool {
    m.is_some_and(|m| m.erased_at.is_none() && holds(&m))
}

/// The phone and card a member's write gives up.
pub(super) struct Released {
    phone: Option<String>,
    card: Option<String>,
}

impl Released {
    /// What `new` no longer holds of what `old` held.
    pub(super) fn between(old: Option<&Member>, new: &Member) -> Released {
        let gone =
            |was: Option<&String>, is: Option<&String>| was.filter(|w| is != Some(*w)).cloned();
        Released {
            phone: gone(phone_of(old), phone_of(Some(new))),
            card: gone(card_of(old), card_of(Some(new))),
        }
    }
}

impl Pending<'_> {
    /// Before `new` is written over `old`: a card it is given (by HQ's data, or by a replayed
    /// edit of HQ's copy) that another member holds in the index moves to it, and that member
    /// is remembered after those remembered before (a card several copies took in turn goes
    /// back to each as the one after lets go).
    pub(super) fn note_displaced_card(
        &mut self,
        old: Option<&Member>,
        new: &Member,
    ) -> Result<(), CacheError> {
        let Some(card) = card_of(Some(new)).filter(|c| card_of(old) != Some(*c)) else {
            return Ok(());
        };
        if self.primed.contains_key(&new.id) {
            // A new member of an import, whose card the import found free.
            return Ok(());
        }
        let key = self.w.codec().index_key(IndexField::Card, card);
        if let Some(holder) = self.unique_get(Idx::Card, &key)?
            && holder != new.id
        {
            let mut holders = self.displaced_card(&key)?;
            holders.retain(|h| *h != holder);
            holders.push(holder);
            self.displaced_cards.insert(key, holders);
        }
        Ok(())
    }

    /// After member `id` was written: what it gave up and nobody holds in the index goes back
    /// to a member here who still holds it.
    pub(super) fn hand_back(&mut self, released: Released, id: &str) -> Result<(), CacheError> {
        if let Some(phone) = released.phone {
            let key = self.w.codec().index_key(IndexField::Phone, &phone);
            if self.unique_get(Idx::Phone, &key)?.is_none() {
                // The tail entries bulk mode deferred are written first (the batch writes them
                // anyway: it removes the entry of the phone let go of).
                self.write_deferred()?;
                if let Some(holder) = self.phone_holder(&phone, id)? {
                    self.mark(Idx::Phone, key, &holder, true, false);
                }
            }
        }
        if let Some(card) = released.card {
            let key = self.w.codec().index_key(IndexField::Card, &card);
            if self.unique_get(Idx::Card, &key)?.is_none() {
                // The latest member the card was taken from who still holds it gets it back;
                // those who no longer hold it are forgotten.
                let mut holders = self.displaced_card(&key)?;
                let known = holders.len();
                let mut back = None;
                while let Some(holder) = holders.pop() {
                    if holder != id
                        && still_holds(self.member(&holder)?, |m| card_of(Some(m)) == Some(&card))
                    {
                        back = Some(holder);
                        break;
                    }
                }
                if holders.len() != known {
                    self.displaced_cards.insert(key.clone(), holders);
                }
                if let Some(holder) = back {
                    self.mark(Idx::Card, key, &holder, true, false);
                }
            }
        }
        Ok(())
    }

    /// The members a card was taken from (by HQ's copies of other members), the latest last,
    /// pending writes first. (Before 2026-12-07 `meta` held only the latest, as a bare id.)
    fn displaced_card(&self, key: &[u8]) -> Result<Vec<String>, CacheError> {
        if let Some(d) = self.displaced_cards.get(key) {
            return Ok(d.clone());
        }
        let stored: Option<String> = self
            .w
            .conn()
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")
            .and_then(|mut st| {
                st.query_row(params![displaced_card_meta_key(key)], |r| r.get(0))
                    .optional()
            })
            .map_err(sql_err("reading a displaced card"))?;
        Ok(stored
            .map(|v| serde_json::from_str(&v).unwrap_or_else(|_| vec![v]))
            .unwrap_or_default())
    }

    /// Another member than `except` whose profile holds `phone`, pending writes included.
    fn phone_holder(&self, phone: &str, except: &str) -> Result<Option<String>, CacheError> {
        let tail = self.w.codec().index_key(
            IndexField::PhoneTail,
            crate::domain::contact::phone_tail(phone),
        );
        let mut ids: Vec<String> = self
            .w
            .conn()
            .prepare_cached(
                "SELECT m.id FROM idx_tail i JOIN members m ON m.rid = i.rid WHERE i.k = ?1",
            )
            .and_then(|mut st| st.query_map(params![tail], |r| r.get(0))?.collect())
            .map_err(sql_err("reading the phone tail index"))?;
        if let Some(pending) = self.index.get(&Idx::Tail).and_then(|k| k.get(&tail)) {
            for (id, present) in pending {
                if *present && !ids.contains(id) {
                    ids.push(id.clone());
                }
            }
        }
        for id in ids.into_iter().filter(|id| id != except) {
            if still_holds(self.member(&id)?, |m| {
                phone_of(Some(m)).map(String::as_str) == Some(phone)
            }) {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }
}

/// The `meta` key remembering the member whose card (by its index key) HQ's copy of another
/// member took over.
pub(super) fn displaced_card_meta_key(key: &[u8]) -> String {
    format!("displaced_card:{}", hex::encode(key))
}
