//! Poison messages: a message the broker delivers again and again because
//! kordon never gets to acknowledge it (it stops the connection, or its
//! handling fails before the acknowledgement). Left alone it blinds kordon:
//! everything queued behind it waits forever.
//!
//! The broker marks a QoS 1 message it sends again with the DUP flag. The
//! [`RedeliveryGuard`] counts such deliveries of the same message (topic and
//! payload); at [`RedeliveryGuard::LIMIT`] the message is refused as
//! [`Reason::PoisonMessage`](crate::Reason::PoisonMessage) and acknowledged,
//! so the stream behind it moves on. A message redelivered once or twice
//! (a reconnect under load) is handled as usual: a fix is judged on its own
//! merits, and one already taken is a duplicate.
//!
//! The guard remembers digests only, and at most [`RedeliveryGuard::CAPACITY`]
//! of them; it never holds a payload.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// Counts redeliveries per message. See the module documentation.
#[derive(Debug, Default)]
pub struct RedeliveryGuard {
    deliveries: HashMap<u64, u32>,
}

impl RedeliveryGuard {
    /// Redeliveries of one message before it is refused as poison.
    pub const LIMIT: u32 = 5;
    /// Digests remembered; past this the count starts over (a poison
    /// message is then caught a few deliveries later, never missed).
    pub const CAPACITY: usize = 4096;

    pub fn new() -> Self {
        Self::default()
    }

    /// Notes a delivery the broker flagged as a redelivery (DUP). Returns
    /// how often this message has now been redelivered when that reaches
    /// [`Self::LIMIT`]: the caller refuses and acknowledges it.
    pub fn redelivered(&mut self, topic: &str, payload: &[u8]) -> Option<u32> {
        if self.deliveries.len() >= Self::CAPACITY {
            self.deliveries.clear();
        }
        let key = digest(topic, payload);
        let count = self.deliveries.entry(key).or_insert(0);
        *count += 1;
        if *count >= Self::LIMIT {
            let count = *count;
            self.deliveries.remove(&key);
            Some(count)
        } else {
            None
        }
    }
}

fn digest(topic: &str, payload: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    topic.hash(&mut hasher);
    payload.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fifth_redelivery_of_one_message_is_poison() {
        let mut guard = RedeliveryGuard::new();
        for _ in 1..RedeliveryGuard::LIMIT {
            assert_eq!(guard.redelivered("t/a", b"x"), None);
            // Another message redelivered in between counts on its own.
            assert_eq!(guard.redelivered("t/b", b"x"), None);
        }
        assert_eq!(guard.redelivered("t/a", b"x"), Some(RedeliveryGuard::LIMIT));
        // Counted afresh afterwards.
        assert_eq!(guard.redelivered("t/a", b"x"), None);
    }

    #[test]
    fn the_guard_stays_bounded() {
        let mut guard = RedeliveryGuard::new();
        for i in 0..3 * RedeliveryGuard::CAPACITY {
            guard.redelivered("t", &i.to_le_bytes());
        }
        assert!(guard.deliveries.len() <= RedeliveryGuard::CAPACITY);
    }
}
