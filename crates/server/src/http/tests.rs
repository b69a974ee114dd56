//! Unit tests of the layers around the routes (`edge_layers`).

use axum::body::{to_bytes, Body};
use axum::http::Request;
use tower::ServiceExt;

use super::*;

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
