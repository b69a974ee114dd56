//! Realtime tickets: single-use, short-lived credentials that open the two streams a browser
//! cannot send a Bearer header to (`/realtime` and `/realtime/events`). Each ticket stands for
//! the dashboard login that asked for it, which must still be live when it is redeemed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use rand::RngCore;
use reconbanker_store::{Store, StoreResult, TokenId, UserId};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

/// How long a ticket can be redeemed after it was issued.
pub const TICKET_TTL: Duration = Duration::from_secs(30);
/// Outstanding tickets per user; issuing one more forgets that user's oldest.
const TICKETS_PER_USER: usize = 16;

/// A dashboard login (the JWT behind a request or a ticket), re-checkable while a stream is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DashboardSession {
    pub user: UserId,
    pub jti: TokenId,
    /// The token's expiry (seconds since the epoch).
    pub exp: i64,
}

impl DashboardSession {
    /// Not expired and not revoked (logout).
    pub async fn is_live(&self, store: &dyn Store) -> StoreResult<bool> {
        if self.exp <= chrono::Utc::now().timestamp() {
            return Ok(false);
        }
        Ok(store.session_user(self.user, self.jti).await?.is_some())
    }
}

/// Single-use tickets in memory, stored by their SHA-256 (the ticket itself is a credential).
/// Expired ones are swept whenever one is issued, and each user has a few at most, so the map
/// stays small. A ticket is only good on the instance that issued it (until a shared store replaces this).
#[derive(Default)]
pub struct Tickets {
    live: Mutex<HashMap<[u8; 32], Issued>>,
}

struct Issued {
    session: DashboardSession,
    expires: Instant,
}

fn ticket_hash(ticket: &str) -> [u8; 32] {
    Sha256::digest(ticket.as_bytes()).into()
}

impl Tickets {
    /// A new ticket for `session`: 32 random bytes, URL-safe base64 (a valid subprotocol token).
    pub fn issue(&self, session: DashboardSession) -> String {
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let ticket = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|_, t| t.expires > now);
        let mut mine: Vec<([u8; 32], Instant)> = live
            .iter()
            .filter(|(_, t)| t.session.user == session.user)
            .map(|(k, t)| (*k, t.expires))
            .collect();
        if mine.len() >= TICKETS_PER_USER {
            mine.sort_by_key(|(_, expires)| *expires);
            for (k, _) in &mine[..=mine.len() - TICKETS_PER_USER] {
                live.remove(k);
            }
        }
        live.insert(
            ticket_hash(&ticket),
            Issued {
                session,
                expires: now + TICKET_TTL,
            },
        );
        ticket
    }

    /// Consumes a ticket; `None` when unknown, expired or already used.
    pub fn redeem(&self, ticket: &str) -> Option<DashboardSession> {
        let issued = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ticket_hash(ticket))?;
        (issued.expires > Instant::now()).then_some(issued.session)
    }

    /// Tickets held (expired ones included until the next sweep).
    pub fn len(&self) -> usize {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> DashboardSession {
        DashboardSession {
            user: UserId::new(),
            jti: TokenId::new(),
            exp: i64::MAX,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_ticket_is_single_use_and_expires() {
        let tickets = Tickets::default();
        let s = session();
        let t = tickets.issue(s);
        assert_eq!(t.len(), 43, "32 bytes, URL-safe base64 without padding");
        assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(tickets.redeem(&t), Some(s));
        assert_eq!(tickets.redeem(&t), None, "single use");
        assert_eq!(tickets.redeem("not-a-ticket"), None);

        let late = tickets.issue(s);
        tokio::time::advance(TICKET_TTL).await;
        assert_eq!(tickets.redeem(&late), None, "expired at its TTL");

        let stale = tickets.issue(s);
        tokio::time::advance(TICKET_TTL + Duration::from_secs(1)).await;
        let _fresh = tickets.issue(s);
        assert_eq!(tickets.len(), 1, "issuing sweeps the expired ones");
        assert_eq!(tickets.redeem(&stale), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_user_holds_a_bounded_number_of_tickets() {
        let tickets = Tickets::default();
        let s = session();
        let first = tickets.issue(s);
        tokio::time::advance(Duration::from_millis(1)).await;
        let mut last = String::new();
        for _ in 0..TICKETS_PER_USER {
            last = tickets.issue(s);
        }
        let other = tickets.issue(session());
        assert_eq!(tickets.len(), TICKETS_PER_USER + 1);
        assert_eq!(tickets.redeem(&first), None, "the oldest was forgotten");
        assert!(tickets.redeem(&last).is_some());
        assert!(tickets.redeem(&other).is_some(), "another user's are untouched");
    }
}
