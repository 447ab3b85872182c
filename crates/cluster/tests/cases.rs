//! The cases' bucket on a real JetStream: what a shard host reads of it
//! once, and follows after, so that a take-over finds its shards' cases in
//! memory.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use kordon_cluster::cases::{self, CaseChange, CaseChanges, CasesByShard};
use kordon_cluster::testkit::Nats;
use kordon_cluster::{Shard, ShardCount};

fn case_numbered(n: usize) -> kordon_core::Case {
    let mut case: kordon_core::Case =
        serde_json::from_str(include_str!("../../../config/cases/rtm-2026-0117.json")).unwrap();
    case.id = kordon_core::CaseId::new(format!("RTM-{n:04}"));
    case
}

/// The ids of the cases `known` holds for `wanted`, each checked to be in
/// the shard it was given for.
fn ids_of(known: &CasesByShard, shards: ShardCount, wanted: &[Shard]) -> BTreeSet<String> {
    let mut got = BTreeSet::new();
    for shard in wanted {
        for case in known.of_shard(*shard) {
            assert_eq!(shards.shard_of(case.id.as_str()), *shard);
            assert!(
                got.insert(case.id.as_str().to_string()),
                "{} twice",
                case.id.as_str()
            );
        }
    }
    got
}

async fn next_change(changes: &mut CaseChanges) -> CaseChange {
    tokio::time::timeout(Duration::from_secs(10), changes.next())
        .await
        .expect("a change within 10 s")
        .expect("the watch goes on")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_reads_the_bucket_once_then_each_change_after_in_order() {
    let Some(nats) = Nats::start() else { return };
    let js = nats.jetstream_with_shard_stream().await;
    let store = cases::open(&js, 1).await.unwrap();
    let shards = ShardCount::DEFAULT;
    let wanted: Vec<Shard> = shards.all().take(3).collect();
    // An empty bucket: nothing to wait for.
    let (none, _) = cases::read_and_follow(&store, shards).await.unwrap();
    assert!(none.is_empty());
    assert!(wanted.iter().all(|s| none.of_shard(*s).is_empty()));

    for n in 0..300 {
        cases::put(&store, &case_numbered(n)).await.unwrap();
    }
    // Rewritten (the latest counts once), deleted, and one nobody can read.
    let mut rewritten = case_numbered(1);
    rewritten.offender.device = kordon_core::DeviceId::new("OFF-REWRITTEN");
    cases::put(&store, &rewritten).await.unwrap();
    for n in (0..300).step_by(7) {
        cases::delete(&store, &format!("RTM-{n:04}")).await.unwrap();
    }
    store.put("RTM-9999", "not a case".into()).await.unwrap();

    let (mut known, mut changes) = cases::read_and_follow(&store, shards).await.unwrap();
    let kept = |n: &usize| !n.is_multiple_of(7);
    assert_eq!(known.len(), (0..300).filter(kept).count());
    let expected: BTreeSet<String> = (0..300)
        .filter(kept)
        .map(|n| format!("RTM-{n:04}"))
        .filter(|id| wanted.contains(&shards.shard_of(id)))
        .collect();
    assert!(!expected.is_empty(), "the test's shards hold some cases");
    assert_eq!(ids_of(&known, shards, &wanted), expected);
    let shard_of_1 = shards.shard_of("RTM-0001");
    let one = known.of_shard(shard_of_1);
    let one = one.iter().find(|c| c.id.as_str() == "RTM-0001").unwrap();
    assert_eq!(one.offender.device.as_str(), "OFF-REWRITTEN");

    // After the read: an unreadable version of a case is not passed on (its
    // last readable one stays), then a new case and a deletion, in order.
    store.put("RTM-0002", "garbled".into()).await.unwrap();
    cases::put(&store, &case_numbered(300)).await.unwrap();
    cases::delete(&store, "RTM-0003").await.unwrap();
    let put = next_change(&mut changes).await;
    assert_eq!(put.id, "RTM-0300");
    assert!(put.case.is_some());
    let deleted = next_change(&mut changes).await;
    assert_eq!(deleted.id, "RTM-0003");
    assert!(deleted.case.is_none());
    assert!(deleted.revision > put.revision);
    for change in [put, deleted] {
        known.apply(&change);
    }
    let all: Vec<Shard> = shards.all().collect();
    let everything = ids_of(&known, shards, &all);
    assert!(everything.contains("RTM-0002"), "kept as last read");
    assert!(everything.contains("RTM-0300"));
    assert!(!everything.contains("RTM-0003"));
    assert_eq!(everything.len(), (0..300).filter(kept).count());
}
