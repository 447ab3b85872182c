//! Police webhooks in a cluster (`docs/cluster.md`, "Police webhooks in a
//! cluster"). While this instance holds shard 0, it delivers the police's
//! CAP messages from the alerts' stream to every `[[dispatch.webhooks]]`
//! endpoint, each endpoint on a consumer of its own
//! ([`kordon_cluster::webhooks`]), with the signature, back-off and giving
//! up of one process ([`crate::dispatch::webhook`]). Each attempt's outcome
//! goes through the alert's shard's stream to the shard's owner, which
//! journals it and shows it on the alert ([`carried_attempt`]); a next owner
//! replays it with the rest.
//!
//! What it never does: attempt a delivery without shard 0's tenure, or
//! change an alert but through its shard's stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use kordon_alert::DeliveryAttempt;
use kordon_cluster::bridge::MayAct;
use kordon_cluster::webhooks::{self as stream, Offer, Offers};
use kordon_cluster::{Shard, Tenures};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::duties;
use crate::clock::Clock;
use crate::core_thread::Command;
use crate::dispatch::webhook::{self, attempt, giving_up};
use crate::dispatch::{backoff, CapMessage, DispatchConfig, WebhookConfig};

/// How often a deliverer looks whether its tenure still holds while no
/// message comes.
const LEASE_CHECK: Duration = Duration::from_millis(100);
/// How often an outcome's store in its shard's stream is tried.
const RECORD_TRIES: u32 = 3;

/// What the webhooks' deliverers need from `kordon.toml`.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    /// `[dispatch]`: the endpoints and when a delivery is given up.
    pub dispatch: DispatchConfig,
    pub clock: Clock,
}

/// An attempt's outcome, as the alert's shard's stream carries it.
#[derive(Debug, Serialize, Deserialize)]
struct CarriedAttempt {
    alert: String,
    attempt: DeliveryAttempt,
}

/// Delivers to every endpoint whenever this instance holds shard 0, until
/// the lease keeper stops.
pub async fn run(
    settings: WebhookSettings,
    js: jetstream::Context,
    mut tenures: watch::Receiver<Tenures>,
) {
    let client = match webhook::http_client() {
        Ok(client) => client,
        Err(e) => {
            warn!(error = %e, "webhook deliveries are off: no HTTP client");
            return;
        }
    };
    let settings = Arc::new(settings);
    loop {
        let Some((tenure, may_act)) = duties::held(&mut tenures).await else {
            return;
        };
        info!(epoch = %tenure.epoch, endpoints = settings.dispatch.webhooks.len(), "this instance holds shard 0: delivering to the police webhooks");
        let delivery = Delivery {
            js: js.clone(),
            client: client.clone(),
            settings: settings.clone(),
            may_act,
        };
        let mut endpoints = JoinSet::new();
        for endpoint in &settings.dispatch.webhooks {
            endpoints.spawn(delivery.clone().serve_endpoint(endpoint.clone()));
        }
        while endpoints.join_next().await.is_some() {}
        info!("the police webhooks' deliverers stopped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What every delivery under one tenure shares.
#[derive(Clone)]
struct Delivery {
    js: jetstream::Context,
    client: reqwest::Client,
    settings: Arc<WebhookSettings>,
    may_act: MayAct,
}

impl Delivery {
    fn may_act(&self) -> bool {
        (self.may_act)(Instant::now())
    }

    /// Takes `endpoint`'s messages while the tenure holds; each delivery
    /// runs on its own (the stream bounds how many are in flight).
    async fn serve_endpoint(self, endpoint: WebhookConfig) {
        let Some(mut offers) = self.open(&endpoint).await else {
            return;
        };
        let mut lease_check = tokio::time::interval(LEASE_CHECK);
        loop {
            tokio::select! {
                offer = offers.next() => {
                    let Some(offer) = offer else {
                        warn!(endpoint = endpoint.name, "webhooks: the alerts' stream ended");
                        return;
                    };
                    tokio::spawn(self.clone().deliver(endpoint.clone(), offer));
                }
                _ = lease_check.tick() => {
                    if !self.may_act() {
                        return;
                    }
                }
            }
        }
    }

    /// The endpoint's consumer, tried again while the tenure holds.
    async fn open(&self, endpoint: &WebhookConfig) -> Option<Offers> {
        let topic = kordon_alert::topics::POLICE_CAP;
        while self.may_act() {
            match Offers::open(&self.js, &endpoint.name, topic).await {
                Ok(offers) => return Some(offers),
                Err(e) => {
                    warn!(endpoint = endpoint.name, error = %e, "webhooks: opening the endpoint's consumer; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        None
    }

    /// One attempt of one message, its outcome carried to the alert's
    /// shard; then the message is settled: done, or offered again after
    /// the back-off.
    async fn deliver(self, endpoint: WebhookConfig, offer: Offer) {
        let Some(message) = std::str::from_utf8(offer.payload())
            .ok()
            .and_then(CapMessage::parse)
        else {
            warn!(endpoint = endpoint.name, "webhooks: a message on the police's CAP topic is not a CAP message kordon made; not delivered");
            return offer.done().await;
        };
        let (dispatch, clock) = (&self.settings.dispatch, self.settings.clock);
        let number = offer.attempt();
        if number == 1 && dispatch.gives_up(&message, clock.now()) {
            // An endpoint added later: what one process would not resume.
            debug!(
                endpoint = endpoint.name,
                message = message.identifier,
                "older than the webhooks give up after; not delivered"
            );
            return offer.done().await;
        }
        if !self.may_act() {
            return offer.again_after(Duration::ZERO).await;
        }
        let outcome = attempt(&self.client, &message, &endpoint, number, clock).await;
        let delivered = outcome.delivered;
        self.record(offer.shard, &endpoint, &message, outcome).await;
        if delivered {
            offer.done().await;
        } else if dispatch.gives_up(&message, clock.now()) {
            giving_up(&endpoint, &message, number);
            offer.done().await;
        } else {
            offer.again_after(backoff(number)).await;
        }
    }

    /// Carries an attempt's outcome to the alert's shard; one that cannot
    /// be stored is logged (the delivery itself is unaffected).
    async fn record(
        &self,
        shard: Shard,
        endpoint: &WebhookConfig,
        message: &CapMessage,
        outcome: DeliveryAttempt,
    ) {
        let id = format!(
            "webhook:{}:{}:{}",
            stream::consumer_name(&endpoint.name),
            message.identifier,
            outcome.attempt
        );
        let carried = CarriedAttempt {
            alert: message.alert.clone(),
            attempt: outcome,
        };
        let payload = serde_json::to_vec(&carried).expect("an attempt serialises");
        for _ in 0..RECORD_TRIES {
            match stream::record_attempt(&self.js, shard, &id, payload.clone().into()).await {
                Ok(_) => return,
                Err(e) => {
                    warn!(error = %e, %shard, "webhooks: storing an attempt's outcome; trying again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        warn!(endpoint = endpoint.name, message = message.identifier, %shard, "a webhook attempt could not be stored in its shard's stream: it is not shown on the alert");
    }
}

/// The engine command for an attempt's outcome read from a shard's stream;
/// `None` (logged, and skipped by every owner alike) if it cannot be read.
pub(crate) fn carried_attempt(payload: &[u8]) -> Option<Command> {
    match serde_json::from_slice::<CarriedAttempt>(payload) {
        Ok(carried) => Some(Command::Webhook {
            alert: carried.alert,
            attempt: carried.attempt,
        }),
        Err(e) => {
            warn!(error = %e, "a webhook attempt in a shard's stream is unreadable: skipped");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_read_from_a_shard_s_stream_is_the_one_carried() {
        let attempt = DeliveryAttempt {
            endpoint: "meldkamer".into(),
            message: "kordon-E1-1".into(),
            attempt: 3,
            status: Some(503),
            error: None,
            delivered: false,
            at: "2026-12-04T01:00:00Z".parse().unwrap(),
        };
        let carried = CarriedAttempt {
            alert: "E1".into(),
            attempt: attempt.clone(),
        };
        let payload = serde_json::to_vec(&carried).unwrap();
        match carried_attempt(&payload) {
            Some(Command::Webhook {
                alert,
                attempt: read,
            }) => {
                assert_eq!(alert, "E1");
                assert_eq!(read, attempt);
            }
            _ => panic!("not the attempt carried"),
        }
        assert!(carried_attempt(b"{\"alert\":1}").is_none());
    }
}
