//! Issue 12, finding 12: a refusal that leaves the request body unread (a 413, or a 401/404
//! answered before the body was looked at) ends the connection — hyper cannot reuse it — so the
//! response must say `Connection: close`. Otherwise a keep-alive client sends its next request
//! on a connection that is being closed and gets no answer.
//!
//! The same wrapper bounds how long a body may take: a client that announces a body and sends
//! part of it (or none) makes the handler's read fail once the deadline has passed since the
//! read first had to wait (`RECONBANKER_CLIENT_TIMEOUT_MS`): a 400, and the connection closes.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use axum::http::HeaderValue;
use axum::response::Response;
use http_body::{Frame, SizeHint};

/// A request body that records whether it was read to its end, and fails when it does not
/// arrive in time.
struct Tracked {
    inner: Body,
    done: Arc<AtomicBool>,
    timeout: std::time::Duration,
    /// Started the first time the body was not there yet (a body that is already complete,
    /// the usual case, never allocates it).
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.done.store(true, Ordering::Release),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.done.store(true, Ordering::Release),
            Poll::Pending => {
                let timeout = self.timeout;
                let deadline = self
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut))));
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The error of a body that did not arrive in time.
#[derive(Debug)]
struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimedOut {}

/// Wraps the body of a request that announced one, so that [`close_if_unread`] can tell
/// whether the handler read it to its end (`None`: no body announced, nothing to watch), and
/// so that it fails when it takes longer than `timeout` to arrive.
pub(crate) fn track_body(req: Request, timeout: std::time::Duration) -> (Request, Option<Arc<AtomicBool>>) {
    let headers = req.headers();
    let announced = headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0);
    if !announced {
        return (req, None);
    }
    let done = Arc::new(AtomicBool::new(false));
    let (parts, body) = req.into_parts();
    let body = Body::new(Tracked {
        inner: body,
        done: done.clone(),
        timeout,
        deadline: None,
    });
    (Request::from_parts(parts, body), Some(done))
}

/// Adds `Connection: close` to the response when the request announced a body that the
/// handler did not read to its end.
pub(crate) fn close_if_unread(res: &mut Response, done: Option<&Arc<AtomicBool>>) {
    if done.is_some_and(|d| !d.load(Ordering::Acquire)) {
        res.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
}
