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
use tracing::{info, warn};

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
/// How long deliveries under way may take to settle once the tenure ended.
const SETTLE: Duration = Duration::from_secs(2);
/// When a message taken after the tenure ended is offered again.
const HAND_BACK: Duration = Duration::from_secs(1);

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
        let Some((tenure, may_act)) = duties::held(&mut tenures, duties::WEBHOOKS_SHARD).await
        else {
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

    /// Takes `endpoint`'s messages while the tenure holds, opening its
    /// consumer again if its reading ends; each delivery runs on its own
    /// (the stream bounds how many are in flight). When the tenure ends,
    /// what is under way has a moment to settle, so that a clean hand-over
    /// posts nothing twice.
    async fn serve_endpoint(self, endpoint: WebhookConfig) {
        let mut deliveries = JoinSet::new();
        while let Some(mut offers) = self.open(&endpoint).await {
            if self
                .take_offers(&endpoint, &mut offers, &mut deliveries)
                .await
            {
                break;
            }
            warn!(
                endpoint = endpoint.name,
                "webhooks: the endpoint's consumer stopped offering; opening it again"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let settle = async { while deliveries.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(SETTLE, settle).await;
    }

    /// Starts a delivery of each message offered until the tenure ends
    /// (true) or the consumer stops offering (false).
    async fn take_offers(
        &self,
        endpoint: &WebhookConfig,
        offers: &mut Offers,
        deliveries: &mut JoinSet<()>,
    ) -> bool {
        let mut lease_check = tokio::time::interval(LEASE_CHECK);
        loop {
            tokio::select! {
                offer = offers.next() => {
                    let Some(offer) = offer else { return false };
                    if !self.may_act() {
                        // Handed back not at once: this reader would be
                        // offered it again before it stops, each offer
                        // counting as an attempt.
                        offer.again_after(HAND_BACK).await;
                        return true;
                    }
                    deliveries.spawn(self.clone().deliver(endpoint.clone(), offer));
                }
                _ = lease_check.tick() => {
                    if !self.may_act() {
                        return true;
                    }
                }
                Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
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

    /// One attempt of one message; the message settled (done, or offered
    /// again after the back-off) before the outcome is carried to the
    /// alert's shard, so that a slow store cannot outlast the stream's
    /// patience and have the message posted again meanwhile.
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
        let shard = offer.shard;
        if number == 1 && dispatch.gives_up(&message, clock.now()) {
            // Older than the webhooks give up after when first offered (an
            // endpoint added later, or a backlog): what one process would
            // not resume either, said on the alert.
            warn!(
                endpoint = endpoint.name,
                message = message.identifier,
                "older than give_up_after_s when first offered to the webhook; not delivered"
            );
            offer.done().await;
            let outcome = DeliveryAttempt {
                endpoint: endpoint.name.clone(),
                message: message.identifier.clone(),
                attempt: 0,
                status: None,
                error: Some("given up before a first attempt: older than give_up_after_s".into()),
                delivered: false,
                at: clock.now(),
            };
            return self.record(shard, &endpoint, &message, outcome).await;
        }
        let outcome = attempt(&self.client, &message, &endpoint, number, clock).await;
        if outcome.delivered {
            offer.done().await;
        } else if dispatch.gives_up(&message, clock.now()) {
            giving_up(&endpoint, &message, number);
            offer.done().await;
        } else {
            offer.again_after(backoff(number)).await;
        }
        self.record(shard, &endpoint, &message, outcome).await;
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
