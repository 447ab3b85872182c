//! The dashboard on a cluster instance: the same files, sign-in and live
//! stream as single-process kordon (`crate::web`), showing every shard of
//! the cluster whichever instance a console signs in to.
//!
//! Each shard being served has a feed of its own, fed by its engine thread
//! as one process's is. [`forward`] publishes what it shows on core NATS
//! (`kordon.live.shard.<n>`), and every instance [`relay`]s what all shards
//! publish into the feed its consoles read. A console that misses some
//! (NATS reconnecting, a shard changing hands) is no worse off than one
//! that lost its connection: it refetches the alerts and positions, which
//! are gathered from every shard (`super::alert_api`). Positions are
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
use kordon_cluster::Shard;
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

/// A change of a shard's feed, as NATS carries it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Relayed {
    Alert(Box<AlertRecord>),
    Position(DevicePosition),
    Case(CaseId),
}

impl Relayed {
    /// What goes to the other instances' consoles; not kordon's health,
    /// which each instance shows of itself.
    fn of(change: &Change) -> Option<Relayed> {
        match change {
            Change::Alert(record) => Some(Relayed::Alert(record.clone())),
            Change::Position(position) => Some(Relayed::Position(position.clone())),
            Change::Case(id) => Some(Relayed::Case(id.clone())),
            Change::Health(_) => None,
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
    shard: Shard,
    feed: Feed,
    nats: async_nats::Client,
    watching: Watching,
) {
    let mut changes = feed.changes();
    drop(feed); // the engine thread's copy keeps it; this task only listens
    let subject = live_subject(shard);
    loop {
        let event = match changes.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(missed)) => {
                warn!(%shard, missed, "the dashboard's relay fell behind the shard; consoles refetch on their next gap");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        if matches!(event.change, Change::Position(_)) && !watching.recently() {
            continue;
        }
        let Some(relayed) = Relayed::of(&event.change) else {
            continue;
        };
        let Ok(bytes) = serde_json::to_vec(&relayed) else {
            continue;
        };
        if let Err(e) = nats.publish(subject.clone(), bytes.into()).await {
            warn!(%shard, error = %e, "publishing a change for the dashboards");
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
    loop {
        tokio::select! {
            message = changes.next() => {
                let Some(message) = message else { return };
                match serde_json::from_slice::<Relayed>(&message.payload) {
                    Ok(Relayed::Alert(record)) => feed.alert(*record),
                    Ok(Relayed::Position(position)) => feed.position(position, Instant::now()),
                    Ok(Relayed::Case(id)) => feed.case(id),
                    Err(e) => warn!(error = %e, "an unreadable change for the dashboards"),
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
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
