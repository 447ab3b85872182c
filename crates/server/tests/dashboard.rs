//! The dashboard's back end, driven as the dashboard drives it: sign-in
//! and the session cookie with its CSRF token, the operator's workflow on
//! a real breach (acknowledgements, notes, resolution, the case timeline,
//! a restart that replays it), escalation by hand, the live stream (SSE)
//! by role, playback, case intake, the deadline report, bans by person and
//! the dashboard's own files. Every alert here comes from real fixes
//! published over MQTT to a kordon on an embedded broker.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use jiff::{SignedDuration, Timestamp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

// ---------------------------------------------------------------------
// HTTP: bearer tokens and sessions
// ---------------------------------------------------------------------

/// A dashboard session, as a browser holds it.
#[derive(Debug, Clone)]
struct Session {
    /// `kordon_session=…`, what the browser sends back in `Cookie`.
    cookie: String,
    /// The whole `Set-Cookie` header of the sign-in.
    set_cookie: String,
    csrf: String,
    /// The sign-in's answer.
    body: Value,
}

/// How a request is authenticated.
#[derive(Clone, Copy)]
enum Auth<'a> {
    Nobody,
    Bearer(&'a str),
    /// The session cookie, and the `X-Kordon-CSRF` header if given.
    Cookie(&'a Session, Option<&'a str>),
}

impl Session {
    /// The cookie with its own CSRF token: what the dashboard sends.
    fn auth(&self) -> Auth<'_> {
        Auth::Cookie(self, Some(&self.csrf))
    }
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(kordon: &Kordon) -> Api {
        Api {
            base: kordon.http.clone(),
            http: reqwest::Client::new(),
        }
    }

    fn request(&self, method: Method, path: &str, auth: Auth<'_>) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match auth {
            Auth::Nobody => request,
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Cookie(session, csrf) => {
                let request = request.header("cookie", &session.cookie);
                match csrf {
                    Some(csrf) => request.header("x-kordon-csrf", csrf),
                    None => request,
                }
            }
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<String>,
    ) -> reqwest::Response {
        let mut request = self.request(method, path, auth);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        request.send().await.unwrap()
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<String>,
    ) -> (StatusCode, Value) {
        let response = self.send(method, path, auth, body).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str, auth: Auth<'_>) -> (StatusCode, Value) {
        self.call(Method::GET, path, auth, None).await
    }

    async fn post(&self, path: &str, auth: Auth<'_>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, auth, Some(body.to_string()))
            .await
    }

    /// An alert as `auth` sees it; it must be there.
    async fn alert(&self, id: &str, auth: Auth<'_>) -> Value {
        let (status, alert) = self.get(&format!("/api/v1/alerts/{id}"), auth).await;
        assert_eq!(status, StatusCode::OK, "GET alert {id}: {alert}");
        alert
    }

    /// Signs in with `token`; it must work.
    async fn sign_in(&self, token: &str) -> Session {
        let response = self
            .send(
                Method::POST,
                "/api/v1/session",
                Auth::Nobody,
                Some(json!({ "token": token }).to_string()),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK, "sign-in with {token}");
        let set_cookies: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert_eq!(set_cookies.len(), 1, "one cookie: {set_cookies:?}");
        let set_cookie = set_cookies[0].clone();
        let cookie = set_cookie.split(';').next().unwrap().trim().to_string();
        let body: Value = response.json().await.unwrap();
        let csrf = body["csrf"].as_str().expect("a csrf token").to_string();
        Session {
            cookie,
            set_cookie,
            csrf,
            body,
        }
    }
}

// ---------------------------------------------------------------------
// Fixes and alerts over MQTT
// ---------------------------------------------------------------------

/// One fix a test published.
#[derive(Debug, Clone)]
struct Sent {
    device: String,
    ts: Timestamp,
    lat: f64,
    lon: f64,
}

/// A whole second `back` seconds ago: fix times that round-trip exactly.
fn seconds_ago(back: i64) -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second() - back).unwrap()
}

async fn publish_fix(
    watcher: &Watcher,
    device: &str,
    (lat, lon): (f64, f64),
    ts: Timestamp,
) -> Sent {
    watcher
        .publish(
            &format!("kordon/v1/devices/{device}/fix"),
            fix_json(lat, lon, 5.0, ts),
        )
        .await;
    Sent {
        device: device.to_string(),
        ts,
        lat,
        lon,
    }
}

/// She is at home from `start`; he walks up to her (and away again, if
/// the distances say so): every 30 s a fix of hers at home and one of his
/// `metres` north of it. Everything is published at once, as the devices'
/// backlogs would be.
async fn walk_up(
    watcher: &Watcher,
    case: &TestCase,
    metres: &[f64],
    start: Timestamp,
) -> Vec<Sent> {
    let mut sent = vec![publish_fix(watcher, &case.victim, HOME, start).await];
    let mut t = start;
    for m in metres {
        t += SignedDuration::from_secs(30);
        sent.push(publish_fix(watcher, &case.victim, HOME, t).await);
        sent.push(publish_fix(watcher, &case.offender, north(HOME, *m), t).await);
    }
    sent
}

fn alert_of(
    topic: &str,
    payload: &str,
    case: &TestCase,
    wanted_topic: &str,
    event: &str,
    kind: &str,
) -> bool {
    topic == wanted_topic
        && payload.contains(&format!("\"case\":\"{}\"", case.id))
        && payload.contains(&format!("\"event\":\"{event}\""))
        && payload.contains(&format!("\"kind\":\"{kind}\""))
}

/// The alert message `event` of `kind` for `case` on `topic`.
async fn expect_alert(
    watcher: &Watcher,
    case: &TestCase,
    topic: &str,
    event: &str,
    kind: &str,
) -> Value {
    let (_, payload) = watcher
        .expect(&format!("{event} {kind} on {topic}"), |t, p| {
            alert_of(t, p, case, topic, event, kind)
        })
        .await;
    json(&payload)
}

const MONITORING: &str = "kordon/v1/alerts/monitoring";
const POLICE: &str = "kordon/v1/alerts/police";
const POLICE_CAP: &str = "kordon/v1/alerts/police/cap";
const REJECTS: &str = "kordon/v1/rejects";

/// Waits until kordon has handled, and journaled, everything published
/// before: the engine takes messages in order, and the reject of a probe
/// published now goes out only after the records before it are committed.
async fn settle(watcher: &Watcher) {
    let probe = format!("PROBE-SETTLE-{}", Timestamp::now().as_nanosecond());
    watcher
        .publish(
            &format!("kordon/v1/devices/{probe}/fix"),
            fix_json(51.9, 4.5, 5.0, Timestamp::now()),
        )
        .await;
    watcher
        .expect("the probe's reject", |t, p| {
            t == REJECTS && p.contains(&probe)
        })
        .await;
}

// ---------------------------------------------------------------------
// The live stream
// ---------------------------------------------------------------------

#[derive(Debug, Clone)]
struct SseEvent {
    event: String,
    id: String,
    data: Value,
    /// When it reached the test.
    at: Instant,
}

impl SseEvent {
    fn seq(&self) -> u64 {
        self.id.rsplit_once('-').unwrap().1.parse().unwrap()
    }

    fn boot(&self) -> &str {
        self.id.rsplit_once('-').unwrap().0
    }

    fn is_position_of(&self, device: &str) -> bool {
        self.event == "position" && self.data["device"] == device
    }

    fn is_alert(&self, id: &str) -> bool {
        self.event == "alert" && self.data["id"] == id
    }
}

/// One console's `GET /api/v1/stream`, read as it arrives by a task of its
/// own (so that arrival times are true even while the test does other
/// things); the events come out of `next` in order.
struct Stream {
    rx: mpsc::UnboundedReceiver<SseEvent>,
    /// Every event taken so far.
    seen: Vec<SseEvent>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        // The connection closes with the response.
        self.reader.abort();
    }
}

/// The events of one SSE block: a `positions` batch is read as one
/// `position` per device, as the dashboard reads it.
fn parse_event(block: &str, at: Instant) -> Vec<SseEvent> {
    let (mut event, mut id, mut data) = (None, None, Vec::new());
    for line in block.lines() {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = Some(value.to_string()),
            "id" => id = Some(value.to_string()),
            "data" => data.push(value.to_string()),
            _ => {}
        }
    }
    if event.is_none() && data.is_empty() {
        return Vec::new(); // a keep-alive
    }
    let data = data.join("\n");
    let event = SseEvent {
        event: event.unwrap_or_else(|| "message".into()),
        id: id.unwrap_or_else(|| panic!("an event without an id: {block}")),
        data: serde_json::from_str(&data).unwrap_or_else(|e| panic!("data not JSON ({e}): {data}")),
        at,
    };
    if event.event != "positions" {
        return vec![event];
    }
    let positions = event.data.as_array().expect("positions: an array");
    assert!(
        !positions.is_empty(),
        "an empty batch of positions: {block}"
    );
    positions
        .iter()
        .map(|position| SseEvent {
            event: "position".into(),
            data: position.clone(),
            ..event.clone()
        })
        .collect()
}

impl Stream {
    async fn open(api: &Api, auth: Auth<'_>, last_event_id: Option<&str>) -> Stream {
        let mut request = api.request(Method::GET, "/api/v1/stream", auth);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let mut response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "the stream opens");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut buffer: Vec<u8> = Vec::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                let at = Instant::now();
                buffer.extend_from_slice(&chunk);
                while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
                    let block: Vec<u8> = buffer.drain(..end + 2).collect();
                    let block = String::from_utf8(block).expect("UTF-8 events");
                    for event in parse_event(&block, at) {
                        if tx.send(event).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Stream {
            rx,
            seen: Vec::new(),
            reader,
        }
    }

    /// The next event within `timeout`.
    async fn next(&mut self, timeout: Duration) -> Option<SseEvent> {
        let event = tokio::time::timeout(timeout, self.rx.recv())
            .await
            .ok()
            .flatten()?;
        self.seen.push(event.clone());
        Some(event)
    }

    /// The first event taken so far that matches, or else the next one to.
    async fn seen_or_until(
        &mut self,
        what: &str,
        matches: impl FnMut(&SseEvent) -> bool + Clone,
    ) -> SseEvent {
        if let Some(event) = self.seen.iter().find(|e| matches.clone()(e)) {
            return event.clone();
        }
        self.until(what, matches).await
    }

    /// Reads on until an event matches (within 20 s), or fails naming it.
    async fn until(&mut self, what: &str, mut matches: impl FnMut(&SseEvent) -> bool) -> SseEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(event) if matches(&event) => return event,
                Some(_) => {}
                None => {
                    let tail: Vec<String> = self
                        .seen
                        .iter()
                        .rev()
                        .take(12)
                        .map(|e| {
                            format!(
                                "{} {} {}",
                                e.id,
                                e.event,
                                e.data.to_string().chars().take(160).collect::<String>()
                            )
                        })
                        .collect();
                    panic!(
                        "expected {what} on the stream; last events:\n{}",
                        tail.join("\n")
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------
// 1. Sign-in, sessions and CSRF
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signs_in_to_an_httponly_strict_session_whose_changes_need_its_csrf_token_and_its_role(
) {
    let broker = brokers().remove(0);
    let case = TestCase::new("medium");
    let kordon = Kordon::start(&broker, &[&case]).await;
    let api = Api::new(&kordon);
    let watcher = Watcher::new(&broker, &[MONITORING]).await;

    // An unknown token, and no token at all, sign nobody in.
    let (status, body) = api
        .post(
            "/api/v1/session",
            Auth::Nobody,
            json!({"token": "not-a-token"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = api
        .call(
            Method::POST,
            "/api/v1/session",
            Auth::Nobody,
            Some("{".into()),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = api.get("/api/v1/session", Auth::Nobody).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "no session without a cookie"
    );

    let signed_in_at = Timestamp::now();
    let room = api.sign_in(MONITORING_TOKEN).await;
    let attributes: Vec<&str> = room.set_cookie.split(';').map(str::trim).collect();
    assert!(
        attributes[0].starts_with("kordon_session=") && attributes[0].len() > 40,
        "{}",
        room.set_cookie
    );
    for wanted in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(
            attributes.contains(&wanted),
            "{wanted} missing: {}",
            room.set_cookie
        );
    }
    let max_age: u64 = attributes
        .iter()
        .find_map(|a| a.strip_prefix("Max-Age="))
        .unwrap_or_else(|| panic!("Max-Age missing: {}", room.set_cookie))
        .parse()
        .unwrap();
    assert_eq!(max_age, 8 * 3600, "one shift");
    assert_eq!(room.body["name"], "test monitoring", "{}", room.body);
    assert_eq!(room.body["role"], "monitoring", "{}", room.body);
    assert!(room.csrf.len() >= 32, "{}", room.body);
    assert!(
        !room.cookie.contains(&room.csrf),
        "the CSRF token is not the session id"
    );
    let expires: Timestamp = room.body["expires_at"].as_str().unwrap().parse().unwrap();
    let shift = expires.duration_since(signed_in_at);
    assert!(
        shift > SignedDuration::from_hours(8) - SignedDuration::from_mins(1)
            && shift < SignedDuration::from_hours(8) + SignedDuration::from_mins(1),
        "expires {shift:?} after sign-in"
    );

    // A reloaded page asks who it is: the same session, with its CSRF token.
    let (status, me) = api.get("/api/v1/session", Auth::Cookie(&room, None)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["name"], "test monitoring");
    assert_eq!(me["role"], "monitoring");
    assert_eq!(me["csrf"], room.csrf.as_str());

    // An alert to work on: he walks into the exclusion zone.
    publish_fix(&watcher, &case.offender, ZONE_CENTRE, Timestamp::now()).await;
    let id = expect_alert(&watcher, &case, MONITORING, "opened", "zone_breach").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let notes = format!("/api/v1/alerts/{id}/notes");
    let note = json!({"text": "called him: he says he is lost"});

    // Reading by cookie needs no CSRF token.
    let (status, alert) = api
        .get(&format!("/api/v1/alerts/{id}"), Auth::Cookie(&room, None))
        .await;
    assert_eq!(status, StatusCode::OK, "{alert}");
    let (status, _) = api.get("/api/v1/alerts", Auth::Cookie(&room, None)).await;
    assert_eq!(status, StatusCode::OK);

    // Changing by cookie needs the session's own token, exactly.
    let other = api.sign_in(MONITORING_TOKEN).await;
    assert_ne!(other.csrf, room.csrf, "each session has its own token");
    for (what, csrf) in [
        ("without X-Kordon-CSRF", None),
        ("with a wrong X-Kordon-CSRF", Some("0000")),
        ("with an empty X-Kordon-CSRF", Some("")),
        (
            "with another session's X-Kordon-CSRF",
            Some(other.csrf.as_str()),
        ),
    ] {
        let (status, body) = api
            .post(&notes, Auth::Cookie(&room, csrf), note.clone())
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "a note {what}: {body}");
    }
    let (status, noted) = api.post(&notes, room.auth(), note.clone()).await;
    assert_eq!(status, StatusCode::OK, "{noted}");
    assert_eq!(noted["operator"], "test monitoring", "the session's name");
    let alert = api.alert(&id, Auth::Bearer(MONITORING_TOKEN)).await;
    assert_eq!(
        alert["notes"].as_array().map(Vec::len),
        Some(1),
        "the refused notes left nothing: {alert}"
    );

    // The cookie carries its token's role: police may not resolve, an
    // admin may not acknowledge (nor note), whatever the CSRF token.
    let police = api.sign_in(POLICE_TOKEN).await;
    assert_eq!(police.body["role"], "police");
    let (status, body) = api
        .post(
            &format!("/api/v1/alerts/{id}/resolve"),
            police.auth(),
            json!({"disposition": "unit_dispatched", "note": "we went"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "police resolving: {body}");
    let admin = api.sign_in(ADMIN_TOKEN).await;
    assert_eq!(admin.body["role"], "admin");
    let (status, body) = api
        .post(&format!("/api/v1/alerts/{id}/ack"), admin.auth(), json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "admin acknowledging: {body}");
    let (status, body) = api.post(&notes, admin.auth(), note.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "admin noting: {body}");
    let alert = api.alert(&id, Auth::Bearer(MONITORING_TOKEN)).await;
    assert!(alert.get("acknowledgement").is_none(), "{alert}");
    assert!(alert.get("resolution").is_none(), "{alert}");

    // Signing out changes something too: not without the token.
    let (status, _) = api
        .call(
            Method::DELETE,
            "/api/v1/session",
            Auth::Cookie(&room, None),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api.get("/api/v1/session", Auth::Cookie(&room, None)).await;
    assert_eq!(status, StatusCode::OK, "still signed in");
    let response = api
        .send(Method::DELETE, "/api/v1/session", room.auth(), None)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let cleared = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cleared.starts_with("kordon_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let (status, _) = api.get("/api/v1/session", Auth::Cookie(&room, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the session ended");
    let (status, _) = api.get("/api/v1/alerts", Auth::Cookie(&room, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api.post(&notes, room.auth(), note.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Only that one.
    let (status, _) = api.get("/api/v1/session", Auth::Cookie(&other, None)).await;
    assert_eq!(status, StatusCode::OK, "other sessions go on");
    kordon.stop().await;
}

// ---------------------------------------------------------------------
// 2. The operator's workflow on a real breach
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_and_the_police_handle_a_real_breach_and_the_timeline_and_a_replay_keep_every_step(
) {
    let broker = brokers().remove(0);
    let case = TestCase::new("medium");
    let mut kordon = Kordon::start(&broker, &[&case]).await;
    let api = Api::new(&kordon);
    let watcher = Watcher::new(&broker, &[MONITORING, POLICE, REJECTS]).await;

    walk_up(
        &watcher,
        &case,
        &[2000.0, 800.0, 400.0, 100.0, 50.0],
        seconds_ago(600),
    )
    .await;
    let warning = expect_alert(&watcher, &case, MONITORING, "opened", "proximity_warning").await;
    let id = warning["id"].as_str().unwrap().to_string();
    let breach = expect_alert(&watcher, &case, MONITORING, "updated", "proximity_breach").await;
    assert_eq!(breach["id"], id.as_str(), "the warning became the breach");
    // Every fix handled: the alert no longer changes under the operators.
    settle(&watcher).await;

    let room = api.sign_in(MONITORING_TOKEN).await;
    let police = api.sign_in(POLICE_TOKEN).await;
    let alert_path = |action: &str| format!("/api/v1/alerts/{id}/{action}");

    let (status, ack) = api
        .post(&alert_path("ack"), room.auth(), json!({"note": "on it"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    assert_eq!(ack["operator"], "test monitoring");
    let (status, police_ack) = api
        .post(
            &alert_path("ack"),
            police.auth(),
            json!({"note": "unit 12"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{police_ack}");
    assert_eq!(police_ack["operator"], "test police");
    let (status, again) = api.post(&alert_path("ack"), police.auth(), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");

    let alert = api.alert(&id, room.auth()).await;
    assert_eq!(alert["kind"], "proximity_breach", "{alert}");
    assert_eq!(alert["needs_police"], true, "{alert}");
    assert_eq!(
        alert["acknowledgement"]["operator"], "test monitoring",
        "{alert}"
    );
    assert_eq!(alert["acknowledgement"]["note"], "on it", "{alert}");
    assert_eq!(
        alert["police_acknowledgement"]["operator"], "test police",
        "the police's own, beside the room's: {alert}"
    );
    assert_eq!(
        alert["police_acknowledgement"]["note"], "unit 12",
        "{alert}"
    );

    let text = "called her: she is inside, door locked";
    let (status, noted) = api
        .post(&alert_path("notes"), room.auth(), json!({ "text": text }))
        .await;
    assert_eq!(status, StatusCode::OK, "{noted}");
    let alert = api.alert(&id, room.auth()).await;
    let notes = alert["notes"]
        .as_array()
        .unwrap_or_else(|| panic!("no notes: {alert}"));
    assert_eq!(notes.len(), 1, "{alert}");
    assert_eq!(notes[0]["operator"], "test monitoring");
    assert_eq!(notes[0]["text"], text);

    // A resolution needs a disposition and a note.
    for body in [
        json!({"disposition": "unit_dispatched"}),
        json!({"disposition": "unit_dispatched", "note": "   "}),
        json!({"note": "he left"}),
        json!({}),
    ] {
        let (status, answer) = api
            .post(&alert_path("resolve"), room.auth(), body.clone())
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
    }
    let resolution_note = "unit 12 found him at the corner; he left";
    let (status, resolved) = api
        .post(
            &alert_path("resolve"),
            room.auth(),
            json!({"disposition": "unit_dispatched", "note": resolution_note}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert_eq!(resolved["disposition"], "unit_dispatched", "{resolved}");
    assert_eq!(resolved["operator"], "test monitoring", "{resolved}");
    let alert = api.alert(&id, room.auth()).await;
    assert_eq!(
        alert["resolution"]["disposition"], "unit_dispatched",
        "{alert}"
    );
    assert_eq!(alert["resolution"]["note"], resolution_note, "{alert}");
    assert_eq!(
        alert["resolution"]["operator"], "test monitoring",
        "{alert}"
    );
    let (status, again) = api
        .post(
            &alert_path("resolve"),
            room.auth(),
            json!({"disposition": "other", "note": "again"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");

    // The case's timeline, newest first, with who did what.
    let timeline_path = format!("/api/v1/cases/{}/timeline", case.id);
    let (status, timeline) = api.get(&timeline_path, room.auth()).await;
    assert_eq!(status, StatusCode::OK, "{timeline}");
    let items = timeline.as_array().unwrap();
    let seqs: Vec<u64> = items.iter().map(|i| i["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    let mine: Vec<&Value> = items.iter().filter(|i| i["alert"] == id.as_str()).collect();
    let kinds: Vec<&str> = mine.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds[..4],
        ["resolve", "note", "police_ack", "ack"],
        "{timeline:#}"
    );
    assert!(
        kinds[4..].iter().all(|k| *k == "alert") && kinds.len() > 4,
        "then the alert's own items: {kinds:?}"
    );
    let (resolve, note, police_ack, ack) = (mine[0], mine[1], mine[2], mine[3]);
    assert_eq!(resolve["operator"], "test monitoring", "{resolve}");
    assert_eq!(resolve["disposition"], "unit_dispatched", "{resolve}");
    assert_eq!(resolve["text"], resolution_note, "{resolve}");
    assert_eq!(note["operator"], "test monitoring", "{note}");
    assert_eq!(note["text"], text, "{note}");
    assert_eq!(police_ack["operator"], "test police", "{police_ack}");
    assert_eq!(police_ack["text"], "unit 12", "{police_ack}");
    assert_eq!(ack["operator"], "test monitoring", "{ack}");
    assert_eq!(ack["text"], "on it", "{ack}");
    let alert_items = &mine[4..];
    let oldest = alert_items.last().unwrap();
    assert_eq!(oldest["phase"], "opened", "{oldest}");
    assert_eq!(oldest["alert_kind"], "proximity_warning", "{oldest}");
    assert!(
        alert_items
            .iter()
            .any(|i| i["phase"] == "updated" && i["alert_kind"] == "proximity_breach"),
        "the rise to a breach: {timeline:#}"
    );
    assert!(
        alert_items.iter().all(|i| i["distance_m"].is_number()),
        "the room reads the distance: {timeline:#}"
    );
    // The police read it too; an admin without the distance to her.
    let (status, _) = api.get(&timeline_path, police.auth()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, admin_timeline) = api.get(&timeline_path, Auth::Bearer(ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        admin_timeline
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i.get("distance_m").is_none()),
        "{admin_timeline:#}"
    );

    // A restart that rebuilds everything from the journal's records (no
    // snapshot) keeps what the operators did.
    let handled = |alert: &Value| {
        json!({
            "acknowledgement": alert["acknowledgement"],
            "police_acknowledgement": alert["police_acknowledgement"],
            "notes": alert["notes"],
            "resolution": alert["resolution"],
        })
    };
    let before = handled(&api.alert(&id, Auth::Bearer(MONITORING_TOKEN)).await);
    kordon.shutdown().await;
    let journal_dir = kordon.journal_path().parent().unwrap().to_path_buf();
    for entry in std::fs::read_dir(&journal_dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("snapshot")
        {
            std::fs::remove_file(&path).unwrap();
        }
    }
    kordon.restart().await;
    let api = Api::new(&kordon);
    let after = handled(&api.alert(&id, Auth::Bearer(MONITORING_TOKEN)).await);
    assert_eq!(after, before, "replayed from the journal");
    let (_, timeline_after) = api
        .get(&timeline_path, Auth::Bearer(MONITORING_TOKEN))
        .await;
    assert_eq!(
        timeline_after, timeline,
        "the timeline reads the same after a restart"
    );
    let (status, again) = api
        .post(
            &alert_path("resolve"),
            Auth::Bearer(MONITORING_TOKEN),
            json!({"disposition": "other", "note": "again"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "still resolved: {again}");
    // A restart signs everyone out.
    let (status, _) = api.get("/api/v1/session", Auth::Cookie(&room, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    kordon.stop().await;
}

// ---------------------------------------------------------------------
// 3. Escalation by hand
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalating_a_warning_by_hand_tells_the_police_in_json_and_cap_and_shows_it_to_them() {
    let schema_text = xsd::cap_schema_text();
    let schema_doc = roxmltree::Document::parse(&schema_text).unwrap();
    let schema = xsd::Schema::new(&schema_doc);
    let broker = brokers().remove(0);
    let case = TestCase::new("medium");
    let kordon = Kordon::start(&broker, &[&case]).await;
    let api = Api::new(&kordon);
    let coordinators = format!("kordon/v1/cases/{}/coordinators", case.id);
    let watcher = Watcher::new(
        &broker,
        &[MONITORING, POLICE, POLICE_CAP, REJECTS, &coordinators],
    )
    .await;

    // 400 m: a warning, the monitoring room's alone.
    walk_up(&watcher, &case, &[2000.0, 800.0, 400.0], seconds_ago(300)).await;
    let warning = expect_alert(&watcher, &case, MONITORING, "opened", "proximity_warning").await;
    let id = warning["id"].as_str().unwrap().to_string();
    settle(&watcher).await;
    let police = Auth::Bearer(POLICE_TOKEN);
    let (_, list) = api.get("/api/v1/alerts", police).await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|a| a["id"] != id.as_str()),
        "a warning is not the police's: {list}"
    );
    let (status, _) = api.get(&format!("/api/v1/alerts/{id}"), police).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api
        .post(&format!("/api/v1/alerts/{id}/ack"), police, json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not the police's to take");

    let path = format!("/api/v1/alerts/{id}/escalate");
    let room = api.sign_in(MONITORING_TOKEN).await;
    for body in [json!({"note": ""}), json!({"note": "  "}), json!({})] {
        let (status, answer) = api.post(&path, room.auth(), body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
    }
    let (status, _) = api.call(Method::POST, &path, room.auth(), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no body");
    let why = json!({"note": "he keeps circling her street"});
    for token in [POLICE_TOKEN, ADMIN_TOKEN] {
        let (status, answer) = api.post(&path, Auth::Bearer(token), why.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{token}: {answer}");
    }
    assert!(
        !watcher
            .log()
            .iter()
            .any(|(t, p)| t.starts_with(POLICE) && String::from_utf8_lossy(p).contains(&id)),
        "the police heard nothing before the escalation"
    );

    let (status, escalated) = api.post(&path, room.auth(), why.clone()).await;
    assert_eq!(status, StatusCode::OK, "{escalated}");
    assert_eq!(escalated["operator"], "test monitoring", "{escalated}");
    assert_eq!(escalated["note"], why["note"], "{escalated}");

    let on_police = expect_alert(&watcher, &case, POLICE, "escalated", "proximity_warning").await;
    assert_eq!(on_police["id"], id.as_str(), "{on_police}");
    assert_eq!(
        on_police["offender"]["device"],
        case.offender.as_str(),
        "{on_police}"
    );
    let (_, cap) = watcher
        .expect("the CAP message", |t, p| {
            t == POLICE_CAP && p.contains(&format!("<identifier>kordon-{id}-"))
        })
        .await;
    assert!(cap.contains("<msgType>Alert</msgType>"), "{cap}");
    if let Err(errors) = schema.validate(&cap) {
        panic!("CAP invalid:\n{}\n{cap}", errors.join("\n"));
    }
    let (_, notice) = watcher
        .expect("the coordinators told", |t, p| {
            t == coordinators && p.contains(&id)
        })
        .await;
    assert_eq!(json(&notice)["event"], "escalated", "{notice}");

    // The police now have it, with who escalated it and why.
    let (_, list) = api.get("/api/v1/alerts", police).await;
    let theirs = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id.as_str())
        .unwrap_or_else(|| panic!("the escalated warning is not the police's: {list}"));
    assert_eq!(theirs["needs_police"], true, "{theirs}");
    assert!(theirs["escalated_at"].is_string(), "{theirs}");
    assert_eq!(
        theirs["manual_escalation"]["operator"], "test monitoring",
        "{theirs}"
    );
    assert_eq!(theirs["manual_escalation"]["note"], why["note"], "{theirs}");
    // Once.
    let (status, again) = api.post(&path, room.auth(), why.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    // And the police can take it.
    let (status, ack) = api
        .post(&format!("/api/v1/alerts/{id}/ack"), police, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    kordon.stop().await;
}

// ---------------------------------------------------------------------
// 4. The live stream
// ---------------------------------------------------------------------

/// Consecutive positions of one device on a stream: never two within a
/// second. Measured where the test reads them, so with a margin for the
/// way there (a stream without the rule sends them milliseconds apart).
fn assert_at_most_once_a_second(stream: &Stream, device: &str) {
    let times: Vec<Instant> = stream
        .seen
        .iter()
        .filter(|e| e.is_position_of(device))
        .map(|e| e.at)
        .collect();
    for pair in times.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(
            gap >= Duration::from_millis(700),
            "two positions of {device} {gap:?} apart"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_sends_every_alert_change_and_each_device_position_at_most_once_a_second() {
    let broker = brokers().remove(0);
    let case = TestCase::new("medium");
    let kordon = Kordon::start(&broker, &[&case]).await;
    let api = Api::new(&kordon);
    let watcher = Watcher::new(&broker, &[MONITORING, REJECTS]).await;
    let mut room = Stream::open(&api, Auth::Bearer(MONITORING_TOKEN), None).await;

    // Two fixes of hers within a second: the first at once, the second
    // (the latest) only a second later.
    let start = seconds_ago(300);
    let first = publish_fix(&watcher, &case.victim, HOME, start).await;
    let second = publish_fix(
        &watcher,
        &case.victim,
        north(HOME, 3.0),
        start + SignedDuration::from_secs(1),
    )
    .await;
    let p1 = room
        .until("her first position", |e| e.is_position_of(&case.victim))
        .await;
    assert_eq!(p1.data["lat"].as_f64(), Some(first.lat), "{}", p1.data);
    assert_eq!(p1.data["ts"], first.ts.to_string(), "{}", p1.data);
    assert_eq!(p1.data["case"], case.id.as_str());
    assert_eq!(p1.data["role"], "protected");
    assert_eq!(p1.data["acc_m"], 5.0);
    let p2 = room
        .until("her latest position", |e| e.is_position_of(&case.victim))
        .await;
    assert_eq!(
        p2.data["lat"].as_f64(),
        Some(second.lat),
        "held back, not dropped: {}",
        p2.data
    );
    assert!(p2.seq() > p1.seq());
    assert_at_most_once_a_second(&room, &case.victim);

    // He walks up: his positions, throttled the same way, and the alert.
    let sent: Vec<Sent> = walk_up(
        &watcher,
        &case,
        &[2000.0, 800.0, 400.0],
        start + SignedDuration::from_secs(2),
    )
    .await
    .into_iter()
    .filter(|s| s.device == case.offender)
    .collect();
    let warning = room
        .until("the warning", |e| {
            e.event == "alert"
                && e.data["case"] == case.id.as_str()
                && e.data["kind"] == "proximity_warning"
        })
        .await;
    let on_mqtt = expect_alert(&watcher, &case, MONITORING, "opened", "proximity_warning").await;
    let id = on_mqtt["id"].as_str().unwrap().to_string();
    assert_eq!(warning.data["id"], id.as_str(), "{}", warning.data);
    assert_eq!(warning.data["open"], true);
    assert_eq!(
        warning.data["protected"]["device"],
        case.victim.as_str(),
        "the room sees her"
    );
    assert!(
        regex::Regex::new(r"^[0-9a-f]+-[0-9]+$")
            .unwrap()
            .is_match(&warning.id),
        "id {}",
        warning.id
    );
    assert_eq!(warning.boot(), p1.boot(), "one boot");
    let last = sent.last().unwrap();
    let his = room
        .until("his latest position", |e| {
            e.is_position_of(&case.offender) && e.data["lat"].as_f64() == Some(last.lat)
        })
        .await;
    assert_eq!(his.data["role"], "offender", "{}", his.data);
    assert_eq!(his.data["ts"], last.ts.to_string(), "{}", his.data);
    let his_count = room
        .seen
        .iter()
        .filter(|e| e.is_position_of(&case.offender))
        .count();
    assert!(
        his_count < sent.len(),
        "{his_count} positions for {} fixes within a second",
        sent.len()
    );
    assert_at_most_once_a_second(&room, &case.offender);
    assert_at_most_once_a_second(&room, &case.victim);

    // What an operator does is a change of the alert too.
    let (status, _) = api
        .post(
            &format!("/api/v1/alerts/{id}/ack"),
            Auth::Bearer(MONITORING_TOKEN),
            json!({"note": "seen"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let acked = room
        .until("the acknowledgement", |e| {
            e.is_alert(&id) && e.data["acknowledgement"].is_object()
        })
        .await;
    assert_eq!(acked.data["acknowledgement"]["note"], "seen");
    // And a case put through the API is a `case` event.
    let (status, answer) = api
        .call(
            Method::PUT,
            &format!("/api/v1/cases/{}", case.id),
            Auth::Bearer(ADMIN_TOKEN),
            Some(case.json().to_string()),
        )
        .await;
    assert!(status.is_success(), "{answer}");
    let put = room.until("the case event", |e| e.event == "case").await;
    assert_eq!(put.data, json!({ "case": case.id }));
    // Ids only grow (the positions of one batch share its id).
    let one_batch = |a: &SseEvent, b: &SseEvent| a.event == "position" && b.event == "position";
    assert!(
        room.seen
            .windows(2)
            .all(|w| w[0].seq() < w[1].seq()
                || (w[0].seq() == w[1].seq() && one_batch(&w[0], &w[1]))),
        "{:?}",
        room.seen
            .iter()
            .map(|e| (e.seq(), &e.event))
            .collect::<Vec<_>>()
    );
    drop(room);
    kordon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_resuming_with_last_event_id_gets_what_it_missed_and_one_that_cannot_resume_is_told_to_reset(
) {
    let broker = brokers().remove(0);
    let case = TestCase::new("medium");
    let kordon = Kordon::start(&broker, &[&case]).await;
    let api = Api::new(&kordon);
    let watcher = Watcher::new(&broker, &[MONITORING, REJECTS]).await;
    let room_auth = Auth::Bearer(MONITORING_TOKEN);

    let mut first = Stream::open(&api, room_auth, None).await;
    walk_up(
        &watcher,
        &case,
        &[2000.0, 800.0, 400.0, 100.0],
        seconds_ago(300),
    )
    .await;
    let warning = first
        .until("the warning", |e| {
            e.event == "alert"
                && e.data["case"] == case.id.as_str()
                && e.data["kind"] == "proximity_warning"
        })
        .await;
    let id = warning.data["id"].as_str().unwrap().to_string();
    first
        .until("the breach", |e| {
            e.is_alert(&id) && e.data["kind"] == "proximity_breach"
        })
        .await;
    let at = first.seen.iter().position(|e| e.id == warning.id).unwrap();
    let missed: Vec<SseEvent> = first.seen[at + 1..].to_vec();
    assert!(!missed.is_empty());
    drop(first);

    // While the console is away, an operator notes something.
    let (status, _) = api
        .post(
            &format!("/api/v1/alerts/{id}/notes"),
            room_auth,
            json!({"text": "while you were away"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let mut again = Stream::open(&api, room_auth, Some(&warning.id)).await;
    for expected in &missed {
        let got = again
            .next(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{} was not replayed", expected.id));
        assert_eq!(
            (&got.id, &got.event, &got.data),
            (&expected.id, &expected.event, &expected.data),
            "replayed in order, as first sent"
        );
    }
    let note = again
        .until("the note made while away", |e| {
            e.is_alert(&id) && e.data["notes"].as_array().is_some_and(|n| !n.is_empty())
        })
        .await;
    assert_eq!(note.data["notes"][0]["text"], "while you were away");
    assert!(
        again.seen.iter().all(|e| e.event != "reset"),
        "a resumable stream is not reset"
    );
    let seqs: Vec<u64> = again.seen.iter().map(SseEvent::seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(
        seqs[0] == warning.seq() + 1,
        "from right after the id given: {seqs:?}"
    );
    drop(again);

    // An id it cannot resume from: not ours, from another boot, from the future.
    let boot = warning.boot().to_string();
    let other_boot = if boot == "00000000" {
        "11111111"
    } else {
        "00000000"
    };
    for last in [
        "bogus-7".to_string(),
        format!("{other_boot}-1"),
        format!("{boot}-999999999"),
        format!("{boot}-x"),
    ] {
        let mut lost = Stream::open(&api, room_auth, Some(&last)).await;
        let reset = lost
            .next(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("nothing after Last-Event-ID {last}"));
        assert_eq!(reset.event, "reset", "Last-Event-ID {last}: {reset:?}");
        assert_eq!(reset.boot(), boot, "{reset:?}");
        assert_eq!(reset.data, json!({}));
        // Then it carries on with what happens next.
        let (status, _) = api
            .post(
                &format!("/api/v1/alerts/{id}/notes"),
                room_auth,
                json!({ "text": format!("after {last}") }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let next = lost
            .until("the next change after the reset", |e| e.is_alert(&id))
            .await;
        assert!(next.seq() > reset.seq());
        assert!(
            lost.seen.iter().filter(|e| e.event == "reset").count() == 1,
            "one reset"
        );
    }
    kordon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn police_and_admin_consoles_see_on_the_stream_only_what_their_role_may_see() {
    let broker = brokers().remove(0);
    let case = TestCase::new("medium");
    let kordon = Kordon::start(&broker, &[&case]).await;
    let api = Api::new(&kordon);
    let watcher = Watcher::new(&broker, &[MONITORING, REJECTS]).await;
    let police_session = api.sign_in(POLICE_TOKEN).await;
    let admin_session = api.sign_in(ADMIN_TOKEN).await;
    let mut room = Stream::open(&api, Auth::Bearer(MONITORING_TOKEN), None).await;
    let mut police = Stream::open(&api, Auth::Cookie(&police_session, None), None).await;
    let mut admin = Stream::open(&api, Auth::Cookie(&admin_session, None), None).await;

    // A warning (the room's alone), then a breach (the police's too).
    let sent = walk_up(
        &watcher,
        &case,
        &[2000.0, 800.0, 400.0, 100.0],
        seconds_ago(300),
    )
    .await;
    let breach = room
        .until("the breach", |e| {
            e.event == "alert"
                && e.data["case"] == case.id.as_str()
                && e.data["kind"] == "proximity_breach"
        })
        .await;
    let id = breach.data["id"].as_str().unwrap().to_string();
    assert!(
        breach.data["distance_m"].is_number(),
        "the room sees it all: {}",
        breach.data
    );
    assert!(breach.data["offender"].is_object(), "{}", breach.data);
    assert!(breach.data["protected"].is_object(), "{}", breach.data);
    // Every position has gone out (the last ones are held back longest).
    for device in [&case.offender, &case.victim] {
        let last = sent.iter().rfind(|s| &s.device == device).unwrap();
        let ts = last.ts.to_string();
        room.seen_or_until(&format!("the last position of {device}"), |e| {
            e.is_position_of(device) && e.data["ts"] == ts.as_str()
        })
        .await;
    }

    // A change every console sees marks the end of what to look at.
    let (status, _) = api
        .post(
            &format!("/api/v1/alerts/{id}/ack"),
            Auth::Bearer(MONITORING_TOKEN),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let acknowledged = |e: &SseEvent| e.is_alert(&id) && e.data["acknowledgement"].is_object();
    room.until("the acknowledgement", acknowledged).await;
    police.until("the acknowledgement", acknowledged).await;
    admin.until("the acknowledgement", acknowledged).await;

    let summary = |s: &Stream| -> Vec<String> {
        s.seen
            .iter()
            .map(|e| format!("{} {} {}", e.event, e.data["kind"], e.data["device"]))
            .collect()
    };
    assert!(
        room.seen
            .iter()
            .any(|e| e.event == "alert" && e.data["kind"] == "proximity_warning"),
        "the room saw the warning"
    );
    // Police: police alerts only, no positions.
    assert!(
        police.seen.iter().all(|e| e.event != "position"),
        "positions on the police stream: {:?}",
        summary(&police)
    );
    let police_alerts: Vec<&SseEvent> = police.seen.iter().filter(|e| e.event == "alert").collect();
    assert!(
        police_alerts.iter().all(|e| e.data["needs_police"] == true),
        "a non-police alert on the police stream: {:?}",
        summary(&police)
    );
    assert!(
        police_alerts
            .iter()
            .all(|e| e.data["kind"] != "proximity_warning"),
        "the warning on the police stream: {:?}",
        summary(&police)
    );
    assert!(
        police_alerts
            .iter()
            .any(|e| e.data["kind"] == "proximity_breach"),
        "the police saw the breach: {:?}",
        summary(&police)
    );
    // Admin: every alert, and nothing that locates her.
    assert!(
        admin.seen.iter().all(|e| e.event != "position"),
        "positions on the admin stream: {:?}",
        summary(&admin)
    );
    let admin_alerts: Vec<&SseEvent> = admin.seen.iter().filter(|e| e.event == "alert").collect();
    assert!(
        admin_alerts.len() >= 3,
        "warning, breach, acknowledgement: {:?}",
        summary(&admin)
    );
    for e in &admin_alerts {
        assert!(
            e.data.get("protected").is_none(),
            "her position to an admin: {}",
            e.data
        );
        assert!(
            e.data.get("offender").is_none(),
            "his position (near her, or in the zone at her home), to an admin: {}",
            e.data
        );
        if e.data["kind"].as_str().unwrap().starts_with("proximity") {
            assert!(
                e.data.get("distance_m").is_none(),
                "the distance to her, to an admin: {}",
                e.data
            );
        }
    }
    drop((room, police, admin));
    kordon.stop().await;
}

/// The monitoring room keeps its consoles open, also when an operator
/// restarts kordon: the HTTP server waited for their streams, which never
/// end, and a stop on SIGTERM hung until it was killed (found by
/// `kordon-bench --consoles 1`, whose kordon took 300 s and a SIGKILL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kordon_stops_while_a_console_follows_the_stream_and_the_stream_ends() {
    let broker = brokers().remove(0);
    let case = TestCase::new("medium");
    let kordon = Kordon::start(&broker, &[&case]).await;
    let api = Api::new(&kordon);
    let mut room = Stream::open(&api, Auth::Bearer(MONITORING_TOKEN), None).await;
    tokio::time::timeout(Duration::from_secs(20), kordon.stop())
        .await
        .expect("kordon stops with a console open");
    tokio::time::timeout(Duration::from_secs(5), &mut room.reader)
        .await
        .expect("the console's stream ends")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_tells_a_console_when_kordon_loses_its_broker() {
    let broker = brokers().remove(0);
    let case = TestCase::new("medium");
    let proxy = proxy::Proxy::start(broker.host_port()).await;
    let kordon = Kordon::start_with(&broker, &[&case], 120, Some(proxy.url())).await;
    let api = Api::new(&kordon);
    let mut room = Stream::open(&api, Auth::Bearer(MONITORING_TOKEN), None).await;

    proxy.down();
    // kordon itself says so on /healthz …
    let mut degraded = Value::Null;
    for _ in 0..300 {
        let (_, health) = api.get("/healthz", Auth::Nobody).await;
        if health["problems"]
            .to_string()
            .contains("not connected to the broker")
        {
            degraded = health;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!degraded.is_null(), "kordon never noticed the outage");
    // … and `health` is the body of /healthz, on the stream when it changes.
    let health = room
        .until("a health event for the lost broker", |e| {
            e.event == "health"
                && e.data["problems"]
                    .to_string()
                    .contains("not connected to the broker")
        })
        .await;
    assert_eq!(health.data["status"], "degraded", "{}", health.data);
    proxy.up();
    drop(room);
    kordon.stop().await;
}

// ---------------------------------------------------------------------
// 5. Playback
// ---------------------------------------------------------------------

/// Asserts that a playback track holds each of `sent`, in order.
fn assert_track_holds(playback: &Value, sent: &[&Sent]) {
    let device = &sent[0].device;
    let track = playback["tracks"][device]
        .as_array()
        .unwrap_or_else(|| panic!("no track of {device}: {playback:#}"));
    let points: Vec<(Timestamp, f64, f64)> = track
        .iter()
        .map(|p| {
            (
                p["ts"].as_str().unwrap().parse().unwrap(),
                p["lat"].as_f64().unwrap(),
                p["lon"].as_f64().unwrap(),
            )
        })
        .collect();
    assert!(
        points.windows(2).all(|w| w[0].0 <= w[1].0),
        "in time order: {points:?}"
    );
    for fix in sent {
        assert!(
            points.iter().any(|(ts, lat, lon)| *ts == fix.ts
                && (lat - fix.lat).abs() < 1e-9
                && (lon - fix.lon).abs() < 1e-9),
            "the fix of {} at {} ({}, {}) is not in the track: {points:?}",
            fix.device,
            fix.ts,
            fix.lat,
            fix.lon
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playback_gives_the_monitoring_room_both_tracks_of_an_alert_and_nobody_else() {
    let broker = brokers().remove(0);
    let case = TestCase::new("medium");
    let kordon = Kordon::start(&broker, &[&case]).await;
    let api = Api::new(&kordon);
    let watcher = Watcher::new(&broker, &[MONITORING, REJECTS]).await;
    let sent = walk_up(
        &watcher,
        &case,
        &[2000.0, 800.0, 400.0, 100.0],
        seconds_ago(300),
    )
    .await;
    let breach = expect_alert(&watcher, &case, MONITORING, "updated", "proximity_breach").await;
    let id = breach["id"].as_str().unwrap().to_string();
    settle(&watcher).await;

    let path = format!("/api/v1/alerts/{id}/playback");
    let (status, playback) = api.get(&path, Auth::Bearer(MONITORING_TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{playback}");
    assert_eq!(playback["alert"], id.as_str());
    assert_eq!(playback["case"], case.id.as_str());
    let alert = api.alert(&id, Auth::Bearer(MONITORING_TOKEN)).await;
    assert_eq!(playback["onset"], alert["onset"], "{playback}");
    let onset: Timestamp = playback["onset"].as_str().unwrap().parse().unwrap();
    let from: Timestamp = playback["from"].as_str().unwrap().parse().unwrap();
    let to: Timestamp = playback["to"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        from,
        onset - SignedDuration::from_hours(1),
        "an hour before onset"
    );
    assert!(to >= onset, "{playback}");
    let tracks = playback["tracks"].as_object().unwrap();
    assert_eq!(
        tracks.keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([case.offender.clone(), case.victim.clone()]),
        "both devices"
    );
    let his: Vec<&Sent> = sent.iter().filter(|s| s.device == case.offender).collect();
    let hers: Vec<&Sent> = sent.iter().filter(|s| s.device == case.victim).collect();
    assert_track_holds(&playback, &his);
    assert_track_holds(&playback, &hers);
    assert_eq!(tracks[&case.offender].as_array().unwrap().len(), his.len());

    for token in [POLICE_TOKEN, ADMIN_TOKEN] {
        let (status, body) = api.get(&path, Auth::Bearer(token)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{token}: {body}");
    }
    let (status, _) = api
        .get(
            "/api/v1/alerts/0123456789abcdef0123456789abcdef/playback",
            Auth::Bearer(MONITORING_TOKEN),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    kordon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playback_of_an_episode_that_has_ended_still_shows_the_fixes_that_made_it() {
    let broker = brokers().remove(0);
    let case = TestCase::new("medium");
    let kordon = Kordon::start(&broker, &[&case]).await;
    let api = Api::new(&kordon);
    let watcher = Watcher::new(&broker, &[MONITORING, REJECTS]).await;
    // Up to her, and away for good: the episode clears. The fixes come in
    // together, as a bracelet's backlog does after a dead spot.
    let sent = walk_up(
        &watcher,
        &case,
        &[
            2000.0, 800.0, 400.0, 100.0, 50.0, 2000.0, 2500.0, 3000.0, 3000.0,
        ],
        seconds_ago(900),
    )
    .await;
    let cleared = expect_alert(&watcher, &case, MONITORING, "cleared", "proximity_breach").await;
    let id = cleared["id"].as_str().unwrap().to_string();
    settle(&watcher).await;
    let alert = api.alert(&id, Auth::Bearer(MONITORING_TOKEN)).await;
    assert_eq!(alert["open"], false);
    let ended: Timestamp = alert["ts"].as_str().unwrap().parse().unwrap();

    let (status, playback) = api
        .get(
            &format!("/api/v1/alerts/{id}/playback"),
            Auth::Bearer(MONITORING_TOKEN),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{playback}");
    // The episode from an hour before its onset to the fix that ended it.
    let his: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.device == case.offender && s.ts <= ended)
        .collect();
    assert!(his.len() >= 7, "{ended}");
    let hers: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.device == case.victim && s.ts <= ended)
        .collect();
    assert_track_holds(&playback, &his);
    assert_track_holds(&playback, &hers);
    kordon.stop().await;
}

// ---------------------------------------------------------------------
// 6. Case intake
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checking_a_case_file_locates_each_error_diffs_it_against_the_running_case_and_applies_nothing(
) {
    let broker = brokers().remove(0);
    let case = TestCase::new("medium");
    let kordon = Kordon::start(&broker, &[&case]).await;
    let api = Api::new(&kordon);
    let admin = api.sign_in(ADMIN_TOKEN).await;
    let path = format!("/api/v1/cases/{}/check", case.id);
    let check = |body: String| {
        let api = &api;
        let path = &path;
        let admin = &admin;
        async move { api.call(Method::POST, path, admin.auth(), Some(body)).await }
    };

    // Three mistakes: an alarm radius beyond the warning radius, a zone
    // whose ring is not closed, an order that ends before it starts.
    let mut file = case.json();
    file["orders"][0]["rule"]["alarm_radius_m"] = json!(600);
    file["orders"][1]["rule"]["geometry"]["coordinates"][0]
        .as_array_mut()
        .unwrap()
        .pop();
    file["orders"][1]["valid_until"] = json!("2025-12-01T00:00:00+01:00");
    let (status, report) = check(serde_json::to_string_pretty(&file).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["valid"], false, "{report:#}");
    assert_eq!(report["exists"], true, "{report:#}");
    let errors = report["errors"].as_array().unwrap();
    let found: BTreeSet<(String, String, String)> = errors
        .iter()
        .map(|e| {
            assert!(!e["message"].as_str().unwrap().is_empty(), "{e}");
            (
                e["field"].as_str().unwrap().to_string(),
                e["order"].as_str().unwrap_or("").to_string(),
                e["problem"]["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String, String)> = [
        (
            "orders[0].rule.alarm_radius_m",
            "contact-ban",
            "alarm_exceeds_warning",
        ),
        (
            "orders[1].rule.geometry.coordinates[0]",
            "zone-ban",
            "ring_not_closed",
        ),
        (
            "orders[1].valid_until",
            "zone-ban",
            "validity_ends_before_start",
        ),
    ]
    .iter()
    .map(|(f, o, c)| (f.to_string(), o.to_string(), c.to_string()))
    .collect();
    assert_eq!(found, expected, "{report:#}");
    assert_eq!(errors.len(), 3, "{report:#}");

    // A valid change: its diff against the running case, leaf by leaf.
    let mut riskier = case.json();
    riskier["risk"] = json!("high");
    let (status, report) = check(riskier.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["valid"], true, "{report:#}");
    assert_eq!(report["errors"], json!([]), "{report:#}");
    assert_eq!(
        report["diff"],
        json!([{"path": "risk", "before": "medium", "after": "high"}]),
        "{report:#}"
    );
    // The file of another case names the mismatch.
    let (status, report) = api
        .call(
            Method::POST,
            "/api/v1/cases/SOMETHING-ELSE/check",
            admin.auth(),
            Some(case.json().to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["exists"], false);
    assert_eq!(report["errors"][0]["field"], "id", "{report:#}");

    // Not JSON, or not a case: where it stopped.
    let broken = "{\n  \"id\": \"X\",\n  \"risk\": ,\n  \"orders\": []\n}\n";
    let (status, answer) = check(broken.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["line"], 3, "{answer}");
    assert_eq!(answer["column"], 11, "{answer}");
    assert!(answer["error"].is_string(), "{answer}");
    let mut odd = case.json();
    odd["colour"] = json!("red");
    let text = serde_json::to_string_pretty(&odd).unwrap();
    let odd_line = text.lines().position(|l| l.contains("\"colour\"")).unwrap() + 1;
    let (status, answer) = check(text).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["line"], odd_line, "{answer}");
    assert!(answer["column"].as_u64().unwrap() > 0, "{answer}");

    // Only admins check cases.
    for token in [MONITORING_TOKEN, POLICE_TOKEN] {
        let (status, body) = api
            .call(
                Method::POST,
                &path,
                Auth::Bearer(token),
                Some(riskier.to_string()),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{token}: {body}");
    }
    // Nothing was applied.
    let (_, running) = api
        .get(
            &format!("/api/v1/cases/{}", case.id),
            Auth::Bearer(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(running["risk"], "medium", "{running}");
    assert_eq!(
        running["orders"][0]["rule"]["alarm_radius_m"], 200.0,
        "{running}"
    );
    assert!(
        running["orders"][1].get("valid_until").is_none(),
        "{running}"
    );
    kordon.stop().await;
}

// ---------------------------------------------------------------------
// 7. The deadline report
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_report_shows_an_acknowledged_alert_in_json_and_csv_and_this_weeks_compliance()
{
    let broker = brokers().remove(0);
    let case = TestCase::new("medium");
    let kordon = Kordon::start(&broker, &[&case]).await;
    let api = Api::new(&kordon);
    let watcher = Watcher::new(&broker, &[MONITORING, REJECTS]).await;
    let room = Auth::Bearer(MONITORING_TOKEN);

    // A zone breach: the room's and the police's.
    publish_fix(&watcher, &case.offender, ZONE_CENTRE, Timestamp::now()).await;
    let opened = expect_alert(&watcher, &case, MONITORING, "opened", "zone_breach").await;
    let id = opened["id"].as_str().unwrap().to_string();
    let (status, ack) = api
        .post(&format!("/api/v1/alerts/{id}/ack"), room, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    let took = ack["time_to_ack_s"].as_f64().unwrap();

    let (status, report) = api.get("/api/v1/reports/deadlines", room).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["targets"]["acknowledge_s"], 120, "{report}");
    let rows = report["alerts"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report:#}");
    let row = &rows[0];
    assert_eq!(row["alert"], id.as_str(), "{row}");
    assert_eq!(row["case"], case.id.as_str(), "{row}");
    assert_eq!(row["kind"], "zone_breach", "{row}");
    assert_eq!(row["police"], true, "{row}");
    let acknowledged_s = row["acknowledged_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("{row}"));
    assert!(
        (acknowledged_s - took).abs() < 1.0,
        "report {acknowledged_s} s, acknowledgement {took} s"
    );
    assert_eq!(row["acknowledged_in_time"], true, "{row}");
    assert!(row.get("resolved_s").is_none(), "{row}");
    assert!(
        row.get("police_in_time").is_none(),
        "still running, not judged yet: {row}"
    );

    let response = api
        .send(Method::GET, "/api/v1/reports/deadlines.csv", room, None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"),
        "{:?}",
        response.headers()
    );
    let csv = response.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "a header and the alert's row: {csv}");
    // Read by column name: the report may gain columns.
    let header: Vec<&str> = lines[0].split(',').collect();
    for column in [
        "alert",
        "case",
        "kind",
        "severity",
        "raised_at",
        "police",
        "acknowledged_s",
        "resolved_s",
        "police_acknowledged_s",
        "acknowledged_in_time",
        "resolved_in_time",
        "police_in_time",
    ] {
        assert!(header.contains(&column), "no column {column}: {}", lines[0]);
    }
    let cells: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(cells.len(), header.len(), "{csv}");
    let cell = |name: &str| cells[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(cell("alert"), id);
    assert_eq!(cell("case"), case.id);
    assert_eq!(cell("kind"), "zone_breach");
    assert_eq!(cell("police"), "true");
    assert_eq!(cell("acknowledged_s"), format!("{acknowledged_s:.0}"));
    assert_eq!(cell("resolved_s"), "", "not resolved");
    assert_eq!(cell("acknowledged_in_time"), "true");
    assert_eq!(
        cell("raised_at").parse::<Timestamp>().ok(),
        row["raised_at"].as_str().and_then(|t| t.parse().ok()),
        "{csv}"
    );

    let (status, weeks) = api.get("/api/v1/reports/compliance", room).await;
    assert_eq!(status, StatusCode::OK, "{weeks}");
    let iso = jiff::tz::TimeZone::UTC
        .to_datetime(Timestamp::now())
        .date()
        .iso_week_date();
    let this_week = format!("{}-W{:02}", iso.year(), iso.week());
    let monitoring = weeks
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["partner"] == "monitoring" && w["week"] == this_week.as_str())
        .unwrap_or_else(|| panic!("no monitoring row for {this_week}: {weeks:#}"));
    assert_eq!(monitoring["alerts"], 1, "{monitoring}");
    assert_eq!(monitoring["acknowledged_in_time"], 1, "{monitoring}");
    assert_eq!(monitoring["share_in_time"], 1.0, "{monitoring}");

    for path in [
        "/api/v1/reports/deadlines",
        "/api/v1/reports/deadlines.csv",
        "/api/v1/reports/compliance",
    ] {
        for token in [POLICE_TOKEN, ADMIN_TOKEN] {
            let (status, _) = api.get(path, Auth::Bearer(token)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path} as {token}");
        }
    }
    kordon.stop().await;
}

// ---------------------------------------------------------------------
// 8. Bans by person
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_by_person_list_each_order_of_the_case_with_whether_it_is_in_force_now() {
    let broker = brokers().remove(0);
    let case = TestCase::new("high");
    let mut file = case.json();
    // An order that has run out.
    let (lat, lon) = (51.90, 4.48);
    let d = 0.002;
    file["orders"].as_array_mut().unwrap().push(json!({
        "id": "old-zone", "legal_basis": "art. 38v Sr",
        "valid_from": "2025-01-01T00:00:00+01:00", "valid_until": "2025-06-01T00:00:00+02:00",
        "rule": {"type": "exclusion_zone", "geometry": {"type": "Polygon", "coordinates": [[
            [lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d], [lon - d, lat - d]]]}}
    }));
    let kordon = Kordon::start_files(
        &broker,
        &[(case.id.to_lowercase(), file.to_string())],
        120,
        None,
    )
    .await;
    let api = Api::new(&kordon);
    let police = Auth::Bearer(POLICE_TOKEN);

    let (status, found) = api
        .get(&format!("/api/v1/bans?person={}", case.offender), police)
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let found = found.as_array().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let his = &found[0];
    assert_eq!(his["case"], case.id.as_str());
    assert_eq!(his["risk"], "high");
    assert_eq!(his["offender"], case.offender.as_str());
    assert_eq!(his["matched_as"], "offender");
    let orders: Vec<(String, bool)> = his["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["id"].as_str().unwrap().to_string(),
                o["valid_now"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        orders,
        vec![
            ("contact-ban".to_string(), true),
            ("zone-ban".to_string(), true),
            ("old-zone".to_string(), false),
        ],
        "{his:#}"
    );
    assert_eq!(
        his["orders"][0]["legal_basis"], "art. 38v Sr",
        "the order itself: {his}"
    );
    assert_eq!(his["orders"][0]["rule"]["type"], "contact_ban", "{his}");

    // By her device, and by the case.
    for (who, matched_as) in [
        (case.victim.as_str(), "protected"),
        (case.id.as_str(), "case"),
    ] {
        let (status, found) = api.get(&format!("/api/v1/bans?person={who}"), police).await;
        assert_eq!(status, StatusCode::OK, "{found}");
        assert_eq!(found[0]["matched_as"], matched_as, "{found}");
        assert_eq!(found[0]["case"], case.id.as_str());
    }
    let (status, body) = api.get("/api/v1/bans?person=NOBODY-AT-ALL", police).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("NOBODY-AT-ALL"),
        "{body}"
    );
    for bad in [
        "/api/v1/bans?person=".to_string(),
        format!("/api/v1/bans?person={}&lat=51.9&lon=4.5", case.offender),
    ] {
        let (status, body) = api.get(&bad, police).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }

    // By place, as before.
    let (status, hits) = api
        .get(
            &format!("/api/v1/bans?lat={}&lon={}", ZONE_CENTRE.0, ZONE_CENTRE.1),
            police,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{hits}");
    assert_eq!(hits[0]["order"], "zone-ban", "{hits}");
    assert_eq!(hits[0]["inside"], true, "{hits}");
    kordon.stop().await;
}

// ---------------------------------------------------------------------
// 9. The dashboard's files
// ---------------------------------------------------------------------

/// A request exactly as written (no client tidying its path); the status.
async fn raw_get(base: &str, path: &str) -> (u16, String) {
    let address = base.strip_prefix("http://").unwrap();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {answer}"));
    (status, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_files_are_served_from_the_binary_and_nothing_outside_them() {
    let broker = brokers().remove(0);
    let case = TestCase::new("medium");
    let kordon = Kordon::start(&broker, &[&case]).await;
    let api = Api::new(&kordon);

    let response = api.send(Method::GET, "/", Auth::Nobody, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let index = response.text().await.unwrap();
    assert!(index.contains("<div id=\"app\">"), "{index}");

    // Every file the page names, and every module those load.
    let referenced = regex::Regex::new(r#"(?:src|href)="(/assets/[^"]+)""#).unwrap();
    let mut wanted: Vec<String> = referenced
        .captures_iter(&index)
        .map(|c| c[1].to_string())
        .collect();
    assert!(
        wanted.iter().any(|p| p == "/assets/app/main.js") && wanted.len() >= 4,
        "{wanted:?}"
    );
    for language in ["en", "nl"] {
        wanted.push(format!("/assets/i18n/{language}.json"));
    }
    let import = regex::Regex::new(r#"(?:from|import)\s*\(?\s*'\./([^']+)'"#).unwrap();
    let literal = regex::Regex::new(r#"'(/assets/[^'$`]+)'"#).unwrap();
    let mut done = BTreeSet::new();
    while let Some(path) = wanted.pop() {
        if !done.insert(path.clone()) {
            continue;
        }
        let response = api.send(Method::GET, &path, Auth::Nobody, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        let expected = match path.rsplit('.').next().unwrap() {
            "js" => "text/javascript",
            "css" => "text/css",
            "svg" => "image/svg+xml",
            "json" => "application/json",
            "geojson" => "application/geo+json",
            other => panic!("unexpected kind of file {other}: {path}"),
        };
        assert!(content_type.starts_with(expected), "{path}: {content_type}");
        let body = response.text().await.unwrap();
        assert!(!body.is_empty(), "{path} is empty");
        if path.ends_with(".js") {
            let dir = &path[..path.rfind('/').unwrap()];
            wanted.extend(
                import
                    .captures_iter(&body)
                    .map(|c| format!("{dir}/{}", &c[1])),
            );
            wanted.extend(literal.captures_iter(&body).map(|c| c[1].to_string()));
        }
    }
    assert!(done.len() > 10, "the app's modules were followed: {done:?}");

    // Nothing but those: not by a path that climbs out, however spelt.
    for path in [
        "/assets/../Cargo.toml",
        "/assets/app/../../../Cargo.toml",
        "/assets/..%2F..%2FCargo.toml",
        "/assets/%2e%2e/%2e%2e/Cargo.toml",
        "/assets/../../../../../../etc/passwd",
        "/assets/nothing-here.js",
    ] {
        let (status, answer) = raw_get(&api.base, path).await;
        assert_eq!(status, 404, "{path}: {answer}");
        assert!(
            !answer.contains("[package]") && !answer.contains("root:"),
            "{path}: {answer}"
        );
    }
    kordon.stop().await;
}
