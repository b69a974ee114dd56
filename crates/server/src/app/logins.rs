//! Ending a dashboard login (`POST /auth/logout`, the dashboard's "Sign out"): its token is
//! revoked until it would have expired, and the streams it opened end at once, on this
//! instance and on the others.

use reconbanker_store::{now, StoreResult, TokenId, UserId};

use super::AppInner;
use crate::support::peers::Invalidation;

/// Revokes the token `jti` of `user` (its `exp` in seconds since the epoch).
pub(crate) async fn end(app: &AppInner, user: UserId, jti: TokenId, exp: i64) -> StoreResult<()> {
    let expires = chrono::DateTime::from_timestamp(exp, 0).unwrap_or_else(now);
    app.store.revoke_token(jti, user, expires).await?;
    app.revocations.announce();
    if let Err(e) = app.peers.announce(&Invalidation::LoginEnded(user.0)).await {
        tracing::warn!(error = %e, "could not tell the other instances that a dashboard login ended");
    }
    Ok(())
}
