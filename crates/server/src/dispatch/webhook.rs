//! Delivers each CAP message to every police dispatch webhook: an HTTP POST
//! of the CAP document, signed, retried with back-off
//! ([`super::backoff`]) until the endpoint answers 2xx or the message is
//! `give_up_after_s` old ([`DispatchConfig::gives_up`]). Each attempt's
//! outcome goes to the engine's thread, which journals it and shows it on
//! the alert. A cluster delivers through the same [`attempt`], from the
//! alerts' stream (`crate::cluster_node::webhooks`).
//!
//! The request carries:
//! - `Content-Type: application/cap+xml`
//! - `X-Kordon-Delivery`: the CAP identifier (the same on every retry, so
//!   the endpoint can drop duplicates)
//! - `X-Kordon-Timestamp`: seconds since 1970 when this attempt was signed
//! - `X-Kordon-Signature: sha256=<hex>`: HMAC-SHA256 with the endpoint's
//!   secret over `<timestamp>.<body>` (an old request replayed fails the
//!   endpoint's freshness check, an altered one its signature check).

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};
use hmac::{Hmac, Mac};
use kordon_alert::DeliveryAttempt;
use sha2::Sha256;
use tokio::sync::{mpsc, Semaphore};
use tracing::{info, warn};

use super::{backoff, CapMessage, DispatchConfig, WebhookConfig};
use crate::clock::Clock;
use crate::core_thread::Command;

/// Deliveries under way at once (a message × an endpoint, retries
/// included); beyond, a delivery is journaled as not attempted and resumes
/// at the next start.
const IN_FLIGHT: usize = 10_000;
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The signature header's value for `body` signed at `timestamp`.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The HTTP client every attempt goes through.
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .user_agent(concat!("kordon/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// One signed POST of `message` to `endpoint`, the `number`th attempt, and
/// its outcome: delivered when the endpoint answered 2xx. One process's
/// deliverer and a cluster's both attempt through this.
pub async fn attempt(
    client: &reqwest::Client,
    message: &CapMessage,
    endpoint: &WebhookConfig,
    number: u32,
    clock: Clock,
) -> DeliveryAttempt {
    let timestamp = clock.now().as_second();
    let answer = client
        .post(&endpoint.url)
        .header("content-type", "application/cap+xml")
        .header("x-kordon-delivery", &message.identifier)
        .header("x-kordon-timestamp", timestamp.to_string())
        .header(
            "x-kordon-signature",
            signature(&endpoint.secret, timestamp, &message.xml),
        )
        .body(message.xml.clone())
        .send()
        .await;
    let (status, error) = match answer {
        Ok(response) => (Some(response.status().as_u16()), None),
        Err(e) => (None, Some(short_error(&e))),
    };
    let delivered = status.is_some_and(|s| (200..300).contains(&s));
    metrics::counter!(crate::metrics::WEBHOOK_ATTEMPTS, "outcome" => match status {
        _ if delivered => "delivered",
        Some(_) => "refused",
        None => "failed",
    })
    .increment(1);
    if delivered {
        info!(
            endpoint = endpoint.name,
            message = message.identifier,
            attempt = number,
            "CAP message delivered"
        );
    }
    DeliveryAttempt {
        endpoint: endpoint.name.clone(),
        message: message.identifier.clone(),
        attempt: number,
        status,
        error,
        delivered,
        at: clock.now(),
    }
}

/// Says that a message's delivery to an endpoint is given up.
pub fn giving_up(endpoint: &WebhookConfig, message: &CapMessage, attempts: u32) {
    warn!(
        endpoint = endpoint.name,
        message = message.identifier,
        attempts,
        "CAP message not delivered; giving up"
    );
}

/// One process's deliverer: takes the messages the engine's thread
/// publishes, retries each in memory, and hands each attempt's outcome to
/// the engine's thread (a cluster's is `crate::cluster_node::webhooks`).
pub struct Deliverer {
    pub dispatch: DispatchConfig,
    /// The engine's queue for requests, not the intake's: under overload
    /// the ingest link keeps that one full, and the record of a delivery to
    /// the police (the evidence, and what tells a restart not to deliver
    /// the message again) was dropped after a second of trying.
    pub core: Sender<Command>,
    pub clock: Clock,
}

impl Deliverer {
    /// Takes messages until the queue closes; each delivery runs on its own.
    pub async fn run(self, mut queue: mpsc::Receiver<CapMessage>) {
        let client = match http_client() {
            Ok(client) => client,
            Err(e) => {
                warn!(error = %e, "webhook deliveries are off: no HTTP client");
                return;
            }
        };
        let this = Arc::new(self);
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        while let Some(message) = queue.recv().await {
            for endpoint in this.dispatch.webhooks.clone() {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    let full = "too many deliveries in flight; resumes at the next start";
                    metrics::counter!(crate::metrics::WEBHOOK_ATTEMPTS, "outcome" => "failed")
                        .increment(1);
                    let attempt = DeliveryAttempt {
                        endpoint: endpoint.name.clone(),
                        message: message.identifier.clone(),
                        attempt: 0,
                        status: None,
                        error: Some(full.into()),
                        delivered: false,
                        at: this.clock.now(),
                    };
                    this.report(&message, attempt).await;
                    continue;
                };
                let (this, client, message) = (this.clone(), client.clone(), message.clone());
                tokio::spawn(async move {
                    this.deliver(&client, &message, &endpoint).await;
                    drop(slot);
                });
            }
        }
    }

    async fn deliver(
        &self,
        client: &reqwest::Client,
        message: &CapMessage,
        endpoint: &WebhookConfig,
    ) {
        for number in 1u32.. {
            let outcome = attempt(client, message, endpoint, number, self.clock).await;
            let delivered = outcome.delivered;
            self.report(message, outcome).await;
            if delivered {
                return;
            }
            if self.dispatch.gives_up(message, self.clock.now()) {
                giving_up(endpoint, message, number);
                return;
            }
            tokio::time::sleep(backoff(number)).await;
        }
    }

    /// Hands an attempt's outcome to the engine's thread, which journals
    /// it; waits a little for room in its queue, and logs what it cannot
    /// hand over (the delivery itself is unaffected).
    async fn report(&self, message: &CapMessage, attempt: DeliveryAttempt) {
        let (endpoint, number) = (attempt.endpoint.clone(), attempt.attempt);
        let mut command = Command::Webhook {
            alert: message.alert.clone(),
            attempt,
        };
        for _ in 0..50 {
            match self.core.try_send(command) {
                Ok(()) => return,
                Err(TrySendError::Full(back)) => {
                    command = back;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
        warn!(
            endpoint,
            message = message.identifier,
            attempt = number,
            "a webhook attempt could not be journaled: the engine's queue stayed full"
        );
    }
}

fn short_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_time_and_body() {
        let a = signature("0123456789abcdef", 1_764_468_000, "<alert/>");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64, "{a}");
        assert_ne!(a, signature("0123456789abcdef", 1_764_468_001, "<alert/>"));
        assert_ne!(a, signature("0123456789abcdef", 1_764_468_000, "<alert />"));
        assert_ne!(a, signature("0123456789abcdeF", 1_764_468_000, "<alert/>"));
        // Known answer, from Python's hmac: HMAC-SHA256("key", "1.x").
        assert_eq!(
            signature("key", 1, "x"),
            "sha256=fc4913c41a7bf793267e2a384f3261c9436ec2cd097bd745e7b0d99113f510ec"
        );
    }
}
