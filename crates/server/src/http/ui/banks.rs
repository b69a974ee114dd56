//! Issue 10: the banks in Settings, for administrators: the list (`GET /banks`'s view) and a form
//! to add one, which runs `http::banks::create_as` — the rules of `POST /banks` (admin only, the
//! code's shape, the name's length, the outbound guard on the login URL, a unique code). Success
//! redirects to `/app/settings?done=bank` (POST/redirect/GET); a refusal renders Settings with
//! the API's message at the field it names and what was typed kept. Other users see no banks
//! section, and their posts are refused with the API's 403.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::Router;
use maud::{html, Markup};
use serde_json::Value;

use super::session::UiUser;
use super::{field, signed_form};
use crate::http::banks::{create_as, CreateIn};
use crate::http::error::{ApiError, Problem};
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/app/settings/banks", post(add))
}

/// The add form after a refusal: the message, the field it names, and what was typed.
#[derive(Default)]
pub(crate) struct Typed {
    pub error: Option<String>,
    pub field: Option<String>,
    pub status: Option<StatusCode>,
    pub code: String,
    pub name: String,
    pub login_url: String,
}

/// The banks section of Settings: empty for a user who is not an administrator.
pub(crate) async fn section(app: &AppState, who: &UiUser, typed: &Typed) -> Result<Markup, Problem> {
    if !who.user.is_admin {
        return Ok(html! {});
    }
    let banks = app.store.list_banks().await?;
    let at = |f: &str| typed.field.as_deref() == Some(f);
    let input = |id: &str, name: &str, api: &str, label: &str, kind: &str, value: &str, hint: Option<&str>| {
        let invalid = at(api);
        let described: Vec<String> = hint
            .map(|_| format!("{id}-hint"))
            .into_iter()
            .chain(invalid.then(|| format!("{id}-err")))
            .collect();
        html! {
            label for=(id) { (label) }
            input id=(id) name=(name) type=(kind) value=(value) spellcheck="false"
                aria-invalid=[invalid.then_some("true")]
                aria-describedby=[(!described.is_empty()).then(|| described.join(" "))];
            @if let Some(h) = hint {
                span.hint id={ (id) "-hint" } { (h) }
            }
            @if invalid {
                @if let Some(e) = &typed.error {
                    span.field-error id={ (id) "-err" } { (e) }
                }
            }
        }
    };
    Ok(html! {
        section aria-labelledby="banks-h" {
            h2 id="banks-h" { "Banks" }
            p { "The banks operators can add accounts on. Only administrators see this." }
            @if banks.is_empty() {
                p.empty id="banks-empty" { "No banks yet. Add one below." }
            } @else {
                ul.rows id="banks" {
                    @for b in &banks {
                        li data-bank-code=(b.code) {
                            strong { (b.name) } " " code { (b.code) }
                            span.meta { " · " (b.status) }
                            @if let Some(u) = &b.login_url {
                                p.meta { "Login page: " (u) }
                            }
                        }
                    }
                }
            }
            h3 { "Add a bank" }
            @if let (Some(e), None) = (&typed.error, &typed.field) {
                p.error role="alert" id="bank-error" { (e) }
            }
            form.card method="post" action="/app/settings/banks" id="bank-form" {
                input type="hidden" name="csrf" value=(who.csrf);
                (input("bank-code", "code", "code", "Code", "text", &typed.code,
                    Some("2 to 32 characters: a-z, 0-9, _ or -. Unique.")))
                (input("bank-name", "name", "name", "Name", "text", &typed.name, None))
                (input("bank-login-url", "login_url", "loginUrl", "Login page (optional)", "url", &typed.login_url, None))
                button type="submit" { "Add bank" }
            }
        }
    })
}

async fn add(State(app): State<AppState>, who: UiUser, body: Result<Bytes, BytesRejection>) -> Response {
    let f = match signed_form(&who, body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let (code, name, login_url) = (field(&f, "code"), field(&f, "name"), field(&f, "login_url"));
    let input = CreateIn {
        code: Some(code.to_owned()),
        name: Some(name.to_owned()),
        login_url: Some(login_url.trim().to_owned()).filter(|u| !u.is_empty()),
    };
    match create_as(&app, &who.user, input).await {
        Ok(_) => Redirect::to("/app/settings?done=bank").into_response(),
        Err(p) if matches!(p.status, StatusCode::BAD_REQUEST | StatusCode::CONFLICT) => {
            let field = match &p.details {
                Some(Value::Array(items)) => items.first().and_then(|i| i["field"].as_str()).map(str::to_owned),
                _ => None,
            }
            .or_else(|| (p.code == "BANK_EXISTS").then(|| "code".to_owned()));
            let typed = Typed {
                error: Some(p.message.to_string()),
                field,
                status: Some(p.status),
                code: code.to_owned(),
                name: name.to_owned(),
                login_url: login_url.to_owned(),
            };
            super::settings_with(&app, &who, None, None, &typed).await
        }
        Err(p) => ApiError(p).into_response(),
    }
}
