//! kordon's connection to the MQTT broker: options from a URL, a persistent
//! session (the broker keeps QoS 1 messages for kordon while it reconnects),
//! TCP_NODELAY (Nagle's algorithm costs ~10 ms per alert), TLS for
//! `mqtts://`, credentials, the last will, and the back-off between
//! reconnection attempts.

use std::time::Duration;

use rumqttc::{AsyncClient, EventLoop, LastWill, MqttOptions, NetworkOptions, QoS, Transport};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::topic::ENGINE_STATUS;

/// How to reach the broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSettings {
    /// `mqtt://host:port` or `mqtts://host:port` (TLS).
    pub url: String,
    /// Fixed, so the broker keeps kordon's session across restarts.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// PEM file of the certificate authority for `mqtts://`; the system's
    /// roots when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: u16,
}

fn default_client_id() -> String {
    "kordon".to_string()
}

/// Seconds between kordon's keep-alive pings; the broker publishes
/// kordon's `offline` will after one and a half of them without a word.
///
/// The broker's answer to a ping comes behind everything it has already
/// written to kordon, and Mosquitto 2.0.11 writes its whole backlog for
/// kordon at once (it does not keep to its in-flight window): after an
/// outage or under overload that was 700,000 messages, more than 5 s of
/// reading. With 5 s kordon dropped the connection every 10 s, the broker
/// sent the backlog again, and kordon never caught up (the full
/// benchmark's overload stalled). 15 s reads through twice that.
pub const KEEP_ALIVE_S: u16 = 15;

fn default_keep_alive_s() -> u16 {
    KEEP_ALIVE_S
}

impl BrokerSettings {
    pub fn new(url: impl Into<String>) -> Self {
        BrokerSettings {
            url: url.into(),
            client_id: default_client_id(),
            username: None,
            password: None,
            ca_file: None,
            keep_alive_s: default_keep_alive_s(),
        }
    }
}

#[derive(Debug, Error)]
pub enum BrokerError {
    #[error("broker url `{url}`: {problem}")]
    Url { url: String, problem: String },
    #[error("reading the CA file {path}: {source}")]
    CaFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Host, port and transport from a broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl BrokerAddress {
    pub fn parse(url: &str) -> Result<BrokerAddress, BrokerError> {
        let problem = |problem: &str| BrokerError::Url {
            url: url.to_string(),
            problem: problem.to_string(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| problem("expected mqtt://host:port or mqtts://host:port"))?;
        let (tls, default_port) = match scheme {
            "mqtt" | "tcp" => (false, 1883),
            "mqtts" | "ssl" => (true, 8883),
            _ => return Err(problem("the scheme must be mqtt:// or mqtts://")),
        };
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') || authority.contains('@') || authority.contains('?') {
            return Err(problem(
                "only host and port belong in the url; credentials go in username and password",
            ));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .map_err(|_| problem("the port is not a number from 1 to 65535"))?,
            ),
            None => (authority, default_port),
        };
        if host.is_empty() {
            return Err(problem("the host is empty"));
        }
        Ok(BrokerAddress {
            tls,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
        })
    }
}

/// The largest packet MQTT 3.1.1 can frame: a 268,435,455-byte remaining
/// length plus its fixed header.
pub const MAX_MQTT_PACKET: usize = 268_435_455 + 5;

/// The retained payloads of [`ENGINE_STATUS`].
pub const ONLINE: &str = "online";
pub const OFFLINE: &str = "offline";

/// Connects (lazily: the first `poll` of the event loop dials) with a
/// persistent session and `offline` as the retained last will.
pub fn connect(
    settings: &BrokerSettings,
    request_capacity: usize,
) -> Result<(AsyncClient, EventLoop), BrokerError> {
    let address = BrokerAddress::parse(&settings.url)?;
    let mut options = MqttOptions::new(&settings.client_id, &address.host, address.port);
    options
        .set_keep_alive(Duration::from_secs(u64::from(settings.keep_alive_s.max(1))))
        .set_clean_session(false)
        // A message is acknowledged once handled (see the server's mqtt module).
        .set_manual_acks(true)
        // Whatever the broker forwards is read whole and refused by the
        // decoder if too large (`payload_too_large`). A client limit below
        // the broker's would drop the connection on such a message, and the
        // persistent session would deliver it again at once: one oversize
        // publish would stop all ingest.
        .set_max_packet_size(MAX_MQTT_PACKET, 256 * 1024)
        // kordon's own publishes in flight. rumqttc numbers them 1..=this
        // and, when the next number is still unacknowledged (a collision),
        // or this many are, stops sending every request, the broker
        // acknowledgements of handled messages included, until it is
        // acknowledged. With 1,000, one publish left unacknowledged across
        // a reconnect stalled all of kordon's acknowledgements (measured
        // under overload, "Timeout while waiting to resolve collision"
        // every 10 s). kordon publishes tens of messages a second: with the
        // whole range a collision needs over an hour of them.
        .set_inflight(u16::MAX)
        .set_last_will(LastWill::new(
            ENGINE_STATUS,
            OFFLINE,
            QoS::AtLeastOnce,
            true,
        ));
    if let (Some(user), password) = (&settings.username, &settings.password) {
        options.set_credentials(user, password.clone().unwrap_or_default());
    }
    if address.tls {
        // rustls needs a process-wide crypto provider; a second install is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let transport = match &settings.ca_file {
            Some(path) => {
                let ca = std::fs::read(path).map_err(|source| BrokerError::CaFile {
                    path: path.clone(),
                    source,
                })?;
                Transport::tls(ca, None, None)
            }
            None => Transport::tls_with_default_config(),
        };
        options.set_transport(transport);
    }
    let (client, mut eventloop) = AsyncClient::new(options, request_capacity);
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    Ok((client, eventloop))
}

/// Ends the persistent session of `client_id` on the broker at `url` (a
/// clean-session connect), so that the broker stops queueing messages for
/// a client that will not come back: test runs, measurement runs, a
/// retired kordon instance.
pub async fn forget_session(url: &str, client_id: &str) -> Result<(), BrokerError> {
    let address = BrokerAddress::parse(url)?;
    let mut options = MqttOptions::new(client_id, address.host, address.port);
    options.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Incoming::ConnAck(_))) => {
                    let _ = client.try_disconnect();
                }
                Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => return,
                _ => {}
            }
        }
    })
    .await;
    Ok(())
}

/// Exponential back-off between reconnection attempts: 100 ms doubling to
/// 10 s, reset by a successful connection.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);

    pub fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    /// The pause before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_and_transport() {
        let plain = BrokerAddress::parse("mqtt://127.0.0.1:1884").unwrap();
        assert_eq!(
            (plain.tls, plain.host.as_str(), plain.port),
            (false, "127.0.0.1", 1884)
        );
        let tls = BrokerAddress::parse("mqtts://broker.example").unwrap();
        assert_eq!((tls.tls, tls.port), (true, 8883));
        for bad in [
            "127.0.0.1:1883",
            "http://x:1",
            "mqtt://:1883",
            "mqtt://h:99999",
            "mqtt://u:p@h:1",
        ] {
            assert!(BrokerAddress::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn backoff_doubles_to_its_ceiling_and_resets() {
        let mut backoff = Backoff::new();
        let delays: Vec<_> = (0..10).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000, 10000]
        );
        backoff.reset();
        assert_eq!(backoff.next_delay().as_millis(), 100);
    }
}
