//! Issue 10: a one-time flash across POST/redirect/GET, for what a POST must show exactly once
//! (a rotated signing secret, a new API key) without the page that shows it being the POST's answer — reloading
//! that would send the POST again. The POST seals the value with the master key (AES-256-GCM,
//! bound to the user and the purpose as associated data, with a 60-second deadline inside) into
//! the `rb_flash` cookie (HttpOnly, SameSite=Strict, Path=/app) and redirects; the GET that shows
//! it deletes the cookie in its answer, so a reload shows nothing. Nothing is kept on the server,
//! so it works whichever instance answers the GET.

use axum::http::{HeaderMap, HeaderValue};
use reconbanker_store::{now, UserId};

use super::session::{cookie, set_cookie};
use crate::AppState;

pub const FLASH_COOKIE: &str = "rb_flash";
/// How long a flash waits for its GET.
const FLASH_SECS: i64 = 60;

fn aad(user: UserId, purpose: &str) -> Vec<u8> {
    format!("ui-flash:{user}:{purpose}").into_bytes()
}

/// The `Set-Cookie` that carries `value` to the next page of `user` that takes `purpose`.
pub fn put(app: &AppState, user: UserId, purpose: &str, value: &str) -> HeaderValue {
    let until = now().timestamp() + FLASH_SECS;
    let sealed = app
        .sealer
        .seal(format!("{until}:{value}").as_bytes(), &aad(user, purpose));
    let text = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sealed);
    set_cookie(app, FLASH_COOKIE, &text, FLASH_SECS)
}

/// The flash for `purpose`, if the request carries one that opens and is in time; with the
/// `Set-Cookie` that deletes it then (another purpose's flash is left to its own page, and an
/// old one to its `Max-Age`).
pub fn take(app: &AppState, headers: &HeaderMap, user: UserId, purpose: &str) -> (Option<String>, Option<HeaderValue>) {
    let Some(raw) = cookie(headers, FLASH_COOKIE) else {
        return (None, None);
    };
    let value = (|| {
        let sealed = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw).ok()?;
        let plain = app.sealer.open(&sealed, &aad(user, purpose)).ok()?;
        let text = String::from_utf8(plain).ok()?;
        let (until, value) = text.split_once(':')?;
        (now().timestamp() < until.parse::<i64>().ok()?).then(|| value.to_owned())
    })();
    let clear = value.as_ref().map(|_| set_cookie(app, FLASH_COOKIE, "", 0));
    (value, clear)
}
