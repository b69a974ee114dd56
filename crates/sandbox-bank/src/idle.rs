//! `sandbox-js`'s idle timeout (issue 9, `[session] keep_alive`): for a user a test configures,
//! the movements page shows "Your session is about to expire" (`#session-timeout`, answered
//! with `button#stay`) after `warn_after` without an answer, and logs out `logout_after` later
//! if nobody answers — as bank portals do. Both moments are the page's own timers; the bank
//! publishes each answer and each idle logout (see [`SandboxBank::subscribe_js_idle`]) so a
//! test can wait on them instead of sleeping.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::SandboxBank;

/// How `sandbox-js`'s page times out a user's idle session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsIdle {
    /// Idle time before the "are you still there?" dialog.
    pub warn_after: Duration,
    /// Time the dialog waits for an answer before the page logs out.
    pub logout_after: Duration,
}

/// What a `sandbox-js` page did about an idle session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsIdleEvent {
    /// The dialog was answered ("stay signed in").
    Stayed { username: String },
    /// Nobody answered: the page logged the session out.
    LoggedOut { username: String },
}

#[derive(Debug)]
pub(crate) struct IdleState {
    users: Mutex<HashMap<String, JsIdle>>,
    events: broadcast::Sender<JsIdleEvent>,
}

impl Default for IdleState {
    fn default() -> Self {
        IdleState {
            users: Mutex::default(),
            events: broadcast::channel(256).0,
        }
    }
}

impl IdleState {
    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<String, JsIdle>> {
        self.users.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl SandboxBank {
    /// Issue 9: `sandbox-js`'s movements page times out `username`'s (exactly) idle session as
    /// `idle` says; `None` (the default) never does.
    pub fn set_js_idle(&self, username: &str, idle: Option<JsIdle>) {
        let mut users = self.inner.js_idle.users();
        match idle {
            Some(i) => users.insert(username.to_owned(), i),
            None => users.remove(username),
        };
    }

    /// Every idle dialog answered and every idle logout from now on.
    pub fn subscribe_js_idle(&self) -> broadcast::Receiver<JsIdleEvent> {
        self.inner.js_idle.events.subscribe()
    }

    pub(crate) fn js_idle(&self, username: &str) -> Option<JsIdle> {
        self.inner.js_idle.users().get(username).copied()
    }

    pub(crate) fn publish_js_idle(&self, event: JsIdleEvent) {
        let _ = self.inner.js_idle.events.send(event);
    }
}
