//! Realtime tickets: single-use, short-lived credentials that open the two streams a browser
//! cannot send a Bearer header to (`/realtime` and `/realtime/events`). Each ticket stands for
//! the dashboard login that asked for it, which must still be live when it is redeemed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use rand::RngCore;
use reconbanker_store::{now, Store, StoreResult, TicketRow, TokenId, UserId};
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

/// Single-use tickets, stored by their SHA-256 (the ticket itself is a credential). Expired
/// ones are swept whenever one is issued, and each user has a few at most, so the set stays
/// small. In memory for a single instance; in the database ([`Tickets::shared`], issue 11) when
/// several instances share it, so a ticket issued on one is redeemed once, on any.
#[derive(Default)]
pub struct Tickets {
    live: Mutex<HashMap<[u8; 32], Issued>>,
    shared: Option<Arc<dyn Store>>,
}

struct Issued {
    session: DashboardSession,
    expires: Instant,
}

fn ticket_hash(ticket: &str) -> [u8; 32] {
    Sha256::digest(ticket.as_bytes()).into()
}

impl Tickets {
    /// Tickets kept in the database that `store` opens.
    pub fn shared(store: Arc<dyn Store>) -> Self {
        Self {
            live: Mutex::default(),
            shared: Some(store),
        }
    }

    /// A new ticket for `session`: 32 random bytes, URL-safe base64 (a valid subprotocol token).
    pub async fn issue(&self, session: DashboardSession) -> StoreResult<String> {
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let ticket = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        if let Some(store) = &self.shared {
            let at = now();
            let row = TicketRow {
                hash: ticket_hash(&ticket).to_vec(),
                user_id: session.user,
                jti: session.jti,
                token_exp: session.exp,
                expires_at: crate::support::time::after(at, TICKET_TTL),
            };
            store.issue_ticket(&row, at, TICKETS_PER_USER as i64).await?;
            return Ok(ticket);
        }
        Ok(self.issue_here(session, ticket))
    }

    fn issue_here(&self, session: DashboardSession, ticket: String) -> String {
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
    pub async fn redeem(&self, ticket: &str) -> StoreResult<Option<DashboardSession>> {
        if let Some(store) = &self.shared {
            let row = store.redeem_ticket(&ticket_hash(ticket), now()).await?;
            return Ok(row.map(|r| DashboardSession {
                user: r.user_id,
                jti: r.jti,
                exp: r.token_exp,
            }));
        }
        Ok(self.redeem_here(ticket))
    }

    fn redeem_here(&self, ticket: &str) -> Option<DashboardSession> {
        let issued = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ticket_hash(ticket))?;
        (issued.expires > Instant::now()).then_some(issued.session)
    }

    /// Tickets held in memory (expired ones included until the next sweep).
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

    fn fresh() -> String {
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

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
        let t = tickets.issue_here(s, fresh());
        assert_eq!(t.len(), 43, "32 bytes, URL-safe base64 without padding");
        assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(tickets.redeem_here(&t), Some(s));
        assert_eq!(tickets.redeem_here(&t), None, "single use");
        assert_eq!(tickets.redeem_here("not-a-ticket"), None);

        let late = tickets.issue_here(s, fresh());
        tokio::time::advance(TICKET_TTL).await;
        assert_eq!(tickets.redeem_here(&late), None, "expired at its TTL");

        let stale = tickets.issue_here(s, fresh());
        tokio::time::advance(TICKET_TTL + Duration::from_secs(1)).await;
        let _fresh = tickets.issue_here(s, fresh());
        assert_eq!(tickets.len(), 1, "issuing sweeps the expired ones");
        assert_eq!(tickets.redeem_here(&stale), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_user_holds_a_bounded_number_of_tickets() {
        let tickets = Tickets::default();
        let s = session();
        let first = tickets.issue_here(s, fresh());
        tokio::time::advance(Duration::from_millis(1)).await;
        let mut last = String::new();
        for _ in 0..TICKETS_PER_USER {
            last = tickets.issue_here(s, fresh());
        }
        let other = tickets.issue_here(session(), fresh());
        assert_eq!(tickets.len(), TICKETS_PER_USER + 1);
        assert_eq!(tickets.redeem_here(&first), None, "the oldest was forgotten");
        assert!(tickets.redeem_here(&last).is_some());
        assert!(tickets.redeem_here(&other).is_some(), "another user's are untouched");
    }
}
