//! The shard reader: one shard's messages, in the order they were stored,
//! read by this instance only while it holds the shard's lease.
//!
//! A new owner starts where the shard's state leaves off (the stream
//! sequence its snapshot covers) and reads on; nothing is acknowledged to
//! JetStream, because nothing needs to be: the stream keeps every message
//! for its retention whoever reads it, and what has been applied is said by
//! the state, not by a consumer's position. So a hand-over never waits for a
//! deposed owner's unacknowledged messages to be sent again.
//!
//! The reader stops the moment the tenure it was started under ends (the
//! lease keeper's [`Tenures`] no longer hold it, or its `valid_until`
//! passes), and hands on nothing after. Every message it hands on carries
//! the tenure's epoch; whoever acts on it checks the tenure again at that
//! moment. It decides nothing about a case.

use std::time::{Instant, SystemTime};

use async_nats::jetstream::{self, consumer::push::OrderedConfig, consumer::DeliverPolicy};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::desks::{OPERATOR_HEADER, REPLY_HEADER};
use crate::keeper::{ClusterError, Tenures};
use crate::lease::{Epoch, Tenure};
use crate::routing::{self, SHARD_STREAM, TOPIC_HEADER};
use crate::shards::Shard;
use crate::webhooks::ATTEMPT_HEADER;

/// A message of a shard, as its owner reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardMessage {
    pub shard: Shard,
    /// Its sequence in the shards' stream: a snapshot of the shard says how
    /// far it covers in these.
    pub seq: u64,
    /// Who stored it: a device (through the bridge), an operator, or the
    /// police webhooks' deliverer.
    pub origin: Origin,
    /// The MQTT topic it came on (empty for what kordon stored itself).
    pub topic: String,
    pub payload: Bytes,
    /// The tenure it was read under.
    pub epoch: Epoch,
    /// Messages of the shard stored after it and not yet read: how far
    /// the owner is behind.
    pub pending: u64,
    /// When the stream stored it: the same for every owner that reads it,
    /// so a shard's new owner decides again at the times the last one did.
    pub stored: SystemTime,
}

/// Who stored a message in a shard's stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A device's message, through the bridge.
    Device,
    /// An operator's action on an alert ([`crate::desks::carry`]), to be
    /// answered on `reply`.
    Operator { reply: String },
    /// The outcome of an attempt to deliver a CAP message to a police
    /// webhook ([`crate::webhooks::record_attempt`]).
    WebhookAttempt,
}

impl Origin {
    fn of(headers: Option<&async_nats::HeaderMap>) -> Origin {
        let header = |name| headers.and_then(|h| h.get(name)).map(|v| v.to_string());
        if header(OPERATOR_HEADER).is_some() {
            return Origin::Operator {
                reply: header(REPLY_HEADER).unwrap_or_default(),
            };
        }
        match header(ATTEMPT_HEADER) {
            Some(_) => Origin::WebhookAttempt,
            None => Origin::Device,
        }
    }
}

/// Reads one shard until its tenure ends.
pub struct ShardReader {
    task: JoinHandle<()>,
    /// The shard's messages stored from `from` on when reading began: what
    /// a new owner replays before it is live. The last of them is handed
    /// on with `pending` 0 (unless more came meanwhile).
    pub backlog: u64,
}

impl ShardReader {
    /// Starts reading `tenure.shard` at stream sequence `from` (1: from the
    /// beginning), handing each message to `out`.
    pub async fn start(
        js: &jetstream::Context,
        tenure: Tenure,
        from: u64,
        tenures: watch::Receiver<Tenures>,
        out: mpsc::Sender<ShardMessage>,
    ) -> Result<ShardReader, ClusterError> {
        let err = |e: &dyn std::fmt::Display| ClusterError::Watch {
            bucket: SHARD_STREAM.to_string(),
            message: format!("shard {}: {e}", tenure.shard),
        };
        let stream = js.get_stream(SHARD_STREAM).await.map_err(|e| err(&e))?;
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_subject: js_inbox(js),
                filter_subject: routing::shard_subject(tenure.shard),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: from.max(1),
                },
                ..Default::default()
            })
            .await
            .map_err(|e| err(&e))?;
        let backlog = consumer.cached_info().num_pending;
        let messages = consumer.messages().await.map_err(|e| err(&e))?;
        info!(shard = %tenure.shard, epoch = %tenure.epoch, from, backlog, "reading shard");
        let task = tokio::spawn(read(messages, tenure, tenures, out));
        Ok(ShardReader { task, backlog })
    }

    /// Whether it has stopped (its tenure ended, or nobody takes its messages).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    pub fn abort(self) {
        self.task.abort();
    }
}

fn js_inbox(js: &jetstream::Context) -> String {
    // The context's client makes inboxes unique to its connection.
    js.client().new_inbox()
}

/// The tenure of `epoch` for `shard`, as it stands now, if it still holds.
fn still_held(tenures: &watch::Receiver<Tenures>, shard: Shard, epoch: Epoch) -> Option<Tenure> {
    tenures
        .borrow()
        .may_act(shard, Instant::now())
        .filter(|t| t.epoch == epoch)
}

async fn read(
    mut messages: jetstream::consumer::push::Ordered,
    tenure: Tenure,
    mut tenures: watch::Receiver<Tenures>,
    out: mpsc::Sender<ShardMessage>,
) {
    let Tenure { shard, epoch, .. } = tenure;
    loop {
        let message = tokio::select! {
            message = messages.next() => message,
            _ = until_over(&mut tenures, shard, epoch) => break,
        };
        let Some(message) = message else {
            warn!(%shard, "the shard's stream ended");
            return;
        };
        let message = match message {
            Ok(message) => message,
            Err(e) => {
                warn!(%shard, error = %e, "reading the shard");
                continue;
            }
        };
        // Room first, then the check: waiting for room can outlast the tenure.
        let permit = tokio::select! {
            permit = out.reserve() => match permit {
                Ok(permit) => permit,
                Err(_) => return, // nobody takes the shard's messages
            },
            _ = until_over(&mut tenures, shard, epoch) => break,
        };
        if still_held(&tenures, shard, epoch).is_none() {
            break;
        }
        let Ok(info) = message.info() else { continue };
        let topic = message
            .headers
            .as_ref()
            .and_then(|h| h.get(TOPIC_HEADER))
            .map(|t| t.to_string())
            .unwrap_or_default();
        permit.send(ShardMessage {
            shard,
            seq: info.stream_sequence,
            origin: Origin::of(message.headers.as_ref()),
            topic,
            payload: message.payload.clone(),
            epoch,
            stored: SystemTime::from(info.published),
            pending: info.pending,
        });
    }
    info!(%shard, %epoch, "the tenure ended: stopped reading the shard");
}

/// Resolves once the tenure of `epoch` for `shard` no longer holds: the
/// keeper has dropped it, or its end has passed with no renewal heard of.
async fn until_over(tenures: &mut watch::Receiver<Tenures>, shard: Shard, epoch: Epoch) {
    loop {
        let Some(held) = still_held(tenures, shard, epoch) else {
            return;
        };
        let end = tokio::time::Instant::from_std(held.valid_until);
        tokio::select! {
            changed = tenures.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep_until(end) => {}
        }
    }
}
