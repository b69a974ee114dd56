//! Issue 9: remember-device (CONNECTORS §4). A browser login can keep the bank's trusted-device
//! cookies for the next login ([`BankSession::remembered`](super::connector::BankSession)); the
//! engine seals them with the master key — the account id and the bank username as associated
//! data, so they open only for the same account and login (a changed username starts afresh) —
//! keeps them in `account_devices` (gone with the account), and opens them for the next login
//! ([`Credentials::remembered`](super::connector::Credentials)). Failures here never fail a
//! session: without the state the bank simply asks for a code again.

use reconbanker_store::{now, AccountId};

use super::EngineDeps;

fn aad(account: AccountId, username: &str) -> Vec<u8> {
    let mut aad = b"device:".to_vec();
    aad.extend_from_slice(account.0.as_bytes());
    aad.extend_from_slice(username.as_bytes());
    aad
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
    let opened = deps.sealer.open(&sealed, &aad(account, username)).ok()?;
    String::from_utf8(opened).ok()
}

/// Seals and keeps what a login kept for the next one.
pub(super) async fn keep(deps: &EngineDeps, account: AccountId, username: &str, state: &str) {
    let sealed = deps.sealer.seal(state.as_bytes(), &aad(account, username));
    if let Err(e) = deps.store.set_device_state(account, Some(&sealed), now()).await {
        tracing::warn!(error = %e, account = %account, "could not keep the remembered device");
    }
}
