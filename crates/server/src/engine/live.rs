//! Which accounts have a live bank session right now, and in which phase (the engine's live
//! state, shown as `session_running` on `/v1` and `sessionStatus` on accounts). A session holds
//! a [`LiveGuard`] for as long as it runs, including while it waits for a code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use reconbanker_store::AccountId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Running,
    AwaitingCode,
    NeedsAttention,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::AwaitingCode => "awaiting_code",
            Phase::NeedsAttention => "needs_attention",
        }
    }
}

#[derive(Clone, Default)]
pub struct LiveSessions {
    live: Arc<Mutex<HashMap<AccountId, (u32, Phase)>>>,
}

impl LiveSessions {
    pub fn enter(&self, account: AccountId) -> LiveGuard {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let entry = live.entry(account).or_insert((0, Phase::Starting));
        entry.0 += 1;
        entry.1 = Phase::Starting;
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

    pub fn phase(&self, account: AccountId) -> Option<Phase> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&account)
            .map(|e| e.1)
    }

    /// How many accounts have a live session.
    pub fn count(&self) -> usize {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Issue 11 (metrics): how many live sessions are in each phase, every phase listed.
    pub fn by_phase(&self) -> [(Phase, usize); 4] {
        let mut counts = [
            (Phase::Starting, 0),
            (Phase::Running, 0),
            (Phase::AwaitingCode, 0),
            (Phase::NeedsAttention, 0),
        ];
        for (_, phase) in self.live.lock().unwrap_or_else(|p| p.into_inner()).values() {
            if let Some(c) = counts.iter_mut().find(|(p, _)| p == phase) {
                c.1 += 1;
            }
        }
        counts
    }
}

pub struct LiveGuard {
    account: AccountId,
    sessions: LiveSessions,
}

impl LiveGuard {
    pub fn set_phase(&self, phase: Phase) {
        if let Some(e) = self
            .sessions
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&self.account)
        {
            e.1 = phase;
        }
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let mut live = self.sessions.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = live.get_mut(&self.account) {
            e.0 -= 1;
            if e.0 == 0 {
                live.remove(&self.account);
            }
        }
    }
}
