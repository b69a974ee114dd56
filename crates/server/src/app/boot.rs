//! What a starting process cleans up after the previous one, and the rows it seeds.

use std::sync::Arc;

use reconbanker_store::{now, Store, StoreResult};

use crate::assistance::Assistance;
use crate::connectors::Builtin;
use crate::push::events::{EventHub, EventKind};

/// Seeds (or refreshes) the built-in banks.
pub(crate) async fn seed_banks(store: &dyn Store, banks: &[Builtin]) -> StoreResult<()> {
    for b in banks {
        store.upsert_bank(&b.bank).await?;
    }
    Ok(())
}

/// No login of a previous process is alive: its pending requests are cancelled
/// (`process_restart`) and announced, so stream clients resuming after the restart learn that
/// the prompt was withdrawn; its open runs are closed.
///
/// With `beside_others_as` (this instance's id, on PostgreSQL, where other instances may be
/// live: issue 11), only the requests and runs of accounts whose session lease no other
/// instance holds unexpired are closed.
pub(crate) async fn clean_up_after_previous_process(
    store: &Arc<dyn Store>,
    assistance: &Assistance,
    hub: &EventHub,
    beside_others_as: Option<&str>,
) -> StoreResult<()> {
    let orphans = assistance.close_orphans_at_boot(beside_others_as).await?;
    if !orphans.is_empty() {
        tracing::info!(
            count = orphans.len(),
            "cancelled assistance requests left pending by a previous process"
        );
    }
    for row in &orphans {
        if let Some(acc) = store.engine_account(row.account_id).await? {
            let data = serde_json::json!({ "requestId": row.id, "reason": row.reason });
            hub.emit(
                EventKind::AssistanceCancelled,
                acc.account.user_id,
                row.account_id,
                data,
            )
            .await?;
        }
    }
    let runs = match beside_others_as {
        Some(me) => store.close_unowned_open_runs(me, "process_restart", now()).await?,
        None => store.close_open_runs("process_restart", now()).await?,
    };
    if runs > 0 {
        tracing::info!(count = runs, "closed session runs left open by a previous process");
    }
    Ok(())
}
