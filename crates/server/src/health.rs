//! What `/healthz` reports besides "the engine answers": whether kordon is
//! connected to its broker, whether the journal commits, and whether the
//! engine keeps up with what arrives.
//!
//! Either failing means devices' messages are not being made durable or not
//! arriving at all, while the process itself looks alive: exactly what an
//! operator's probe must see. The broker links and the journal writer's
//! callback set it; the HTTP API reads it. It owns the
//! `kordon_broker_connected` gauge: 1 only while both links are up.

use std::sync::{Arc, Mutex, PoisonError};

use jiff::Timestamp;
use serde::Serialize;

/// Shared between the tasks that observe health and the API.
#[derive(Clone, Default)]
pub struct Health(Arc<Mutex<State>>);

/// kordon's two connections to the broker (`kordon_ingest::broker`): it
/// is connected only when both are up, since without the ingest link no
/// message arrives and without the publishing link no alert leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Ingest,
    Publishing,
}

impl Link {
    fn name(self) -> &'static str {
        match self {
            Link::Ingest => "ingest link",
            Link::Publishing => "publishing link",
        }
    }
}

#[derive(Default)]
struct LinkState {
    up_since: Option<Timestamp>,
    down_since: Option<Timestamp>,
}

#[derive(Default)]
struct State {
    ingest: LinkState,
    publishing: LinkState,
    journal_failing: Option<(Timestamp, String)>,
    engine_busy_since: Option<Timestamp>,
}

/// What `/healthz` answers with: `problems` is empty when all is well.
#[derive(Debug, Serialize)]
pub struct Report {
    pub broker_connected_since: Option<Timestamp>,
    pub problems: Vec<String>,
}

impl Health {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A panic elsewhere while holding this lock leaves plain data behind;
        // the report stays worth giving.
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut state)
    }

    /// The link is up. True when this made kordon connected (both links
    /// up): the caller announces `online`, and only one of them does.
    pub fn broker_connected(&self, link: Link, now: Timestamp) -> bool {
        self.with(|s| {
            let was = s.connected_since().is_some();
            let state = s.link(link);
            state.up_since.get_or_insert(now);
            state.down_since = None;
            s.set_gauge();
            !was && s.connected_since().is_some()
        })
    }

    /// The link is down; every failed reconnection attempt says so again,
    /// and the outage is reported from its start. True when this ended
    /// kordon's being connected (the caller announces `offline` if it can).
    pub fn broker_lost(&self, link: Link, now: Timestamp) -> bool {
        self.with(|s| {
            let was = s.connected_since().is_some();
            let state = s.link(link);
            if state.up_since.take().is_some() || state.down_since.is_none() {
                state.down_since = Some(now);
            }
            s.set_gauge();
            was
        })
    }

    /// The outcome of one journal commit: `Err` carries the reason.
    pub fn journal_committed(&self, outcome: Result<(), &str>, now: Timestamp) {
        self.with(|s| match outcome {
            Ok(()) => s.journal_failing = None,
            Err(reason) => {
                let since = s.journal_failing.as_ref().map_or(now, |(t, _)| *t);
                s.journal_failing = Some((since, reason.to_string()));
            }
        });
    }

    /// The engine's queue was found full: messages wait (the broker holds
    /// those kordon has not taken), and alerts come late.
    pub fn engine_busy(&self, now: Timestamp) {
        self.with(|s| {
            s.engine_busy_since.get_or_insert(now);
        });
        metrics::gauge!(crate::metrics::OVERLOADED).set(1.0);
    }

    /// Whether messages are waiting for the engine's queue (see
    /// [`Self::engine_busy`]).
    pub fn is_overloaded(&self) -> bool {
        self.with(|s| s.engine_busy_since.is_some())
    }

    /// Everything received has reached the engine's queue again.
    pub fn engine_caught_up(&self) {
        let was_busy = self.with(|s| s.engine_busy_since.take().is_some());
        if was_busy {
            metrics::gauge!(crate::metrics::OVERLOADED).set(0.0);
        }
    }

    pub fn report(&self) -> Report {
        self.with(|s| {
            let mut problems = Vec::new();
            for link in [Link::Ingest, Link::Publishing] {
                let state = s.link(link);
                if state.up_since.is_none() {
                    let name = link.name();
                    problems.push(match state.down_since {
                        Some(since) => format!("not connected to the broker ({name}) since {since}"),
                        None => format!("not connected to the broker ({name}) yet"),
                    });
                }
            }
            if let Some((since, reason)) = &s.journal_failing {
                problems.push(format!(
                    "journal commits failing since {since}: messages are not acknowledged to the broker ({reason})"
                ));
            }
            if let Some(since) = s.engine_busy_since {
                problems.push(format!(
                    "overloaded since {since}: messages wait for the engine, alerts are delayed; the broker holds what kordon has not taken"
                ));
            }
            Report {
                broker_connected_since: s.connected_since(),
                problems,
            }
        })
    }
}

impl State {
    fn link(&mut self, link: Link) -> &mut LinkState {
        match link {
            Link::Ingest => &mut self.ingest,
            Link::Publishing => &mut self.publishing,
        }
    }

    /// Since when both links are up.
    fn connected_since(&self) -> Option<Timestamp> {
        Some(self.ingest.up_since?.max(self.publishing.up_since?))
    }

    fn set_gauge(&self) {
        let connected = self.connected_since().is_some();
        metrics::gauge!(crate::metrics::BROKER_CONNECTED).set(f64::from(u8::from(connected)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn connected(health: &Health, now: Timestamp) {
        health.broker_connected(Link::Ingest, now);
        health.broker_connected(Link::Publishing, now);
    }

    #[test]
    fn a_fresh_service_is_unhealthy_until_both_links_are_up() {
        let health = Health::default();
        assert_eq!(
            health.report().problems,
            [
                "not connected to the broker (ingest link) yet",
                "not connected to the broker (publishing link) yet"
            ]
        );
        assert!(!health.broker_connected(Link::Publishing, at(0)));
        assert_eq!(
            health.report().problems,
            ["not connected to the broker (ingest link) yet"]
        );
        assert_eq!(health.report().broker_connected_since, None);
        assert!(
            health.broker_connected(Link::Ingest, at(1)),
            "now connected"
        );
        assert!(!health.broker_connected(Link::Ingest, at(2)), "already");
        assert!(health.report().problems.is_empty());
        assert_eq!(health.report().broker_connected_since, Some(at(1)));
    }

    #[test]
    fn an_outage_is_reported_from_its_start_until_the_link_is_back() {
        let health = Health::default();
        connected(&health, at(0));
        assert!(health.broker_lost(Link::Ingest, at(10)), "was connected");
        // Every failed reconnection attempt reports again; the start stays.
        assert!(!health.broker_lost(Link::Ingest, at(20)));
        assert_eq!(
            health.report().problems,
            ["not connected to the broker (ingest link) since 2027-01-15T08:00:10Z"]
        );
        health.broker_connected(Link::Ingest, at(30));
        assert!(health.report().problems.is_empty());
    }

    #[test]
    fn journal_failures_are_reported_from_the_first_until_a_commit_succeeds() {
        let health = Health::default();
        connected(&health, at(0));
        health.journal_committed(Err("database is locked"), at(5));
        health.journal_committed(Err("disk I/O error"), at(6));
        let problems = health.report().problems;
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("journal commits failing since 2027-01-15T08:00:05Z"),
            "{problems:?}"
        );
        assert!(problems[0].contains("disk I/O error"), "{problems:?}");
        health.journal_committed(Ok(()), at(7));
        assert!(health.report().problems.is_empty());
    }
}
