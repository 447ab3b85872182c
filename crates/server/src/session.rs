//! Dashboard sessions: a bearer token, typed once at sign-in, exchanged for
//! an HttpOnly, SameSite=Strict cookie that expires after
//! [`SESSION_TTL`], with a CSRF token that every request changing anything
//! must echo in `X-Kordon-CSRF`.
//!
//! A session carries the role and name of the token it came from, so the
//! API's role rules apply unchanged. The store keeps digests of session
//! ids, never the ids, and never more than [`MAX_SESSIONS`]; it holds no
//! other state and never outlives the process (a restart signs everyone
//! out, which a monitoring room notices at once and fixes in seconds).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::Role;

/// How long a session lasts: one shift.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at most; the oldest go first.
const MAX_SESSIONS: usize = 10_000;
/// The cookie's name.
pub const COOKIE: &str = "kordon_session";
/// The header that must echo the session's CSRF token.
pub const CSRF_HEADER: &str = "x-kordon-csrf";

/// Who signed in, as the dashboard is told.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    pub name: String,
    pub role: Role,
    pub csrf: String,
    pub expires_at: Timestamp,
}

struct Session {
    info: SessionInfo,
    expires: Instant,
}

#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<[u8; 32], Session>>>,
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system gives random bytes");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// A new session for `name` in `role`: its id (for the cookie) and
    /// what the dashboard is told.
    pub fn open(&self, name: &str, role: Role, now: Instant) -> (String, SessionInfo) {
        let id = random_hex();
        let info = SessionInfo {
            name: name.to_string(),
            role,
            csrf: random_hex(),
            expires_at: Timestamp::now()
                + jiff::SignedDuration::from_secs(SESSION_TTL.as_secs() as i64),
        };
        let mut sessions = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| *k)
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            key(&id),
            Session {
                info: info.clone(),
                expires: now + SESSION_TTL,
            },
        );
        (id, info)
    }

    /// The live session with this id.
    pub fn get(&self, id: &str, now: Instant) -> Option<SessionInfo> {
        let sessions = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        sessions
            .get(&key(id))
            .filter(|s| s.expires > now)
            .map(|s| s.info.clone())
    }

    pub fn close(&self, id: &str) {
        let mut sessions = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        sessions.remove(&key(id));
    }
}

/// The `Set-Cookie` value that starts a session.
pub fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL.as_secs()
    )
}

/// The `Set-Cookie` value that ends one.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// The session id in a `Cookie` header, if any.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_expires_and_its_id_is_not_stored() {
        let sessions = Sessions::default();
        let start = Instant::now();
        let (id, info) = sessions.open("room 1", Role::Monitoring, start);
        assert_eq!(sessions.get(&id, start).unwrap().csrf, info.csrf);
        assert!(sessions.get("not-an-id", start).is_none());
        assert!(sessions.get(&id, start + SESSION_TTL).is_none());
        let stored = sessions.inner.lock().unwrap();
        assert!(!stored.keys().any(|k| k == id.as_bytes()));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        assert_eq!(cookie_value("a=1; kordon_session=abc; b=2"), Some("abc"));
        assert_eq!(cookie_value("kordon_session="), None);
        assert_eq!(cookie_value("other=1"), None);
        assert!(set_cookie("x").contains("HttpOnly; SameSite=Strict"));
    }
}
