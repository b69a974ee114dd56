//! Extractors shared by the handlers: JSON bodies that fail with the surface's 400/413,
//! pagination, and the request's client address.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::error::{ApiError, Problem};

/// Parses a JSON body, naming the offending field path on failure.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    // Every body of this API is an object; serde would also accept an array for a struct.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        let message = if bytes.iter().all(u8::is_ascii_whitespace) {
            "Request body must be a JSON object"
        } else if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() {
            "Request body is not valid JSON"
        } else {
            "Request body must be a JSON object"
        };
        return Err(Problem::validation(message).with_details(json!([{ "field": null, "message": message }])));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if inner.is_syntax() || inner.is_eof() {
            "Request body is not valid JSON".to_owned()
        } else {
            // serde's message names the expectation ("missing field `code`", "invalid type: …").
            let text = inner.to_string();
            match text.find(" at line ") {
                Some(i) => text[..i].to_owned(),
                None => text,
            }
        };
        let field = if path == "." { None } else { Some(path) };
        Problem::validation(match &field {
            Some(f) => format!("{f}: {message}"),
            None => message.clone(),
        })
        .with_details(json!([{ "field": field, "message": message }]))
    })
}

/// The body as read by axum's `Bytes` extractor (bounded by `DefaultBodyLimit`), judged.
pub fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Problem> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::too_large()
        } else {
            Problem::validation("Request body could not be read")
        }
    })
}

/// A JSON body on the dashboard surface.
pub struct DJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for DJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(Bytes::from_request(req, state).await)?;
        Ok(DJson(parse_json(&bytes)?))
    }
}

/// `?limit=&offset=` — limit 1..=500 (default 100), offset ≥ 0 (default 0).
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 500;

impl Page {
    pub fn parse(query: Option<&str>) -> Result<Self, Problem> {
        let mut page = Page {
            limit: DEFAULT_LIMIT,
            offset: 0,
        };
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "limit" => {
                    page.limit = v
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| Problem::field("limit", "must be a whole number from 1 to 500"))?
                }
                "offset" => {
                    page.offset = v
                        .parse::<i64>()
                        .ok()
                        .filter(|n| *n >= 0)
                        .ok_or_else(|| Problem::field("offset", "must be a whole number of at least 0"))?
                }
                _ => {}
            }
        }
        Ok(page)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Page::parse(parts.uri.query())?)
    }
}

/// The client's address (the TCP peer; proxies are not trusted).
pub fn client_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}
