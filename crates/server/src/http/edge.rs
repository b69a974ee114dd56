//! Issue 13: the edge of every request as one hand-written tower layer, in place of five
//! (tower-http's request-id setter and propagator, its trace layer, the panic catcher and an
//! `axum::middleware::from_fn`). What each did is kept:
//!
//! - **request id**: an incoming `x-request-id` is kept, otherwise a UUID v4 is made (from a
//!   thread-local CSPRNG, uuid's `fast-rng`); it is set on the request and echoed on the response;
//! - **trace span**: `request{method, path, request_id}` around the handler and around a streamed
//!   response body (SSE), so every log line of the request carries its id; the path only, never
//!   the query string or a header; one `finished processing request` line per request at INFO
//!   (and `response failed` at ERROR for a 5xx), with the targets tower-http used, so existing
//!   `RUST_LOG` settings select the same lines;
//! - **panic catcher**: a panicking handler is logged and answered with a JSON 500 in the
//!   surface's shape (`/v1`'s or the dashboard's);
//! - **`Connection: close`** on a response that left an announced request body unread
//!   (`connection`, issue 12).
//!
//! Why one layer: each of the five cost a boxed future or a boxed service clone, an extension
//! insert or a string copy per request (`docs/benchmarks.md`, 2026-12-01). This one boxes nothing
//! and allocates only the generated id; a fixed-size response is not wrapped.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::Span;

use super::connection;
use super::error::{ApiError, Problem, V1Error};

pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The target of the per-request lines (tower-http's, kept for existing `RUST_LOG` settings).
const ON_RESPONSE: &str = "tower_http::trace::on_response";
const ON_FAILURE: &str = "tower_http::trace::on_failure";

/// See the module's documentation.
#[derive(Clone, Copy)]
pub(crate) struct EdgeLayer {
    /// How long a request's body may take to arrive once the handler reads it.
    pub body_timeout: std::time::Duration,
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            body_timeout: self.body_timeout,
        }
    }
}

#[derive(Clone)]
pub(crate) struct Edge<S> {
    inner: S,
    body_timeout: std::time::Duration,
}

impl<S> Edge<S> {
    /// The service inside.
    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

/// A new request id: a UUID v4, hyphenated (36 characters).
fn new_request_id() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    match HeaderValue::from_str(text) {
        Ok(v) => v,
        // Unreachable (hex digits and hyphens), but never a panic on the request path.
        Err(_) => HeaderValue::from_static("-"),
    }
}

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = EdgeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let id = match req.headers().get(&X_REQUEST_ID) {
            Some(v) => v.clone(),
            None => {
                let v = new_request_id();
                req.headers_mut().insert(X_REQUEST_ID, v.clone());
                v
            }
        };
        let v1 = super::is_v1(req.uri());
        // Path only: query strings and headers (API keys, tokens) are never logged.
        let span = tracing::info_span!(
            "request",
            method = %req.method(),
            path = %req.uri().path(),
            request_id = %id.to_str().unwrap_or("-"),
        );
        let started = tracing::enabled!(target: ON_RESPONSE, tracing::Level::INFO).then(Instant::now);
        let (req, body_read) = connection::track_body(req, self.body_timeout);
        let inner = {
            let _entered = span.enter();
            std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(req))).ok()
        };
        EdgeFuture {
            inner,
            span,
            id,
            v1,
            started,
            body_read,
        }
    }
}

pin_project! {
    pub(crate) struct EdgeFuture<F> {
        // `None`: the service panicked in `call`.
        #[pin]
        inner: Option<F>,
        span: Span,
        id: HeaderValue,
        v1: bool,
        started: Option<Instant>,
        body_read: Option<Arc<AtomicBool>>,
    }
}

impl<F> Future for EdgeFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let entered = this.span.enter();
        let polled = match this.inner.as_pin_mut() {
            Some(inner) => match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
                Ok(p) => Some(ready!(p)),
                Err(_) => None,
            },
            None => None,
        };
        let mut res = match polled {
            Some(Ok(res)) => res,
            Some(Err(never)) => match never {},
            None => panic_response(*this.v1),
        };
        connection::close_if_unread(&mut res, this.body_read.as_ref());
        if !res.headers().contains_key(&X_REQUEST_ID) {
            res.headers_mut().insert(X_REQUEST_ID, this.id.clone());
        }
        if let Some(started) = this.started {
            let latency = started.elapsed().as_millis();
            let status = res.status();
            tracing::event!(target: ON_RESPONSE, tracing::Level::INFO,
                latency = %format_args!("{latency} ms"), status = status.as_u16(), "finished processing request");
            if status.is_server_error() {
                tracing::event!(target: ON_FAILURE, tracing::Level::ERROR,
                    classification = %format_args!("Status code: {status}"), latency = %format_args!("{latency} ms"),
                    "response failed");
            }
        }
        drop(entered);
        // A streamed body (SSE) keeps the request's span: its log lines carry the id too. A
        // body of known size is sent as it is.
        if !this.span.is_disabled() && http_body::Body::size_hint(res.body()).exact().is_none() {
            let span = this.span.clone();
            res = res.map(|inner| Body::new(InSpan { inner, span }));
        }
        Poll::Ready(Ok(res))
    }
}

/// A panic is a bug: log it, answer a bare 500 in the surface's shape.
fn panic_response(v1: bool) -> Response {
    tracing::error!("handler panicked");
    let p = Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL_ERROR",
        "Internal server error",
    );
    if v1 {
        V1Error(p).into_response()
    } else {
        ApiError(p).into_response()
    }
}

pin_project! {
    /// A response body polled inside the request's span.
    struct InSpan {
        #[pin]
        inner: Body,
        span: Span,
    }
}

impl http_body::Body for InSpan {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let _entered = this.span.enter();
        this.inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
