//! The devices' brokers: which lease carries each one's bridge and
//! deliverer, and the names they use there (`docs/cluster.md`, "Several
//! device brokers").
//!
//! A cluster may serve its devices through several Mosquittos, so that no
//! one broker carries every fix and none is a single point of failure.
//! Broker *i* has a bridge of its own (its devices' messages into the
//! shards' stream) and a deliverer of its own (every alert out to it), both
//! run by whichever instance holds shard *i*'s lease. Every broker carries
//! every alert, so the room, the police and a victim's device may connect
//! to any of them.
//!
//! Broker 0 keeps the names a cluster with one broker has always used, so
//! that a running cluster keeps its Mosquitto session and its alerts'
//! consumer when a second broker is added. This module owns those names; it
//! never connects to anything.

use rumqttc::MqttOptions;

use crate::bridge::BridgeSettings;
use crate::deliverer::DelivererSettings;
use crate::shards::{Shard, ShardCount};

/// One of the cluster's device brokers: its place in `[cluster]
/// device_brokers` (the same list, in the same order, on every instance)
/// and how to reach it.
#[derive(Clone, Debug)]
pub struct DeviceBroker {
    index: u16,
    mqtt: MqttOptions,
}

/// What a list of device brokers cannot be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerListError {
    #[error("no device broker is named")]
    Empty,
    #[error(
        "{brokers} device brokers for {shards} shards: broker i runs under shard i's lease, \
         so there can be no more brokers than shards"
    )]
    MoreThanShards { brokers: usize, shards: u16 },
    #[error("the device broker {0} is listed twice: every alert would reach it twice")]
    Twice(String),
}

impl DeviceBroker {
    /// The brokers of a list, in its order: broker *i* under shard *i*'s
    /// lease.
    pub fn list(
        brokers: Vec<MqttOptions>,
        shards: ShardCount,
    ) -> Result<Vec<DeviceBroker>, BrokerListError> {
        if brokers.is_empty() {
            return Err(BrokerListError::Empty);
        }
        if brokers.len() > usize::from(shards.get()) {
            return Err(BrokerListError::MoreThanShards {
                brokers: brokers.len(),
                shards: shards.get(),
            });
        }
        let brokers: Vec<DeviceBroker> = brokers
            .into_iter()
            .zip(0u16..)
            .map(|(mqtt, index)| DeviceBroker { index, mqtt })
            .collect();
        for (i, broker) in brokers.iter().enumerate() {
            if brokers[..i].iter().any(|b| b.label() == broker.label()) {
                return Err(BrokerListError::Twice(broker.label()));
            }
        }
        Ok(brokers)
    }

    /// The shard whose lease carries this broker's bridge and deliverer.
    pub fn shard(&self) -> Shard {
        Shard(self.index)
    }

    /// How operators name it in metrics and logs, and instances compare
    /// it ([`crate::agreement`]): its host, in lower case, and port (never
    /// its credentials).
    pub fn label(&self) -> String {
        let (host, port) = self.mqtt.broker_address();
        format!("{}:{port}", host.to_ascii_lowercase())
    }

    /// Its bridge's settings: one Mosquitto session for whichever instance
    /// runs it.
    pub fn bridge(&self) -> BridgeSettings {
        BridgeSettings {
            mqtt: self.mqtt.clone(),
            client_id: self.named(BridgeSettings::CLIENT_ID),
            window: BridgeSettings::WINDOW,
            held: BridgeSettings::HELD,
        }
    }

    /// Its deliverer's settings: a Mosquitto session and a consumer of the
    /// alerts' stream for whichever instance runs it.
    pub fn deliverer(&self) -> DelivererSettings {
        DelivererSettings {
            mqtt: self.mqtt.clone(),
            client_id: self.named(DelivererSettings::CLIENT_ID),
            consumer: self.consumer(),
            window: DelivererSettings::WINDOW,
            first_look_back: DelivererSettings::FIRST_LOOK_BACK,
        }
    }

    /// The alerts' stream's consumer that delivers to it, which any
    /// instance reads to tell how long its alerts wait.
    pub fn consumer(&self) -> String {
        consumer_of(self.index)
    }

    fn named(&self, name: &str) -> String {
        named(name, self.index)
    }
}

/// The alerts' consumer of the broker in place `index`, which a rewrite of
/// the list removes when the broker there goes ([`crate::agreement`]).
pub fn consumer_of(index: u16) -> String {
    named(DelivererSettings::CONSUMER, index)
}

/// Broker 0 keeps the names of a cluster with one broker.
fn named(name: &str, index: u16) -> String {
    match index {
        0 => name.to_string(),
        i => format!("{name}-{i}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(port: u16) -> MqttOptions {
        MqttOptions::new("set by each client", "mq.example", port)
    }

    #[test]
    fn broker_0_keeps_the_names_of_a_cluster_with_one_broker() {
        let shards = ShardCount::new(64).unwrap();
        let brokers = DeviceBroker::list(vec![options(8883), options(8884)], shards).unwrap();
        let (first, second) = (&brokers[0], &brokers[1]);
        assert_eq!(first.shard(), Shard(0));
        assert_eq!(first.bridge().client_id, "kordon-bridge");
        assert_eq!(first.deliverer().client_id, "kordon-deliverer");
        assert_eq!(first.consumer(), "kordon-deliverer");
        assert_eq!(second.shard(), Shard(1));
        assert_eq!(second.bridge().client_id, "kordon-bridge-1");
        assert_eq!(second.deliverer().client_id, "kordon-deliverer-1");
        assert_eq!(second.deliverer().consumer, "kordon-deliverer-1");
        assert_eq!(second.label(), "mq.example:8884");
    }

    #[test]
    fn a_broker_listed_twice_is_refused_whatever_the_case_of_its_host() {
        let shards = ShardCount::new(4).unwrap();
        let upper = MqttOptions::new("set by each client", "MQ.example", 8883);
        let twice = DeviceBroker::list(vec![options(8883), upper], shards);
        assert_eq!(
            twice.unwrap_err(),
            BrokerListError::Twice("mq.example:8883".into())
        );
    }

    #[test]
    fn a_list_is_not_empty_and_has_no_more_brokers_than_shards() {
        let two = ShardCount::new(2).unwrap();
        assert_eq!(
            DeviceBroker::list(vec![], two).unwrap_err(),
            BrokerListError::Empty
        );
        let three = vec![options(1), options(2), options(3)];
        assert_eq!(
            DeviceBroker::list(three, two).unwrap_err(),
            BrokerListError::MoreThanShards {
                brokers: 3,
                shards: 2
            }
        );
    }
}
