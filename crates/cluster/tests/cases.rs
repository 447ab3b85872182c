//! The cases' bucket on a real JetStream: what a take-over reads for the
//! shards it gains.

use std::collections::BTreeSet;

use kordon_cluster::cases;
use kordon_cluster::testkit::Nats;
use kordon_cluster::{Shard, ShardCount};

fn case_numbered(n: usize) -> kordon_core::Case {
    let mut case: kordon_core::Case =
        serde_json::from_str(include_str!("../../../config/cases/rtm-2026-0117.json")).unwrap();
    case.id = kordon_core::CaseId::new(format!("RTM-{n:04}"));
    case
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shards_gained_get_their_current_cases_in_one_read() {
    let Some(nats) = Nats::start() else { return };
    let js = nats.jetstream_with_shard_stream().await;
    let store = cases::open(&js, 1).await.unwrap();
    let shards = ShardCount::DEFAULT;
    let wanted: Vec<Shard> = shards.all().take(3).collect();
    // An empty bucket: nothing to wait for, every shard asked for answered.
    let none = cases::cases_of_shards(&store, shards, &wanted)
        .await
        .unwrap();
    assert_eq!(none.len(), 3);
    assert!(none.values().all(Vec::is_empty));

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

    let found = cases::cases_of_shards(&store, shards, &wanted)
        .await
        .unwrap();
    let expected: BTreeSet<String> = (0..300)
        .filter(|n| n % 7 != 0)
        .map(|n| format!("RTM-{n:04}"))
        .filter(|id| wanted.contains(&shards.shard_of(id)))
        .collect();
    assert!(!expected.is_empty(), "the test's shards hold some cases");
    let mut got = BTreeSet::new();
    for (shard, cases) in &found {
        for case in cases {
            assert_eq!(shards.shard_of(case.id.as_str()), *shard);
            assert!(
                got.insert(case.id.as_str().to_string()),
                "{} twice",
                case.id
            );
            if case.id.as_str() == "RTM-0001" {
                assert_eq!(case.offender.device.as_str(), "OFF-REWRITTEN");
            }
        }
    }
    assert_eq!(got, expected);
}
