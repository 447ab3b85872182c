//! A device-side QoS 1 connection for load tests, counting the broker's
//! acknowledgements (what the broker has taken, so what kordon must
//! eventually journal).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions};

use super::Broker;

pub struct Publisher {
    pub client: AsyncClient,
    /// PUBACKs received so far.
    pub acked: Arc<AtomicU64>,
}

impl Publisher {
    /// Connects as `client_id` with up to `inflight` unacknowledged publishes
    /// and `requests` queued in the client.
    pub async fn new(broker: &Broker, client_id: String, inflight: u16, requests: usize) -> Self {
        let (host, port) = broker.host_port();
        let mut options = MqttOptions::new(client_id, host, port);
        options
            .set_keep_alive(Duration::from_secs(5))
            .set_inflight(inflight);
        let (client, mut eventloop) = AsyncClient::new(options, requests);
        let acked = Arc::new(AtomicU64::new(0));
        let count = acked.clone();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::PubAck(_))) => {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        });
        Publisher { client, acked }
    }
}
