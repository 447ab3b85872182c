//! Publishing each alert message once, across crashes.
//!
//! kordon subscribes to its own alert topics. A message it published comes
//! back from the broker (the *echo*); that is the proof the broker has it,
//! and the echo is journaled as `delivered` before the broker is told kordon
//! received it. Until then the message is *waiting*.
//!
//! After a restart, messages journaled as decided but never confirmed are
//! *uncertain*: the broker may or may not have taken them. The broker still
//! holds the echoes of those it took, in kordon's persistent session. So on
//! reconnecting kordon publishes a *fence* on each of its echo filters; a
//! broker delivers a filter's messages in order, so once every fence has come
//! back, every echo that will come has come, and the uncertain messages still
//! waiting were never taken: they are published now, once. If the fences do
//! not come back (a broker that does not let kordon read its own topics), the
//! uncertain messages are published after [`FENCE_PATIENCE_S`] anyway: a
//! possible duplicate is better than a missed warning.
//!
//! An alert leaves as soon as it is decided, before the commit of its
//! records (docs/mqtt.md), so a crash can also take a message the journal
//! never saw but the broker did: its input was not acknowledged, the broker
//! delivers it again, and kordon decides the same message again. So every
//! restart fences, and until the fences are back each message decided is
//! *held* like an uncertain one: its echo (before or after the decision)
//! means the broker already has it; otherwise it goes out with the rest.
//!
//! With the embedded broker a crash takes the broker's state with it, so
//! there the guarantee is at least once, not exactly once.

use std::collections::{BTreeSet, HashMap, HashSet};

use jiff::{SignedDuration, Timestamp};
use kordon_alert::Outbound;
use kordon_journal::record::message_digest;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

pub use kordon_alert::topics::ECHO_FILTERS;

/// How long to wait for the fences before publishing uncertain messages.
pub const FENCE_PATIENCE_S: i64 = 10;

/// How long a message may wait for its echo before kordon stops expecting it.
pub const ECHO_PATIENCE_S: i64 = 600;

/// Whether a received topic is one of kordon's own outputs (or a fence).
/// It walks the levels without collecting them: every message is asked.
pub fn is_echo(topic: &str) -> bool {
    let Some(rest) = topic.strip_prefix("kordon/v1/") else {
        return false;
    };
    let mut levels = rest.split('/');
    let levels = (levels.next(), levels.next(), levels.next(), levels.next());
    matches!(
        levels,
        (
            Some("alerts"),
            Some("monitoring" | "police" | "~fence"),
            None,
            None
        ) | (Some("alerts"), Some("police"), Some("cap" | "~fence"), None)
            | (Some("devices"), Some(_), Some("warning"), None)
            | (Some("cases"), Some(_), Some("coordinators"), None)
    )
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Waiting {
    pub topic: String,
    pub payload: Vec<u8>,
    pub decided_at: Timestamp,
    /// Decision order, to republish in the order decided.
    pub order: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Deliveries {
    waiting: HashMap<String, Waiting>,
    next_order: u64,
    #[serde(skip)]
    recovery: Option<Recovery>,
}

/// Echoes of messages not (yet) decided that a recovery remembers; beyond
/// this a message decided again may go out twice, never not at all.
const ECHOES_REMEMBERED: usize = 65_536;

#[derive(Debug)]
struct Recovery {
    /// Digests of the uncertain and held messages.
    uncertain: BTreeSet<String>,
    /// Digests of echoes of messages not waiting when they came back: a
    /// message decided again after the restart, whose first copy the broker
    /// took before the crash.
    echoed: HashSet<String>,
    /// The current fence round: its token and the fences not yet back.
    token: String,
    outstanding: BTreeSet<&'static str>,
    fenced_at: Option<Timestamp>,
}

/// What the engine's thread must do after a delivery step.
#[derive(Debug, Default, PartialEq)]
pub struct Actions {
    /// Publish these (fences, or uncertain messages now known untaken).
    pub publish: Vec<Outbound>,
    /// Journal that this message was confirmed.
    pub confirmed: Option<String>,
}

/// What to do with a message just decided ([`Deliveries::expect`]).
#[derive(Debug, PartialEq)]
pub enum Expected {
    /// Publish it now and wait for its echo.
    Publish,
    /// A recovery is on: it goes out when the fences are back, unless its
    /// echo comes first ([`Actions::publish`] then).
    Held,
    /// Its echo already came back during this recovery: the broker took it
    /// before the restart. Journal it as delivered; do not publish it.
    Delivered(String),
}

impl Deliveries {
    /// A message decided (live) or read back from the journal (replay, when
    /// no recovery is on): wait for its echo.
    pub fn expect(&mut self, message: &Outbound, now: Timestamp) -> Expected {
        let digest = message_digest(&message.topic, &message.payload);
        let Some(recovery) = &mut self.recovery else {
            self.expect_digest(digest, message, now);
            return Expected::Publish;
        };
        if recovery.echoed.remove(&digest) {
            return Expected::Delivered(digest);
        }
        recovery.uncertain.insert(digest.clone());
        self.expect_digest(digest, message, now);
        Expected::Held
    }

    fn expect_digest(&mut self, digest: String, message: &Outbound, now: Timestamp) {
        self.next_order += 1;
        self.waiting.insert(
            digest,
            Waiting {
                topic: message.topic.clone(),
                payload: message.payload.clone(),
                decided_at: now,
                order: self.next_order,
            },
        );
    }

    /// The journal says it was confirmed (during replay).
    pub fn forget(&mut self, digest: &str) {
        self.waiting.remove(digest);
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// After replaying the journal: what still waits is uncertain, and what
    /// is decided until the fences are back is held. Fences go out when the
    /// connection is up ([`Deliveries::connected`]).
    pub fn begin_recovery(&mut self) {
        if !self.waiting.is_empty() {
            info!(
                uncertain = self.waiting.len(),
                "alert messages decided before the restart without a confirmed delivery"
            );
        }
        self.recovery = Some(Recovery {
            uncertain: self.waiting.keys().cloned().collect(),
            echoed: HashSet::new(),
            token: String::new(),
            outstanding: BTreeSet::new(),
            fenced_at: None,
        });
    }

    /// Connected to the broker: (re)send the fences if recovering. The
    /// patience runs from the first connection of the recovery: a wait
    /// begun again at each reconnect would let a connection that keeps
    /// dropping hold the uncertain messages back indefinitely.
    ///
    /// A broker that kept no session for kordon (a first start, the
    /// embedded broker, a broker restarted without persistence) holds no
    /// echo and delivers no input again, so there is nothing to wait for;
    /// and a fence could overtake kordon's new subscriptions and never come
    /// back.
    pub fn connected(&mut self, now: Timestamp, session_present: bool) -> Actions {
        if !session_present {
            return self.finish_recovery("the broker kept no session for kordon");
        }
        let Some(recovery) = &mut self.recovery else {
            return Actions::default();
        };
        recovery.token = format!("{}", now.as_nanosecond());
        recovery.outstanding = ECHO_FILTERS.iter().map(|(_, fence)| *fence).collect();
        recovery.fenced_at.get_or_insert(now);
        let payload = serde_json::json!({ "fence": recovery.token }).to_string();
        Actions {
            publish: ECHO_FILTERS
                .iter()
                .map(|(_, fence)| Outbound {
                    topic: fence.to_string(),
                    payload: payload.clone().into_bytes(),
                })
                .collect(),
            confirmed: None,
        }
    }

    /// One of kordon's own messages came back.
    pub fn echo(&mut self, topic: &str, payload: &[u8]) -> Actions {
        if let Some(recovery) = &mut self.recovery {
            if let Some(fence) = recovery.outstanding.iter().find(|f| **f == topic).copied() {
                let token = serde_json::from_slice::<serde_json::Value>(payload)
                    .ok()
                    .and_then(|v| v["fence"].as_str().map(str::to_string));
                if token.as_deref() == Some(recovery.token.as_str()) {
                    recovery.outstanding.remove(fence);
                    if recovery.outstanding.is_empty() {
                        return self.finish_recovery("every fence came back");
                    }
                }
                return Actions::default();
            }
        }
        if topic.contains("~fence") {
            return Actions::default();
        }
        let digest = message_digest(topic, payload);
        match self.waiting.remove(&digest) {
            Some(_) => {
                if let Some(recovery) = &mut self.recovery {
                    recovery.uncertain.remove(&digest);
                }
                Actions {
                    publish: Vec::new(),
                    confirmed: Some(digest),
                }
            }
            None => {
                if let Some(recovery) = &mut self.recovery {
                    if recovery.echoed.len() < ECHOES_REMEMBERED {
                        recovery.echoed.insert(digest);
                    }
                }
                Actions::default()
            }
        }
    }

    /// Time passes: give up on fences that do not come back, and on echoes
    /// that never will.
    pub fn tick(&mut self, now: Timestamp) -> Actions {
        let overdue = self.recovery.as_ref().is_some_and(|r| {
            r.fenced_at.is_some_and(|at| {
                now.duration_since(at) >= SignedDuration::from_secs(FENCE_PATIENCE_S)
            })
        });
        if overdue {
            warn!(
                patience_s = FENCE_PATIENCE_S,
                "the broker did not return kordon's fences; publishing uncertain alert messages (they may arrive twice)"
            );
            return self.finish_recovery("fences overdue");
        }
        if self.recovery.is_none() {
            let before = self.waiting.len();
            self.waiting.retain(|_, w| {
                now.duration_since(w.decided_at) < SignedDuration::from_secs(ECHO_PATIENCE_S)
            });
            let dropped = before - self.waiting.len();
            if dropped > 0 {
                metrics::counter!(crate::metrics::UNCONFIRMED).increment(dropped as u64);
                warn!(
                    dropped,
                    "alert messages never came back from the broker; does kordon's ACL let it read its own topics?"
                );
            }
        }
        Actions::default()
    }

    fn finish_recovery(&mut self, why: &str) -> Actions {
        let Some(recovery) = self.recovery.take() else {
            return Actions::default();
        };
        let mut untaken: Vec<&Waiting> = recovery
            .uncertain
            .iter()
            .filter_map(|d| self.waiting.get(d))
            .collect();
        untaken.sort_by_key(|w| w.order);
        info!(
            why,
            published = untaken.len(),
            "recovery of alert deliveries finished"
        );
        Actions {
            publish: untaken
                .into_iter()
                .map(|w| Outbound {
                    topic: w.topic.clone(),
                    payload: w.payload.clone(),
                })
                .collect(),
            confirmed: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn msg(topic: &str, text: &str) -> Outbound {
        Outbound {
            topic: topic.into(),
            payload: text.as_bytes().to_vec(),
        }
    }

    #[test]
    fn an_echo_confirms_and_after_a_restart_only_untaken_messages_go_out_once_fenced() {
        let mut d = Deliveries::default();
        let taken = msg("kordon/v1/devices/VIC-1/warning", "taken");
        let lost = msg("kordon/v1/devices/VIC-1/warning", "lost");
        d.expect(&taken, t(0));
        d.expect(&lost, t(1));
        d.begin_recovery();
        let fences = d.connected(t(6), true).publish;
        assert_eq!(fences.len(), ECHO_FILTERS.len());
        // The broker had taken one before the crash: its echo comes first.
        let echo = d.echo(&taken.topic, &taken.payload);
        assert!(echo.confirmed.is_some() && echo.publish.is_empty());
        let mut out = Vec::new();
        for fence in &fences {
            assert!(is_echo(&fence.topic), "{}", fence.topic);
            out.extend(d.echo(&fence.topic, &fence.payload).publish);
        }
        assert_eq!(out, vec![lost.clone()]);
        // Its own echo confirms it; nothing is published twice.
        assert!(d.echo(&lost.topic, &lost.payload).confirmed.is_some());
        assert_eq!(d.waiting(), 0);
    }

    /// Crash seed 1796248126715953792 (tests/crash.rs): an alert left
    /// before the commit of its fix; after the restart the broker delivers
    /// the fix again and kordon decides the same message again, whether the
    /// first copy's echo comes back before or after that decision.
    #[test]
    fn a_message_decided_again_after_a_restart_goes_out_only_if_the_broker_never_took_it() {
        let mut d = Deliveries::default();
        d.begin_recovery(); // nothing uncertain in the journal
        let fences = d.connected(t(1), true).publish;
        let echo_first = msg("kordon/v1/devices/VIC-1/warning", "opened");
        let decided_first = msg("kordon/v1/devices/VIC-2/warning", "cleared");
        let never_taken = msg("kordon/v1/alerts/police", "opened");

        // The first copy's echo comes before the decision made again.
        assert_eq!(
            d.echo(&echo_first.topic, &echo_first.payload),
            Actions::default()
        );
        let digest = message_digest(&echo_first.topic, &echo_first.payload);
        assert_eq!(d.expect(&echo_first, t(2)), Expected::Delivered(digest));
        // The decision comes first: held, then confirmed by the echo.
        assert_eq!(d.expect(&decided_first, t(2)), Expected::Held);
        assert_eq!(d.expect(&never_taken, t(2)), Expected::Held);
        let echo = d.echo(&decided_first.topic, &decided_first.payload);
        assert!(echo.confirmed.is_some() && echo.publish.is_empty());

        let mut out = Vec::new();
        for fence in &fences {
            out.extend(d.echo(&fence.topic, &fence.payload).publish);
        }
        assert_eq!(out, vec![never_taken.clone()]);
        // From here on messages go out as decided.
        let live = msg("kordon/v1/alerts/police", "updated");
        assert_eq!(d.expect(&live, t(3)), Expected::Publish);
        assert!(d
            .echo(&never_taken.topic, &never_taken.payload)
            .confirmed
            .is_some());
        assert_eq!(d.waiting(), 1);
    }

    /// A broker without kordon's session has no echo to wait for.
    #[test]
    fn without_a_session_at_the_broker_nothing_is_held() {
        let mut d = Deliveries::default();
        let uncertain = msg("kordon/v1/alerts/police", "opened");
        d.expect(&uncertain, t(0));
        d.begin_recovery();
        let held = msg("kordon/v1/devices/VIC-1/warning", "opened");
        assert_eq!(d.expect(&held, t(1)), Expected::Held);
        let actions = d.connected(t(2), false);
        assert_eq!(actions.publish, vec![uncertain, held]);
        let live = msg("kordon/v1/alerts/police", "updated");
        assert_eq!(d.expect(&live, t(3)), Expected::Publish);
    }

    /// Held messages are not held past the fences' patience.
    #[test]
    fn held_messages_go_out_when_the_fences_are_overdue() {
        let mut d = Deliveries::default();
        d.begin_recovery();
        d.connected(t(0), true);
        let held = msg("kordon/v1/devices/VIC-1/warning", "opened");
        assert_eq!(d.expect(&held, t(1)), Expected::Held);
        assert!(d.tick(t(FENCE_PATIENCE_S - 1)).publish.is_empty());
        assert_eq!(d.tick(t(FENCE_PATIENCE_S)).publish, vec![held]);
    }

    #[test]
    fn fences_from_an_earlier_connection_do_not_count_and_overdue_fences_give_up() {
        let mut d = Deliveries::default();
        let lost = msg("kordon/v1/alerts/police", "{}");
        d.expect(&lost, t(0));
        d.begin_recovery();
        let old = d.connected(t(2), true).publish;
        let _new = d.connected(t(3), true).publish;
        for fence in &old {
            assert!(d.echo(&fence.topic, &fence.payload).publish.is_empty());
        }
        assert!(d.tick(t(2 + FENCE_PATIENCE_S - 1)).publish.is_empty());
        assert_eq!(d.tick(t(2 + FENCE_PATIENCE_S)).publish, vec![lost]);
    }

    /// Reconnects every 3 s (a backlog being fetched again) do not begin
    /// the wait for the fences anew each time.
    #[test]
    fn uncertain_messages_go_out_within_the_patience_of_the_first_connection_whatever_the_reconnects(
    ) {
        let mut d = Deliveries::default();
        let lost = msg("kordon/v1/alerts/police", "{}");
        d.expect(&lost, t(0));
        d.begin_recovery();
        for at in [2, 5, 8, 11] {
            assert!(d.tick(t(at)).publish.is_empty());
            d.connected(t(at), true);
        }
        assert_eq!(d.tick(t(2 + FENCE_PATIENCE_S)).publish, vec![lost]);
    }

    #[test]
    fn own_topics_are_told_from_inbound_ones() {
        assert!(is_echo("kordon/v1/alerts/monitoring"));
        assert!(is_echo("kordon/v1/alerts/police/cap"));
        assert!(is_echo("kordon/v1/cases/RTM-1/coordinators"));
        assert!(!is_echo("kordon/v1/alerts/ack"));
        assert!(!is_echo("kordon/v1/devices/OFF-1/fix"));
    }

    /// The walking match agrees with the match on collected levels it
    /// replaced.
    #[test]
    fn is_echo_agrees_with_the_collected_match() {
        let collected = |topic: &str| {
            let levels: Vec<&str> = topic.split('/').collect();
            matches!(
                levels.as_slice(),
                ["kordon", "v1", "alerts", "monitoring" | "police" | "~fence"]
                    | ["kordon", "v1", "alerts", "police", "cap" | "~fence"]
                    | ["kordon", "v1", "devices", _, "warning"]
                    | ["kordon", "v1", "cases", _, "coordinators"]
            )
        };
        let fences = ECHO_FILTERS.iter().map(|(_, fence)| *fence);
        let topics = [
            "kordon/v1/alerts/monitoring",
            "kordon/v1/alerts/monitoring/",
            "kordon/v1/alerts/monitoring/x",
            "kordon/v1/alerts/police",
            "kordon/v1/alerts/police/",
            "kordon/v1/alerts/police/cap",
            "kordon/v1/alerts/police/cap/x",
            "kordon/v1/alerts/police/other",
            "kordon/v1/alerts/~fence",
            "kordon/v1/alerts/ack",
            "kordon/v1/alerts",
            "kordon/v1/alerts/",
            "kordon/v1/devices/OFF-1/warning",
            "kordon/v1/devices//warning",
            "kordon/v1/devices/OFF-1/warning/x",
            "kordon/v1/devices/OFF-1/fix",
            "kordon/v1/devices/warning",
            "kordon/v1/cases/RTM-1/coordinators",
            "kordon/v1/cases/RTM-1/coordinators/",
            "kordon/v1/cases/coordinators",
            "kordon/v1",
            "kordon/v1/",
            "kordon/v2/alerts/monitoring",
            "/kordon/v1/alerts/monitoring",
            "owntracks/anna/phone",
            "",
        ];
        for topic in topics.into_iter().chain(fences) {
            assert_eq!(is_echo(topic), collected(topic), "{topic}");
        }
    }
}
