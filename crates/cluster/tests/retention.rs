//! The streams' age limit on a real JetStream: given in `[cluster]`, it is
//! set when a stream is made and brought to an existing one; not given, an
//! existing stream keeps the limit its operator set.

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
