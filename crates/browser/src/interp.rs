//! The step interpreter: runs a [`BankDef`]'s login, OTP block, movements read and logout on a
//! leased context. Waits are woken by the page (a `MutationObserver` in the helper) and by the
//! network (the lease's notifications); outcome rules are checked during every wait.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::def::{
    Action, BankDef, BranchTo, Cond, FatalKind, FillValue, FromPage, Locator, Pick, Source, Step, Verdict,
};
use crate::evidence::Evidence;
use crate::extract::{self, Movement, RawRow};
use crate::http_read::{Answer, HttpRead};
use crate::page::{ContextLease, PageError};
use crate::runtime::{BrowserRuntime, RuntimeError};

const HELPER: &str = include_str!("dom.js");
/// DOM snapshots in evidence are cut here.
const DOM_MAX: usize = 512 * 1024;

/// The credentials of one login. Only ever typed into the page, never part of a script.
pub struct Creds<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub extra: &'a BTreeMap<String, String>,
    /// What the last successful login kept (remember-device; [`Session::remembered`]), opened
    /// by the engine: set in the context before the first page.
    pub remembered: Option<&'a str>,
}

/// What the bank asks for, read from its OTP screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtpRequest {
    pub length: u32,
    pub alphanumeric: bool,
    pub purpose: Option<String>,
}

/// Why no code will come (mirrors the engine's reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoCode {
    NotAssisted,
    Expired,
    Cancelled,
    Unavailable,
}

/// How a login asks for codes (the engine's `CodeSource`, adapted by the server).
#[async_trait]
pub trait CodeAsk: Send {
    async fn code(&mut self, request: &OtpRequest) -> Result<String, NoCode>;
    async fn rejected(&mut self);
}

/// How a login or a read failed.
#[derive(Debug)]
pub enum Failure {
    Fatal(FatalKind, Option<Box<Evidence>>),
    Retryable(String, Option<Box<Evidence>>),
    /// The page does not match the definition any more.
    Broken {
        step: String,
        detail: String,
        evidence: Option<Box<Evidence>>,
    },
    SessionExpired,
    NoCode(NoCode),
}

impl Failure {
    pub fn evidence(&self) -> Option<&Evidence> {
        match self {
            Failure::Fatal(_, e) | Failure::Retryable(_, e) | Failure::Broken { evidence: e, .. } => e.as_deref(),
            _ => None,
        }
    }
}

impl From<RuntimeError> for Failure {
    fn from(e: RuntimeError) -> Self {
        Failure::Retryable(e.to_string(), None)
    }
}

/// A logged-in browser session: the lease stays open (the page parked on the bank).
pub struct Session {
    conn: Conn,
    def: Arc<BankDef>,
    evidence_on: bool,
    remembered: Option<String>,
    /// The variables the login's `eval … as` steps set (each read starts from these).
    vars: BTreeMap<String, Value>,
    /// Held by a read or the logout; the keep-alive timer skips a tick while it is taken.
    busy: Arc<tokio::sync::Mutex<()>>,
    /// `[session] keep_alive = "4m"`: the timer task running the watch rules between reads.
    keeper: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        // The timer dies with the session (it holds the page only weakly, and only per tick).
        if let Some(k) = &self.keeper {
            k.abort();
        }
    }
}

/// The keep-alive timer of a parked session: every `every`, unless a read or the logout is
/// using the page, the watch rules are checked once on it (and their controls clicked), so a
/// bank's "are you still there?" dialog is answered between reads too. Ends when the session
/// (and with it the page) is gone or the browser died.
fn keep_alive(
    lease: &Arc<ContextLease>,
    def: &Arc<BankDef>,
    busy: &Arc<tokio::sync::Mutex<()>>,
    every: Duration,
    vars: BTreeMap<String, Value>,
) -> tokio::task::JoinHandle<()> {
    let (page, def, busy) = (Arc::downgrade(lease), Arc::clone(def), Arc::clone(busy));
    tokio::spawn(async move {
        let mut timer = tokio::time::interval_at(Instant::now() + every, every);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            timer.tick().await;
            let Some(lease) = page.upgrade() else { return };
            if lease.crashed() {
                return;
            }
            let Ok(_using) = busy.try_lock() else {
                continue;
            };
            let mut run = Run::new(&lease, &def, false);
            run.vars = vars.clone();
            let since = lease.net_seq();
            // One look: outcome rules and conditions are the reads' business, not the timer's.
            if let Err(e) = run.wait_any(&[], since, Duration::ZERO, &|| false).await {
                tracing::debug!(bank = %def.code, error = ?e, "keep_alive: the page did not answer");
            }
        }
    })
}

/// What a wait found.
enum Hit {
    Cond(usize),
    Outcome(Verdict),
    Ready,
    Timeout,
}

struct Run<'a> {
    lease: &'a ContextLease,
    def: &'a BankDef,
    trail: Vec<String>,
    /// A code is in the page: no evidence now.
    code_typed: bool,
    evidence_on: bool,
    /// Variables of `eval … as` steps (secret-ish page data: never logged).
    vars: BTreeMap<String, Value>,
}

fn call(args: Value) -> String {
    format!("({})({})", HELPER.trim_end().trim_end_matches(';'), args)
}

fn prims(c: &Cond, out: &mut Vec<Locator>) {
    match c {
        Cond::Visible(l) | Cond::Hidden(l) => out.push(l.clone()),
        Cond::Any(list) => list.iter().for_each(|c| prims(c, out)),
        _ => {}
    }
}

struct Snap {
    href: String,
    vis: Vec<bool>,
}

impl<'a> Run<'a> {
    fn new(lease: &'a ContextLease, def: &'a BankDef, evidence_on: bool) -> Self {
        Run {
            lease,
            def,
            trail: Vec::new(),
            code_typed: false,
            evidence_on,
            vars: BTreeMap::new(),
        }
    }

    fn page_failure(&self, e: PageError) -> Failure {
        match e {
            PageError::Crashed => Failure::Retryable("browser crashed".into(), None),
            PageError::Timeout => Failure::Retryable("the browser did not answer in time".into(), None),
            other => Failure::Retryable(other.to_string(), None),
        }
    }

    async fn op(&self, args: Value) -> Result<Value, PageError> {
        self.lease.eval(call(args)).await
    }

    /// A helper call that survives navigations (retried on the next document) until `deadline`.
    async fn op_settled(&self, args: Value, deadline: Instant) -> Result<Value, Failure> {
        loop {
            match self.op(args.clone()).await {
                Ok(v) => return Ok(v),
                Err(PageError::Navigating) if Instant::now() < deadline => {
                    self.lease.net_changed(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(self.page_failure(e)),
            }
        }
    }

    fn eval_cond(&self, c: &Cond, snap: &Snap, idx: &mut usize, since: u64) -> bool {
        match c {
            Cond::Visible(_) => {
                let v = snap.vis.get(*idx).copied().unwrap_or(false);
                *idx += 1;
                v
            }
            Cond::Hidden(_) => {
                let v = snap.vis.get(*idx).copied().unwrap_or(false);
                *idx += 1;
                !v
            }
            Cond::Url(re) => regex_lite::Regex::new(re).is_ok_and(|r| r.is_match(&snap.href)),
            Cond::Status(class) => self.lease.seen_since(since).iter().any(|s| class.matches(s.status)),
            Cond::Response(frag) => self
                .lease
                .seen_since(since)
                .iter()
                .any(|s| s.url.contains(frag.as_str())),
            Cond::Var { name, equals } => match (self.vars.get(name), equals) {
                (Some(v), Some(want)) => v == want,
                (Some(v), None) => truthy(v),
                (None, _) => false,
            },
            Cond::Any(list) => {
                // Every member consumes its primitives, matched or not.
                let mut any = false;
                for c in list {
                    any |= self.eval_cond(c, snap, idx, since);
                }
                any
            }
        }
    }

    /// Waits for the first of: an outcome rule, one of `conds`, `ready()`; or the timeout.
    async fn wait_any(
        &self,
        conds: &[&Cond],
        since: u64,
        timeout: Duration,
        ready: &(dyn Fn() -> bool + Sync),
    ) -> Result<Hit, Failure> {
        let deadline = Instant::now() + timeout;
        let outcomes = &self.def.outcomes;
        let watch = &self.def.watch;
        let mut locs = Vec::new();
        for o in outcomes {
            prims(&o.when, &mut locs);
        }
        for w in watch {
            prims(&w.when, &mut locs);
        }
        for c in conds {
            prims(c, &mut locs);
        }
        let mut args = json!({ "op": "snap", "prims": locs });
        loop {
            let v = match self.op(args.clone()).await {
                Ok(v) => Some(v),
                Err(PageError::Navigating) => None,
                Err(e) => return Err(self.page_failure(e)),
            };
            if let Some(v) = v {
                let snap = Snap {
                    href: v["href"].as_str().unwrap_or_default().to_owned(),
                    vis: v["vis"]
                        .as_array()
                        .map(|a| a.iter().map(|b| b.as_bool().unwrap_or(false)).collect())
                        .unwrap_or_default(),
                };
                let mut idx = 0;
                for o in outcomes {
                    if self.eval_cond(&o.when, &snap, &mut idx, since) {
                        return Ok(Hit::Outcome(o.result));
                    }
                }
                // The bank's interruptions: dealt with, and the wait goes on (the page changes).
                let mut handled = false;
                for w in watch {
                    if self.eval_cond(&w.when, &snap, &mut idx, since) && !handled {
                        handled = true;
                        self.watched(w).await?;
                    }
                }
                if handled && Instant::now() < deadline {
                    args = json!({ "op": "snap", "prims": locs });
                    continue;
                }
                if ready() {
                    return Ok(Hit::Ready);
                }
                for (i, c) in conds.iter().enumerate() {
                    if self.eval_cond(c, &snap, &mut idx, since) {
                        return Ok(Hit::Cond(i));
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Hit::Timeout);
            }
            let slice = (deadline - now).min(Duration::from_millis(250));
            let wait = json!({ "op": "wait", "prims": locs, "ms": slice.as_millis() as u64 });
            tokio::select! {
                r = self.op(wait) => match r {
                    Ok(_) | Err(PageError::Navigating) | Err(PageError::Script(_)) => {}
                    Err(e) => return Err(self.page_failure(e)),
                },
                _ = self.lease.net_changed(slice) => {}
            }
            args = json!({ "op": "snap", "prims": locs });
        }
    }

    /// Clicks a watch rule's control (best effort: gone meanwhile is fine).
    async fn watched(&self, w: &crate::def::Watch) -> Result<(), Failure> {
        match self.op(json!({ "op": "point", "loc": w.click })).await {
            Ok(p) if p.is_object() => {
                let (x, y) = (p["x"].as_f64().unwrap_or(0.0), p["y"].as_f64().unwrap_or(0.0));
                self.lease.click_at(x, y).await.map_err(|e| self.page_failure(e))?;
                // Give the page the click's consequences before looking again.
                self.lease.net_changed(Duration::from_millis(50)).await;
                Ok(())
            }
            Ok(_) | Err(PageError::Navigating) | Err(PageError::Script(_)) => Ok(()),
            Err(e) => Err(self.page_failure(e)),
        }
    }

    async fn verdict(&mut self, v: Verdict, step: &str) -> Failure {
        match v {
            Verdict::Fatal(k) => Failure::Fatal(k, self.evidence(step).await),
            Verdict::Retry => Failure::Retryable(
                "the bank reported a temporary failure".into(),
                self.evidence(step).await,
            ),
            Verdict::Expired => Failure::SessionExpired,
        }
    }

    /// A wait that ended without a match: still loading → the bank is slow (retryable);
    /// settled → the page is not what the definition describes (`Broken`).
    async fn timed_out(&mut self, step: &str, timeout: Duration) -> Failure {
        if self.lease.loading() {
            return Failure::Retryable(
                format!("{step}: the bank did not answer within {}", human(timeout)),
                self.evidence(step).await,
            );
        }
        Failure::Broken {
            step: step.to_owned(),
            detail: format!("nothing the definition expects appeared within {}", human(timeout)),
            evidence: self.evidence(step).await,
        }
    }

    async fn broken(&mut self, step: &str, detail: String) -> Failure {
        Failure::Broken {
            step: step.to_owned(),
            detail,
            evidence: self.evidence(step).await,
        }
    }

    /// Failure evidence (CONNECTORS §6): never while a code is in the page.
    async fn evidence(&mut self, step: &str) -> Option<Box<Evidence>> {
        if self.code_typed || !self.evidence_on || self.lease.crashed() {
            return None;
        }
        let dom = self
            .op(json!({ "op": "dom", "max": DOM_MAX }))
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = self.op(json!({ "op": "blank" })).await;
        let jpeg = self.lease.screenshot_jpeg().await.unwrap_or_default();
        let (url, title) = self.lease.url_and_title().await;
        Some(Box::new(Evidence {
            step: step.to_owned(),
            url,
            title,
            jpeg,
            dom,
            trail: self.trail.clone(),
        }))
    }

    /// A `goto` URL: its `{{ vars.NAME }}` filled in, joined to the base URL.
    async fn url(&mut self, step: &str, path: &str) -> Result<String, Failure> {
        let path = match crate::def::expand(path, &self.vars) {
            Ok(p) => p,
            Err(e) => return Err(self.broken(step, e).await),
        };
        self.def
            .base_url
            .join(&path)
            .map(|u| u.to_string())
            .map_err(|_| Failure::Retryable(format!("{step}: not a URL"), None))
    }

    /// Waits until `loc` is visible and runs `op` on it; outcome rules may end the wait.
    async fn on_element(
        &mut self,
        step: &str,
        loc: &Locator,
        args: Value,
        timeout: Duration,
    ) -> Result<Value, Failure> {
        let deadline = Instant::now() + timeout;
        let since = self.lease.net_seq();
        loop {
            let v = self.op_settled(args.clone(), deadline).await?;
            if !(v.is_null() || v == Value::Bool(false)) {
                return Ok(v);
            }
            let cond = Cond::Visible(loc.clone());
            let left = deadline.saturating_duration_since(Instant::now());
            match self.wait_any(&[&cond], since, left, &|| false).await? {
                Hit::Outcome(v) => return Err(self.verdict(v, step).await),
                Hit::Timeout => return Err(self.timed_out(step, timeout).await),
                Hit::Cond(_) | Hit::Ready => {}
            }
        }
    }

    async fn fill(
        &mut self,
        step: &str,
        loc: &Locator,
        text: &str,
        human_typing: bool,
        timeout: Duration,
        nth: Option<usize>,
    ) -> Result<(), Failure> {
        let mut args = json!({ "op": "focus", "loc": loc });
        if let Some(n) = nth {
            args["nth"] = json!(n);
        }
        self.on_element(step, loc, args, timeout).await?;
        if human_typing {
            let mut buf = [0u8; 4];
            for (i, c) in text.chars().enumerate() {
                self.lease
                    .insert_text(c.encode_utf8(&mut buf))
                    .await
                    .map_err(|e| self.page_failure(e))?;
                // 40-110 ms between keys, deterministic per position (no RNG needed).
                tokio::time::sleep(Duration::from_millis(40 + (i as u64 * 37) % 70)).await;
            }
            Ok(())
        } else {
            self.lease.insert_text(text).await.map_err(|e| self.page_failure(e))
        }
    }

    async fn fill_marking(
        &mut self,
        step: &str,
        loc: &Locator,
        text: &str,
        timeout: Duration,
        mark: &[Locator],
    ) -> Result<(), Failure> {
        let args = json!({ "op": "focus", "loc": loc, "mark": mark });
        self.on_element(step, loc, args, timeout).await?;
        self.lease.insert_text(text).await.map_err(|e| self.page_failure(e))
    }

    async fn click(&mut self, step: &str, loc: &Locator, navigation: bool, timeout: Duration) -> Result<(), Failure> {
        let navs = self.lease.navigations();
        let p = self
            .on_element(step, loc, json!({ "op": "point", "loc": loc }), timeout)
            .await?;
        let (x, y) = (p["x"].as_f64().unwrap_or(0.0), p["y"].as_f64().unwrap_or(0.0));
        self.lease.click_at(x, y).await.map_err(|e| self.page_failure(e))?;
        if navigation {
            let deadline = Instant::now() + self.def.timeouts.navigation;
            while self.lease.navigations() == navs {
                if self.lease.crashed() {
                    return Err(Failure::Retryable("browser crashed".into(), None));
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(self.timed_out(step, self.def.timeouts.navigation).await);
                }
                self.lease.net_changed(deadline - now).await;
            }
        }
        Ok(())
    }

    /// Runs `steps`; returns where a branch sent the login (`Continue` when none did).
    async fn steps(&mut self, steps: &[Step], creds: Option<&Creds<'_>>) -> Result<BranchTo, Failure> {
        for step in steps {
            let timeout = step.timeout.unwrap_or(self.def.timeouts.step);
            let label = step.label.as_str();
            self.trail.push(label.to_owned());
            let since = self.lease.net_seq();
            match &step.action {
                Action::Goto(path) => {
                    let url = self.url(label, path).await?;
                    match self.lease.goto(&url, self.def.timeouts.navigation).await {
                        Ok(()) => {}
                        Err(PageError::Timeout) => {
                            return Err(Failure::Retryable(
                                format!("{label}: the bank did not answer in time"),
                                self.evidence(label).await,
                            ))
                        }
                        Err(e) => return Err(self.page_failure(e)),
                    }
                }
                Action::Fill { target, value, human } => {
                    let text = match (value, creds) {
                        (FillValue::Username, Some(c)) => c.username.to_owned(),
                        (FillValue::Password, Some(c)) => c.password.to_owned(),
                        (FillValue::Extra(k), Some(c)) => match c.extra.get(k) {
                            Some(v) => v.clone(),
                            None => return Err(Failure::Fatal(FatalKind::BadCredentials, None)),
                        },
                        (FillValue::Literal(s), _) => s.clone(),
                        (_, None) => String::new(),
                    };
                    self.fill(label, target, &text, *human, timeout, None).await?;
                }
                Action::Click { target, navigation } => self.click(label, target, *navigation, timeout).await?,
                Action::WaitFor(cond) => match self.wait_any(&[cond], since, timeout, &|| false).await? {
                    Hit::Cond(_) | Hit::Ready => {}
                    Hit::Outcome(v) => return Err(self.verdict(v, label).await),
                    Hit::Timeout => return Err(self.timed_out(label, timeout).await),
                },
                Action::Branch(arms) => {
                    let conds: Vec<&Cond> = arms.iter().map(|(c, _)| c).collect();
                    match self.wait_any(&conds, since, timeout, &|| false).await? {
                        Hit::Cond(i) => match arms[i].1 {
                            BranchTo::Continue => {}
                            to => return Ok(to),
                        },
                        Hit::Outcome(v) => return Err(self.verdict(v, label).await),
                        Hit::Ready => {}
                        Hit::Timeout => return Err(self.timed_out(label, timeout).await),
                    }
                }
                Action::Eval { js, into } => {
                    let deadline = Instant::now() + timeout;
                    let value = loop {
                        match self.lease.eval(js.clone()).await {
                            Ok(v) => break v,
                            Err(PageError::Navigating) if Instant::now() < deadline => {
                                self.lease.net_changed(Duration::from_millis(50)).await
                            }
                            Err(PageError::Script(e)) => {
                                let why = script_error(&e, creds);
                                return Err(self.broken(label, format!("the eval script threw: {why}")).await);
                            }
                            Err(e) => return Err(self.page_failure(e)),
                        }
                    };
                    if let Some(name) = into {
                        let size = serde_json::to_string(&value).map_or(usize::MAX, |t| t.len());
                        if size > crate::def::VAR_MAX_BYTES {
                            let detail = format!(
                                "the eval result is larger than {} KiB ({size} bytes)",
                                crate::def::VAR_MAX_BYTES / 1024
                            );
                            return Err(self.broken(label, detail).await);
                        }
                        self.vars.insert(name.clone(), value);
                    }
                }
            }
            // Outcome rules after every step (an error that is already on the page).
            if let Hit::Outcome(v) = self.wait_any(&[], since, Duration::ZERO, &|| false).await? {
                return Err(self.verdict(v, label).await);
            }
        }
        Ok(BranchTo::Continue)
    }

    async fn read_from<T: ToString>(
        &mut self,
        from: &FromPage<T>,
        what: &str,
        deadline: Instant,
    ) -> Result<Option<String>, Failure> {
        Ok(match from {
            FromPage::Const(v) => Some(v.to_string()),
            FromPage::Attr { attr, of } => self
                .op_settled(json!({ "op": "attr", "loc": of, "attr": attr }), deadline)
                .await?
                .as_str()
                .map(str::to_owned),
            FromPage::Count(loc) => {
                let n = self.op_settled(json!({ "op": "count", "loc": loc }), deadline).await?;
                let _ = what;
                n.as_u64().map(|n| n.to_string())
            }
        })
    }

    async fn otp(&mut self, ask: &mut dyn CodeAsk) -> Result<(), Failure> {
        let Some(otp) = self.def.otp.clone() else {
            return Err(self
                .broken("otp", "a branch went to otp but there is no [otp] block".into())
                .await);
        };
        self.trail.push("otp".into());
        let timeout = otp.timeout.unwrap_or(self.def.timeouts.step);
        let field = otp
            .input
            .clone()
            .or(otp.boxes.clone())
            .unwrap_or(Locator::Css("input".into()));
        // The screen is there before the descriptor is read.
        self.on_element("otp", &field, json!({ "op": "count", "loc": field }), timeout)
            .await?;
        let deadline = Instant::now() + timeout;
        let length = self.read_from(&otp.length, "length", deadline).await?;
        let Some(length) = length
            .and_then(|l| l.trim().parse::<u32>().ok())
            .filter(|l| (1..=32).contains(l))
        else {
            return Err(self
                .broken("otp.length", "the OTP screen does not say how long the code is".into())
                .await);
        };
        let kind = self.read_from(&otp.kind, "kind", deadline).await?.unwrap_or_default();
        let purpose = match &otp.purpose {
            Some(p) => self.read_from(p, "purpose", deadline).await?.filter(|p| !p.is_empty()),
            None => None,
        };
        let request = OtpRequest {
            length,
            alphanumeric: kind.trim().eq_ignore_ascii_case("alphanumeric"),
            purpose,
        };
        let mut rejected_locs = Vec::new();
        prims(&otp.rejected, &mut rejected_locs);
        loop {
            // The field is focused (and the rejection markers marked) before the wait, so the
            // code meets a page with nothing left to lay out: the focus when it arrives is a
            // check. Best effort: when it arrives, the field is found and focused as for any fill.
            if let Some(input) = &otp.input {
                let _ = self
                    .op(json!({ "op": "focus", "loc": input, "mark": &rejected_locs }))
                    .await;
            }
            // Parked on the OTP screen: a waiting permit, and the browser watched while we wait.
            let permit = self.lease.waiting_permit().await;
            let code = tokio::select! {
                c = ask.code(&request) => c.map_err(Failure::NoCode)?,
                _ = self.lease.died() => return Err(Failure::Retryable("browser crashed".into(), None)),
            };
            drop(permit);
            let since = self.lease.net_seq();
            self.code_typed = true;
            match (&otp.input, &otp.boxes) {
                // The rejection markers on the page now are marked stale in the same call that
                // focuses the field (one round trip less between the code and the bank).
                (Some(input), _) => {
                    self.fill_marking("otp.input", input, &code, timeout, &rejected_locs)
                        .await?
                }
                (None, Some(boxes)) => {
                    for (i, c) in code.chars().enumerate() {
                        if i == 0 {
                            for loc in &rejected_locs {
                                let _ = self.op(json!({ "op": "mark", "loc": loc })).await;
                            }
                        }
                        self.fill("otp.boxes", boxes, &c.to_string(), false, timeout, Some(i))
                            .await?;
                    }
                }
                (None, None) => {}
            }
            self.click("otp.submit", &otp.submit, false, timeout).await?;
            let mut conds: Vec<&Cond> = vec![&otp.accepted, &otp.rejected];
            if let Some(l) = &otp.logged_out {
                conds.push(l);
            }
            let hit = self.wait_any(&conds, since, timeout, &|| false).await?;
            self.code_typed = false;
            match hit {
                Hit::Cond(0) | Hit::Ready => return Ok(()),
                Hit::Cond(1) => ask.rejected().await,
                Hit::Cond(_) => {
                    return Err(Failure::Retryable(
                        "the bank dropped the login during the challenge".into(),
                        self.evidence("otp").await,
                    ))
                }
                Hit::Outcome(v) => return Err(self.verdict(v, "otp").await),
                Hit::Timeout => return Err(self.timed_out("otp", timeout).await),
            }
        }
    }
}

/// The `[movements] headers` the bank's own requests carried during the login. A request seen
/// is recorded by the lease's network task, so one the page has already made may still be on its
/// way: waited for (woken by the network task) up to the step timeout. A header never seen is
/// `Broken` (the definition expects what the bank no longer sends), named, never its value.
async fn captured_headers(lease: &ContextLease, def: &BankDef) -> Result<Vec<(String, String)>, Failure> {
    let want = &def.movements.headers;
    let deadline = Instant::now() + def.timeouts.step;
    loop {
        let got = lease.captured_headers();
        if got.len() == want.len() {
            return Ok(got);
        }
        let now = Instant::now();
        if now >= deadline {
            let missing: Vec<&str> = want
                .iter()
                .filter(|w| !got.iter().any(|(n, _)| n == *w))
                .map(String::as_str)
                .collect();
            return Err(Failure::Broken {
                step: "movements.headers".into(),
                detail: format!(
                    "the bank's own requests during the login never carried {}",
                    missing.join(", ")
                ),
                evidence: None,
            });
        }
        lease.net_changed(deadline - now).await;
    }
}

/// JavaScript's truthiness of a JSON value (`{ var = "name" }` without `equals`).
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// What a throwing `eval` script said, for a `Broken` message: its first line, at most 200
/// characters, with every credential of the login blanked out (a script can read the page's
/// inputs; its message must not carry them into an error).
fn script_error(text: &str, creds: Option<&Creds<'_>>) -> String {
    let mut line: String = text.lines().next().unwrap_or_default().chars().take(200).collect();
    if let Some(c) = creds {
        let secrets = [c.username, c.password]
            .into_iter()
            .chain(c.extra.values().map(String::as_str));
        for secret in secrets.filter(|s| !s.is_empty()) {
            line = line.replace(secret, "[redacted]");
        }
    }
    if line.is_empty() {
        "an exception without a message".into()
    } else {
        line
    }
}

fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Logs in with `def` on a fresh context of `rt`.
pub async fn login(
    rt: &Arc<BrowserRuntime>,
    def: &Arc<BankDef>,
    creds: &Creds<'_>,
    ask: &mut dyn CodeAsk,
    evidence_on: bool,
) -> Result<Session, Failure> {
    let lease = rt.lease(def).await?;
    // Kept state that no longer parses or has expired is simply not used: the bank then asks
    // for a code as it would on a new device.
    let restore_script = match (&def.remember, creds.remembered) {
        (Some(remember), Some(text)) => match crate::device::restore(&lease, def, remember, text).await {
            Ok(id) => id,
            Err(e) => {
                return Err(Failure::Retryable(
                    format!("could not restore the remembered device: {e}"),
                    None,
                ))
            }
        },
        _ => None,
    };
    if def.movements.http.is_some() && !def.movements.headers.is_empty() {
        // Armed before the first page: the bank's own requests carry what the reads will send.
        lease.arm_headers(&def.movements.headers);
    }
    let budget = def.timeouts.login;
    let vars = {
        let mut run = Run::new(&lease, def, evidence_on);
        // The whole login is bounded, OTP waits excluded: the bound applies to the steps.
        let to = tokio::time::timeout(budget, run.steps(&def.login, Some(creds))).await;
        let to = match to {
            Ok(r) => r?,
            Err(_) => {
                return Err(Failure::Retryable(
                    format!("the login took longer than {}", human(budget)),
                    None,
                ))
            }
        };
        match to {
            BranchTo::Otp => run.otp(ask).await?,
            BranchTo::Done | BranchTo::Continue => {}
        }
        run.vars
    };
    if let Some(id) = restore_script {
        // Logged in: later documents (the reads) get nothing injected.
        let _ = lease.remove_init_script(&id).await;
    }
    let remembered = match &def.remember {
        Some(remember) => crate::device::keep(&lease, def, remember).await,
        None => None,
    };
    let conn = match &def.movements.http {
        // The login's cookies go to an HTTP reader; dropping the lease closes the context.
        Some(endpoint) => {
            let cookies = lease
                .cookies()
                .await
                .map_err(|e| Failure::Retryable(format!("could not read the login's cookies: {e}"), None))?;
            let broken = |detail: String| Failure::Broken {
                step: "movements.url".into(),
                detail,
                evidence: None,
            };
            let endpoint = crate::def::expand(endpoint, &vars).map_err(broken)?;
            let headers = captured_headers(&lease, def).await?;
            let reader = HttpRead::new(def, &endpoint, &cookies, &headers).map_err(|e| Failure::Broken {
                step: "movements.url".into(),
                detail: e,
                evidence: None,
            })?;
            Conn::Http(reader)
        }
        None => Conn::Page(Arc::new(lease)),
    };
    let busy = Arc::new(tokio::sync::Mutex::new(()));
    let keeper = match (&conn, def.keep_alive) {
        (Conn::Page(lease), Some(every)) => Some(keep_alive(lease, def, &busy, every, vars.clone())),
        _ => None,
    };
    Ok(Session {
        conn,
        def: Arc::clone(def),
        evidence_on,
        remembered,
        vars,
        busy,
        keeper,
    })
}

impl Session {
    /// Reads the movements (navigating to them again keeps the bank's session warm), page after
    /// page when the definition pages them.
    pub async fn read_movements(&mut self) -> Result<Vec<Movement>, Failure> {
        let def = Arc::clone(&self.def);
        let m = &def.movements;
        let lease = match &self.conn {
            Conn::Page(lease) => lease,
            Conn::Http(reader) => return read_http(reader, &def).await,
        };
        let _using = self.busy.lock().await;
        let mut run = Run::new(lease, &def, self.evidence_on);
        run.vars = self.vars.clone();
        run.trail.push("movements".into());
        let mut since = lease.net_seq();
        if let Source::Json { response, .. } = &m.source {
            lease.arm_capture(response);
        }
        if let Some(goto) = &m.goto {
            let url = run.url("movements.goto", goto).await?;
            match lease.goto(&url, def.timeouts.navigation).await {
                Ok(()) => {}
                Err(PageError::Timeout) => {
                    return Err(Failure::Retryable(
                        "movements: the bank did not answer in time".into(),
                        run.evidence("movements.goto").await,
                    ))
                }
                Err(e) => return Err(run.page_failure(e)),
            }
        }
        run.steps(&m.steps, None).await?;
        let mut rows = read_page(&mut run, m, since, 1).await?;
        if let Some(pages) = &m.pages {
            let mut page = 1;
            let mut last_len = rows.len();
            while page < pages.max_pages {
                if let Some(age) = pages.until_older_than {
                    let got = match extract::build(m, rows[rows.len() - last_len..].to_vec()) {
                        Ok(list) => list,
                        Err(e) => return Err(run.broken("movements.fields", e).await),
                    };
                    if reaches_back(&got, age) {
                        break;
                    }
                }
                let live = run
                    .op(json!({ "op": "live", "loc": pages.next }))
                    .await
                    .map_err(|e| run.page_failure(e))?;
                if live != Value::Bool(true) {
                    break;
                }
                // What the next page shows must be new: rows seen are marked (a table), and
                // only responses captured after the click count (JSON).
                if let Source::Table { rows: loc, .. } = &m.source {
                    run.op(json!({ "op": "mark", "loc": loc }))
                        .await
                        .map_err(|e| run.page_failure(e))?;
                }
                since = lease.net_seq();
                let click = Step {
                    action: Action::Click {
                        target: pages.next.clone(),
                        navigation: false,
                    },
                    timeout: None,
                    label: format!("movements.next[{page}]"),
                };
                run.steps(std::slice::from_ref(&click), None).await?;
                page += 1;
                let more = read_page(&mut run, m, since, page).await?;
                last_len = more.len();
                rows.extend(more);
            }
        }
        match extract::build(m, rows) {
            Ok(list) => Ok(list),
            Err(e) => Err(run.broken("movements.fields", e).await),
        }
    }

    /// What this login keeps for the next (remember-device, `[session] remember`): JSON to be
    /// sealed by the engine and given back as [`Creds::remembered`]. Secret (it lets a login
    /// skip the second factor): never log it.
    pub fn remembered(&self) -> Option<&str> {
        self.remembered.as_deref()
    }

    /// Runs the definition's logout steps (best effort). A session that reads over HTTP has no
    /// page left to run them in: nothing is done, and the bank's session expires on its own.
    pub async fn logout(&mut self) -> Result<(), Failure> {
        let def = Arc::clone(&self.def);
        let Conn::Page(lease) = &self.conn else {
            return Ok(());
        };
        let _using = self.busy.lock().await;
        if let Some(k) = self.keeper.take() {
            k.abort();
        }
        let mut run = Run::new(lease, &def, false);
        run.vars = self.vars.clone();
        run.steps(&def.logout, None).await.map(|_| ())
    }

    /// The browser context the session holds: `None` once a `read = "http"` login closed it.
    pub fn lease(&self) -> Option<&ContextLease> {
        match &self.conn {
            Conn::Page(lease) => Some(lease.as_ref()),
            Conn::Http(_) => None,
        }
    }
}

/// What a session reads through.
enum Conn {
    /// The login's page (the browser context stays open; shared only with the keep-alive
    /// timer, which holds it weakly).
    Page(Arc<ContextLease>),
    /// `read = "http"`: the bank's JSON endpoint with the login's cookies, the context closed.
    Http(HttpRead),
}

/// One read of a `read = "http"` session: a 401, 403 or redirect is the bank's "logged out"
/// (the engine logs in again, in the browser); an unexpected status is retryable; a body the
/// definition cannot read is `Broken` (there is no page to take evidence of).
async fn read_http(reader: &HttpRead, def: &BankDef) -> Result<Vec<Movement>, Failure> {
    let m = &def.movements;
    let (status, body) = match reader.get().await {
        Ok(Answer::Body(status, body)) => (status, body),
        Ok(Answer::LoggedOut) => return Err(Failure::SessionExpired),
        Err(e) => return Err(Failure::Retryable(format!("movements: {e}"), None)),
    };
    let Source::Json { status: want, list, .. } = &m.source else {
        // The definition's validation allows `read = "http"` with a JSON source only.
        return Err(Failure::Broken {
            step: "movements".into(),
            detail: "read = \"http\" without a JSON source".into(),
            evidence: None,
        });
    };
    let expected = want.map_or((200..300).contains(&status), |w| w == status);
    if !expected {
        return Err(Failure::Retryable(
            format!("movements: the bank answered HTTP {status}"),
            None,
        ));
    }
    let broken = |step: &str, detail: String| Failure::Broken {
        step: step.into(),
        detail,
        evidence: None,
    };
    let rows = json_rows(def, &body, list).map_err(|e| broken("movements.list", e))?;
    extract::build(m, rows).map_err(|e| broken("movements.fields", e))
}

/// Whether a page's oldest movement is older than `age` (dates that do not parse say nothing).
fn reaches_back(page: &[Movement], age: Duration) -> bool {
    let Some(horizon) = chrono::TimeDelta::from_std(age)
        .ok()
        .and_then(|a| chrono::Utc::now().checked_sub_signed(a))
    else {
        return false;
    };
    page.iter()
        .any(|mv| chrono::DateTime::parse_from_rfc3339(&mv.received_at).is_ok_and(|t| t.to_utc() < horizon))
}

/// Waits for one page of movements (the table, or a response captured since `since`) and
/// returns its raw rows.
async fn read_page(
    run: &mut Run<'_>,
    m: &crate::def::Movements,
    since: u64,
    page: u32,
) -> Result<Vec<RawRow>, Failure> {
    let (def, lease) = (run.def, run.lease);
    let read = def.timeouts.read;
    let step = if page == 1 {
        "movements".to_owned()
    } else {
        format!("movements (page {page})")
    };
    let mut conds: Vec<&Cond> = Vec::new();
    // A later page of a table: rows not seen before (the rows read are marked before `next`).
    let table_cond = match &m.source {
        Source::Table { table, .. } if page == 1 => Some(Cond::Visible(table.clone())),
        Source::Table { rows, .. } => Some(Cond::Visible(rows.clone())),
        Source::Json { .. } => None,
    };
    if let Some(c) = &table_cond {
        conds.push(c);
    }
    if let Some(l) = &m.logged_out {
        conds.push(l);
    }
    let json_ready = || match &m.source {
        Source::Json { status, .. } => lease
            .captured_since(since)
            .iter()
            .any(|c| status.is_none_or(|s| s == c.status)),
        Source::Table { .. } => false,
    };
    let hit = run.wait_any(&conds, since, read, &json_ready).await?;
    let logged_out_idx = usize::from(table_cond.is_some());
    match hit {
        Hit::Outcome(v) => return Err(run.verdict(v, &step).await),
        Hit::Timeout => return Err(run.timed_out(&step, read).await),
        Hit::Cond(i) if m.logged_out.is_some() && i == logged_out_idx => return Err(Failure::SessionExpired),
        Hit::Cond(_) | Hit::Ready => {}
    }
    match &m.source {
        Source::Table { rows, .. } => {
            let fields: Vec<Value> = [
                Some(&m.external_id),
                Some(&m.received_at),
                Some(&m.amount),
                Some(&m.currency),
                m.name.as_ref(),
                m.description.as_ref(),
            ]
            .iter()
            .map(|f| match f.map(|f| &f.from) {
                Some(crate::def::FieldFrom::Attr(a)) => json!({ "attr": a }),
                Some(crate::def::FieldFrom::Text(t)) => json!({ "text": t }),
                _ => json!({ "attr": "data-rbk-none" }),
            })
            .collect();
            let deadline = Instant::now() + read;
            let v = run
                .op_settled(json!({ "op": "rows", "loc": rows, "fields": fields }), deadline)
                .await?;
            let parsed: Result<Vec<Vec<Option<String>>>, _> = serde_json::from_value(v);
            match parsed {
                Ok(list) => Ok(list
                    .into_iter()
                    .map(|r| {
                        let mut it = r.into_iter();
                        std::array::from_fn(|_| it.next().flatten())
                    })
                    .collect()),
                Err(e) => Err(run.broken("movements.rows", e.to_string()).await),
            }
        }
        Source::Json { status, pick, list, .. } => {
            let caps: Vec<_> = lease
                .captured_since(since)
                .into_iter()
                .filter(|c| status.is_none_or(|s| s == c.status))
                .collect();
            let chosen = match pick {
                Pick::First => caps.first(),
                Pick::Last => caps.last(),
                Pick::Largest => caps.iter().max_by_key(|c| c.body.len()),
            };
            let Some(cap) = chosen else {
                return Err(run.broken("movements.capture", "no response was captured".into()).await);
            };
            match json_rows(def, &cap.body, list) {
                Ok(rows) => Ok(rows),
                Err(e) => Err(run.broken("movements.list", e).await),
            }
        }
    }
}

fn json_rows(def: &BankDef, body: &str, list: &str) -> Result<Vec<RawRow>, String> {
    let m = &def.movements;
    let raw: Box<serde_json::value::RawValue> =
        serde_json::from_str(body).map_err(|e| format!("the captured response is not JSON: {e}"))?;
    let items = extract::json_list(&raw, list)?;
    let fields = [
        Some(&m.external_id),
        Some(&m.received_at),
        Some(&m.amount),
        Some(&m.currency),
        m.name.as_ref(),
        m.description.as_ref(),
    ];
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let mut row: RawRow = Default::default();
        for (slot, f) in row.iter_mut().zip(fields.iter()) {
            if let Some(crate::def::FieldFrom::Json(p)) = f.map(|f| &f.from) {
                *slot = extract::json_text(item, p)?;
            }
        }
        out.push(row);
    }
    Ok(out)
}

/// Runs `js` in a fresh context on `url` (used by tests of the allow-list and by `bank try`).
pub async fn eval_on(
    rt: &Arc<BrowserRuntime>,
    def: &BankDef,
    url: &str,
    js: &str,
) -> Result<(Value, Vec<String>), Failure> {
    let lease = rt.lease(def).await?;
    lease
        .goto(url, def.timeouts.navigation)
        .await
        .map_err(|e| Failure::Retryable(e.to_string(), None))?;
    let v = lease
        .eval(js.to_owned())
        .await
        .map_err(|e| Failure::Retryable(e.to_string(), None))?;
    Ok((v, lease.blocked_hosts()))
}
