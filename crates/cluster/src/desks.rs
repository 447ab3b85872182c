//! The shards' alert desks, as the monitoring room reaches them from any
//! instance: what they hold is gathered from every instance at the moment
//! it is asked, and what an operator does to an alert is carried to the
//! alert's shard through the shard's own stream.
//!
//! - **Reading** ([`gather`]): a question goes out on [`DESK_SUBJECT`] (core
//!   NATS, not a stream: a question is worth nothing once its asker has
//!   gone). Every instance answers for the shards it serves, each answer
//!   with the shard's epoch; the asker keeps, per shard, the answer of the
//!   highest epoch, and stops once every shard has answered or its wait is
//!   over. The shards that did not answer are named, never silently left
//!   out.
//! - **Acting** ([`carry`]): an operator's action is stored in
//!   `KORDON_SHARDS` under the shard's subject, marked by
//!   [`OPERATOR_HEADER`], between the devices' messages. The shard's owner
//!   applies it in stream order, at the time the stream stored it, and
//!   answers on the reply subject the message names. A new owner replaying
//!   the stream applies it again at that same time, so the desk it rebuilds
//!   is the same; nobody waits for that second answer.
//!
//! What it never does: read an alert's content. The questions, answers and
//! actions are the server's JSON; this module only moves them and says
//! which shards answered.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::{jetstream, HeaderMap};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::keeper::ClusterError;
use crate::lease::Epoch;
use crate::routing::{shard_subject, SHARD_STREAM};
use crate::shards::{Shard, ShardCount};

/// Where questions to every instance's desks go.
pub const DESK_SUBJECT: &str = "kordon.desks.ask";
/// Marks a message of a shard's stream as an operator's action, not a
/// device's message. Only kordon's API sets it: the bridge stores what
/// devices send under [`crate::routing::TOPIC_HEADER`] and sets no other
/// header, so no device can pass for an operator.
pub const OPERATOR_HEADER: &str = "Kordon-Operator";
/// The subject an operator's action is answered on.
pub const REPLY_HEADER: &str = "Kordon-Reply";

/// Where each shard's owner publishes what the shard's dashboard feed
/// shows (alerts changed, positions, cases changed), for every instance's
/// consoles: `kordon.live.shard.<n>`. Core NATS: a console that missed some
/// refetches, as it does after any gap.
pub const LIVE_SUBJECTS: &str = "kordon.live.shard.>";
/// Said every few seconds by an instance while a console watches its
/// live stream: positions are published only while someone looks.
pub const WATCHING_SUBJECT: &str = "kordon.live.watching";

/// The subject of one shard's live changes.
pub fn live_subject(shard: Shard) -> String {
    format!("kordon.live.shard.{shard}")
}

/// One instance's answer to a question: one part per shard it serves.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Answer {
    pub parts: Vec<ShardPart>,
}

/// What one shard's desk answered, under the tenure it was asked under.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShardPart {
    pub shard: Shard,
    pub epoch: Epoch,
    pub body: serde_json::Value,
}

/// What every instance answered to one question.
#[derive(Clone, Debug, Default)]
pub struct Gathered {
    /// Each shard's answer, from its newest tenure.
    pub parts: BTreeMap<Shard, ShardPart>,
    /// The shards nobody answered for within the wait.
    pub missing: Vec<Shard>,
}

impl Gathered {
    /// Keeps a shard's answer unless one of a later tenure is already in.
    fn take(&mut self, part: ShardPart) {
        match self.parts.get(&part.shard) {
            Some(kept) if kept.epoch >= part.epoch => {}
            _ => {
                self.parts.insert(part.shard, part);
            }
        }
    }
}

/// Asks every instance `question` and gathers their answers until every
/// shard of `shards` has answered or `wait` is over.
pub async fn gather(
    client: &async_nats::Client,
    shards: ShardCount,
    question: Bytes,
    wait: Duration,
) -> Result<Gathered, ClusterError> {
    let mut answers = crate::questions::ask_all(client, DESK_SUBJECT, question).await?;
    let mut gathered = Gathered::default();
    let deadline = tokio::time::Instant::now() + wait;
    while gathered.parts.len() < usize::from(shards.get()) {
        let message = tokio::select! {
            message = answers.next() => message,
            _ = tokio::time::sleep_until(deadline) => break,
        };
        let Some(message) = message else { break };
        match serde_json::from_slice::<Answer>(&message.payload) {
            Ok(answer) => answer.parts.into_iter().for_each(|p| gathered.take(p)),
            Err(e) => {
                tracing::warn!(error = %e, "an instance's answer about its desks is unreadable")
            }
        }
    }
    let _ = answers.unsubscribe().await;
    gathered.missing = shards
        .all()
        .filter(|s| !gathered.parts.contains_key(s))
        .collect();
    Ok(gathered)
}

/// Stores an operator's action (`action`, the server's JSON) in `shard`'s
/// stream, to be answered on `reply`; the stream's sequence of it once it
/// is stored. `reply` is also its message id: a retried store of the same
/// action is stored once.
pub async fn carry(
    js: &jetstream::Context,
    shard: Shard,
    action: Bytes,
    reply: &str,
) -> Result<u64, ClusterError> {
    let mut headers = HeaderMap::new();
    headers.insert(OPERATOR_HEADER, "1");
    headers.insert(REPLY_HEADER, reply);
    store_marked(js, shard, reply, headers, action).await
}

/// Stores a message kordon itself puts in `shard`'s stream (`headers` say
/// what it is, `id` names it so that a retried store is stored once), and
/// waits for the stream's sequence of it.
pub(crate) async fn store_marked(
    js: &jetstream::Context,
    shard: Shard,
    id: &str,
    mut headers: HeaderMap,
    payload: Bytes,
) -> Result<u64, ClusterError> {
    headers.insert("Nats-Msg-Id", id);
    let error = |e: &dyn std::fmt::Display| ClusterError::Bucket {
        bucket: SHARD_STREAM.to_string(),
        message: e.to_string(),
    };
    let ack = js
        .publish_with_headers(shard_subject(shard), headers, payload)
        .await
        .map_err(|e| error(&e))?
        .await
        .map_err(|e| error(&e))?;
    Ok(ack.sequence)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(shard: u16, epoch: u64, body: &str) -> ShardPart {
        ShardPart {
            shard: Shard(shard),
            epoch: Epoch(epoch),
            body: serde_json::json!(body),
        }
    }

    #[test]
    fn a_shard_answered_under_two_tenures_counts_the_later_one() {
        let mut gathered = Gathered::default();
        gathered.take(part(3, 10, "new owner"));
        gathered.take(part(3, 7, "deposed owner, late"));
        gathered.take(part(4, 2, "other"));
        assert_eq!(gathered.parts[&Shard(3)].body, "new owner");
        gathered.take(part(3, 11, "newer still"));
        assert_eq!(gathered.parts[&Shard(3)].body, "newer still");
        assert_eq!(gathered.parts.len(), 2);
    }
}
