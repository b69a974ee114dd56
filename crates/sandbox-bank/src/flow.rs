//! The bank's decisions, shared by both of its sites: the HTML bank (`routes.rs`) renders them
//! as pages and redirects, the JavaScript bank (`js.rs`) as JSON. Each function does the work
//! (sessions, counters, judged-code events) and returns what happened; the caller only renders.

use std::sync::atomic::Ordering::Relaxed;

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::movements::Movement;
use crate::routes::{is_a, session_id, set_cookie, with_cookie};
use crate::sessions::Stage;
use crate::users::{self, Behaviour, OtpChallenge, USER_SLOW};
use crate::{OtpReceived, SandboxBank};

/// The visitor's session as a login form needs it.
pub(crate) struct Visitor {
    /// The session's CSRF token.
    pub(crate) csrf: String,
    /// Where the session stands.
    pub(crate) stage: Stage,
    /// `Some(id)` when the session was just created: the answer must set its cookie.
    pub(crate) new_session: Option<String>,
}

/// Keeps the visitor's session (and its CSRF token) if it has one; otherwise starts an
/// anonymous one.
fn visitor(bank: &SandboxBank, headers: &HeaderMap) -> Visitor {
    let mut sessions = bank.inner.lock_sessions();
    if let Some(s) = session_id(headers).and_then(|id| sessions.get(&id).map(|s| (s.csrf.clone(), s.stage.clone()))) {
        return Visitor {
            csrf: s.0,
            stage: s.1,
            new_session: None,
        };
    }
    let id = sessions.create(Stage::Anonymous);
    let csrf = sessions.get(&id).map(|s| s.csrf.clone()).unwrap_or_default();
    Visitor {
        csrf,
        stage: Stage::Anonymous,
        new_session: Some(id),
    }
}

/// Answers a visitor of a login page with `render(visitor)`, setting the cookie of a session
/// just created (`user_slow`'s answer held back).
pub(crate) async fn greet<R: IntoResponse>(
    bank: &SandboxBank,
    headers: &HeaderMap,
    render: impl FnOnce(&Visitor) -> R,
) -> Response {
    let visitor = visitor(bank, headers);
    let body = render(&visitor);
    let response = match visitor.new_session {
        Some(id) => with_cookie(set_cookie(&id), body),
        None => body.into_response(),
    };
    bank.hold_answer(bank.session_user(headers).as_deref(), headers, response)
        .await
}

/// A submitted login form, whichever site it came from (a form or a JSON body).
#[derive(Debug, Deserialize)]
pub(crate) struct LoginFields {
    #[serde(default)]
    pub(crate) username: String,
    #[serde(default)]
    pub(crate) password: String,
    #[serde(default)]
    pub(crate) csrf: String,
    /// `sandbox-js` only: the remembered-device token its app keeps in `localStorage`
    /// (`sandbox_device_token`) and sends with the login, as an alternative of the cookie.
    #[serde(default)]
    pub(crate) device: Option<String>,
}

/// A submitted one-time code, whichever site it came from.
#[derive(Debug, Deserialize)]
pub(crate) struct OtpFields {
    #[serde(default)]
    pub(crate) code: String,
    #[serde(default)]
    pub(crate) csrf: String,
    /// `sandbox-js` only: when the page's code field last changed (the page's `Date.now()`),
    /// for the browser benchmark's "code handed → typed" (reported on [`crate::OtpReceived`]).
    #[serde(default, rename = "typedAt")]
    pub(crate) typed_at: Option<i64>,
}

/// What the bank decided about a login.
pub(crate) enum LoginOutcome {
    /// The flaky front end refused it before looking at the form (503).
    Unavailable,
    /// No session, or its CSRF token did not match.
    Csrf,
    /// Wrong username or password; `csrf` is the session's (the form is shown again).
    BadCredentials { csrf: String },
    /// The account is locked.
    Locked { csrf: String },
    /// Password accepted; a one-time code is needed. `session` is the new session id.
    Otp { session: String },
    /// Logged in. `session` is the new session id.
    LoggedIn { session: String },
}

/// Judges a login and renders it with `render`; `user_slow`'s answer is held back (see
/// [`SandboxBank::hold_answer`]).
/// `device`: the remembered-device token the browser sent (`sandbox-js` only): a device the
/// bank remembers for this very username logs in without a code.
pub(crate) async fn login(
    bank: &SandboxBank,
    headers: &HeaderMap,
    attempt: &LoginFields,
    device: Option<&str>,
    render: impl FnOnce(LoginOutcome) -> Response,
) -> Response {
    bank.inner.counters.logins_attempted.fetch_add(1, Relaxed);
    if bank.flaky_login_refused(&attempt.username) {
        bank.count_server_error();
        return render(LoginOutcome::Unavailable);
    }
    let session_user = bank.session_user(headers);
    let trusted = device.and_then(|t| bank.device_user(t)).as_deref() == Some(attempt.username.as_str());
    let response = render(judge_login(bank, headers, attempt, trusted));
    let waits_for = if is_a(&attempt.username, USER_SLOW) {
        Some(attempt.username.as_str())
    } else {
        session_user.as_deref()
    };
    bank.hold_answer(waits_for, headers, response).await
}

fn judge_login(bank: &SandboxBank, headers: &HeaderMap, attempt: &LoginFields, trusted: bool) -> LoginOutcome {
    let cookie = session_id(headers);
    let mut sessions = bank.inner.lock_sessions();
    let csrf = cookie
        .as_deref()
        .and_then(|id| sessions.get(id))
        .map(|s| s.csrf.clone());
    let (Some(old_id), Some(csrf)) = (cookie, csrf) else {
        return LoginOutcome::Csrf;
    };
    if csrf != attempt.csrf {
        return LoginOutcome::Csrf;
    }
    let Some(user) = users::authenticate(&attempt.username, &attempt.password) else {
        tracing::debug!("sandbox bank: bad credentials");
        return LoginOutcome::BadCredentials { csrf };
    };
    // The session belongs to the full login name: `user_good+a` is its own user.
    let username = attempt.username.clone();
    // A new session id at every step up, so a pre-login id never becomes a logged-in one.
    match user.behaviour {
        Behaviour::Locked => LoginOutcome::Locked { csrf },
        Behaviour::Otp(_) if trusted => {
            sessions.remove(&old_id);
            let session = sessions.create(Stage::Authenticated { username });
            bank.inner.counters.logins_succeeded.fetch_add(1, Relaxed);
            LoginOutcome::LoggedIn { session }
        }
        Behaviour::Otp(challenge) => {
            sessions.remove(&old_id);
            let attempts_left = bank.inner.config.otp_attempts.max(1);
            let session = sessions.create(Stage::Otp {
                username,
                challenge,
                attempts_left,
            });
            LoginOutcome::Otp { session }
        }
        Behaviour::Plain | Behaviour::Flaky | Behaviour::Slow => {
            sessions.remove(&old_id);
            let session = sessions.create(Stage::Authenticated { username });
            bank.inner.counters.logins_succeeded.fetch_add(1, Relaxed);
            LoginOutcome::LoggedIn { session }
        }
    }
}

/// The challenge the visitor's session is waiting on.
pub(crate) struct Challenge {
    pub(crate) csrf: String,
    pub(crate) challenge: OtpChallenge,
    pub(crate) attempts_left: u32,
}

/// The challenge of the visitor's session, or `None` when it is not waiting for a code.
pub(crate) fn challenge(bank: &SandboxBank, headers: &HeaderMap) -> Option<Challenge> {
    let id = session_id(headers)?;
    let mut sessions = bank.inner.lock_sessions();
    let session = sessions.get(&id)?;
    match &session.stage {
        Stage::Otp {
            challenge,
            attempts_left,
            ..
        } => Some(Challenge {
            csrf: session.csrf.clone(),
            challenge: *challenge,
            attempts_left: *attempts_left,
        }),
        _ => None,
    }
}

/// What the bank decided about a one-time code.
pub(crate) enum OtpOutcome {
    /// The session is gone or not waiting for a code.
    NotLoggedIn,
    /// The CSRF token did not match.
    Csrf,
    /// Right code: `username` logged in under the new session id `session`.
    Accepted { session: String, username: String },
    /// Wrong code, another try allowed: the challenge as it stands now.
    Wrong(Challenge),
    /// Wrong code and no tries left: the session is destroyed.
    Locked,
}

/// Judges a one-time code; a judged code is published to [`SandboxBank::subscribe_otp`]
/// before the answer leaves, while the session change is already visible.
pub(crate) fn judge_otp(bank: &SandboxBank, headers: &HeaderMap, fields: &OtpFields) -> OtpOutcome {
    let Some(id) = session_id(headers) else {
        return OtpOutcome::NotLoggedIn;
    };
    let mut sessions = bank.inner.lock_sessions();
    let Some(session) = sessions.get(&id) else {
        return OtpOutcome::NotLoggedIn;
    };
    let Stage::Otp {
        username,
        challenge,
        attempts_left,
    } = session.stage.clone()
    else {
        return OtpOutcome::NotLoggedIn;
    };
    if session.csrf != fields.csrf {
        return OtpOutcome::Csrf;
    }
    let counters = &bank.inner.counters;
    counters.otp_submissions.fetch_add(1, Relaxed);
    let accepted = fields.code.trim() == challenge.code;
    let outcome = if accepted {
        sessions.remove(&id);
        let session = sessions.create(Stage::Authenticated {
            username: username.clone(),
        });
        counters.otp_accepted.fetch_add(1, Relaxed);
        counters.logins_succeeded.fetch_add(1, Relaxed);
        OtpOutcome::Accepted {
            session,
            username: username.clone(),
        }
    } else if attempts_left <= 1 {
        sessions.remove(&id);
        OtpOutcome::Locked
    } else {
        let left = attempts_left - 1;
        session.stage = Stage::Otp {
            username: username.clone(),
            challenge,
            attempts_left: left,
        };
        OtpOutcome::Wrong(Challenge {
            csrf: session.csrf.clone(),
            challenge,
            attempts_left: left,
        })
    };
    // Never the username: it is a bank login, and the embedded bank logs into the server's log.
    tracing::debug!(accepted, "sandbox bank: one-time code judged");
    let _ = bank.inner.otp_events.send(OtpReceived {
        username,
        accepted,
        at: std::time::Instant::now(),
        typed_at_ms: fields.typed_at,
    });
    outcome
}

/// A read of the movements.
pub(crate) enum Read {
    /// Not logged in.
    NotLoggedIn,
    /// The flaky back end failed this read (502).
    Failed,
    /// The logged-in user's movements.
    Movements { username: String, movements: Vec<Movement> },
}

/// Reads the visitor's movements and renders the read with `render` (`user_slow`'s held back).
pub(crate) async fn movements(
    bank: &SandboxBank,
    headers: &HeaderMap,
    render: impl FnOnce(Read) -> Response,
) -> Response {
    let Some(username) = bank.authenticated_user(headers) else {
        return render(Read::NotLoggedIn);
    };
    let response = if bank.movement_read_fails(&username) {
        render(Read::Failed)
    } else {
        let movements = bank.movements_of(&username);
        render(Read::Movements {
            username: username.clone(),
            movements,
        })
    };
    bank.hold_answer(Some(&username), headers, response).await
}

/// Ends the visitor's session and answers with `response` (`user_slow`'s held back).
pub(crate) async fn logout(bank: &SandboxBank, headers: &HeaderMap, response: Response) -> Response {
    let username = bank.session_user(headers);
    if let Some(id) = session_id(headers) {
        bank.inner.lock_sessions().remove(&id);
    }
    bank.hold_answer(username.as_deref(), headers, response).await
}
