//! kordon-alert: who is told what about an alert, and making sure someone
//! acts on it.
//!
//! - [`attention`]: which alerts the monitoring room must act on and which
//!   only inform (the health policy).
//! - [`desk`]: the [`AlertDesk`] state machine: routing by audience (the
//!   privacy rules), acknowledgement, escalation, time to acknowledge.
//! - [`handling`]: what people do with an alert: notes, resolution with a
//!   disposition, escalation by hand, the police's acknowledgement.
//! - [`message`]: the JSON payloads per audience.
//! - [`cap`]: OASIS CAP 1.2 for police dispatch.
//! - [`texts`]: every word a wearer's device shows, in Dutch and English.
//! - [`topics`]: the outbound alert topics.
//!
//! No IO and no clock: the server publishes what the desk returns.

pub mod attention;
pub mod cap;
pub mod desk;
pub mod handling;
pub mod message;
pub mod texts;
pub mod topics;

pub use attention::Attention;
pub use desk::{AckError, AlertDesk, AlertRecord, AlertSettings, Outbound};
pub use handling::{
    Delivery, DeliveryAttempt, Disposition, Handling, HandlingError, ManualEscalation, Note,
    Overdue, Resolution,
};
pub use message::{
    Acknowledgement, AlertEvent, AlertMessage, DeviceWarning, Level, PatternMessage, Position,
};
