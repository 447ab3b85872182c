//! The broker connection, driven by two tasks:
//!
//! - [`run_connection`] polls rumqttc's event loop: it reconnects with
//!   back-off, subscribes when the broker has no session for kordon,
//!   announces `online`, decodes every publish and hands it (or its
//!   refusal, for `kordon/v1/rejects`) to the engine's thread, so that
//!   acknowledgements leave in the order messages came.
//! - [`run_publisher`] publishes what the journal writer passes on (only
//!   once it is durable), then acknowledges the handled message to the
//!   broker. A message received but not yet journaled when kordon stops or
//!   crashes is delivered again by the broker.
//!
//! kordon also reads its own alert topics back ([`crate::delivery`]): those
//! echoes go to the engine's thread as [`Command::Echo`].
//!
//! On shutdown the connection task stops handing messages on, the engine's
//! thread drains its queue, the publisher publishes the rest, then the
//! retained `offline` status, and disconnects.

use std::time::Instant;

use crossbeam_channel::Sender;
use kordon_ingest::broker::{OFFLINE, ONLINE};
use kordon_ingest::topic::{ENGINE_STATUS, SUBSCRIPTIONS};
use kordon_ingest::{Backoff, Decoder};
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, Outgoing, QoS, SubscribeFilter,
};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::core_thread::{Command, Envelope};
use crate::delivery::{is_echo, ECHO_FILTERS};
use crate::health::Health;
use crate::metrics as m;

/// Every filter kordon subscribes to: device and operator input, and its
/// own alert topics. `kordon/v1/alerts/+` covers the operators'
/// `kordon/v1/alerts/ack` too, so that no message matches two filters
/// (rumqttd would deliver it twice).
pub fn subscriptions() -> Vec<&'static str> {
    SUBSCRIPTIONS
        .iter()
        .copied()
        .filter(|f| *f != kordon_ingest::topic::ACK)
        .chain(ECHO_FILTERS.iter().map(|(filter, _)| *filter))
        .collect()
}

/// Polls the event loop until the disconnect that ends a shutdown.
pub async fn run_connection(
    client: AsyncClient,
    mut eventloop: EventLoop,
    decoder: Decoder,
    core: Sender<Command>,
    clock: crate::clock::Clock,
    health: Health,
    mut stopping: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new();
    let mut forwarding = Some(core);
    loop {
        let event = tokio::select! {
            event = eventloop.poll() => event,
            _ = stopping.changed(), if forwarding.is_some() => {
                // Stop taking messages; keep polling so the publisher can
                // flush and disconnect through this event loop.
                forwarding = None;
                debug!("connection: no longer handing messages on");
                continue;
            }
        };
        match event {
            Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                backoff.reset();
                metrics::gauge!(m::BROKER_CONNECTED).set(1.0);
                health.broker_connected(clock.now());
                info!(
                    session_present = ack.session_present,
                    "connected to the broker"
                );
                if !ack.session_present {
                    let filters = subscriptions()
                        .into_iter()
                        .map(|f| SubscribeFilter::new(f.to_string(), QoS::AtLeastOnce));
                    if let Err(e) = client.try_subscribe_many(filters) {
                        error!(error = %e, "could not queue the subscriptions");
                    }
                }
                if let Err(e) = client.try_publish(ENGINE_STATUS, QoS::AtLeastOnce, true, ONLINE) {
                    error!(error = %e, "could not queue the online status");
                }
                if let Some(core) = &forwarding {
                    let _ = core.send(Command::Connected(clock.now()));
                }
            }
            Ok(Event::Incoming(Incoming::Publish(publish))) => {
                metrics::counter!(m::MESSAGES_IN).increment(1);
                let Some(core) = &forwarding else {
                    // Not acknowledged: the broker delivers it again to the
                    // next session.
                    continue;
                };
                let received = Instant::now();
                let now = clock.now();
                let topic = publish.topic.clone();
                if is_echo(&topic) {
                    let payload = publish.payload.to_vec();
                    let echo = Command::Echo {
                        topic,
                        payload,
                        now,
                        ack: Some(publish),
                    };
                    if core.send(echo).is_err() {
                        warn!("engine thread gone; message left unacknowledged");
                    }
                    continue;
                }
                let command = match decoder.decode(&topic, &publish.payload, now) {
                    Ok(message) => Command::Message {
                        topic,
                        message,
                        received,
                        now,
                        ack: Some(publish),
                    },
                    Err(refusal) => Command::Refused {
                        topic,
                        refusal,
                        now,
                        ack: Some(publish),
                    },
                };
                if core.send(command).is_err() {
                    warn!("engine thread gone; message left unacknowledged");
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                info!("disconnected from the broker");
                metrics::gauge!(m::BROKER_CONNECTED).set(0.0);
                health.broker_lost(clock.now());
                return;
            }
            Ok(_) => {}
            Err(error) => {
                metrics::gauge!(m::BROKER_CONNECTED).set(0.0);
                health.broker_lost(clock.now());
                metrics::counter!(m::BROKER_CONNECTION_ERRORS).increment(1);
                if forwarding.is_none() && matches!(error, ConnectionError::RequestsDone) {
                    return;
                }
                let delay = backoff.next_delay();
                warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "broker connection lost");
                if forwarding.is_none() {
                    // Stopping without a broker: nothing left to flush to.
                    return;
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Publishes in order until every sender is gone (the journal writer
/// holds the last), then says `offline` and disconnects.
pub async fn run_publisher(client: AsyncClient, mut envelopes: mpsc::UnboundedReceiver<Envelope>) {
    while let Some(envelope) = envelopes.recv().await {
        metrics::gauge!(m::PUBLISH_QUEUE_DEPTH).set(envelopes.len() as f64);
        match envelope {
            Envelope::Publish {
                message,
                retain,
                caused_at,
                kind,
            } => {
                let topic = message.topic;
                match client
                    .publish(topic.as_str(), QoS::AtLeastOnce, retain, message.payload)
                    .await
                {
                    Ok(()) => {
                        metrics::counter!(m::PUBLISHED).increment(1);
                        if let (Some(at), Some(kind)) = (caused_at, kind) {
                            if topic == kordon_alert::topics::POLICE
                                || topic == kordon_alert::topics::MONITORING
                            {
                                metrics::histogram!(m::FIX_TO_ALERT, "topic" => topic_label(&topic), "kind" => kind)
                                    .record(at.elapsed().as_secs_f64());
                            }
                        }
                    }
                    Err(e) => {
                        metrics::counter!(m::PUBLISH_FAILED).increment(1);
                        error!(topic, error = %e, "publish failed");
                    }
                }
            }
            Envelope::Ack(publish) => {
                if let Err(e) = client.ack(&publish).await {
                    warn!(error = %e, "acknowledgement to the broker failed");
                }
            }
        }
    }
    if let Err(e) = client
        .publish(ENGINE_STATUS, QoS::AtLeastOnce, true, OFFLINE)
        .await
    {
        warn!(error = %e, "could not publish the offline status");
    }
    // Requests leave in order: `offline` goes out before the DISCONNECT.
    if let Err(e) = client.disconnect().await {
        warn!(error = %e, "disconnect failed");
    }
}

fn topic_label(topic: &str) -> &'static str {
    if topic == kordon_alert::topics::POLICE {
        "police"
    } else {
        "monitoring"
    }
}
