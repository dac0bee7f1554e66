//! MQTT topics of design section 5, in one place.

/// Topic names for one store.
#[derive(Debug, Clone)]
pub struct Topics {
    prefix: String,
    store_id: String,
}

/// Whether a downlink message is for the whole chain or for this store only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `{prefix}/hq/{kind}`.
    Chain,
    /// `{prefix}/stores/{store_id}/hq/{kind}`.
    Store,
}

impl Topics {
    /// Topics under `prefix` for `store_id`.
    pub fn new(prefix: &str, store_id: &str) -> Topics {
        Topics {
            prefix: prefix.to_string(),
            store_id: store_id.to_string(),
        }
    }

    /// `{prefix}/stores/{store_id}/events/{kind}`: one store fact, QoS 1, not retained.
    pub fn event(&self, kind: &str) -> String {
        format!("{}/stores/{}/events/{kind}", self.prefix, self.store_id)
    }

    /// `{prefix}/stores/{store_id}/status`: retained online/offline status.
    pub fn status(&self) -> String {
        format!("{}/stores/{}/status", self.prefix, self.store_id)
    }

    /// The two downlink filters: chain-wide and this store's.
    pub fn subscriptions(&self) -> [String; 2] {
        [
            format!("{}/hq/+", self.prefix),
            format!("{}/stores/{}/hq/+", self.prefix, self.store_id),
        ]
    }

    /// The scope and kind of a downlink topic, if it is one.
    pub fn downlink<'t>(&self, topic: &'t str) -> Option<(Scope, &'t str)> {
        let rest = topic
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('/')?;
        if let Some(kind) = rest.strip_prefix("hq/") {
            return (!kind.contains('/') && !kind.is_empty()).then_some((Scope::Chain, kind));
        }
        let rest = rest.strip_prefix("stores/")?;
        let rest = rest.strip_prefix(self.store_id.as_str())?;
        let kind = rest.strip_prefix("/hq/")?;
        (!kind.contains('/') && !kind.is_empty()).then_some((Scope::Store, kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics() {
        let t = Topics::new("storebox", "sh-001");
        assert_eq!(
            t.event("sale.recorded"),
            "storebox/stores/sh-001/events/sale.recorded"
        );
        assert_eq!(t.status(), "storebox/stores/sh-001/status");
        assert_eq!(
            t.downlink("storebox/hq/products"),
            Some((Scope::Chain, "products"))
        );
        assert_eq!(
            t.downlink("storebox/stores/sh-001/hq/members"),
            Some((Scope::Store, "members"))
        );
        assert_eq!(t.downlink("storebox/stores/sh-002/hq/members"), None);
        assert_eq!(t.downlink("storebox/stores/sh-0011/hq/members"), None);
        assert_eq!(t.downlink("other/hq/products"), None);
        assert_eq!(t.downlink("storebox/hq/a/b"), None);
    }
}
