//! The benchmark's ceiling: the smallest axum server answering `GET /v1/accounts/:id/status`
//! with the same JSON as Reconbanker, on the same runtime — no auth, no state, no logging.
//! `cargo run --release --example ceiling -- <port>`

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

async fn status(Path(id): Path<String>) -> Json<Value> {
    Json(json!({ "account_id": id, "session_running": false, "pending_assistance": null }))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(3001);
    let app = Router::new().route("/v1/accounts/{id}/status", get(status));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await
}
