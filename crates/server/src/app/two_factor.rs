//! Issue 10: two-factor sign-in (TOTP) as use cases, shared by the JSON API (`POST /auth/login`,
//! `/me/two-factor/…`) and the browser sign-in: set-up, confirmation with a first code (which
//! hands out the recovery codes), disabling, and the check a sign-in makes.
//!
//! Rules: codes of the current step and one either side are accepted; a step is accepted once
//! (`Store::accept_totp_step` is a compare-and-set, so two sign-ins racing with one code cannot
//! both pass); a recovery code stands in for a code once; every presented code counts against a
//! per-user window ([`MAX_FAILURES`] per [`FAILURE_WINDOW`]) and a good one gives its place back.

use std::time::Duration;

use reconbanker_store::{UserId, UserRow};

use crate::auth::totp;
use crate::support::ratelimit::{Bucket, Decision, LimiterError};
use crate::AppState;

/// Codes a user may get wrong per window before every code is refused until it slides.
pub const MAX_FAILURES: u32 = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The issuer shown by authenticator apps.
pub const ISSUER: &str = "Reconbanker";

#[derive(Debug, thiserror::Error)]
pub enum TwoFactorError {
    #[error(transparent)]
    Store(#[from] reconbanker_store::StoreError),
    #[error(transparent)]
    Limiter(#[from] LimiterError),
    /// The sealed secret does not open (another master key, or tampered data).
    #[error("the two-factor secret could not be opened")]
    Corrupt,
    #[error("two-factor sign-in is already on")]
    AlreadyOn,
    #[error("two-factor sign-in is off")]
    NotOn,
    #[error("no two-factor set-up is waiting for confirmation")]
    NoPendingSetup,
    /// Two-factor is on and no code was given.
    #[error("a two-factor code is required")]
    Required,
    /// The code is wrong, already used, or not of the accepted steps.
    #[error("the two-factor code is not valid")]
    Invalid,
    #[error("too many two-factor codes tried")]
    RateLimited(Decision),
}

/// What a set-up shows once: the secret (base32) and the `otpauth://` URI the QR code encodes.
pub struct Setup {
    pub secret: String,
    pub uri: String,
}

/// The user's two-factor state, for settings pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub enabled: bool,
    pub pending: bool,
    pub recovery_codes_left: i64,
}

pub(crate) fn aad(user: UserId) -> Vec<u8> {
    format!("user-totp:{user}").into_bytes()
}

fn unix_now(app: &AppState) -> i64 {
    app.clock.now().timestamp()
}

pub async fn status(app: &AppState, user: UserId) -> Result<Status, TwoFactorError> {
    let row = app.store.user_totp(user).await?;
    Ok(Status {
        enabled: row.as_ref().is_some_and(|r| r.confirmed_at.is_some()),
        pending: row.as_ref().is_some_and(|r| r.confirmed_at.is_none()),
        recovery_codes_left: row.filter(|r| r.confirmed_at.is_some()).map_or(0, |r| r.recovery_left),
    })
}

/// Starts a set-up with a new secret (replacing an unconfirmed one).
pub async fn begin(app: &AppState, user: &UserRow) -> Result<Setup, TwoFactorError> {
    let secret = totp::new_secret();
    let sealed = app.sealer.seal(&secret, &aad(user.id));
    if !app.store.begin_totp(user.id, &sealed, app.clock.now()).await? {
        return Err(TwoFactorError::AlreadyOn);
    }
    Ok(Setup {
        secret: totp::base32(&secret),
        uri: totp::otpauth_uri(ISSUER, &user.email, &secret),
    })
}

/// The set-up waiting for its first code, shown again (the page that failed to confirm it).
pub async fn pending_setup(app: &AppState, user: &UserRow) -> Result<Option<Setup>, TwoFactorError> {
    let Some(row) = app.store.user_totp(user.id).await?.filter(|r| r.confirmed_at.is_none()) else {
        return Ok(None);
    };
    let secret = open_secret(app, user.id, &row.secret)?;
    Ok(Some(Setup {
        secret: totp::base32(&secret),
        uri: totp::otpauth_uri(ISSUER, &user.email, &secret),
    }))
}

/// Counts a presented code; refuses when the window is full.
async fn count_attempt(app: &AppState, user: UserId) -> Result<(), TwoFactorError> {
    let d = app
        .limiter
        .hit_window(Bucket::TotpFailure(user), MAX_FAILURES, FAILURE_WINDOW)
        .await?;
    if d.allowed {
        Ok(())
    } else {
        Err(TwoFactorError::RateLimited(d))
    }
}

/// A good code gives its place in the window back (failing to is not the user's problem).
async fn give_back(app: &AppState, user: UserId) {
    if let Err(e) = app.limiter.undo_window(Bucket::TotpFailure(user)).await {
        tracing::warn!(error = %e, "could not give a good two-factor code's place back");
    }
}

fn open_secret(app: &AppState, user: UserId, sealed: &[u8]) -> Result<Vec<u8>, TwoFactorError> {
    app.sealer.open(sealed, &aad(user)).map_err(|_| TwoFactorError::Corrupt)
}

/// Confirms the pending set-up with its first code; returns the recovery codes (shown once).
pub async fn confirm(app: &AppState, user: UserId, code: &str) -> Result<Vec<String>, TwoFactorError> {
    let row = app.store.user_totp(user).await?;
    let Some(row) = row.filter(|r| r.confirmed_at.is_none()) else {
        return Err(TwoFactorError::NoPendingSetup);
    };
    count_attempt(app, user).await?;
    let secret = open_secret(app, user, &row.secret)?;
    let step = totp::looks_like_code(code)
        .and_then(|c| totp::matching_step(&secret, &c, unix_now(app)))
        .ok_or(TwoFactorError::Invalid)?;
    let codes = totp::new_recovery_codes();
    let hashes: Vec<Vec<u8>> = codes.iter().map(|c| app.recovery_codes.hash(c)).collect();
    if !app.store.confirm_totp(user, step, &hashes, app.clock.now()).await? {
        // Confirmed meanwhile by another request.
        return Err(TwoFactorError::NoPendingSetup);
    }
    give_back(app, user).await;
    Ok(codes)
}

/// Checks a presented code (or recovery code) against a confirmed set-up and spends it.
async fn spend(app: &AppState, user: UserId, secret_sealed: &[u8], presented: &str) -> Result<(), TwoFactorError> {
    count_attempt(app, user).await?;
    let ok = if let Some(code) = totp::looks_like_code(presented) {
        let secret = open_secret(app, user, secret_sealed)?;
        match totp::matching_step(&secret, &code, unix_now(app)) {
            Some(step) => app.store.accept_totp_step(user, step).await?,
            None => false,
        }
    } else if let Some(code) = totp::normalize_recovery(presented) {
        let hash = app.recovery_codes.hash(&code);
        app.store.use_recovery_code(user, &hash, app.clock.now()).await?
    } else {
        false
    };
    if !ok {
        return Err(TwoFactorError::Invalid);
    }
    give_back(app, user).await;
    Ok(())
}

/// The second factor of a sign-in whose password was right: `Ok` when two-factor is off or the
/// code (or a recovery code) is good.
pub async fn check_sign_in(app: &AppState, user: UserId, presented: Option<&str>) -> Result<(), TwoFactorError> {
    let Some(row) = app.store.user_totp(user).await?.filter(|r| r.confirmed_at.is_some()) else {
        return Ok(());
    };
    match presented.map(str::trim).filter(|c| !c.is_empty()) {
        None => Err(TwoFactorError::Required),
        Some(code) => spend(app, user, &row.secret, code).await,
    }
}

/// Turns two-factor off with a current code (or a recovery code).
pub async fn disable(app: &AppState, user: UserId, presented: &str) -> Result<(), TwoFactorError> {
    let Some(row) = app.store.user_totp(user).await?.filter(|r| r.confirmed_at.is_some()) else {
        return Err(TwoFactorError::NotOn);
    };
    spend(app, user, &row.secret, presented).await?;
    app.store.delete_totp(user).await?;
    Ok(())
}
