//! The connector for the built-in sandbox bank (SPEC §10). It drives the bank's website the way
//! a scraper drives a real bank: a cookie jar, the login form (with its CSRF token), the OTP
//! challenge page (whose `data-length` / `data-type` / `data-purpose` describe the code), and
//! the movements view. It classifies every failure as fatal or retryable.

use std::time::Duration;

use async_trait::async_trait;
use reconbanker_store::{CodeKind, Descriptor, NewMovement};
use reqwest::header::LOCATION;
use reqwest::{redirect, StatusCode};
use scraper::{Html, Selector};
use serde::Deserialize;
use url::Url;

use super::connector::{BankConnector, BankSession, CodeSource, ConnectorError, Credentials, Fatal};

pub struct SandboxConnector {
    base: Url,
    timeout: Duration,
}

impl SandboxConnector {
    /// `base` is the bank's root URL, e.g. `http://127.0.0.1:3100/`.
    pub fn new(base: Url, timeout: Duration) -> Self {
        Self { base, timeout }
    }
}

fn retryable(e: reqwest::Error) -> ConnectorError {
    // reqwest's message names the URL (no secrets in it) and the kind: timeout, connect, body.
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

fn selector(css: &str) -> Selector {
    // The selectors are constants of this file; a typo is a bug caught by the tests.
    Selector::parse(css).unwrap_or_else(|_| Selector::parse("*").unwrap_or_else(|_| unreachable!()))
}

/// The `data-error` marker of a page, if any.
fn page_error(html: &Html) -> Option<String> {
    html.select(&selector("[data-error]"))
        .next()
        .and_then(|e| e.value().attr("data-error"))
        .map(str::to_owned)
}

fn input_value(html: &Html, form: &str, name: &str) -> Option<String> {
    let css = format!("{form} input[name=\"{name}\"]");
    html.select(&selector(&css))
        .next()
        .and_then(|e| e.value().attr("value"))
        .map(str::to_owned)
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

async fn read(res: reqwest::Response) -> Result<Page, ConnectorError> {
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

fn redirected_to(page: &Page, path: &str) -> bool {
    page.status.is_redirection() && page.location.as_deref().is_some_and(|l| l.ends_with(path))
}

impl SandboxConnector {
    fn url(&self, path: &str) -> Result<Url, ConnectorError> {
        self.base
            .join(path)
            .map_err(|_| ConnectorError::Retryable("bad bank URL".into()))
    }

    async fn get(&self, client: &reqwest::Client, path: &str) -> Result<Page, ConnectorError> {
        read(client.get(self.url(path)?).send().await.map_err(retryable)?).await
    }

    async fn post(&self, client: &reqwest::Client, path: &str, form: &[(&str, &str)]) -> Result<Page, ConnectorError> {
        read(
            client
                .post(self.url(path)?)
                .form(form)
                .send()
                .await
                .map_err(retryable)?,
        )
        .await
    }

    /// The OTP challenge: asks the engine for codes until the bank accepts one or gives up.
    async fn challenge(&self, client: &reqwest::Client, codes: &mut dyn CodeSource) -> Result<(), ConnectorError> {
        loop {
            let page = self.get(client, "/otp").await?;
            if redirected_to(&page, "/login") {
                return Err(ConnectorError::Retryable(
                    "bank dropped the login during the challenge".into(),
                ));
            }
            let (descriptor, csrf) = {
                let html = Html::parse_document(&page.body);
                let form = html
                    .select(&selector("form#otp-form"))
                    .next()
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
                (
                    descriptor,
                    input_value(&html, "form#otp-form", "csrf").unwrap_or_default(),
                )
            };
            let code = codes.code(&descriptor).await?;
            let answer = self
                .post(client, "/otp", &[("code", code.expose()), ("csrf", &csrf)])
                .await?;
            if answer.status.is_redirection() {
                return if redirected_to(&answer, "/login") {
                    Err(ConnectorError::Fatal(Fatal::OtpRejected))
                } else {
                    Ok(())
                };
            }
            let error = page_error(&Html::parse_document(&answer.body));
            match error.as_deref() {
                Some("wrong_code") => codes.rejected().await,
                Some("otp_locked") => return Err(ConnectorError::Fatal(Fatal::OtpRejected)),
                Some(other) => return Err(ConnectorError::Retryable(format!("unexpected OTP answer: {other}"))),
                None => return Err(ConnectorError::Retryable("unexpected OTP answer".into())),
            }
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
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(redirect::Policy::none())
            .timeout(self.timeout)
            .build()
            .map_err(|_| ConnectorError::Retryable("HTTP client".into()))?;
        let form = self.get(&client, "/login").await?;
        let csrf = input_value(&Html::parse_document(&form.body), "form#login-form", "csrf").unwrap_or_default();
        let answer = self
            .post(
                &client,
                "/login",
                &[
                    ("username", &credentials.username),
                    ("password", &credentials.password),
                    ("csrf", &csrf),
                ],
            )
            .await?;
        if redirected_to(&answer, "/otp") {
            self.challenge(&client, codes).await?;
        } else if !answer.status.is_redirection() {
            let error = page_error(&Html::parse_document(&answer.body));
            return Err(match error.as_deref() {
                Some("bad_credentials") => ConnectorError::Fatal(Fatal::BadCredentials),
                Some("account_locked") => ConnectorError::Fatal(Fatal::AccountLocked),
                Some(other) => ConnectorError::Retryable(format!("login refused: {other}")),
                None => ConnectorError::Retryable(format!("unexpected login answer {}", answer.status.as_u16())),
            });
        }
        Ok(Box::new(SandboxSession {
            client,
            base: self.base.clone(),
        }))
    }
}

struct SandboxSession {
    client: reqwest::Client,
    base: Url,
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
        let url = self
            .base
            .join("/api/movements")
            .map_err(|_| ConnectorError::Retryable("bad bank URL".into()))?;
        let res = self.client.get(url).send().await.map_err(retryable)?;
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
        let url = self
            .base
            .join("/logout")
            .map_err(|_| ConnectorError::Retryable("bad bank URL".into()))?;
        self.client.post(url).send().await.map_err(retryable)?;
        Ok(())
    }
}
