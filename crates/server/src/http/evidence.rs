//! Issue 9: `GET /accounts/:id/runs/:runId/evidence` — the failure evidence of one run of a
//! browser bank (CONNECTORS §6): what the bank's page looked like when a step failed. Owner only
//! (another user's account, or a run not of this account → 404); unsealed here, never logged.

use axum::extract::{RawPathParams, State};
use axum::Json;
use reconbanker_store::{now, EvidenceId, RunId};
use serde::Serialize;

use super::auth::OwnedAccount;
use super::error::{ApiError, Problem};
use crate::app::AppState;
use crate::engine::evidence;
use crate::support::time::ts;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceOut {
    id: EvidenceId,
    taken_at: String,
    expires_at: String,
    #[serde(flatten)]
    evidence: evidence::Opened,
}

pub async fn list(
    State(app): State<AppState>,
    OwnedAccount { user: who, account }: OwnedAccount,
    params: RawPathParams,
) -> Result<Json<Vec<EvidenceOut>>, ApiError> {
    let not_found = || ApiError(Problem::not_found("Run not found"));
    let run = params
        .iter()
        .find_map(|(name, value)| (name == "runId").then_some(value))
        .and_then(|v| v.parse::<RunId>().ok())
        .ok_or_else(not_found)?;
    let rows = app
        .store
        .list_evidence(who.user.id, account.id, run, now())
        .await?
        .ok_or_else(not_found)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        // A row that does not open (another master key, tampering) is an operator problem: a
        // 500 that names nothing, the cause logged.
        let opened = evidence::open(&app.sealer, &row).map_err(|e| ApiError(Problem::internal(e)))?;
        out.push(EvidenceOut {
            id: row.id,
            taken_at: ts(row.taken_at),
            expires_at: ts(row.expires_at),
            evidence: opened,
        });
    }
    Ok(Json(out))
}
