//! Use cases on accounts that span several services. A handler (or a CLI command, or another
//! instance's invalidation) calls these instead of repeating the steps.

use reconbanker_store::{now, AccountConfigRow, AccountId, AccountRow, BankId, ConfigWrite, NewAccount, UserId};

use super::AppError;
use crate::domain::account_config::{self, SecretFields, Settings};
use crate::AppState;

/// Creates an account with its stored default config and its own notification signing
/// secret. `None` when the bank does not exist.
pub(crate) async fn create(
    app: &AppState,
    user: UserId,
    bank_id: BankId,
    name: String,
) -> Result<Option<AccountRow>, AppError> {
    if app.store.bank_by_id(bank_id).await?.is_none() {
        return Ok(None);
    }
    let account = app
        .store
        .create_account(&NewAccount {
            id: AccountId::new(),
            user_id: user,
            bank_id,
            name,
            created_at: now(),
        })
        .await?;
    let mut secrets = SecretFields::default();
    secrets.ensure_signing_secrets();
    save_config(app, user, account.id, &Settings::default(), &secrets).await?;
    Ok(Some(account))
}

/// Deletes an account: stops its session and cancels its pending assistance (the waiting login
/// is released with `account_deleted`), deletes the rows, and drops every cached view of it.
pub(crate) async fn delete(app: &AppState, user: UserId, account: AccountId) -> Result<(), AppError> {
    // The account's history goes with it; the events its end writes from here on stay for the
    // streams (and, on PostgreSQL, the bus's reader) to deliver.
    let history = app.store.last_event_seq().await?;
    app.engine.kill(account, user, "account_deleted").await?;
    app.store.delete_account(user, account, history).await?;
    app.accounts.forget(account);
    app.assistance.forget(account);
    app.keys.forget_account(account);
    // Other instances on the database drop theirs too (issue 11).
    let what = crate::support::peers::Invalidation::Account(account.0);
    if let Err(e) = app.peers.announce(&what).await {
        tracing::warn!(error = %e, "could not tell the other instances that an account was deleted");
    }
    Ok(())
}

/// "Read now" (`POST /accounts/:id/scrape`, the dashboard's buttons): this instance's engine
/// runs it. An instance without the `engine` role (issue 11) tells the others instead
/// (`s:<account>` on the shared channel): the engine instance whose session is live reads, or
/// the engine instances race for the account's lease and one logs in, now rather than at the
/// account's next due time.
pub(crate) async fn scrape_now(app: &AppState, account: AccountId) {
    if app.config.roles.engine || !app.peers.heard() {
        app.engine.scrape_now(account);
        return;
    }
    let what = crate::support::peers::Invalidation::Scrape(account.0);
    if let Err(e) = app.peers.announce(&what).await {
        tracing::warn!(error = %e, "could not ask the engine instances to read an account");
    }
}

/// The account's config document, opened (defaults when never saved).
pub(crate) async fn load_config(
    app: &AppState,
    user: UserId,
    account: AccountId,
) -> Result<(Settings, SecretFields), AppError> {
    let row = app.store.account_config(user, account).await?;
    account_config::decode(row.as_ref(), &app.sealer).map_err(|e| AppError::Corrupt(e.to_string()))
}

/// Stores the config document, secrets sealed to this account, whatever is stored (a new
/// account's first config). A change of a stored config goes through [`change_config`].
pub(crate) async fn save_config(
    app: &AppState,
    user: UserId,
    account: AccountId,
    settings: &Settings,
    secrets: &SecretFields,
) -> Result<(), AppError> {
    let row = sealed_row(app, account, settings, secrets)?;
    if !app.store.put_account_config(user, &row).await? {
        return Err(AppError::NotFound);
    }
    Ok(())
}

/// How many times [`change_config`] starts again when other writes keep landing first.
const CONFIG_CHANGE_TRIES: usize = 16;

/// Changes the account's config: reads it, applies `change`, and stores the result only if no
/// other write landed in between (a compare-and-set on the stored row); otherwise it starts
/// again from the newer config. So two changes at the same time (a `PUT` of some fields and a
/// `PUT` of others, a `PUT` and a secret rotation) both take effect, and what each answers is
/// what it stored. Returns the stored config and what `change` returned.
pub(crate) async fn change_config<T, E>(
    app: &AppState,
    user: UserId,
    account: AccountId,
    mut change: impl FnMut(&mut Settings, &mut SecretFields) -> Result<T, E>,
) -> Result<(Settings, SecretFields, T), E>
where
    E: From<AppError>,
{
    for _ in 0..CONFIG_CHANGE_TRIES {
        let stored = app.store.account_config(user, account).await.map_err(AppError::from)?;
        let (mut settings, mut secrets) =
            account_config::decode(stored.as_ref(), &app.sealer).map_err(|e| AppError::Corrupt(e.to_string()))?;
        let out = change(&mut settings, &mut secrets)?;
        let row = sealed_row(app, account, &settings, &secrets)?;
        match app
            .store
            .replace_account_config(user, &row, stored.as_ref())
            .await
            .map_err(AppError::from)?
        {
            ConfigWrite::Written => return Ok((settings, secrets, out)),
            ConfigWrite::NotFound => return Err(AppError::NotFound.into()),
            ConfigWrite::Changed => continue,
        }
    }
    Err(AppError::Contended.into())
}

/// The stored form of a config: the settings as JSON, the secrets sealed to the account (with
/// a fresh nonce, so no two writes store the same bytes).
fn sealed_row(
    app: &AppState,
    account: AccountId,
    settings: &Settings,
    secrets: &SecretFields,
) -> Result<AccountConfigRow, AppError> {
    let corrupt = |e: serde_json::Error| AppError::Corrupt(e.to_string());
    let plain = serde_json::to_vec(secrets).map_err(corrupt)?;
    Ok(AccountConfigRow {
        account_id: account,
        settings: serde_json::to_string(settings).map_err(corrupt)?,
        secrets: Some(app.sealer.seal(&plain, &account_config::aad(account))),
        updated_at: now(),
    })
}
