//! The dashboard's realtime surface (docs/product.md §9):
//!
//! - `POST /realtime/ticket` (dashboard JWT): a single-use ticket, valid 30 s, for the two routes
//!   a browser cannot send a Bearer header to.
//! - `GET /realtime` (WebSocket, `Sec-WebSocket-Protocol: realtime.v1, <ticket>`): the user's
//!   events, server → client only, one JSON object per text message, no resume. A client that
//!   reads too slowly is closed with 1013 and reconnects (the socket does not replay the log).
//! - `GET /realtime/events` (JWT or `?ticket=`): the user's events as Server-Sent Events, with
//!   `Last-Event-ID` resume (see [`super::sse`]).
//!
//! Every stream re-checks its login every minute and ends when [`crate::AppInner`]'s
//! `streams_closing` is cancelled at shutdown, so a graceful shutdown does not wait for clients.

use super::extract::NoBody;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, SEC_WEBSOCKET_PROTOCOL};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use super::auth::DashboardUser;
use super::error::{ApiError, Problem};
use super::openapi::ApiErrorBody;
use super::sse::{event_stream, resume_point, SessionCredential, StreamQuery};
use crate::auth::tickets::{DashboardSession, TICKET_TTL};
use crate::push::events::{Event, RecvError, Subscriber};
use crate::push::feed::{Audience, Credential, Recheck};
use crate::AppState;

/// The subprotocol of the realtime WebSocket.
pub const SUBPROTOCOL: &str = "realtime.v1";
/// WebSocket ping interval (docs/product.md §9).
pub const PING_INTERVAL: Duration = Duration::from_secs(30);
/// A WebSocket write that takes longer than this means the client is not reading: drop it.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Clients send nothing but control frames; anything larger is refused by the socket itself.
const MAX_CLIENT_MESSAGE: usize = 4096;

// --- WebSocket close codes (RFC 6455 §7.4.1) ---
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TRY_AGAIN_LATER: u16 = 1013;

/// The dashboard login behind a request.
fn session_of(user: &DashboardUser) -> DashboardSession {
    DashboardSession {
        user: user.user.id,
        jti: user.claims.jti,
        exp: user.claims.exp,
    }
}

/// Redeems a ticket: single use, unexpired, and the dashboard login that asked for it still live.
async fn redeem(app: &AppState, ticket: &str) -> Result<DashboardSession, Problem> {
    let invalid = || Problem::unauthorized("Invalid, expired or already used ticket");
    let session = app.tickets.redeem(ticket).await?.ok_or_else(invalid)?;
    if !session.is_live(&*app.store).await? {
        return Err(invalid());
    }
    Ok(session)
}

/// One realtime event (a WebSocket text message, or the `data:` of `/realtime/events`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RealtimeEventOut {
    /// The event's type, e.g. `assistance.requested`.
    #[serde(rename = "type")]
    pub kind: String,
    pub user_id: String,
    pub account_id: String,
    /// What happened, per type.
    #[schema(value_type = Object)]
    pub data: Box<serde_json::value::RawValue>,
    pub occurred_at: String,
}

impl From<&Event> for RealtimeEventOut {
    fn from(e: &Event) -> Self {
        Self {
            kind: e.kind.clone(),
            user_id: e.user_id.to_string(),
            account_id: e.account_id.to_string(),
            data: e.data.clone(),
            occurred_at: crate::support::time::ts(e.occurred_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TicketOut {
    pub ticket: String,
    pub ttl_seconds: u64,
}

/// `POST /realtime/ticket`: a single-use ticket for `/realtime` or `/realtime/events`.
#[utoipa::path(
    post, operation_id = "realtime_issue_ticket",
    path = "/realtime/ticket",
    tag = "Realtime",
    security(("DashboardJwt" = [])),
    responses(
        (status = 200, description = "A single-use ticket, valid `ttl_seconds` (30)", body = TicketOut, headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
    )
)]
pub async fn issue_ticket(State(app): State<AppState>, user: DashboardUser, _: NoBody) -> Result<Response, ApiError> {
    let ticket = app.tickets.issue(session_of(&user)).await?;
    Ok((
        [(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(TicketOut {
            ticket,
            ttl_seconds: TICKET_TTL.as_secs(),
        }),
    )
        .into_response())
}

/// `GET /realtime/events`: the user's events as SSE, authenticated by a Bearer JWT, or else by a
/// `?ticket=` (for `EventSource`, which cannot send headers). Resume as on `/v1/events`.
#[utoipa::path(
    get, operation_id = "realtime_realtime_events",
    path = "/realtime/events",
    tag = "Realtime",
    security(("DashboardJwt" = []), ("RealtimeTicket" = [])),
    params(("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id"), ("last_event_id" = Option<String>, Query, description = "Resume after this event id (when the header cannot be set)")),
    responses(
        (status = 200, description = "An event stream (`text/event-stream`): each event has `id: <position>`, `event: <type>` and `data:` a JSON RealtimeEventOut; a `keep-alive` comment every 15 s. The stream ends when the login expires or logs out.", content_type = "text/event-stream", body = RealtimeEventOut),
        (status = 400, description = "`VALIDATION_ERROR`: a Last-Event-ID that is not a whole number, or is past the newest event", body = ApiErrorBody),
        (status = 401, description = "`UNAUTHORIZED`: no valid token, or an invalid, expired or used ticket", body = ApiErrorBody),
    )
)]
pub async fn realtime_events(State(app): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let (mut parts, _) = request.into_parts();
    let query = StreamQuery::parse(parts.uri.query());
    let session = match &query.ticket {
        Some(ticket) if !parts.headers.contains_key(AUTHORIZATION) => redeem(&app, ticket).await?,
        _ => session_of(&DashboardUser::from_request_parts(&mut parts, &app).await?),
    };
    let resume = resume_point(&parts.headers, &query)?;
    let audience = Audience {
        user: session.user,
        accounts: None,
        v1_kinds_only: false,
    };
    let credential = Box::new(SessionCredential {
        app: app.clone(),
        session,
    });
    Ok(event_stream(&app, audience, credential, resume, |e| RealtimeEventOut::from(e)).await?)
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
#[utoipa::path(
    get, operation_id = "realtime_realtime_ws",
    path = "/realtime",
    tag = "Realtime",
    security(()),
    params(("Sec-WebSocket-Protocol" = String, Header, description = "`realtime.v1, <ticket>`: the subprotocol and a ticket from `POST /realtime/ticket` (browsers cannot send an Authorization header on a WebSocket)")),
    responses(
        (status = 101, description = "Switching Protocols: a WebSocket with subprotocol `realtime.v1`. Server to client only: each text message is a JSON RealtimeEventOut; pings every 30 s; no resume. Closed with 1008 when the client sends data or the login ends, 1013 when it reads too slowly, 1001 at shutdown."),
        (status = 400, description = "`VALIDATION_ERROR` (realtime.v1 not offered) or `BAD_REQUEST` (not a valid WebSocket upgrade request)", body = ApiErrorBody),
        (status = 401, description = "`UNAUTHORIZED`: no ticket, or an invalid, expired or used one", body = ApiErrorBody),
        (status = 426, description = "`UPGRADE_REQUIRED`: the connection cannot be upgraded", body = ApiErrorBody),
    )
)]
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
    let session = redeem(&app, ticket).await?;
    // Subscribed before the 101 goes out: an event published once the client is connected
    // reaches it.
    let live = app.bus.subscribe().await.map_err(Problem::internal)?;
    let closing = app.streams_closing.clone();
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
    session: DashboardSession,
    mut live: Box<dyn Subscriber>,
    closing: CancellationToken,
) {
    let mut ping = interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let credential = SessionCredential { app, session };
    let mut recheck = Recheck::new(credential.app.revocations.subscribe(), credential.expires_at_ms());
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
            () = recheck.due() => {
                if !credential.still_valid().await {
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
