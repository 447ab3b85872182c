//! Lease keepers on a real NATS JetStream: a `nats-server` of the test's own
//! on an ephemeral port (Debian's package, as on kordon's machines and in
//! CI), three keepers, and a proxy that can cut one of them off.
//!
//! Every keeper's view (its published tenures) stays in the check after it
//! is killed or has left: the rest of an instance may act on the last
//! tenures it was given until they end, so no other keeper may start on a
//! shard before then. What is measured is wall-clock fail-over, so the
//! bounds are the (5 s) with the lease's own figures, not tight
//! timings.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kordon_cluster::{
    ClusterSettings, InstanceId, LeaseKeeper, LeaseTimes, Retention, Shard, ShardCount, Tenures,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use kordon_cluster::testkit::Nats;

/// A TCP proxy to NATS that can be cut: every connection through it is
/// dropped, and new ones are refused, until it is healed.
struct Proxy {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, cut_rx) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if *cut_rx.borrow() {
                    continue; // dropped: refused
                }
                let mut cut_rx = cut_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_rx.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Proxy { addr, cut }
    }

    fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }
}

fn settings(url: String, name: &str, bucket: &str) -> ClusterSettings {
    ClusterSettings {
        nats_url: url,
        bucket: bucket.to_string(),
        instance: InstanceId::new(name).unwrap(),
        shards: ShardCount::DEFAULT,
        times: LeaseTimes::default().checked().unwrap(),
        replicas: 1,
        retention: Retention::default(),
    }
}

/// The published tenures of every keeper ever started in a test, and which
/// of them are gone (killed, or left).
struct Views {
    views: Vec<watch::Receiver<Tenures>>,
    gone: Vec<bool>,
}

impl Views {
    fn of(keepers: &[LeaseKeeper]) -> Views {
        Views {
            views: keepers.iter().map(LeaseKeeper::tenures).collect(),
            gone: vec![false; keepers.len()],
        }
    }

    fn add(&mut self, keeper: &LeaseKeeper) {
        self.views.push(keeper.tenures());
        self.gone.push(false);
    }

    /// Who may act for each shard now, by keeper; panics if two may, gone
    /// keepers' last tenures included.
    fn acting(&self) -> BTreeMap<Shard, usize> {
        let now = Instant::now();
        let mut owners = BTreeMap::new();
        for (i, tenures) in self.views.iter().enumerate() {
            for tenure in tenures.borrow().held.iter().filter(|t| now < t.valid_until) {
                if let Some(other) = owners.insert(tenure.shard, i) {
                    panic!(
                        "keepers {other} and {i} both act for shard {}",
                        tenure.shard
                    );
                }
            }
        }
        owners
    }

    /// Shards held by keepers still running.
    fn held_by_live(&self) -> BTreeMap<Shard, usize> {
        let mut owners = self.acting();
        owners.retain(|_, k| !self.gone[*k]);
        owners
    }

    fn held_by(&self, keeper: usize) -> Vec<Shard> {
        self.acting()
            .into_iter()
            .filter(|(_, k)| *k == keeper)
            .map(|(s, _)| s)
            .collect()
    }

    /// The live keeper holding the most shards.
    fn busiest(&self) -> usize {
        let owners = self.held_by_live();
        (0..self.views.len())
            .filter(|k| !self.gone[*k])
            .max_by_key(|k| owners.values().filter(|o| *o == k).count())
            .unwrap()
    }

    async fn until_all_owned(&self, limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.held_by_live().len() == 64 {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "not every shard owned after {limit:?}: {:?}",
                self.acting()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until each live keeper holds a fair part of the shards (the
    /// first to start takes them all, then hands the others theirs).
    async fn until_balanced(&self) {
        let start = Instant::now();
        loop {
            let owners = self.held_by_live();
            let held = |k| owners.values().filter(|o| **o == k).count();
            let live = (0..self.views.len()).filter(|k| !self.gone[*k]);
            if owners.len() == 64 && live.into_iter().all(|k| held(k) >= 10) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "not balanced after 30 s: {owners:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn three(urls: [String; 3], bucket: &str) -> Vec<LeaseKeeper> {
    let mut keepers = Vec::new();
    for (i, url) in urls.into_iter().enumerate() {
        let keeper = LeaseKeeper::start(settings(url, &format!("kordon-{i}"), bucket))
            .await
            .expect("keeper starts");
        keepers.push(keeper);
    }
    keepers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_s_shards_are_owned_again_within_5_s() {
    let Some(nats) = Nats::start() else { return };
    let mut keepers = three([nats.url(), nats.url(), nats.url()], "kill").await;
    let mut views = Views::of(&keepers);
    views.until_balanced().await;
    let victim = views.busiest();
    let its = views.held_by(victim).len();
    std::mem::replace(&mut keepers[victim], placeholder(&nats).await).abort();
    views.gone[victim] = true;
    let took = views.until_all_owned(Duration::from_secs(10)).await;
    eprintln!("{its} shards of the killed instance owned again after {took:?}");
    assert!(took <= Duration::from_secs(5), "fail-over took {took:?}");
    // A lease of 3 s renewed every 0.75 s: at least 1.5 s must have passed.
    assert!(
        took >= Duration::from_millis(1_500),
        "taken over after {took:?}: no lease waited out"
    );
    for keeper in keepers {
        keeper.leave().await;
    }
}

/// A keeper on a bucket of its own, standing in the place of one removed
/// from a test's list (so that indices stay those of the views).
async fn placeholder(nats: &Nats) -> LeaseKeeper {
    LeaseKeeper::start(settings(nats.url(), "placeholder", "placeholder"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_leaves_hands_its_shards_over_once_its_tenures_end() {
    let Some(nats) = Nats::start() else { return };
    let mut keepers = three([nats.url(), nats.url(), nats.url()], "leave").await;
    let mut views = Views::of(&keepers);
    views.until_balanced().await;
    let leaving = views.busiest();
    let start = Instant::now();
    let gone = std::mem::replace(&mut keepers[leaving], placeholder(&nats).await);
    // Left: its view keeps the tenures it last published, which the rest of
    // its instance may still act on; the others start after they end.
    let left = tokio::spawn(gone.leave());
    views.gone[leaving] = true;
    views.until_all_owned(Duration::from_secs(10)).await;
    let took = start.elapsed();
    left.await.unwrap();
    eprintln!("a clean leave: every shard owned again after {took:?}");
    let bound = LeaseTimes::default().ttl;
    assert!(took <= bound, "hand-over took {took:?}, more than a lease");
    for keeper in keepers {
        keeper.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_cut_off_from_nats_stops_before_its_lease_can_expire() {
    let Some(nats) = Nats::start() else { return };
    let proxy = Proxy::start(nats.port).await;
    let keepers = three([proxy.url(), nats.url(), nats.url()], "cut").await;
    let views = Views::of(&keepers);
    views.until_balanced().await;
    let held_at_cut = views.held_by(0);
    let cut_at = Instant::now();
    proxy.cut();
    // The cut keeper's last tenures end within a renewal's lease of the cut
    // (its last renewal was sent before it); `acting` panics if anyone
    // starts on one of its shards before they end.
    let ends: Vec<Instant> = views.views[0]
        .borrow()
        .held
        .iter()
        .map(|t| t.valid_until)
        .collect();
    let limit =
        LeaseTimes::default().ttl - LeaseTimes::default().margin + Duration::from_millis(50);
    for end in &ends {
        assert!(
            *end <= cut_at + limit,
            "a tenure of the cut keeper lasts {:?} past the cut",
            *end - cut_at
        );
    }
    let mut taken = BTreeMap::new();
    while taken.len() < held_at_cut.len() {
        assert!(
            cut_at.elapsed() < Duration::from_secs(10),
            "shards of the cut instance not taken over"
        );
        let owners = views.acting();
        for shard in &held_at_cut {
            if owners.get(shard).is_some_and(|k| *k != 0) {
                taken.entry(*shard).or_insert_with(|| cut_at.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let last_end = ends.iter().max().map(|e| *e - cut_at);
    eprintln!(
        "cut off: {} shards; the instance's tenures ended by {last_end:?} after the cut, the last shard was taken over {:?} after it",
        held_at_cut.len(),
        taken.values().max().unwrap()
    );
    let mut keepers = keepers;
    keepers.remove(0).abort();
    for keeper in keepers {
        keeper.leave().await;
    }
}

/// The figure the issue asks for: fail-over time over ten kills, each of
/// the keeper holding the most shards, a new keeper started in its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_over_over_ten_kills() {
    let Some(nats) = Nats::start() else { return };
    let mut keepers = three([nats.url(), nats.url(), nats.url()], "ten").await;
    let mut views = Views::of(&keepers);
    views.until_balanced().await;
    let mut times = Vec::new();
    for round in 0..10 {
        let victim = views.busiest();
        std::mem::replace(&mut keepers[victim], placeholder(&nats).await).abort();
        views.gone[victim] = true;
        times.push(views.until_all_owned(Duration::from_secs(10)).await);
        let name = format!("kordon-{}", 3 + round);
        let keeper = LeaseKeeper::start(settings(nats.url(), &name, "ten"))
            .await
            .unwrap();
        views.add(&keeper);
        keepers.push(keeper);
        // The newcomer is a member before the next kill.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    times.sort();
    let (p50, max) = (times[times.len() / 2], times[times.len() - 1]);
    eprintln!("fail-over over 10 kills: p50 {p50:?}, max {max:?} (all: {times:?})");
    assert!(max <= Duration::from_secs(5), "a fail-over took {max:?}");
    for keeper in keepers {
        keeper.leave().await;
    }
}
