//! `kordon cluster status`: the lease bucket as an operator reads it. Who
//! is a member and when each was last heard from, who holds each shard under
//! which epoch and since when it was last renewed, and the shards nobody
//! holds; and which instance runs each device broker's bridge and
//! deliverer.
//!
//! The ages come from the wall clocks of NATS and of the machine asking.
//! They are for reading; no decision is made from them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::lease::{Key, LeaseValue, Revision};
use crate::shards::{Shard, ShardCount};

/// One key of the lease bucket, as it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyState {
    pub key: Key,
    pub revision: Revision,
    /// `None`: deleted.
    pub value: Option<LeaseValue>,
    /// When NATS stored it.
    pub written_unix_ms: i64,
}

fn age(now_unix_ms: i64, written_unix_ms: i64) -> String {
    format!(
        "{:.1} s ago",
        (now_unix_ms - written_unix_ms).max(0) as f64 / 1000.0
    )
}

/// Which instance runs each device broker's bridge and deliverer: the
/// holder of shard *i* for the *i*-th ([`crate::brokers`]).
pub fn render_brokers(brokers: &[String], states: &[KeyState]) -> String {
    let mut out = String::new();
    if brokers.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "device brokers (bridge and deliverer on the holder of the broker's shard):"
    );
    for (i, broker) in brokers.iter().enumerate() {
        let holder = states
            .iter()
            .find_map(|state| match (&state.key, &state.value) {
                (Key::Shard(shard), Some(value)) if usize::from(shard.0) == i => {
                    Some(value.owner.to_string())
                }
                _ => None,
            });
        let holder = holder.unwrap_or_else(|| "(nobody: its devices wait in Mosquitto)".into());
        let _ = writeln!(out, "{:>5}  {broker:<32} {holder}", i);
    }
    out
}

/// The status as text.
pub fn render(states: &[KeyState], shards: ShardCount, now_unix_ms: i64) -> String {
    let mut out = String::new();
    let mut holders: BTreeMap<Shard, &KeyState> = BTreeMap::new();
    let _ = writeln!(out, "members:");
    for state in states {
        match (&state.key, &state.value) {
            (Key::Member(id), Some(_)) => {
                let _ = writeln!(
                    out,
                    "  {id:<24} heard from {}",
                    age(now_unix_ms, state.written_unix_ms)
                );
            }
            (Key::Shard(shard), Some(_)) if shard.0 < shards.get() => {
                holders.insert(*shard, state);
            }
            _ => {}
        }
    }
    let mut by_owner: BTreeMap<String, Vec<Shard>> = BTreeMap::new();
    for (shard, state) in &holders {
        let owner = state
            .value
            .as_ref()
            .map(|v| v.owner.to_string())
            .unwrap_or_default();
        by_owner.entry(owner).or_default().push(*shard);
    }
    let free: Vec<Shard> = shards.all().filter(|s| !holders.contains_key(s)).collect();
    let _ = writeln!(
        out,
        "shards: {}, held {}, free {}",
        shards.get(),
        holders.len(),
        free.len()
    );
    for (owner, held) in &by_owner {
        let list: Vec<String> = held.iter().map(Shard::to_string).collect();
        let _ = writeln!(out, "  {owner:<24} {:>4}  {}", held.len(), list.join(" "));
    }
    if !free.is_empty() {
        let list: Vec<String> = free.iter().map(Shard::to_string).collect();
        let _ = writeln!(
            out,
            "  {:<24} {:>4}  {}",
            "(free)",
            free.len(),
            list.join(" ")
        );
    }
    let _ = writeln!(
        out,
        "{:>5}  {:<24} {:>10}  renewed",
        "shard", "owner", "epoch"
    );
    for (shard, state) in &holders {
        let value = state.value.as_ref().expect("held");
        let epoch = value.epoch.map_or(state.revision, |e| e.0);
        let _ = writeln!(
            out,
            "{:>5}  {:<24} {:>10}  {}",
            shard.0,
            value.owner,
            epoch,
            age(now_unix_ms, state.written_unix_ms)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::{Epoch, InstanceId};

    fn lease(shard: u16, owner: &str, epoch: Option<u64>, revision: u64, ms: i64) -> KeyState {
        KeyState {
            key: Key::Shard(Shard(shard)),
            revision,
            value: Some(LeaseValue {
                owner: InstanceId::new(owner).unwrap(),
                epoch: epoch.map(Epoch),
            }),
            written_unix_ms: ms,
        }
    }

    #[test]
    fn the_status_names_members_owners_epochs_and_free_shards() {
        let states = vec![
            KeyState {
                key: Key::Member(InstanceId::new("kordon-a").unwrap()),
                revision: 40,
                value: Some(LeaseValue {
                    owner: InstanceId::new("kordon-a").unwrap(),
                    epoch: None,
                }),
                written_unix_ms: 9_600,
            },
            lease(0, "kordon-a", Some(12), 41, 9_700),
            // A tenure's first write: its revision is the epoch.
            lease(2, "kordon-a", None, 42, 9_900),
            KeyState {
                key: Key::Shard(Shard(3)),
                revision: 43,
                value: None,
                written_unix_ms: 9_000,
            },
        ];
        let text = render(&states, ShardCount::new(4).unwrap(), 10_000);
        assert!(
            text.contains("kordon-a                 heard from 0.4 s ago"),
            "{text}"
        );
        assert!(text.contains("shards: 4, held 2, free 2"), "{text}");
        assert!(
            text.contains("kordon-a                    2  0 2"),
            "{text}"
        );
        assert!(
            text.contains("(free)                      2  1 3"),
            "{text}"
        );
        assert!(
            text.contains("    0  kordon-a                         12  0.3 s ago"),
            "{text}"
        );
        assert!(
            text.contains("    2  kordon-a                         42  0.1 s ago"),
            "{text}"
        );
        let brokers = ["mq-1:8883".to_string(), "mq-2:8883".to_string()];
        let text = render_brokers(&brokers, &states);
        assert!(
            text.contains("    0  mq-1:8883                        kordon-a"),
            "{text}"
        );
        assert!(
            text.contains("    1  mq-2:8883                        (nobody"),
            "{text}"
        );
    }
}
