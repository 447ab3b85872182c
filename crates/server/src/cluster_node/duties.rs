//! The cluster's single tasks, the bridge (devices' messages from
//! Mosquitto into the shards' stream) and the deliverer (the alerts' stream
//! out to Mosquitto), run by whichever instance holds the lease of shard 0;
//! so do the police webhooks' deliverers (`super::webhooks`), which need no
//! Mosquitto and run on their own.
//!
//! Shard 0's lease is reused rather than a lease of their own: it already
//! has an owner at every moment but a fail-over, fences itself, and moves
//! with the balance; the instance holding it does a little more work. Both
//! tasks check the tenure themselves before each step and stop when it
//! ends; this loop only starts them again under the next tenure. It never
//! decides anything about a case.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use kordon_cluster::bridge::{Bridge, BridgeSettings, MayAct};
use kordon_cluster::deliverer::{Deliverer, DelivererSettings};
use kordon_cluster::routing::DeviceBook;
use kordon_cluster::{Shard, Tenure, Tenures};
use tokio::sync::watch;
use tracing::{info, warn};

/// The shard whose lease carries the duties.
pub const DUTIES_SHARD: Shard = Shard(0);

/// Where the duties reach Mosquitto.
#[derive(Clone, Debug)]
pub struct DutiesSettings {
    /// The devices' Mosquitto with kordon's credentials and TLS (`[broker]`).
    pub mqtt: rumqttc::MqttOptions,
}

/// Waits until this instance holds shard 0; its tenure, and whether it
/// still may act under it at a given moment. `None` once the lease keeper
/// has stopped.
pub(super) async fn held(tenures: &mut watch::Receiver<Tenures>) -> Option<(Tenure, MayAct)> {
    loop {
        let held = tenures.borrow().may_act(DUTIES_SHARD, Instant::now());
        let Some(tenure) = held else {
            tenures.changed().await.ok()?;
            continue;
        };
        let watched = tenures.clone();
        let may_act: MayAct = std::sync::Arc::new(move |now| {
            watched
                .borrow()
                .may_act(DUTIES_SHARD, now)
                .is_some_and(|t| t.epoch == tenure.epoch)
        });
        return Some((tenure, may_act));
    }
}

/// Runs the bridge and the deliverer whenever this instance holds shard 0.
pub async fn run(
    settings: DutiesSettings,
    js: jetstream::Context,
    book: watch::Receiver<DeviceBook>,
    mut tenures: watch::Receiver<Tenures>,
) {
    loop {
        let Some((tenure, may_act)) = held(&mut tenures).await else {
            return;
        };
        info!(epoch = %tenure.epoch, "this instance holds shard 0: running the bridge and the deliverer");
        let mut bridge = Bridge::start(
            BridgeSettings {
                mqtt: settings.mqtt.clone(),
                client_id: BridgeSettings::CLIENT_ID.to_string(),
                window: BridgeSettings::WINDOW,
                held: BridgeSettings::HELD,
            },
            js.clone(),
            book.clone(),
            may_act.clone(),
        );
        let deliverer = Deliverer::start(
            DelivererSettings {
                mqtt: settings.mqtt.clone(),
                client_id: DelivererSettings::CLIENT_ID.to_string(),
                window: DelivererSettings::WINDOW,
            },
            &js,
            may_act.clone(),
        )
        .await;
        let mut deliverer = match deliverer {
            Ok(deliverer) => deliverer,
            Err(e) => {
                warn!(error = %e, "starting the deliverer; trying again");
                drop(bridge);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        // Both stop by themselves when the tenure ends; either stopping
        // alone (its stream gone) ends the pair, which starts again while
        // the tenure (or a next one) holds.
        tokio::select! {
            _ = bridge.stopped() => {}
            _ = deliverer.stopped() => {}
        }
        // The deliverer finishes what it has in flight once its lease ends.
        let _ = tokio::time::timeout(Duration::from_secs(2), deliverer.stopped()).await;
        info!("the bridge and the deliverer stopped");
        drop(bridge);
        drop(deliverer);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
