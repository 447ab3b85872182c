//! The police webhooks' side of the alerts' stream (`docs/cluster.md`,
//! "Police webhooks in a cluster"): each endpoint of `[[dispatch.webhooks]]`
//! reads the police's CAP messages on a durable consumer of its own
//! ([`Offers`]), and each attempt's outcome goes to the alert's shard
//! ([`record_attempt`]), whose owner journals it and shows it on the alert,
//! as it does an operator's action.
//!
//! The stream keeps, per endpoint, what the endpoint has not taken. A
//! message is acknowledged to the stream once its endpoint took it or it is
//! too old to try again ([`Offer::done`]); otherwise it is offered again
//! after the caller's back-off ([`Offer::again_after`]). So retries outlive
//! the instance that began them, and the stream counts the attempts
//! ([`Offer::attempt`]). An instance that dies between an endpoint's answer
//! and the stream's acknowledgement leaves the message to the next one
//! after [`ACK_WAIT`]: an endpoint can receive a message twice, under the
//! same delivery id, and drops the second. At least once, never lost.
//!
//! What it never does: send anything over HTTP (the server does, signed as
//! one process signs), decide whether a message is worth delivering, or
//! check a lease (its caller does, before each attempt).

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, AckKind};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tracing::warn;

use crate::alerts::ALERT_STREAM;
use crate::keeper::ClusterError;
use crate::routing::TOPIC_HEADER;
use crate::shards::Shard;

/// Marks a message of a shard's stream as a webhook attempt's outcome. Only
/// kordon sets it: the bridge stores what devices send under
/// [`TOPIC_HEADER`] and sets no other header.
pub const ATTEMPT_HEADER: &str = "Kordon-Webhook-Attempt";

/// How long the stream waits for the outcome of one offer before it offers
/// the message again: longer than one attempt may take (10 s) and its
/// outcome's trip to the shard.
pub const ACK_WAIT: Duration = Duration::from_secs(30);

/// Messages offered to one endpoint and not yet settled, retries waiting
/// included (as one process allows). Beyond, newer messages wait in the
/// stream until older ones are taken or given up.
pub const IN_FLIGHT: usize = 10_000;

/// The durable consumer of one endpoint, named from its configured name
/// (which may hold characters a consumer name may not).
pub fn consumer_name(endpoint: &str) -> String {
    let readable: String = endpoint
        .chars()
        .take(32)
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => c,
            _ => '_',
        })
        .collect();
    let digest = Sha256::digest(endpoint.as_bytes());
    let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("kordon-webhook-{readable}-{tag}")
}

/// The messages of one topic of the alerts' stream, offered to one endpoint.
pub struct Offers {
    messages: pull::Stream,
    topic: String,
}

impl Offers {
    /// Opens (or makes, the first time) `endpoint`'s consumer; it offers
    /// the messages published on `topic`.
    pub async fn open(
        js: &jetstream::Context,
        endpoint: &str,
        topic: &str,
    ) -> Result<Offers, ClusterError> {
        let error = |e: &dyn std::fmt::Display| ClusterError::Watch {
            bucket: ALERT_STREAM.to_string(),
            message: e.to_string(),
        };
        let name = consumer_name(endpoint);
        let stream = js.get_stream(ALERT_STREAM).await.map_err(|e| error(&e))?;
        let consumer = stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    description: Some(format!("kordon: police CAP messages to webhook {endpoint}")),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: IN_FLIGHT as i64,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| error(&e))?;
        let messages = consumer.messages().await.map_err(|e| error(&e))?;
        Ok(Offers {
            messages,
            topic: topic.to_string(),
        })
    }

    /// The next message on the topic; those on other topics are
    /// acknowledged and passed over. `None` once the stream has ended.
    /// Cancel-safe (a caller waits on it beside other things): nothing is
    /// awaited once a message is taken from the stream.
    pub async fn next(&mut self) -> Option<Offer> {
        loop {
            let message = match self.messages.next().await? {
                Ok(message) => message,
                Err(e) => {
                    warn!(error = %e, "webhooks: reading the alerts' stream");
                    continue;
                }
            };
            match shard_on(&message, &self.topic) {
                Some(shard) => return Some(Offer { message, shard }),
                None => {
                    tokio::spawn(async move {
                        if let Err(e) = message.ack().await {
                            warn!(error = %e, "webhooks: passing over a message (it comes again)");
                        }
                    });
                }
            }
        }
    }
}

/// The shard that decided `message`, if it is on `topic` and names one.
fn shard_on(message: &jetstream::Message, topic: &str) -> Option<Shard> {
    let on_topic = message
        .headers
        .as_ref()
        .and_then(|h| h.get(TOPIC_HEADER))
        .is_some_and(|t| t.as_str() == topic);
    let shard = message.subject.rsplit('.').next()?.parse::<u16>().ok()?;
    on_topic.then_some(Shard(shard))
}

/// One message offered to one endpoint.
pub struct Offer {
    message: jetstream::Message,
    /// The shard that decided it, where its attempts' outcomes go.
    pub shard: Shard,
}

impl Offer {
    pub fn payload(&self) -> &[u8] {
        &self.message.payload
    }

    /// Which attempt this offer is: 1 the first time, counted by the stream
    /// across instances.
    pub fn attempt(&self) -> u32 {
        let offered = self.message.info().map(|i| i.delivered).unwrap_or(1);
        u32::try_from(offered.max(1)).unwrap_or(u32::MAX)
    }

    /// The endpoint took it, or it is given up: never offered again.
    pub async fn done(self) {
        if let Err(e) = self.message.ack().await {
            warn!(error = %e, "webhooks: acknowledging to the stream (it comes again)");
        }
    }

    /// Offered again (to whichever instance then delivers) after `wait`.
    pub async fn again_after(self, wait: Duration) {
        if let Err(e) = self.message.ack_with(AckKind::Nak(Some(wait))).await {
            warn!(error = %e, "webhooks: asking for a retry (it comes again after the stream's wait)");
        }
    }
}

/// How long the oldest police CAP message `endpoint` has not taken (nor
/// been given up on) has waited in the alerts' stream, at `now`. (A
/// message on another topic is passed over at once, so it waits only while
/// the endpoint's consumer is not read at all.)
pub async fn delivery_delay(
    js: &jetstream::Context,
    endpoint: &str,
    now: std::time::SystemTime,
) -> Result<Duration, ClusterError> {
    crate::alerts::unacknowledged_for(js, &consumer_name(endpoint), now).await
}

/// Stores an attempt's outcome (`outcome`, the server's JSON) in `shard`'s
/// stream, for the shard's owner to apply between the devices' messages;
/// `id` names the attempt, so that a retried store is stored once.
pub async fn record_attempt(
    js: &jetstream::Context,
    shard: Shard,
    id: &str,
    outcome: Bytes,
) -> Result<u64, ClusterError> {
    let mut headers = HeaderMap::new();
    headers.insert(ATTEMPT_HEADER, "1");
    crate::desks::store_marked(js, shard, id, headers, outcome).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_s_consumer_name_is_readable_and_its_own() {
        let name = consumer_name("Politie Rotterdam > meldkamer");
        assert!(name.starts_with("kordon-webhook-Politie_Rotterdam___meldkamer-"));
        assert!(name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(
            consumer_name("meldkamer.a"),
            consumer_name("meldkamer_a"),
            "two endpoints read alike still have consumers of their own"
        );
    }
}
