//! The shard reader on a nats-server of the test's own: a shard's messages
//! in order from any sequence, and nothing once the tenure has ended.

use std::time::{Duration, Instant};

use async_nats::header::HeaderMap;
use async_nats::jetstream;
use kordon_cluster::reader::{ShardMessage, ShardReader};
use kordon_cluster::routing::{self, TOPIC_HEADER};
use kordon_cluster::{Epoch, Shard, Tenure, Tenures};
use tokio::sync::{mpsc, watch};

use kordon_cluster::testkit::Nats;

/// Stores message `n` for `shard`; returns its stream sequence.
async fn store(js: &jetstream::Context, shard: Shard, n: u32) -> u64 {
    let mut headers = HeaderMap::new();
    headers.insert(TOPIC_HEADER, format!("kordon/v1/devices/d{n}/fix").as_str());
    js.publish_with_headers(routing::shard_subject(shard), headers, n.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence
}

fn tenure(shard: Shard, for_how_long: Duration) -> Tenure {
    Tenure {
        shard,
        epoch: Epoch(7),
        valid_until: Instant::now() + for_how_long,
    }
}

fn holding(tenure: Tenure) -> Tenures {
    Tenures {
        held: vec![tenure],
        holders: Vec::new(),
        members: Vec::new(),
    }
}

async fn next(rx: &mut mpsc::Receiver<ShardMessage>) -> Option<ShardMessage> {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a message or the end within 5 s")
}

fn number(message: &ShardMessage) -> u32 {
    std::str::from_utf8(&message.payload)
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_is_read_in_order_from_any_sequence_and_only_its_own() {
    let Some(nats) = Nats::start() else { return };
    let js = nats.jetstream_with_shard_stream().await;
    let (mine, other) = (Shard(5), Shard(6));
    let mut seqs = Vec::new();
    for n in 0..300 {
        seqs.push(store(&js, mine, n).await);
        store(&js, other, 1_000 + n).await;
    }
    let t = tenure(mine, Duration::from_secs(60));
    let (_tenures_tx, tenures) = watch::channel(holding(t));
    for (from, first) in [(1, 0), (seqs[100], 100)] {
        let (tx, mut rx) = mpsc::channel(64);
        let reader = ShardReader::start(&js, t, from, tenures.clone(), tx)
            .await
            .unwrap();
        for n in first..300 {
            let message = next(&mut rx).await.expect("a message");
            assert_eq!(
                (message.shard, message.epoch, number(&message)),
                (mine, Epoch(7), n)
            );
            assert_eq!(message.seq, seqs[n as usize]);
            assert_eq!(message.topic, format!("kordon/v1/devices/d{n}/fix"));
        }
        reader.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_hands_on_nothing_once_its_tenure_is_taken_away() {
    let Some(nats) = Nats::start() else { return };
    let js = nats.jetstream_with_shard_stream().await;
    let shard = Shard(9);
    let t = tenure(shard, Duration::from_secs(60));
    let (tenures_tx, tenures) = watch::channel(holding(t));
    let (tx, mut rx) = mpsc::channel(1_000);
    let reader = ShardReader::start(&js, t, 1, tenures, tx).await.unwrap();
    for n in 0..20 {
        store(&js, shard, n).await;
    }
    for n in 0..20 {
        assert_eq!(number(&next(&mut rx).await.unwrap()), n);
    }
    tenures_tx.send_replace(Tenures::default());
    for n in 20..40 {
        store(&js, shard, n).await;
    }
    assert_eq!(
        next(&mut rx).await,
        None,
        "the reader stopped, and handed on nothing more"
    );
    assert!(reader.is_finished());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_stops_when_its_tenure_runs_out_without_a_word_from_the_keeper() {
    let Some(nats) = Nats::start() else { return };
    let js = nats.jetstream_with_shard_stream().await;
    let shard = Shard(2);
    // A keeper that says nothing more (cut off, or starved): the tenure's own
    // end is what stops the reader.
    let t = tenure(shard, Duration::from_millis(300));
    let (_tenures_tx, tenures) = watch::channel(holding(t));
    let (tx, mut rx) = mpsc::channel(1_000);
    let started = Instant::now();
    let _reader = ShardReader::start(&js, t, 1, tenures, tx).await.unwrap();
    assert_eq!(next(&mut rx).await, None);
    let stopped = started.elapsed();
    assert!(
        stopped >= Duration::from_millis(250),
        "stopped after {stopped:?}, before its tenure ran out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_waiting_for_room_hands_on_nothing_after_its_tenure_ends() {
    let Some(nats) = Nats::start() else { return };
    let js = nats.jetstream_with_shard_stream().await;
    let shard = Shard(4);
    for n in 0..5 {
        store(&js, shard, n).await;
    }
    let t = tenure(shard, Duration::from_secs(60));
    let (tenures_tx, tenures) = watch::channel(holding(t));
    // Room for one message: the reader hands on message 0, then waits for
    // room with message 1 in hand.
    let (tx, mut rx) = mpsc::channel(1);
    let reader = ShardReader::start(&js, t, 1, tenures, tx).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    tenures_tx.send_replace(Tenures::default());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        reader.is_finished(),
        "the reader stops while it waits for room"
    );
    assert_eq!(
        number(&next(&mut rx).await.unwrap()),
        0,
        "handed on before the end"
    );
    assert_eq!(next(&mut rx).await, None, "nothing handed on after the end");
}
