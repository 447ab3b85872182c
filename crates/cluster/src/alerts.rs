//! Alerts out of a cluster: every message a shard's engine decides to
//! publish (alerts, CAP messages, refusals, requests for a fresh fix) is
//! stored in the stream `KORDON_ALERTS`, under `kordon.alerts.<shard>`,
//! before anything passes it on to the broker (`docs/cluster.md`, "Alerts
//! leave through a stream").
//!
//! Each message carries a message id derived from what it says, so that
//! the stream keeps one copy when a shard's new owner decides it again
//! while replaying what the last owner had already handled. Each carries
//! its shard's epoch, so that a reader can ignore a deposed owner's late
//! output. This module publishes and names; it decides nothing about a case
//! and checks no lease (the caller does, at the moment it publishes).

use std::time::Duration;

use async_nats::jetstream;
use async_nats::HeaderMap;
use sha2::{Digest, Sha256};

use crate::keeper::ClusterError;
use crate::lease::Epoch;
use crate::routing::TOPIC_HEADER;
use crate::shards::Shard;

pub const ALERT_STREAM: &str = "KORDON_ALERTS";
pub const ALERT_SUBJECTS: &str = "kordon.alerts.>";
/// The header with the epoch of the tenure a message was decided under.
pub const EPOCH_HEADER: &str = "Kordon-Epoch";

/// How long the stream remembers a message id. A new owner replays at most
/// what came since the shard's last snapshot (taken every few seconds while
/// messages come) plus a fail-over, far within this.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(15 * 60);

pub fn alert_subject(shard: Shard) -> String {
    format!("kordon.alerts.{shard}")
}

/// Makes sure the alerts' stream exists, with `max_age` as its age limit
/// if given ([`crate::retention::Retention`]).
pub async fn ensure_alert_stream(
    js: &jetstream::Context,
    replicas: usize,
    max_age: Option<Duration>,
) -> Result<(), ClusterError> {
    let stream = crate::keeper::OwnStream {
        name: ALERT_STREAM,
        description: "kordon: every message the shards decided to publish",
        subjects: ALERT_SUBJECTS,
        duplicate_window: DUPLICATE_WINDOW,
    };
    crate::keeper::ensure_stream(js, &stream, replicas, max_age).await
}

/// The message id of a message a shard decided to publish on `topic`.
///
/// An alert message (JSON with the episode's `id`, its `event` and the
/// `ts` of its evidence) is named by those and its topic: decided again from
/// the same fixes, it is the same message even where a field that does not
/// make it another (the acknowledgement state, say) differs.
///
/// An opening and a clearing are named without their time. An episode opens
/// once and clears once, and its id derives from its subject and onset
/// (`kordon_core::episode`), so the two are the same message whenever they
/// are decided. What the clock decides (a bracelet offline, GPS lost, a
/// curfew missed) a new owner replaying decides at its own engine time, and
/// with the time in its name the room, the police and her device would be
/// told twice. What the desk makes of it can differ with that time (whether
/// it asks the room to act, with an incident open nearby), so that stays in
/// the name: a second copy told differently is stored, never dropped.
/// Updates, escalations and acknowledgements can come more than once per
/// episode, so their time stays in the name.
///
/// Anything else (a CAP message, a refusal, a request for a fix) is named by
/// its whole content, which carries the time of the message that caused it.
pub fn message_id(topic: &str, payload: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(topic.as_bytes());
    hasher.update([0]);
    match serde_json::from_slice::<Head>(payload) {
        Ok(head) => {
            let once = matches!(head.event.as_str(), "opened" | "cleared");
            let when = if once { "" } else { head.ts.as_str() };
            let parts = [
                head.id.as_str(),
                head.event.as_str(),
                when,
                head.kind.as_deref().unwrap_or_default(),
                head.attention.as_deref().unwrap_or_default(),
            ];
            for part in parts {
                hasher.update(part.as_bytes());
                hasher.update([0]);
            }
        }
        Err(_) => hasher.update(payload),
    }
    let digest = hasher.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// What names an alert message (an `AlertMessage`, a `DeviceWarning`, a
/// `CoordinatorNotice`): its episode, event and evidence time, and what it
/// asks of the people it reaches.
#[derive(serde::Deserialize)]
struct Head {
    id: String,
    event: String,
    ts: String,
    kind: Option<String>,
    attention: Option<String>,
}

/// What storing an alert message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The stream holds it now, at this sequence.
    New(u64),
    /// The stream held it already (decided before, by this or an earlier owner).
    Duplicate,
}

/// Stores one message a shard decided, and waits for the stream to say so.
pub async fn store(
    js: &jetstream::Context,
    shard: Shard,
    epoch: Epoch,
    topic: &str,
    payload: Vec<u8>,
) -> Result<Stored, ClusterError> {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", message_id(topic, &payload).as_str());
    headers.insert(TOPIC_HEADER, topic);
    headers.insert(EPOCH_HEADER, epoch.0.to_string().as_str());
    let error = |e: &dyn std::fmt::Display| ClusterError::Bucket {
        bucket: ALERT_STREAM.to_string(),
        message: e.to_string(),
    };
    let ack = js
        .publish_with_headers(alert_subject(shard), headers, payload.into())
        .await
        .map_err(|e| error(&e))?
        .await
        .map_err(|e| error(&e))?;
    Ok(match ack.duplicate {
        true => Stored::Duplicate,
        false => Stored::New(ack.sequence),
    })
}

/// How long the oldest message of the stream that `consumer` has not
/// acknowledged has waited, at `now`: zero when none waits; before the
/// consumer exists, every message waits. Any instance can ask, so a reader
/// that stalls or is gone is seen by the others.
pub async fn unacknowledged_for(
    js: &jetstream::Context,
    consumer: &str,
    now: std::time::SystemTime,
) -> Result<Duration, ClusterError> {
    use jetstream::context::ConsumerInfoErrorKind;
    let error = |e: &dyn std::fmt::Display| ClusterError::Watch {
        bucket: ALERT_STREAM.to_string(),
        message: e.to_string(),
    };
    let stream = js.get_stream(ALERT_STREAM).await.map_err(|e| error(&e))?;
    let taken_up_to = match stream.consumer_info(consumer).await {
        Ok(info) => info.ack_floor.stream_sequence,
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => 0,
        Err(e) => return Err(error(&e)),
    };
    let oldest = stream
        .raw_message_builder()
        .sequence(taken_up_to + 1)
        .next_by_subject(ALERT_SUBJECTS)
        .send()
        .await;
    match oldest {
        Ok(message) => {
            let stored = std::time::SystemTime::from(message.time);
            Ok(now.duration_since(stored).unwrap_or_default())
        }
        Err(e) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {
            Ok(Duration::ZERO)
        }
        Err(e) => Err(error(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_is_named_by_its_episode_event_and_evidence_time() {
        let a = br#"{"id":"E1","event":"opened","ts":"2026-12-02T10:00:00Z","acknowledged":null}"#;
        let b = br#"{"id":"E1","event":"opened","ts":"2026-12-02T10:00:00Z","distance_m":3.0}"#;
        let later = br#"{"id":"E1","event":"updated","ts":"2026-12-02T10:00:05Z"}"#;
        let t = "kordon/v1/alerts/police";
        assert_eq!(message_id(t, a), message_id(t, b));
        assert_ne!(message_id(t, a), message_id(t, later));
        assert_ne!(
            message_id(t, a),
            message_id("kordon/v1/alerts/monitoring", a)
        );
    }

    #[test]
    fn an_opening_or_a_clearing_decided_at_another_time_is_the_same_message() {
        let t = "kordon/v1/devices/VIC-1/warning";
        for event in ["opened", "cleared"] {
            let first = format!(r#"{{"id":"E1","event":"{event}","ts":"2026-12-02T10:00:01Z"}}"#);
            let again = format!(r#"{{"id":"E1","event":"{event}","ts":"2026-12-02T10:00:04Z"}}"#);
            let other = format!(r#"{{"id":"E2","event":"{event}","ts":"2026-12-02T10:00:01Z"}}"#);
            assert_eq!(
                message_id(t, first.as_bytes()),
                message_id(t, again.as_bytes())
            );
            assert_ne!(
                message_id(t, first.as_bytes()),
                message_id(t, other.as_bytes())
            );
        }
        let opened = br#"{"id":"E1","event":"opened","ts":"2026-12-02T10:00:01Z"}"#;
        let cleared = br#"{"id":"E1","event":"cleared","ts":"2026-12-02T10:00:01Z"}"#;
        assert_ne!(message_id(t, opened), message_id(t, cleared));
        // Decided again at another time, the room is asked to act where it
        // was only told before: both are kept.
        let told = br#"{"id":"E1","event":"opened","ts":"2026-12-02T10:00:01Z","attention":"information"}"#;
        let asked =
            br#"{"id":"E1","event":"opened","ts":"2026-12-02T10:02:01Z","attention":"action"}"#;
        assert_ne!(message_id(t, told), message_id(t, asked));
        // What can come again keeps its time in its name.
        for event in ["updated", "escalated", "acknowledged", "late_breach"] {
            let first = format!(r#"{{"id":"E1","event":"{event}","ts":"2026-12-02T10:00:01Z"}}"#);
            let again = format!(r#"{{"id":"E1","event":"{event}","ts":"2026-12-02T10:00:04Z"}}"#);
            assert_ne!(
                message_id(t, first.as_bytes()),
                message_id(t, again.as_bytes())
            );
        }
    }

    #[test]
    fn anything_else_is_named_by_its_content() {
        let t = "kordon/v1/alerts/police/cap";
        assert_eq!(
            message_id(t, b"<alert>1</alert>"),
            message_id(t, b"<alert>1</alert>")
        );
        assert_ne!(
            message_id(t, b"<alert>1</alert>"),
            message_id(t, b"<alert>2</alert>")
        );
    }
}
