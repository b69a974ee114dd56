//! Unit tests of the layers around the routes (`service`).

use axum::body::{to_bytes, Body};
use axum::http::Request;
use tower::ServiceExt;

use super::*;

/// The routes inside the layers, with the default body deadline.
fn edge_layers(routes: Router) -> HttpService {
    super::service(routes, None, Duration::from_secs(30))
}

#[allow(clippy::panic)]
async fn boom() -> &'static str {
    panic!("a bug")
}

async fn call(path: &str) -> (StatusCode, serde_json::Value) {
    let routes = edge_layers(Router::new().route("/v1/boom", get(boom)).route("/boom", get(boom)));
    let res = routes
        .oneshot(Request::get(path).body(Body::empty()).unwrap_or_default())
        .await
        .unwrap_or_else(|e| match e {});
    let status = res.status();
    let body = to_bytes(res.into_body(), 1 << 16).await.unwrap_or_default();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

#[tokio::test]
async fn a_panic_that_left_the_body_unread_closes_the_connection_in_both_shapes() {
    for path in ["/v1/boom", "/boom"] {
        let routes = edge_layers(
            Router::new()
                .route("/v1/boom", axum::routing::post(boom))
                .route("/boom", axum::routing::post(boom)),
        );
        let req = Request::post(path)
            .header("content-type", "application/json")
            .header("content-length", "2")
            .body(Body::from("{}"))
            .unwrap_or_default();
        let res = routes.oneshot(req).await.unwrap_or_else(|e| match e {});
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        assert_eq!(
            res.headers().get("connection").and_then(|v| v.to_str().ok()),
            Some("close"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_panic_is_a_500_in_the_surface_shape() {
    let (status, body) = call("/v1/boom").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error"]["code"], "INTERNAL_ERROR", "{body}");
    let (status, body) = call("/boom").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["code"], "INTERNAL_ERROR", "{body}");
}

// Issue 13: the edge layer (`edge.rs`) keeps what the five layers it replaced did.

async fn logs_inside() -> &'static str {
    tracing::warn!("inside the handler");
    "ok"
}

fn send(path: &str, id: Option<&str>) -> Request<Body> {
    let mut req = Request::get(path);
    if let Some(id) = id {
        req = req.header("x-request-id", id);
    }
    req.body(Body::empty()).unwrap_or_default()
}

#[tokio::test]
async fn every_answer_carries_a_request_id_a_panic_and_a_404_too() {
    let routes = edge_layers(
        Router::new()
            .route("/v1/boom", get(boom))
            .route("/ok", get(logs_inside)),
    );
    for path in ["/v1/boom", "/ok", "/missing"] {
        let res = routes
            .clone()
            .oneshot(send(path, None))
            .await
            .unwrap_or_else(|e| match e {});
        let id = res
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(uuid::Uuid::parse_str(id).is_ok() && id.len() == 36, "{path}: {id:?}");
        let res = routes
            .clone()
            .oneshot(send(path, Some("abc-123")))
            .await
            .unwrap_or_else(|e| match e {});
        assert_eq!(
            res.headers().get("x-request-id").and_then(|v| v.to_str().ok()),
            Some("abc-123"),
            "{path}: an incoming id is kept"
        );
    }
}

/// The test binary's process-wide subscriber (INFO, no colours), installed once, writing to a
/// buffer the tests read back.
fn global_logs() -> Captured {
    static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        // Nothing else in this binary installs one: a failure here would show as missing lines.
        let _ = tracing::subscriber::set_global_default(subscriber);
        out
    })
    .clone()
}

/// A writer the test can read back.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_handlers_log_lines_and_the_request_line_carry_the_request_id() {
    let routes = edge_layers(Router::new().route("/ok", get(logs_inside)));
    // The process-wide subscriber of this test binary: tracing caches each log site's interest
    // process-wide, and a subscriber set for one thread only raced the other tests registering
    // the edge's sites (now and then a line went missing). Lines are told apart by the request
    // id, which only this test sends.
    let out = global_logs();
    let res = routes
        .clone()
        .oneshot(send("/ok?token=secret", Some("req-42")))
        .await
        .unwrap_or_else(|e| match e {});
    assert_eq!(res.status(), StatusCode::OK);
    let all = String::from_utf8(out.0.lock().unwrap_or_else(|p| p.into_inner()).clone()).unwrap_or_default();
    let text: String = all
        .lines()
        .filter(|l| l.contains("req-42"))
        .map(|l| format!("{l}\n"))
        .collect();
    let inside = text.lines().find(|l| l.contains("inside the handler"));
    assert!(inside.is_some_and(|l| l.contains("request_id=req-42")), "{text}");
    let done = text.lines().find(|l| l.contains("finished processing request"));
    assert!(
        done.is_some_and(|l| l.contains("request_id=req-42") && l.contains("status=200")),
        "{text}"
    );
    assert!(!text.contains("secret"), "the query string is never logged: {text}");
}

/// Issue 11 with issue 13's layout: the request metrics are a route layer inside the edge, and a
/// panicking handler is still counted, as the 500 the edge answers, under its route.
#[tokio::test]
async fn a_panic_is_counted_as_a_500_of_its_route() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let measured = crate::support::metrics::Metrics::on(std::sync::Arc::new(recorder));
    let routes = Router::new()
        .route("/v1/boom", get(boom))
        .layer(metrics::RequestMetrics(measured));
    let res = edge_layers(routes)
        .oneshot(send("/v1/boom", None))
        .await
        .unwrap_or_else(|e| match e {});
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let text = handle.render();
    let line = text
        .lines()
        .find(|l| l.starts_with("reconbanker_http_requests_total{") && l.contains("route=\"/v1/boom\""));
    assert!(
        line.is_some_and(|l| l.contains("status=\"500\"") && l.ends_with(" 1")),
        "{text}"
    );
}
