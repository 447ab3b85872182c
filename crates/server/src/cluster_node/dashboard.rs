//! The dashboard on a cluster instance: the same files, sign-in and live
//! stream as single-process kordon (`crate::web`), showing every shard of
//! the cluster whichever instance a console signs in to.
//!
//! Each shard being served has a feed of its own, fed by its engine thread
//! as one process's is. [`forward`] publishes what it shows on core NATS
//! (`kordon.live.shard.<n>`), each change numbered, and every instance
//! [`relay`]s what all shards publish into the feed its consoles read.
//! Changes lost on the way (NATS reconnecting, a relay or forwarder falling
//! behind) show as a gap in the numbers, and the relay tells its consoles
//! to reset: they refetch the alerts and positions, which are gathered from
//! every shard (`super::alert_api`), as after any lost connection. Positions are
//! published only while some console watches: an instance with consoles
//! says so on `kordon.live.watching` every few seconds.
//!
//! What it never does: decide anything, change an alert, or hold a
//! console's stream back for NATS: the feed drops a slow console to a
//! refetch, as in one process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use futures_util::StreamExt;
use kordon_alert::AlertRecord;
use kordon_cluster::desks::{live_subject, LIVE_SUBJECTS, WATCHING_SUBJECT};
use kordon_cluster::{Epoch, Shard, Tenure};
use kordon_core::CaseId;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tracing::warn;

use crate::clock::Clock;
use crate::http::{Access, Callers};
use crate::live::{Change, DevicePosition, Feed};
use crate::web::{self, Dashboard};

/// How often an instance with consoles says so.
const WATCHING_EVERY: Duration = Duration::from_secs(5);
/// How long positions are published after the last word of a console.
const WATCHED_FOR: Duration = Duration::from_secs(15);

/// The dashboard's state on a cluster instance.
#[derive(Clone)]
pub struct ClusterDashboard {
    access: Access,
    feed: Feed,
    clock: Clock,
}

impl ClusterDashboard {
    pub fn new(access: Access, feed: Feed, clock: Clock) -> ClusterDashboard {
        ClusterDashboard {
            access,
            feed,
            clock,
        }
    }

    /// The files, sign-in and the live stream (the positions are gathered
    /// by the alert API's routes).
    pub fn router(self) -> Router {
        web::dashboard_routes().with_state(self)
    }
}

impl Callers for ClusterDashboard {
    fn access(&self) -> &Access {
        &self.access
    }
}

impl Dashboard for ClusterDashboard {
    fn feed(&self) -> &Feed {
        &self.feed
    }
    fn clock(&self) -> Clock {
        self.clock
    }
}

/// A change of a shard's feed, as NATS carries it: numbered by its
/// forwarder (one per tenure), so that a relay sees what it missed.
#[derive(Serialize, Deserialize)]
struct Relayed {
    shard: Shard,
    epoch: Epoch,
    /// 1, 2, 3… from the forwarder's start.
    n: u64,
    change: RelayedChange,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RelayedChange {
    Alert(Box<AlertRecord>),
    Position(DevicePosition),
    Case(CaseId),
    /// The forwarder fell behind its shard's feed: changes are lost.
    Reset,
}

impl RelayedChange {
    /// What goes to the other instances' consoles; not kordon's health,
    /// which each instance shows of itself.
    ///
    /// A batch of positions is relayed one position to a message, as
    /// before batches: instances of either version read each other.
    fn of(change: &Change) -> Vec<RelayedChange> {
        match change {
            Change::Alert(record) => vec![RelayedChange::Alert(record.clone())],
            Change::Positions(positions) => positions
                .iter()
                .map(|position| RelayedChange::Position(position.clone()))
                .collect(),
            Change::Case(id) => vec![RelayedChange::Case(id.clone())],
            Change::Reset => vec![RelayedChange::Reset],
            Change::Health(_) => Vec::new(),
        }
    }
}

/// The last change relayed from each shard, to see a gap.
#[derive(Default)]
struct Numbering {
    last: std::collections::HashMap<Shard, (Epoch, u64)>,
}

impl Numbering {
    /// Whether `relayed` follows the last change of its shard with nothing
    /// lost between (a new tenure's forwarder starts again at 1).
    fn follows(&mut self, relayed: &Relayed) -> bool {
        let before = self.last.insert(relayed.shard, (relayed.epoch, relayed.n));
        match before {
            Some((epoch, n)) if epoch == relayed.epoch => relayed.n == n + 1,
            _ => relayed.n == 1,
        }
    }
}

/// When some console last watched, anywhere in the cluster (milliseconds
/// since this instance's start).
#[derive(Clone)]
pub struct Watching {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Default for Watching {
    fn default() -> Self {
        Watching {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Watching {
    fn heard(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(now.max(1), Ordering::Relaxed);
    }

    fn recently(&self) -> bool {
        let last = self.last_ms.load(Ordering::Relaxed);
        let now = self.start.elapsed().as_millis() as u64;
        last > 0 && now.saturating_sub(last) <= WATCHED_FOR.as_millis() as u64
    }
}

/// Publishes what `shard`'s feed shows, until the feed is gone (the shard
/// closed); positions only while a console watches somewhere.
pub(super) async fn forward(
    tenure: Tenure,
    feed: Feed,
    nats: async_nats::Client,
    watching: Watching,
) {
    let shard = tenure.shard;
    let mut changes = feed.changes();
    drop(feed); // the engine thread's copy keeps it; this task only listens
    let subject = live_subject(shard);
    let mut n = 0;
    loop {
        let relayed = match changes.recv().await {
            Ok(event) if matches!(event.change, Change::Positions(_)) && !watching.recently() => {
                continue;
            }
            Ok(event) => RelayedChange::of(&event.change),
            Err(RecvError::Lagged(missed)) => {
                warn!(%shard, missed, "the dashboard's relay fell behind the shard: consoles refetch");
                vec![RelayedChange::Reset]
            }
            Err(RecvError::Closed) => return,
        };
        for change in relayed {
            n += 1;
            let relayed = Relayed {
                shard,
                epoch: tenure.epoch,
                n,
                change,
            };
            let Ok(bytes) = serde_json::to_vec(&relayed) else {
                continue;
            };
            if let Err(e) = nats.publish(subject.clone(), bytes.into()).await {
                warn!(%shard, error = %e, "publishing a change for the dashboards");
            }
        }
    }
}

/// Feeds `feed` (this instance's consoles) with what every shard publishes,
/// and says while it has consoles; hears what the others say.
pub(super) async fn relay(nats: async_nats::Client, feed: Feed, watching: Watching) {
    let subscribed = async {
        let changes = nats.subscribe(LIVE_SUBJECTS).await?;
        let others = nats.subscribe(WATCHING_SUBJECT).await?;
        Ok::<_, async_nats::SubscribeError>((changes, others))
    };
    let (mut changes, mut others) = match subscribed.await {
        Ok(subscriptions) => subscriptions,
        Err(e) => {
            warn!(error = %e, "the dashboard cannot follow the shards: its live stream shows nothing");
            return;
        }
    };
    let mut say = tokio::time::interval(Duration::from_secs(1));
    let mut said: Option<Instant> = None;
    let mut numbering = Numbering::default();
    // Gaps found within a second make one reset: after a reconnect every
    // shard's next change shows one, and each reset refetches everything.
    let mut reset_due = false;
    loop {
        tokio::select! {
            message = changes.next() => {
                let Some(message) = message else { return };
                let relayed = match serde_json::from_slice::<Relayed>(&message.payload) {
                    Ok(relayed) => relayed,
                    Err(e) => {
                        warn!(error = %e, "an unreadable change for the dashboards: consoles refetch");
                        reset_due = true;
                        continue;
                    }
                };
                // Lost on the way (NATS reconnecting, a slow relay): the
                // consoles refetch rather than miss a breach.
                reset_due |= !numbering.follows(&relayed);
                match relayed.change {
                    RelayedChange::Alert(record) => feed.alert(*record),
                    RelayedChange::Position(position) => {
                        feed.position(position, Instant::now());
                        // On as they come, in batches at most ten a
                        // second; what waits goes with the next second's
                        // flush below at the latest.
                        feed.send_positions();
                    }
                    RelayedChange::Case(id) => feed.case(id),
                    RelayedChange::Reset => reset_due = true,
                }
            }
            heard = others.next() => {
                if heard.is_none() { return }
                watching.heard();
            }
            _ = say.tick() => {
                let due = said.is_none_or(|at| at.elapsed() >= WATCHING_EVERY);
                if feed.watched() && due {
                    said = Some(Instant::now());
                    let _ = nats.publish(WATCHING_SUBJECT, "1".into()).await;
                }
                feed.flush_positions(Instant::now());
                if std::mem::take(&mut reset_due) {
                    feed.reset();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relayed(shard: u16, epoch: u64, n: u64) -> Relayed {
        Relayed {
            shard: Shard(shard),
            epoch: Epoch(epoch),
            n,
            change: RelayedChange::Reset,
        }
    }

    #[test]
    fn a_change_lost_on_the_way_is_seen_and_a_new_tenure_starts_again() {
        let mut numbering = Numbering::default();
        assert!(numbering.follows(&relayed(1, 5, 1)));
        assert!(numbering.follows(&relayed(1, 5, 2)));
        assert!(
            numbering.follows(&relayed(2, 9, 1)),
            "another shard counts apart"
        );
        assert!(!numbering.follows(&relayed(1, 5, 4)), "3 was lost");
        assert!(numbering.follows(&relayed(1, 5, 5)));
        assert!(
            numbering.follows(&relayed(1, 6, 1)),
            "the next owner's forwarder"
        );
        assert!(
            !numbering.follows(&relayed(1, 7, 3)),
            "the next one's first two lost"
        );
        assert!(
            !numbering.follows(&relayed(3, 1, 2)),
            "a relay that joined late"
        );
    }

    #[test]
    fn nobody_watching_until_heard_and_for_a_while_after() {
        let watching = Watching::default();
        assert!(!watching.recently());
        watching.heard();
        assert!(watching.recently());
        watching.last_ms.store(1, Ordering::Relaxed);
        let long_ago = Watching {
            start: Instant::now() - WATCHED_FOR - Duration::from_secs(1),
            last_ms: watching.last_ms.clone(),
        };
        assert!(!long_ago.recently());
    }
}
