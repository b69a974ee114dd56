//! Server-side sessions, keyed by the `sandbox_session` cookie.
//!
//! A session is created by `GET /login` (anonymous, carrying the CSRF token the login form must
//! echo), replaced by a fresh one when a login gets past the password (OTP stage or authenticated)
//! and again when the code is accepted, so a session id is never promoted in place. Sessions expire
//! after `BankConfig::session_idle_timeout` without a request, measured on tokio's clock (real
//! time, or the paused test clock) — `SandboxBank::advance` does not expire them.

use std::collections::HashMap;
use std::time::Duration;

use rand::distributions::Alphanumeric;
use rand::Rng;
use tokio::time::Instant;

use crate::users::OtpChallenge;

/// Expired sessions are swept at most this often (they are also dropped lazily when used).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Length of session ids and CSRF tokens.
const TOKEN_LEN: usize = 32;

/// Where a session stands in the login flow.
#[derive(Debug, Clone)]
pub(crate) enum Stage {
    /// Has seen the login form, not logged in.
    Anonymous,
    /// Password accepted; waiting for the one-time code.
    Otp {
        username: String,
        challenge: OtpChallenge,
        attempts_left: u32,
    },
    /// Logged in.
    Authenticated { username: String },
}

impl Stage {
    pub(crate) fn username(&self) -> Option<&str> {
        match self {
            Stage::Anonymous => None,
            Stage::Otp { username, .. } | Stage::Authenticated { username } => Some(username),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) csrf: String,
    /// `sandbox-js`: the bearer token its app sends to `/js/api/movements` (handed by
    /// `/js/api/session` once logged in).
    pub(crate) api_token: String,
    pub(crate) stage: Stage,
    last_seen: Instant,
}

#[derive(Debug)]
pub(crate) struct Sessions {
    map: HashMap<String, Session>,
    idle_timeout: Duration,
    last_sweep: Instant,
}

impl Sessions {
    pub(crate) fn new(idle_timeout: Duration) -> Self {
        Sessions {
            map: HashMap::new(),
            idle_timeout,
            last_sweep: Instant::now(),
        }
    }

    /// The live session with this id, touched; an idle-expired one is removed and not returned.
    pub(crate) fn get(&mut self, id: &str) -> Option<&mut Session> {
        let now = Instant::now();
        let expired = now.duration_since(self.map.get(id)?.last_seen) > self.idle_timeout;
        if expired {
            self.map.remove(id);
            return None;
        }
        let session = self.map.get_mut(id)?;
        session.last_seen = now;
        Some(session)
    }

    /// Marks the session used now, whatever its age: a request in flight keeps its session alive.
    pub(crate) fn touch(&mut self, id: &str) {
        if let Some(session) = self.map.get_mut(id) {
            session.last_seen = Instant::now();
        }
    }

    /// Creates a session with a fresh id and CSRF token; returns the id.
    pub(crate) fn create(&mut self, stage: Stage) -> String {
        let now = Instant::now();
        if now.duration_since(self.last_sweep) >= SWEEP_EVERY {
            let idle = self.idle_timeout;
            self.map.retain(|_, s| now.duration_since(s.last_seen) <= idle);
            self.last_sweep = now;
        }
        let id = random_token();
        self.map.insert(
            id.clone(),
            Session {
                csrf: random_token(),
                api_token: random_token(),
                stage,
                last_seen: now,
            },
        );
        id
    }

    pub(crate) fn remove(&mut self, id: &str) -> Option<Session> {
        self.map.remove(id)
    }

    /// Removes every session (OTP stage or logged in) of `username`; returns how many.
    pub(crate) fn remove_user(&mut self, username: &str) -> usize {
        let before = self.map.len();
        self.map.retain(|_, s| s.stage.username() != Some(username));
        before - self.map.len()
    }

    /// Logged-in sessions that have not idled out.
    pub(crate) fn live_authenticated(&self) -> usize {
        let now = Instant::now();
        self.map
            .values()
            .filter(|s| matches!(s.stage, Stage::Authenticated { .. }))
            .filter(|s| now.duration_since(s.last_seen) <= self.idle_timeout)
            .count()
    }
}

fn random_token() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(TOKEN_LEN)
        .map(char::from)
        .collect()
}
