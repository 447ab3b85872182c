//! Questions to every instance over core NATS, as the desks and the
//! journals are read: one message out on a subject every instance listens
//! to, the answers back on an inbox of the asker's. Core NATS, not a
//! stream: a question is worth nothing once its asker has gone.
//!
//! What it never does: read a question or an answer; its callers do.

use std::time::Duration;

use async_nats::Subscriber;
use bytes::Bytes;

use crate::keeper::ClusterError;

/// Sends `question` to every instance listening on `subject`; the answers
/// come on the subscription returned (unsubscribe once done).
pub async fn ask_all(
    client: &async_nats::Client,
    subject: &'static str,
    question: Bytes,
) -> Result<Subscriber, ClusterError> {
    let error = |e: &dyn std::fmt::Display| ClusterError::Bucket {
        bucket: subject.to_string(),
        message: e.to_string(),
    };
    let inbox = client.new_inbox();
    let answers = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| error(&e))?;
    client
        .publish_with_reply(subject, inbox, question)
        .await
        .map_err(|e| error(&e))?;
    client.flush().await.map_err(|e| error(&e))?;
    Ok(answers)
}

/// The questions on `subject` (about `what`, for the log), subscribing
/// again every second until NATS takes the subscription.
pub async fn listen(client: &async_nats::Client, subject: &'static str, what: &str) -> Subscriber {
    loop {
        match client.subscribe(subject).await {
            Ok(questions) => return questions,
            Err(e) => {
                tracing::warn!(error = %e, "listening for questions about {what}; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
