//! The deliverer on a real Mosquitto and a real JetStream, both the test's
//! own: a message an earlier deliverer had published but not acknowledged
//! to the stream when it died is offered again, and not sent a second time;
//! everything else is sent once. A deliverer for a broker added to a
//! running cluster starts at the last minutes' alerts. And the delivery
//! delay any instance reads shows an alert waiting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::{self, consumer::pull};
use futures_util::StreamExt;
use kordon_cluster::alerts::{self, ALERT_STREAM};
use kordon_cluster::deliverer::{delivery_delay, Deliverer, DelivererSettings, ACK_WAIT};
use kordon_cluster::testkit::{Mosquitto, Nats};
use kordon_cluster::{Epoch, Shard};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const POLICE: &str = "kordon/v1/alerts/police";

fn alert(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","event":"opened","ts":"2026-12-02T10:00:00Z","kind":"zone_breach"}}"#)
        .into_bytes()
}

/// An MQTT client that keeps what arrives on the police's topic.
async fn police_listener(port: u16) -> (AsyncClient, Arc<Mutex<Vec<Vec<u8>>>>) {
    let (client, mut eventloop) =
        AsyncClient::new(MqttOptions::new("police-desk", "127.0.0.1", port), 64);
    client.subscribe(POLICE, QoS::AtLeastOnce).await.unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    keep.lock().unwrap().push(p.payload.to_vec())
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    (client, got)
}

fn count(got: &Mutex<Vec<Vec<u8>>>, payload: &[u8]) -> usize {
    got.lock()
        .unwrap()
        .iter()
        .filter(|p| p.as_slice() == payload)
        .count()
}

fn leased(flag: &Arc<AtomicBool>) -> kordon_cluster::bridge::MayAct {
    let flag = flag.clone();
    Arc::new(move |_| flag.load(Ordering::SeqCst))
}

async fn store(js: &jetstream::Context, payload: &[u8]) {
    alerts::store(js, Shard(3), Epoch(7), POLICE, payload.to_vec())
        .await
        .unwrap();
}

/// A deliverer to the test's Mosquitto on `port`.
fn deliverer_settings(port: u16) -> DelivererSettings {
    DelivererSettings {
        mqtt: rumqttc::MqttOptions::new("set by each client", "127.0.0.1", port),
        client_id: DelivererSettings::CLIENT_ID.into(),
        consumer: DelivererSettings::CONSUMER.into(),
        window: 16,
        first_look_back: DelivererSettings::FIRST_LOOK_BACK,
    }
}

async fn wait_for(what: &str, within: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_mosquitto_already_took_is_not_sent_again_by_the_next_deliverer() {
    let Some(nats) = Nats::start() else { return };
    let Some(mosquitto) = Mosquitto::start() else {
        return;
    };
    let js = nats.jetstream_with_shard_stream().await;
    alerts::ensure_alert_stream(&js, 1, None).await.unwrap();
    let settings = deliverer_settings(mosquitto.port);
    let (_listener, got) = police_listener(mosquitto.port).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A first deliverer sends A, and stops when its lease ends; its session
    // for reading back stays with Mosquitto.
    let first_lease = Arc::new(AtomicBool::new(true));
    let mut first = Deliverer::start(settings.clone(), &js, leased(&first_lease))
        .await
        .unwrap();
    let (a, b, c) = (alert("A"), alert("B"), alert("C"));
    store(&js, &a).await;
    wait_for("A", Duration::from_secs(10), || count(&got, &a) == 1).await;
    first_lease.store(false, Ordering::SeqCst);
    first.stopped().await;

    // A deliverer that took B, published it, and died before acknowledging
    // it to the stream (played by hand).
    store(&js, &b).await;
    let mut consumer: jetstream::consumer::Consumer<pull::Config> = js
        .get_stream(ALERT_STREAM)
        .await
        .unwrap()
        .get_consumer(DelivererSettings::CONSUMER)
        .await
        .unwrap();
    let mut taken = consumer.fetch().max_messages(1).messages().await.unwrap();
    let taken = taken.next().await.unwrap().unwrap();
    assert_eq!(taken.payload.as_ref(), b.as_slice());
    let (publisher, mut eventloop) = AsyncClient::new(
        MqttOptions::new("dying-deliverer", "127.0.0.1", mosquitto.port),
        8,
    );
    publisher
        .publish(POLICE, QoS::AtLeastOnce, false, b.clone())
        .await
        .unwrap();
    loop {
        if let Event::Incoming(Packet::PubAck(_)) = eventloop.poll().await.unwrap() {
            break;
        }
    }
    drop(taken); // never acknowledged
    wait_for(
        "B, from the dying deliverer",
        Duration::from_secs(10),
        || count(&got, &b) == 1,
    )
    .await;

    // The next deliverer: B is offered again after ACK_WAIT and not sent;
    // C is sent.
    store(&js, &c).await;
    let next_lease = Arc::new(AtomicBool::new(true));
    let _next = Deliverer::start(settings, &js, leased(&next_lease))
        .await
        .unwrap();
    wait_for("C", Duration::from_secs(10), || count(&got, &c) == 1).await;
    // B comes again once ACK_WAIT has passed since it was taken.
    tokio::time::sleep(ACK_WAIT + Duration::from_secs(3)).await;
    let info = consumer.info().await.unwrap().clone();
    assert_eq!(info.num_ack_pending, 0, "B was acknowledged: {info:?}");
    assert_eq!(count(&got, &a), 1);
    assert_eq!(count(&got, &b), 1, "B was sent again");
    assert_eq!(count(&got, &c), 1);
}

/// The delay any instance reads: nothing waiting, then an alert with no
/// deliverer yet, delivered, and one waiting while Mosquitto is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_delay_is_the_age_of_the_oldest_alert_mosquitto_has_not_taken() {
    let Some(nats) = Nats::start() else { return };
    let Some(mosquitto) = Mosquitto::start() else {
        return;
    };
    let js = nats.jetstream_with_shard_stream().await;
    alerts::ensure_alert_stream(&js, 1, None).await.unwrap();
    let delay = || async {
        delivery_delay(&js, DelivererSettings::CONSUMER, SystemTime::now())
            .await
            .unwrap()
    };
    assert_eq!(delay().await, Duration::ZERO, "nothing stored");

    let (a, b) = (alert("A"), alert("B"));
    store(&js, &a).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(delay().await >= Duration::from_secs(1), "no deliverer yet");

    let settings = deliverer_settings(mosquitto.port);
    let (_listener, got) = police_listener(mosquitto.port).await;
    let lease = Arc::new(AtomicBool::new(true));
    let _deliverer = Deliverer::start(settings, &js, leased(&lease))
        .await
        .unwrap();
    wait_for("A", Duration::from_secs(10), || count(&got, &a) == 1).await;
    // Acknowledged to the stream once Mosquitto took it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while delay().await > Duration::ZERO {
        assert!(Instant::now() < deadline, "A still counted as waiting");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    drop(mosquitto);
    store(&js, &b).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(
        delay().await >= Duration::from_secs(1),
        "B waits while Mosquitto is gone"
    );
}

/// A second broker's deliverer, first started long after the cluster's
/// first alerts: it sends what the last minutes stored, not the stream's
/// whole history ahead of the fresh alerts; broker 0's consumer is not
/// moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_added_later_gets_the_last_minutes_of_alerts_not_the_whole_stream() {
    let Some(nats) = Nats::start() else { return };
    let Some(mosquitto) = Mosquitto::start() else {
        return;
    };
    let js = nats.jetstream_with_shard_stream().await;
    alerts::ensure_alert_stream(&js, 1, None).await.unwrap();
    let (old, recent, fresh) = (alert("old"), alert("recent"), alert("fresh"));
    store(&js, &old).await;
    let (_listener, got) = police_listener(mosquitto.port).await;
    tokio::time::sleep(Duration::from_millis(5_000)).await;
    store(&js, &recent).await;
    let settings = DelivererSettings {
        client_id: "kordon-deliverer-1".into(),
        consumer: "kordon-deliverer-1".into(),
        // Minutes in production; here the old alert is 5 s old.
        first_look_back: Duration::from_secs(2),
        ..deliverer_settings(mosquitto.port)
    };
    let lease = Arc::new(AtomicBool::new(true));
    let _deliverer = Deliverer::start(settings, &js, leased(&lease))
        .await
        .unwrap();
    store(&js, &fresh).await;
    wait_for("the fresh alert", Duration::from_secs(10), || {
        count(&got, &fresh) == 1
    })
    .await;
    assert_eq!(count(&got, &recent), 1, "the last minutes' alert");
    assert_eq!(count(&got, &old), 0, "an alert from before the look-back");
    // Broker 0's deliverer has not started: every alert waits for it.
    let waiting = delivery_delay(&js, DelivererSettings::CONSUMER, SystemTime::now())
        .await
        .unwrap();
    assert!(waiting >= Duration::from_secs(5), "{waiting:?}");
}
