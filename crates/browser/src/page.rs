//! The page facade: one leased incognito context with its page, and the few operations the
//! interpreter needs (navigate, evaluate, type, click, screenshot, watch the network). Every
//! request the page makes is paused by `Fetch` and continued only when its host is in the bank's
//! `allowed_hosts` and its resource type is not blocked.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::emulation::{
    SetLocaleOverrideParams, SetTimezoneOverrideParams, SetUserAgentOverrideParams,
};
use chromiumoxide::cdp::browser_protocol::fetch::{
    self, ContinueRequestParams, EventRequestPaused, FailRequestParams, RequestPattern, RequestStage,
};
use chromiumoxide::cdp::browser_protocol::input::{
    DispatchMouseEventParams, DispatchMouseEventType, InsertTextParams, MouseButton,
};
use chromiumoxide::cdp::browser_protocol::network::{
    CookieParam, ErrorReason, EventLoadingFailed, EventLoadingFinished, EventRequestWillBeSent, EventResponseReceived,
    GetCookiesParams, GetResponseBodyParams, ResourceType, SetCookiesParams, TimeSinceEpoch,
};
use chromiumoxide::cdp::browser_protocol::page::{
    AddScriptToEvaluateOnNewDocumentParams, CaptureScreenshotFormat, EventFrameNavigated,
    RemoveScriptToEvaluateOnNewDocumentParams, ScriptIdentifier,
};
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::Page;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::task::JoinHandle;

use crate::def::{host_allowed, BankDef};
use crate::runtime::{BrowserRuntime, DisposeGuard, Live, RuntimeError};

/// Why a page operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("the browser crashed")]
    Crashed,
    #[error("timed out")]
    Timeout,
    /// The page was navigating (its document went away under the command): try again.
    #[error("the page is navigating")]
    Navigating,
    #[error("page script failed: {0}")]
    Script(String),
    #[error("browser: {0}")]
    Cdp(String),
}

/// One response the page received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub seq: u64,
    pub url: String,
    pub status: u16,
    pub document: bool,
}

/// A captured response body.
#[derive(Debug, Clone)]
pub struct Captured {
    pub seq: u64,
    pub url: String,
    pub status: u16,
    pub body: String,
}

#[derive(Debug, Default)]
struct NetState {
    seq: u64,
    seen: Vec<Seen>,
    /// Requests in flight (sent, not finished or failed).
    pending: HashSet<String>,
    /// Request id → (url, status) of responses whose body may be captured.
    responses: HashMap<String, (String, u16)>,
    capture: Vec<String>,
    captured: Vec<Captured>,
    navigations: u64,
    blocked: Vec<String>,
    /// Request headers (lower-case names) to capture from the page's own requests, and the
    /// latest value of each seen (`read = "http"`'s `headers`; secrets, never logged).
    want_headers: Vec<String>,
    headers: HashMap<String, Secret>,
}

/// A captured header value: `Debug` does not show it.
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Default)]
pub(crate) struct Net {
    state: Mutex<NetState>,
    changed: Notify,
}

impl Net {
    fn lock(&self) -> MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A leased incognito context and its page. Dropping it disposes the context (through the
/// runtime's disposer task) and returns the permit.
/// A cookie kept from one login for the next (remember-device, CONNECTORS §4): what
/// `Network.setCookies` needs to set it again. `Debug` leaves the value out.
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeptCookie {
    pub name: String,
    pub value: String,
    pub domain: String,
    pub path: String,
    pub secure: bool,
    pub http_only: bool,
    /// Seconds since the epoch.
    pub expires: f64,
}

impl std::fmt::Debug for KeptCookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptCookie")
            .field("name", &self.name)
            .field("domain", &self.domain)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

pub struct ContextLease {
    page: Page,
    net: Arc<Net>,
    live: Arc<Live>,
    tasks: Vec<JoinHandle<()>>,
    runtime: Weak<BrowserRuntime>,
    _guard: DisposeGuard,
    _permit: OwnedSemaphorePermit,
}

impl Drop for ContextLease {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn cdp_err(live: &Live, e: chromiumoxide::error::CdpError) -> PageError {
    if live.is_dead() {
        return PageError::Crashed;
    }
    let text = e.to_string();
    if text.contains("context") && (text.contains("destroyed") || text.contains("Cannot find"))
        || text.contains("navigated or closed")
    {
        PageError::Navigating
    } else if matches!(e, chromiumoxide::error::CdpError::Timeout) {
        PageError::Timeout
    } else {
        PageError::Cdp(text)
    }
}

impl ContextLease {
    pub(crate) async fn start(
        page: Page,
        def: &BankDef,
        permit: OwnedSemaphorePermit,
        guard: DisposeGuard,
        live: Arc<Live>,
        runtime: Weak<BrowserRuntime>,
    ) -> Result<ContextLease, RuntimeError> {
        let cdp = |e: chromiumoxide::error::CdpError| RuntimeError::Cdp(e.to_string());
        let net = Arc::new(Net::default());
        let mut tasks = Vec::new();

        // Listeners first, then interception: no request slips through unjudged.
        let mut paused = page.event_listener::<EventRequestPaused>().await.map_err(cdp)?;
        let hosts = def.allowed_hosts.clone();
        let blocked_types: Vec<String> = def.block_resources.iter().map(|t| t.to_ascii_lowercase()).collect();
        let p = page.clone();
        let n = Arc::clone(&net);
        tasks.push(tokio::spawn(async move {
            while let Some(ev) = paused.next().await {
                let host = url::Url::parse(&ev.request.url)
                    .ok()
                    .map(|u| (u.scheme().to_owned(), u.host_str().unwrap_or_default().to_owned()));
                let allowed = match &host {
                    Some((scheme, _)) if matches!(scheme.as_str(), "data" | "blob" | "about") => true,
                    Some((scheme, h)) if matches!(scheme.as_str(), "http" | "https" | "ws" | "wss") => {
                        host_allowed(&hosts, h)
                    }
                    _ => false,
                };
                let kind = resource_kind(&ev.resource_type);
                if !allowed {
                    let h = host.map(|(_, h)| h).unwrap_or_default();
                    tracing::warn!(host = %h, "a page request to a host outside allowed_hosts was blocked");
                    n.lock().blocked.push(h);
                    n.changed.notify_waiters();
                }
                let result = if !allowed || blocked_types.contains(&kind) {
                    p.execute(FailRequestParams::new(
                        ev.request_id.clone(),
                        ErrorReason::BlockedByClient,
                    ))
                    .await
                    .map(|_| ())
                } else {
                    p.execute(ContinueRequestParams::new(ev.request_id.clone()))
                        .await
                        .map(|_| ())
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "request interception");
                }
            }
        }));
        page.execute(
            fetch::EnableParams::builder()
                .pattern(
                    RequestPattern::builder()
                        .url_pattern("*")
                        .request_stage(RequestStage::Request)
                        .build(),
                )
                .build(),
        )
        .await
        .map_err(cdp)?;

        let mut sent = page.event_listener::<EventRequestWillBeSent>().await.map_err(cdp)?;
        let mut received = page.event_listener::<EventResponseReceived>().await.map_err(cdp)?;
        let mut finished = page.event_listener::<EventLoadingFinished>().await.map_err(cdp)?;
        let mut failed = page.event_listener::<EventLoadingFailed>().await.map_err(cdp)?;
        let mut navigated = page.event_listener::<EventFrameNavigated>().await.map_err(cdp)?;
        let hosts_for_headers = def.allowed_hosts.clone();
        let p = page.clone();
        let n = Arc::clone(&net);
        tasks.push(tokio::spawn(async move {
            loop {
                // Biased, in the order Chromium sends them: a response is recorded before its
                // "finished" is handled (a random pick would sometimes lose the capture).
                tokio::select! {
                    biased;
                    Some(ev) = sent.next() => {
                        let mut st = n.lock();
                        st.pending.insert(ev.request_id.inner().clone());
                        if !st.want_headers.is_empty() && request_allowed(&hosts_for_headers, &ev.request.url) {
                            let mut got = false;
                            if let Some(map) = ev.request.headers.inner().as_object() {
                                for (name, value) in map {
                                    let name = name.to_ascii_lowercase();
                                    if let (true, Some(v)) = (st.want_headers.contains(&name), value.as_str()) {
                                        st.headers.insert(name, Secret(v.to_owned()));
                                        got = true;
                                    }
                                }
                            }
                            drop(st);
                            if got {
                                n.changed.notify_waiters();
                            }
                        }
                    }
                    Some(ev) = received.next() => {
                        let document = matches!(ev.r#type, ResourceType::Document) && ev.frame_id.as_ref().is_none_or(|f| f.inner() == p.target_id().inner());
                        let status = u16::try_from(ev.response.status).unwrap_or(0);
                        let mut st = n.lock();
                        st.seq += 1;
                        let seq = st.seq;
                        st.seen.push(Seen { seq, url: ev.response.url.clone(), status, document });
                        if st.seen.len() > 256 {
                            st.seen.drain(..128);
                        }
                        if st.capture.iter().any(|c| ev.response.url.contains(c.as_str())) {
                            st.responses.insert(ev.request_id.inner().clone(), (ev.response.url.clone(), status));
                        }
                        drop(st);
                        n.changed.notify_waiters();
                    }
                    Some(ev) = finished.next() => {
                        let id = ev.request_id.inner().clone();
                        let wanted = {
                            let mut st = n.lock();
                            st.pending.remove(&id);
                            st.responses.remove(&id)
                        };
                        if let Some((url, status)) = wanted {
                            match p.execute(GetResponseBodyParams::new(ev.request_id.clone())).await {
                                Ok(body) => {
                                    let text = if body.result.base64_encoded {
                                        use base64::Engine as _;
                                        base64::engine::general_purpose::STANDARD
                                            .decode(body.result.body.as_bytes())
                                            .ok()
                                            .and_then(|b| String::from_utf8(b).ok())
                                            .unwrap_or_default()
                                    } else {
                                        body.result.body.clone()
                                    };
                                    let mut st = n.lock();
                                    st.seq += 1;
                                    let seq = st.seq;
                                    st.captured.push(Captured { seq, url, status, body: text });
                                }
                                Err(e) => tracing::debug!(error = %e, "a captured response had no body"),
                            }
                        }
                        n.changed.notify_waiters();
                    }
                    Some(ev) = failed.next() => {
                        let mut st = n.lock();
                        st.pending.remove(ev.request_id.inner());
                        st.responses.remove(ev.request_id.inner());
                        drop(st);
                        n.changed.notify_waiters();
                    }
                    Some(ev) = navigated.next() => {
                        if ev.frame.parent_id.is_none() {
                            n.lock().navigations += 1;
                            n.changed.notify_waiters();
                        }
                    }
                    else => break,
                }
            }
        }));

        if let Some(locale) = &def.locale {
            let _ = page
                .execute(SetLocaleOverrideParams::builder().locale(locale.clone()).build())
                .await;
        }
        if let Some(tz) = &def.timezone {
            // Chromium wants an IANA id; a fixed offset other than UTC is left to the machine.
            let id = match crate::def::parse_zone(tz) {
                Some(crate::def::Zone::Iana(z)) => Some(z.name()),
                _ if tz.eq_ignore_ascii_case("utc") => Some("UTC"),
                _ => None,
            };
            if let Some(id) = id {
                let _ = page.execute(SetTimezoneOverrideParams::new(id)).await;
            }
        }
        let ua = match &def.user_agent {
            Some(ua) => Some(ua.clone()),
            // The real version string, without "HeadlessChrome".
            None => live
                .browser
                .user_agent()
                .await
                .ok()
                .map(|ua| ua.replace("HeadlessChrome", "Chrome")),
        };
        if let Some(ua) = ua {
            let mut params = SetUserAgentOverrideParams::new(ua);
            params.accept_language = def.locale.clone();
            let _ = page.execute(params).await;
        }
        Ok(ContextLease {
            page,
            net,
            live,
            tasks,
            runtime,
            _guard: guard,
            _permit: permit,
        })
    }

    /// Whether the browser behind this lease died.
    pub fn crashed(&self) -> bool {
        self.live.is_dead()
    }

    /// Resolves when the browser behind this lease dies.
    pub async fn died(&self) {
        loop {
            let notified = self.live.died.notified();
            if self.live.is_dead() {
                return;
            }
            notified.await;
        }
    }

    /// A permit to park this login on an OTP screen (held while waiting for a code).
    pub async fn waiting_permit(&self) -> Option<OwnedSemaphorePermit> {
        match self.runtime.upgrade() {
            Some(rt) => rt.waiting_permit().await,
            None => None,
        }
    }

    /// Navigates and waits for the load (at most `timeout`).
    pub async fn goto(&self, url: &str, timeout: Duration) -> Result<(), PageError> {
        tokio::select! {
            r = tokio::time::timeout(timeout, self.page.goto(url)) => match r {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(cdp_err(&self.live, e)),
                Err(_) => Err(PageError::Timeout),
            },
            _ = self.died() => Err(PageError::Crashed),
        }
    }

    /// Evaluates `expression` in the page and returns its JSON value (promises awaited).
    pub async fn eval(&self, expression: String) -> Result<Value, PageError> {
        let params = EvaluateParams::builder()
            .expression(expression)
            .return_by_value(true)
            .await_promise(true)
            .build()
            .map_err(PageError::Cdp)?;
        let res = tokio::select! {
            r = self.page.execute(params) => r.map_err(|e| cdp_err(&self.live, e))?,
            _ = self.died() => return Err(PageError::Crashed),
        };
        if let Some(ex) = &res.result.exception_details {
            let text = ex
                .exception
                .as_ref()
                .and_then(|o| o.description.clone())
                .unwrap_or_else(|| ex.text.clone());
            if text.contains("context") && text.contains("destroyed") {
                return Err(PageError::Navigating);
            }
            return Err(PageError::Script(text));
        }
        Ok(res.result.result.value.clone().unwrap_or(Value::Null))
    }

    /// Types `text` into the focused element (one `Input.insertText`: the text never becomes
    /// part of a script).
    pub async fn insert_text(&self, text: &str) -> Result<(), PageError> {
        self.page
            .execute(InsertTextParams::new(text))
            .await
            .map(|_| ())
            .map_err(|e| cdp_err(&self.live, e))
    }

    /// A real mouse click at a point of the viewport.
    pub async fn click_at(&self, x: f64, y: f64) -> Result<(), PageError> {
        // Pressed and released where the element is (two round trips; no separate move).
        for kind in [
            DispatchMouseEventType::MousePressed,
            DispatchMouseEventType::MouseReleased,
        ] {
            let params = DispatchMouseEventParams::builder()
                .r#type(kind)
                .x(x)
                .y(y)
                .button(MouseButton::Left)
                .click_count(1)
                .build()
                .map_err(PageError::Cdp)?;
            self.page.execute(params).await.map_err(|e| cdp_err(&self.live, e))?;
        }
        Ok(())
    }

    /// The cookies the current page sees (`Network.getCookies`), for remember-device.
    pub async fn cookies(&self) -> Result<Vec<KeptCookie>, PageError> {
        let res = self
            .page
            .execute(GetCookiesParams::default())
            .await
            .map_err(|e| cdp_err(&self.live, e))?;
        Ok(res
            .result
            .cookies
            .iter()
            .map(|c| KeptCookie {
                name: c.name.clone(),
                value: c.value.clone(),
                domain: c.domain.clone(),
                path: c.path.clone(),
                secure: c.secure,
                http_only: c.http_only,
                expires: if c.session { -1.0 } else { c.expires },
            })
            .collect())
    }

    /// Sets cookies in this login's context before its first page (remember-device).
    pub async fn set_cookies(&self, cookies: &[KeptCookie]) -> Result<(), PageError> {
        let params: Vec<CookieParam> = cookies
            .iter()
            .filter_map(|c| {
                CookieParam::builder()
                    .name(c.name.clone())
                    .value(c.value.clone())
                    .domain(c.domain.clone())
                    .path(c.path.clone())
                    .secure(c.secure)
                    .http_only(c.http_only)
                    .expires(TimeSinceEpoch::new(c.expires))
                    .build()
                    .ok()
            })
            .collect();
        if params.is_empty() {
            return Ok(());
        }
        self.page
            .execute(SetCookiesParams::new(params))
            .await
            .map(|_| ())
            .map_err(|e| cdp_err(&self.live, e))
    }

    /// Runs `source` in every new document of this page before the page's own scripts
    /// (`Page.addScriptToEvaluateOnNewDocument`); returns its id for [`Self::remove_init_script`].
    pub async fn add_init_script(&self, source: String) -> Result<String, PageError> {
        let res = self
            .page
            .execute(AddScriptToEvaluateOnNewDocumentParams::new(source))
            .await
            .map_err(|e| cdp_err(&self.live, e))?;
        Ok(res.result.identifier.inner().clone())
    }

    /// Stops running a script added by [`Self::add_init_script`] in new documents.
    pub async fn remove_init_script(&self, id: &str) -> Result<(), PageError> {
        self.page
            .execute(RemoveScriptToEvaluateOnNewDocumentParams::new(ScriptIdentifier::new(
                id,
            )))
            .await
            .map(|_| ())
            .map_err(|e| cdp_err(&self.live, e))
    }

    /// A JPEG (quality 60) of the viewport.
    pub async fn screenshot_jpeg(&self) -> Result<Vec<u8>, PageError> {
        let params = ScreenshotParams::builder()
            .format(CaptureScreenshotFormat::Jpeg)
            .quality(60)
            .build();
        tokio::time::timeout(Duration::from_secs(10), self.page.screenshot(params))
            .await
            .map_err(|_| PageError::Timeout)?
            .map_err(|e| cdp_err(&self.live, e))
    }

    /// The sequence number of the latest network event (a step's "since" mark).
    pub fn net_seq(&self) -> u64 {
        self.net.lock().seq
    }

    pub fn navigations(&self) -> u64 {
        self.net.lock().navigations
    }

    /// Responses seen after `since`.
    pub fn seen_since(&self, since: u64) -> Vec<Seen> {
        self.net.lock().seen.iter().filter(|s| s.seq > since).cloned().collect()
    }

    /// Whether requests are in flight.
    pub fn loading(&self) -> bool {
        !self.net.lock().pending.is_empty()
    }

    /// Hosts of requests that were blocked for being outside `allowed_hosts`.
    pub fn blocked_hosts(&self) -> Vec<String> {
        self.net.lock().blocked.clone()
    }

    /// Starts capturing bodies of responses whose URL contains `fragment` (drops earlier
    /// captures).
    pub fn arm_capture(&self, fragment: &str) {
        let mut st = self.net.lock();
        st.capture = vec![fragment.to_owned()];
        st.captured.clear();
    }

    /// Starts capturing the values of these request headers (lower case) from the page's own
    /// requests to `allowed_hosts`.
    pub fn arm_headers(&self, names: &[String]) {
        let mut st = self.net.lock();
        st.want_headers = names.to_vec();
        st.headers.clear();
    }

    /// The latest value of each armed header seen so far (secrets: never log them).
    pub fn captured_headers(&self) -> Vec<(String, String)> {
        let st = self.net.lock();
        st.want_headers
            .iter()
            .filter_map(|n| st.headers.get(n).map(|v| (n.clone(), v.0.clone())))
            .collect()
    }

    /// Bodies captured after `since`.
    pub fn captured_since(&self, since: u64) -> Vec<Captured> {
        self.net
            .lock()
            .captured
            .iter()
            .filter(|c| c.seq > since)
            .cloned()
            .collect()
    }

    /// Waits until the network state changes or `max` passes.
    pub async fn net_changed(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.net.changed.notified()).await;
    }

    /// The page's URL and title (for evidence and messages).
    pub async fn url_and_title(&self) -> (String, String) {
        let v = self
            .eval("JSON.stringify([location.href, document.title])".into())
            .await
            .ok()
            .and_then(|v| {
                v.as_str()
                    .and_then(|s| serde_json::from_str::<(String, String)>(s).ok())
            });
        v.unwrap_or_default()
    }
}

/// Whether `url` is an http(s) URL on one of `hosts`.
fn request_allowed(hosts: &[String], url: &str) -> bool {
    url::Url::parse(url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && host_allowed(hosts, u.host_str().unwrap_or_default()))
}

fn resource_kind(t: &ResourceType) -> String {
    let s: &str = t.as_ref();
    s.to_ascii_lowercase()
}
