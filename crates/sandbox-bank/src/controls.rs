//! The sandbox controls under `/_sandbox/…`: injecting movements and the sandbox shop's
//! pending-orders list. They are part of this bank only (a real bank has nothing like them).

use std::fmt;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{movements, users, SandboxBank};

/// Largest body `POST /_sandbox/movements` reads; more is answered 413.
pub(crate) const MOVEMENT_BODY_LIMIT: usize = 64 * 1024;

/// Largest body `PUT /_sandbox/shop/orders` reads; more is answered 413. Above the server's
/// default 5 MiB pending-orders limit on purpose, so that limit can be exercised.
pub(crate) const ORDERS_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// At most this many shops keep a list at once.
pub(crate) const MAX_SHOPS: usize = 1024;

/// Longest shop name.
const MAX_SHOP_NAME_LEN: usize = 64;

/// The shop `/_sandbox/shop/orders` serves when the request names none (`?shop=` absent).
pub const DEFAULT_SHOP: &str = "default";

/// The bearer token the sandbox shop expects: `Authorization: Bearer sandbox`.
pub const SHOP_TOKEN: &str = "sandbox";

/// A movement to add to a user's statement ([`SandboxBank::add_movement`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddMovement {
    /// Whose statement: a scripted username or `<user>+<tag>`.
    pub username: String,
    /// Exact decimal text: optional `-`, digits, optionally `.` and 1–4 digits. Listed as given.
    pub amount: String,
    /// Three upper-case letters.
    pub currency: String,
    /// Counterparty, or none.
    pub name: Option<String>,
    /// Free text (may be empty).
    pub description: String,
    /// Booking date; `None` = the bank's clock now. Listed in whole seconds (fractions dropped).
    pub received_at: Option<DateTime<Utc>>,
}

/// Why a movement was refused: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidMovement {
    /// The offending field (`body` when the body as a whole is unreadable).
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for InvalidMovement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for InvalidMovement {}

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidMovement {
    InvalidMovement {
        field,
        message: message.into(),
    }
}

/// Why a pending-orders list was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidOrders {
    /// The body is not UTF-8 JSON whose top level is an array.
    NotAnArray(String),
    /// The shop name is not 1–64 characters from `[A-Za-z0-9_-]`.
    BadShopName,
    /// Too many shops already hold a list.
    TooManyShops,
}

impl fmt::Display for InvalidOrders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidOrders::NotAnArray(why) => write!(f, "body: must be a JSON array ({why})"),
            InvalidOrders::BadShopName => {
                write!(f, "shop: must be 1-{MAX_SHOP_NAME_LEN} characters from [A-Za-z0-9_-]")
            }
            InvalidOrders::TooManyShops => write!(f, "shop: at most {MAX_SHOPS} shops"),
        }
    }
}

impl std::error::Error for InvalidOrders {}

/// The checks on a movement's content (the types are already right).
pub(crate) fn check(m: &AddMovement) -> Result<(), InvalidMovement> {
    if users::resolve(&m.username).is_none() {
        return Err(invalid(
            "username",
            "unknown user (a scripted user, or <user>+<tag> with a tag of 1-32 characters from [A-Za-z0-9_-])",
        ));
    }
    if !movements::is_decimal(&m.amount) {
        return Err(invalid(
            "amount",
            "must be an exact decimal: optional '-', digits, optionally '.' and 1-4 digits",
        ));
    }
    if !movements::is_currency(&m.currency) {
        return Err(invalid("currency", "must be 3 upper-case letters"));
    }
    Ok(())
}

pub(crate) fn check_shop_name(shop: &str) -> Result<(), InvalidOrders> {
    let ok = (1..=MAX_SHOP_NAME_LEN).contains(&shop.len())
        && shop
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(InvalidOrders::BadShopName)
    }
}

/// `orders` is UTF-8 JSON (a leading BOM tolerated) whose top level is an array. Numbers are only
/// scanned, never converted, so any JSON number (`1.5e3`, `1e400`, many decimals) passes.
pub(crate) fn check_orders(orders: &[u8]) -> Result<(), InvalidOrders> {
    let text = std::str::from_utf8(orders).map_err(|_| InvalidOrders::NotAnArray("not UTF-8".to_owned()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    serde_json::from_str::<Vec<IgnoredAny>>(text)
        .map(|_| ())
        .map_err(|e| InvalidOrders::NotAnArray(e.to_string()))
}

/// Reads the JSON body of `POST /_sandbox/movements`.
fn parse_movement(body: &[u8]) -> Result<AddMovement, InvalidMovement> {
    let value: Value = serde_json::from_slice(body).map_err(|e| invalid("body", format!("not valid JSON ({e})")))?;
    let Value::Object(mut map) = value else {
        return Err(invalid("body", "must be a JSON object"));
    };
    let username = required_string(&mut map, "username")?;
    let amount = required_string(&mut map, "amount")?;
    let currency = required_string(&mut map, "currency")?;
    let description = required_string(&mut map, "description")?;
    let name = match map.remove("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name),
        Some(_) => return Err(invalid("name", "must be a string or null")),
    };
    let received_at = match map.remove("received_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(date)) => Some(
            DateTime::parse_from_rfc3339(&date)
                .map_err(|_| invalid("received_at", "must be an RFC 3339 date-time"))?
                .with_timezone(&Utc),
        ),
        Some(_) => return Err(invalid("received_at", "must be an RFC 3339 date-time string or null")),
    };
    Ok(AddMovement {
        username,
        amount,
        currency,
        name,
        description,
        received_at,
    })
}

fn required_string(map: &mut Map<String, Value>, field: &'static str) -> Result<String, InvalidMovement> {
    match map.remove(field) {
        Some(Value::String(s)) => Ok(s),
        None => Err(invalid(field, "missing")),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

#[derive(Debug, Serialize)]
struct ErrorOut {
    error: String,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(ErrorOut { error: message.into() })).into_response()
}

fn body_error(rejection: &BytesRejection) -> Response {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        error(status, "body: too large")
    } else {
        error(status, format!("body: could not be read ({rejection})"))
    }
}

#[derive(Debug, Serialize)]
struct CreatedOut {
    id: String,
}

/// `POST /_sandbox/movements`.
pub(crate) async fn post_movement(State(bank): State<SandboxBank>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return body_error(&rejection),
    };
    match parse_movement(&body).and_then(|m| bank.add_movement(m)) {
        Ok(id) => (StatusCode::CREATED, Json(CreatedOut { id })).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ShopQuery {
    shop: Option<String>,
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .is_some_and(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && token.trim() == SHOP_TOKEN)
}

fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "unauthorized")
}

/// The shop a request names, checked; the refusal's message otherwise.
fn shop_of(query: Result<Query<ShopQuery>, QueryRejection>) -> Result<String, String> {
    let Ok(Query(query)) = query else {
        return Err("query: could not be read".to_owned());
    };
    let shop = query.shop.unwrap_or_else(|| DEFAULT_SHOP.to_owned());
    check_shop_name(&shop).map_err(|e| e.to_string())?;
    Ok(shop)
}

/// `GET /_sandbox/shop/orders`.
pub(crate) async fn get_orders(
    State(bank): State<SandboxBank>,
    headers: HeaderMap,
    query: Result<Query<ShopQuery>, QueryRejection>,
) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    match shop_of(query) {
        Ok(shop) => ([(header::CONTENT_TYPE, "application/json")], bank.shop_orders(&shop)).into_response(),
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

/// `PUT /_sandbox/shop/orders`.
pub(crate) async fn put_orders(
    State(bank): State<SandboxBank>,
    headers: HeaderMap,
    query: Result<Query<ShopQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    let shop = match shop_of(query) {
        Ok(shop) => shop,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return body_error(&rejection),
    };
    let result = std::str::from_utf8(&body)
        .map_err(|_| InvalidOrders::NotAnArray("not UTF-8".to_owned()))
        .and_then(|orders| bank.set_shop_orders(&shop, orders));
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_must_be_a_json_array_of_anything() {
        for ok in [
            "[]",
            " [ ] ",
            r#"[{"amount": 1.5e3}, {"amount": 1e400}, {"amount": 0.123456789012345678901}]"#,
            "[1, \"x\", null, [true]]",
            "\u{feff}[]",
        ] {
            assert_eq!(check_orders(ok.as_bytes()), Ok(()), "{ok}");
        }
        for bad in ["", "{}", r#"{"data": []}"#, "1", "\"[]\"", "[", "[] []", "null"] {
            assert!(check_orders(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(check_orders(b"[\"\xff\"]").is_err());
    }

    #[test]
    fn movement_bodies_name_the_bad_field() {
        let field = |body: &str| parse_movement(body.as_bytes()).map(|_| ()).map_err(|e| e.field);
        let ok = r#"{"username":"user_good","amount":"1","currency":"UYU","description":""}"#;
        assert_eq!(field(ok), Ok(()));
        assert_eq!(field("{"), Err("body"));
        assert_eq!(field("[]"), Err("body"));
        assert_eq!(
            field(r#"{"username":"user_good","amount":1,"currency":"UYU","description":""}"#),
            Err("amount")
        );
        assert_eq!(
            field(r#"{"username":"user_good","amount":"1","currency":"UYU"}"#),
            Err("description")
        );
        assert_eq!(
            field(r#"{"username":"user_good","amount":"1","currency":"UYU","description":"","name":5}"#),
            Err("name")
        );
        assert_eq!(
            field(
                r#"{"username":"user_good","amount":"1","currency":"UYU","description":"","received_at":"yesterday"}"#
            ),
            Err("received_at")
        );
    }
}
