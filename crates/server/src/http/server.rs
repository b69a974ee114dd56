//! The HTTP server loop: what `axum::serve` does (a task per connection, HTTP/1.1 with upgrades,
//! the peer's address as `ConnectInfo`, graceful shutdown), plus the deadline it
//! cannot set: a client must send a request's head in time (`RECONBANKER_CLIENT_TIMEOUT_MS`), or
//! the connection is closed. Without it a connection that sends half a request line, or nothing
//! at all, was held open for ever (one task and one socket each: the slow-client attack).
//! The deadline also bounds an idle keep-alive connection between two requests; a request's
//! body has its own (see `connection.rs`).

use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// Serves `service` on `listener` until `shutdown` resolves, then stops accepting, lets every
/// connection finish the request it is serving, and returns when all are closed. A client has
/// `head_timeout` to send a request's head, counted from when the server starts waiting for it
/// (a new connection, or the end of the previous response).
pub async fn serve(
    listener: TcpListener,
    service: super::HttpService,
    head_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    // Dropping `stop` tells every connection to finish; each holds a `done` receiver, and
    // `finished.closed()` resolves when the last is dropped.
    let (stop, stopping) = watch::channel(());
    let (finished, done) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = service.clone().map_request(move |req: Request<Incoming>| {
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        });
        let service = TowerToHyperService::new(service);
        let mut stopping = stopping.clone();
        let done = done.clone();
        tokio::spawn(async move {
            // hyper's HTTP/1 connection itself (the HTTP/1-or-2 one of hyper-util reads the first
            // bytes before the head's deadline starts: a connection that sent nothing waited for
            // ever).
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(head_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            let mut asked = false;
            loop {
                tokio::select! {
                    served = conn.as_mut() => {
                        if let Err(e) = served {
                            tracing::debug!(error = %e, %peer, "connection ended with an error");
                        }
                        break;
                    }
                    _ = stopping.changed(), if !asked => {
                        asked = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(done);
        });
    }
    drop(listener);
    drop(stop);
    drop(done);
    finished.closed().await;
}
