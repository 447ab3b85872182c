//! The cluster's single tasks for each device broker, its bridge (devices'
//! messages from Mosquitto into the shards' stream) and its deliverer (the
//! alerts' stream out to Mosquitto): broker *i*'s run by whichever instance
//! holds the lease of shard *i* (`kordon_cluster::brokers`). The police
//! webhooks' deliverers (`super::webhooks`), which need no Mosquitto, run
//! under shard 0's lease on their own.
//!
//! A shard's lease is reused rather than a lease of their own: it already
//! has an owner at every moment but a fail-over, fences itself, and moves
//! with the balance; the instance holding it does a little more work. Both
//! tasks check the tenure themselves before each step and stop when it
//! ends; this loop only starts them again under the next tenure. It never
//! decides anything about a case.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use kordon_cluster::bridge::{Bridge, MayAct};
use kordon_cluster::brokers::DeviceBroker;
use kordon_cluster::deliverer::Deliverer;
use kordon_cluster::routing::DeviceBook;
use kordon_cluster::{Shard, Tenure, Tenures};
use tokio::sync::watch;
use tracing::{info, warn};

/// The shard whose lease carries the police webhooks.
pub const WEBHOOKS_SHARD: Shard = Shard(0);

/// Where the duties reach the devices' brokers.
#[derive(Clone, Debug)]
pub struct DutiesSettings {
    /// Each device broker with kordon's credentials and TLS (`[broker]`,
    /// and `[cluster] device_brokers`), in their configured order.
    pub brokers: Vec<DeviceBroker>,
}

/// Waits until this instance holds `shard`; its tenure, and whether it
/// still may act under it at a given moment. `None` once the lease keeper
/// has stopped.
pub(super) async fn held(
    tenures: &mut watch::Receiver<Tenures>,
    shard: Shard,
) -> Option<(Tenure, MayAct)> {
    loop {
        let held = tenures.borrow().may_act(shard, Instant::now());
        let Some(tenure) = held else {
            tenures.changed().await.ok()?;
            continue;
        };
        let watched = tenures.clone();
        let may_act: MayAct = std::sync::Arc::new(move |now| {
            watched
                .borrow()
                .may_act(shard, now)
                .is_some_and(|t| t.epoch == tenure.epoch)
        });
        return Some((tenure, may_act));
    }
}

/// Runs each broker's bridge and deliverer whenever this instance holds its
/// shard; returns once the lease keeper has stopped.
pub async fn run(
    settings: DutiesSettings,
    js: jetstream::Context,
    book: watch::Receiver<DeviceBook>,
    tenures: watch::Receiver<Tenures>,
) {
    let mut brokers = tokio::task::JoinSet::new();
    for broker in settings.brokers {
        let serving = serve_broker(broker, js.clone(), book.clone(), tenures.clone());
        brokers.spawn(serving);
    }
    while brokers.join_next().await.is_some() {}
}

/// One broker's bridge and deliverer, under each tenure of its shard.
async fn serve_broker(
    broker: DeviceBroker,
    js: jetstream::Context,
    book: watch::Receiver<DeviceBook>,
    mut tenures: watch::Receiver<Tenures>,
) {
    let (shard, label) = (broker.shard(), broker.label());
    loop {
        let Some((tenure, may_act)) = held(&mut tenures, shard).await else {
            return;
        };
        info!(epoch = %tenure.epoch, %shard, broker = label, "this instance holds the broker's shard: running its bridge and its deliverer");
        let mut bridge = Bridge::start(broker.bridge(), js.clone(), book.clone(), may_act.clone());
        let mut deliverer = match Deliverer::start(broker.deliverer(), &js, may_act).await {
            Ok(deliverer) => deliverer,
            Err(e) => {
                warn!(error = %e, broker = label, "starting the deliverer; trying again");
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
        info!(broker = label, "the bridge and the deliverer stopped");
        drop(bridge);
        drop(deliverer);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
