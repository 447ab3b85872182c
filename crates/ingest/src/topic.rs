//! The MQTT topics kordon reads, and those about its own health (the wire
//! contract of `docs/mqtt.md`). Alert topics are the alert crate's.

use kordon_core::DeviceId;

use crate::refusal::{Reason, Refusal};

/// Every topic kordon publishes or subscribes to starts with this.
pub const PREFIX: &str = "kordon/v1";

/// What kordon subscribes to, all at QoS 1.
pub const SUBSCRIPTIONS: &[&str] = &[
    "kordon/v1/devices/+/fix",
    "kordon/v1/devices/+/fix.bin",
    "kordon/v1/devices/+/status",
    "kordon/v1/alerts/ack",
    "owntracks/#",
];

pub const ACK: &str = "kordon/v1/alerts/ack";
pub const REJECTS: &str = "kordon/v1/rejects";
/// Retained `online` / `offline`; `offline` is also the connection's last will.
pub const ENGINE_STATUS: &str = "kordon/v1/engine/status";

pub fn device_fix(device: &str) -> String {
    format!("{PREFIX}/devices/{device}/fix")
}

pub fn device_binary_fix(device: &str) -> String {
    format!("{PREFIX}/devices/{device}/fix.bin")
}

pub fn device_status(device: &str) -> String {
    format!("{PREFIX}/devices/{device}/status")
}

/// Device ids are short and plain so they can be topic levels and file names.
pub const MAX_DEVICE_ID_LEN: usize = 64;

/// A topic kordon takes messages from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundTopic {
    Fix(DeviceId),
    BinaryFix(DeviceId),
    Status(DeviceId),
    /// `owntracks/{user}/{device}`; `rest` when the topic goes deeper
    /// (`…/event`, `…/cmd`), which carries no position.
    OwnTracks {
        user: String,
        device: String,
        rest: bool,
    },
    Ack,
}

impl InboundTopic {
    /// Walks the topic's levels without collecting them: it runs for every
    /// message.
    pub fn parse(topic: &str) -> Result<InboundTopic, Refusal> {
        if topic == ACK {
            return Ok(InboundTopic::Ack);
        }
        if let Some(rest) = topic.strip_prefix("kordon/v1/devices/") {
            let mut levels = rest.split('/');
            let (Some(device), Some(kind), None) = (levels.next(), levels.next(), levels.next())
            else {
                return Err(unknown_topic(topic));
            };
            let device = device_id(device)?;
            return match kind {
                "fix" => Ok(InboundTopic::Fix(device)),
                "fix.bin" => Ok(InboundTopic::BinaryFix(device)),
                "status" => Ok(InboundTopic::Status(device)),
                _ => Err(unknown_topic(topic)),
            };
        }
        if let Some(rest) = topic.strip_prefix("owntracks/") {
            let mut levels = rest.split('/');
            if let (Some(user), Some(device)) = (levels.next(), levels.next()) {
                return Ok(InboundTopic::OwnTracks {
                    user: user.to_string(),
                    device: device.to_string(),
                    rest: levels.next().is_some(),
                });
            }
        }
        Err(unknown_topic(topic))
    }
}

fn unknown_topic(topic: &str) -> Refusal {
    Refusal::new(
        Reason::UnknownTopic,
        format!("`{topic}` is not an inbound kordon topic"),
    )
}

/// Checks a device id from a topic level: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn device_id(text: &str) -> Result<DeviceId, Refusal> {
    let plain = !text.is_empty()
        && text.len() <= MAX_DEVICE_ID_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if plain {
        Ok(DeviceId::new(text))
    } else {
        Err(Refusal::new(
            Reason::InvalidDeviceId,
            format!("device id `{text}` must be 1 to {MAX_DEVICE_ID_LEN} of A-Z a-z 0-9 . _ -"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parse as it was, level by level from a collected list: what the
    /// walking parse must agree with.
    fn parse_collected(topic: &str) -> Result<InboundTopic, Refusal> {
        if topic == ACK {
            return Ok(InboundTopic::Ack);
        }
        let levels: Vec<&str> = topic.split('/').collect();
        match levels.as_slice() {
            ["kordon", "v1", "devices", device, kind] => {
                let device = device_id(device)?;
                match *kind {
                    "fix" => Ok(InboundTopic::Fix(device)),
                    "fix.bin" => Ok(InboundTopic::BinaryFix(device)),
                    "status" => Ok(InboundTopic::Status(device)),
                    _ => Err(unknown_topic(topic)),
                }
            }
            ["owntracks", user, device, rest @ ..] => Ok(InboundTopic::OwnTracks {
                user: user.to_string(),
                device: device.to_string(),
                rest: !rest.is_empty(),
            }),
            _ => Err(unknown_topic(topic)),
        }
    }

    #[test]
    fn the_walking_parse_agrees_with_the_collected_one() {
        let topics = [
            "kordon/v1/devices/OFF-00001/fix",
            "kordon/v1/devices/OFF-00001/fix.bin",
            "kordon/v1/devices/OFF-00001/status",
            "kordon/v1/devices/OFF-00001/warning",
            "kordon/v1/devices/OFF-00001/fix/more",
            "kordon/v1/devices/OFF-00001/fix/",
            "kordon/v1/devices/OFF-00001",
            "kordon/v1/devices/OFF-00001/",
            "kordon/v1/devices/",
            "kordon/v1/devices",
            "kordon/v1/devices//fix",
            "kordon/v1/devices/bad id!/fix",
            "kordon/v1/devices/bad id!/nothing",
            "kordon/v1/alerts/ack",
            "kordon/v1/alerts/ack/",
            "kordon/v1/alerts/police",
            "kordon/v2/devices/OFF-1/fix",
            "/kordon/v1/devices/OFF-1/fix",
            "owntracks",
            "owntracks/",
            "owntracks/anna",
            "owntracks/anna/",
            "owntracks//",
            "owntracks/anna/phone",
            "owntracks/anna/phone/",
            "owntracks/anna/phone/event",
            "owntracks/anna/phone/cmd/x",
            "ownTracks/anna/phone",
            "",
            "/",
        ];
        for topic in topics {
            assert_eq!(
                InboundTopic::parse(topic),
                parse_collected(topic),
                "{topic}"
            );
        }
    }
}
