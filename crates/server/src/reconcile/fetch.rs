//! Fetching the customer's pending-orders list (docs/reconciliation.md §3.2–§3.4): GET or POST with the
//! account's auth, through the guarded outbound client (public targets only unless the operator
//! allows private ones, no redirects, no environment proxy), the whole exchange bounded in time,
//! each page bounded in bytes, the poll bounded in items and pages. Any failure fails the whole
//! poll with one of the documented codes; nothing is applied from a partial list.

use std::time::Duration;

use serde_json::value::RawValue;

use super::orders::parse_page;
use crate::domain::account_config::{AuthType, PollingMethod};
use crate::domain::exact_json::{ExactJson, ExactObject};
use crate::support::outbound;

/// At most this many pages per poll (docs/reconciliation.md §3.3).
pub(crate) const MAX_PAGES: usize = 100;

/// The bounds of one poll.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// The whole exchange, every page included.
    pub timeout: Duration,
    /// Per page.
    pub max_bytes: usize,
    /// Items over all pages.
    pub max_items: usize,
}

/// What to call.
pub(crate) struct Target<'a> {
    pub url: &'a str,
    pub method: PollingMethod,
    /// `polling_body`: a JSON object or a string holding JSON; `{}` when absent.
    pub body: Option<&'a ExactJson>,
    /// `(auth_type, auth_token)`; no header when there is no token.
    pub auth: Option<(Option<AuthType>, &'a str)>,
}

/// A complete response: every item of every page, still as JSON text.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    pub items: Vec<Box<RawValue>>,
    pub bytes: u64,
    pub pages: u32,
    pub http_status: Option<u16>,
}

/// Why a poll failed (`conciliation_polls.error`), with what the log keeps about it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub code: &'static str,
    pub http_status: Option<u16>,
    pub bytes: u64,
    pub pages: u32,
}

impl Failure {
    fn new(code: &'static str, progress: &Fetched) -> Self {
        Self {
            code,
            http_status: progress.http_status,
            bytes: progress.bytes,
            pages: progress.pages,
        }
    }
}

/// Fetches every page. The client must be the guarded one ([`outbound::client`]); the target is
/// checked again here because an IP literal never reaches its resolver.
pub(crate) async fn fetch(
    client: &reqwest::Client,
    target: &Target<'_>,
    limits: Limits,
    allow_private: bool,
) -> Result<Fetched, Failure> {
    let mut progress = Fetched::default();
    match tokio::time::timeout(
        limits.timeout,
        fetch_pages(client, target, limits, allow_private, &mut progress),
    )
    .await
    {
        Ok(Ok(())) => Ok(progress),
        Ok(Err(code)) => Err(Failure::new(code, &progress)),
        // The deadline covers every page: passed after the first, it is a later page's failure.
        Err(_) => Err(Failure::new(
            if progress.pages > 0 { "page_failed" } else { "timeout" },
            &progress,
        )),
    }
}

async fn fetch_pages(
    client: &reqwest::Client,
    target: &Target<'_>,
    limits: Limits,
    allow_private: bool,
    progress: &mut Fetched,
) -> Result<(), &'static str> {
    let url = outbound::check_target(target.url, allow_private).map_err(|_| "target_refused")?;
    let base_body = match (target.method, target.body) {
        (PollingMethod::Get, _) => None,
        (PollingMethod::Post, None) => Some(ExactJson::object(&ExactObject::new())),
        (PollingMethod::Post, Some(v)) => match v.as_str() {
            // A string holding JSON is that JSON; any other string is sent as a JSON string.
            Some(text) => Some(ExactJson::parse(&text).unwrap_or_else(|| v.clone())),
            None => Some(v.clone()),
        },
    };
    let mut cursor: Option<String> = None;
    loop {
        if progress.pages as usize >= MAX_PAGES {
            return Err("page_failed");
        }
        let later_page = progress.pages > 0;
        let page_failed = |code: &'static str| if later_page { "page_failed" } else { code };
        let request = build(client, target, &url, base_body.as_ref(), cursor.as_deref()).map_err(page_failed)?;
        let response = request.send().await.map_err(|e| page_failed(classify(&e)))?;
        let status = response.status();
        progress.http_status = Some(status.as_u16());
        if status.is_redirection() {
            return Err(page_failed("redirect_refused"));
        }
        if !status.is_success() || status == reqwest::StatusCode::NO_CONTENT {
            return Err(page_failed("http_status"));
        }
        let body = read_limited(response, limits.max_bytes, progress)
            .await
            .map_err(page_failed)?;
        progress.pages += 1;
        let page = parse_page(&body).map_err(|e| page_failed(e.code()))?;
        if progress.items.len() + page.items.len() > limits.max_items {
            return Err("too_many_items");
        }
        progress.items.extend(page.items);
        match page.next_cursor {
            Some(next) if !next.is_empty() => cursor = Some(next),
            _ => return Ok(()),
        }
        if matches!(&base_body, Some(b) if !b.is_object()) {
            // A cursor goes into the POST body, which must then be an object.
            return Err("page_failed");
        }
    }
}

/// The URL of a page: the endpoint's, with `cursor=<value>` in place of any `cursor` it already
/// carries (a second one would leave the endpoint to pick, and many read the first).
fn page_url(url: &url::Url, cursor: Option<&str>) -> url::Url {
    let mut url = url.clone();
    if let Some(c) = cursor {
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "cursor")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(kept)
            .append_pair("cursor", c);
    }
    url
}

fn build(
    client: &reqwest::Client,
    target: &Target<'_>,
    url: &url::Url,
    base_body: Option<&ExactJson>,
    cursor: Option<&str>,
) -> Result<reqwest::RequestBuilder, &'static str> {
    let mut request = match (target.method, base_body) {
        (PollingMethod::Get, _) | (PollingMethod::Post, None) => client.get(page_url(url, cursor)),
        (PollingMethod::Post, Some(body)) => {
            let body = match (cursor, body.as_object()) {
                (Some(c), Some(mut members)) => {
                    members.insert("cursor".into(), ExactJson::string(c));
                    ExactJson::object(&members)
                }
                _ => body.clone(),
            };
            client
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.get().to_owned())
        }
    };
    request = request.header(reqwest::header::ACCEPT, "application/json").header(
        reqwest::header::USER_AGENT,
        concat!("Reconbanker/", env!("CARGO_PKG_VERSION")),
    );
    if let Some((kind, token)) = target.auth.filter(|(_, t)| !t.is_empty()) {
        let value = match kind {
            Some(AuthType::ApiKey) => format!("Api-Key {token}"),
            _ => format!("Bearer {token}"),
        };
        let mut header = reqwest::header::HeaderValue::from_str(&value).map_err(|_| "target_refused")?;
        header.set_sensitive(true);
        request = request.header(reqwest::header::AUTHORIZATION, header);
    }
    Ok(request)
}

/// Reads a body, stopping as soon as it exceeds `max`.
async fn read_limited(
    mut response: reqwest::Response,
    max: usize,
    progress: &mut Fetched,
) -> Result<Vec<u8>, &'static str> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err("body_too_large");
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                progress.bytes += chunk.len() as u64;
                if body.len() + chunk.len() > max {
                    return Err("body_too_large");
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) if e.is_timeout() => return Err("timeout"),
            Err(_) => return Err("connect_failed"),
        }
    }
}

fn classify(e: &reqwest::Error) -> &'static str {
    if outbound::refused_by_guard(e) {
        "target_refused"
    } else if e.is_timeout() {
        "timeout"
    } else if e.is_redirect() {
        "redirect_refused"
    } else {
        "connect_failed"
    }
}

#[cfg(test)]
mod tests {
    use super::page_url;

    #[test]
    fn a_page_cursor_replaces_the_endpoints_own() {
        let cases = [
            ("https://shop.example/orders", None, "https://shop.example/orders"),
            (
                "https://shop.example/orders?shop=x",
                None,
                "https://shop.example/orders?shop=x",
            ),
            (
                "https://shop.example/orders",
                Some("c1"),
                "https://shop.example/orders?cursor=c1",
            ),
            (
                "https://shop.example/orders?shop=x&cursor=orig&cursor=two&y=1",
                Some("c 2&"),
                "https://shop.example/orders?shop=x&y=1&cursor=c+2%26",
            ),
        ];
        for (base, cursor, want) in cases {
            let url = url::Url::parse(base).expect("url");
            assert_eq!(page_url(&url, cursor).as_str(), want, "{base} {cursor:?}");
        }
    }
}
