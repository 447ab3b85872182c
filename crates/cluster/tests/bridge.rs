//! The bridge on a real Mosquitto and a real JetStream, both the test's own:
//! every message a device published reaches the shard of its case exactly
//! once, through a bridge's crash and through the end of its lease.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use kordon_cluster::bridge::{Bridge, BridgeSettings, MayAct};
use kordon_cluster::routing::{self, DeviceBook, SHARD_STREAM, TOPIC_HEADER};
use kordon_cluster::ShardCount;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::watch;

use kordon_cluster::testkit::{Mosquitto, Nats};

const CASES: usize = 50;

fn book() -> DeviceBook {
    let mut book = DeviceBook::new(ShardCount::DEFAULT);
    for i in 0..CASES {
        book.put_case(
            &format!("RTM-{i}"),
            vec![format!("ankle-{i}"), format!("phone-{i}")],
        );
    }
    book
}

fn settings(mosquitto: &Mosquitto) -> BridgeSettings {
    BridgeSettings {
        mqtt: rumqttc::MqttOptions::new("set by each client", "127.0.0.1", mosquitto.port),
        client_id: BridgeSettings::CLIENT_ID.into(),
        window: BridgeSettings::WINDOW,
        held: BridgeSettings::HELD,
    }
}

fn always() -> MayAct {
    Arc::new(|_| true)
}

/// Publishes fixes numbered `from..from + count` at QoS 1, spread over the
/// cases' devices; returns once Mosquitto has acknowledged them all.
async fn publish_fixes(port: u16, from: usize, count: usize) {
    let mut options = MqttOptions::new("devices", "127.0.0.1", port);
    options.set_inflight(1000);
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    let acks = tokio::spawn(async move {
        let mut acked = 0;
        while acked < count {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => panic!("the devices' connection: {e}"),
            }
        }
    });
    for n in from..from + count {
        let device = if n % 2 == 0 { "ankle" } else { "phone" };
        let topic = format!("kordon/v1/devices/{device}-{}/fix", n % CASES);
        client
            .publish(topic, QoS::AtLeastOnce, false, format!("{{\"n\":{n}}}"))
            .await
            .unwrap();
    }
    acks.await.unwrap();
}

async fn within_10_s(wait: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("within 10 s");
}

async fn stored(js: &jetstream::Context) -> u64 {
    let mut stream = js.get_stream(SHARD_STREAM).await.unwrap();
    stream.info().await.unwrap().state.messages
}

/// Waits until the stream holds `count` messages, and no more come.
async fn until_stored(js: &jetstream::Context, count: u64) {
    let start = Instant::now();
    while stored(js).await < count {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} of {count} stored after 30 s",
            stored(js).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stored(js).await, count, "more than every message stored");
}

/// Every stored message: its number, and that it is in the shard its
/// topic routes to.
async fn numbers_stored(js: &jetstream::Context) -> BTreeMap<u64, u32> {
    let book = book();
    let mut stream = js.get_stream(SHARD_STREAM).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut seen = BTreeMap::new();
    for seq in 1..=last {
        let message = stream.get_raw_message(seq).await.unwrap();
        let topic = message
            .headers
            .get(TOPIC_HEADER)
            .expect("the topic header")
            .to_string();
        let shards = book.route(&topic);
        assert_eq!(shards.len(), 1);
        assert_eq!(
            message.subject.as_str(),
            routing::shard_subject(shards[0]),
            "{topic}"
        );
        let payload: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        *seen.entry(payload["n"].as_u64().unwrap()).or_insert(0) += 1;
    }
    seen
}

fn assert_each_once(seen: &BTreeMap<u64, u32>, count: u64) {
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    let missing: Vec<u64> = (0..count).filter(|n| !seen.contains_key(n)).collect();
    assert!(missing.is_empty(), "never stored: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_reaches_its_case_s_shard_once_through_a_bridge_crash() {
    let Some(mosquitto) = Mosquitto::start() else {
        return;
    };
    let Some(nats) = Nats::start() else { return };
    let js = nats.jetstream_with_shard_stream().await;
    let (_book_tx, book_rx) = watch::channel(book());
    let mut first = Bridge::start(settings(&mosquitto), js.clone(), book_rx.clone(), always());
    // The session and its subscriptions exist before the devices publish.
    within_10_s(first.subscribed()).await;
    const COUNT: u64 = 6_000;
    let devices = tokio::spawn(publish_fixes(mosquitto.port, 0, COUNT as usize));
    let start = Instant::now();
    while stored(&js).await < 1_000 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the first bridge stored nothing"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.abort();
    let at_crash = stored(&js).await;
    let _second = Bridge::start(settings(&mosquitto), js.clone(), book_rx, always());
    devices.await.unwrap();
    until_stored(&js, COUNT).await;
    assert_each_once(&numbers_stored(&js).await, COUNT);
    eprintln!("{at_crash} stored when the first bridge died; all {COUNT} stored once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_whose_lease_runs_out_stops_and_the_next_takes_what_it_left() {
    let Some(mosquitto) = Mosquitto::start() else {
        return;
    };
    let Some(nats) = Nats::start() else { return };
    let js = nats.jetstream_with_shard_stream().await;
    let (_book_tx, book_rx) = watch::channel(book());
    let lease = Arc::new(AtomicBool::new(true));
    let held = lease.clone();
    let may_act: MayAct = Arc::new(move |_| held.load(Ordering::SeqCst));
    let mut first = Bridge::start(settings(&mosquitto), js.clone(), book_rx.clone(), may_act);
    within_10_s(first.subscribed()).await;
    publish_fixes(mosquitto.port, 0, 500).await;
    until_stored(&js, 500).await;
    // Its lease gone, the first bridge stops with no message to make it
    // look, and stores nothing more.
    lease.store(false, Ordering::SeqCst);
    within_10_s(first.stopped()).await;
    publish_fixes(mosquitto.port, 500, 1_000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        stored(&js).await,
        500,
        "a bridge without its lease stored a message"
    );
    let _next = Bridge::start(settings(&mosquitto), js.clone(), book_rx, always());
    until_stored(&js, 1_500).await;
    assert_each_once(&numbers_stored(&js).await, 1_500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_map_follows_the_cases_bucket() {
    use kordon_cluster::cases;
    let Some(nats) = Nats::start() else { return };
    let js = nats.jetstream_with_shard_stream().await;
    let store = cases::open(&js, 1).await.expect("the cases' bucket");
    let case: kordon_core::Case =
        serde_json::from_str(include_str!("../../../config/cases/rtm-2026-0117.json")).unwrap();
    // Written before the watch: read back from the bucket's history.
    cases::put(&store, &case).await.unwrap();
    let mut book = cases::watch_book(store.clone(), ShardCount::DEFAULT)
        .await
        .unwrap();
    let shard = ShardCount::DEFAULT.shard_of("RTM-2026-0117");
    let routed =
        |book: &DeviceBook, device: &str| book.route(&format!("kordon/v1/devices/{device}/fix"));
    // Caught up when it returns: no message is routed as if in no case.
    assert_eq!(routed(&book.borrow(), "OFF-0001"), vec![shard]);
    assert_eq!(routed(&book.borrow(), "VIC-0001"), vec![shard]);
    // A case rewritten with another device, then deleted.
    let mut moved = case.clone();
    moved.offender.device = kordon_core::DeviceId::new("OFF-0002");
    cases::put(&store, &moved).await.unwrap();
    routes_within_10_s(&mut book, "OFF-0002", shard).await;
    let alone = ShardCount::DEFAULT.shard_of("OFF-0001");
    assert_eq!(routed(&book.borrow(), "OFF-0001"), vec![alone]);
    cases::delete(&store, "RTM-2026-0117").await.unwrap();
    let victim_alone = ShardCount::DEFAULT.shard_of("VIC-0001");
    routes_within_10_s(&mut book, "VIC-0001", victim_alone).await;
}

async fn routes_within_10_s(
    book: &mut watch::Receiver<DeviceBook>,
    device: &str,
    shard: kordon_cluster::Shard,
) {
    let topic = format!("kordon/v1/devices/{device}/fix");
    tokio::time::timeout(
        Duration::from_secs(10),
        book.wait_for(|b| b.route(&topic) == vec![shard]),
    )
    .await
    .unwrap_or_else(|_| panic!("{device} not routed to shard {shard} within 10 s"))
    .unwrap();
}

/// Mosquitto offers the bridge as much as its `max_inflight_messages`
/// lets it (20,000 here), far more than a narrow window lets JetStream have
/// in flight. The reader goes on answering Mosquitto meanwhile
/// (acknowledgements and keep-alive). Found by the cluster benchmark: at
/// 32,000 fixes/s the reader once waited for room without polling its
/// connection, so the acknowledgements that would make room never left,
/// and Mosquitto dropped the silent bridge (475 of these 20,000 stored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offered_more_than_its_window_the_bridge_keeps_answering_and_stores_all() {
    stores_each_once(20_000, |mosquitto| BridgeSettings {
        window: 200,
        ..settings(mosquitto)
    })
    .await;
}

/// A bridge that can hold fewer messages than Mosquitto offers leaves the
/// rest unacknowledged, and connects again once it has stored what it
/// holds, for Mosquitto to offer them again: nothing is lost, and each fix
/// is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_bridge_cannot_hold_is_left_with_mosquitto_and_taken_later() {
    stores_each_once(5_000, |mosquitto| BridgeSettings {
        held: 500,
        ..settings(mosquitto)
    })
    .await;
}

/// A bridge with these settings, and then `count` fixes published at once:
/// each is stored once.
async fn stores_each_once(count: u64, settings: impl FnOnce(&Mosquitto) -> BridgeSettings) {
    let Some(mosquitto) = Mosquitto::start() else {
        return;
    };
    let Some(nats) = Nats::start() else { return };
    let js = nats.jetstream_with_shard_stream().await;
    let (_book_tx, book_rx) = watch::channel(book());
    let mut bridge = Bridge::start(settings(&mosquitto), js.clone(), book_rx, always());
    within_10_s(bridge.subscribed()).await;
    publish_fixes(mosquitto.port, 0, count as usize).await;
    until_stored(&js, count).await;
    assert_each_once(&numbers_stored(&js).await, count);
}
