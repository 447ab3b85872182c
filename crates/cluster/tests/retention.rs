//! The streams' age limit on a real JetStream: given in `[cluster]`, it is
//! set when a stream is made and brought to an existing one; not given, an
//! existing stream keeps the limit its operator set; two instances making a
//! stream at once with different limits both start.

use std::time::Duration;

use async_nats::jetstream;
use kordon_cluster::alerts::{self, ALERT_STREAM};
use kordon_cluster::bridge;
use kordon_cluster::routing::{self, shard_subject, SHARD_STREAM};
use kordon_cluster::testkit::Nats;
use kordon_cluster::Shard;

fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

async fn stream_config(js: &jetstream::Context, name: &str) -> (jetstream::stream::Config, u64) {
    let mut stream = js.get_stream(name).await.unwrap();
    let info = stream.info().await.unwrap();
    (info.config.clone(), info.state.messages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streams_take_the_age_limit_given_and_keep_their_own_when_none_is() {
    let Some(nats) = Nats::start() else { return };
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);

    // Made with a limit.
    bridge::ensure_shard_stream(&js, 1, Some(hours(48)))
        .await
        .unwrap();
    let (config, _) = stream_config(&js, SHARD_STREAM).await;
    assert_eq!(config.max_age, hours(48));
    assert_eq!(config.duplicate_window, bridge::DUPLICATE_WINDOW);
    js.publish(shard_subject(Shard(3)), "a fix".into())
        .await
        .unwrap()
        .await
        .unwrap();

    // No limit given: the stream keeps the one it has (an operator's, say).
    bridge::ensure_shard_stream(&js, 1, None).await.unwrap();
    assert_eq!(stream_config(&js, SHARD_STREAM).await.0.max_age, hours(48));

    // Another limit given: the stream is brought to it and loses nothing
    // else, neither its messages nor its duplicate window.
    bridge::ensure_shard_stream(&js, 1, Some(hours(24)))
        .await
        .unwrap();
    let (config, messages) = stream_config(&js, SHARD_STREAM).await;
    assert_eq!(config.max_age, hours(24));
    assert_eq!(config.duplicate_window, bridge::DUPLICATE_WINDOW);
    assert_eq!(config.subjects, vec![routing::SHARD_SUBJECTS.to_string()]);
    assert_eq!(messages, 1);

    // A stream made with no limit (kordon before it had the setting) gets
    // one once it is given.
    alerts::ensure_alert_stream(&js, 1, None).await.unwrap();
    assert_eq!(
        stream_config(&js, ALERT_STREAM).await.0.max_age,
        Duration::ZERO
    );
    alerts::ensure_alert_stream(&js, 1, Some(hours(72)))
        .await
        .unwrap();
    let (config, _) = stream_config(&js, ALERT_STREAM).await;
    assert_eq!(config.max_age, hours(72));
    assert_eq!(config.duplicate_window, alerts::DUPLICATE_WINDOW);
}

/// Two instances started at the same moment, configured with different
/// limits, both make the shards' stream: neither fails to start, and the
/// stream ends with one of their limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_making_a_stream_at_once_with_different_limits_both_start() {
    let Some(nats) = Nats::start() else { return };
    let first = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let second = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    for round in 0..20 {
        let (a, b) = tokio::join!(
            bridge::ensure_shard_stream(&first, 1, Some(hours(48))),
            bridge::ensure_shard_stream(&second, 1, Some(hours(24))),
        );
        assert!(a.is_ok() && b.is_ok(), "round {round}: {a:?} {b:?}");
        let age = stream_config(&first, SHARD_STREAM).await.0.max_age;
        assert!(age == hours(48) || age == hours(24), "{age:?}");
        first.delete_stream(SHARD_STREAM).await.unwrap();
    }
}
