//! kordon-ingest: how messages from devices and operators get into kordon.
//!
//! - [`topic`]: the MQTT topics of the wire contract (`docs/mqtt.md`).
//! - [`codec`]: JSON, OwnTracks and postcard payloads to [`kordon_core::Fix`]
//!   and [`kordon_core::Status`], refusing with a [`Reason`] for every fault:
//!   nothing refused is dropped silently.
//! - [`broker`]: kordon's two broker connections (the ingest link's byte
//!   stream, the rumqttc publishing link): persistent sessions,
//!   TCP_NODELAY, TLS, last will, reconnection back-off.
//! - [`poison`]: a message the broker delivers again and again is refused
//!   rather than left to block everything behind it.
//!
//! Decoding is pure (time is an argument); the server crate drives the
//! connections and hands decoded messages to the engine's thread.

pub mod broker;
pub mod codec;
pub mod poison;
pub mod refusal;
pub mod topic;

pub use broker::{connect, Backoff, BrokerAddress, BrokerError, BrokerSettings, OFFLINE, ONLINE};
pub use codec::{AlertAck, BinaryFix, Decoder, Limits, Message};
pub use poison::RedeliveryGuard;
pub use refusal::{Reason, Refusal};
pub use topic::InboundTopic;
