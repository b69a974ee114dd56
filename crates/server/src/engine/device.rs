//! Issue 9: remember-device (CONNECTORS §4). A browser login can keep the bank's trusted-device
//! cookies for the next login ([`BankSession::remembered`](super::connector::BankSession)); the
//! engine seals them with the master key, keeps them in `account_devices` (gone with the
//! account), and opens them for the next login
//! ([`Credentials::remembered`](super::connector::Credentials)). Failures here never fail a
//! session: without the state the bank simply asks for a code again.
//!
//! The sealed value is `{"username", "state"}` with the account id as associated data: it opens
//! only for its account, and is used only for the same bank username (a changed login starts
//! afresh). The account id alone is the associated data so that `admin rotate-master-key` can
//! re-seal it without opening the account's config.

use reconbanker_store::{now, AccountId};

use super::EngineDeps;

/// The associated data of an account's sealed device state.
pub(crate) fn aad(account: AccountId) -> Vec<u8> {
    let mut aad = b"device:".to_vec();
    aad.extend_from_slice(account.0.as_bytes());
    aad
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Kept {
    username: String,
    state: String,
}

/// The state the account's last login kept, opened; `None` when there is none or it does not
/// open (another username, another master key).
pub(super) async fn load(deps: &EngineDeps, account: AccountId, username: &str) -> Option<String> {
    let sealed = match deps.store.device_state(account).await {
        Ok(s) => s?,
        Err(e) => {
            tracing::warn!(error = %e, account = %account, "could not read the remembered device");
            return None;
        }
    };
    let opened = deps.sealer.open(&sealed, &aad(account)).ok()?;
    let kept: Kept = serde_json::from_slice(&opened).ok()?;
    (kept.username == username).then_some(kept.state)
}

/// Seals and keeps what a login kept for the next one.
pub(super) async fn keep(deps: &EngineDeps, account: AccountId, username: &str, state: &str) {
    let kept = Kept {
        username: username.to_owned(),
        state: state.to_owned(),
    };
    // Serializing two strings cannot fail.
    let json = serde_json::to_vec(&kept).unwrap_or_default();
    let sealed = deps.sealer.seal(&json, &aad(account));
    if let Err(e) = deps.store.set_device_state(account, Some(&sealed), now()).await {
        tracing::warn!(error = %e, account = %account, "could not keep the remembered device");
    }
}
