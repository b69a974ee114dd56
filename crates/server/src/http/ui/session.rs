//! Issue 10: browser sign-in for the dashboard. A signed-in browser holds one cookie,
//! `rb_session`: a dashboard JWT (the same tokens as the JSON API, so sign-out revokes it in
//! `revoked_tokens` and every request re-checks that), `HttpOnly`, `SameSite=Strict`, `Path=/app`,
//! `Secure` with `RECONBANKER_SECURE_COOKIES`.
//!
//! CSRF, on every state-changing request, two independent checks:
//! 1. the request comes from the dashboard's own origin: `Sec-Fetch-Site: same-origin` when the
//!    browser sends it, and `Origin` equal to this server's origin (scheme, host and port — so
//!    another port on the same host is refused); a request with neither is refused;
//! 2. a synchronizer token: signed in, `HMAC-SHA256(key derived from the master key, jti)`, sent in
//!    the form field `csrf` or the `x-csrf-token` header; before sign-in, a random value in the
//!    `rb_pre` cookie repeated in the form (the sign-in and register forms).

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, HOST, ORIGIN, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use rand::Rng;
use reconbanker_store::{now, UserRow};
use subtle::ConstantTimeEq;

use crate::auth::jwt::Claims;
use crate::AppState;

pub const SESSION_COOKIE: &str = "rb_session";
pub const PRE_COOKIE: &str = "rb_pre";
pub const SECOND_FACTOR_COOKIE: &str = "rb_2fa";
/// How long a sign-in may wait between its password and its code.
pub const SECOND_FACTOR_SECS: i64 = 300;

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value for the dashboard (`max_age` 0 deletes it).
pub fn set_cookie(app: &AppState, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if app.config.secure_cookies { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path=/app; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("rb_invalid=; Max-Age=0"))
}

pub fn random_token() -> String {
    hex::encode(rand::thread_rng().gen::<[u8; 32]>())
}

/// The signed-in user's synchronizer token.
pub fn csrf_token(app: &AppState, claims: &Claims) -> String {
    hex::encode(app.csrf_keys.hash(&format!("csrf:{}", claims.jti)))
}

/// Whether the request comes from this server's own origin (check 1 above): the configured
/// public origin (`RECONBANKER_PUBLIC_ORIGIN`, for a proxy that rewrites `Host`), else the
/// `Host` the request names.
pub fn same_origin(headers: &HeaderMap, public: Option<&str>) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        if site.as_bytes() != b"same-origin" {
            return false;
        }
    }
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    if public.is_none() && host.is_none() {
        return false;
    }
    match headers.get(ORIGIN).and_then(|o| o.to_str().ok()) {
        Some(origin) => {
            let origin = origin.trim_end_matches('/');
            match (public, host) {
                (Some(public), _) => origin == public,
                (None, Some(host)) => origin == format!("http://{host}") || origin == format!("https://{host}"),
                (None, None) => false,
            }
        }
        // Every browser that sends no `Origin` on a POST sends `Sec-Fetch-Site` (checked above);
        // with neither, nothing says where the request came from.
        None => headers.contains_key("sec-fetch-site"),
    }
}

/// Constant-time comparison of two tokens.
pub fn tokens_match(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A browser signed in with the session cookie.
pub struct UiUser {
    pub user: UserRow,
    pub claims: Claims,
    pub csrf: String,
}

/// Not signed in: to the sign-in page.
pub struct SignInFirst;

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        Redirect::to("/app/login").into_response()
    }
}

impl FromRequestParts<AppState> for UiUser {
    type Rejection = SignInFirst;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let token = cookie(&parts.headers, SESSION_COOKIE).ok_or(SignInFirst)?;
        let claims = app.jwt.verify(token).ok_or(SignInFirst)?;
        let user = match app.store.session_user(claims.sub, claims.jti).await {
            Ok(Some(u)) => u,
            Ok(None) => return Err(SignInFirst),
            Err(e) => {
                tracing::warn!(error = %e, "could not check a dashboard session");
                return Err(SignInFirst);
            }
        };
        let csrf = csrf_token(app, &claims);
        Ok(UiUser { user, claims, csrf })
    }
}

/// Starts a browser session for `user`: the cookie to set.
pub fn start_session(app: &AppState, user: &UserRow) -> Result<HeaderValue, String> {
    let (token, _) = app.jwt.issue(user.id, now()).map_err(|e| e.to_string())?;
    let max_age = app.config.jwt_ttl.as_secs() as i64;
    Ok(set_cookie(app, SESSION_COOKIE, &token, max_age))
}

/// A response that also sets cookies.
pub fn with_cookies(res: impl IntoResponse, cookies: Vec<HeaderValue>) -> Response {
    let mut res = res.into_response();
    for c in cookies {
        res.headers_mut().append(SET_COOKIE, c);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn only_the_same_origin_passes() {
        let same = [("host", "127.0.0.1:3000"), ("origin", "http://127.0.0.1:3000")];
        assert!(same_origin(&headers(&same), None));
        assert!(same_origin(
            &headers(&[
                ("host", "127.0.0.1:3000"),
                ("origin", "http://127.0.0.1:3000"),
                ("sec-fetch-site", "same-origin"),
            ]),
            None
        ));
        for bad in [
            vec![("host", "127.0.0.1:3000"), ("origin", "http://127.0.0.1:3001")],
            vec![("host", "127.0.0.1:3000"), ("origin", "http://evil.example")],
            vec![("host", "127.0.0.1:3000"), ("origin", "null")],
            vec![
                ("host", "127.0.0.1:3000"),
                ("origin", "http://127.0.0.1:3000"),
                ("sec-fetch-site", "same-site"),
            ],
            vec![("host", "127.0.0.1:3000"), ("sec-fetch-site", "cross-site")],
            vec![("host", "127.0.0.1:3000")],
        ] {
            assert!(!same_origin(&headers(&bad), None), "{bad:?}");
        }
    }

    #[test]
    fn behind_a_proxy_the_public_origin_is_the_one_that_passes() {
        // The proxy rewrote Host; the browser's Origin is the public one.
        let public = Some("https://dash.example.com");
        let proxied = [("host", "127.0.0.1:3000"), ("origin", "https://dash.example.com")];
        assert!(!same_origin(&headers(&proxied), None), "without the setting: refused");
        assert!(same_origin(&headers(&proxied), public));
        assert!(same_origin(
            &headers(&[("origin", "https://dash.example.com/")]),
            public
        ));
        for bad in [
            vec![("host", "127.0.0.1:3000"), ("origin", "http://127.0.0.1:3000")],
            vec![("host", "dash.example.com"), ("origin", "http://dash.example.com")],
            vec![("host", "127.0.0.1:3000"), ("origin", "https://dash.example.com:8443")],
            vec![("host", "127.0.0.1:3000")],
        ] {
            assert!(!same_origin(&headers(&bad), public), "{bad:?}");
        }
    }

    #[test]
    fn cookies_are_found_by_name() {
        let h = headers(&[("cookie", "a=1; rb_session=tok; b=2")]);
        assert_eq!(cookie(&h, "rb_session"), Some("tok"));
        assert_eq!(cookie(&h, "rb"), None);
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("", ""));
        assert!(!tokens_match("abc", "abd"));
    }
}
