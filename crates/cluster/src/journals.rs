//! The instances' journals, read from any instance. In a cluster each
//! instance's SQLite journal is its audit copy of what the shards it served
//! handled while it served them (`docs/cluster.md`), so a case's history is
//! spread over the journals of every instance that served the case's shard,
//! and a take-over's replay leaves the same records in two of them.
//!
//! A question goes out on [`JOURNALS_SUBJECT`] (core NATS, like the desks'
//! questions: it is worth nothing once its asker has gone); every instance
//! answers from its own journal, naming itself, in as many messages as its
//! list needs ([`in_parts`]). The asker waits for the
//! members alive it knows of ([`crate::Tenures::members`]), or until its
//! wait is over, and names the members that did not answer: a history read
//! while one is away is said to be partial, never silently short.
//!
//! What it never does: read a journal, or merge what the answers hold. The
//! questions and answers are the server's JSON; this module moves them and
//! says who answered.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::keeper::ClusterError;
use crate::lease::InstanceId;

/// Where questions to every instance's journal go.
pub const JOURNALS_SUBJECT: &str = "kordon.journals.ask";
/// Room left in a message for what wraps the items.
const ENVELOPE: usize = 1_024;

/// One part of an instance's answer, from its own journal: a list too
/// large for one NATS message (a 12-hour playback is more than the default
/// 1 MB) goes in several.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AnswerPart {
    pub instance: InstanceId,
    /// This part's number, from 0, of `parts`.
    pub part: u32,
    pub parts: u32,
    pub items: Vec<Value>,
}

/// `items` in parts whose JSON fits in `max_bytes` each (the server's
/// `max_payload`); an empty list is one empty part. An item larger than a
/// message on its own still gets a part, which NATS will refuse: the
/// answer is then incomplete, and the asker names the instance missing.
pub fn in_parts(instance: &InstanceId, items: Vec<Value>, max_bytes: usize) -> Vec<AnswerPart> {
    let room = max_bytes.saturating_sub(ENVELOPE).max(1);
    let mut lists: Vec<Vec<Value>> = vec![Vec::new()];
    let mut filled = 0;
    for item in items {
        let size = item.to_string().len() + 1;
        let last = lists.last_mut().expect("one list at least");
        if filled + size > room && !last.is_empty() {
            lists.push(Vec::new());
            filled = 0;
        }
        filled += size;
        lists.last_mut().expect("one list at least").push(item);
    }
    let parts = lists.len() as u32;
    lists
        .into_iter()
        .enumerate()
        .map(|(part, items)| AnswerPart {
            instance: instance.clone(),
            part: part as u32,
            parts,
            items,
        })
        .collect()
}

/// What the instances answered to one question.
#[derive(Clone, Debug, Default)]
pub struct Read {
    /// Each instance's whole answer, its parts in order, for those that
    /// answered in full in time.
    pub answers: BTreeMap<InstanceId, Vec<Value>>,
    /// The members alive that did not answer in full within the wait.
    pub missing: Vec<InstanceId>,
}

/// The parts heard so far, by instance.
#[derive(Default)]
struct Heard {
    parts: BTreeMap<InstanceId, (u32, BTreeMap<u32, Vec<Value>>)>,
}

impl Heard {
    fn take(&mut self, part: AnswerPart) {
        let (parts, got) = self
            .parts
            .entry(part.instance)
            .or_insert_with(|| (part.parts, BTreeMap::new()));
        if part.parts == *parts && part.part < *parts {
            got.entry(part.part).or_insert(part.items);
        }
    }

    fn complete(&self, instance: &InstanceId) -> bool {
        self.parts
            .get(instance)
            .is_some_and(|(parts, got)| got.len() == *parts as usize)
    }

    /// The complete answers; `members` not among them are missing.
    fn read(self, members: &[InstanceId]) -> Read {
        let missing = members
            .iter()
            .filter(|m| !self.complete(m))
            .cloned()
            .collect();
        let answers = self
            .parts
            .into_iter()
            .filter(|(_, (parts, got))| got.len() == *parts as usize)
            .map(|(instance, (_, got))| (instance, got.into_values().flatten().collect()))
            .collect();
        Read { answers, missing }
    }
}

/// Asks every instance's journal `question`, and gathers the answers until
/// each of `members` has answered in full or `wait` is over. An instance
/// not among `members` (one that has just joined) is heard too if it
/// answers in time.
pub async fn gather(
    client: &async_nats::Client,
    members: &[InstanceId],
    question: Bytes,
    wait: Duration,
) -> Result<Read, ClusterError> {
    let mut answers = crate::questions::ask_all(client, JOURNALS_SUBJECT, question).await?;
    let mut heard = Heard::default();
    let deadline = tokio::time::Instant::now() + wait;
    while !members.iter().all(|m| heard.complete(m)) {
        let message = tokio::select! {
            message = answers.next() => message,
            _ = tokio::time::sleep_until(deadline) => break,
        };
        let Some(message) = message else { break };
        match serde_json::from_slice::<AnswerPart>(&message.payload) {
            Ok(part) => heard.take(part),
            Err(e) => {
                tracing::warn!(error = %e, "an instance's answer from its journal is unreadable")
            }
        }
    }
    let _ = answers.unsubscribe().await;
    Ok(heard.read(members))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> InstanceId {
        InstanceId::new(name).unwrap()
    }

    /// A list larger than a message goes in parts that each fit, and is
    /// read back whole and in order, whatever order the parts come in; an
    /// instance whose parts did not all come is missing, not short.
    #[test]
    fn a_long_answer_goes_in_parts_and_is_read_whole_or_not_at_all() {
        let items: Vec<Value> = (0..1_000).map(|n| serde_json::json!({ "n": n })).collect();
        let parts = in_parts(&id("a"), items.clone(), 4_096);
        assert!(parts.len() > 1, "{} parts", parts.len());
        for part in &parts {
            assert!(serde_json::to_vec(part).unwrap().len() <= 4_096);
        }
        let mut heard = Heard::default();
        for part in parts.iter().rev().cloned() {
            heard.take(part);
        }
        let mut short = in_parts(&id("b"), items.clone(), 4_096);
        short.pop();
        short.into_iter().for_each(|p| heard.take(p));
        let read = heard.read(&[id("a"), id("b")]);
        assert_eq!(read.answers[&id("a")], items);
        assert!(!read.answers.contains_key(&id("b")));
        assert_eq!(read.missing, vec![id("b")]);
    }

    #[test]
    fn an_empty_answer_is_one_part() {
        let parts = in_parts(&id("a"), Vec::new(), 4_096);
        assert_eq!(parts.len(), 1);
        let mut heard = Heard::default();
        heard.take(parts[0].clone());
        assert!(heard.complete(&id("a")));
    }
}
