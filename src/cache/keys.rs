//! [`MemberKeys`]: the index keys of a member's profile (keyed hashes of its phone, phone tail,
//! name and card), computed by the ledger, or ahead of it by a bulk import.

use std::collections::BTreeSet;

use super::Idx;
use crate::domain::contact::{name_search_key, phone_tail};
use crate::domain::member::Profile;
use crate::pii::IndexField;

/// The index keys of a member's profile: its phone, phone tail, name and card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberKeys {
    phone: Vec<u8>,
    tail: Vec<u8>,
    name: Vec<u8>,
    card: Option<Vec<u8>>,
}

impl MemberKeys {
    /// The keys of `p` (four keyed hashes: a bulk import computes them off the ledger thread).
    pub fn of(codec: &crate::pii::PiiCodec, p: &Profile) -> MemberKeys {
        MemberKeys {
            phone: codec.index_key(IndexField::Phone, &p.phone),
            tail: codec.index_key(IndexField::PhoneTail, phone_tail(&p.phone)),
            name: codec.index_key(IndexField::Name, &name_search_key(&p.name)),
            card: p
                .card_no
                .as_ref()
                .map(|c| codec.index_key(IndexField::Card, c)),
        }
    }

    /// The phone's key.
    pub fn phone(&self) -> &[u8] {
        &self.phone
    }

    /// The card's key, if there is a card.
    pub fn card(&self) -> Option<&[u8]> {
        self.card.as_deref()
    }

    pub(super) fn entries(&self) -> BTreeSet<(Idx, Vec<u8>)> {
        let mut keys = BTreeSet::new();
        keys.insert((Idx::Phone, self.phone.clone()));
        keys.insert((Idx::Tail, self.tail.clone()));
        keys.insert((Idx::Name, self.name.clone()));
        if let Some(card) = &self.card {
            keys.insert((Idx::Card, card.clone()));
        }
        keys
    }
}
