//! The instances' journals, read from any instance. In a cluster each
//! instance's SQLite journal is its audit copy of what the shards it served
//! handled while it served them (`docs/cluster.md`), so a case's history is
//! spread over the journals of every instance that served the case's shard,
//! and a take-over's replay leaves the same records in two of them.
//!
//! A question goes out on [`JOURNALS_SUBJECT`] (core NATS, like the desks'
//! questions: it is worth nothing once its asker has gone); every instance
//! answers from its own journal, naming itself. The asker waits for the
//! members alive it knows of ([`crate::Tenures::members`]), or until its
//! wait is over, and names the members that did not answer: a history read
//! while one is away is said to be partial, never silently short.
//!
//! What it never does: read a journal, or merge what the answers hold. The
//! questions and answers are the server's JSON; this module moves them and
//! says who answered.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::keeper::ClusterError;
use crate::lease::InstanceId;

/// Where questions to every instance's journal go.
pub const JOURNALS_SUBJECT: &str = "kordon.journals.ask";

/// One instance's answer, from its own journal.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JournalAnswer {
    pub instance: InstanceId,
    pub body: serde_json::Value,
}

/// What the instances answered to one question.
#[derive(Clone, Debug, Default)]
pub struct Read {
    /// One answer per instance that answered in time.
    pub answers: Vec<JournalAnswer>,
    /// The members alive that did not answer within the wait.
    pub missing: Vec<InstanceId>,
}

impl Read {
    fn take(&mut self, answer: JournalAnswer) {
        if !self.answered(&answer.instance) {
            self.answers.push(answer);
        }
    }

    fn answered(&self, instance: &InstanceId) -> bool {
        self.answers.iter().any(|a| &a.instance == instance)
    }
}

/// Asks every instance's journal `question`, and gathers the answers until
/// each of `members` has answered or `wait` is over. An instance not among
/// `members` (one that has just joined) is heard too if it answers in time.
pub async fn gather(
    client: &async_nats::Client,
    members: &[InstanceId],
    question: Bytes,
    wait: Duration,
) -> Result<Read, ClusterError> {
    let error = |e: &dyn std::fmt::Display| ClusterError::Bucket {
        bucket: JOURNALS_SUBJECT.to_string(),
        message: e.to_string(),
    };
    let inbox = client.new_inbox();
    let mut answers = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| error(&e))?;
    client
        .publish_with_reply(JOURNALS_SUBJECT, inbox, question)
        .await
        .map_err(|e| error(&e))?;
    client.flush().await.map_err(|e| error(&e))?;
    let mut read = Read::default();
    let deadline = tokio::time::Instant::now() + wait;
    while !members.iter().all(|m| read.answered(m)) {
        let message = tokio::select! {
            message = answers.next() => message,
            _ = tokio::time::sleep_until(deadline) => break,
        };
        let Some(message) = message else { break };
        match serde_json::from_slice::<JournalAnswer>(&message.payload) {
            Ok(answer) => read.take(answer),
            Err(e) => {
                tracing::warn!(error = %e, "an instance's answer from its journal is unreadable")
            }
        }
    }
    let _ = answers.unsubscribe().await;
    read.missing = members
        .iter()
        .filter(|m| !read.answered(m))
        .cloned()
        .collect();
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(instance: &str, body: &str) -> JournalAnswer {
        JournalAnswer {
            instance: InstanceId::new(instance).unwrap(),
            body: serde_json::json!(body),
        }
    }

    #[test]
    fn an_instance_answering_twice_counts_once() {
        let mut read = Read::default();
        read.take(answer("a", "first"));
        read.take(answer("b", "other"));
        read.take(answer("a", "again"));
        assert_eq!(read.answers.len(), 2);
        assert_eq!(read.answers[0].body, "first");
    }
}
