//! Banks (docs/product.md §4). Listing needs a dashboard token; creating one needs the admin role.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use reconbanker_store::{now, BankId, BankRow, Constraint, UserRow};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::DashboardUser;
use super::error::{ApiError, Problem};
use super::extract::{DJson, DPath};
use super::openapi::ApiErrorBody;
use crate::support::guard;
use crate::AppState;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BankOut {
    #[schema(value_type = String, format = Uuid)]
    id: BankId,
    code: String,
    name: String,
    #[schema(required = true)]
    login_url: Option<String>,
    status: String,
}

impl From<BankRow> for BankOut {
    fn from(b: BankRow) -> Self {
        Self {
            id: b.id,
            code: b.code,
            name: b.name,
            login_url: b.login_url,
            status: b.status,
        }
    }
}

/// List the banks.
#[utoipa::path(
    get, operation_id = "banks_list",
    path = "/banks",
    tag = "Banks",
    security(("DashboardJwt" = [])),
    responses(
        (status = 200, description = "Every bank", body = Vec<BankOut>),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
    )
)]
pub async fn list(State(app): State<AppState>, _who: DashboardUser) -> Result<Json<Vec<BankOut>>, ApiError> {
    Ok(Json(
        app.store.list_banks().await?.into_iter().map(Into::into).collect(),
    ))
}

/// One bank.
#[utoipa::path(
    get, operation_id = "banks_get",
    path = "/banks/{id}",
    tag = "Banks",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The bank's id (UUID)")),
    responses(
        (status = 200, description = "The bank", body = BankOut),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`", body = ApiErrorBody),
    )
)]
pub async fn get(
    State(app): State<AppState>,
    _who: DashboardUser,
    DPath(id): DPath<String>,
) -> Result<Json<BankOut>, ApiError> {
    let not_found = || ApiError(Problem::not_found("Bank not found"));
    let id = id.parse::<BankId>().map_err(|_| not_found())?;
    Ok(Json(app.store.bank_by_id(id).await?.ok_or_else(not_found)?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = CreateBankIn)]
pub struct CreateIn {
    /// 2 to 32 characters of `a-z`, `0-9`, `_`, `-`; unique.
    #[schema(value_type = String, pattern = "^[a-z0-9_-]{2,32}$")]
    pub(crate) code: Option<String>,
    /// 1 to 100 characters.
    #[schema(value_type = String)]
    pub(crate) name: Option<String>,
    /// The bank's login page (http/https, checked by the outbound-network guard).
    pub(crate) login_url: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = BankCreatedOut)]
pub struct Created {
    #[schema(value_type = String, format = Uuid)]
    id: BankId,
}

fn valid_code(code: &str) -> bool {
    (2..=32).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Add a bank (administrators only).
#[utoipa::path(
    post, operation_id = "banks_create",
    path = "/banks",
    tag = "Banks",
    security(("DashboardJwt" = [])),
    request_body(content = CreateIn, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = Created),
        (status = 400, description = "`VALIDATION_ERROR`: malformed body, unknown field, code, name, loginUrl", body = ApiErrorBody),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 403, description = "`FORBIDDEN`: not an administrator", body = ApiErrorBody),
        (status = 409, description = "`BANK_EXISTS`", body = ApiErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ApiErrorBody),
    )
)]
pub async fn create(
    State(app): State<AppState>,
    who: DashboardUser,
    DJson(body): DJson<CreateIn>,
) -> Result<impl IntoResponse, ApiError> {
    let id = create_as(&app, &who.user, body).await?;
    Ok((StatusCode::CREATED, Json(Created { id })))
}

/// Adds a bank for `user` (an administrator): the rules of `POST /banks`, which the dashboard's
/// Settings page (issue 10) calls too.
pub(crate) async fn create_as(app: &AppState, user: &UserRow, body: CreateIn) -> Result<BankId, Problem> {
    if !user.is_admin {
        return Err(Problem::forbidden("Only administrators can add banks"));
    }
    let code = body.code.map(|c| c.trim().to_owned()).unwrap_or_default();
    let name = body.name.map(|n| n.trim().to_owned()).unwrap_or_default();
    if code.is_empty() || name.is_empty() {
        return Err(Problem::validation("code and name are required"));
    }
    if !valid_code(&code) {
        return Err(Problem::field("code", "must be 2 to 32 characters of a-z, 0-9, _ or -"));
    }
    if name.chars().count() > 100 {
        return Err(Problem::field("name", "must be at most 100 characters"));
    }
    let login_url = match body.login_url {
        // The same outbound guard as every other URL a user gives (issue 12): the engine's
        // connectors will fetch it.
        Some(u) => Some(
            guard::check_url(u.trim(), app.config.allow_private_targets)
                .await
                .map_err(|m| Problem::field("loginUrl", &m))?
                .to_string(),
        ),
        None => None,
    };
    let bank = BankRow {
        id: BankId::new(),
        code,
        name,
        login_url,
        status: "active".into(),
        created_at: now(),
    };
    match app.store.create_bank(&bank).await {
        Ok(()) => Ok(bank.id),
        Err(e) if e.is_conflict_on(Constraint::BanksCode) => {
            Err(Problem::conflict("BANK_EXISTS", "Bank code already exists"))
        }
        Err(e) => Err(e.into()),
    }
}
