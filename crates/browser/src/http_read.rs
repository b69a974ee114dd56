//! `read = "http"` (CONNECTORS §4): once the browser has logged in, the movements are read with
//! plain HTTP requests to the bank's JSON endpoint, carrying the login's cookies, and the browser
//! context is closed — a session then costs what an HTTP connector's does. Request headers the
//! definition names (`[movements] headers`, e.g. a bearer token) are captured from the bank's
//! own requests during the login and sent on every read; their values are secrets.

use std::sync::Arc;

use reqwest::cookie::Jar;
use url::Url;

use crate::def::{host_allowed, BankDef};
use crate::page::KeptCookie;

/// The most a movements response may weigh.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The HTTP side of a session whose browser context is gone.
pub(crate) struct HttpRead {
    client: reqwest::Client,
    url: Url,
}

/// What one read got.
pub(crate) enum Answer {
    /// The status and the body.
    Body(u16, String),
    /// A 401 or 403, or a redirect (to the bank's sign-in page): the bank's "logged out".
    LoggedOut,
}

impl HttpRead {
    /// A reader of `endpoint` (relative to the definition's `base_url`, or absolute) with the
    /// login's `cookies`. Refuses an endpoint outside the definition's `allowed_hosts`.
    /// `headers`: the values captured from the bank's own requests (`[movements] headers`),
    /// sent on every read, marked sensitive.
    pub(crate) fn new(
        def: &BankDef,
        endpoint: &str,
        cookies: &[KeptCookie],
        headers: &[(String, String)],
    ) -> Result<Self, String> {
        let url = def.base_url.join(endpoint).map_err(|e| format!("movements.url: {e}"))?;
        if !matches!(url.scheme(), "http" | "https")
            || !host_allowed(&def.allowed_hosts, url.host_str().unwrap_or_default())
        {
            return Err("movements.url: not an http(s) URL on one of allowed_hosts".into());
        }
        let jar = Arc::new(Jar::default());
        for c in cookies {
            // A cookie set with a `Domain` comes back from the browser with a leading dot; a
            // host-only cookie without one (and stays host-only here).
            let host = c.domain.trim_start_matches('.');
            let scheme = if c.secure { "https" } else { "http" };
            let Ok(origin) = Url::parse(&format!("{scheme}://{host}/")) else {
                continue;
            };
            let path = if c.path.is_empty() { "/" } else { c.path.as_str() };
            let mut line = format!("{}={}; Path={path}", c.name, c.value);
            if c.domain.starts_with('.') {
                line.push_str(&format!("; Domain={host}"));
            }
            if c.secure {
                line.push_str("; Secure");
            }
            jar.add_cookie_str(&line, &origin);
        }
        let mut default_headers = reqwest::header::HeaderMap::new();
        for (name, value) in headers {
            // The error names the header, never its value.
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("movements.headers: {name:?} is not a header name"))?;
            let mut value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| format!("movements.headers: the captured {name} is not a header value"))?;
            value.set_sensitive(true);
            default_headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .cookie_provider(jar)
            .default_headers(default_headers)
            // A bank that sends a session-less request elsewhere is saying "logged out".
            .redirect(reqwest::redirect::Policy::none())
            .timeout(def.timeouts.read)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self { client, url })
    }

    /// One read of the endpoint, its body at most [`MAX_BODY`] bytes.
    pub(crate) async fn get(&self) -> Result<Answer, String> {
        let mut res = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = res.status();
        if status.is_redirection()
            || status == reqwest::StatusCode::UNAUTHORIZED
            || status == reqwest::StatusCode::FORBIDDEN
        {
            return Ok(Answer::LoggedOut);
        }
        if res.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(format!("the response is larger than {} MiB", MAX_BODY >> 20));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| describe(&e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!("the response is larger than {} MiB", MAX_BODY >> 20));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer::Body(
            status.as_u16(),
            String::from_utf8_lossy(&body).into_owned(),
        ))
    }
}

/// A transport error without its URL (no query string in logs).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "the bank did not answer in time".into()
    } else if e.is_connect() {
        "could not reach the bank".into()
    } else {
        format!(
            "the request failed: {}",
            std::error::Error::source(e).map_or_else(|| e.to_string(), |s| s.to_string())
        )
    }
}
