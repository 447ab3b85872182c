//! Why a message was refused: one reason code per kind of fault, so that the
//! monitoring room can count them and a device vendor can be told exactly
//! what their firmware sends wrong.

use std::fmt;

use kordon_core::{DeviceId, InputError};
use serde::Serialize;

/// A refused message. Nothing of it reaches the engine; it is counted under
/// its reason and reported on `kordon/v1/rejects`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    pub reason: Reason,
    /// What exactly was wrong, for a person reading the reject topic.
    pub detail: String,
    /// The device the message claimed to come from, where the topic says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceId>,
}

impl Refusal {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Refusal {
            reason,
            detail: detail.into(),
            device: None,
        }
    }

    pub fn about(mut self, device: &DeviceId) -> Self {
        self.device = Some(device.clone());
        self
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

impl From<InputError> for Refusal {
    fn from(error: InputError) -> Self {
        let reason = match &error {
            InputError::UnknownDevice(_) => Reason::UnknownDevice,
            InputError::NotFinite { .. } => Reason::NotFinite,
            InputError::LatitudeOutOfRange(_) => Reason::LatitudeOutOfRange,
            InputError::LongitudeOutOfRange(_) => Reason::LongitudeOutOfRange,
            InputError::NullIsland => Reason::NullIsland,
            InputError::AccuracyNotPositive(_) => Reason::AccuracyNotPositive,
            InputError::NegativeSpeed(_)
            | InputError::HeadingOutOfRange(_)
            | InputError::BatteryOutOfRange(_) => Reason::FieldOutOfRange,
        };
        let device = match &error {
            InputError::UnknownDevice(device) => Some(device.clone()),
            _ => None,
        };
        Refusal {
            reason,
            detail: error.to_string(),
            device,
        }
    }
}

macro_rules! reasons {
    ($($variant:ident => $code:literal,)*) => {
        /// The reason codes carried on `kordon/v1/rejects` and in the
        /// `kordon_messages_refused_total{reason=…}` metric.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $($variant,)*
        }

        impl Reason {
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            pub fn code(self) -> &'static str {
                match self {
                    $(Reason::$variant => $code,)*
                }
            }
        }
    };
}

reasons! {
    PayloadTooLarge => "payload_too_large",
    MalformedPayload => "malformed_payload",
    MissingField => "missing_field",
    InvalidField => "invalid_field",
    NotFinite => "not_finite",
    LatitudeOutOfRange => "latitude_out_of_range",
    LongitudeOutOfRange => "longitude_out_of_range",
    NullIsland => "null_island",
    AccuracyNotPositive => "accuracy_not_positive",
    AccuracyAbsurd => "accuracy_absurd",
    FieldOutOfRange => "field_out_of_range",
    TimestampInFuture => "timestamp_in_future",
    TimestampTooOld => "timestamp_too_old",
    DeviceMismatch => "device_mismatch",
    InvalidDeviceId => "invalid_device_id",
    UnknownDevice => "unknown_device",
    UnknownTopic => "unknown_topic",
    UnsupportedMessage => "unsupported_message",
    UnknownAlert => "unknown_alert",
    AlreadyAcknowledged => "already_acknowledged",
    RetainedMessage => "retained_message",
    PoisonMessage => "poison_message",
    HandlingFailed => "handling_failed",
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}
