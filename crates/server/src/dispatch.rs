//! Police dispatch without an MQTT subscription: the CAP 1.2 messages the
//! police receive, as an authenticated Atom feed (`GET
//! /api/v1/feed/cap.atom`, the form CAP aggregators poll) and as webhook
//! deliveries to the endpoints of `[[dispatch.webhooks]]`, each signed with
//! HMAC-SHA256 and retried with back-off until the endpoint answers 2xx.
//!
//! A message reaches the dispatcher once its journal record is durable,
//! like its MQTT publication. Every attempt is journaled (on the engine's
//! thread, which owns the journal) and shown on its alert. After a restart
//! the feed is read back from the journal and deliveries not yet
//! acknowledged resume. The dispatcher decides nothing about alerts and
//! never holds up the engine: its queue is bounded, and a message that
//! finds it full is journaled as a failed delivery, so nobody mistakes it
//! for delivered.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::Role;
use crate::http::{ApiError, ApiState, Caller};

pub mod webhook;

/// CAP messages the feed keeps (and reads back at start).
pub(crate) const FEED_LENGTH: usize = 500;
/// Messages waiting for the webhook deliverer.
pub(crate) const QUEUE: usize = 4_096;

/// `[dispatch]` in kordon.toml.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchConfig {
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// A delivery is retried until acknowledged or this old.
    #[serde(default = "default_give_up_after_s")]
    pub give_up_after_s: u64,
}

fn default_give_up_after_s() -> u64 {
    24 * 3600
}

/// One police dispatch endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Its name on the alert and in the journal.
    pub name: String,
    /// `https://…` (or `http://` on a private network).
    pub url: String,
    /// The HMAC-SHA256 key the endpoint checks `X-Kordon-Signature` with.
    pub secret: String,
}

impl DispatchConfig {
    /// Whether a delivery of `message` is given up at `now`: it is
    /// retried until acknowledged or `give_up_after_s` old (one process and
    /// a cluster alike).
    pub fn gives_up(&self, message: &CapMessage, now: Timestamp) -> bool {
        now >= message.sent + jiff::SignedDuration::from_secs(self.give_up_after_s as i64)
    }

    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut names = HashSet::new();
        for (i, hook) in self.webhooks.iter().enumerate() {
            if !(hook.url.starts_with("https://") || hook.url.starts_with("http://")) {
                problems.push(format!(
                    "dispatch.webhooks[{i}] ({}): url must start with https:// or http://",
                    hook.name
                ));
            }
            if hook.secret.len() < 16 {
                problems.push(format!(
                    "dispatch.webhooks[{i}] ({}): secret must be at least 16 characters",
                    hook.name
                ));
            }
            if !names.insert(hook.name.as_str()) {
                problems.push(format!(
                    "dispatch.webhooks[{i}]: the name `{}` is used twice",
                    hook.name
                ));
            }
        }
        problems
    }
}

/// A CAP message the police received.
#[derive(Debug, Clone, PartialEq)]
pub struct CapMessage {
    /// The episode (alert) id.
    pub alert: String,
    /// CAP `identifier`.
    pub identifier: String,
    pub sent: Timestamp,
    pub headline: String,
    /// The whole CAP document.
    pub xml: String,
}

impl CapMessage {
    /// Reads the fields the feed and the webhooks need from a CAP document
    /// kordon made (`crate::cap` in kordon-alert).
    pub fn parse(xml: &str) -> Option<CapMessage> {
        let field = |name: &str| -> Option<String> {
            let open = format!("<{name}>");
            let start = xml.find(&open)? + open.len();
            let end = start + xml[start..].find(&format!("</{name}>"))?;
            Some(unescape(&xml[start..end]))
        };
        Some(CapMessage {
            alert: field("incidents")?,
            identifier: field("identifier")?,
            sent: field("sent")?.parse().ok()?,
            headline: field("headline").unwrap_or_default(),
            xml: xml.to_string(),
        })
    }

    /// The `<alert>` element without the XML declaration, for inlining.
    fn element(&self) -> &str {
        match self.xml.find("<alert") {
            Some(start) => self.xml[start..].trim_end(),
            None => &self.xml,
        }
    }
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Hands a CAP message kordon publishes to the feed and the webhooks; one
/// the webhooks' full queue cannot take is counted and logged (it is on
/// MQTT and in the feed, and reaches the webhooks at the next start).
pub fn offer(dispatch: &Dispatch, payload: &[u8]) {
    let Ok(xml) = std::str::from_utf8(payload) else {
        return;
    };
    if let Some(lost) = dispatch.offer(xml) {
        metrics::counter!(crate::metrics::WEBHOOK_QUEUE_FULL).increment(1);
        tracing::warn!(
            message = lost.identifier,
            "the webhook queue is full: this CAP message reaches the webhooks at the next start (it is on MQTT and in the Atom feed now)"
        );
    }
}

/// The dispatcher's handle: the feed's messages and the webhooks' queue.
#[derive(Clone)]
pub struct Dispatch {
    feed: Arc<Mutex<VecDeque<CapMessage>>>,
    queue: Option<mpsc::Sender<CapMessage>>,
    sender: String,
}

impl Dispatch {
    /// A dispatcher whose messages go to `queue` (none without webhooks).
    pub fn new(sender: &str, queue: Option<mpsc::Sender<CapMessage>>) -> Self {
        Dispatch {
            feed: Arc::new(Mutex::new(VecDeque::new())),
            queue,
            sender: sender.to_string(),
        }
    }

    /// Takes a message kordon publishes on the police's CAP topic, as it
    /// goes out. Never waits. A message the deliverer's full queue cannot
    /// take is returned, to be journaled as a failed delivery.
    pub fn offer(&self, xml: &str) -> Option<CapMessage> {
        let message = CapMessage::parse(xml)?;
        self.remember(message.clone());
        let queue = self.queue.as_ref()?;
        match queue.try_send(message) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(message)) => Some(message),
            Err(mpsc::error::TrySendError::Closed(_)) => None,
        }
    }

    fn remember(&self, message: CapMessage) {
        let mut feed = self.feed.lock().unwrap_or_else(|e| e.into_inner());
        if feed.iter().any(|m| m.identifier == message.identifier) {
            return;
        }
        if feed.len() == FEED_LENGTH {
            feed.pop_front();
        }
        feed.push_back(message);
    }

    /// The Atom document: newest first.
    pub fn atom(&self) -> String {
        let feed = self.feed.lock().unwrap_or_else(|e| e.into_inner());
        let updated = feed
            .iter()
            .map(|m| m.sent)
            .max()
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let mut xml = String::with_capacity(1024 + feed.len() * 2048);
        xml.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        xml.push_str("<feed xmlns=\"http://www.w3.org/2005/Atom\">\n");
        xml.push_str(&format!(
            "  <id>urn:kordon:{}:police-cap</id>\n  <title>kordon: alerts for police dispatch (CAP 1.2)</title>\n  <updated>{}</updated>\n  <author><name>{}</name></author>\n",
            escape(&self.sender),
            cap_time(updated),
            escape(&self.sender)
        ));
        for message in feed.iter().rev() {
            xml.push_str(&format!(
                "  <entry>\n    <id>urn:kordon:cap:{}</id>\n    <title>{}</title>\n    <updated>{}</updated>\n    <content type=\"application/cap+xml\">\n{}\n    </content>\n  </entry>\n",
                escape(&message.identifier),
                escape(&message.headline),
                cap_time(message.sent),
                message.element()
            ));
        }
        xml.push_str("</feed>\n");
        xml
    }

    /// Reads the feed back from the journal at start, and returns the
    /// messages whose deliveries to the webhooks of `config` were not
    /// acknowledged and not given up at `now` (oldest first), for the
    /// deliverer to resume.
    pub fn restore(
        &self,
        records: Vec<kordon_journal::Record>,
        config: &DispatchConfig,
        now: Timestamp,
    ) -> Vec<CapMessage> {
        use kordon_journal::Record;
        let mut delivered: HashSet<(String, String)> = HashSet::new();
        let mut messages = Vec::new();
        // Newest first.
        for record in records {
            match record {
                Record::Webhook {
                    endpoint,
                    message,
                    delivered: true,
                    ..
                } => {
                    delivered.insert((endpoint, message));
                }
                Record::Outbound { payload, .. } => {
                    if let Some(message) = CapMessage::parse(&payload) {
                        messages.push(message);
                    }
                }
                _ => {}
            }
        }
        messages.reverse();
        let mut pending = Vec::new();
        for message in messages {
            self.remember(message.clone());
            let waiting = config
                .webhooks
                .iter()
                .any(|e| !delivered.contains(&(e.name.clone(), message.identifier.clone())));
            if waiting && !config.gives_up(&message, now) {
                pending.push(message);
            }
        }
        pending
    }
}

fn cap_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

pub fn routes() -> Router<ApiState> {
    Router::new().route("/api/v1/feed/cap.atom", get(atom))
}

/// The police's CAP messages as Atom (police and the monitoring room).
async fn atom(caller: Caller, State(state): State<ApiState>) -> Result<Response, ApiError> {
    caller.require(&[Role::Police, Role::Monitoring])?;
    Ok((
        [(CONTENT_TYPE, "application/atom+xml; charset=utf-8")],
        state.dispatch.atom(),
    )
        .into_response())
}

/// How long the deliverer waits before attempt `n` (1-based): 1 s, 2 s,
/// 4 s, … at most 5 minutes.
pub fn backoff(attempt: u32) -> Duration {
    let secs = 1u64 << attempt.saturating_sub(1).min(9);
    Duration::from_secs(secs.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(identifier: &str, sent: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">\n  <identifier>{identifier}</identifier>\n  <sent>{sent}</sent>\n  <incidents>abc</incidents>\n  <info><headline>Contact ban breach &amp; more</headline></info>\n</alert>\n"
        )
    }

    #[test]
    fn a_cap_message_is_read_and_inlined_in_the_feed() {
        let dispatch = Dispatch::new("kordon@rotterdam", None);
        assert_eq!(
            dispatch.offer(&cap("kordon-abc-1", "2026-11-30T03:00:00+00:00")),
            None
        );
        dispatch.offer(&cap("kordon-abc-2", "2026-11-30T03:01:00+00:00"));
        let atom = dispatch.atom();
        let first = atom.find("kordon-abc-2").unwrap();
        let second = atom.find("kordon-abc-1").unwrap();
        assert!(first < second, "newest first: {atom}");
        assert!(atom.contains("<title>Contact ban breach &amp; more</title>"));
        assert!(!atom[atom.find("<entry>").unwrap()..].contains("<?xml"));
        assert!(atom.contains("<updated>2026-11-30T03:01:00+00:00</updated>"));
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let waits: Vec<u64> = (1..=12).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }

    #[test]
    fn a_full_queue_hands_the_message_back() {
        let (tx, _rx) = mpsc::channel(1);
        let dispatch = Dispatch::new("k", Some(tx));
        assert!(dispatch
            .offer(&cap("kordon-abc-1", "2026-11-30T03:00:00+00:00"))
            .is_none());
        let back = dispatch.offer(&cap("kordon-abc-2", "2026-11-30T03:00:00+00:00"));
        assert_eq!(back.map(|m| m.identifier), Some("kordon-abc-2".to_string()));
    }
}
