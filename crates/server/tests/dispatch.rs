//! Police dispatch without MQTT: a zone breach's CAP message reaches a
//! webhook, signed, retried after a refusal until acknowledged, with every
//! attempt journaled and shown on the alert; the same message is in the
//! Atom feed, which survives a restart; a delivered message is not
//! delivered again after the restart.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode as AxumStatus};
use common::*;
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use kordon_journal::{Durability, Journal, Record};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::Sha256;

const SECRET: &str = "a-shared-secret-of-the-police";

/// One request the webhook endpoint received.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: String,
}

/// A police dispatch endpoint that refuses its first request (503) and
/// takes the rest.
async fn endpoint() -> (String, Arc<Mutex<Vec<Received>>>) {
    let log: Arc<Mutex<Vec<Received>>> = Arc::default();
    let seen = log.clone();
    let app = axum::Router::new().route(
        "/cap",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let mut seen = seen.lock().unwrap();
                seen.push(Received { headers, body });
                if seen.len() == 1 {
                    AxumStatus::SERVICE_UNAVAILABLE
                } else {
                    AxumStatus::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/cap"), log)
}

/// What the endpoint checks: HMAC-SHA256 over `<timestamp>.<body>`.
fn signed_correctly(request: &Received) -> bool {
    let timestamp = request.headers["x-kordon-timestamp"].to_str().unwrap();
    let signature = request.headers["x-kordon-signature"].to_str().unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{}", request.body).as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    signature == format!("sha256={hex}")
}

async fn get(kordon: &Kordon, path: &str, token: &str) -> (StatusCode, String) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", kordon.http))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

async fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(value) = check() {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breach_reaches_the_police_webhook_signed_retried_journaled_and_in_the_atom_feed() {
    let broker = brokers().remove(0);
    let case = TestCase::new("medium");
    let mut kordon = Kordon::start(&broker, &[&case]).await;
    let (url, requests) = endpoint().await;
    kordon.shutdown().await;
    let mut config = std::fs::read_to_string(kordon.config_path()).unwrap();
    config.push_str(&format!(
        "\n[dispatch]\n[[dispatch.webhooks]]\nname = \"police-rotterdam\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\n"
    ));
    std::fs::write(kordon.config_path(), config).unwrap();
    kordon.restart().await;

    let watcher = Watcher::new(&broker, &["kordon/v1/alerts/police/cap"]).await;
    watcher
        .publish(
            &format!("kordon/v1/devices/{}/fix", case.offender),
            fix_json(ZONE_CENTRE.0, ZONE_CENTRE.1, 5.0, Timestamp::now()),
        )
        .await;
    let (_, cap) = watcher
        .expect("the breach as CAP on MQTT", |t, _| {
            t == "kordon/v1/alerts/police/cap"
        })
        .await;
    let identifier = {
        let doc = roxmltree::Document::parse(&cap).unwrap();
        doc.descendants()
            .find(|n| n.has_tag_name("identifier"))
            .and_then(|n| n.text())
            .unwrap()
            .to_string()
    };
    let alert = identifier
        .strip_prefix("kordon-")
        .and_then(|rest| rest.rsplit_once('-'))
        .map(|(alert, _)| alert.to_string())
        .unwrap();

    // Refused once (503), then taken, after the first back-off of 1 s.
    let delivered = wait_until("two attempts at the webhook", || {
        let seen = requests.lock().unwrap();
        (seen.len() >= 2).then(|| seen.clone())
    })
    .await;
    for request in &delivered {
        assert_eq!(request.body, cap, "the CAP document itself is posted");
        assert_eq!(request.headers["content-type"], "application/cap+xml");
        assert_eq!(request.headers["x-kordon-delivery"], identifier.as_str());
        assert!(signed_correctly(request), "{:?}", request.headers);
    }
    let mut forged = delivered[1].clone();
    forged.body = forged.body.replace("Actual", "Exercise");
    assert!(
        !signed_correctly(&forged),
        "an altered body fails the check"
    );

    // Shown on the alert, for every console.
    let deliveries = wait_until("the delivery on the alert", || {
        let alert = futures_block(get(
            &kordon,
            &format!("/api/v1/alerts/{alert}"),
            MONITORING_TOKEN,
        ));
        let body: Value = serde_json::from_str(&alert.1).ok()?;
        let d = body["deliveries"].as_array()?.first()?.clone();
        (d["delivered"] == true).then_some(d)
    })
    .await;
    assert_eq!(deliveries["endpoint"], "police-rotterdam");
    assert_eq!(deliveries["message"], identifier.as_str());
    assert_eq!(deliveries["attempts"], 2);
    assert_eq!(deliveries["outcome"], "200");

    // The Atom feed holds the message, inline, for police and the room.
    let (status, _) = get(&kordon, "/api/v1/feed/cap.atom", ADMIN_TOKEN).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, atom) = get(&kordon, "/api/v1/feed/cap.atom", POLICE_TOKEN).await;
    assert_eq!(status, StatusCode::OK);
    assert_feed_holds(&atom, &identifier);

    kordon.shutdown().await;
    let (journal, _) = Journal::open(&kordon.journal_path(), Durability::Process).unwrap();
    let mut attempts = Vec::new();
    journal
        .read_after(0, |stored| {
            if let Some(Record::Webhook {
                message,
                attempt,
                status,
                delivered,
                ..
            }) = stored.record
            {
                if message == identifier {
                    attempts.push((attempt, status, delivered));
                }
            }
            Ok(())
        })
        .unwrap();
    drop(journal);
    assert_eq!(
        attempts,
        vec![(1, Some(503), false), (2, Some(200), true)],
        "every attempt journaled"
    );

    // After a restart: the feed is read back, and nothing delivered is
    // delivered again.
    kordon.restart().await;
    let (_, atom) = get(&kordon, "/api/v1/feed/cap.atom", POLICE_TOKEN).await;
    assert_feed_holds(&atom, &identifier);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(requests.lock().unwrap().len(), 2, "not delivered twice");
    kordon.stop().await;
}

fn assert_feed_holds(atom: &str, identifier: &str) {
    let doc = roxmltree::Document::parse(atom).unwrap();
    let root = doc.root_element();
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2005/Atom")
    );
    let entry = root
        .children()
        .filter(|n| n.has_tag_name("entry"))
        .find(|e| {
            e.descendants()
                .any(|n| n.has_tag_name("identifier") && n.text() == Some(identifier))
        })
        .unwrap_or_else(|| panic!("no entry for {identifier}: {atom}"));
    let content = entry
        .children()
        .find(|n| n.has_tag_name("content"))
        .unwrap();
    assert_eq!(content.attribute("type"), Some("application/cap+xml"));
    let cap = content.children().find(|n| n.is_element()).unwrap();
    assert_eq!(
        cap.tag_name().namespace(),
        Some("urn:oasis:names:tc:emergency:cap:1.2"),
        "the CAP alert inline, in its namespace"
    );
}

/// Runs a future to completion from a synchronous closure in this test.
fn futures_block<F: std::future::Future>(future: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}
