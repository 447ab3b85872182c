//! Simulation of the lease rules (TigerBeetle-style): several instances'
//! `LeaseDesk`s over a simulated key-value bucket with compare-and-swap,
//! slow and lost answers, partitions, crashes, restarts and clocks that run
//! at different rates, all on simulated time from a seed.
//!
//! Checked at every step: no two live instances hold a tenure for one shard
//! at the same instant, counting every tenure handed out to the rest of the
//! instance until its own end (a copy may be acted on until then, whatever
//! the desk has decided since), and a shard's epochs only grow. Checked at the end, once the
//! faults have stopped: every shard has an owner. A seed that ever fails
//! becomes a named test below.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use kordon_cluster::{
    Epoch, InstanceId, Key, LeaseDesk, LeaseTimes, LeaseValue, Observation, Outcome, Revision,
    Shard, ShardCount, Tenure, Write,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TICK: Duration = Duration::from_millis(50);
/// How long a write waits for its answer before it counts as failed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// The bucket: every key's latest revision and value, and the log the
/// watches read.
#[derive(Default)]
struct Bucket {
    next: Revision,
    latest: BTreeMap<String, (Revision, Option<LeaseValue>)>,
    log: Vec<(Revision, String, Option<LeaseValue>)>,
}

impl Bucket {
    fn apply(&mut self, me: &InstanceId, write: &Write) -> Outcome {
        let key = write.key(me).to_string();
        let current = self.latest.get(&key).map_or(0, |(r, _)| *r);
        let expect = match write {
            Write::Claim { expect, .. }
            | Write::Renew { expect, .. }
            | Write::Release { expect, .. } => Some(*expect),
            Write::Heartbeat | Write::Leave => None,
        };
        if expect.is_some_and(|e| e != current) {
            return Outcome::Conflict;
        }
        self.next += 1;
        let value = write.value(me);
        self.latest.insert(key.clone(), (self.next, value.clone()));
        self.log.push((self.next, key, value));
        Outcome::Written(self.next)
    }

    fn observation(key: &str, revision: Revision, value: &Option<LeaseValue>) -> Observation {
        match Key::parse(key).expect("a key of ours") {
            Key::Shard(shard) => Observation::Lease {
                shard,
                revision,
                value: value.clone(),
            },
            Key::Member(instance) => Observation::Member {
                instance,
                revision,
                present: value.is_some(),
            },
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Link {
    Up,
    /// Cut from the bucket until then: its writes fail, its watch stalls.
    CutUntil(Duration),
    Dead,
}

struct Node {
    id: InstanceId,
    desk: LeaseDesk,
    link: Link,
    /// How far this node's watch has read the log (`None`: no watch yet).
    read: Option<usize>,
    /// Its clock's rate against simulated time.
    rate: f64,
    /// Bumped on every restart: answers for an earlier life are dropped.
    life: u32,
    /// The tenures handed out to the rest of the instance, by shard: each
    /// may be acted on until its end, on this node's clock.
    handed: HashMap<Shard, Tenure>,
    /// Leaving cleanly: gone once the desk has left.
    stopping: bool,
}

#[derive(Debug)]
enum Event {
    Poll(usize),
    /// A write reaches the bucket.
    Arrive {
        node: usize,
        life: u32,
        write: Write,
        sent: Instant,
    },
    /// Its answer reaches the node.
    Answer {
        node: usize,
        life: u32,
        write: Write,
        sent: Instant,
        outcome: Outcome,
    },
}

struct Sim {
    rng: ChaCha8Rng,
    base: Instant,
    now: Duration,
    bucket: Bucket,
    nodes: Vec<Node>,
    queue: BinaryHeap<Reverse<(Duration, u64, usize)>>,
    events: HashMap<usize, Event>,
    next_event: usize,
    seq: u64,
    shards: ShardCount,
    times: LeaseTimes,
    /// Per shard: the greatest epoch any node has acted with.
    acted: Vec<Option<Epoch>>,
}

impl Sim {
    fn new(seed: u64, nodes: usize, shards: ShardCount, times: LeaseTimes) -> Sim {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let base = Instant::now();
        let nodes: Vec<Node> = (0..nodes)
            .map(|i| {
                let id = InstanceId::new(format!("kordon-{i}")).unwrap();
                Node {
                    desk: LeaseDesk::new(id.clone(), shards, times),
                    id,
                    link: Link::Up,
                    read: None,
                    rate: rng.random_range(0.995..1.005),
                    life: 0,
                    handed: HashMap::new(),
                    stopping: false,
                }
            })
            .collect();
        let mut sim = Sim {
            rng,
            base,
            now: Duration::ZERO,
            bucket: Bucket::default(),
            nodes,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            next_event: 0,
            seq: 0,
            shards,
            times,
            acted: vec![None; usize::from(shards.get())],
        };
        for i in 0..sim.nodes.len() {
            let start = Duration::from_millis(sim.rng.random_range(0..200));
            sim.schedule(start, Event::Poll(i));
        }
        sim
    }

    fn schedule(&mut self, after: Duration, event: Event) {
        let id = self.next_event;
        self.next_event += 1;
        self.seq += 1;
        self.events.insert(id, event);
        self.queue.push(Reverse((self.now + after, self.seq, id)));
    }

    /// A node's own clock reading.
    fn clock(&self, node: usize) -> Instant {
        self.base + self.now.mul_f64(self.nodes[node].rate)
    }

    fn up(&self, node: usize) -> bool {
        match self.nodes[node].link {
            Link::Up => true,
            Link::CutUntil(until) => self.now >= until,
            Link::Dead => false,
        }
    }

    fn latency(&mut self) -> Duration {
        Duration::from_micros(self.rng.random_range(200..30_000))
    }

    /// Runs until `until`, checking safety after every event.
    fn run_until(&mut self, until: Duration) {
        while let Some(Reverse((at, _, id))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = at;
            let event = self.events.remove(&id).expect("scheduled");
            self.handle(event);
            self.check_safety();
        }
        self.now = until;
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Poll(node) => self.poll(node),
            Event::Arrive {
                node,
                life,
                write,
                sent,
            } => {
                let id = self.nodes[node].id.clone();
                let outcome = self.bucket.apply(&id, &write);
                // The answer is lost if the node is cut off meanwhile.
                let back = self.latency();
                let answer = Event::Answer {
                    node,
                    life,
                    write,
                    sent,
                    outcome,
                };
                self.schedule(back, answer);
            }
            Event::Answer {
                node,
                life,
                write,
                sent,
                outcome,
            } => {
                if self.nodes[node].life != life || self.nodes[node].link == Link::Dead {
                    return;
                }
                let now = self.clock(node);
                let outcome = if self.up(node) {
                    outcome
                } else {
                    Outcome::Failed
                };
                self.nodes[node].desk.written(&write, sent, outcome, now);
                self.hand_out(node);
            }
        }
    }

    fn poll(&mut self, node: usize) {
        if self.nodes[node].link == Link::Dead {
            return;
        }
        if self.up(node) {
            self.nodes[node].link = Link::Up;
            self.deliver_watch(node);
        }
        let now = self.clock(node);
        let writes = self.nodes[node].desk.poll(now);
        for write in writes {
            self.send(node, write, now);
        }
        self.hand_out(node);
        if self.nodes[node].stopping && self.nodes[node].desk.has_left() {
            self.crash(node); // gone, having left cleanly
            return;
        }
        self.schedule(TICK, Event::Poll(node));
    }

    /// What the lease keeper publishes after each step: the desk's tenures,
    /// kept (with the latest end of each) as the rest of the instance holds them.
    fn hand_out(&mut self, node: usize) {
        let now = self.clock(node);
        let n = &mut self.nodes[node];
        for tenure in n.desk.tenures(now) {
            let kept = n.handed.entry(tenure.shard).or_insert(tenure);
            if kept.epoch != tenure.epoch || tenure.valid_until > kept.valid_until {
                *kept = tenure;
            }
        }
    }

    fn send(&mut self, node: usize, write: Write, sent: Instant) {
        let life = self.nodes[node].life;
        if self.up(node) {
            let there = self.latency();
            self.schedule(
                there,
                Event::Arrive {
                    node,
                    life,
                    write,
                    sent,
                },
            );
        } else {
            let answer = Event::Answer {
                node,
                life,
                write,
                sent,
                outcome: Outcome::Failed,
            };
            self.schedule(WRITE_TIMEOUT, answer);
        }
    }

    fn deliver_watch(&mut self, node: usize) {
        let now = self.clock(node);
        if let Some(from) = self.nodes[node].read {
            let entries: Vec<Observation> = self.bucket.log[from..]
                .iter()
                .map(|(rev, key, value)| Bucket::observation(key, *rev, value))
                .collect();
            for observation in entries {
                self.nodes[node].desk.observe(observation, now);
            }
        } else {
            // A new watch: the latest of each key, then "caught up".
            let latest: Vec<Observation> = self
                .bucket
                .latest
                .iter()
                .map(|(key, (rev, value))| Bucket::observation(key, *rev, value))
                .collect();
            for observation in latest {
                self.nodes[node].desk.observe(observation, now);
            }
            self.nodes[node].desk.observe(Observation::CaughtUp, now);
        }
        self.nodes[node].read = Some(self.bucket.log.len());
    }

    fn check_safety(&mut self) {
        for shard in self.shards.all() {
            let mut acting = Vec::new();
            for (i, node) in self.nodes.iter().enumerate() {
                if node.link == Link::Dead {
                    continue;
                }
                let held = node
                    .handed
                    .get(&shard)
                    .filter(|t| self.clock(i) < t.valid_until);
                if let Some(tenure) = held {
                    acting.push((i, tenure.epoch));
                }
            }
            assert!(
                acting.len() <= 1,
                "at {:?}, shard {shard} has {} owners acting: {acting:?}",
                self.now,
                acting.len()
            );
            if let Some((node, epoch)) = acting.first() {
                let slot = &mut self.acted[usize::from(shard.0)];
                assert!(
                    slot.is_none_or(|last| *epoch >= last),
                    "at {:?}, node {node} acts for shard {shard} with epoch {epoch}, after {slot:?}",
                    self.now
                );
                *slot = Some(*epoch);
            }
        }
    }

    fn crash(&mut self, node: usize) {
        self.nodes[node].link = Link::Dead;
    }

    /// A new life for a crashed node, with the same name and a fresh desk.
    fn restart(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        n.life += 1;
        n.link = Link::Up;
        n.read = None;
        n.desk = LeaseDesk::new(n.id.clone(), self.shards, self.times);
        n.handed.clear();
        n.stopping = false;
        self.schedule(Duration::from_millis(10), Event::Poll(node));
    }

    /// A clean stop: the node leaves, and is gone once it has.
    fn stop(&mut self, node: usize) {
        self.nodes[node].desk.leave();
        self.nodes[node].stopping = true;
    }

    fn owners_acting(&self) -> Vec<Option<usize>> {
        self.shards
            .all()
            .map(|shard| {
                (0..self.nodes.len()).find(|&i| {
                    self.nodes[i].link != Link::Dead
                        && self.nodes[i].desk.may_act(shard, self.clock(i)).is_some()
                })
            })
            .collect()
    }

    /// How long from now until every shard has a live owner acting (None:
    /// not within `limit`).
    fn time_until_all_owned(&mut self, limit: Duration) -> Option<Duration> {
        let start = self.now;
        while self.now < start + limit {
            if self.owners_acting().iter().all(Option::is_some) {
                return Some(self.now - start);
            }
            let next = self.now + Duration::from_millis(10);
            self.run_until(next);
        }
        None
    }
}

fn times() -> LeaseTimes {
    LeaseTimes::default().checked().unwrap()
}

/// A random schedule of faults over `faulty` seconds, then a quiet spell.
fn chaos(seed: u64, nodes: usize) {
    let mut sim = Sim::new(seed, nodes, ShardCount::new(16).unwrap(), times());
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let faulty = Duration::from_secs(60);
    while sim.now < faulty {
        let step = Duration::from_millis(rng.random_range(100..3_000));
        let until = sim.now + step;
        sim.run_until(until);
        let node = rng.random_range(0..sim.nodes.len());
        let dead = sim.nodes[node].link == Link::Dead;
        let cut = Duration::from_millis(rng.random_range(200..8_000));
        match rng.random_range(0..10) {
            0 => sim.crash(node),
            1 if dead => sim.restart(node),
            2 if !dead => sim.nodes[node].link = Link::CutUntil(sim.now + cut),
            3 if !dead => sim.stop(node),
            _ => {}
        }
    }
    // Faults stop: a node leaving finishes, then every node comes back.
    sim.run_until(sim.now + Duration::from_secs(5));
    for node in 0..sim.nodes.len() {
        match sim.nodes[node].link {
            Link::Dead => sim.restart(node),
            Link::CutUntil(_) => sim.nodes[node].link = Link::Up,
            Link::Up => {}
        }
    }
    let settled = sim.time_until_all_owned(Duration::from_secs(30));
    assert!(
        settled.is_some(),
        "seed {seed}: some shard had no owner 30 s after the faults stopped"
    );
}

#[test]
fn no_two_instances_ever_act_for_one_shard_over_many_seeds() {
    for seed in 0..150 {
        chaos(seed, 3);
    }
}

#[test]
fn one_instance_alone_keeps_every_shard_through_faults() {
    for seed in 1_000..1_060 {
        chaos(seed, 1);
    }
}

#[test]
fn three_instances_share_the_shards() {
    let mut sim = Sim::new(7, 3, ShardCount::DEFAULT, times());
    // Start-up, then the hand-overs to preferred owners (kept 2 leases first).
    sim.run_until(Duration::from_secs(30));
    let owners = sim.owners_acting();
    assert!(owners.iter().all(Option::is_some), "{owners:?}");
    for node in 0..3 {
        let held = owners.iter().filter(|o| **o == Some(node)).count();
        assert!(
            (10..=35).contains(&held),
            "node {node} holds {held} of 64: {owners:?}"
        );
    }
}

#[test]
fn a_killed_instance_s_shards_are_owned_again_within_5_s() {
    let mut sim = Sim::new(11, 3, ShardCount::DEFAULT, times());
    sim.run_until(Duration::from_secs(30));
    let owners = sim.owners_acting();
    let victim = (0..3)
        .max_by_key(|n| owners.iter().filter(|o| **o == Some(*n)).count())
        .unwrap();
    sim.crash(victim);
    let took = sim
        .time_until_all_owned(Duration::from_secs(10))
        .expect("owned again");
    // The lease (3 s) and a tick: well within the 5 s.
    assert!(took <= Duration::from_secs(4), "fail-over took {took:?}");
    assert!(
        took >= Duration::from_secs(1),
        "fail-over in {took:?}: a lease was not waited out"
    );
}

#[test]
fn a_clean_stop_hands_the_shards_over_once_its_tenures_have_run_out() {
    let mut sim = Sim::new(13, 3, ShardCount::DEFAULT, times());
    sim.run_until(Duration::from_secs(30));
    sim.stop(0);
    // At once node 0 acts for nothing; its shards are deleted, and taken,
    // once the tenures it handed out have run out (ttl - margin after its
    // last renewal at most), nobody acting on both sides (checked at every
    // step).
    let took = sim
        .time_until_all_owned(Duration::from_secs(10))
        .expect("owned again");
    let bound = times().ttl - times().margin + Duration::from_millis(500);
    assert!(took <= bound, "hand-over took {took:?}");
    sim.run_until(sim.now + Duration::from_secs(1));
    assert_eq!(sim.nodes[0].link, Link::Dead, "the node left");
}

#[test]
fn an_instance_cut_off_stops_acting_before_anyone_else_starts() {
    let mut sim = Sim::new(17, 3, ShardCount::DEFAULT, times());
    sim.run_until(Duration::from_secs(30));
    let held_before: Vec<Shard> = sim
        .shards
        .all()
        .filter(|s| sim.nodes[0].desk.may_act(*s, sim.clock(0)).is_some())
        .collect();
    assert!(!held_before.is_empty());
    sim.nodes[0].link = Link::CutUntil(sim.now + Duration::from_secs(20));
    // Safety is checked at every step; here, that the cut node stops within a lease.
    sim.run_until(sim.now + times().ttl);
    let still = held_before
        .iter()
        .filter(|s| sim.nodes[0].desk.may_act(**s, sim.clock(0)).is_some())
        .count();
    assert_eq!(
        still, 0,
        "the cut-off instance still acts for {still} shards after a lease"
    );
    let took = sim
        .time_until_all_owned(Duration::from_secs(10))
        .expect("owned again");
    assert!(took <= Duration::from_secs(2), "{took:?}");
}
