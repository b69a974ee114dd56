//! Push to clients (SPEC §7 `/v1/events`, §9 realtime): the event streams and the tickets that
//! open the browser's ones.
//!
//! - `GET /v1/events` (API key, `status:read`): Server-Sent Events of the key's accounts.
//! - `POST /realtime/ticket` (dashboard JWT): a single-use ticket, valid 30 s, for the two routes
//!   a browser cannot send a Bearer header to.
//! - `GET /realtime` (WebSocket, `Sec-WebSocket-Protocol: realtime.v1, <ticket>`): the user's
//!   events, server → client only, one JSON object per text message, no resume.
//! - `GET /realtime/events` (JWT or `?ticket=`): the user's events as Server-Sent Events.
//!
//! Both SSE routes share [`event_stream`]: events carry their log `seq` as `id:`, and a client
//! that reconnects with `Last-Event-ID` (or `?last_event_id=`, for a new `EventSource` opened with
//! a fresh ticket) first gets everything it missed from the event log, then the live events.
//!
//! The log, not the bus, is what a stream sends: a live event on the bus only says "the log has
//! grown", and the stream then reads the log after the last `seq` it sent. Events are logged
//! before they are published, so the read finds them; and two events published out of log order
//! (two tasks racing between their commit and their publish) are still sent in log order, with
//! none skipped. A receiver that lags behind the bus catches up from the log the same way.
//! Memory per stream is bounded: the bus receiver (the bus's fixed capacity) and one page of log.
//!
//! Long-lived streams re-check their credential every minute (a revoked API key, a logged-out or
//! expired dashboard token ends them), and all of them end when [`Realtime::close`] is called at
//! shutdown, so a graceful shutdown does not wait for clients to hang up.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, SEC_WEBSOCKET_PROTOCOL};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use rand::RngCore;
use reconbanker_store::{AccountId, TokenId, UserId};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use super::auth::{ApiKeyPrincipal, DashboardUser};
use super::error::{ApiError, Problem, V1Error};
use crate::events::Event;
use crate::keys::Scope;
use crate::AppState;

/// The subprotocol of the realtime WebSocket.
pub const SUBPROTOCOL: &str = "realtime.v1";
/// How long a ticket can be redeemed after it was issued.
pub const TICKET_TTL: Duration = Duration::from_secs(30);
/// Outstanding tickets per user; issuing one more forgets that user's oldest.
const TICKETS_PER_USER: usize = 16;
/// SSE keep-alive comment interval (SPEC §7).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// WebSocket ping interval (SPEC §9).
pub const PING_INTERVAL: Duration = Duration::from_secs(30);
/// How often an open stream re-checks that its credential is still good.
const REVALIDATE: Duration = Duration::from_secs(60);
/// Events read from the log at a time when catching up.
const PAGE: i64 = 500;
/// A WebSocket write that takes longer than this means the client is not reading: drop it.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Clients send nothing but control frames; anything larger is refused by the socket itself.
const MAX_CLIENT_MESSAGE: usize = 4096;

// --- WebSocket close codes (RFC 6455 §7.4.1) ---
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TRY_AGAIN_LATER: u16 = 1013;

/// The realtime surface's shared state: the ticket store and the shutdown signal of every
/// open stream. Cheap to clone.
#[derive(Clone, Default)]
pub struct Realtime {
    tickets: Arc<Tickets>,
    closing: CancellationToken,
}

impl Realtime {
    pub fn tickets(&self) -> &Tickets {
        &self.tickets
    }

    /// Ends every open stream and socket (call when shutdown begins).
    pub fn close(&self) {
        self.closing.cancel();
    }

    /// Redeems a ticket: single use, unexpired, and the dashboard session that asked for it
    /// still live.
    async fn redeem(&self, app: &AppState, ticket: &str) -> Result<Session, Problem> {
        let invalid = || Problem::unauthorized("Invalid, expired or already used ticket");
        let session = self.tickets.redeem(ticket).ok_or_else(invalid)?;
        if !session.is_live(app).await? {
            return Err(invalid());
        }
        Ok(session)
    }
}

/// A dashboard login (the JWT behind a request or a ticket), re-checkable while a stream is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    pub user: UserId,
    pub jti: TokenId,
    /// The token's expiry (seconds since the epoch).
    pub exp: i64,
}

impl Session {
    fn of(user: &DashboardUser) -> Self {
        Self {
            user: user.user.id,
            jti: user.claims.jti,
            exp: user.claims.exp,
        }
    }

    /// Not expired and not revoked (logout).
    async fn is_live(&self, app: &AppState) -> Result<bool, Problem> {
        if self.exp <= chrono::Utc::now().timestamp() {
            return Ok(false);
        }
        Ok(app.store.session_user(self.user, self.jti).await?.is_some())
    }
}

/// Single-use tickets in memory, stored by their SHA-256 (the ticket itself is a credential).
/// Expired ones are swept whenever one is issued, and each user has a few at most, so the map
/// stays small. Scale-out note: a ticket is only good on the instance that issued it.
#[derive(Default)]
pub struct Tickets {
    live: Mutex<HashMap<[u8; 32], Issued>>,
}

struct Issued {
    session: Session,
    expires: Instant,
}

fn ticket_hash(ticket: &str) -> [u8; 32] {
    Sha256::digest(ticket.as_bytes()).into()
}

impl Tickets {
    /// A new ticket for `session`: 32 random bytes, URL-safe base64 (a valid subprotocol token).
    pub fn issue(&self, session: Session) -> String {
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let ticket = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|_, t| t.expires > now);
        let mut mine: Vec<([u8; 32], Instant)> = live
            .iter()
            .filter(|(_, t)| t.session.user == session.user)
            .map(|(k, t)| (*k, t.expires))
            .collect();
        if mine.len() >= TICKETS_PER_USER {
            mine.sort_by_key(|(_, expires)| *expires);
            for (k, _) in &mine[..=mine.len() - TICKETS_PER_USER] {
                live.remove(k);
            }
        }
        live.insert(
            ticket_hash(&ticket),
            Issued {
                session,
                expires: now + TICKET_TTL,
            },
        );
        ticket
    }

    /// Consumes a ticket; `None` when unknown, expired or already used.
    pub fn redeem(&self, ticket: &str) -> Option<Session> {
        let issued = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ticket_hash(ticket))?;
        (issued.expires > Instant::now()).then_some(issued.session)
    }

    /// Tickets held (expired ones included until the next sweep).
    pub fn len(&self) -> usize {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// --- what a stream may carry, and how it stays authorized ---

/// Whose events a stream carries: one user's, optionally only some of their accounts.
#[derive(Clone, Debug)]
struct Audience {
    user: UserId,
    accounts: Option<Vec<AccountId>>,
}

impl Audience {
    fn admits(&self, e: &Event) -> bool {
        e.user_id == self.user && self.accounts.as_ref().is_none_or(|ids| ids.contains(&e.account_id))
    }
}

/// The credential a stream was opened with, re-checked every [`REVALIDATE`].
enum Credential {
    Session(Session),
    /// The presented API key (kept to re-authenticate it; never logged).
    Key(String),
}

impl Credential {
    async fn still_valid(&self, app: &AppState) -> bool {
        let checked = match self {
            Credential::Session(s) => s.is_live(app).await,
            Credential::Key(text) => app
                .keys
                .authenticate(text)
                .await
                .map(|r| r.is_ok_and(|k| k.has_scope(Scope::StatusRead)))
                .map_err(Problem::from),
        };
        // A database hiccup does not end a stream; the next check decides.
        checked.unwrap_or(true)
    }
}

fn revalidation_timer() -> Interval {
    let mut t = interval_at(Instant::now() + REVALIDATE, REVALIDATE);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

// --- the shared SSE stream: log first, then live ---

/// One stream's position: the log is the source, the bus the doorbell.
struct Feed {
    app: AppState,
    audience: Audience,
    credential: Credential,
    live: Receiver<Arc<Event>>,
    closing: CancellationToken,
    /// The last `seq` sent (or resumed from). `None` until the first poll when the client did not
    /// resume: the stream then starts at the log's head.
    cursor: Option<i64>,
    /// Whether the log may hold events after `cursor` that were not sent yet.
    behind: bool,
    page: VecDeque<Event>,
    revalidate: Interval,
}

impl Feed {
    /// The next event to send; `None` ends the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.page.pop_front() {
                self.cursor = Some(e.seq);
                return Some(e);
            }
            if self.cursor.is_none() {
                // Not resuming: start at the log's head (read after subscribing to the bus, so
                // anything committed later is announced and read from the log in order).
                match self.app.store.last_event_seq().await {
                    Ok(head) => self.cursor = Some(head),
                    Err(e) => {
                        tracing::warn!(error = %e, "event stream could not read the event log; closing it");
                        return None;
                    }
                }
            }
            if self.behind {
                let after = self.cursor.unwrap_or(0);
                let rows = match self
                    .app
                    .store
                    .list_events(self.audience.user, self.audience.accounts.as_deref(), after, PAGE)
                    .await
                {
                    Ok(rows) => rows,
                    Err(e) => {
                        // The client reconnects with Last-Event-ID and loses nothing.
                        tracing::warn!(error = %e, "event stream could not read the event log; closing it");
                        return None;
                    }
                };
                self.behind = rows.len() as i64 == PAGE;
                self.page.extend(rows.into_iter().map(Event::from));
                continue;
            }
            tokio::select! {
                _ = self.closing.cancelled() => return None,
                _ = self.revalidate.tick() => {
                    if !self.credential.still_valid(&self.app).await {
                        return None;
                    }
                }
                received = self.live.recv() => match received {
                    Ok(e) if self.audience.admits(&e) => match self.cursor {
                        Some(c) if e.seq <= c => {}
                        Some(_) => self.behind = true,
                        None => {
                            self.cursor = Some(e.seq - 1);
                            self.behind = true;
                        }
                    },
                    Ok(_) => {}
                    // Missed events are in the log after the cursor. (Without a cursor yet the
                    // stream has sent nothing, and "now" just moved forward.)
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "event stream lagged behind the bus; catching up from the log");
                        self.behind = self.cursor.is_some();
                    }
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }
}

/// The SSE response shared by `/v1/events` and `/realtime/events`. The bus is subscribed here,
/// before the log is read (on the first poll), so nothing falls between the two.
async fn event_stream<T: Serialize + 'static>(
    app: &AppState,
    realtime: &Realtime,
    audience: Audience,
    credential: Credential,
    resume: Option<i64>,
    render: fn(&Event) -> T,
) -> Result<Response, Problem> {
    // Subscribed first, then positioned: an event committed after the position is read is
    // also announced on the bus. Positioned before the response goes out: an event the client
    // causes after seeing the response headers is after the position.
    let live = app.bus.subscribe();
    let cursor = match resume {
        Some(seq) => seq,
        None => app.store.last_event_seq().await?,
    };
    let feed = Feed {
        app: app.clone(),
        audience,
        credential,
        live,
        closing: realtime.closing.clone(),
        cursor: Some(cursor),
        behind: resume.is_some(),
        page: VecDeque::new(),
        revalidate: revalidation_timer(),
    };
    let stream = futures_util::stream::unfold(feed, move |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok::<_, Infallible>(sse_event(&event, render)), feed))
    });
    let mut res = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response();
    // Reverse proxies (nginx) must not buffer the stream.
    res.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(res)
}

fn sse_event<T: Serialize>(e: &Event, render: fn(&Event) -> T) -> sse::Event {
    let data = serde_json::to_string(&render(e)).unwrap_or_else(|_| "{}".into());
    let out = sse::Event::default().id(e.seq.to_string()).data(data);
    // Kinds are SPEC §6 names; the guard only keeps a malformed one from panicking.
    if e.kind.contains(['\n', '\r']) {
        out
    } else {
        out.event(&e.kind)
    }
}

/// Where a reconnecting client resumes: `Last-Event-ID` (what `EventSource` sends), else
/// `?last_event_id=`. Empty means "not resuming".
fn resume_point(headers: &HeaderMap, query: &StreamQuery) -> Result<Option<i64>, Problem> {
    let parse = |field: &str, text: &str| -> Result<Option<i64>, Problem> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse::<u64>()
            .ok()
            .and_then(|n| i64::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| Problem::field(field, "must be the id of an event from this stream (a whole number)"))
    };
    if let Some(value) = headers.get("last-event-id") {
        let text = value.to_str().map_err(|_| {
            Problem::field(
                "Last-Event-ID",
                "must be the id of an event from this stream (a whole number)",
            )
        })?;
        if let Some(seq) = parse("Last-Event-ID", text)? {
            return Ok(Some(seq));
        }
    }
    match &query.last_event_id {
        Some(text) => parse("last_event_id", text),
        None => Ok(None),
    }
}

/// The query parameters the stream routes read (others are ignored).
#[derive(Default)]
struct StreamQuery {
    ticket: Option<String>,
    last_event_id: Option<String>,
}

impl StreamQuery {
    fn parse(query: Option<&str>) -> Self {
        let mut out = Self::default();
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "ticket" if out.ticket.is_none() => out.ticket = Some(v.into_owned()),
                "last_event_id" if out.last_event_id.is_none() => out.last_event_id = Some(v.into_owned()),
                _ => {}
            }
        }
        out
    }
}

// --- GET /v1/events ---

/// One event of the `/v1` stream (the SSE `data:`; `id:` is its log position, `event:` its type).
#[derive(Serialize, ToSchema)]
pub struct V1EventOut {
    /// The event's id (UUID).
    pub id: String,
    /// The event's type, e.g. `assistance.requested`.
    #[serde(rename = "type")]
    pub kind: String,
    pub account_id: String,
    /// What happened, per type (e.g. `{requestId, descriptor, attempts}`).
    #[schema(value_type = Object)]
    pub data: Value,
    /// RFC 3339, UTC, milliseconds.
    pub occurred_at: String,
}

impl From<&Event> for V1EventOut {
    fn from(e: &Event) -> Self {
        Self {
            id: e.id.to_string(),
            kind: e.kind.clone(),
            account_id: e.account_id.to_string(),
            data: e.data.clone(),
            occurred_at: super::ts(e.occurred_at),
        }
    }
}

/// The API key as presented (the extractor already accepted it): `Authorization: Api-Key`
/// wins over `x-api-key`.
fn presented_key(headers: &HeaderMap) -> Option<String> {
    let from_auth = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .and_then(|t| t.split_once(char::is_whitespace))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("api-key"))
        .map(|(_, key)| key.trim().to_owned());
    from_auth.or_else(|| {
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(|k| k.trim().to_owned())
    })
}

/// Stream events.
///
/// Server-Sent Events of the key's accounts (all of its user's accounts when the key is not
/// restricted). Each event has `id: <position>`, `event: <type>` and `data:` a JSON
/// [`V1EventOut`]. Reconnect with `Last-Event-ID: <id>` (or `?last_event_id=<id>`) to receive
/// every event after that one first. A keep-alive comment is sent every 15 s. Requires the
/// `status:read` scope.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "External API",
    params(
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id"),
        ("last_event_id" = Option<String>, Query, description = "Resume after this event id (when the header cannot be set)"),
    ),
    responses(
        (status = 200, description = "An event stream (`text/event-stream`); each `data:` is a V1EventOut", content_type = "text/event-stream", body = V1EventOut),
        (status = 400, description = "`VALIDATION_ERROR`: malformed Last-Event-ID", body = super::v1::V1ErrorBody),
        (status = 401, description = "`UNAUTHORIZED` (no key) or `INVALID_API_KEY`", body = super::v1::V1ErrorBody),
        (status = 403, description = "`FORBIDDEN`: the key lacks `status:read`", body = super::v1::V1ErrorBody),
        (status = 429, description = "`RATE_LIMITED`", body = super::v1::V1ErrorBody),
    ),
    security(("ApiKeyAuthorization" = []), ("ApiKeyHeader" = []))
)]
pub async fn v1_events(
    State(app): State<AppState>,
    principal: ApiKeyPrincipal,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Result<Response, V1Error> {
    if !principal.key.has_scope(Scope::StatusRead) {
        return Err(Problem::forbidden(format!("The API key lacks the {} scope", Scope::StatusRead.as_str())).into());
    }
    let resume = resume_point(&headers, &StreamQuery::parse(uri.query()))?;
    let audience = Audience {
        user: principal.key.user_id,
        accounts: principal.key.account_ids.clone(),
    };
    let credential = match presented_key(&headers) {
        Some(text) => Credential::Key(text),
        None => return Err(Problem::unauthorized("No API key was sent").into()),
    };
    Ok(event_stream(&app, &app.realtime, audience, credential, resume, |e| {
        V1EventOut::from(e)
    })
    .await?)
}

// --- the dashboard's realtime surface ---

/// One realtime event (a WebSocket text message, or the `data:` of `/realtime/events`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RealtimeEventOut {
    #[serde(rename = "type")]
    pub kind: String,
    pub user_id: String,
    pub account_id: String,
    pub data: Value,
    pub occurred_at: String,
}

impl From<&Event> for RealtimeEventOut {
    fn from(e: &Event) -> Self {
        Self {
            kind: e.kind.clone(),
            user_id: e.user_id.to_string(),
            account_id: e.account_id.to_string(),
            data: e.data.clone(),
            occurred_at: super::ts(e.occurred_at),
        }
    }
}

#[derive(Serialize)]
pub struct TicketOut {
    pub ticket: String,
    pub ttl_seconds: u64,
}

/// `POST /realtime/ticket`: a single-use ticket for `/realtime` or `/realtime/events`.
pub async fn issue_ticket(State(app): State<AppState>, user: DashboardUser) -> Response {
    let realtime = &app.realtime;
    let ticket = realtime.tickets.issue(Session::of(&user));
    (
        [(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(TicketOut {
            ticket,
            ttl_seconds: TICKET_TTL.as_secs(),
        }),
    )
        .into_response()
}

/// `GET /realtime/events`: the user's events as SSE, authenticated by a Bearer JWT, or else by a
/// `?ticket=` (for `EventSource`, which cannot send headers). Resume as on `/v1/events`.
pub async fn realtime_events(State(app): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let (mut parts, _) = request.into_parts();
    let query = StreamQuery::parse(parts.uri.query());
    let session = match &query.ticket {
        Some(ticket) if !parts.headers.contains_key(AUTHORIZATION) => app.realtime.redeem(&app, ticket).await?,
        _ => Session::of(&DashboardUser::from_request_parts(&mut parts, &app).await?),
    };
    let resume = resume_point(&parts.headers, &query)?;
    let audience = Audience {
        user: session.user,
        accounts: None,
    };
    Ok(event_stream(
        &app,
        &app.realtime,
        audience,
        Credential::Session(session),
        resume,
        |e| RealtimeEventOut::from(e),
    )
    .await?)
}

/// The subprotocols a WebSocket client offered (comma-separated, possibly over several lines).
fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// `GET /realtime`: the WebSocket. The ticket is checked (and consumed) before the upgrade, so
/// a refused client gets a JSON 401, never a socket.
pub async fn realtime_ws(
    State(app): State<AppState>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let offered = offered_protocols(&headers);
    let ticket = offered
        .iter()
        .find(|p| *p != SUBPROTOCOL)
        .ok_or_else(|| Problem::unauthorized("Missing ticket (send Sec-WebSocket-Protocol: realtime.v1, <ticket>)"))?;
    if !offered.iter().any(|p| p == SUBPROTOCOL) {
        return Err(Problem::validation("Sec-WebSocket-Protocol must offer realtime.v1").into());
    }
    // A request that cannot be upgraded does not spend the ticket.
    let upgrade = upgrade.map_err(|r| {
        let status = r.status();
        let code = if status == StatusCode::UPGRADE_REQUIRED {
            "UPGRADE_REQUIRED"
        } else {
            "BAD_REQUEST"
        };
        Problem::new(status, code, r.body_text())
    })?;
    let session = app.realtime.redeem(&app, ticket).await?;
    // Subscribed before the 101 goes out: an event published once the client is connected
    // reaches it.
    let live = app.bus.subscribe();
    let closing = app.realtime.closing.clone();
    Ok(upgrade
        .protocols([SUBPROTOCOL])
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| pump(socket, app, session, live, closing)))
}

/// Writes one message, or gives up on a client that does not read.
async fn send(socket: &mut WebSocket, msg: Message) -> bool {
    matches!(tokio::time::timeout(SEND_TIMEOUT, socket.send(msg)).await, Ok(Ok(())))
}

/// Forwards the user's events to the socket until either side ends it.
async fn pump(
    mut socket: WebSocket,
    app: AppState,
    session: Session,
    mut live: Receiver<Arc<Event>>,
    closing: CancellationToken,
) {
    let mut ping = interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut revalidate = revalidation_timer();
    let credential = Credential::Session(session);
    let close: Option<(u16, &'static str)> = loop {
        tokio::select! {
            _ = closing.cancelled() => break Some((CLOSE_GOING_AWAY, "server shutting down")),
            incoming = socket.recv() => match incoming {
                // The client closed (the library answers its close frame) or went away.
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break None,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Text(_) | Message::Binary(_))) => {
                    break Some((CLOSE_POLICY, "this socket is server to client only"))
                }
            },
            received = live.recv() => match received {
                Ok(e) if e.user_id == session.user => {
                    let text = serde_json::to_string(&RealtimeEventOut::from(&*e)).unwrap_or_else(|_| "{}".into());
                    if !send(&mut socket, Message::Text(text.into())).await {
                        break None;
                    }
                }
                Ok(_) => {}
                // The bus's buffer for this socket overflowed: the client reads too slowly.
                Err(RecvError::Lagged(_)) => {
                    break Some((CLOSE_TRY_AGAIN_LATER, "too slow: events were dropped; reconnect"))
                }
                Err(RecvError::Closed) => break Some((CLOSE_GOING_AWAY, "server shutting down")),
            },
            _ = ping.tick() => {
                if !send(&mut socket, Message::Ping(Default::default())).await {
                    break None;
                }
            }
            _ = revalidate.tick() => {
                if !credential.still_valid(&app).await {
                    break Some((CLOSE_POLICY, "session ended"));
                }
            }
        }
    };
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = send(&mut socket, Message::Close(Some(frame))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            user: UserId::new(),
            jti: TokenId::new(),
            exp: i64::MAX,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_ticket_is_single_use_and_expires() {
        let tickets = Tickets::default();
        let s = session();
        let t = tickets.issue(s);
        assert_eq!(t.len(), 43, "32 bytes, URL-safe base64 without padding");
        assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(tickets.redeem(&t), Some(s));
        assert_eq!(tickets.redeem(&t), None, "single use");
        assert_eq!(tickets.redeem("not-a-ticket"), None);

        let late = tickets.issue(s);
        tokio::time::advance(TICKET_TTL).await;
        assert_eq!(tickets.redeem(&late), None, "expired at its TTL");

        let stale = tickets.issue(s);
        tokio::time::advance(TICKET_TTL + Duration::from_secs(1)).await;
        let _fresh = tickets.issue(s);
        assert_eq!(tickets.len(), 1, "issuing sweeps the expired ones");
        assert_eq!(tickets.redeem(&stale), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_user_holds_a_bounded_number_of_tickets() {
        let tickets = Tickets::default();
        let s = session();
        let first = tickets.issue(s);
        tokio::time::advance(Duration::from_millis(1)).await;
        let mut last = String::new();
        for _ in 0..TICKETS_PER_USER {
            last = tickets.issue(s);
        }
        let other = tickets.issue(session());
        assert_eq!(tickets.len(), TICKETS_PER_USER + 1);
        assert_eq!(tickets.redeem(&first), None, "the oldest was forgotten");
        assert!(tickets.redeem(&last).is_some());
        assert!(tickets.redeem(&other).is_some(), "another user's are untouched");
    }

    #[test]
    fn resume_point_prefers_the_header_and_refuses_garbage() {
        let q = |s: &str| StreamQuery::parse(Some(s));
        let mut h = HeaderMap::new();
        assert_eq!(resume_point(&h, &q("")).ok(), Some(None));
        assert_eq!(resume_point(&h, &q("last_event_id=7")).ok(), Some(Some(7)));
        h.insert("last-event-id", HeaderValue::from_static(" 12 "));
        assert_eq!(resume_point(&h, &q("last_event_id=7")).ok(), Some(Some(12)));
        h.insert("last-event-id", HeaderValue::from_static(""));
        assert_eq!(resume_point(&h, &q("last_event_id=7")).ok(), Some(Some(7)));
        for bad in ["abc", "-1", "1.5", "99999999999999999999"] {
            h.insert("last-event-id", HeaderValue::from_static(bad));
            let e = resume_point(&h, &q("")).expect_err(bad);
            assert_eq!(e.code, "VALIDATION_ERROR");
        }
        assert!(resume_point(&HeaderMap::new(), &q("last_event_id=x")).is_err());
    }
}
