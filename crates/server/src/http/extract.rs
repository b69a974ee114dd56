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
///
/// Every string in the body (and every key) is checked for control characters first: they are
/// refused with a 400 naming the field, the same on both backends (PostgreSQL `text` refuses NUL,
/// SQLite would store it). Error messages name the field and what was expected, never the value
/// that was sent (it may be a code, a password or a token).
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
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let tree: serde_json::Value = match serde_path_to_error::deserialize(&mut de) {
        // Nothing but whitespace may follow the value.
        Ok(v) if de.end().is_ok() => v,
        Ok(_) => {
            let message = "Request body is not valid JSON";
            return Err(Problem::validation(message).with_details(json!([{ "field": null, "message": message }])));
        }
        Err(e) => {
            let path = e.path().to_string();
            // Valid JSON all the same (RFC 8259 sets no range): the field is named.
            if e.inner().to_string().starts_with("number out of range") && path != "." {
                return Err(Problem::field(&path, "is a number out of range"));
            }
            let message = "Request body is not valid JSON";
            return Err(Problem::validation(message).with_details(json!([{ "field": null, "message": message }])));
        }
    };
    if let Some(field) = control_character_at(&tree, "") {
        return Err(Problem::field(&field, "must not contain control characters"));
    }
    // A key sent twice in one object is refused wherever it is: a JSON map keeps one of the
    // two silently (the last), and which one a client meant is anyone's guess.
    if let Err(e) = serde_path_to_error::deserialize::<_, UniqueKeys>(&mut serde_json::Deserializer::from_slice(bytes))
    {
        let key = e.inner().to_string();
        let key = key.split(" at line ").next().unwrap_or_default();
        let parent = e.path().to_string();
        let field = if parent == "." {
            key.to_owned()
        } else {
            format!("{parent}.{key}")
        };
        let message = format!("duplicate field `{key}`");
        return Err(Problem::validation(format!("{field}: {message}"))
            .with_details(json!([{ "field": field, "message": message }])));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let text = inner.to_string();
        let text = match text.find(" at line ") {
            Some(i) => &text[..i],
            None => &text[..],
        };
        let (field, message) = if inner.is_syntax() || inner.is_eof() {
            // The body parsed as JSON above: this is serde_json's word for a value of the wrong
            // type where a choice (an enum) was expected.
            (
                if path == "." { None } else { Some(path) },
                "has the wrong type".to_owned(),
            )
        } else if let Some(name) = text.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
            // The path is the object that lacks it.
            let field = if path == "." {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            };
            (Some(field), "is required".to_owned())
        } else if let Some(name) = text.strip_prefix("unknown field `").and_then(|r| r.split('`').next()) {
            // The unknown key is named (it is a name the client chose, never a value).
            // The path already ends with the unknown key.
            let field = if path == "." { name.to_owned() } else { path };
            (Some(field), "is not a known field".to_owned())
        } else {
            (if path == "." { None } else { Some(path) }, describe(text))
        };
        Problem::validation(match &field {
            Some(f) => format!("{f}: {message}"),
            None => message.clone(),
        })
        .with_details(json!([{ "field": field, "message": message }]))
    })
}

/// Any JSON value, read only to find an object key that appears twice; the error's message is
/// the key (the path to its object is [`serde_path_to_error`]'s).
struct UniqueKeys;

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(key));
            }
            map.next_value::<UniqueKeys>()?;
        }
        Ok(UniqueKeys)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
}

/// serde's message with the sent value taken out: `invalid type: integer `123456`, expected a
/// string` becomes `expected a string`; a missing field keeps its (field) name.
fn describe(text: &str) -> String {
    if text.starts_with("missing field `") || text.starts_with("duplicate field `") {
        return text.to_owned();
    }
    if let Some(i) = text.find(", expected ") {
        return format!("expected {}", plain_type(&text[i + ", expected ".len()..]));
    }
    if let Some(i) = text.find("expected ") {
        return text[i..].to_owned();
    }
    "has an invalid value".to_owned()
}

/// A Rust type name in serde's message in words a client knows.
fn plain_type(expected: &str) -> String {
    match expected {
        "u8" => format!("a whole number from 0 to {}", u8::MAX),
        "u16" => format!("a whole number from 0 to {}", u16::MAX),
        "u32" => format!("a whole number from 0 to {}", u32::MAX),
        "u64" | "usize" => format!("a whole number from 0 to {}", u64::MAX),
        "i32" => format!("a whole number from {} to {}", i32::MIN, i32::MAX),
        "i64" | "isize" => format!("a whole number from {} to {}", i64::MIN, i64::MAX),
        "f32" | "f64" => "a number".to_owned(),
        other => other.to_owned(),
    }
}

/// The path of the first string or key holding a control character (`\0`, `\n`, DEL, …).
fn control_character_at(v: &serde_json::Value, path: &str) -> Option<String> {
    let bad = |s: &str| s.chars().any(char::is_control);
    let name = |path: &str| {
        if path.is_empty() {
            ".".to_owned()
        } else {
            path.to_owned()
        }
    };
    match v {
        serde_json::Value::String(s) => bad(s).then(|| name(path)),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| control_character_at(item, &format!("{path}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, item)| {
            let here = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if bad(k) {
                // The key itself is unprintable: name where it sits, not the key.
                return Some(name(path));
            }
            // A password is a secret, not a name shown anywhere: whatever characters it has
            // are its own (and one chosen before this rule must still log in). It is hashed or
            // sealed, never stored as text.
            if k.ends_with("password") {
                return None;
            }
            control_character_at(item, &here)
        }),
        _ => None,
    }
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

/// The body of a dashboard route that takes none: nothing, or an empty JSON object (`{}`, which
/// some clients send with every POST). Anything else is judged like any other body (docs/product.md
/// §1): over 64 KiB 413, not JSON or not an object 400, a field 400 naming it as unknown.
pub struct NoBody;

/// What a route without a body accepts: an object without fields.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

impl<S: Send + Sync> FromRequest<S> for NoBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(Bytes::from_request(req, state).await)?;
        if !bytes.iter().all(u8::is_ascii_whitespace) {
            parse_json::<NoFields>(&bytes)?;
        }
        Ok(NoBody)
    }
}

/// `?limit=&offset=` — limit 1..=500 (default 100), offset ≥ 0 (default 0).
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

/// The `?limit=&offset=` of [`Page`], for the OpenAPI document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageParams {
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// Rows to skip (default 0).
    #[param(minimum = 0)]
    offset: Option<i64>,
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

/// A dashboard path parameter: any parameter that cannot be read (not UTF-8 once
/// percent-decoded, the wrong number of segments) is the dashboard's JSON 404 — the same answer
/// as an id that names nothing — never axum's plain-text 400.
pub struct DPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for DPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| DPath(v))
            .map_err(|_| ApiError(Problem::not_found("Not found")))
    }
}
