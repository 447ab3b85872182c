//! Shard leases: which instance may act for a shard, and until when.
//!
//! The leases live in a JetStream key-value bucket (see [`crate::keeper`],
//! which drives this module). Every write to a key is a compare-and-swap on
//! the key's revision, and a revision is a sequence number of the bucket's
//! stream: it only ever grows. The revision of the write that took a shard is
//! the tenure's **epoch**, carried by everything the owner publishes so that a
//! reader can ignore a deposed owner's late output.
//!
//! Nobody's clock is compared with anybody else's. The two rules that keep
//! two instances from acting for one shard at once are both read on the
//! instance's own monotonic clock:
//! - **The owner fences itself.** A write that renews the lease was *sent* at
//!   `s`; once it succeeded, the owner may act until `s + ttl - margin`, and
//!   not a moment longer unless a later renewal succeeds.
//! - **A contender waits out a whole lease.** It may take a shard over only
//!   once the lease's revision has stayed the same for `ttl` since it *first
//!   saw* that revision. It saw it after it was written, so after `s`: by then
//!   the owner has stopped for at least `margin` (which covers the two
//!   clocks' different rates and a late reading of either).
//!
//! A contender's take-over is itself a compare-and-swap on the revision it
//! waited on, so a renewal that lands first wins, and of several contenders
//! one wins. An instance giving a lease up (a hand-over, a clean leave)
//! stops acting at once and deletes the lease once the tenure it handed out
//! has ended (a copy of it may be acted on until then): the next owner
//! claims it on seeing the delete, with no lease to wait out.
//!
//! Which instance should hold a shard is a rendezvous hash over the members
//! alive (`member.<id>` keys, renewed like leases): an owner hands a shard it
//! is not preferred for to the preferred instance once that one has been
//! alive for a whole lease, and a free shard goes first to its preferred
//! instance, then, after a short grace, to anyone.
//!
//! This module never does IO and never reads a clock: the caller passes
//! `now`, what the bucket said, and how its writes went.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::shards::{self, Shard, ShardCount};

/// A revision of a key in the lease bucket (0: the key was never written).
pub type Revision = u64;

/// The revision of the write that began a tenure. A later tenure of the same
/// shard always has a greater epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An instance's name in the cluster: the key of its membership, the owner
/// written in its leases. Letters, digits, `-` and `_` (a key-value key
/// token), 1 to 64 of them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an instance id is 1 to 64 letters, digits, '-' or '_', not {0:?}")]
pub struct BadInstanceId(pub String);

impl InstanceId {
    pub fn new(id: impl Into<String>) -> Result<InstanceId, BadInstanceId> {
        let id = id.into();
        let fits = (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if fits {
            Ok(InstanceId(id))
        } else {
            Err(BadInstanceId(id))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for InstanceId {
    type Error = BadInstanceId;
    fn try_from(id: String) -> Result<Self, Self::Error> {
        InstanceId::new(id)
    }
}

impl From<InstanceId> for String {
    fn from(id: InstanceId) -> String {
        id.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0) // honours a width, for status tables
    }
}

/// How long a lease lasts and how often it is renewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTimes {
    /// A contender waits this long on an unchanged lease before taking it.
    pub ttl: Duration,
    /// An owner renews this often.
    pub renew_every: Duration,
    /// An owner stops acting this long before a contender may start.
    pub margin: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "lease times: renewing every {renew_every:?} with a margin of {margin:?} must leave room \
     for a renewal to fail once within a lease of {ttl:?} (2 × renew_every + margin ≤ ttl)"
)]
pub struct BadLeaseTimes {
    pub ttl: Duration,
    pub renew_every: Duration,
    pub margin: Duration,
}

impl Default for LeaseTimes {
    /// Fail-over within about 3 s of an instance's death: the issue asks
    /// for 5.
    fn default() -> Self {
        LeaseTimes {
            ttl: Duration::from_secs(3),
            renew_every: Duration::from_millis(750),
            margin: Duration::from_millis(750),
        }
    }
}

impl LeaseTimes {
    pub fn checked(self) -> Result<LeaseTimes, BadLeaseTimes> {
        let LeaseTimes {
            ttl,
            renew_every,
            margin,
        } = self;
        if renew_every.is_zero() || margin.is_zero() || renew_every * 2 + margin > ttl {
            return Err(BadLeaseTimes {
                ttl,
                renew_every,
                margin,
            });
        }
        Ok(self)
    }

    /// How long an owner may act on a renewal sent at `sent`.
    fn valid_until(&self, sent: Instant) -> Instant {
        sent + self.ttl - self.margin
    }
}

/// What a lease key holds. The epoch is absent on the write that begins a
/// tenure (its own revision is the epoch) and repeated by every renewal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseValue {
    pub owner: InstanceId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Epoch>,
}

/// The bucket's keys: `shard.<n>` for a lease, `member.<id>` for a member.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    Shard(Shard),
    Member(InstanceId),
}

impl Key {
    pub fn parse(key: &str) -> Option<Key> {
        if let Some(n) = key.strip_prefix("shard.") {
            return n.parse().ok().map(|n| Key::Shard(Shard(n)));
        }
        let id = key.strip_prefix("member.")?;
        InstanceId::new(id).ok().map(Key::Member)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Shard(shard) => write!(f, "shard.{shard}"),
            Key::Member(id) => write!(f, "member.{id}"),
        }
    }
}

/// What the bucket said about a key, in the order it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// A lease was written (`Some`) or deleted (`None`).
    Lease {
        shard: Shard,
        revision: Revision,
        value: Option<LeaseValue>,
    },
    /// A member renewed its membership (`present`) or left.
    Member {
        instance: InstanceId,
        revision: Revision,
        present: bool,
    },
    /// Everything the bucket held when watching began has been observed.
    CaughtUp,
}

/// A write to the bucket the caller is asked to make. Every lease write is
/// conditional on `expect`, the key's revision as last known here (0: no
/// such key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Begin a tenure: the value names this instance, without an epoch.
    Claim { shard: Shard, expect: Revision },
    /// Extend the tenure that began at `epoch`.
    Renew {
        shard: Shard,
        expect: Revision,
        epoch: Epoch,
    },
    /// Delete the lease (this instance has already stopped acting).
    Release { shard: Shard, expect: Revision },
    /// Renew this instance's membership (unconditionally).
    Heartbeat,
    /// Delete this instance's membership: sent before its releases, so that
    /// the others hand its shards to whom they prefer without it.
    Leave,
}

impl Write {
    pub fn key(&self, me: &InstanceId) -> Key {
        match self {
            Write::Claim { shard, .. }
            | Write::Renew { shard, .. }
            | Write::Release { shard, .. } => Key::Shard(*shard),
            Write::Heartbeat | Write::Leave => Key::Member(me.clone()),
        }
    }

    /// The value to write (`None` for a release or a leave, which delete).
    pub fn value(&self, me: &InstanceId) -> Option<LeaseValue> {
        let epoch = match self {
            Write::Claim { .. } | Write::Heartbeat => None,
            Write::Renew { epoch, .. } => Some(*epoch),
            Write::Release { .. } | Write::Leave => return None,
        };
        Some(LeaseValue {
            owner: me.clone(),
            epoch,
        })
    }
}

/// How a write went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stored, with this revision (0 when the store does not say, as for a
    /// delete).
    Written(Revision),
    /// The key's revision was not the one expected: someone else wrote first.
    Conflict,
    /// No answer, or an error: the write may or may not have been stored.
    Failed,
}

/// A tenure this instance holds: it may act for `shard`, stamping what it
/// publishes with `epoch`, until `valid_until` unless renewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tenure {
    pub shard: Shard,
    pub epoch: Epoch,
    pub valid_until: Instant,
}

/// What is known of one shard's lease.
#[derive(Clone, Debug)]
enum Slot {
    /// Not yet observed (before the watch caught up, or after a write whose
    /// result the watch has still to tell).
    Unknown,
    /// No lease: never written (`revision` 0) or deleted at `revision`.
    Free { revision: Revision, since: Instant },
    /// Someone's lease, first seen at this revision at `seen`. It may be an
    /// earlier life of this very instance: that one is treated as anyone's.
    Taken {
        owner: InstanceId,
        revision: Revision,
        seen: Instant,
    },
    /// This instance's.
    Mine {
        revision: Revision,
        epoch: Epoch,
        renewed: Instant,
        valid_until: Instant,
    },
    /// This instance's, given up: it no longer acts, and deletes the lease
    /// at `delete_at`, once every tenure it handed out has run out (until
    /// then someone may still act on a copy of one).
    Releasing {
        revision: Revision,
        epoch: Epoch,
        delete_at: Instant,
    },
}

impl Slot {
    /// Whether `value` is a write of this instance's tenure (held or being
    /// given up).
    fn is_our_tenure(&self, me: &InstanceId, value: &LeaseValue) -> bool {
        match self {
            Slot::Mine { epoch, .. } | Slot::Releasing { epoch, .. } => {
                value.owner == *me && value.epoch == Some(*epoch)
            }
            _ => false,
        }
    }

    /// Gives a tenure up: this instance acts no more, and deletes the lease
    /// once the tenure it handed out has ended (a copy of it may be acted on
    /// until then). The one place that rule is kept.
    fn give_up(&mut self) {
        if let Slot::Mine {
            revision,
            epoch,
            valid_until,
            ..
        } = *self
        {
            *self = Slot::Releasing {
                revision,
                epoch,
                delete_at: valid_until,
            };
        }
    }

    fn set_revision(&mut self, to: Revision) {
        if let Slot::Mine { revision, .. } | Slot::Releasing { revision, .. } = self {
            *revision = to;
        }
    }

    /// The key's revision as far as it is known here.
    fn revision(&self) -> Option<Revision> {
        match self {
            Slot::Unknown => None,
            Slot::Free { revision, .. }
            | Slot::Taken { revision, .. }
            | Slot::Mine { revision, .. }
            | Slot::Releasing { revision, .. } => Some(*revision),
        }
    }
}

#[derive(Clone, Debug)]
struct ShardState {
    slot: Slot,
    /// A write for this shard is on its way: no second one until it returns.
    writing: bool,
    /// After a lost race, wait before the next claim (the watch brings the news).
    quiet_until: Option<Instant>,
    /// A shard just taken is kept a while even if another instance is
    /// preferred: if that one does not claim what it is handed (it may be
    /// slow, or cut off from the bucket), handing it over again and again
    /// would leave the shard with nobody acting, a grace period each time.
    keep_until: Option<Instant>,
}

/// A member as seen from here.
#[derive(Clone, Debug)]
struct Member {
    revision: Revision,
    /// When its current revision was first seen.
    seen: Instant,
    /// When it was first seen alive, this time round.
    since: Instant,
}

impl Member {
    /// A member is alive while its membership was renewed within a lease.
    fn alive(&self, now: Instant, ttl: Duration) -> bool {
        now < self.seen + ttl
    }
}

/// How many leases long a shard just taken is kept before it is handed to a
/// preferred instance (see `ShardState::keep_until`).
const KEEP_FOR_LEASES: u32 = 2;

/// One instance's view of the lease table, and its decisions.
pub struct LeaseDesk {
    me: InstanceId,
    times: LeaseTimes,
    shards: Vec<ShardState>,
    members: HashMap<InstanceId, Member>,
    caught_up: bool,
    heartbeat_due: Option<Instant>,
    heartbeat_writing: bool,
    leaving: Leaving,
}

/// Where a clean leave stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leaving {
    No,
    /// Leaving: the membership's delete is still to be sent.
    Announce,
    /// Leaving: the membership's delete was sent (or given up on).
    Announced,
}

impl LeaseDesk {
    pub fn new(me: InstanceId, shards: ShardCount, times: LeaseTimes) -> LeaseDesk {
        LeaseDesk {
            me,
            times,
            shards: shards
                .all()
                .map(|_| ShardState {
                    slot: Slot::Unknown,
                    writing: false,
                    quiet_until: None,
                    keep_until: None,
                })
                .collect(),
            members: HashMap::new(),
            caught_up: false,
            heartbeat_due: None,
            heartbeat_writing: false,
            leaving: Leaving::No,
        }
    }

    pub fn me(&self) -> &InstanceId {
        &self.me
    }

    pub fn times(&self) -> LeaseTimes {
        self.times
    }

    /// Takes in what the bucket said.
    pub fn observe(&mut self, observation: Observation, now: Instant) {
        match observation {
            // Only the first: an Unknown slot after that waits for an entry
            // of its own key (the delete after a release, say).
            Observation::CaughtUp if self.caught_up => {}
            Observation::CaughtUp => {
                self.caught_up = true;
                for state in &mut self.shards {
                    if let Slot::Unknown = state.slot {
                        state.slot = Slot::Free {
                            revision: 0,
                            since: now,
                        };
                    }
                }
            }
            Observation::Member {
                instance,
                revision,
                present,
            } => self.observe_member(instance, revision, present, now),
            Observation::Lease {
                shard,
                revision,
                value,
            } => {
                let Some(state) = self.shards.get_mut(usize::from(shard.0)) else {
                    return; // a shard of a larger cluster: not ours to judge
                };
                if state.slot.revision().is_some_and(|known| known >= revision) {
                    return; // our own write coming back, or old news
                }
                if let Some(value) = &value {
                    if state.slot.is_our_tenure(&self.me, value) {
                        // Our renewal, seen before its answer: only we write
                        // this tenure's epoch. The answer extends the tenure.
                        state.slot.set_revision(revision);
                        return;
                    }
                }
                state.slot = match value {
                    None => Slot::Free {
                        revision,
                        since: now,
                    },
                    Some(value) => Slot::Taken {
                        owner: value.owner,
                        revision,
                        seen: now,
                    },
                };
            }
        }
    }

    fn observe_member(
        &mut self,
        instance: InstanceId,
        revision: Revision,
        present: bool,
        now: Instant,
    ) {
        if !present {
            self.members.remove(&instance);
            return;
        }
        let ttl = self.times.ttl;
        let member = self.members.entry(instance).or_insert(Member {
            revision,
            seen: now,
            since: now,
        });
        if revision > member.revision {
            if !member.alive(now, ttl) {
                member.since = now; // back after a silence
            }
            member.revision = revision;
            member.seen = now;
        }
    }

    /// The writes to make now. The caller makes each and reports it with
    /// [`LeaseDesk::written`], passing the instant it *sent* the write.
    pub fn poll(&mut self, now: Instant) -> Vec<Write> {
        let mut writes = Vec::new();
        match self.leaving {
            Leaving::Announce => {
                self.leaving = Leaving::Announced;
                writes.push(Write::Leave);
            }
            Leaving::No => {
                if !self.heartbeat_writing && self.heartbeat_due.is_none_or(|due| now >= due) {
                    self.heartbeat_writing = true;
                    writes.push(Write::Heartbeat);
                }
            }
            Leaving::Announced => {}
        }
        if !self.caught_up {
            return writes;
        }
        let alive = self.alive(now);
        for index in 0..self.shards.len() {
            let shard = Shard(index as u16);
            // A lease left to run out says its holder is dead or cut off:
            // the shard's preference is among the others.
            let holder = match &self.shards[index].slot {
                Slot::Taken { owner, .. } => Some(owner.clone()),
                _ => None,
            };
            let view = self.view(shard, &alive, holder.as_ref(), now);
            let state = &mut self.shards[index];
            if state.writing || state.quiet_until.is_some_and(|t| now < t) {
                continue;
            }
            if let Some(write) = decide(state, shard, view, self.times, now) {
                state.writing = true;
                writes.push(write);
            }
        }
        writes
    }

    /// What this instance's place is for `shard`, among those alive.
    fn view(
        &self,
        shard: Shard,
        alive: &[(InstanceId, Instant)],
        holder: Option<&InstanceId>,
        now: Instant,
    ) -> View {
        let candidates = alive.iter().filter(|(id, _)| Some(id) != holder);
        let preferred = shards::preferred(shard, candidates.map(|(id, _)| id.as_str()));
        let settled = |p: &str| {
            alive
                .iter()
                .any(|(id, since)| id.as_str() == p && now >= *since + self.times.ttl)
        };
        View {
            preferred: preferred == Some(self.me.as_str()),
            hand_over: preferred.is_some_and(|p| p != self.me.as_str() && settled(p)),
            leaving: self.leaving != Leaving::No,
        }
    }

    /// The members alive now, this instance first.
    pub fn members(&self, now: Instant) -> Vec<InstanceId> {
        self.alive(now).into_iter().map(|(id, _)| id).collect()
    }

    /// The members alive now, this instance first, with the time each was
    /// first seen alive.
    fn alive(&self, now: Instant) -> Vec<(InstanceId, Instant)> {
        let mut alive = vec![(self.me.clone(), now - self.times.ttl)];
        for (id, member) in &self.members {
            if *id != self.me && member.alive(now, self.times.ttl) {
                alive.push((id.clone(), member.since));
            }
        }
        alive
    }

    /// Takes in how a write from [`LeaseDesk::poll`] went; `sent` is when it
    /// was sent.
    pub fn written(&mut self, write: &Write, sent: Instant, outcome: Outcome, now: Instant) {
        let times = self.times;
        // After a failure, a pause: an answer that comes back at once (NATS
        // up, JetStream not) must not become a loop at the speed of the box.
        let back_off = now + times.renew_every / 5;
        match *write {
            Write::Leave => {}
            Write::Heartbeat => {
                self.heartbeat_writing = false;
                self.heartbeat_due = Some(match outcome {
                    Outcome::Written(_) => sent + times.renew_every,
                    Outcome::Conflict | Outcome::Failed => back_off,
                });
            }
            Write::Claim { shard, .. }
            | Write::Renew { shard, .. }
            | Write::Release { shard, .. } => {
                let leaving = self.leaving != Leaving::No;
                let Some(state) = self.shards.get_mut(usize::from(shard.0)) else {
                    return;
                };
                state.writing = false;
                state.slot = after_write(&state.slot, write, sent, outcome, times);
                if leaving {
                    // A claim or renewal that landed as this instance left.
                    state.slot.give_up();
                }
                match (write, outcome) {
                    (Write::Claim { .. }, Outcome::Written(_)) => {
                        state.keep_until = Some(now + KEEP_FOR_LEASES * times.ttl);
                    }
                    (Write::Claim { .. }, Outcome::Conflict | Outcome::Failed) => {
                        state.quiet_until = Some(now + times.renew_every);
                    }
                    (_, Outcome::Failed) => state.quiet_until = Some(back_off),
                    _ => {}
                }
            }
        }
    }

    /// May this instance act for `shard` now, and with which epoch?
    pub fn may_act(&self, shard: Shard, now: Instant) -> Option<Tenure> {
        let state = self.shards.get(usize::from(shard.0))?;
        match state.slot {
            Slot::Mine {
                epoch, valid_until, ..
            } if now < valid_until => Some(Tenure {
                shard,
                epoch,
                valid_until,
            }),
            _ => None,
        }
    }

    /// Every shard this instance may act for now.
    pub fn tenures(&self, now: Instant) -> Vec<Tenure> {
        (0..self.shards.len())
            .filter_map(|i| self.may_act(Shard(i as u16), now))
            .collect()
    }

    /// Begins a clean leave: this instance stops acting for every shard at
    /// once, claims and renews nothing more, deletes its membership (the
    /// next [`LeaseDesk::poll`]), and deletes each lease once the tenure it
    /// handed out has run out. [`LeaseDesk::has_left`] says when it is done.
    pub fn leave(&mut self) {
        if self.leaving != Leaving::No {
            return;
        }
        self.leaving = Leaving::Announce;
        for state in &mut self.shards {
            state.slot.give_up();
        }
    }

    /// Left: nothing held, nothing being written. The latest instant a lease
    /// of this instance's is to be deleted is [`LeaseDesk::last_delete_at`].
    pub fn has_left(&self) -> bool {
        self.leaving == Leaving::Announced
            && self.shards.iter().all(|s| {
                !s.writing && !matches!(s.slot, Slot::Mine { .. } | Slot::Releasing { .. })
            })
    }

    /// When the last lease still to be deleted comes due.
    pub fn last_delete_at(&self) -> Option<Instant> {
        self.shards
            .iter()
            .filter_map(|s| match s.slot {
                Slot::Releasing { delete_at, .. } => Some(delete_at),
                _ => None,
            })
            .max()
    }

    /// Who holds each shard, as far as this instance knows (`None`: free or
    /// not known). For `/healthz`, `/metrics` and `kordon cluster status`.
    pub fn holders(&self) -> Vec<Option<&InstanceId>> {
        self.shards
            .iter()
            .map(|state| match &state.slot {
                Slot::Mine { .. } => Some(&self.me),
                Slot::Taken { owner, .. } => Some(owner),
                Slot::Unknown | Slot::Free { .. } | Slot::Releasing { .. } => None,
            })
            .collect()
    }
}

/// This instance's place for one shard, as [`decide`] needs it.
#[derive(Clone, Copy, Debug)]
struct View {
    /// It is the shard's preferred instance among those alive.
    preferred: bool,
    /// Another instance, alive for a whole lease, is preferred.
    hand_over: bool,
    leaving: bool,
}

/// The write one shard needs now, if any (and the slot's change when this
/// instance gives the shard up).
fn decide(
    state: &mut ShardState,
    shard: Shard,
    view: View,
    times: LeaseTimes,
    now: Instant,
) -> Option<Write> {
    match state.slot {
        Slot::Unknown => None,
        Slot::Releasing {
            revision,
            delete_at,
            ..
        } => (now >= delete_at).then_some(Write::Release {
            shard,
            expect: revision,
        }),
        Slot::Mine { .. }
            if view.leaving || (view.hand_over && state.keep_until.is_none_or(|t| now >= t)) =>
        {
            state.slot.give_up();
            None
        }
        Slot::Mine {
            revision,
            epoch,
            renewed,
            ..
        } => (now >= renewed + times.renew_every).then_some(Write::Renew {
            shard,
            expect: revision,
            epoch,
        }),
        _ if view.leaving => None,
        Slot::Free { revision, since } => {
            let open = view.preferred || now >= since + times.renew_every;
            open.then_some(Write::Claim {
                shard,
                expect: revision,
            })
        }
        Slot::Taken { revision, seen, .. } => {
            let expired = seen + times.ttl;
            let open = now >= expired && (view.preferred || now >= expired + times.renew_every);
            open.then_some(Write::Claim {
                shard,
                expect: revision,
            })
        }
    }
}

/// A shard's slot once a write for it returned.
fn after_write(
    slot: &Slot,
    write: &Write,
    sent: Instant,
    outcome: Outcome,
    times: LeaseTimes,
) -> Slot {
    let known = slot.revision();
    match (write, outcome) {
        (Write::Claim { .. } | Write::Renew { .. }, Outcome::Written(revision)) => {
            if known.is_some_and(|k| k > revision) {
                // The watch already told of a later write: ours is history.
                return slot.clone();
            }
            if let (
                Write::Renew { .. },
                Slot::Releasing {
                    epoch, delete_at, ..
                },
            ) = (write, slot)
            {
                // Given up while the renewal was out: still given up, with
                // the revision to delete.
                return Slot::Releasing {
                    revision,
                    epoch: *epoch,
                    delete_at: *delete_at,
                };
            }
            let epoch = match write {
                Write::Renew { epoch, .. } => *epoch,
                _ => Epoch(revision),
            };
            Slot::Mine {
                revision,
                epoch,
                renewed: sent,
                valid_until: times.valid_until(sent),
            }
        }
        // Someone else wrote after the revision this renewal expected: what
        // we held is gone, and the watch tells who. Unless the slot has moved
        // past that revision already (a renewal of ours that timed out but
        // was stored, seen since): then the conflict is with ourselves.
        (Write::Renew { expect, .. }, Outcome::Conflict) => match slot {
            Slot::Mine { revision, .. } if revision == expect => Slot::Unknown,
            other => other.clone(),
        },
        // A renewal with no answer: the tenure runs out on its own clock,
        // and the next renewal tries again (it may still succeed: the
        // compare-and-swap says whether anyone took the shard meanwhile).
        (Write::Renew { .. }, Outcome::Failed) => slot.clone(),
        (Write::Claim { .. }, Outcome::Conflict) => slot.clone(),
        // A claim with no answer may have been stored: if it was, the watch
        // shows a lease in this instance's name that it does not count as
        // its own, and which anyone, this instance too, takes over once it
        // has stood for a whole lease.
        (Write::Claim { .. }, Outcome::Failed) => slot.clone(),
        (Write::Release { expect, .. }, outcome) => match slot {
            Slot::Releasing { revision, .. } if revision == expect => match outcome {
                // Deleted, or someone wrote since: either way the watch
                // brings the key's next entry, which says what it is now.
                Outcome::Written(_) | Outcome::Conflict => Slot::Unknown,
                // Tried again after the back-off.
                Outcome::Failed => slot.clone(),
            },
            other => other.clone(),
        },
        (Write::Heartbeat | Write::Leave, _) => slot.clone(),
    }
}
