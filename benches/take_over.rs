//! What a cluster take-over spends on cases (issue 15): each instance
//! reads the cases' bucket once, when it starts, and keeps every case by
//! shard as it follows the bucket (`kordon_cluster::cases::CasesByShard`),
//! so that a new owner takes its shards' cases from memory. This measures
//! both against the number of cases: the start's read of the bucket, and
//! the take-over's cases for 1, 21 (a third of 64: one of three instances
//! failing) and all 64 shards.
//!
//! It starts a `nats-server` of its own (JetStream, ephemeral port, a
//! temporary directory) and fills the bucket with copies of the shipped
//! case `config/cases/rtm-2026-0342.json` (an exclusion zone and a contact
//! ban, 2 KB of JSON).
//!
//! ```text
//! cargo bench -p kordon-benches --bench take_over -- [--cases 100000]
//! ```
//!
//! It also measures what every instance keeps of every case, whichever
//! shards it holds (`docs/sizing.md`): the cases by shard, the bridge's
//! device book and the case API's directory, by counting the bytes they
//! hold.
//!
//! `KORDON_BENCH_QUICK=1` takes 2,000 cases. Without a `nats-server` it
//! says so and measures the memory only.

use std::time::{Duration, Instant};

use kordon_cluster::cases::{self, CaseChange, CasesByShard};
use kordon_cluster::routing::DeviceBook;
use kordon_cluster::testkit::Nats;
use kordon_cluster::{Shard, ShardCount};
use kordon_core::{Case, CaseId, DeviceId};
use kordon_server::cluster_node::case_api::CaseDirectory;

/// What each instance keeps of every case is measured, not estimated.
#[path = "shared/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::held_by;

/// Reads of each kind, for the median.
const ROUNDS: usize = 5;

/// Puts waiting for their acknowledgement at once while the bucket fills.
const PUTS_IN_FLIGHT: usize = 256;

/// Case `n`: the template with an id and devices of its own.
fn case_numbered(template: &Case, n: usize) -> Case {
    let mut case = template.clone();
    case.id = CaseId::new(format!("RTM-{n:07}"));
    case.offender.device = DeviceId::new(format!("OFF-{n:07}"));
    for (i, protected) in case.protected.iter_mut().enumerate() {
        if protected.device.is_some() {
            protected.device = Some(DeviceId::new(format!("VIC-{n:07}-{i}")));
        }
    }
    case
}

/// What every instance keeps of every case, whatever shards it holds: the
/// shard host's cases ([`CasesByShard`]), the bridge's device book
/// ([`DeviceBook`], with duties) and the case API's directory
/// ([`CaseDirectory`]), each built from `count` cases as following the
/// bucket builds it.
fn per_instance_memory(template: &Case, count: usize) {
    let devices: usize = (0..count)
        .map(|n| cases::devices_of(&case_numbered(template, n)).len())
        .sum();
    let (known, known_bytes) = held_by(|| {
        let mut known = CasesByShard::new(ShardCount::DEFAULT);
        for n in 0..count {
            let case = case_numbered(template, n);
            known.apply(&CaseChange {
                id: case.id.as_str().to_string(),
                case: Some(case),
                revision: n as u64 + 1,
            });
        }
        known
    });
    println!(
        "take_over: the cases by shard (shard host) of {count} cases: {:.1} MB, {:.0} B per case",
        known_bytes as f64 / 1e6,
        known_bytes as f64 / count as f64
    );
    let (book, book_bytes) = held_by(|| {
        let mut book = DeviceBook::new(ShardCount::DEFAULT);
        for n in 0..count {
            let case = case_numbered(template, n);
            book.put_case(case.id.as_str(), cases::devices_of(&case));
        }
        book
    });
    let (directory, directory_bytes) = held_by(|| {
        let mut directory = CaseDirectory::default();
        for n in 0..count {
            directory.list(&case_numbered(template, n));
        }
        directory
    });
    for (what, bytes) in [
        ("the device book (bridge)", book_bytes),
        ("the case directory (case API)", directory_bytes),
    ] {
        println!(
            "take_over: {what} of {count} cases, {devices} devices: {:.1} MB, {:.0} B per device",
            bytes as f64 / 1e6,
            bytes as f64 / devices as f64
        );
    }
    drop((known, book, directory));
}

fn cases_wanted() -> usize {
    if std::env::var("KORDON_BENCH_QUICK").is_ok() {
        return 2_000;
    }
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--cases")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("--cases takes a whole number"))
        .unwrap_or(100_000)
}

async fn fill(store: &async_nats::jetstream::kv::Store, template: &Case, count: usize) -> Duration {
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    let started = Instant::now();
    stream::iter(0..count)
        .map(|n| {
            let case = case_numbered(template, n);
            async move { cases::put(store, &case).await }
        })
        .buffer_unordered(PUTS_IN_FLIGHT)
        .try_for_each(|_| async { Ok(()) })
        .await
        .expect("the bucket takes the cases");
    started.elapsed()
}

/// The median of [`ROUNDS`] times of `f`, and its last result.
async fn median<T, F: std::future::Future<Output = T>>(mut f: impl FnMut() -> F) -> (Duration, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        last = Some(f().await);
        times.push(started.elapsed());
    }
    times.sort();
    (times[ROUNDS / 2], last.expect("at least one round"))
}

fn main() {
    let count = cases_wanted();
    let template: Case = serde_json::from_str(include_str!("../config/cases/rtm-2026-0342.json"))
        .expect("the shipped case reads");
    per_instance_memory(&template, count);
    let Some(nats) = Nats::start() else {
        eprintln!("take_over: no nats-server, the take-over's read not measured");
        return;
    };
    let json_bytes = serde_json::to_vec(&template)
        .expect("a case serialises")
        .len();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let js = nats.jetstream_with_shard_stream().await;
        let store = cases::open(&js, 1).await.expect("the cases' bucket");
        let filled = fill(&store, &template, count).await;
        println!(
            "take_over: {count} cases of {json_bytes} bytes of JSON put in {:.1} s ({:.0}/s)",
            filled.as_secs_f64(),
            count as f64 / filled.as_secs_f64()
        );
        let (took, known) = median(|| async {
            let (known, _changes) = cases::read_and_follow(&store, ShardCount::DEFAULT)
                .await
                .expect("the bucket reads");
            known
        })
        .await;
        assert_eq!(known.len(), count, "every case read");
        println!(
            "take_over: an instance's start reads the {count} cases in {:.0} ms (median of {ROUNDS}), {:.2} µs per case",
            took.as_secs_f64() * 1e3,
            took.as_secs_f64() * 1e6 / count as f64
        );
        let all: Vec<Shard> = ShardCount::DEFAULT.all().collect();
        for shards in [1, 21, 64] {
            let (took, found) = median(|| async {
                let taken: Vec<Vec<Case>> =
                    all[..shards].iter().map(|s| known.of_shard(*s)).collect();
                taken.iter().map(Vec::len).sum::<usize>()
            })
            .await;
            println!(
                "take_over: a take-over of {shards:>2} of 64 shards takes their {found} cases from memory in {:.1} ms (median of {ROUNDS}), {:.2} µs per case taken",
                took.as_secs_f64() * 1e3,
                took.as_secs_f64() * 1e6 / found.max(1) as f64
            );
        }
    });
}
