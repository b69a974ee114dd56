//! Issue 10: the reconciliation review screen — the requests list with its filters and the review
//! queue (`/app/reconciliation`), and one request with its candidates side by side and the
//! human actions (`/app/reconciliation/{id}`). The rules are the dashboard API's
//! (`http::review`, `reconcile::review`): this module only reads forms and renders.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use reconbanker_store::{
    AccountId, AccountRow, ConciliationDetail, ConciliationFilter, ConciliationListRow, ConciliationRequestId,
    ConciliationStatus, MovementId,
};

use super::pages::{page, Chrome};
use super::session::UiUser;
use super::{field, html as ok_html, signed_form, status_html};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::DPath;
use crate::http::review::{self as api, amount_text, received_text};
use crate::reconcile::review::{candidates, needs_review, Reviewed};
use crate::support::time::ts;
use crate::AppState;

/// How many requests the list and the queue show.
const SHOWN: i64 = 200;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/reconciliation", get(list_page))
        .route("/app/reconciliation/{id}", get(detail_page))
        .route("/app/reconciliation/{id}/resolve", post(resolve))
        .route("/app/reconciliation/{id}/reject", post(reject))
        .route("/app/reconciliation/{id}/run", post(run))
        .route("/app/reconciliation/{id}/notify", post(notify))
}

/// The length of the user's review queue (the summary's `review`, every account).
pub(super) async fn queue_len(app: &AppState, who: &UiUser) -> Result<i64, Problem> {
    let rows = app.store.conciliation_summary(who.user.id, None).await?;
    Ok(rows.iter().map(|s| s.review).sum())
}

fn chrome(who: &UiUser, review: i64) -> Chrome<'_> {
    Chrome {
        user: &who.user,
        csrf: &who.csrf,
        review: Some(review),
    }
}

fn status_label(s: &str) -> &'static str {
    match s {
        "pending" => "Pending",
        "matched" => "Matched",
        "not_found" => "Not found",
        "ambiguous" => "Ambiguous",
        "failed" => "Failed",
        "cancelled" => "Cancelled",
        "expired" => "Expired",
        _ => "Unknown",
    }
}

fn status_light(s: ConciliationStatus) -> &'static str {
    match s {
        ConciliationStatus::Matched => "running",
        ConciliationStatus::Ambiguous | ConciliationStatus::NotFound | ConciliationStatus::Pending => "starting",
        ConciliationStatus::Failed => "needs_attention",
        _ => "off",
    }
}

fn reason_text(reason: &str) -> String {
    match reason {
        "weak_name_only" => "only a weak name match — a human decides".to_owned(),
        "no_sender_name" => "the movement has no payer name — a human decides".to_owned(),
        other => other.replace('_', " "),
    }
}

// --- the list ---

/// The filters of the list form; empty values mean "all".
struct Filters {
    status: String,
    account: String,
    /// An external id, matched exactly (the API's `external_id` filter; issue 10).
    external_id: String,
    /// How many of the newest requests the list skips (paging past [`SHOWN`]; issue 10).
    offset: i64,
}

/// Past this offset the list is not paged further (the store's offsets stay small).
const MAX_OFFSET: i64 = 100_000;

impl Filters {
    fn any(&self) -> bool {
        !self.status.is_empty() || !self.account.is_empty() || !self.external_id.is_empty()
    }

    /// This list's URL at `offset`, the filters kept.
    fn link(&self, offset: i64) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("status", &self.status),
            ("account_id", &self.account),
            ("external_id", &self.external_id),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        if offset > 0 {
            q.append_pair("offset", &offset.to_string());
        }
        let q = q.finish();
        if q.is_empty() {
            "/app/reconciliation#list-h".to_owned()
        } else {
            format!("/app/reconciliation?{q}#list-h")
        }
    }
}

/// The list's answer to an account filter that names none of the user's accounts.
const NOT_AN_ACCOUNT: &str = "Pick an account from the list.";

fn filters(uri: &Uri) -> (Filters, Result<ConciliationFilter, String>) {
    let mut f = Filters {
        status: String::new(),
        account: String::new(),
        external_id: String::new(),
        offset: 0,
    };
    for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "status" => f.status = v.into_owned(),
            "account_id" => f.account = v.into_owned(),
            "external_id" => f.external_id = v.trim().to_owned(),
            // An unreadable or out-of-range offset is the first page.
            "offset" => {
                f.offset = v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (0..=MAX_OFFSET).contains(n))
                    .unwrap_or(0)
            }
            _ => {}
        }
    }
    let mut filter = ConciliationFilter::default();
    if !f.status.is_empty() {
        match ConciliationStatus::parse(&f.status) {
            Some(s) => filter.status = Some(s),
            None => return (f, Err("Pick a status from the list.".to_owned())),
        }
    }
    if !f.account.is_empty() {
        match f.account.parse::<AccountId>() {
            Ok(a) => filter.account = Some(a),
            Err(_) => return (f, Err(NOT_AN_ACCOUNT.to_owned())),
        }
    }
    if !f.external_id.is_empty() {
        if f.external_id.chars().any(char::is_control) || f.external_id.chars().count() > 200 {
            return (
                f,
                Err("An external id has at most 200 characters and no control characters.".to_owned()),
            );
        }
        filter.external_id = Some(f.external_id.clone());
    }
    (f, Ok(filter))
}

async fn list_page(State(app): State<AppState>, who: UiUser, uri: Uri) -> Response {
    match list_view(&app, &who, &uri).await {
        Ok((status, m)) => status_html(status, m),
        Err(p) => ApiError(p).into_response(),
    }
}

async fn list_view(app: &AppState, who: &UiUser, uri: &Uri) -> Result<(StatusCode, Markup), Problem> {
    let user = who.user.id;
    let (form, mut filter) = filters(uri);
    // An account that is not the user's is not in the form's list either (the JSON route's 404).
    if let Ok(ConciliationFilter {
        account: Some(account), ..
    }) = &filter
    {
        if app.store.account_for_user(user, *account).await?.is_none() {
            filter = Err(NOT_AN_ACCOUNT.to_owned());
        }
    }
    let (status, error, mut rows) = match filter {
        // One more than shown: whether there is an older page.
        Ok(f) => (
            StatusCode::OK,
            None,
            app.store.list_conciliation(user, &f, SHOWN + 1, form.offset).await?,
        ),
        Err(e) => (StatusCode::BAD_REQUEST, Some(e), Vec::new()),
    };
    let older = rows.len() as i64 > SHOWN;
    rows.truncate(SHOWN as usize);
    let mut queue = Vec::new();
    for s in [ConciliationStatus::Ambiguous, ConciliationStatus::NotFound] {
        let f = ConciliationFilter {
            status: Some(s),
            ..ConciliationFilter::default()
        };
        queue.extend(
            app.store
                .list_conciliation(user, &f, SHOWN, 0)
                .await?
                .into_iter()
                .filter(|r| needs_review(&r.request)),
        );
    }
    queue.sort_by_key(|r| std::cmp::Reverse(r.request.updated_at));
    let accounts = app.store.list_accounts(user, 500, 0).await?;
    let n = queue_len(app, who).await?;
    let c = chrome(who, n);
    let reconciling = who.user.operation_mode.as_deref() == Some("reconcile");
    Ok((
        status,
        list_markup(
            &c,
            &form,
            error.as_deref(),
            (&rows, older),
            (&queue, n),
            &accounts,
            reconciling,
        ),
    ))
}

fn request_item(r: &ConciliationListRow) -> Markup {
    let q = &r.request;
    html! {
        li.account data-request-id=(q.id) {
            div.account-head {
                h2 { a href={ "/app/reconciliation/" (q.id) } { (q.external_id) } }
                span.bank { (q.amount) " " (q.currency) }
                span.light data-light=(status_light(q.status)) data-status=(q.status.as_str()) { (status_label(q.status.as_str())) }
            }
            p.meta {
                "From " (q.sender_name) " · " (r.account_name) " (" (r.bank_code) ")"
                @if let Some(reason) = &q.reason { " · " (reason_text(reason)) }
                " · Updated " time datetime=(ts(q.updated_at)) { (ts(q.updated_at)) }
            }
        }
    }
}

fn list_markup(
    c: &Chrome<'_>,
    form: &Filters,
    error: Option<&str>,
    (rows, older): (&[ConciliationListRow], bool),
    (queue, queued): (&[ConciliationListRow], i64),
    accounts: &[AccountRow],
    reconciling: bool,
) -> Markup {
    page(
        "Reconciliation",
        Some(c),
        &[],
        html! {
            @if !reconciling {
                p.notice role="status" {
                    "Requests are decided in the reconcile operation mode only. "
                    a href="/app/settings" { "Choose it in Settings" } "."
                }
            }
            section aria-labelledby="queue-h" {
                h2 id="queue-h" { "To review " span.badge { (queue.len()) } }
                @if queue.is_empty() {
                    p.empty id="queue-empty" {
                        "Nothing to review. Requests the matcher cannot decide alone — several equally good "
                        "movements, or only a weak name match — appear here for you to pick the right one."
                    }
                } @else {
                    ul.accounts id="queue" { @for r in queue { (request_item(r)) } }
                    @if queued > queue.len() as i64 {
                        p.meta id="queue-more" {
                            "The newest " (queue.len()) " of " (queued) " are shown here; the list below "
                            "pages through them all (filter it by status)."
                        }
                    }
                }
            }
            section aria-labelledby="list-h" {
                h2 id="list-h" { "Requests" }
                form.filters method="get" action="/app/reconciliation" {
                    label for="f-status" { "Status" }
                    select id="f-status" name="status" {
                        option value="" { "All" }
                        @for s in ConciliationStatus::ALL {
                            option value=(s.as_str()) selected[form.status == s.as_str()] { (status_label(s.as_str())) }
                        }
                    }
                    label for="f-account" { "Account" }
                    select id="f-account" name="account_id" {
                        option value="" { "All" }
                        @for a in accounts {
                            @let id = a.id.to_string();
                            option value=(id) selected[form.account == id] { (a.name) " (" (a.bank_code) ")" }
                        }
                    }
                    label for="f-external" { "External id" }
                    input id="f-external" name="external_id" type="search" value=(form.external_id)
                        maxlength="200" spellcheck="false" autocomplete="off" aria-describedby="f-external-hint";
                    span.hint id="f-external-hint" { "The order's id in your shop, exactly." }
                    button type="submit" { "Filter" }
                }
                @if let Some(e) = error {
                    p.error role="alert" id="form-error" { (e) }
                } @else if rows.is_empty() {
                    p.empty id="list-empty" {
                        @if accounts.is_empty() {
                            "No requests yet. " a href="/app" { "Add a bank account" }
                            " and give it your pending-orders endpoint: each order it lists becomes a request here."
                        } @else if form.offset > 0 {
                            "No more requests. " a href=(form.link(0)) { "Back to the newest" } "."
                        } @else if form.any() {
                            "No request matches these filters. " a href="/app/reconciliation" { "Show all" } "."
                        } @else {
                            "No requests yet. They are registered from your accounts' pending-orders endpoint "
                            "when it is polled."
                        }
                    }
                } @else {
                    ul.accounts id="requests" { @for r in rows { (request_item(r)) } }
                    @if form.offset > 0 || older {
                        (pager(form, rows.len(), older))
                    }
                }
            }
        },
    )
}

/// "← Newer" / "Older →" around a page of the list, and which rows it shows.
fn pager(form: &Filters, shown: usize, older: bool) -> Markup {
    let first = form.offset + 1;
    let last = form.offset + shown as i64;
    html! {
        nav.pager aria-label="Pages of requests" {
            @if form.offset > 0 {
                a href=(form.link((form.offset - SHOWN).max(0))) rel="prev" { "← Newer" }
            }
            span { "Requests " (first) "–" (last) }
            @if older && form.offset + SHOWN <= MAX_OFFSET {
                a href=(form.link(form.offset + SHOWN)) rel="next" { "Older →" }
            }
        }
    }
}

// --- one request ---

fn not_found_page() -> Response {
    ApiError(Problem::not_found("Request not found")).into_response()
}

/// The user's request in detail; `None` for a malformed, unknown or foreign id.
async fn detail_of(app: &AppState, who: &UiUser, id: &str) -> Result<Option<ConciliationDetail>, Problem> {
    let Ok(id) = id.parse::<ConciliationRequestId>() else {
        return Ok(None);
    };
    Ok(app.store.conciliation_detail(who.user.id, id).await?)
}

async fn detail_page(State(app): State<AppState>, who: UiUser, DPath(id): DPath<String>, uri: Uri) -> Response {
    let done = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "done")
        .map(|(_, v)| v.into_owned());
    let notice = match done.as_deref() {
        Some("resolved") => Some("Matched by hand. The result webhook is on its way."),
        Some("rejected") => Some("Candidates ruled out: the request is not found."),
        Some("run") => Some("Queued: the matcher evaluates the request again."),
        Some("notified") => Some("The result webhook is queued again."),
        _ => None,
    };
    detail_response(&app, &who, &id, StatusCode::OK, notice, None).await
}

async fn detail_response(
    app: &AppState,
    who: &UiUser,
    id: &str,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
) -> Response {
    let d = match detail_of(app, who, id).await {
        Ok(Some(d)) => d,
        Ok(None) => return not_found_page(),
        Err(p) => return ApiError(p).into_response(),
    };
    let c = match queue_len(app, who).await {
        Ok(n) => chrome(who, n),
        Err(p) => return ApiError(p).into_response(),
    };
    let reconciling = who.user.operation_mode.as_deref() == Some("reconcile");
    let m = detail_markup(&c, &d, reconciling, notice, error);
    if status == StatusCode::OK {
        ok_html(m)
    } else {
        status_html(status, m)
    }
}

fn verdict_text(c: &Reviewed) -> String {
    match c.verdict {
        "chosen" => "Chosen: this movement settled the request.".to_owned(),
        "alternative" => "A strong match, but not the only one: pick it if it is the right payment.".to_owned(),
        "weak" => "Only a weak name match: pick it if it is the right payment.".to_owned(),
        "no_sender_name" => "The bank gave no payer name to compare: pick it if it is the right payment.".to_owned(),
        "name_too_different" => "Not chosen: the payer's name is too different.".to_owned(),
        "taken" => match &c.taken_by {
            Some((_, ext)) => format!("Not available: it settled request {ext}."),
            None => "Not available: it settled another request.".to_owned(),
        },
        "ignored" => "Not chosen: the movement is ignored.".to_owned(),
        "rejected" => "Ruled out by a human for this request.".to_owned(),
        "outside_window" => "Not chosen: received outside the request's time window.".to_owned(),
        "received_at_unparseable" => "Not chosen: the bank's date did not parse.".to_owned(),
        "not_a_credit" => "Not chosen: money going out, not coming in.".to_owned(),
        other => format!("Not chosen: {}.", other.replace('_', " ")),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn candidate_card(c: &Reviewed, csrf: &str, request: ConciliationRequestId, can_pick: bool) -> Markup {
    let m = &c.movement;
    let pickable = can_pick && !matches!(c.verdict, "chosen" | "taken" | "ignored");
    html! {
        li.candidate data-movement-id=(m.id) data-verdict=(c.verdict) {
            p.amount { strong { (amount_text(&m.amount)) " " (m.currency) } }
            dl {
                dt { "Payer" } dd { (m.name.as_deref().unwrap_or("—")) }
                dt { "Description" } dd { (m.description) }
                dt { "Received" } dd { (received_text(m.received_at_ms, &m.received_at)) }
                dt { "Name score" } dd { (format!("{:.3}", f64::from(c.checks.name.score) / 1000.0)) }
                dt { "Reference" } dd { (yes_no(c.checks.reference)) }
                dt { "In window" } dd { (yes_no(c.checks.window)) }
            }
            p.verdict { (verdict_text(c)) }
            @if pickable {
                form.inline method="post" action={ "/app/reconciliation/" (request) "/resolve" } {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="movement_id" value=(m.id);
                    button type="submit" aria-label={ "Match to this movement: " (m.name.as_deref().unwrap_or("no name")) " received " (received_text(m.received_at_ms, &m.received_at)) } {
                        "Match to this movement"
                    }
                }
            }
        }
    }
}

fn detail_markup(
    c: &Chrome<'_>,
    d: &ConciliationDetail,
    reconciling: bool,
    notice: Option<&str>,
    error: Option<&str>,
) -> Markup {
    let r = &d.request.request;
    let view = candidates(d);
    let open = r.status.is_open();
    let title = format!("Request {}", r.external_id);
    page(
        &title,
        Some(c),
        &[],
        html! {
            p { a href="/app/reconciliation" { "← All requests" } }
            @if let Some(n) = notice { p.notice role="status" id="notice" { (n) } }
            @if let Some(e) = error { p.error role="alert" id="form-error" { (e) } }
            dl.request id="request" {
                dt { "Status" }
                dd { span.light data-light=(status_light(r.status)) data-status=(r.status.as_str()) { (status_label(r.status.as_str())) }
                    @if let Some(reason) = &r.reason { " — " (reason_text(reason)) } }
                dt { "Amount" } dd { (r.amount) " " (r.currency) }
                dt { "Payer (order)" } dd { (r.sender_name) }
                dt { "Reference" } dd { (r.reference.as_deref().unwrap_or("—")) }
                dt { "Account" } dd { (d.request.account_name) " (" (d.request.bank_code) ")" }
                dt { "Registered" } dd { (ts(r.registered_at)) }
                dt { "Expires" } dd { (ts(r.expires_at)) }
            }
            @if let Some(m) = &d.matched {
                p id="matched" { "Matched " @if m.matched_by == "manual" { "by hand" } @else { "by the matcher" }
                    " at " (ts(m.matched_at)) "." }
            }
            @if !reconciling {
                p.notice role="status" {
                    "Requests are decided in the reconcile operation mode only. "
                    a href="/app/settings" { "Choose it in Settings" } "."
                }
            }
            section aria-labelledby="cand-h" {
                h2 id="cand-h" { "Candidates" }
                @if view.is_empty() {
                    p.empty id="candidates-empty" {
                        "No movement of this amount and currency near the request's dates. "
                        "Read the account again, or wait for the payment to arrive."
                    }
                } @else {
                    ul.candidates id="candidates" {
                        @for cand in &view { (candidate_card(cand, c.csrf, r.id, open && reconciling)) }
                    }
                }
            }
            @if reconciling {
                section aria-labelledby="act-h" {
                    h2 id="act-h" { "Actions" }
                    div.actions {
                        @if open {
                            form.inline method="post" action={ "/app/reconciliation/" (r.id) "/reject" } {
                                input type="hidden" name="csrf" value=(c.csrf);
                                button type="submit" { "None of these: reject the candidates" }
                            }
                            form.inline method="post" action={ "/app/reconciliation/" (r.id) "/run" } {
                                input type="hidden" name="csrf" value=(c.csrf);
                                button type="submit" { "Run the matcher again" }
                            }
                        }
                        form.inline method="post" action={ "/app/reconciliation/" (r.id) "/notify" } {
                            input type="hidden" name="csrf" value=(c.csrf);
                            button type="submit" { "Re-send the result webhook" }
                        }
                    }
                }
            }
            // issue 10: the request's result deliveries (oldest first), with the bodies sent.
            section aria-labelledby="del-h" {
                h2 id="del-h" { "Result webhook" }
                @if d.deliveries.is_empty() {
                    p.empty id="deliveries-empty" {
                        "Nothing sent yet: the result webhook goes out when the request is matched or "
                        "ambiguous (or expires, when the account asks for it)."
                    }
                } @else {
                    ul.rows id="deliveries" {
                        @for r in &d.deliveries {
                            li data-delivery-id=(r.id) {
                                span.light data-light=(super::account::delivery_light(&r.status)) data-status=(r.status) { (r.status) }
                                " " strong { (r.event_type) } " · attempts " (r.attempts)
                                @if let Some(s) = r.last_status { " · last answer " (s) }
                                " · created " (super::account::time_of(Some(r.created_at), ""))
                                @if let Some(e) = &r.last_error { p.meta { "Last error: " (e) } }
                                details.payload {
                                    summary { "Body" }
                                    pre { (super::account::pretty(&r.payload)) }
                                }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="att-h" {
                h2 id="att-h" { "Attempts" }
                @if d.attempts.is_empty() {
                    p.empty { "The matcher has not evaluated this request yet." }
                } @else {
                    ol.attempts {
                        @for a in &d.attempts {
                            li { (ts(a.created_at)) " · " (a.result.replace('_', " "))
                                @if let Some(reason) = &a.reason { " (" (reason_text(reason)) ")" }
                                " · by " (a.trigger)
                                // issue 10: what the attempt recorded about its candidates.
                                (recorded_candidates(&a.candidates)) }
                        }
                    }
                }
            }
        },
    )
}

/// An attempt's recorded candidates (the JSON it stored: the chosen movement's explanation, or
/// the candidates it weighed), folded under "Candidates recorded (N)"; nothing when none.
fn recorded_candidates(json: &str) -> Markup {
    let items = match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Array(items)) if !items.is_empty() => items,
        _ => return html! {},
    };
    let text = serde_json::to_string_pretty(&items).unwrap_or_default();
    html! {
        details.payload.recorded {
            summary { "Candidates recorded (" (items.len()) ")" }
            pre { code { (text) } }
        }
    }
}

// --- actions (POST → redirect back; a refusal renders the page with its message) ---

/// What a POST asks for.
enum Act {
    Resolve,
    Reject,
    Run,
    Notify,
}

async fn act(
    app: &AppState,
    who: &UiUser,
    id: &str,
    f: &HashMap<String, String>,
    what: Act,
) -> Result<&'static str, ApiError> {
    // A malformed id is as unknown as another user's (404).
    let id = api::request_id(id)?;
    match what {
        Act::Resolve => {
            let movement = field(f, "movement_id")
                .parse::<MovementId>()
                .map_err(|_| Problem::field("movement_id", "must name a candidate movement"))?;
            api::resolve_as(app, &who.user, id, Ok(Some(movement))).await?;
            Ok("resolved")
        }
        Act::Reject => {
            api::resolve_as(app, &who.user, id, Ok(None)).await?;
            Ok("rejected")
        }
        Act::Run => {
            api::run_as(app, &who.user, id).await?;
            Ok("run")
        }
        Act::Notify => {
            api::notify_as(app, &who.user, id).await?;
            Ok("notified")
        }
    }
}

async fn action(app: AppState, who: UiUser, id: String, body: Result<Bytes, BytesRejection>, what: Act) -> Response {
    let f = match signed_form(&who, body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    match act(&app, &who, &id, &f, what).await {
        Ok(done) => Redirect::to(&format!("/app/reconciliation/{id}?done={done}")).into_response(),
        Err(ApiError(p)) if p.status == StatusCode::NOT_FOUND && p.message == "Request not found" => not_found_page(),
        Err(ApiError(p)) if p.status.is_client_error() => {
            detail_response(&app, &who, &id, p.status, None, Some(&p.message)).await
        }
        Err(e) => e.into_response(),
    }
}

async fn resolve(
    State(app): State<AppState>,
    who: UiUser,
    DPath(id): DPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    action(app, who, id, body, Act::Resolve).await
}

async fn reject(
    State(app): State<AppState>,
    who: UiUser,
    DPath(id): DPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    action(app, who, id, body, Act::Reject).await
}

async fn run(
    State(app): State<AppState>,
    who: UiUser,
    DPath(id): DPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    action(app, who, id, body, Act::Run).await
}

async fn notify(
    State(app): State<AppState>,
    who: UiUser,
    DPath(id): DPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    action(app, who, id, body, Act::Notify).await
}
