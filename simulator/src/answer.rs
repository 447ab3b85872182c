//! Answering kordon's requests for a fresh position, as her device would.
//!
//! kordon asks a victim device for a fix when the offender is near and her
//! last position is old: for a native device it publishes
//! `{"action":"report_location","ts":"<RFC 3339>"}` on
//! `kordon/v1/devices/{device}/request`. A device that can answer publishes
//! one ordinary fix on its fix topic a few seconds later: here, the
//! recording's [`DeviceAnswers`] sample at or after the moment it is asked
//! plus a latency of 5 to 15 s (derived from the device and the moment, so
//! that a replay is the same every time), or nothing when the sample says
//! it could not get a fix (indoors without GPS, dead).
//!
//! The answer takes the next number of the device's one message counter,
//! so its later fixes count one higher than the recording has them:
//! [`Answerer::renumbered`] and [`Answerer::renumber_payload`] say what
//! they carry, as the device would have sent them.

use std::collections::HashMap;

use crate::recording::{fix_payload, DeviceAnswers, Message};

/// The topics kordon asks native devices on (an MQTT filter).
pub const REQUEST_TOPICS: &str = "kordon/v1/devices/+/request";

/// The device a request topic names.
pub fn request_device(topic: &str) -> Option<&str> {
    topic
        .strip_prefix("kordon/v1/devices/")?
        .strip_suffix("/request")
        .filter(|d| !d.is_empty() && !d.contains('/'))
}

/// Whether a request payload asks for the device's location.
pub fn is_report_location(payload: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Request<'a> {
        action: &'a str,
    }
    serde_json::from_slice::<Request>(payload).is_ok_and(|r| r.action == "report_location")
}

/// How long, in milliseconds, after being asked at `asked_ms` the device
/// has its answer: 5 to 15 s, the same for the same device and moment.
pub fn latency_ms(device: &str, asked_ms: i64) -> i64 {
    // FNV-1a over the device and the moment, then SplitMix64's finaliser.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in device.bytes().chain(asked_ms.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    5000 + (h % 10_001) as i64
}

/// What a device does when asked.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// It publishes this fix, at `at_ms` (the fix's own time).
    Fix(Message),
    /// An answer to an earlier request is still on its way: that one does.
    OnItsWay,
    /// It cannot: no fix then (indoors without GPS, dead, past the
    /// recording), or not a device of the recording.
    Unable,
}

/// The devices of a recording answering requests, and the answers given.
pub struct Answerer<'a> {
    devices: HashMap<&'a str, &'a DeviceAnswers>,
    /// Per device, the times of the fixes it answered with, ascending.
    given: HashMap<String, Vec<i64>>,
}

impl<'a> Answerer<'a> {
    pub fn new(answers: &'a [DeviceAnswers]) -> Answerer<'a> {
        Answerer {
            devices: answers.iter().map(|a| (a.device.as_str(), a)).collect(),
            given: HashMap::new(),
        }
    }

    /// `device` is asked for a fresh position at `asked_ms`.
    pub fn ask(&mut self, device: &str, asked_ms: i64) -> Answer {
        let Some(samples) = self.devices.get(device) else {
            return Answer::Unable;
        };
        let given = self.given.get(device);
        if given
            .and_then(|g| g.last())
            .is_some_and(|last| *last > asked_ms)
        {
            return Answer::OnItsWay;
        }
        let Some((at_ms, Some(fix))) = samples.at_or_after(asked_ms + latency_ms(device, asked_ms))
        else {
            return Answer::Unable;
        };
        let before = given.map_or(0, |g| g.partition_point(|t| *t < at_ms));
        let seq = fix.seq + before as u64 + 1;
        let given = self.given.entry(device.to_string()).or_default();
        given.insert(before, at_ms);
        Answer::Fix(Message {
            at_ms,
            topic: format!("kordon/v1/devices/{device}/fix"),
            payload: fix_payload(at_ms, fix.lat_e7, fix.lon_e7, fix.acc_dm, seq, fix.batt),
        })
    }

    /// Whether any device has answered yet.
    pub fn any_given(&self) -> bool {
        !self.given.is_empty()
    }

    /// The sequence number a recorded fix of `device` taken at `ts_ms`
    /// carries once the device has answered: one more for each answer
    /// before it.
    pub fn renumbered(&self, device: &str, ts_ms: i64, seq: u64) -> u64 {
        self.given
            .get(device)
            .map_or(seq, |g| seq + g.partition_point(|t| *t < ts_ms) as u64)
    }

    /// A recorded fix message as the device sends it once it has answered
    /// (see [`Answerer::renumbered`]); `None` when it is unchanged.
    pub fn renumber_payload(&self, topic: &str, payload: &[u8]) -> Option<Vec<u8>> {
        let device = topic
            .strip_prefix("kordon/v1/devices/")?
            .strip_suffix("/fix")?;
        self.given.get(device)?;
        let mut value: serde_json::Value = serde_json::from_slice(payload).ok()?;
        let ts = value.get("ts")?.as_i64()?;
        let seq = value.get("seq")?.as_u64()?;
        let renumbered = self.renumbered(device, ts, seq);
        if renumbered == seq {
            return None;
        }
        value["seq"] = renumbered.into();
        Some(value.to_string().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::AnswerFix;

    fn answers() -> Vec<DeviceAnswers> {
        let fix = |seq| {
            Some(AnswerFix {
                lat_e7: 519_000_000,
                lon_e7: 44_800_000,
                acc_dm: 123,
                batt: 80,
                seq,
            })
        };
        vec![DeviceAnswers {
            device: "VIC-0001".into(),
            every_s: 10,
            start_ms: 0,
            // Outdoors for a minute, then indoors without GPS.
            fixes: vec![
                fix(3),
                fix(3),
                fix(4),
                fix(4),
                fix(5),
                fix(5),
                None,
                None,
                None,
            ],
        }]
    }

    #[test]
    fn latency_is_five_to_fifteen_seconds_and_the_same_every_time() {
        for t in 0..2000 {
            let l = latency_ms("VIC-0007", t * 997);
            assert!((5000..=15_000).contains(&l), "{l}");
            assert_eq!(l, latency_ms("VIC-0007", t * 997));
        }
        assert_ne!(latency_ms("VIC-0001", 0), latency_ms("VIC-0002", 0));
    }

    #[test]
    fn requests_and_their_topics() {
        assert_eq!(
            request_device("kordon/v1/devices/VIC-0001/request"),
            Some("VIC-0001")
        );
        assert_eq!(request_device("kordon/v1/devices/VIC-0001/fix"), None);
        assert!(is_report_location(
            br#"{"action":"report_location","ts":"2026-11-30T10:00:00Z"}"#
        ));
        assert!(!is_report_location(br#"{"action":"reboot"}"#));
        assert!(!is_report_location(b"report_location"));
    }

    #[test]
    fn a_device_answers_with_its_next_sample_and_its_next_number_or_not_at_all() {
        let answers = answers();
        let mut a = Answerer::new(&answers);
        assert!(!a.any_given());
        let Answer::Fix(fix) = a.ask("VIC-0001", 0) else {
            panic!("outdoors, it answers")
        };
        let latency = latency_ms("VIC-0001", 0);
        assert!(fix.at_ms >= latency && fix.at_ms < latency + 10_000);
        assert_eq!(fix.topic, "kordon/v1/devices/VIC-0001/fix");
        let payload: serde_json::Value = serde_json::from_slice(&fix.payload).unwrap();
        assert_eq!(payload["ts"], fix.at_ms);
        assert_eq!(payload["lat"], 51.9);
        assert_eq!(payload["acc"], 12.3);
        assert_eq!(payload["batt"], 80);
        let seq = payload["seq"].as_u64().unwrap();
        assert!(seq == 4 || seq == 5, "{seq}");
        // Asked again before it has answered: the answer on its way serves.
        assert_eq!(a.ask("VIC-0001", 1000), Answer::OnItsWay);
        // Her later recorded fixes count one higher; earlier ones do not.
        assert_eq!(a.renumbered("VIC-0001", fix.at_ms + 1, seq), seq + 1);
        assert_eq!(a.renumbered("VIC-0001", fix.at_ms - 1, seq - 1), seq - 1);
        assert_eq!(a.renumbered("VIC-0002", fix.at_ms + 1, 9), 9);
        let recorded = fix_payload(fix.at_ms + 5000, 1, 2, 3, seq, 80);
        let sent = a
            .renumber_payload("kordon/v1/devices/VIC-0001/fix", &recorded)
            .unwrap();
        assert_eq!(sent, fix_payload(fix.at_ms + 5000, 1, 2, 3, seq + 1, 80));
        // Indoors without GPS, past the end, or not a device of ours: none.
        assert_eq!(a.ask("VIC-0001", 60_000), Answer::Unable);
        assert_eq!(a.ask("VIC-0001", 600_000), Answer::Unable);
        assert_eq!(a.ask("OFF-0001", 0), Answer::Unable);
    }
}
