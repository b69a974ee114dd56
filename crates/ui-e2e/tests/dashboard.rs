//! Issue 10: the dashboard end to end, in a real headless Chromium (Debian's `chromium`, driven
//! over the DevTools protocol) against the real server and the sandbox bank: register, turn
//! two-factor on with a code computed here, sign out and in again with a code, add an assisted
//! account on `user_otp`, start a session, answer the bank's prompt (a wrong code first) without
//! reloading the page, and see the movements. Every step leaves screenshots, at desktop width and
//! at 360 px, under `target/ui-screenshots/`. Waits are on DOM state (a `MutationObserver`
//! promise), never on sleeps.
//!
//! Skipped with a notice when no Chromium is found, unless `REQUIRE_CHROMIUM=1` (CI).

#![allow(clippy::unwrap_used)]

mod a11y;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::{Browser, BrowserConfig, Page};
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use reconbanker::config::Config;
use reconbanker::support::clock::{Clock, ManualClock};
use reconbanker::{App, AppOptions};
use sandbox_bank::{BankConfig, SandboxBank};

const PASSWORD: &str = "correct horse battery";
const DESKTOP: (i64, i64) = (1280, 900);
const PHONE: (i64, i64) = (360, 740);

fn chromium_or_skip() -> Option<PathBuf> {
    if let Some(p) = reconbanker_browser::runtime::find_chromium() {
        return Some(p);
    }
    assert!(
        std::env::var("REQUIRE_CHROMIUM").as_deref() != Ok("1"),
        "REQUIRE_CHROMIUM=1 but no Chromium was found (apt-get install chromium)"
    );
    eprintln!("NOTICE: no Chromium found (install Debian's `chromium`); the dashboard E2E tests are SKIPPED");
    None
}

/// RFC 4648 base32 (no padding) to bytes.
fn base32_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in text.trim().bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {text}"),
        };
        buf = (buf << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

/// RFC 6238 TOTP (HMAC-SHA1, 6 digits) of `step`, computed here, not by the server.
fn totp(secret: &[u8], step: i64) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).unwrap();
    mac.update(&(step as u64).to_be_bytes());
    let h = mac.finalize().into_bytes();
    let o = (h[19] & 0x0f) as usize;
    let n = u32::from_be_bytes([h[o] & 0x7f, h[o + 1], h[o + 2], h[o + 3]]);
    format!("{:06}", n % 1_000_000)
}

struct Server {
    base: String,
    clock: ManualClock,
    bank: SandboxBank,
    /// The kind of every event the app announces (the review step waits on them).
    kinds: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// When the app announced each `assistance.requested` (the bank asked for a code).
    asked: tokio::sync::mpsc::UnboundedReceiver<Instant>,
    /// The app's store (the test makes the operator an administrator, as `admin grant` would).
    store: Arc<dyn reconbanker_store::Store>,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Server {
    let bank = SandboxBank::new(BankConfig::default());
    let bank_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bank_url = format!("http://{}/", bank_listener.local_addr().unwrap());
    let served = bank.clone();
    tokio::spawn(async move {
        let _ = served.serve(bank_listener, std::future::pending()).await;
    });
    let dir = tempfile::tempdir().unwrap();
    let env: HashMap<String, String> = [
        ("RECONBANKER_DATA_DIR", dir.path().join("data").display().to_string()),
        (
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("e2e.db").display()),
        ),
        ("JWT_SECRET", "e2e-jwt-secret-e2e-jwt-secret-0123456".into()),
        (
            "RECONBANKER_MASTER_KEY",
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f".into(),
        ),
        ("RECONBANKER_ALLOW_PRIVATE_TARGETS", "true".into()),
        ("RECONBANKER_SANDBOX_BANK", bank_url),
        ("RECONBANKER_RETRY_BACKOFF_MS", "10".into()),
        // Twenty-odd codes on one account: above the default budget of 5 per 10 minutes.
        ("RECONBANKER_OTP_RATE_LIMIT", "100".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
    let clock = ManualClock::default();
    let app = App::build_with(
        config,
        AppOptions {
            clock: Some(Arc::new(clock.clone())),
            ..AppOptions::default()
        },
    )
    .await
    .unwrap();
    let store = app.state.store.clone();
    let mut bus = app.state.bus.subscribe().await.unwrap();
    let (asked_tx, asked) = tokio::sync::mpsc::unbounded_channel();
    let (kinds_tx, kinds) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(e) = bus.recv().await {
            if e.kind == "assistance.requested" && asked_tx.send(Instant::now()).is_err() {
                break;
            }
            let _ = kinds_tx.send(e.kind.to_string());
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = app
            .serve(listener, async move {
                let _ = stopped.await;
            })
            .await;
    });
    Server {
        base,
        clock,
        bank,
        kinds,
        asked,
        store,
        _dir: dir,
        _stop: stop,
    }
}

fn shots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Ui {
    page: Page,
    shots: PathBuf,
    n: u32,
    /// axe-core's source (`None`: the accessibility check is skipped, see `a11y::load`).
    axe: Option<String>,
    /// Every serious or critical violation found so far, with where it was found.
    violations: Vec<String>,
    /// The moderate and minor ones (printed, not failing).
    notes: Vec<String>,
    /// How many full audits ran.
    audits: u32,
    /// How long the audits took in all.
    audit_time: Duration,
}

impl Ui {
    async fn viewport(&self, (w, h): (i64, i64), mobile: bool) {
        self.page
            .execute(SetDeviceMetricsOverrideParams::new(w, h, 1.0, mobile))
            .await
            .unwrap();
    }

    /// Resolves once `predicate` (a JS expression) is true in the page, woken by DOM changes.
    /// A navigation destroys the pending promise's context: it is then asked again of the new
    /// document.
    async fn wait_for(&self, predicate: &str) {
        let js = format!(
            "new Promise((resolve, reject) => {{
                const check = () => {{ try {{ return !!({predicate}); }} catch (_) {{ return false; }} }};
                if (document.readyState !== 'loading' && check()) return resolve(true);
                const obs = new MutationObserver(() => {{ if (check()) {{ obs.disconnect(); resolve(true); }} }});
                obs.observe(document, {{ subtree: true, childList: true, attributes: true, characterData: true }});
                document.addEventListener('DOMContentLoaded', () => {{ if (check()) {{ obs.disconnect(); resolve(true); }} }});
                setTimeout(() => {{ obs.disconnect(); reject(new Error('timed out waiting for: ' + {quoted})); }}, 30000);
            }})",
            quoted = serde_json::to_string(predicate).unwrap()
        );
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            match self.page.evaluate_expression(js.as_str()).await {
                Ok(_) => return,
                Err(e) => {
                    let text = e.to_string();
                    if Instant::now() >= deadline || text.contains("timed out waiting for") {
                        let at: String = self
                            .page
                            .evaluate_expression("location.href + ' | ' + document.body.innerText.slice(0, 400)")
                            .await
                            .ok()
                            .and_then(|r| r.into_value().ok())
                            .unwrap_or_default();
                        panic!(
                            "waiting for `{predicate}` (page: {at}): {}",
                            &text[..text.len().min(200)]
                        );
                    }
                    // The document went away under the promise (a navigation): ask the new one.
                }
            }
        }
    }

    /// Starts counting layout shifts (a `PerformanceObserver` for `layout-shift`, every entry,
    /// those right after an input included), from zero.
    async fn watch_shifts(&self) {
        self.eval::<bool>(
            "(async () => { \
               await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r))); \
               if (!window.__shiftObs) { \
                 window.__shifts = { total: 0, moved: [] }; \
                 window.__shiftObs = new PerformanceObserver(l => window.__shiftsSeen(l.getEntries())); \
                 window.__shiftsSeen = es => { for (const e of es) { \
                   window.__shifts.total += e.value; \
                   const r = x => `${x.x},${x.y} ${x.width}x${x.height}`; \
                   window.__shifts.moved.push(`${e.value.toFixed(5)}: ` + ((e.sources || []).map(s => (s.node ? \
                     (s.node.nodeType === 1 ? s.node.outerHTML.slice(0, 60) : '#text ' + s.node.textContent.slice(0, 30)) : '(gone)') \
                     + ` ${r(s.previousRect)} -> ${r(s.currentRect)}`).join('; ') || 'no source')); } }; \
                 window.__shiftObs.observe({ type: 'layout-shift' }); \
               } \
               window.__shiftsSeen(window.__shiftObs.takeRecords()); \
               window.__shifts = { total: 0, moved: [] }; return true; })()",
        )
        .await;
    }

    /// The layout shift counted since `watch_shifts` (after two more frames were rendered), and
    /// what moved.
    async fn shifts(&self) -> (f64, Vec<String>) {
        self.eval(
            "(async () => { \
               await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r))); \
               window.__shiftsSeen(window.__shiftObs.takeRecords()); \
               return [window.__shifts.total, window.__shifts.moved]; })()",
        )
        .await
    }

    /// Emulates the system's colour-scheme setting (`light` or `dark`).
    async fn theme(&self, scheme: &str) {
        use chromiumoxide::cdp::browser_protocol::emulation::{MediaFeature, SetEmulatedMediaParams};
        self.page
            .execute(
                SetEmulatedMediaParams::builder()
                    .features(vec![MediaFeature::new("prefers-color-scheme", scheme)])
                    .build(),
            )
            .await
            .unwrap();
    }

    async fn eval<T: serde::de::DeserializeOwned>(&self, js: &str) -> T {
        self.page.evaluate_expression(js).await.unwrap().into_value().unwrap()
    }

    /// Finds `selector` and clicks it. Right after a navigation the DevTools DOM domain may
    /// still answer with a node of the document that went away ("Could not find node with given
    /// id"); the lookup is then made again, on the new document (the protocol's race, not the
    /// page's: any other error fails at once).
    async fn clicked(&self, selector: &str) -> chromiumoxide::Element {
        let mut tries = 0;
        loop {
            let found = match self.page.find_element(selector).await {
                Ok(el) => match el.click().await {
                    Ok(_) => Ok(el),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match found {
                Ok(el) => return el,
                Err(e) if tries < 3 && e.to_string().contains("Could not find node with given id") => {
                    tries += 1;
                }
                Err(e) => panic!("{selector}: {e}"),
            }
        }
    }

    async fn fill(&self, selector: &str, text: &str) {
        let el = self.clicked(selector).await;
        el.type_str(text).await.unwrap();
    }

    async fn click(&self, selector: &str) {
        self.clicked(selector).await;
    }

    /// The accessibility check of the page as it is now (`a11y::audit`, all rules), its findings
    /// kept; at desktop width in the light theme, the colour contrast again in the dark one.
    async fn audit(&mut self, at: &str) {
        let Some(source) = &self.axe else { return };
        let started = Instant::now();
        let mut found = a11y::audit(&self.page, source, &[]).await;
        if self.audits == 0 {
            assert!(
                a11y::csp_in_force(&self.page).await,
                "the page's Content-Security-Policy is in force while axe-core runs"
            );
        }
        self.audits += 1;
        let dark: bool = self.eval("matchMedia('(prefers-color-scheme: dark)').matches").await;
        if !dark && at.ends_with("desktop") {
            self.theme("dark").await;
            let contrast = a11y::audit(&self.page, source, &["color-contrast", "link-in-text-block"]).await;
            found.extend(contrast.into_iter().map(|(i, v)| (i, format!("dark theme: {v}"))));
            self.theme("light").await;
        }
        self.audit_time += started.elapsed();
        let path: String = self.eval("location.pathname + location.search").await;
        for (impact, v) in found {
            let line = format!("[{at} {path}] {v}");
            if a11y::fails(&impact) {
                self.violations.push(line);
            } else {
                self.notes.push(line);
            }
        }
    }

    /// Screenshots at desktop width and at 360 px; at 360 px the page must not scroll sideways.
    /// Each is also audited for accessibility (`audit`).
    async fn shot(&mut self, name: &str) {
        self.n += 1;
        let base = format!("{:02}-{name}", self.n);
        self.page
            .save_screenshot(
                ScreenshotParams::builder().full_page(true).build(),
                self.shots.join(format!("{base}-desktop.png")),
            )
            .await
            .unwrap();
        self.audit(&format!("{name}, desktop")).await;
        self.viewport(PHONE, true).await;
        let width: i64 = self.eval("document.documentElement.scrollWidth").await;
        assert!(
            width <= PHONE.0,
            "{name}: the page is {width} px wide at 360 px (horizontal scrolling)"
        );
        self.page
            .save_screenshot(
                ScreenshotParams::builder().full_page(true).build(),
                self.shots.join(format!("{base}-360.png")),
            )
            .await
            .unwrap();
        self.audit(&format!("{name}, 360 px")).await;
        self.viewport(DESKTOP, false).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_with_two_factor_and_answers_the_banks_prompt_live() {
    let Some(chromium) = chromium_or_skip() else { return };
    let mut server = start().await;
    let profile = tempfile::tempdir().unwrap();
    let mut config = BrowserConfig::builder()
        .chrome_executable(chromium)
        .new_headless_mode()
        .user_data_dir(profile.path())
        .window_size(DESKTOP.0 as u32, DESKTOP.1 as u32)
        .request_timeout(Duration::from_secs(60))
        .viewport(None);
    if nix_root() {
        config = config.no_sandbox();
    }
    let (mut browser, mut handler) = Browser::launch(config.build().unwrap()).await.unwrap();
    let events = tokio::spawn(async move { while handler.next().await.is_some() {} });
    let page = browser.new_page("about:blank").await.unwrap();
    let mut ui = Ui {
        page,
        shots: shots_dir(),
        n: 0,
        axe: a11y::load(),
        violations: Vec::new(),
        notes: Vec::new(),
        audits: 0,
        audit_time: Duration::ZERO,
    };
    ui.viewport(DESKTOP, false).await;
    let base = server.base.clone();
    let url = |p: &str| format!("{base}{p}");

    // Register (that signs in).
    ui.page.goto(url("/")).await.unwrap();
    ui.wait_for("location.pathname === '/app/login' && document.querySelector('#email')")
        .await;
    ui.shot("sign-in").await;
    ui.click("a[href='/app/register']").await;
    ui.wait_for("location.pathname === '/app/register' && document.querySelector('#password')")
        .await;
    ui.fill("#email", "operator@example.com").await;
    ui.fill("#password", PASSWORD).await;
    ui.shot("register").await;
    ui.click("form.card button[type=submit]").await;
    ui.wait_for("location.pathname === '/app' && document.querySelector('#accounts')")
        .await;
    ui.wait_for("document.querySelector('#empty')").await;
    ui.shot("accounts-empty").await;

    // Settings, as an administrator: the banks, and one added.
    assert!(server.store.grant_admin("operator@example.com").await.unwrap());
    ui.click("nav a[href='/app/settings']").await;
    ui.wait_for("location.pathname === '/app/settings' && document.querySelector('li[data-bank-code=sandbox]')")
        .await;
    ui.fill("#bank-code", "e2e-bank").await;
    ui.fill("#bank-name", "E2E Bank").await;
    ui.click("#bank-form button[type=submit]").await;
    ui.wait_for("location.search === '?done=bank' && document.querySelector('li[data-bank-code=e2e-bank]')")
        .await;
    ui.shot("settings").await;

    // Two-factor on, with a code computed here.
    ui.click("form[action='/app/settings/two-factor/setup'] button").await;
    ui.wait_for("document.querySelector('#totp-secret') && document.querySelector('.qr-code svg')")
        .await;
    ui.shot("two-factor-setup").await;
    let secret: String = ui.eval("document.querySelector('#totp-secret').textContent").await;
    let secret = base32_decode(&secret);
    let step = server.clock.now().timestamp().div_euclid(30);
    ui.fill("#confirm-code", &totp(&secret, step)).await;
    ui.click("form[action='/app/settings/two-factor/confirm'] button").await;
    ui.wait_for("document.querySelectorAll('#recovery-codes li').length === 10")
        .await;
    ui.shot("recovery-codes").await;

    // Sign out, then in again: password, then a code of the next step.
    ui.click("form.signout button").await;
    ui.wait_for("location.pathname === '/app/login' && document.querySelector('#email')")
        .await;
    ui.fill("#email", "operator@example.com").await;
    ui.fill("#password", PASSWORD).await;
    ui.click("form.card button[type=submit]").await;
    ui.wait_for("location.pathname === '/app/login/code' && document.querySelector('#totp_code')")
        .await;
    let keypad: String = ui.eval("document.querySelector('#totp_code').inputMode").await;
    assert_eq!(keypad, "numeric");
    ui.shot("sign-in-code").await;
    server.clock.advance(Duration::from_secs(30));
    ui.fill("#totp_code", &totp(&secret, step + 1)).await;
    ui.click("form.card button[type=submit]").await;
    ui.wait_for("location.pathname === '/app' && document.querySelector('#accounts')")
        .await;

    // An assisted account on the sandbox bank's `user_otp`.
    ui.fill("#acc-name", "Main account").await;
    ui.eval::<serde_json::Value>(
        "(() => { const s = document.querySelector('#bank'); \
         s.value = [...s.options].find(o => o.textContent.includes('(sandbox)')).value; return true; })()",
    )
    .await;
    ui.fill("#bank_username", "user_otp").await;
    ui.fill("#bank_password", "pass_otp").await;
    ui.shot("add-account").await;
    ui.click("form[action='/app/accounts'] button[type=submit]").await;
    ui.wait_for("document.querySelectorAll('li.account').length === 1 && document.body.dataset.live === 'on'")
        .await;
    ui.shot("account-added").await;

    // Start a session: the prompt appears on this page, without a reload, and nothing on the
    // page moves (every layout shift from the click to the prompt shown is counted, those right
    // after the click included).
    ui.eval::<serde_json::Value>("(window.__samePage = true)").await;
    ui.watch_shifts().await;
    let asked = Instant::now();
    ui.click("button[data-read]").await;
    ui.wait_for("document.querySelector('form.prompt input')").await;
    let prompt_ms = asked.elapsed().as_millis();
    let mut shifts = vec![ui.shifts().await];
    let same_page: bool = ui.eval("window.__samePage === true").await;
    assert!(same_page, "the prompt appeared without a reload");
    let (mode, maxlength, label): (String, i64, String) = ui
        .eval(
            "(() => { const i = document.querySelector('form.prompt input'); \
             return [i.inputMode, i.maxLength, document.querySelector('form.prompt label').textContent]; })()",
        )
        .await;
    assert_eq!((mode.as_str(), maxlength), ("numeric", 6));
    assert!(label.contains("6 digits"), "{label}");
    ui.wait_for("document.querySelector('form.prompt .attempts').textContent === 'Attempts: 0'")
        .await;
    ui.wait_for("/Expires in \\d+:\\d\\d/.test(document.querySelector('form.prompt .expires').textContent)")
        .await;
    ui.shot("prompt").await;

    // A wrong code: the bank refuses it; the prompt stays, with the error and "Attempts: 1".
    // The refusal's error moves nothing either.
    ui.fill("form.prompt input", "000000").await;
    ui.watch_shifts().await;
    ui.click("form.prompt button[type=submit]").await;
    ui.wait_for("document.querySelector('form.prompt .attempts').textContent === 'Attempts: 1'")
        .await;
    ui.wait_for("document.querySelector('form.prompt .prompt-error').textContent !== ''")
        .await;
    let (score, moved) = ui.shifts().await;
    assert!(
        score == 0.0,
        "the refused code's error shifted the page by {score}: {moved:?}"
    );
    let error: String = ui
        .eval("document.querySelector('form.prompt .prompt-error').textContent")
        .await;
    assert!(error.contains("did not accept"), "{error}");
    ui.shot("prompt-wrong-code").await;

    // The right code: the prompt closes and the movements appear.
    ui.fill("form.prompt input", "123456").await;
    ui.click("form.prompt button[type=submit]").await;
    ui.wait_for("!document.querySelector('form.prompt')").await;
    ui.wait_for("document.querySelectorAll('tr.movement').length > 0").await;
    // The account's last run follows live too.
    ui.wait_for("document.querySelector('li.account .last-run .outcome').dataset.outcome === 'succeeded'")
        .await;
    let still_same_page: bool = ui.eval("window.__samePage === true").await;
    assert!(still_same_page, "no reload at any point");
    ui.shot("movements").await;
    // The same page in the dark theme (the system setting decides).
    ui.theme("dark").await;
    let dark: String = ui.eval("getComputedStyle(document.body).backgroundColor").await;
    assert_eq!(dark, "rgb(18, 19, 22)", "the dark palette follows the system setting");
    ui.shot("movements-dark").await;
    ui.theme("light").await;

    // Budget: how long after the bank asks the prompt is visible, over 20 prompts on the open
    // page (an upper bound: the test's DevTools round trip is included).
    // The layout shift is measured for each prompt too, the last ten at 360 px.
    while server.asked.try_recv().is_ok() {}
    let mut latencies = Vec::new();
    for i in 0..20 {
        ui.wait_for("document.querySelector('li.account .light').dataset.light === 'off' && !document.querySelector('form.prompt')")
            .await;
        if i == 10 {
            ui.viewport(PHONE, true).await;
        }
        ui.watch_shifts().await;
        ui.click("button[data-read]").await;
        ui.wait_for("document.querySelector('form.prompt input')").await;
        let visible = Instant::now();
        shifts.push(ui.shifts().await);
        let asked = tokio::time::timeout(Duration::from_secs(10), server.asked.recv())
            .await
            .unwrap()
            .unwrap();
        latencies.push(visible.saturating_duration_since(asked).as_millis());
        ui.fill("form.prompt input", "123456").await;
        ui.click("form.prompt button[type=submit]").await;
        ui.wait_for("!document.querySelector('form.prompt')").await;
    }
    ui.viewport(DESKTOP, false).await;
    latencies.sort_unstable();
    let (p50, max) = (latencies[latencies.len() / 2], latencies[latencies.len() - 1]);
    println!("BUDGET prompt visible after the bank asks: p50 {p50} ms, max {max} ms over 20 prompts (goal p50 <= 250)");
    let worst = shifts.iter().map(|s| s.0).fold(0.0, f64::max);
    println!(
        "LAYOUT SHIFT from \"Read now\" to the prompt shown: worst {worst:.4} over {} prompts (11 at desktop width, 10 at 360 px; goal 0)",
        shifts.len()
    );
    for (i, (score, sources)) in shifts.iter().enumerate() {
        assert!(
            *score == 0.0,
            "prompt {i}: the page shifted by {score} when the prompt appeared; moved: {sources:?}"
        );
    }

    // API keys: create one, see it once, revoke it.
    ui.click("nav a[href='/app/keys']").await;
    ui.wait_for("location.pathname === '/app/keys' && document.querySelector('#keys-empty')")
        .await;
    ui.fill("#key-name", "SMS relay").await;
    ui.click("form[action='/app/keys'] button[type=submit]").await;
    ui.wait_for("document.querySelector('#new-key') && document.querySelector('#new-key').value.startsWith('rbk_')")
        .await;
    let key: String = ui.eval("document.querySelector('#new-key').value").await;
    assert_eq!(key.len(), 4 + 8 + 1 + 64, "{key}");
    ui.shot("api-key-created").await;
    // The creation was a POST answered by a redirect: reloading the page that shows the key
    // shows it no more and creates no other key.
    ui.page.reload().await.unwrap();
    ui.wait_for("document.readyState === 'complete' && !document.querySelector('#new-key')")
        .await;
    ui.wait_for("document.querySelectorAll('li[data-key-id]').length === 1")
        .await;
    let shown_again: bool = ui
        .eval(&format!(
            "document.body.innerHTML.includes({})",
            serde_json::to_string(&key).unwrap()
        ))
        .await;
    assert!(!shown_again, "the key is shown once");
    ui.click("li[data-key-id] form button[type=submit]").await;
    ui.wait_for(
        "document.querySelector('li[data-key-id] .light') && \
                 document.querySelector('li[data-key-id] .light').textContent === 'Revoked'",
    )
    .await;
    ui.shot("api-key-revoked").await;

    // CSRF: a page on another origin (another port of the same host, so the browser still
    // sends the SameSite=Strict session cookie) posts a form to the dashboard: refused, and no
    // key is created.
    let elsewhere = cross_origin_form(&url("/app/keys")).await;
    ui.page.goto(elsewhere.as_str()).await.unwrap();
    ui.wait_for(&format!(
        "location.href.startsWith({}) && document.readyState === 'complete'",
        serde_json::to_string(&url("/app/keys")).unwrap()
    ))
    .await;
    let status: u16 = ui
        .eval("performance.getEntriesByType('navigation')[0].responseStatus")
        .await;
    assert_eq!(status, 403, "the cross-origin form post is refused");
    let refusal: String = ui.eval("document.body.innerText").await;
    assert!(
        refusal.contains("CSRF_REFUSED"),
        "refused as a cross-site request: {refusal}"
    );
    ui.page.goto(url("/app/keys")).await.unwrap();
    ui.wait_for("document.readyState === 'complete' && document.querySelectorAll('li[data-key-id]').length === 1")
        .await;
    let names: String = ui.eval("document.querySelector('main').innerText").await;
    assert!(!names.contains("forged key"), "no key was created by the other origin");

    review_step(&mut ui, &mut server).await;

    // Budget: the accounts page from a cold cache.
    ui.page
        .execute(chromiumoxide::cdp::browser_protocol::network::ClearBrowserCacheParams::default())
        .await
        .unwrap();
    ui.page.goto(url("/app")).await.unwrap();
    ui.wait_for("document.readyState === 'complete' && document.querySelectorAll('li.account').length === 1")
        .await;
    let (transfer, dcl): (f64, f64) = ui
        .eval(
            "(() => { const nav = performance.getEntriesByType('navigation')[0]; \
             const all = [nav, ...performance.getEntriesByType('resource')]; \
             return [all.reduce((s, e) => s + (e.transferSize || 0), 0), nav.domContentLoadedEventEnd]; })()",
        )
        .await;
    println!(
        "BUDGET accounts page cold: transfer {:.1} KB (goal <= 150), DOMContentLoaded {dcl:.0} ms (goal <= 300); \
         first prompt visible {prompt_ms} ms after \"Read now\" (the bank login included)",
        transfer / 1024.0
    );
    assert!(transfer <= 150.0 * 1024.0, "accounts page transfers {transfer} bytes");

    if ui.axe.is_some() {
        println!(
            "ACCESSIBILITY axe-core: {} audits (and a dark-theme contrast pass at desktop width) in {:.1} s, \
             {} serious or critical violations, {} moderate or minor",
            ui.audits,
            ui.audit_time.as_secs_f64(),
            ui.violations.len(),
            ui.notes.len()
        );
        for note in &ui.notes {
            println!("ACCESSIBILITY note: {note}");
        }
        assert!(
            ui.violations.is_empty(),
            "axe-core found serious or critical violations:\n{}",
            ui.violations.join("\n")
        );
    }

    browser.close().await.unwrap();
    let _ = browser.wait().await;
    events.abort();
}

/// Another origin (a server of its own on another port) whose page posts a form to `target` as
/// soon as it loads.
async fn cross_origin_form(target: &str) -> String {
    let page = format!(
        "<!doctype html><title>elsewhere</title><form id=f method=post action=\"{target}\">\
         <input name=name value=\"forged key\"><input name=scopes value=\"otp:write\"></form>\
         <script>document.getElementById('f').submit()</script>"
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            async move { axum::response::Html(page) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

/// A received webhook: its headers and body.
struct Hook {
    headers: axum::http::HeaderMap,
    body: String,
}

/// A local shop: `GET /orders` answers the pending orders; `POST /hook` receives the result
/// webhooks (answered 200).
async fn shop(orders: serde_json::Value) -> (String, tokio::sync::mpsc::UnboundedReceiver<Hook>) {
    use axum::routing::{get, post};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let orders = Arc::new(orders);
    let app = axum::Router::new()
        .route(
            "/orders",
            get(move || {
                let orders = orders.clone();
                async move { axum::Json((*orders).clone()) }
            }),
        )
        .route(
            "/hook",
            post(move |headers: axum::http::HeaderMap, body: String| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(Hook { headers, body });
                    "ok"
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, rx)
}

/// Standard Webhooks: `v1,<base64 HMAC-SHA256(id.timestamp.body)>` keyed with the secret's
/// base64 part; one of the listed signatures must match.
fn signed_with(secret: &str, hook: &Hook) -> bool {
    use base64::Engine;
    let h = |n: &str| hook.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", h("webhook-id"), h("webhook-timestamp"), hook.body).as_bytes());
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    h("webhook-signature").split(' ').any(|s| s == expected)
}

impl Server {
    /// Waits until the app announces an event of this kind.
    async fn announced(&mut self, kind: &str) {
        let wait = async {
            while let Some(k) = self.kinds.recv().await {
                if k == kind {
                    return;
                }
            }
            panic!("the event stream ended before {kind}");
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .unwrap_or_else(|_| panic!("no {kind} event"));
    }
}

/// Issue 10's review step, in the same browser: reconcile mode chosen in Settings; the account
/// page sets the pending-orders endpoint and the result-webhook URL, rotates the result-webhook
/// secret (shown once, read here) and polls; two equally good payments make the request
/// ambiguous; the operator resolves it from the review screen, and the `matched` result webhook,
/// signed with the rotated secret, reaches the local receiver.
async fn review_step(ui: &mut Ui, server: &mut Server) {
    let base = server.base.clone();
    let url = |p: &str| format!("{base}{p}");
    let (shop_url, mut hooks) = shop(serde_json::json!([
        {"external_id": "E2E-1", "amount": "4321.09", "currency": "UYU", "name": "Maria Gomez"}
    ]))
    .await;

    ui.page.goto(url("/app/settings")).await.unwrap();
    ui.wait_for("document.querySelector('input[name=mode][value=reconcile]')")
        .await;
    ui.click("input[name=mode][value=reconcile]").await;
    ui.click("form[action='/app/settings/mode'] button[type=submit]").await;
    ui.wait_for(
        "document.querySelector('p.notice') && document.querySelector('input[name=mode][value=reconcile]').checked",
    )
    .await;

    // The account page, from the accounts list.
    ui.page.goto(url("/app")).await.unwrap();
    ui.wait_for("document.querySelector('li.account h2 a') && document.body.dataset.live === 'on'")
        .await;
    ui.click("li.account h2 a").await;
    ui.wait_for("location.pathname.startsWith('/app/accounts/') && document.querySelector('#settings-form')")
        .await;
    // A refused value first: the page again, the message at its field (audited too).
    ui.fill("#f-pending_orders_endpoint", "ftp://orders.example").await;
    ui.click("#settings-form button[type=submit]").await;
    ui.wait_for("document.querySelector('#f-pending_orders_endpoint[aria-invalid=true]')")
        .await;
    ui.shot("account-field-error").await;
    ui.eval::<bool>("(document.querySelector('#f-pending_orders_endpoint').value = '') === ''")
        .await;
    ui.fill("#f-pending_orders_endpoint", &format!("{shop_url}/orders"))
        .await;
    ui.fill("#f-webhook_url", &format!("{shop_url}/hook")).await;
    ui.click("#settings-form button[type=submit]").await;
    ui.wait_for("document.querySelector('#notice') && location.search.includes('done=saved')")
        .await;
    let account_page: String = ui.eval("location.pathname").await;
    let saved: String = ui.eval("document.querySelector('#f-webhook_url').value").await;
    assert_eq!(saved, format!("{shop_url}/hook"));
    ui.shot("account-page").await;
    ui.click("form[action$='/rotate/webhook'] button[type=submit]").await;
    ui.wait_for(
        "document.querySelector('#new-secret') && document.querySelector('#new-secret').value.startsWith('whsec_')",
    )
    .await;
    let secret: String = ui.eval("document.querySelector('#new-secret').value").await;
    ui.shot("signing-secret-rotated").await;
    // The rotation was a POST answered by a redirect: reloading shows the secret no more (and
    // rotates nothing: the webhook below is signed with this secret).
    ui.page.reload().await.unwrap();
    ui.wait_for("document.readyState === 'complete' && document.querySelector('#notice') && !document.querySelector('#new-secret')")
        .await;
    ui.click("form[action$='/poll'] button[type=submit]").await;
    server.announced("conciliation.registered").await;
    ui.wait_for("document.querySelector('#notice') && location.search.includes('done=polled')")
        .await;

    // Two payments of the amount, both strong name matches: the matcher cannot choose.
    for (name, description) in [("MARIA GOMEZ", "e2e-first"), ("GOMEZ MARIA", "e2e-second")] {
        server
            .bank
            .add_movement(sandbox_bank::AddMovement {
                username: "user_otp".into(),
                amount: "4321.09".into(),
                currency: "UYU".into(),
                name: Some(name.into()),
                description: description.into(),
                received_at: None,
            })
            .unwrap();
    }
    ui.page.goto(url("/app")).await.unwrap();
    ui.wait_for(
        "document.body.dataset.live === 'on' && document.querySelector('li.account .light').dataset.light === 'off'",
    )
    .await;
    ui.click("button[data-read]").await;
    ui.wait_for("document.querySelector('form.prompt input')").await;
    ui.fill("form.prompt input", "123456").await;
    ui.click("form.prompt button[type=submit]").await;
    server.announced("conciliation.ambiguous").await;

    // The navigation's badge on the accounts page, then the review queue, then the request
    // with its two candidates side by side.
    ui.page.goto(url("/app")).await.unwrap();
    ui.wait_for(
        "document.querySelector('#review-badge') && document.querySelector('#review-badge').textContent === '1'",
    )
    .await;
    ui.click("nav a[href='/app/reconciliation']").await;
    ui.wait_for("document.querySelectorAll('#queue li').length === 1 && document.querySelector('#review-badge').textContent === '1'")
        .await;
    ui.shot("review-queue").await;
    // The list searched by external id (the queue stays above it).
    ui.fill("#f-external", "E2E-1").await;
    ui.click("form.filters button[type=submit]").await;
    ui.wait_for(
        "location.search.includes('external_id=E2E-1') && document.querySelectorAll('#requests li').length === 1",
    )
    .await;
    ui.shot("review-search").await;
    ui.click("#queue li h2 a").await;
    ui.wait_for("document.querySelectorAll('#candidates li.candidate').length === 2")
        .await;
    ui.shot("review-request").await;
    let picked: String = ui
        .eval("document.querySelector('#candidates li.candidate').dataset.movementId")
        .await;
    ui.click("#candidates li.candidate form[action$='/resolve'] button[type=submit]")
        .await;
    ui.wait_for("document.querySelector('#notice') && document.querySelector('#request [data-status]').dataset.status === 'matched'")
        .await;
    ui.shot("review-matched").await;

    // The receiver gets the ambiguous result, then the matched one, signed with the new secret.
    let matched = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let hook = hooks.recv().await.unwrap();
            let body: serde_json::Value = serde_json::from_str(&hook.body).unwrap();
            if body["status"] == "matched" {
                return (hook, body);
            }
            assert_eq!(body["status"], "ambiguous", "{body}");
        }
    })
    .await
    .expect("the matched webhook");
    let (hook, body) = matched;
    assert_eq!(body["external_id"], "E2E-1");
    assert_eq!(
        body["movement"]["id"],
        picked.as_str(),
        "the candidate picked on the screen"
    );
    assert!(
        signed_with(&secret, &hook),
        "signed with the rotated secret: {:?}",
        hook.headers
    );

    // The account page lists both result deliveries, each with the body it froze.
    ui.page.goto(url(&account_page)).await.unwrap();
    ui.wait_for("document.querySelectorAll('#result-deliveries li').length === 2")
        .await;
    ui.click("#result-deliveries li details summary").await;
    ui.wait_for("document.querySelector('#result-deliveries li details').open")
        .await;
    ui.shot("account-deliveries").await;
}

fn nix_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
