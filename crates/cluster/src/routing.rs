//! Where a device's message goes in cluster mode: to the shard of every case
//! the device belongs to, under an id that lets JetStream drop a copy it
//! already holds.
//!
//! The device → cases map is derived from the cases themselves (the cases'
//! key-value bucket, watched by the bridge), so it has one owner: a case
//! change is the map's change.
//!
//! This module never does IO and never reads a clock.

use std::collections::HashMap;

use kordon_ingest::topic::InboundTopic;
use sha2::{Digest, Sha256};

use crate::shards::{Shard, ShardCount};

/// The subjects of the stream every shard's messages go to.
pub const SHARD_SUBJECTS: &str = "kordon.shard.>";
/// The stream that holds them.
pub const SHARD_STREAM: &str = "KORDON_SHARDS";
/// The header that carries the MQTT topic a message came on.
pub const TOPIC_HEADER: &str = "Kordon-Topic";

/// The subject of one shard's messages.
pub fn shard_subject(shard: Shard) -> String {
    format!("kordon.shard.{shard}")
}

/// The devices of every case, and so the cases of every device.
#[derive(Clone, Debug)]
pub struct DeviceBook {
    shards: ShardCount,
    devices_of: HashMap<String, Vec<String>>,
    /// A device's cases, each once. A `Vec`: a device is in one case or a
    /// few, and a one-entry `BTreeSet` allocates a whole node (the book
    /// held 465 bytes a device with it; `benches/take_over.rs`).
    cases_of: HashMap<String, Vec<String>>,
}

impl DeviceBook {
    pub fn new(shards: ShardCount) -> DeviceBook {
        DeviceBook {
            shards,
            devices_of: HashMap::new(),
            cases_of: HashMap::new(),
        }
    }

    /// A case was written with these devices (its offender's, its protected
    /// persons').
    pub fn put_case(&mut self, case: &str, devices: Vec<String>) {
        self.remove_case(case);
        for device in &devices {
            let cases = self.cases_of.entry(device.clone()).or_default();
            if !cases.iter().any(|c| c == case) {
                cases.push(case.to_string());
            }
        }
        self.devices_of.insert(case.to_string(), devices);
    }

    pub fn remove_case(&mut self, case: &str) {
        let Some(devices) = self.devices_of.remove(case) else {
            return;
        };
        for device in devices {
            if let Some(cases) = self.cases_of.get_mut(&device) {
                cases.retain(|c| c != case);
                if cases.is_empty() {
                    self.cases_of.remove(&device);
                }
            }
        }
    }

    /// The shards a message on `topic` goes to: those of its device's cases.
    ///
    /// A message no case claims still goes somewhere, so that it is journaled
    /// and, if it must be, refused with its reason: a device in no case to
    /// the shard of its id, anything else (an unknown topic, an operator's
    /// acknowledgement, OwnTracks) to the shard of its topic.
    pub fn route(&self, topic: &str) -> Vec<Shard> {
        let device = match InboundTopic::parse(topic) {
            Ok(InboundTopic::Fix(d) | InboundTopic::BinaryFix(d) | InboundTopic::Status(d)) => d,
            _ => return vec![self.shards.shard_of(topic)],
        };
        let Some(cases) = self.cases_of.get(device.as_str()) else {
            return vec![self.shards.shard_of(device.as_str())];
        };
        let mut shards: Vec<Shard> = cases.iter().map(|c| self.shards.shard_of(c)).collect();
        shards.sort_unstable();
        shards.dedup();
        shards
    }
}

/// The message id of a message's copy for one shard, for a fix: the same
/// fix (a device's resend, the broker's redelivery to the next bridge) gets
/// the same id, and the stream keeps the first.
///
/// Only a fix: it carries its own time, so the same content is the same fix.
/// A status message need not carry one (`docs/mqtt.md`), and a strap
/// reported tampered, then fine, then tampered again within the stream's
/// duplicate window is three messages, not two: statuses get no id, and a
/// redelivered one is stored twice (at least once, as in single-process
/// kordon, where a repeated status changes nothing).
pub fn message_id(topic: &str, payload: &[u8], shard: Shard) -> Option<String> {
    let fix = matches!(
        InboundTopic::parse(topic),
        Ok(InboundTopic::Fix(_) | InboundTopic::BinaryFix(_))
    );
    if !fix {
        return None;
    }
    let mut hasher = Sha256::new();
    hasher.update(topic.as_bytes());
    hasher.update([0]);
    hasher.update(payload);
    let digest = hasher.finalize();
    let mut id = String::with_capacity(40);
    for byte in &digest[..16] {
        id.push_str(&format!("{byte:02x}"));
    }
    id.push('.');
    id.push_str(&shard.to_string());
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> DeviceBook {
        let mut book = DeviceBook::new(ShardCount::DEFAULT);
        book.put_case("RTM-1", vec!["ankle-1".into(), "phone-1".into()]);
        book.put_case("RTM-2", vec!["ankle-2".into(), "phone-1".into()]);
        book
    }

    fn shard(case: &str) -> Shard {
        ShardCount::DEFAULT.shard_of(case)
    }

    #[test]
    fn a_device_s_messages_go_to_the_shard_of_each_of_its_cases() {
        let book = book();
        assert_eq!(
            book.route("kordon/v1/devices/ankle-1/fix"),
            vec![shard("RTM-1")]
        );
        assert_eq!(
            book.route("kordon/v1/devices/ankle-2/fix.bin"),
            vec![shard("RTM-2")]
        );
        let mut both = vec![shard("RTM-1"), shard("RTM-2")];
        both.sort_unstable();
        both.dedup();
        assert_eq!(book.route("kordon/v1/devices/phone-1/status"), both);
    }

    #[test]
    fn a_case_removed_or_rewritten_moves_its_devices() {
        let mut book = book();
        book.put_case("RTM-1", vec!["ankle-9".into()]);
        assert_eq!(
            book.route("kordon/v1/devices/ankle-9/fix"),
            vec![shard("RTM-1")]
        );
        assert_eq!(
            book.route("kordon/v1/devices/ankle-1/fix"),
            vec![shard("ankle-1")]
        );
        assert_eq!(
            book.route("kordon/v1/devices/phone-1/fix"),
            vec![shard("RTM-2")]
        );
        book.remove_case("RTM-2");
        assert_eq!(
            book.route("kordon/v1/devices/phone-1/fix"),
            vec![shard("phone-1")]
        );
    }

    #[test]
    fn a_device_named_twice_in_a_case_is_in_it_once() {
        let mut book = DeviceBook::new(ShardCount::DEFAULT);
        book.put_case("RTM-1", vec!["ankle-1".into(), "ankle-1".into()]);
        book.put_case("RTM-1", vec!["ankle-1".into(), "ankle-1".into()]);
        assert_eq!(book.cases_of["ankle-1"], vec!["RTM-1".to_string()]);
        book.remove_case("RTM-1");
        assert!(book.cases_of.is_empty());
    }

    #[test]
    fn a_message_no_case_claims_still_goes_to_exactly_one_shard() {
        let book = book();
        assert_eq!(
            book.route("kordon/v1/devices/stranger/fix"),
            vec![shard("stranger")]
        );
        assert_eq!(
            book.route("kordon/v1/alerts/ack"),
            vec![shard("kordon/v1/alerts/ack")]
        );
        assert_eq!(
            book.route("some/other/topic"),
            vec![shard("some/other/topic")]
        );
        assert_eq!(book.route("kordon/v1/devices/bad id!/fix").len(), 1);
    }

    #[test]
    fn the_same_fix_has_the_same_id_and_another_does_not() {
        let s = Shard(3);
        let id = |topic: &str, payload: &[u8], shard| message_id(topic, payload, shard).unwrap();
        let a = id("kordon/v1/devices/a/fix", b"{\"lat\":1}", s);
        assert_eq!(a, id("kordon/v1/devices/a/fix", b"{\"lat\":1}", s));
        assert_ne!(a, id("kordon/v1/devices/a/fix", b"{\"lat\":2}", s));
        assert_ne!(a, id("kordon/v1/devices/b/fix", b"{\"lat\":1}", s));
        assert_ne!(a, id("kordon/v1/devices/a/fix", b"{\"lat\":1}", Shard(4)));
        assert!(a.ends_with(".3") && a.len() == 34, "{a}");
        assert!(message_id("kordon/v1/devices/a/fix.bin", b"\x01", s).is_some());
    }

    #[test]
    fn a_status_gets_no_id_so_a_repeated_one_is_not_dropped() {
        let tampered = br#"{"strap":"tampered"}"#;
        assert_eq!(
            message_id("kordon/v1/devices/a/status", tampered, Shard(3)),
            None
        );
        assert_eq!(message_id("kordon/v1/alerts/ack", b"{}", Shard(3)), None);
    }
}
