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
    pub fn parse(topic: &str) -> Result<InboundTopic, Refusal> {
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
