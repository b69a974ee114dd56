//! The connector for the built-in sandbox bank (docs/product.md §10). It drives the bank's website the way
//! a scraper drives a real bank: a cookie jar, the login form (with its CSRF token), the OTP
//! challenge page (whose `data-length` / `data-type` / `data-purpose` describe the code), and
//! the movements view. It classifies every failure as fatal or retryable.
//!
//! One HTTP client (connection pool, TLS configuration) is shared by every login; each login
//! has its own cookie jar, so thousands of waiting logins cost a jar each, not a client each.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reconbanker_store::{CodeKind, Descriptor, NewMovement};
use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{redirect, StatusCode};
use scraper::{Html, Selector};
use serde::Deserialize;
use url::Url;

use crate::engine::connector::{BankConnector, BankSession, CodeSource, ConnectorError, Credentials, Fatal};

pub struct SandboxConnector {
    base: Url,
    client: reqwest::Client,
}

impl SandboxConnector {
    /// `base` is the bank's root URL, e.g. `http://127.0.0.1:3100/`. Fails only when reqwest
    /// cannot build a client at all.
    pub fn new(base: Url, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(redirect::Policy::none())
            .timeout(timeout)
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Self { base, client })
    }
}

fn retryable(e: reqwest::Error) -> ConnectorError {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "bank unreachable"
    } else {
        "network error"
    };
    ConnectorError::Retryable(kind.into())
}

fn server_error(status: StatusCode) -> ConnectorError {
    ConnectorError::Retryable(format!("bank answered {}", status.as_u16()))
}

/// The first element matching `css` (the selectors are constants of this file: a typo is a bug
/// the end-to-end tests catch, and reads as "not found").
fn first<'a>(html: &'a Html, css: &str) -> Option<scraper::ElementRef<'a>> {
    let selector = Selector::parse(css).ok()?;
    html.select(&selector).next()
}

/// The `data-error` marker of a page, if any.
fn page_error(html: &Html) -> Option<String> {
    first(html, "[data-error]")
        .and_then(|e| e.value().attr("data-error"))
        .map(str::to_owned)
}

fn input_value(html: &Html, form: &str, name: &str) -> Option<String> {
    first(html, &format!("{form} input[name=\"{name}\"]"))
        .and_then(|e| e.value().attr("value"))
        .map(str::to_owned)
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

fn redirected_to(page: &Page, path: &str) -> bool {
    page.status.is_redirection() && page.location.as_deref().is_some_and(|l| l.ends_with(path))
}

/// A login's HTTP: the shared client, this login's cookies, the bank's root.
struct Browser {
    client: reqwest::Client,
    jar: Arc<Jar>,
    base: Url,
}

impl Browser {
    fn url(&self, path: &str) -> Result<Url, ConnectorError> {
        self.base
            .join(path)
            .map_err(|_| ConnectorError::Retryable("bad bank URL".into()))
    }

    async fn send(&self, req: reqwest::RequestBuilder, url: &Url) -> Result<reqwest::Response, ConnectorError> {
        let req = match self.jar.cookies(url) {
            Some(cookies) => req.header(COOKIE, cookies),
            None => req,
        };
        let res = req.send().await.map_err(retryable)?;
        self.jar.set_cookies(&mut res.headers().get_all(SET_COOKIE).iter(), url);
        Ok(res)
    }

    async fn page(&self, req: reqwest::RequestBuilder, url: &Url) -> Result<Page, ConnectorError> {
        let res = self.send(req, url).await?;
        let status = res.status();
        let location = res
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = res.text().await.map_err(retryable)?;
        if status.is_server_error() {
            return Err(server_error(status));
        }
        Ok(Page { status, location, body })
    }

    // A request's machinery (reqwest's future, the body being read: about 1 KiB) is boxed for
    // the request's duration: inline, it would be part of the login's future and reserved for
    // as long as the login waits for a code — with thousands waiting, that adds up.
    async fn get(&self, path: &str) -> Result<Page, ConnectorError> {
        let url = self.url(path)?;
        Box::pin(self.page(self.client.get(url.clone()), &url)).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Result<Page, ConnectorError> {
        let url = self.url(path)?;
        Box::pin(self.page(self.client.post(url.clone()).form(form), &url)).await
    }
}

/// What the challenge page asks for, and its form's CSRF token.
fn otp_form(page: Page) -> Result<(Descriptor, String), ConnectorError> {
    let html = Html::parse_document(&page.body);
    let form = first(&html, "form#otp-form")
        .ok_or_else(|| ConnectorError::Retryable("no OTP form on the challenge page".into()))?;
    let attr = |name: &str| form.value().attr(name).map(str::to_owned);
    let length = attr("data-length")
        .and_then(|l| l.parse::<u32>().ok())
        .ok_or_else(|| ConnectorError::Retryable("OTP form without a length".into()))?;
    let kind = match attr("data-type").as_deref() {
        Some("alphanumeric") => CodeKind::Alphanumeric,
        _ => CodeKind::Numeric,
    };
    let descriptor = Descriptor {
        length,
        kind,
        purpose: attr("data-purpose").filter(|p| !p.is_empty()),
    };
    Ok((
        descriptor,
        input_value(&html, "form#otp-form", "csrf").unwrap_or_default(),
    ))
}

/// The OTP challenge: asks the engine for codes until the bank accepts one or gives up.
async fn challenge(browser: &Browser, codes: &mut dyn CodeSource) -> Result<(), ConnectorError> {
    loop {
        let page = browser.get("/otp").await?;
        if redirected_to(&page, "/login") {
            return Err(ConnectorError::Retryable(
                "bank dropped the login during the challenge".into(),
            ));
        }
        // The page is consumed here: its body is not kept while the login waits for the code.
        let (descriptor, csrf) = otp_form(page)?;
        let code = codes.code(&descriptor).await?;
        let answer = browser
            .post("/otp", &[("code", code.expose()), ("csrf", &csrf)])
            .await?;
        if answer.status.is_redirection() {
            return if redirected_to(&answer, "/login") {
                Err(ConnectorError::Fatal(Fatal::OtpRejected))
            } else {
                Ok(())
            };
        }
        // Parsed into an owned value first: the parsed document must not live across an await.
        let error = page_error(&Html::parse_document(&answer.body));
        match error.as_deref() {
            Some("wrong_code") => codes.rejected().await,
            Some("otp_locked") => return Err(ConnectorError::Fatal(Fatal::OtpRejected)),
            Some(other) => return Err(ConnectorError::Retryable(format!("unexpected OTP answer: {other}"))),
            None => return Err(ConnectorError::Retryable("unexpected OTP answer".into())),
        }
    }
}

#[async_trait]
impl BankConnector for SandboxConnector {
    async fn login(
        &self,
        credentials: &Credentials,
        codes: &mut dyn CodeSource,
    ) -> Result<Box<dyn BankSession>, ConnectorError> {
        let browser = Browser {
            client: self.client.clone(),
            jar: Arc::new(Jar::default()),
            base: self.base.clone(),
        };
        // The pages are dropped as soon as they are read: a login may wait hours for its code.
        let csrf = {
            let form = browser.get("/login").await?;
            input_value(&Html::parse_document(&form.body), "form#login-form", "csrf").unwrap_or_default()
        };
        let answer = browser
            .post(
                "/login",
                &[
                    ("username", &credentials.username),
                    ("password", &credentials.password),
                    ("csrf", &csrf),
                ],
            )
            .await?;
        if redirected_to(&answer, "/otp") {
            drop(answer);
            challenge(&browser, codes).await?;
        } else if !answer.status.is_redirection() {
            return Err(match page_error(&Html::parse_document(&answer.body)).as_deref() {
                Some("bad_credentials") => ConnectorError::Fatal(Fatal::BadCredentials),
                Some("account_locked") => ConnectorError::Fatal(Fatal::AccountLocked),
                Some(other) => ConnectorError::Retryable(format!("login refused: {other}")),
                None => ConnectorError::Retryable(format!("unexpected login answer {}", answer.status.as_u16())),
            });
        }
        Ok(Box::new(SandboxSession { browser }))
    }
}

struct SandboxSession {
    browser: Browser,
}

#[derive(Deserialize)]
struct MovementsJson {
    movements: Vec<MovementJson>,
}

#[derive(Deserialize)]
struct MovementJson {
    id: String,
    date: String,
    amount: String,
    currency: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: String,
}

#[async_trait]
impl BankSession for SandboxSession {
    async fn read_movements(&mut self) -> Result<Vec<NewMovement>, ConnectorError> {
        let url = self.browser.url("/api/movements")?;
        let res = self.browser.send(self.browser.client.get(url.clone()), &url).await?;
        let status = res.status();
        if status == StatusCode::UNAUTHORIZED || status.is_redirection() {
            return Err(ConnectorError::SessionExpired);
        }
        if status.is_server_error() {
            return Err(server_error(status));
        }
        if !status.is_success() {
            return Err(ConnectorError::Retryable(format!(
                "movements answered {}",
                status.as_u16()
            )));
        }
        let body: MovementsJson = res
            .json()
            .await
            .map_err(|_| ConnectorError::Retryable("movements were not the expected JSON".into()))?;
        Ok(body
            .movements
            .into_iter()
            .map(|m| NewMovement {
                external_id: m.id,
                amount: m.amount,
                currency: m.currency,
                name: m.name.filter(|n| !n.is_empty()),
                description: m.description,
                received_at: m.date,
            })
            .collect())
    }

    async fn logout(&mut self) -> Result<(), ConnectorError> {
        let url = self.browser.url("/logout")?;
        self.browser.send(self.browser.client.post(url.clone()), &url).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assistance::broker::OtpCode;
    use crate::engine::connector::NoCode;

    struct NoCodes;

    #[async_trait]
    impl CodeSource for NoCodes {
        async fn code(&mut self, _: &Descriptor) -> Result<OtpCode, NoCode> {
            Err(NoCode::Cancelled)
        }
        async fn rejected(&mut self) {}
    }

    /// A login's future lives for as long as the login waits for its code, so the HTTP
    /// machinery of each request (reqwest's future, the body being read) is boxed for the
    /// request's duration instead of being part of it: 776 bytes, 1,800 with it inline
    /// (docs/benchmarks.md, session 23).
    #[tokio::test]
    async fn a_waiting_login_does_not_reserve_room_for_its_requests() {
        let base = Url::parse("http://127.0.0.1:9/").expect("url");
        let connector = SandboxConnector::new(base, Duration::from_secs(1)).expect("client");
        let creds = Credentials {
            username: "u".into(),
            password: "p".into(),
            remembered: None,
        };
        let mut codes = NoCodes;
        let login = connector.login(&creds, &mut codes);
        let size = std::mem::size_of_val(&*login);
        assert!(
            size <= 1200,
            "the login future is {size} bytes: a request's future is inline again"
        );
    }
}
