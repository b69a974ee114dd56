//! Server-Sent Events, shared by `/v1/events` and `/realtime/events`: the response around a
//! [`Feed`], where a reconnecting client resumes, and the credentials a stream re-checks.
//!
//! Events carry their log `seq` as `id:`; a client that reconnects with `Last-Event-ID` (or
//! `?last_event_id=`, for a new `EventSource` opened with a fresh ticket) first gets everything
//! it missed from the event log, then the live events. A keep-alive comment goes out every 15 s.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::Problem;
use crate::auth::key_cache::{CachedKey, Scope};
use crate::auth::tickets::DashboardSession;
use crate::push::events::Event;
use crate::push::feed::{Audience, Credential, Feed, Recheck};
use crate::AppState;

/// SSE keep-alive comment interval (docs/product.md §7).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The SSE response of a feed: opened here, before the response goes out.
pub(crate) async fn event_stream<T: Serialize + 'static>(
    app: &AppState,
    audience: Audience,
    credential: Box<dyn Credential>,
    resume: Option<i64>,
    render: fn(&Event) -> T,
) -> Result<Response, Problem> {
    // An id past the log's newest was never sent by this server (a client kept it across a
    // reset of the database): resuming after it would wait, silently, until the log got there.
    if let Some(seq) = resume {
        if seq > app.store.last_event_seq().await.map_err(Problem::internal)? {
            return Err(Problem::field(RESUME_FIELD, RESUME_MESSAGE));
        }
    }
    let recheck = Recheck::new(app.revocations.subscribe(), credential.expires_at_ms());
    let feed = Feed::open(
        app.store.clone(),
        &*app.bus,
        audience,
        credential,
        recheck,
        resume,
        app.streams_closing.clone(),
    )
    .await
    .map_err(Problem::internal)?;
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
    // Kinds are docs/product.md §6 names; the guard only keeps a malformed one from panicking.
    if e.kind.contains(['\n', '\r']) {
        out
    } else {
        out.event(&e.kind)
    }
}

/// A dashboard login behind a stream: ends when it expires or logs out.
pub(crate) struct SessionCredential {
    pub app: AppState,
    pub session: DashboardSession,
}

#[async_trait]
impl Credential for SessionCredential {
    async fn still_valid(&self) -> bool {
        self.session.is_live(&*self.app.store).await.unwrap_or(true)
    }

    fn expires_at_ms(&self) -> Option<i64> {
        Some(self.session.exp.saturating_mul(1000))
    }
}

/// An API key behind a `/v1` stream: ends when the key is revoked, expires or loses
/// `status:read`.
pub(crate) struct KeyCredential {
    pub app: AppState,
    pub key: Arc<CachedKey>,
}

#[async_trait]
impl Credential for KeyCredential {
    async fn still_valid(&self) -> bool {
        self.app
            .keys
            .current(&self.key)
            .await
            .map(|k| k.is_some_and(|k| k.has_scope(Scope::StatusRead)))
            .unwrap_or(true)
    }

    fn expires_at_ms(&self) -> Option<i64> {
        self.key.expires_at_ms()
    }
}

/// The field a resume point past the log's head is reported under, however it was sent.
const RESUME_FIELD: &str = "Last-Event-ID";
/// What a refused resume point is told.
const RESUME_MESSAGE: &str = "must be the id of an event from this stream (a whole number)";

/// Where a reconnecting client resumes: `Last-Event-ID` (what `EventSource` sends), else
/// `?last_event_id=`. Empty means "not resuming".
pub(crate) fn resume_point(headers: &HeaderMap, query: &StreamQuery) -> Result<Option<i64>, Problem> {
    let parse = |field: &str, text: &str| -> Result<Option<i64>, Problem> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse::<u64>()
            .ok()
            .and_then(|n| i64::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| Problem::field(field, RESUME_MESSAGE))
    };
    if let Some(value) = headers.get("last-event-id") {
        let text = value
            .to_str()
            .map_err(|_| Problem::field(RESUME_FIELD, RESUME_MESSAGE))?;
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
pub(crate) struct StreamQuery {
    pub(crate) ticket: Option<String>,
    last_event_id: Option<String>,
}

impl StreamQuery {
    pub(crate) fn parse(query: Option<&str>) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;

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
