//! Instances of a new cluster first starting at once, on a nats-server of
//! the test's own: each finds no bucket and no store and makes them, the
//! server takes one maker's and refuses the rest, and every instance must
//! still join (seen on CI: the third of three instances exited with
//! "kordon_snapshots: bucket creation failed: subjects overlap with an
//! existing stream"). Here the race is lost rarely: before the fix, one
//! run in five of this file, with a `dd` filling the disk, failed for the
//! cases' bucket (the server's window is the new stream's files).

use kordon_cluster::snapshots::ShardSnapshots;
use kordon_cluster::testkit::Nats;
use kordon_cluster::{cases, keeper};

/// How many instances start at once: more than the three of a cluster's
/// tests, so that the race is lost by some on every run.
const AT_ONCE: usize = 8;

/// Each round on a new nats-server: the race is lost only when the makers'
/// requests meet in the server, not on every start.
const ROUNDS: usize = 20;

/// Each instance on a connection of its own, as separate processes are.
async fn contexts(nats: &Nats) -> Vec<async_nats::jetstream::Context> {
    let mut contexts = Vec::new();
    for _ in 0..AT_ONCE {
        let client = keeper::connect(&nats.url()).await.unwrap();
        contexts.push(async_nats::jetstream::new(client));
    }
    contexts
}

/// Round after round on a new server, `open` for every instance at once:
/// each of them must get what it opens.
async fn every_instance_opens<F, Fut, T, E>(open: F)
where
    F: Fn(async_nats::jetstream::Context) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Debug,
{
    for _round in 0..ROUNDS {
        let Some(nats) = Nats::start() else { return };
        let opened =
            futures_util::future::join_all(contexts(&nats).await.into_iter().map(&open)).await;
        for (instance, result) in opened.iter().enumerate() {
            if let Err(e) = result {
                panic!("instance {instance} did not open it: {e:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_at_once_all_open_the_snapshots_store() {
    every_instance_opens(|js| async move { ShardSnapshots::open(&js, 1).await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_at_once_all_open_the_cases_bucket() {
    every_instance_opens(|js| async move { cases::open(&js, 1).await }).await;
}
