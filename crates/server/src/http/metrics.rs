//! Issue 11 (metrics): the HTTP side of the operator's metrics — the layer that counts and
//! times every request by its matched route template (never the raw path: ids would make a
//! series per account), and the router of the `/metrics` listener (its own address, never the
//! main listener).
//!
//! The layer is a plain tower service (no boxed future, no extra task): on the `/v1` hot path
//! it costs a clock read, the route's `Arc` and two registry look-ups, and it is not installed
//! at all when metrics are off.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, State};
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use pin_project_lite::pin_project;
use subtle::ConstantTimeEq;
use tower::{Layer, Service};

use crate::http::error::{ApiError, Problem};
use crate::support::metrics::{Metrics, Observed, ObservedDb};
use crate::AppState;

/// Counts and times every request (see the module's documentation).
#[derive(Clone)]
pub(crate) struct RequestMetrics(pub(crate) Metrics);

impl<S> Layer<S> for RequestMetrics {
    type Service = Measured<S>;

    fn layer(&self, inner: S) -> Measured<S> {
        Measured {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Measured<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B> Service<Request<B>> for Measured<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = MeasuredFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let route = req.extensions().get::<MatchedPath>().cloned();
        let method = method_label(req.method());
        MeasuredFuture {
            started: Instant::now(),
            inner: self.inner.call(req),
            route,
            method,
            metrics: self.metrics.clone(),
        }
    }
}

pin_project! {
    pub(crate) struct MeasuredFuture<F> {
        #[pin]
        inner: F,
        started: Instant,
        route: Option<MatchedPath>,
        method: &'static str,
        metrics: Metrics,
    }
}

impl<F, E> Future for MeasuredFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // A panicking handler is answered 500 by the edge, outside this layer: counted as that
        // 500, and the panic goes on to the edge.
        let out = match std::panic::catch_unwind(AssertUnwindSafe(|| this.inner.poll(cx))) {
            Ok(polled) => ready!(polled),
            Err(panic) => {
                let route = this.route.as_ref().map(MatchedPath::as_str);
                this.metrics.http(this.method, route, 500, this.started.elapsed());
                std::panic::resume_unwind(panic)
            }
        };
        if let Ok(res) = &out {
            this.metrics.http(
                this.method,
                this.route.as_ref().map(MatchedPath::as_str),
                res.status().as_u16(),
                this.started.elapsed(),
            );
        }
        Poll::Ready(out)
    }
}

/// The method as a label from a fixed set (a client cannot mint series with made-up methods).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The router of the metrics listener: `GET /metrics`, and a plain 404 for anything else.
pub(crate) fn exporter_router(app: AppState, handle: PrometheusHandle) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state((app, handle))
}

/// How long a scrape waits for the database's gauges before answering without them.
const DB_WAIT: Duration = Duration::from_secs(2);

async fn scrape(State((app, handle)): State<(AppState, PrometheusHandle)>, headers: HeaderMap) -> Response {
    // Issue 11: with `RECONBANKER_METRICS_TOKEN`, only a scraper that sends it is answered.
    if let Some(token) = &app.config.metrics_token {
        if !bearer_matches(&headers, token.expose()) {
            let mut res = ApiError(Problem::unauthorized(
                "GET /metrics needs Authorization: Bearer <RECONBANKER_METRICS_TOKEN>",
            ))
            .into_response();
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"metrics\""),
            );
            return res;
        }
    }
    app.metrics.observe(&observe(&app).await);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        handle.render(),
    )
        .into_response()
}

/// `Authorization: Bearer <token>` with exactly `token` (compared in constant time).
fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, presented)) = value.trim().split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer") && bool::from(presented.trim().as_bytes().ct_eq(token.as_bytes()))
}

/// The gauges, read now: the live sessions, the pool, and what the database says.
async fn observe(app: &AppState) -> Observed {
    let phases = app.sessions.by_phase();
    let waiting = phases
        .iter()
        .find(|(p, _)| *p == crate::engine::live::Phase::AwaitingCode)
        .map_or(0, |(_, n)| *n);
    let pool = app.store.pool_usage();
    let read = tokio::time::timeout(
        DB_WAIT,
        app.store.instance_gauges(&app.instance_id, reconbanker_store::now()),
    )
    .await;
    let database = match read {
        Ok(Ok(g)) => {
            let n = |v: i64| u64::try_from(v).unwrap_or(0);
            Some(ObservedDb {
                outbox_pending: n(g.outbox_pending),
                outbox_dead: n(g.outbox_dead),
                session_leases: n(g.session_leases),
                poll_leases: n(g.poll_leases),
            })
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "metrics: could not read the database's gauges");
            None
        }
        Err(_) => {
            tracing::warn!("metrics: the database's gauges took over 2 s");
            None
        }
    };
    Observed {
        sessions: phases.iter().map(|(p, n)| (p.as_str(), *n as u64)).collect(),
        logins_waiting: waiting as u64,
        pool_in_use: u64::from(pool.in_use()),
        pool_idle: u64::from(pool.idle),
        pool_max: u64::from(pool.max),
        database,
    }
}
