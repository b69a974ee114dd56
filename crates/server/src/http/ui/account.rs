//! Issue 10: one account's page (`/app/accounts/{id}`): the settings form for every config field
//! (secrets write-only: never rendered back, blank keeps the stored value, a box clears it; the
//! API's field errors shown at the field they name), the runs, the movements (match badge,
//! ignore / un-ignore, passthrough re-send), both delivery logs (re-send, dead letters), signing
//! secret rotation (the new secret shown once) and deletion with the name typed. The rules are
//! the dashboard API's (`http::accounts::update_config`, `http::review::set_ignored`,
//! `http::passthrough::notify_as`, `http::notifications::rotate_channel`,
//! `app::accounts::delete`): this module reads forms and renders.

use crate::domain::exact_json::{ExactJson, ExactObject};
use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use reconbanker_store::{
    AccountRow, DeliveryId, DeliveryRow, MovementRow, RunRow, CHANNEL_NOTIFICATION, CHANNEL_RESULT,
};
use serde_json::{json, Map, Value};

use super::pages::{page, Chrome};
use super::session::{tokens_match, UiUser};
use super::{light, owned, refused, Halt};
use crate::domain::account_config::{ConfigPatch, SecretFields, Settings, SigningChannel};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{body_bytes, parse_json, DPath};
use crate::support::time::ts;
use crate::AppState;

/// How many runs, movements and deliveries (per log) the page shows.
const SHOWN: i64 = 50;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/accounts/{id}", get(account_page))
        .route("/app/accounts/{id}/config", post(save_config))
        .route("/app/accounts/{id}/delete", post(delete))
        .route("/app/accounts/{id}/rotate/{channel}", post(rotate))
        .route(
            "/app/accounts/{id}/movements/{movement}/{action}",
            post(movement_action),
        )
        .route(
            "/app/accounts/{id}/deliveries/{channel}/{delivery}/resend",
            post(resend),
        )
        .route("/app/accounts/{id}/poll", post(poll_now))
}

// --- forms ---

/// A form body as its pairs, in order (checkbox groups repeat a name).
struct Form(Vec<(String, String)>);

impl Form {
    /// The last value of `name` (a hidden default followed by a checked box yields the box).
    fn last(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The form of a signed-in user, its synchronizer token checked.
fn signed(who: &UiUser, body: Result<Bytes, BytesRejection>) -> Result<Form, Halt> {
    let bytes = body_bytes(body).map_err(|p| Box::new(ApiError(p).into_response()))?;
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&bytes).into_owned().collect();
    let f = Form(pairs);
    if tokens_match(f.last("csrf").unwrap_or(""), &who.csrf) {
        Ok(f)
    } else {
        Err(Box::new(refused()))
    }
}

/// A signed form about the user's account `id`: the CSRF token first, then the account (the
/// same 404 for a malformed, unknown or foreign id).
async fn signed_for(
    app: &AppState,
    who: &UiUser,
    id: &str,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Form, AccountRow), Halt> {
    let f = signed(who, body)?;
    let account = owned(app, who, id)
        .await
        .map_err(|p| Box::new(ApiError(p).into_response()))?;
    Ok((f, account))
}

/// The write-only fields of the config, with their labels.
const SECRETS: [(&str, &str); 5] = [
    ("bank_username", "Bank username"),
    ("bank_password", "Bank password"),
    ("notification_auth_token", "Notification auth token"),
    ("auth_token", "Pending-orders auth token"),
    ("webhook_auth_token", "Result-webhook auth token"),
];

/// Fields whose value is a choice: empty means `null` (the default, or none).
const CHOICES: [&str; 6] = [
    "session_type",
    "login_mode",
    "polling_method",
    "notification_auth_type",
    "auth_type",
    "webhook_auth_type",
];
const URLS: [&str; 3] = ["notification_endpoint_url", "pending_orders_endpoint", "webhook_url"];
const FLAGS: [&str; 2] = ["notify_on_expired", "silent_ingestion"];
const EVENTS: [(&str, &str); 4] = [
    ("assistance_required", "The bank asks for a code"),
    ("login_failed", "A login failed"),
    ("scrape_failed", "Reading movements failed"),
    ("poll_failed", "Polling pending orders failed three times"),
];

/// The form's fields as a config patch (JSON text): only the fields the form carries are sent
/// (a partial update); a blank secret is left out (unchanged), its "clear" box sends `null`.
/// The poll body and the extra fields keep every digit of their numbers.
fn patch_of(f: &Form) -> Result<String, Problem> {
    let mut p = Map::new();
    let mut exact = ExactObject::new();
    let null = || ExactJson::parse("null");
    for name in CHOICES.iter().chain(URLS.iter()) {
        if let Some(v) = f.last(name) {
            let v = v.trim();
            p.insert((*name).to_owned(), if v.is_empty() { Value::Null } else { json!(v) });
        }
    }
    for name in FLAGS {
        if let Some(v) = f.last(name) {
            p.insert(name.to_owned(), json!(v == "true"));
        }
    }
    if f.last("notification_events").is_some() {
        let events: Vec<&str> = f
            .all("notification_events")
            .into_iter()
            .filter(|v| !v.is_empty())
            .collect();
        p.insert("notification_events".to_owned(), json!(events));
    }
    if let Some(v) = f.last("retry_limit") {
        let v = v.trim();
        let n = if v.is_empty() {
            Value::Null
        } else {
            json!(v
                .parse::<u32>()
                .map_err(|_| Problem::field("retry_limit", "must be a whole number from 0 to 10"))?)
        };
        p.insert("retry_limit".to_owned(), n);
    }
    if let Some(v) = f.last("polling_body") {
        let v = v.trim();
        let body = if v.is_empty() {
            null()
        } else if v.starts_with('{') {
            Some(
                ExactJson::parse(v)
                    .ok_or_else(|| Problem::field("polling_body", "starts with { but is not a valid JSON object"))?,
            )
        } else {
            Some(ExactJson::string(v))
        };
        exact.extend(body.map(|b| ("polling_body".to_owned(), b)));
    }
    if let Some(v) = f.last("webhook_extra_fields") {
        let v = v.trim();
        let fields = if v.is_empty() {
            null()
        } else {
            match ExactJson::parse(v) {
                Some(o) if o.is_object() => Some(o),
                _ => return Err(Problem::field("webhook_extra_fields", "must be a JSON object")),
            }
        };
        exact.extend(fields.map(|b| ("webhook_extra_fields".to_owned(), b)));
    }
    for (name, _) in SECRETS {
        if f.last(&format!("clear_{name}")) == Some("on") {
            p.insert(name.to_owned(), Value::Null);
        } else if let Some(v) = f.last(name).filter(|v| !v.is_empty()) {
            p.insert(name.to_owned(), json!(v));
        }
    }
    let mut all: ExactObject = p
        .into_iter()
        .filter_map(|(k, v)| ExactJson::parse(&v.to_string()).map(|v| (k, v)))
        .collect();
    all.extend(exact);
    Ok(ExactJson::object(&all).get().to_owned())
}

/// The values shown in the settings form (never a secret's value).
#[derive(Default)]
struct Shown {
    values: HashMap<&'static str, String>,
    events: Vec<String>,
}

fn enum_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl Shown {
    fn stored(s: &Settings) -> Self {
        let mut values = HashMap::new();
        values.insert("session_type", enum_text(&s.session_type));
        values.insert("login_mode", enum_text(&s.login_mode));
        values.insert("polling_method", enum_text(&s.polling_method));
        values.insert(
            "notification_auth_type",
            s.notification_auth_type.map(|t| enum_text(&t)).unwrap_or_default(),
        );
        values.insert("auth_type", s.auth_type.map(|t| enum_text(&t)).unwrap_or_default());
        values.insert(
            "webhook_auth_type",
            s.webhook_auth_type.map(|t| enum_text(&t)).unwrap_or_default(),
        );
        values.insert(
            "notification_endpoint_url",
            s.notification_endpoint_url.clone().unwrap_or_default(),
        );
        values.insert(
            "pending_orders_endpoint",
            s.pending_orders_endpoint.clone().unwrap_or_default(),
        );
        values.insert("webhook_url", s.webhook_url.clone().unwrap_or_default());
        values.insert("retry_limit", s.retry_limit.to_string());
        values.insert("notify_on_expired", s.notify_on_expired.to_string());
        values.insert("silent_ingestion", s.silent_ingestion.to_string());
        values.insert(
            "polling_body",
            match &s.polling_body {
                None => String::new(),
                Some(v) => v.as_str().unwrap_or_else(|| v.pretty()),
            },
        );
        values.insert(
            "webhook_extra_fields",
            if s.webhook_extra_fields.is_empty() {
                String::new()
            } else {
                ExactJson::object(&s.webhook_extra_fields).pretty()
            },
        );
        Self {
            values,
            events: s.notification_events.iter().map(enum_text).collect(),
        }
    }

    /// What was submitted, over the stored values (a refused form is shown as typed).
    fn submitted(stored: &Settings, f: &Form) -> Self {
        let mut shown = Self::stored(stored);
        let names = CHOICES
            .iter()
            .chain(URLS.iter())
            .chain(FLAGS.iter())
            .chain(["retry_limit", "polling_body", "webhook_extra_fields"].iter());
        for name in names {
            if let Some(v) = f.last(name) {
                shown.values.insert(name, v.to_owned());
            }
        }
        if f.last("notification_events").is_some() {
            shown.events = f
                .all("notification_events")
                .into_iter()
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect();
        }
        shown
    }

    fn get(&self, name: &str) -> &str {
        self.values.get(name).map(String::as_str).unwrap_or("")
    }
}

/// Which secrets are stored.
fn secrets_set(s: &SecretFields) -> HashMap<&'static str, bool> {
    HashMap::from([
        ("bank_username", s.bank_username.is_some()),
        ("bank_password", s.bank_password.is_some()),
        ("notification_auth_token", s.notification_auth_token.is_some()),
        ("auth_token", s.auth_token.is_some()),
        ("webhook_auth_token", s.webhook_auth_token.is_some()),
    ])
}

/// The form field a validation error names (`notification_events[0]` → `notification_events`).
fn field_errors(p: &Problem) -> HashMap<String, String> {
    let mut out = HashMap::new();
    if let Some(Value::Array(items)) = &p.details {
        for item in items {
            if let (Some(field), Some(message)) = (item["field"].as_str(), item["message"].as_str()) {
                let base = field.split(['[', '.']).next().unwrap_or(field).to_owned();
                out.entry(base).or_insert_with(|| message.to_owned());
            }
        }
    }
    out
}

// --- the page ---

/// What a POST left to show on the page.
#[derive(Default)]
struct Outcome<'a> {
    notice: Option<&'a str>,
    error: Option<String>,
    /// A rejected settings form: what was typed, and the errors by field.
    form: Option<(Shown, HashMap<String, String>)>,
    /// A refused deletion: its message.
    delete_error: Option<String>,
    /// A signing secret just rotated.
    rotated: Option<Rotated>,
}

/// A movement with the request it settled (id, external id) and when it was ignored.
type Movement = (MovementRow, Option<(String, String)>, Option<String>);

/// Which slice of each list the page shows: offsets from the newest (`?runs=50` …) and the
/// dead-letter filter of the delivery logs (`?deliveries=dead`).
#[derive(Clone, Copy, Default)]
struct View {
    dead_only: bool,
    /// Offsets of the runs, movements, notification and result-webhook deliveries.
    at: [i64; 4],
}

/// The query names of [`View::at`], in order.
const LISTS: [&str; 4] = ["runs", "movements", "notifications", "webhooks"];
/// Past this offset a list is not paged further (the store's offsets stay small).
const MAX_OFFSET: i64 = 100_000;

impl View {
    fn parse(uri: &Uri) -> Self {
        let mut v = View::default();
        for (k, val) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
            if k == "deliveries" {
                v.dead_only = val == "dead";
            } else if let Some(i) = LISTS.iter().position(|l| *l == k) {
                // An unreadable or out-of-range offset is the first page.
                v.at[i] = val
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (0..=MAX_OFFSET).contains(n))
                    .unwrap_or(0);
            }
        }
        v
    }

    /// This view's URL with list `i` at `offset`.
    fn link(&self, account: reconbanker_store::AccountId, i: usize, offset: i64) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if self.dead_only {
            q.append_pair("deliveries", "dead");
        }
        for (j, name) in LISTS.iter().enumerate() {
            let at = if j == i { offset } else { self.at[j] };
            if at > 0 {
                q.append_pair(name, &at.to_string());
            }
        }
        let q = q.finish();
        let anchor = ["runs-h", "movements-h", "deliveries-h", "deliveries-h"][i];
        if q.is_empty() {
            format!("/app/accounts/{account}#{anchor}")
        } else {
            format!("/app/accounts/{account}?{q}#{anchor}")
        }
    }
}

/// Takes one more row than shown: whether there is an older page.
fn more<T>(mut rows: Vec<T>) -> (Vec<T>, bool) {
    let more = rows.len() as i64 > SHOWN;
    rows.truncate(SHOWN as usize);
    (rows, more)
}

struct Data {
    view: View,
    /// Whether each list has an older page.
    more: [bool; 4],
    account: AccountRow,
    light: &'static str,
    settings: Settings,
    secrets: HashMap<&'static str, bool>,
    runs: Vec<RunRow>,
    movements: Vec<Movement>,
    notifications: Vec<DeliveryRow>,
    results: Vec<DeliveryRow>,
    review: i64,
}

async fn load(app: &AppState, who: &UiUser, account: AccountRow, view: View) -> Result<Data, Problem> {
    let user = who.user.id;
    let (settings, secrets) = crate::app::accounts::load_config(app, user, account.id).await?;
    let (runs, more_runs) = more(app.store.list_runs(user, account.id, SHOWN + 1, view.at[0]).await?);
    let (rows, more_movements) = more(
        app.store
            .list_movements(user, account.id, SHOWN + 1, view.at[1])
            .await?,
    );
    let ids: Vec<_> = rows.iter().map(|m| m.id).collect();
    let matches: HashMap<_, _> = app
        .store
        .movement_matches(user, account.id, &ids)
        .await?
        .into_iter()
        .map(|(id, matched, ignored)| (id, (matched, ignored)))
        .collect();
    let movements = rows
        .into_iter()
        .map(|m| {
            let (matched, ignored) = matches.get(&m.id).cloned().unwrap_or_default();
            (m, matched.map(|(r, ext)| (r.to_string(), ext)), ignored.map(ts))
        })
        .collect();
    let status = view.dead_only.then_some("dead");
    let (notifications, more_notifications) = more(
        app.store
            .list_channel_deliveries(user, account.id, CHANNEL_NOTIFICATION, status, SHOWN + 1, view.at[2])
            .await?,
    );
    let (results, more_results) = more(
        app.store
            .list_channel_deliveries(user, account.id, CHANNEL_RESULT, status, SHOWN + 1, view.at[3])
            .await?,
    );
    Ok(Data {
        view,
        more: [more_runs, more_movements, more_notifications, more_results],
        light: light(app, &account).await?,
        account,
        settings,
        secrets: secrets_set(&secrets),
        runs,
        movements,
        notifications,
        results,
        review: super::review::queue_len(app, who).await?,
    })
}

/// A signing secret just rotated: (which, the new secret, until when the old one signs).
type Rotated = (&'static str, String, Option<String>);

/// The flash purpose of a rotated secret of `account`.
fn rotated_purpose(account: reconbanker_store::AccountId) -> String {
    format!("rotated:{account}")
}

/// The rotated secret a rotation's redirect carried (`flash`): (which, secret, old one's end).
fn rotated_flash(
    app: &AppState,
    who: &UiUser,
    id: &str,
    headers: &HeaderMap,
) -> (Option<Rotated>, Option<axum::http::HeaderValue>) {
    let Ok(account) = id.parse::<reconbanker_store::AccountId>() else {
        return (None, None);
    };
    let (value, clear) = super::flash::take(app, headers, who.user.id, &rotated_purpose(account));
    let shown = value.and_then(|v| {
        let (which, secret, until): (String, String, Option<String>) = serde_json::from_str(&v).ok()?;
        let which = match which.as_str() {
            "notification" => "notification",
            _ => "result-webhook",
        };
        Some((which, secret, until))
    });
    (shown, clear)
}

async fn account_page(
    State(app): State<AppState>,
    who: UiUser,
    DPath(id): DPath<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let done = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "done")
        .map(|(_, v)| v.into_owned());
    // issue 10: a rotation's new secret, shown once (a reload finds the flash gone).
    let (rotated, clear) = if done.as_deref() == Some("rotated") {
        rotated_flash(&app, &who, &id, &headers)
    } else {
        (None, None)
    };
    let notice = match done.as_deref() {
        Some("saved") => Some("Settings saved."),
        Some("ignored") => Some("The movement is ignored: matching leaves it out."),
        Some("unignored") => Some("The movement is back in matching."),
        Some("notified") => Some("The movement's webhook is queued."),
        Some("resent") => Some("The delivery is queued again."),
        Some("polled") => Some("A poll of the pending orders is queued."),
        Some("rotated") if rotated.is_none() => {
            Some("The signing secret was rotated. It is shown only once: rotate again if it was not copied.")
        }
        _ => None,
    };
    let view = View::parse(&uri);
    let page = render(
        &app,
        &who,
        &id,
        StatusCode::OK,
        Outcome {
            notice,
            rotated,
            ..Outcome::default()
        },
        view,
    )
    .await;
    super::session::with_cookies(page, clear.into_iter().collect())
}

async fn render(
    app: &AppState,
    who: &UiUser,
    id: &str,
    status: StatusCode,
    outcome: Outcome<'_>,
    view: View,
) -> Response {
    let account = match owned(app, who, id).await {
        Ok(a) => a,
        Err(p) => return ApiError(p).into_response(),
    };
    match load(app, who, account, view).await {
        Ok(d) => {
            let c = Chrome {
                user: &who.user,
                csrf: &who.csrf,
                review: Some(d.review),
            };
            let m = markup(&c, &d, outcome);
            (status, axum::response::Html(m.into_string())).into_response()
        }
        Err(p) => ApiError(p).into_response(),
    }
}

pub(super) fn delivery_light(s: &str) -> &'static str {
    match s {
        "delivered" => "running",
        "pending" => "starting",
        "dead" => "needs_attention",
        _ => "off",
    }
}

pub(super) fn time_of(t: Option<reconbanker_store::Timestamp>, none: &str) -> Markup {
    html! {
        @match t {
            Some(t) => { time datetime=(ts(t)) { (ts(t)) } }
            None => { (none) }
        }
    }
}

fn field_error(errors: &HashMap<String, String>, name: &str) -> Markup {
    html! {
        @if let Some(e) = errors.get(name) {
            span.field-error id={ "err-" (name) } { (name) " " (e) }
        }
    }
}

/// An `aria-describedby` for a field: its hint and, when refused, its error.
fn described(errors: &HashMap<String, String>, name: &str, hint: bool) -> Option<String> {
    let mut ids = Vec::new();
    if hint {
        ids.push(format!("hint-{name}"));
    }
    if errors.contains_key(name) {
        ids.push(format!("err-{name}"));
    }
    (!ids.is_empty()).then(|| ids.join(" "))
}

fn text_input(
    shown: &Shown,
    errors: &HashMap<String, String>,
    name: &'static str,
    label: &str,
    kind: &str,
    hint: Option<&str>,
) -> Markup {
    let id = format!("f-{name}");
    html! {
        label for=(id) { (label) }
        @if let Some(h) = hint { span.hint id={ "hint-" (name) } { (h) } }
        input id=(id) name=(name) type=(kind) value=(shown.get(name)) spellcheck="false" autocomplete="off"
            aria-invalid=[errors.contains_key(name).then_some("true")]
            aria-describedby=[described(errors, name, hint.is_some())];
        (field_error(errors, name))
    }
}

fn select_input(
    shown: &Shown,
    errors: &HashMap<String, String>,
    name: &'static str,
    label: &str,
    options: &[(&str, &str)],
) -> Markup {
    let id = format!("f-{name}");
    let current = shown.get(name);
    html! {
        label for=(id) { (label) }
        select id=(id) name=(name) aria-invalid=[errors.contains_key(name).then_some("true")]
            aria-describedby=[described(errors, name, false)] {
            @for (value, text) in options {
                option value=(value) selected[current == *value] { (text) }
            }
        }
        (field_error(errors, name))
    }
}

fn textarea_input(
    shown: &Shown,
    errors: &HashMap<String, String>,
    name: &'static str,
    label: &str,
    hint: &str,
) -> Markup {
    let id = format!("f-{name}");
    html! {
        label for=(id) { (label) }
        span.hint id={ "hint-" (name) } { (hint) }
        textarea id=(id) name=(name) rows="3" spellcheck="false"
            aria-invalid=[errors.contains_key(name).then_some("true")]
            aria-describedby=[described(errors, name, true)] { (shown.get(name)) }
        (field_error(errors, name))
    }
}

fn flag_input(shown: &Shown, name: &'static str, label: &str) -> Markup {
    html! {
        input type="hidden" name=(name) value="false";
        label.choice {
            input type="checkbox" name=(name) value="true" checked[shown.get(name) == "true"];
            " " (label)
        }
    }
}

/// A write-only field: never rendered back; blank keeps it; a box clears it.
fn secret_input(set: &HashMap<&'static str, bool>, errors: &HashMap<String, String>, name: &'static str) -> Markup {
    let label = SECRETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, l)| *l)
        .unwrap_or(name);
    let id = format!("f-{name}");
    let is_set = set.get(name).copied().unwrap_or(false);
    let kind = if name == "bank_username" { "text" } else { "password" };
    html! {
        label for=(id) { (label) }
        span.hint id={ "hint-" (name) } {
            @if is_set { "Set (not shown). Leave blank to keep it, or type a new value." }
            @else { "Not set." }
        }
        input id=(id) name=(name) type=(kind) value="" autocomplete="new-password" spellcheck="false"
            aria-invalid=[errors.contains_key(name).then_some("true")]
            aria-describedby=[described(errors, name, true)];
        (field_error(errors, name))
        @if is_set {
            label.choice { input type="checkbox" name={ "clear_" (name) }; " Clear the stored " (label.to_lowercase()) }
        }
    }
}

const AUTH_TYPES: [(&str, &str); 3] = [("", "None"), ("bearer", "Bearer"), ("api_key", "API key")];

fn settings_form(c: &Chrome<'_>, d: &Data, shown: &Shown, errors: &HashMap<String, String>) -> Markup {
    let id = d.account.id;
    html! {
        form.card.wide id="settings-form" method="post" action={ "/app/accounts/" (id) "/config" } novalidate {
            input type="hidden" name="csrf" value=(c.csrf);
            fieldset {
                legend { "Bank login" }
                (select_input(shown, errors, "login_mode", "Login", &[("simple", "Simple: no codes"), ("assisted", "Assisted: ask me for the bank's one-time codes")]))
                (select_input(shown, errors, "session_type", "Session", &[("one-shot", "One-shot: sign in, read, sign out"), ("persistent", "Persistent: stay signed in")]))
                (secret_input(&d.secrets, errors, "bank_username"))
                (secret_input(&d.secrets, errors, "bank_password"))
            }
            fieldset {
                legend { "Operational notifications" }
                (text_input(shown, errors, "notification_endpoint_url", "Notification URL", "url", Some("Where alerts are POSTed (http or https). Blank: none.")))
                (select_input(shown, errors, "notification_auth_type", "Notification auth", &AUTH_TYPES))
                (secret_input(&d.secrets, errors, "notification_auth_token"))
                fieldset aria-describedby=[described(errors, "notification_events", false)] {
                    legend { "Send an alert when" }
                    input type="hidden" name="notification_events" value="";
                    @for (value, text) in EVENTS {
                        label.choice {
                            input type="checkbox" name="notification_events" value=(value) checked[shown.events.iter().any(|e| e == value)];
                            " " (text)
                        }
                    }
                    (field_error(errors, "notification_events"))
                }
            }
            fieldset {
                legend { "Reconciliation: pending orders" }
                (text_input(shown, errors, "pending_orders_endpoint", "Pending-orders URL", "url", Some("Your endpoint listing the orders waiting for a payment. Blank: none.")))
                (select_input(shown, errors, "polling_method", "Poll with", &[("GET", "GET"), ("POST", "POST")]))
                (textarea_input(shown, errors, "polling_body", "Poll body (POST)", "A JSON object, or text sent as is. Blank: none."))
                (select_input(shown, errors, "auth_type", "Pending-orders auth", &AUTH_TYPES))
                (secret_input(&d.secrets, errors, "auth_token"))
                (text_input(shown, errors, "retry_limit", "Evaluation errors before a request fails", "number", Some("0 to 10; blank: 3.")))
            }
            fieldset {
                legend { "Result webhook" }
                (text_input(shown, errors, "webhook_url", "Result-webhook URL", "url", Some("Receives matched, ambiguous and expired results, and passthrough movements. Blank: none.")))
                (select_input(shown, errors, "webhook_auth_type", "Result-webhook auth", &[("", "As the pending-orders auth"), ("bearer", "Bearer"), ("api_key", "API key")]))
                (secret_input(&d.secrets, errors, "webhook_auth_token"))
                (textarea_input(shown, errors, "webhook_extra_fields", "Extra fields", "A JSON object merged into every result body. Blank: none."))
                (flag_input(shown, "notify_on_expired", "Also send a result when a request expires"))
                (flag_input(shown, "silent_ingestion", "Silent ingestion: store movements without forwarding them"))
            }
            button type="submit" { "Save settings" }
        }
    }
}

fn markup(c: &Chrome<'_>, d: &Data, o: Outcome<'_>) -> Markup {
    let a = &d.account;
    let id = a.id;
    let stored;
    let no_errors = HashMap::new();
    let (shown, errors) = match &o.form {
        Some((s, e)) => (s, e),
        None => {
            stored = Shown::stored(&d.settings);
            (&stored, &no_errors)
        }
    };
    let passthrough = c.user.operation_mode.as_deref() == Some("passthrough");
    let reconciling = c.user.operation_mode.as_deref() == Some("reconcile");
    page(
        &a.name,
        Some(c),
        &[],
        html! {
            p { a href="/app" { "← All accounts" } }
            @if let Some(n) = o.notice { p.notice role="status" id="notice" { (n) } }
            @if let Some(e) = &o.error { p.error role="alert" id="form-error" { (e) } }
            div.account-head {
                span.bank { (a.bank_code) }
                span.light data-light=(d.light) { (super::pages::light_label(d.light)) }
            }
            @if let Some(r) = &a.scrape_blocked_reason {
                div id="blocked" { (super::pages::blocked(r)) }
            }
            div.actions {
                form.inline method="post" action={ "/app/accounts/" (id) "/read" } {
                    input type="hidden" name="csrf" value=(c.csrf);
                    input type="hidden" name="back" value="account";
                    button type="submit" { "Read now" }
                }
                @if reconciling && d.settings.pending_orders_endpoint.is_some() {
                    form.inline method="post" action={ "/app/accounts/" (id) "/poll" } {
                        input type="hidden" name="csrf" value=(c.csrf);
                        button type="submit" { "Poll pending orders now" }
                    }
                }
            }
            nav.sections aria-label="On this page" {
                a href="#settings-h" { "Settings" }
                a href="#secrets-h" { "Signing secrets" }
                a href="#runs-h" { "Runs" }
                a href="#movements-h" { "Movements" }
                a href="#deliveries-h" { "Deliveries" }
                a href="#delete-h" { "Delete" }
            }
            section aria-labelledby="settings-h" {
                h2 id="settings-h" { "Settings" }
                (settings_form(c, d, shown, errors))
            }
            section aria-labelledby="secrets-h" {
                h2 id="secrets-h" { "Signing secrets" }
                p { "Webhooks are signed (Standard Webhooks) with a secret per receiver. Rotating makes a new one; "
                    "the old one keeps signing for a grace period so your receiver can switch over." }
                @if let Some((which, secret, until)) = &o.rotated {
                    section.card.created id="rotated" aria-labelledby="rotated-h" {
                        h3 id="rotated-h" { "New " (which) " signing secret" }
                        p { strong { "Copy it now: it is shown only once." } }
                        label for="new-secret" { "Signing secret" }
                        input id="new-secret" type="text" readonly value=(secret) spellcheck="false";
                        button type="button" data-copy="new-secret" { "Copy" }
                        p.meta role="status" aria-live="polite" data-copied="new-secret" {}
                        @if let Some(u) = until {
                            p.meta { "The previous secret also signs until " time datetime=(u) { (u) } "." }
                        }
                    }
                }
                div.actions {
                    form.inline method="post" action={ "/app/accounts/" (id) "/rotate/notification" } {
                        input type="hidden" name="csrf" value=(c.csrf);
                        button type="submit" { "Rotate the notification secret" }
                    }
                    form.inline method="post" action={ "/app/accounts/" (id) "/rotate/webhook" } {
                        input type="hidden" name="csrf" value=(c.csrf);
                        button type="submit" { "Rotate the result-webhook secret" }
                    }
                }
            }
            section aria-labelledby="runs-h" {
                h2 id="runs-h" { "Runs" }
                @if d.runs.is_empty() {
                    p.empty id="runs-empty" { "No runs yet. Press “Read now” to sign in to the bank and read the movements." }
                } @else {
                    ul.rows id="runs" {
                        @for r in &d.runs {
                            @let (l, text) = super::pages::outcome_label(&r.outcome);
                            li data-run-id=(r.id) {
                                span.light data-light=(l) data-outcome=(r.outcome) { (text) }
                                " " (r.kind) " · started " (time_of(Some(r.started_at), ""))
                                " · ended " (time_of(r.ended_at, "—"))
                                " · " (r.movements_read) " read, " (r.new_movements) " new"
                                @if let Some(f) = &r.failure_reason { p.meta { "Reason: " (f) } }
                            }
                        }
                    }
                }
                (pager(d, 0))
            }
            section aria-labelledby="movements-h" {
                h2 id="movements-h" { "Movements" }
                @if d.movements.is_empty() {
                    p.empty id="movements-empty" { "No movements yet. They appear after the first successful read." }
                } @else {
                    ul.rows id="movements" {
                        @for (m, matched, ignored) in &d.movements {
                            li data-movement-id=(m.id) {
                                strong.amount { (m.amount) " " (m.currency) }
                                " " (m.name.as_deref().unwrap_or("(no name)")) " · " (m.description)
                                " · " (m.received_at) " "
                                @if let Some((request, ext)) = matched {
                                    a.badge.match href={ "/app/reconciliation/" (request) } data-match="matched" { "Matched: " (ext) }
                                } @else if ignored.is_some() {
                                    span.badge.ignored data-match="ignored" { "Ignored" }
                                } @else if reconciling {
                                    span.badge.open data-match="open" { "Unmatched" }
                                }
                                div.actions {
                                    @if matched.is_none() {
                                        form.inline method="post" action={ "/app/accounts/" (id) "/movements/" (m.id) (if ignored.is_some() { "/unignore" } else { "/ignore" }) } {
                                            input type="hidden" name="csrf" value=(c.csrf);
                                            @if ignored.is_some() {
                                                button type="submit" aria-label={ "Un-ignore the movement of " (m.amount) " " (m.currency) " (back into matching)" } { "Un-ignore" }
                                            } @else {
                                                button type="submit" aria-label={ "Ignore the movement of " (m.amount) " " (m.currency) } { "Ignore" }
                                            }
                                        }
                                    }
                                    @if passthrough && m.name.is_some() {
                                        form.inline method="post" action={ "/app/accounts/" (id) "/movements/" (m.id) "/notify" } {
                                            input type="hidden" name="csrf" value=(c.csrf);
                                            button type="submit" aria-label={ "Send webhook for the movement of " (m.amount) " " (m.currency) } { "Send webhook" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                (pager(d, 1))
            }
            section aria-labelledby="deliveries-h" {
                h2 id="deliveries-h" { "Deliveries" }
                p {
                    @if d.view.dead_only {
                        "Showing dead letters only (retries exhausted). " a href={ "/app/accounts/" (id) "#deliveries-h" } { "Show all" }
                    } @else {
                        a href={ "/app/accounts/" (id) "?deliveries=dead#deliveries-h" } { "Show dead letters only" }
                    }
                }
                h3 { "Operational notifications" }
                (deliveries(c.csrf, id, "notification", &d.notifications, "notification-deliveries"))
                (pager(d, 2))
                h3 { "Result webhook" }
                (deliveries(c.csrf, id, "webhook", &d.results, "result-deliveries"))
                (pager(d, 3))
            }
            section aria-labelledby="delete-h" {
                h2 id="delete-h" { "Delete this account" }
                p { "Stops its session and deletes its movements, runs and deliveries. This cannot be undone." }
                form.card method="post" action={ "/app/accounts/" (id) "/delete" } {
                    input type="hidden" name="csrf" value=(c.csrf);
                    label for="confirmation_name" { "Type the account's name, “" (a.name) "”, to confirm" }
                    input id="confirmation_name" name="confirmation_name" type="text" required autocomplete="off" spellcheck="false"
                        aria-invalid=[o.delete_error.is_some().then_some("true")]
                        aria-describedby=[o.delete_error.is_some().then_some("err-confirmation_name")];
                    @if let Some(e) = &o.delete_error { span.field-error id="err-confirmation_name" { (e) } }
                    button.danger type="submit" { "Delete the account" }
                }
            }
        },
    )
}

/// A delivery's frozen body, indented when it is JSON (its numbers as sent).
pub(super) fn pretty(payload: &str) -> String {
    ExactJson::parse(payload).map_or_else(|| payload.to_owned(), |v| v.pretty())
}

/// "Newer" / "Older" links of list `i`.
fn pager(d: &Data, i: usize) -> Markup {
    let at = d.view.at[i];
    html! {
        @if at > 0 || d.more[i] {
            nav.pager aria-label={ "Pages of " (LISTS[i]) } {
                @if at > 0 {
                    a href=(d.view.link(d.account.id, i, (at - SHOWN).max(0))) rel="prev" { "← Newer" }
                }
                " Showing " (at + 1) "–" (at + SHOWN) " "
                @if d.more[i] {
                    a href=(d.view.link(d.account.id, i, at + SHOWN)) rel="next" data-older=(LISTS[i]) { "Older →" }
                }
            }
        }
    }
}

fn deliveries(
    csrf: &str,
    account: reconbanker_store::AccountId,
    channel: &str,
    rows: &[DeliveryRow],
    list_id: &str,
) -> Markup {
    html! {
        @if rows.is_empty() {
            p.empty id={ (list_id) "-empty" } { "No deliveries. They are written when an event happens and the URL above is set." }
        } @else {
            ul.rows id=(list_id) {
                @for r in rows {
                    li data-delivery-id=(r.id) {
                        span.light data-light=(delivery_light(&r.status)) data-status=(r.status) { (r.status) }
                        " " strong { (r.event_type) } " · attempts " (r.attempts)
                        @if let Some(s) = r.last_status { " · last answer " (s) }
                        " · created " (time_of(Some(r.created_at), ""))
                        @if let Some(t) = r.delivered_at { " · delivered " (time_of(Some(t), "")) }
                        @else if r.status == "pending" { " · next try " (time_of(r.next_attempt_at, "soon")) }
                        @if let Some(e) = &r.last_error { p.meta { "Last error: " (e) } }
                        details.payload {
                            summary { "Body" }
                            pre { (pretty(&r.payload)) }
                        }
                        @if r.status != "pending" {
                            form.inline method="post" action={ "/app/accounts/" (account) "/deliveries/" (channel) "/" (r.id) "/resend" } {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" aria-label={ "Re-send the " (r.event_type) " delivery" } { "Re-send" }
                            }
                        }
                    }
                }
            }
        }
    }
}

// --- actions ---

async fn save_config(
    State(app): State<AppState>,
    who: UiUser,
    DPath(id): DPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (f, account) = match signed_for(&app, &who, &id, body).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let result = async {
        let patch: ConfigPatch = parse_json(patch_of(&f)?.as_bytes())?;
        crate::http::accounts::update_config(&app, who.user.id, account.id, patch).await
    }
    .await;
    match result {
        Ok(_) => Redirect::to(&format!("/app/accounts/{}?done=saved", account.id)).into_response(),
        Err(p) if p.status == StatusCode::BAD_REQUEST => {
            let stored = match crate::app::accounts::load_config(&app, who.user.id, account.id).await {
                Ok((s, _)) => s,
                Err(e) => return ApiError(e.into()).into_response(),
            };
            let errors = field_errors(&p);
            let outcome = Outcome {
                error: Some(format!("Not saved: {}", p.message)),
                form: Some((Shown::submitted(&stored, &f), errors)),
                ..Outcome::default()
            };
            render(&app, &who, &id, StatusCode::BAD_REQUEST, outcome, View::default()).await
        }
        Err(p) => ApiError(p).into_response(),
    }
}

async fn delete(
    State(app): State<AppState>,
    who: UiUser,
    DPath(id): DPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (f, account) = match signed_for(&app, &who, &id, body).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let typed = f.last("confirmation_name").unwrap_or("").trim();
    if typed != account.name {
        let message = if typed.is_empty() {
            "Type the account's name to delete it."
        } else {
            "That is not the account's name; nothing was deleted."
        };
        let outcome = Outcome {
            error: Some(message.to_owned()),
            delete_error: Some(message.to_owned()),
            ..Outcome::default()
        };
        return render(&app, &who, &id, StatusCode::BAD_REQUEST, outcome, View::default()).await;
    }
    match crate::app::accounts::delete(&app, who.user.id, account.id).await {
        Ok(()) => Redirect::to("/app").into_response(),
        Err(e) => ApiError(e.into()).into_response(),
    }
}

async fn rotate(
    State(app): State<AppState>,
    who: UiUser,
    DPath((id, channel)): DPath<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let account = match signed_for(&app, &who, &id, body).await {
        Ok((_, account)) => account,
        Err(r) => return *r,
    };
    let (which, ch) = match channel.as_str() {
        "notification" => ("notification", SigningChannel::Notification),
        "webhook" => ("result-webhook", SigningChannel::Result),
        _ => return ApiError(Problem::not_found("No such route")).into_response(),
    };
    match crate::http::notifications::rotate_channel(&app, who.user.id, account.id, ch).await {
        Ok(axum::Json(r)) => {
            let secret = r
                .notification_signing_secret
                .or(r.webhook_signing_secret)
                .unwrap_or_default();
            // POST/redirect/GET: the new secret rides a one-time flash to the page, so reloading
            // the page shows it no more and rotates nothing.
            let shown = serde_json::json!([which, secret, r.previous_valid_until]).to_string();
            let flash = super::flash::put(&app, who.user.id, &rotated_purpose(account.id), &shown);
            super::session::with_cookies(
                Redirect::to(&format!("/app/accounts/{id}?done=rotated#rotated")),
                vec![flash],
            )
        }
        Err(e) => e.into_response(),
    }
}

/// A refused action: the page with the API's message and status.
async fn refused_on_page(app: &AppState, who: &UiUser, id: &str, e: ApiError) -> Response {
    let p = e.0;
    if p.status.is_client_error() && p.status != StatusCode::NOT_FOUND {
        let outcome = Outcome {
            error: Some(p.message.into_owned()),
            ..Outcome::default()
        };
        render(app, who, id, p.status, outcome, View::default()).await
    } else {
        ApiError(p).into_response()
    }
}

async fn movement_action(
    State(app): State<AppState>,
    who: UiUser,
    DPath((id, movement, action)): DPath<(String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let account = match signed_for(&app, &who, &id, body).await {
        Ok((_, account)) => account,
        Err(r) => return *r,
    };
    let user = who.user.id;
    let result = match action.as_str() {
        "ignore" => crate::http::review::set_ignored(&app, user, &account, &movement, true)
            .await
            .map(|_| "ignored"),
        "unignore" => crate::http::review::set_ignored(&app, user, &account, &movement, false)
            .await
            .map(|_| "unignored"),
        "notify" => crate::http::passthrough::notify_as(&app, user, account.id, &movement)
            .await
            .map(|()| "notified"),
        _ => Err(ApiError(Problem::not_found("No such route"))),
    };
    match result {
        Ok(done) => Redirect::to(&format!("/app/accounts/{}?done={done}#movements-h", account.id)).into_response(),
        Err(e) => refused_on_page(&app, &who, &id, e).await,
    }
}

async fn poll_now(
    State(app): State<AppState>,
    who: UiUser,
    DPath(id): DPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let account = match signed_for(&app, &who, &id, body).await {
        Ok((_, account)) => account,
        Err(r) => return *r,
    };
    match crate::http::conciliation::poll_now_as(&app, &who.user, account.id).await {
        Ok(()) => Redirect::to(&format!("/app/accounts/{}?done=polled", account.id)).into_response(),
        Err(e) => refused_on_page(&app, &who, &id, e).await,
    }
}

async fn resend(
    State(app): State<AppState>,
    who: UiUser,
    DPath((id, channel, delivery)): DPath<(String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let account = match signed_for(&app, &who, &id, body).await {
        Ok((_, account)) => account,
        Err(r) => return *r,
    };
    let channel = match channel.as_str() {
        "notification" => CHANNEL_NOTIFICATION,
        "webhook" => CHANNEL_RESULT,
        _ => return ApiError(Problem::not_found("No such route")).into_response(),
    };
    let not_found = || ApiError(Problem::not_found("Delivery not found")).into_response();
    let Ok(delivery) = delivery.parse::<DeliveryId>() else {
        return not_found();
    };
    match app
        .store
        .resend_channel_delivery(who.user.id, account.id, channel, delivery, reconbanker_store::now())
        .await
    {
        Ok(Some(_)) => {
            app.hub.wake_outbox();
            Redirect::to(&format!("/app/accounts/{}?done=resent#deliveries-h", account.id)).into_response()
        }
        Ok(None) => not_found(),
        Err(e) => ApiError(e.into()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Form {
        Form(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    /// The patch a form makes, as a JSON value.
    fn patch_value(pairs: &[(&str, &str)]) -> Value {
        serde_json::from_str(&patch_of(&form(pairs)).expect("ok")).expect("json")
    }

    #[test]
    fn only_the_fields_the_form_carries_are_patched() {
        let p = patch_value(&[("csrf", "x"), ("retry_limit", "5")]);
        assert_eq!(p, json!({"retry_limit": 5}));
        let p = patch_value(&[
            ("webhook_url", " "),
            ("notify_on_expired", "false"),
            ("notify_on_expired", "true"),
            ("silent_ingestion", "false"),
            ("notification_events", ""),
            ("notification_events", "login_failed"),
            ("bank_password", ""),
            ("auth_token", "tok"),
            ("webhook_auth_token", "old"),
            ("clear_webhook_auth_token", "on"),
            ("polling_body", "{\"a\": 1}"),
            ("webhook_extra_fields", ""),
        ]);
        assert_eq!(
            p,
            json!({
                "webhook_url": null, "notify_on_expired": true, "silent_ingestion": false,
                "notification_events": ["login_failed"], "auth_token": "tok", "webhook_auth_token": null,
                "polling_body": {"a": 1}, "webhook_extra_fields": null,
            })
        );
        assert_eq!(
            patch_value(&[("polling_body", "raw text")]),
            json!({"polling_body": "raw text"})
        );
        assert_eq!(
            patch_value(&[("notification_events", "")]),
            json!({"notification_events": []})
        );
    }

    #[test]
    fn numbers_typed_in_the_json_fields_keep_every_digit() {
        let p = patch_of(&form(&[
            ("polling_body", "{\"min\": 12345678901234567890.10}"),
            ("webhook_extra_fields", "{\n  \"fee\": 1234567890123456.78\n}"),
        ]))
        .expect("ok");
        assert_eq!(
            p,
            r#"{"polling_body":{"min":12345678901234567890.10},"webhook_extra_fields":{"fee":1234567890123456.78}}"#
        );
    }

    #[test]
    fn unreadable_values_name_their_field() {
        for (pairs, field) in [
            (vec![("retry_limit", "many")], "retry_limit"),
            (vec![("retry_limit", "-1")], "retry_limit"),
            (vec![("webhook_extra_fields", "[1]")], "webhook_extra_fields"),
            (vec![("polling_body", "{oops")], "polling_body"),
        ] {
            let p = patch_of(&form(&pairs)).expect_err("refused");
            assert_eq!(field_errors(&p).keys().collect::<Vec<_>>(), vec![field]);
        }
        let p = Problem::field("notification_events[1]", "unknown variant");
        assert!(field_errors(&p).contains_key("notification_events"));
    }
}
