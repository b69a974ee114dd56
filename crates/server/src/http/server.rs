//! The HTTP server loop: what `axum::serve` does (a task per connection, HTTP/1.1 with upgrades,
//! the peer's address as `ConnectInfo`, graceful shutdown), plus the deadline it
//! cannot set: a client must send a request's head in time (`RECONBANKER_CLIENT_TIMEOUT_MS`), or
//! the connection is closed. Without it a connection that sends half a request line, or nothing
//! at all, was held open for ever (one task and one socket each: the slow-client attack).
//! The deadline also bounds an idle keep-alive connection between two requests; a request's
//! body has its own (see `connection.rs`). It is checked every quarter of its length, so a late
//! head ends its connection between 1 and 1.25 times the deadline after the wait began.

use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
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
        let mut service = service.clone();
        service.get_mut().set_peer(peer);
        let service = service.map_request(|req: Request<Incoming>| req.map(Body::new));
        let service = TowerToHyperService::new(service);
        let mut stopping = stopping.clone();
        let done = done.clone();
        tokio::spawn(async move {
            // hyper's HTTP/1 connection itself (the HTTP/1-or-2 one of hyper-util reads the first
            // bytes before the head's deadline starts: a connection that sent nothing waited for
            // ever).
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(HeadClock)
                .header_read_timeout(head_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            // Wakes the connection now and then, so hyper looks at its head deadline (see
            // `HeadClock`).
            let every = head_check_period(head_timeout);
            let mut check = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                    _ = check.tick() => {}
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

/// How often a connection is woken to look at its head deadline: a quarter of the deadline
/// (so a late head is cut off between 1 and 1.25 times it), at least every 10 ms.
fn head_check_period(head_timeout: Duration) -> Duration {
    (head_timeout / 4).max(Duration::from_millis(10))
}

/// hyper's clock for a request head's deadline, without a timer per request. hyper asks for a
/// deadline each time it starts waiting for a head and drops it when the head is in: with
/// tokio's timer that was an entry put into and taken out of the runtime's timer wheel per
/// request (about 8 % of a `/v1` status request's user-space time in `perf`). A [`HeadDeadline`]
/// is only compared with the clock when hyper polls it; the connection's task is woken every
/// [`head_check_period`] so that it is polled, and hyper ends a connection whose head is late.
#[derive(Clone, Copy)]
struct HeadClock;

impl hyper::rt::Timer for HeadClock {
    fn sleep(&self, duration: Duration) -> std::pin::Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(std::time::Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> std::pin::Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HeadDeadline(deadline))
    }
}

/// A deadline that is ready once the clock has passed it; it registers no wake-up.
struct HeadDeadline(std::time::Instant);

impl Future for HeadDeadline {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if std::time::Instant::now() >= self.0 {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    }
}

impl hyper::rt::Sleep for HeadDeadline {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_deadline_is_ready_once_passed_and_not_before() {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let now = std::time::Instant::now();
        let mut later = hyper::rt::Timer::sleep_until(&HeadClock, now + Duration::from_secs(60));
        assert!(later.as_mut().poll(&mut cx).is_pending());
        let mut passed = hyper::rt::Timer::sleep_until(&HeadClock, now);
        assert!(passed.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn the_check_period_is_a_quarter_of_the_deadline_at_least_10_ms() {
        assert_eq!(head_check_period(Duration::from_secs(30)), Duration::from_millis(7500));
        assert_eq!(head_check_period(Duration::from_millis(300)), Duration::from_millis(75));
        assert_eq!(head_check_period(Duration::from_millis(20)), Duration::from_millis(10));
    }
}
