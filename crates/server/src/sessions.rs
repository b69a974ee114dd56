//! Which accounts have a live bank session right now (the engine's live state). A session
//! holds a [`LiveGuard`] for as long as it runs, including while it waits for a code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use reconbanker_store::AccountId;

#[derive(Clone, Default)]
pub struct LiveSessions {
    live: Arc<Mutex<HashMap<AccountId, u32>>>,
}

impl LiveSessions {
    pub fn enter(&self, account: AccountId) -> LiveGuard {
        *self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(account)
            .or_default() += 1;
        LiveGuard {
            account,
            sessions: self.clone(),
        }
    }

    pub fn is_running(&self, account: AccountId) -> bool {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&account)
    }
}

pub struct LiveGuard {
    account: AccountId,
    sessions: LiveSessions,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let mut live = self.sessions.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = live.get_mut(&self.account) {
            *n -= 1;
            if *n == 0 {
                live.remove(&self.account);
            }
        }
    }
}
