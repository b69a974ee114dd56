//! Issue 9: `GET /accounts/:id/runs/:runId/evidence` — the failure evidence of one run of a
//! browser bank (CONNECTORS §6): what the bank's page looked like when a step failed. Owner only
//! (another user's account, or a run not of this account → 404); unsealed here, never logged.

use axum::extract::{RawPathParams, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use reconbanker_store::{now, EvidenceId, RunId};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::OwnedAccount;
use super::error::{ApiError, Problem};
use super::openapi::ApiErrorBody;
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

/// One piece of failure evidence as the API shows it (only for the document: the handler
/// serialises [`EvidenceOut`], whose body fields come from the engine's `evidence::Opened`).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct RunEvidenceOut {
    #[schema(format = Uuid)]
    id: String,
    /// RFC 3339.
    taken_at: String,
    /// RFC 3339: the evidence is deleted then (`RECONBANKER_EVIDENCE_DAYS` after it was taken).
    expires_at: String,
    /// The definition step that failed, e.g. `login[3]`.
    step: String,
    url: String,
    title: String,
    /// The steps run before the failure.
    trail: Vec<String>,
    /// The page's DOM (the bank password replaced by `[redacted]`).
    dom: String,
    /// `image/jpeg`, base64 (standard alphabet, padded).
    screenshot_jpeg: String,
}

/// A run's failure evidence.
///
/// What a browser bank's page looked like when a step of the run failed (at most 3 per run),
/// oldest first; empty when the run kept none.
#[utoipa::path(
    get, operation_id = "accounts_run_evidence",
    path = "/accounts/{id}/runs/{runId}/evidence",
    tag = "Accounts",
    security(("DashboardJwt" = [])),
    params(
        ("id" = String, Path, description = "The account's id (UUID)"),
        ("runId" = String, Path, description = "The run's id (UUID)"),
    ),
    responses(
        (status = 200, description = "The run's evidence that has not expired", body = Vec<RunEvidenceOut>),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account or run of the user (or a malformed id)", body = ApiErrorBody),
    )
)]
pub async fn list(
    State(app): State<AppState>,
    OwnedAccount { user: who, account }: OwnedAccount,
    params: RawPathParams,
) -> Result<impl IntoResponse, ApiError> {
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
    // Screenshots of a bank's pages: never kept by a cache.
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(out)))
}
