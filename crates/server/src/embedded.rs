//! The embedded broker (rumqttd) for the default run and the tests: one
//! command starts kordon with nothing else installed.
//!
//! Not for production. rumqttd keeps messages in a bounded in-memory log
//! and, when a subscriber lags past it, skips ahead: even QoS 1 messages are
//! lost. The log is sized generously here and every skip is counted
//! (`kordon_embedded_broker_cursor_jumps_total`) and logged; production
//! deployments use Mosquitto or a clustered broker (`deploy/mosquitto/`).

use std::net::{SocketAddr, TcpListener};

use rumqttd::{Broker, Config};
use tracing::{error, info, warn};

use crate::metrics as m;

/// Starts rumqttd on `listen` in its own threads and returns the address it
/// listens on. Port 0 picks a free port.
pub fn start(listen: SocketAddr, credentials: Option<(&str, &str)>) -> std::io::Result<SocketAddr> {
    let listen = if listen.port() == 0 {
        // rumqttd does not report the port it bound; find a free one first.
        TcpListener::bind(listen)?.local_addr()?
    } else {
        // Fail early and clearly if the port is taken (rumqttd would only log it).
        drop(TcpListener::bind(listen).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("embedded broker cannot listen on {listen}: {e}"),
            )
        })?);
        listen
    };
    let auth = credentials.map(|(user, password)| serde_json::json!({ user: password }));
    let config: Config = serde_json::from_value(serde_json::json!({
        "id": 0,
        "router": {
            "max_connections": 10010,
            "max_outgoing_packet_count": 1000,
            // 16 segments of 64 MiB per filter: minutes of full-rate fixes
            // before a lagging subscriber could be skipped ahead.
            "max_segment_size": 64 * 1024 * 1024,
            "max_segment_count": 16,
        },
        "v4": {
            "1": {
                "name": "kordon-embedded",
                "listen": listen.to_string(),
                "next_connection_delay_ms": 1,
                "connections": {
                    "connection_timeout_ms": 10000,
                    // A client publishing more is disconnected and its
                    // packet never reaches kordon (which refuses anything
                    // above `max_payload_bytes` that does).
                    "max_payload_size": 262144,
                    "max_inflight_count": 1000,
                    "dynamic_filters": true,
                    "auth": auth,
                }
            }
        },
        // Both intervals must be set: rumqttd 0.20's timer unwraps the
        // one that is missing.
        "metrics": { "alerts": { "push_interval": 1 }, "meters": { "push_interval": 60 } },
    }))
    .map_err(|e| std::io::Error::other(format!("embedded broker configuration: {e}")))?;

    let mut broker = Broker::new(config);
    let alerts = broker
        .alerts()
        .map_err(|e| std::io::Error::other(format!("embedded broker alerts link: {e}")))?;
    std::thread::Builder::new()
        .name("broker-alerts".into())
        .spawn(move || {
            while let Ok(batch) = alerts.router_rx.recv() {
                for alert in batch {
                    if alert.kind.name() == "cursor_jump" {
                        metrics::counter!(m::EMBEDDED_BROKER_LOSS).increment(1);
                        warn!(client = %alert.client_id, detail = alert.kind.description(), "embedded broker skipped messages for a lagging subscriber: messages were lost");
                    }
                }
            }
        })?;
    std::thread::Builder::new()
        .name("broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                error!(error = %e, "embedded broker stopped");
            }
        })?;
    info!(%listen, "embedded broker (rumqttd) listening; use Mosquitto in production");
    Ok(listen)
}
