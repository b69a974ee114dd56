//! Black-box tests of the browser connector runtime in headless Chromium against the
//! JavaScript sandbox bank (`sandbox-js`), driven by the built-in definition
//! `banks/sandbox-js.toml` with its base URL pointed at a bank on 127.0.0.1:0.
//!
//! One Chromium and one sandbox bank serve the whole binary (a shared tokio runtime: the CDP
//! handler must outlive every test). Each test uses its own tagged usernames (`user_good+t1`),
//! so tests run in parallel without seeing each other. Without Chromium the tests print a
//! notice and pass, unless `REQUIRE_CHROMIUM=1` (CI), where they fail.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reconbanker_browser::def::{self, BankDef};
use reconbanker_browser::interp::{self, CodeAsk, Creds, Failure, NoCode, OtpRequest};
use reconbanker_browser::{BrowserRuntime, RuntimeConfig};
use sandbox_bank::{BankConfig, SandboxBank};

struct World {
    rt: tokio::runtime::Runtime,
    browser: Arc<BrowserRuntime>,
    bank: SandboxBank,
    base: url::Url,
    def: Arc<BankDef>,
}

fn world() -> Option<&'static World> {
    static WORLD: OnceLock<Option<World>> = OnceLock::new();
    WORLD
        .get_or_init(|| {
            let chromium = reconbanker_browser::runtime::find_chromium();
            if chromium.is_none() {
                if std::env::var("REQUIRE_CHROMIUM").as_deref() == Ok("1") {
                    panic!("REQUIRE_CHROMIUM=1 but no Chromium was found (apt-get install chromium)");
                }
                eprintln!("NOTICE: no Chromium found (install Debian's `chromium`); the browser tests are SKIPPED");
                return None;
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            let (bank, base) = rt.block_on(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let base = format!("http://{}/", listener.local_addr().expect("addr"));
                let bank = SandboxBank::new(BankConfig {
                    slow_delay: Duration::from_secs(3),
                    ..BankConfig::default()
                });
                tokio::spawn(bank.clone().serve(listener, std::future::pending()));
                (bank, url::Url::parse(&base).expect("url"))
            });
            let scratch = std::env::temp_dir().join(format!("rbk-browser-tests-{}", std::process::id()));
            let mut cfg = RuntimeConfig::from_env(&scratch).expect("config");
            cfg.chromium = chromium;
            cfg.contexts = 24;
            cfg.waiting = 24;
            let browser = BrowserRuntime::new(cfg);
            Some(World {
                rt,
                browser,
                bank,
                def: Arc::new(sandbox_js(&base)),
                base,
            })
        })
        .as_ref()
}

fn sandbox_js(base: &url::Url) -> BankDef {
    let (_, text) = def::BUILTIN
        .iter()
        .find(|(n, _)| *n == "sandbox-js.toml")
        .expect("built-in");
    let mut d = def::parse("sandbox-js.toml", text).expect("the built-in definition is valid");
    d.base_url = base.clone();
    d
}

/// Runs `f` on the shared runtime, or skips.
fn run<F: std::future::Future<Output = ()>>(f: impl FnOnce(&'static World) -> F) {
    let Some(w) = world() else { return };
    w.rt.block_on(f(w));
}

/// Codes handed out in order; records every request and rejection.
#[derive(Default)]
struct Script {
    codes: Vec<String>,
    asked: Vec<OtpRequest>,
    rejected: u32,
}

#[async_trait::async_trait]
impl CodeAsk for Script {
    async fn code(&mut self, request: &OtpRequest) -> Result<String, NoCode> {
        self.asked.push(request.clone());
        if self.codes.is_empty() {
            return Err(NoCode::Expired);
        }
        Ok(self.codes.remove(0))
    }

    async fn rejected(&mut self) {
        self.rejected += 1;
    }
}

fn codes(list: &[&str]) -> Script {
    Script {
        codes: list.iter().map(|c| c.to_string()).collect(),
        ..Script::default()
    }
}

async fn login(
    w: &World,
    def: &Arc<BankDef>,
    user: &str,
    password: &str,
    ask: &mut Script,
) -> Result<interp::Session, Failure> {
    let extra = BTreeMap::new();
    let creds = Creds {
        username: user,
        password,
        extra: &extra,
        remembered: None,
    };
    interp::login(&w.browser, def, &creds, ask, true).await
}

#[test]
fn user_good_reads_exactly_the_banks_movements() {
    run(|w| async move {
        let user = "user_good+good";
        let mut session = login(w, &w.def, user, "pass_good", &mut Script::default())
            .await
            .expect("login");
        let got = session.read_movements().await.expect("read");
        let want = w.bank.movements_of(user);
        assert_eq!(got.len(), want.len());
        assert!(!got.is_empty());
        for (g, m) in got.iter().zip(&want) {
            assert_eq!(g.external_id, m.id);
            assert_eq!(g.amount, m.amount());
            assert_eq!(g.currency, m.currency);
            assert_eq!(g.name, m.name);
            assert_eq!(g.description, m.description);
            assert_eq!(g.received_at, m.date_rfc3339());
        }
        session.logout().await.expect("logout");
    });
}

/// The built-in definition with `from` replaced by `to` (it must be there).
fn sandbox_js_with(w: &World, edits: &[(&str, &str)]) -> Arc<BankDef> {
    let (_, text) = def::BUILTIN
        .iter()
        .find(|(n, _)| *n == "sandbox-js.toml")
        .expect("built-in");
    let mut text = text.to_string();
    for (from, to) in edits {
        assert!(text.contains(from), "{from}");
        text = text.replacen(from, to, 1);
    }
    let mut d = def::parse("sandbox-js.toml", &text).expect("a valid definition");
    d.base_url = w.base.clone();
    Arc::new(d)
}

fn inject(w: &World, user: &str, ago: chrono::Duration, n: usize) {
    for i in 0..n {
        w.bank
            .add_movement(sandbox_bank::AddMovement {
                username: user.into(),
                amount: format!("{}.00", 100 + i),
                currency: "UYU".into(),
                name: Some("Ana Lopez".into()),
                description: format!("injected {i}"),
                received_at: Some(chrono::Utc::now() - ago - chrono::Duration::seconds(i as i64)),
            })
            .expect("movement");
    }
}

async fn login_remembering(
    w: &World,
    user: &str,
    password: &str,
    remembered: Option<&str>,
    ask: &mut Script,
) -> Result<interp::Session, Failure> {
    let extra = BTreeMap::new();
    let creds = Creds {
        username: user,
        password,
        extra: &extra,
        remembered,
    };
    interp::login(&w.browser, &w.def, &creds, ask, true).await
}

#[test]
fn a_remembered_device_logs_in_without_a_code_until_the_bank_forgets_it() {
    run(|w| async move {
        let user = "user_otp+device";
        // A first login: the code, and the bank's trusted-device cookie kept for the next.
        let mut ask = codes(&["123456"]);
        let session = login_remembering(w, user, "pass_otp", None, &mut ask)
            .await
            .expect("login");
        assert_eq!(ask.asked.len(), 1);
        let kept = session.remembered().expect("the device cookie is kept").to_owned();
        let state: serde_json::Value = serde_json::from_str(&kept).expect("JSON");
        let cookies = &state["cookies"];
        let names: Vec<&str> = cookies
            .as_array()
            .expect("a list")
            .iter()
            .map(|c| c["name"].as_str().expect("name"))
            .collect();
        assert_eq!(names, ["sandbox_device"], "only the cookies the definition keeps");
        let keys: Vec<&str> = state["local_storage"]["items"]
            .as_array()
            .expect("localStorage items")
            .iter()
            .map(|kv| kv[0].as_str().expect("key"))
            .collect();
        assert_eq!(keys, ["sandbox_device_token"], "only the keys the definition keeps");
        let expires = cookies[0]["expires"].as_f64().expect("expires");
        let now = chrono::Utc::now().timestamp() as f64;
        assert!(
            expires > now + 89.0 * 86_400.0 && expires <= now + 90.0 * 86_400.0 + 5.0,
            "{expires}"
        );
        drop(session);

        // Given back: no code asked, and the movements are read.
        let mut none = Script::default();
        let mut session = login_remembering(w, user, "pass_otp", Some(&kept), &mut none)
            .await
            .expect("login without a code");
        assert!(none.asked.is_empty(), "{:?}", none.asked);
        assert_eq!(
            session.read_movements().await.expect("read").len(),
            w.bank.movements_of(user).len()
        );
        drop(session);

        // Not given, or given for another user: a code again.
        let mut ask = codes(&["123456"]);
        login_remembering(w, user, "pass_otp", None, &mut ask)
            .await
            .expect("login");
        assert_eq!(ask.asked.len(), 1);
        let mut ask = codes(&["123456"]);
        login_remembering(w, "user_otp+other-device", "pass_otp", Some(&kept), &mut ask)
            .await
            .expect("login");
        assert_eq!(ask.asked.len(), 1, "the device is remembered for its own user only");

        // Kept state that does not parse is ignored (a code is asked), never an error.
        let mut ask = codes(&["123456"]);
        login_remembering(w, user, "pass_otp", Some("{not json"), &mut ask)
            .await
            .expect("login");
        assert_eq!(ask.asked.len(), 1);

        // The bank forgets its devices: the kept cookie no longer helps.
        assert!(w.bank.forget_devices(user) >= 1);
        let mut ask = codes(&["123456"]);
        login_remembering(w, user, "pass_otp", Some(&kept), &mut ask)
            .await
            .expect("login");
        assert_eq!(ask.asked.len(), 1);
    });
}

async fn login_with(
    w: &World,
    def: &Arc<BankDef>,
    user: &str,
    remembered: Option<&str>,
    ask: &mut Script,
) -> Result<interp::Session, Failure> {
    let extra = BTreeMap::new();
    let creds = Creds {
        username: user,
        password: "pass_otp",
        extra: &extra,
        remembered,
    };
    interp::login(&w.browser, def, &creds, ask, true).await
}

/// Remember-device through `localStorage` alone: the bank's app keeps its device token there
/// (and sends it with the login); the definition keeps the key, never the cookie, so only the
/// key put back before the app's first script can spare the second login its code.
#[test]
fn a_remembered_local_storage_key_spares_the_code_and_an_unlisted_one_does_not() {
    run(|w| async move {
        let remember =
            "remember = { cookies = [\"sandbox_device\"], local_storage = [\"sandbox_device*\"], ttl = \"90d\" }";
        let by_key = sandbox_js_with(w, &[(remember, "remember = { local_storage = [\"sandbox_device*\"] }")]);
        let other_key = sandbox_js_with(w, &[(remember, "remember = { local_storage = [\"theme*\"] }")]);
        let user = "user_otp+storage";
        let mut ask = codes(&["123456"]);
        let session = login_with(w, &by_key, user, None, &mut ask).await.expect("login");
        assert_eq!(ask.asked.len(), 1, "a new device is asked for a code");
        let kept = session.remembered().expect("the key is kept").to_owned();
        drop(session);
        let state: serde_json::Value = serde_json::from_str(&kept).expect("JSON");
        assert_eq!(state["cookies"], serde_json::json!([]), "no cookie is kept: {state:?}");
        let items = &state["local_storage"]["items"];
        assert_eq!(items.as_array().map(Vec::len), Some(1), "{items:?}");
        assert_eq!(items[0][0], "sandbox_device_token");
        assert!(state["local_storage"]["origin"]
            .as_str()
            .is_some_and(|o| w.base.as_str().starts_with(o)));

        // Given back: the app finds its token and the bank trusts the device.
        let mut none = Script::default();
        let mut session = login_with(w, &by_key, user, Some(&kept), &mut none)
            .await
            .expect("login without a code");
        assert!(none.asked.is_empty(), "{:?}", none.asked);
        assert_eq!(
            session.read_movements().await.expect("read").len(),
            w.bank.movements_of(user).len()
        );
        drop(session);

        // A definition that does not list the key neither keeps it nor puts it back.
        let mut ask = codes(&["123456"]);
        let session = login_with(w, &other_key, user, Some(&kept), &mut ask)
            .await
            .expect("login");
        assert_eq!(ask.asked.len(), 1, "the unlisted key is not put back");
        assert!(session.remembered().is_none(), "nothing listed, nothing kept");
    });
}

#[test]
fn a_watch_rule_answers_the_banks_interruption_wherever_it_appears() {
    run(|w| async move {
        let user = "user_good+watch";
        w.bank.set_js_interruption(user, true);
        // The built-in definition answers "are you still there?" and reads the movements.
        let mut session = login(w, &w.def, user, "pass_good", &mut Script::default())
            .await
            .expect("login");
        let got = session.read_movements().await.expect("read");
        assert_eq!(got.len(), w.bank.movements_of(user).len());
        // Every visit asks again, and is answered again.
        assert_eq!(session.read_movements().await.expect("read again").len(), got.len());
        drop(session);

        // Without the rule the dialog stays: the login's branch waits for the movements page
        // that never comes, and the login fails there (after the step timeout, here 3 s).
        let unwatched = sandbox_js_with(
            w,
            &[
                (
                    "watch = [{ when = { visible = \"#session-timeout\" }, click = \"button#stay\" }]",
                    "",
                ),
                ("step = \"15s\"", "step = \"3s\""),
            ],
        );
        match login(w, &unwatched, user, "pass_good", &mut Script::default()).await {
            Err(Failure::Broken { step, .. }) => assert_eq!(step, "login[4]"),
            Err(Failure::Retryable(why, _)) => assert!(why.starts_with("login[4]"), "{why}"),
            Err(other) => panic!("expected the login to fail at login[4], got {other:?}"),
            Ok(_) => panic!("the login succeeded with the dialog unanswered"),
        }
        w.bank.set_js_interruption(user, false);
    });
}

#[test]
fn a_paged_list_is_read_page_after_page() {
    run(|w| async move {
        let user = "user_good+paged";
        inject(w, user, chrono::Duration::hours(2), 6);
        w.bank.set_js_page_size(user, Some(3));
        let want = w.bank.movements_of(user);
        assert!(
            want.len() >= 11,
            "the bank's own 5 or more and 6 injected: four pages of 3 or more"
        );
        let mut session = login(w, &w.def, user, "pass_good", &mut Script::default())
            .await
            .expect("login");
        let got = session.read_movements().await.expect("read");
        let ids =
            |l: &[reconbanker_browser::extract::Movement]| l.iter().map(|m| m.external_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&got), want.iter().map(|m| m.id.clone()).collect::<Vec<_>>());

        // At most `max_pages` pages.
        let two = sandbox_js_with(w, &[("max_pages = 20", "max_pages = 2")]);
        let mut session = login(w, &two, user, "pass_good", &mut Script::default())
            .await
            .expect("login");
        let got = session.read_movements().await.expect("read");
        assert_eq!(ids(&got), want.iter().take(6).map(|m| m.id.clone()).collect::<Vec<_>>());

        // Stopping after the first page that reaches back past `until_older_than` (the page
        // holding the newest movement injected two hours back).
        let horizon = chrono::Utc::now() - chrono::Duration::hours(1);
        let first_old = want.iter().position(|m| m.date < horizon).expect("an old movement");
        let through = (first_old / 3 + 1) * 3;
        assert!(through < want.len(), "pages are left unread");
        let recent = sandbox_js_with(w, &[("max_pages = 20", "max_pages = 20\nuntil_older_than = \"1h\"")]);
        let mut session = login(w, &recent, user, "pass_good", &mut Script::default())
            .await
            .expect("login");
        let got = session.read_movements().await.expect("read");
        assert_eq!(
            ids(&got),
            want.iter().take(through).map(|m| m.id.clone()).collect::<Vec<_>>()
        );

        // The same list read from the page's table instead of the captured JSON: after `next`,
        // only rows not read before count.
        let table = sandbox_js_with(
            w,
            &[
                (
                    "capture = { response = \"/js/api/movements\", status = 200 }",
                    "table = \"table#movements\"\nrows = \"table#movements tbody tr\"",
                ),
                ("list = \"/movements\"", ""),
                (
                    "external_id = { json = \"/id\" }",
                    "external_id = { attr = \"data-id\" }",
                ),
                (
                    "received_at = { json = \"/date\",",
                    "received_at = { text = \"td.date\",",
                ),
                ("amount = { json = \"/amount\",", "amount = { text = \"td.amount\","),
                (
                    "currency = { json = \"/currency\",",
                    "currency = { text = \"td.currency\",",
                ),
                ("name = { json = \"/name\",", "name = { text = \"td.name\","),
                (
                    "description = { json = \"/description\" }",
                    "description = { text = \"td.description\" }",
                ),
            ],
        );
        let mut session = login(w, &table, user, "pass_good", &mut Script::default())
            .await
            .expect("login");
        let got = session.read_movements().await.expect("read");
        assert_eq!(ids(&got), want.iter().map(|m| m.id.clone()).collect::<Vec<_>>());
        for (g, m) in got.iter().zip(&want) {
            assert_eq!(
                (&g.amount, &g.received_at),
                (&m.amount().to_string(), &m.date_rfc3339())
            );
        }

        // Without `next`, the first page only (what a definition without pagination reads).
        let one = sandbox_js_with(w, &[("next = \"button#next-page\"", ""), ("max_pages = 20", "")]);
        let mut session = login(w, &one, user, "pass_good", &mut Script::default())
            .await
            .expect("login");
        let got = session.read_movements().await.expect("read");
        assert_eq!(ids(&got), want.iter().take(3).map(|m| m.id.clone()).collect::<Vec<_>>());
        w.bank.set_js_page_size(user, None);
    });
}

fn fatal(r: Result<interp::Session, Failure>) -> reconbanker_browser::def::FatalKind {
    match r {
        Err(Failure::Fatal(k, _)) => k,
        Err(other) => panic!("expected a fatal failure, got {other:?}"),
        Ok(_) => panic!("expected a fatal failure, got a session"),
    }
}

#[test]
fn user_otp_wrong_then_right_code_on_the_same_request() {
    run(|w| async move {
        let user = "user_otp+wr";
        let mut otp = w.bank.subscribe_otp();
        let mut ask = codes(&["000000", "123456"]);
        let mut session = login(w, &w.def, user, "pass_otp", &mut ask).await.expect("login");
        // Asked twice for the same descriptor, one rejection in between.
        assert_eq!(ask.asked.len(), 2);
        assert_eq!(ask.rejected, 1);
        assert_eq!(
            ask.asked[0],
            OtpRequest {
                length: 6,
                alphanumeric: false,
                purpose: Some("login".into())
            }
        );
        let judged: Vec<bool> = [otp.try_recv().expect("1st"), otp.try_recv().expect("2nd")]
            .iter()
            .filter(|e| e.username == user)
            .map(|e| e.accepted)
            .collect();
        assert_eq!(judged, [false, true]);
        assert_eq!(
            session.read_movements().await.expect("read").len(),
            w.bank.movements_of(user).len()
        );
    });
}

#[test]
fn user_alnum_descriptor_is_read_from_the_page() {
    run(|w| async move {
        let mut ask = codes(&["AB12CD34"]);
        login(w, &w.def, "user_alnum+a", "pass_alnum", &mut ask)
            .await
            .expect("login");
        assert_eq!(
            ask.asked,
            [OtpRequest {
                length: 8,
                alphanumeric: true,
                purpose: Some("login".into())
            }]
        );
    });
}

#[test]
fn a_third_wrong_code_is_otp_rejected() {
    run(|w| async move {
        let mut ask = codes(&["000000", "111111", "222222", "123456"]);
        let kind = fatal(login(w, &w.def, "user_otp+third", "pass_otp", &mut ask).await);
        assert_eq!(kind, reconbanker_browser::def::FatalKind::OtpRejected);
        assert_eq!((ask.asked.len(), ask.rejected), (3, 2));
    });
}

#[test]
fn locked_and_bad_password_are_fatal() {
    run(|w| async move {
        use reconbanker_browser::def::FatalKind;
        let locked = fatal(login(w, &w.def, "user_locked+l", "pass_locked", &mut Script::default()).await);
        assert_eq!(locked, FatalKind::AccountLocked);
        let bad = fatal(login(w, &w.def, "user_good+bad", "nope", &mut Script::default()).await);
        assert_eq!(bad, FatalKind::BadCredentials);
    });
}

#[test]
fn a_code_that_never_comes_ends_the_login_with_the_engines_reason() {
    run(|w| async move {
        let r = login(w, &w.def, "user_otp+none", "pass_otp", &mut Script::default()).await;
        assert!(matches!(r, Err(Failure::NoCode(NoCode::Expired))), "{:?}", r.err());
    });
}

#[test]
fn user_flaky_is_retryable_then_logs_in_and_a_flaky_read_is_retryable() {
    run(|w| async move {
        let user = "user_flaky+f";
        let first = login(w, &w.def, user, "pass_flaky", &mut Script::default()).await;
        assert!(matches!(first, Err(Failure::Retryable(..))), "{:?}", first.err());
        let mut session = login(w, &w.def, user, "pass_flaky", &mut Script::default())
            .await
            .expect("2nd login");
        // The bank fails every 3rd read of the movements; the page the login lands on was the 1st.
        session.read_movements().await.expect("2nd read");
        let third = session.read_movements().await;
        assert!(matches!(third, Err(Failure::Retryable(..))), "{:?}", third.err());
        session.read_movements().await.expect("4th read");
    });
}

#[test]
fn user_slow_with_a_short_step_timeout_is_retryable_not_broken() {
    run(|w| async move {
        let mut d = (*w.def).clone();
        d.timeouts.step = Duration::from_millis(800);
        let r = login(w, &Arc::new(d), "user_slow+s", "pass_slow", &mut Script::default()).await;
        assert!(matches!(r, Err(Failure::Retryable(..))), "{:?}", r.err());
    });
}

#[test]
fn a_dropped_session_is_session_expired() {
    run(|w| async move {
        let user = "user_good+drop";
        let mut session = login(w, &w.def, user, "pass_good", &mut Script::default())
            .await
            .expect("login");
        session.read_movements().await.expect("read");
        assert!(w.bank.drop_sessions(user) > 0);
        let r = session.read_movements().await;
        assert!(matches!(r, Err(Failure::SessionExpired)), "{:?}", r.err());
    });
}

#[test]
fn a_page_that_no_longer_matches_is_broken_with_evidence_and_no_secret() {
    run(|w| async move {
        // The definition expects a table id the bank does not have (as after a redesign).
        let text = def::BUILTIN[0].1.replace(
            "body[data-page=movements]\" }, then = \"done\"",
            "body[data-page=dashboard]\" }, then = \"done\"",
        );
        let mut d = def::parse("renamed.toml", &text).expect("valid");
        d.base_url = w.base.clone();
        d.timeouts.step = Duration::from_secs(5);
        let r = login(w, &Arc::new(d), "user_good+broken", "pass_good", &mut Script::default()).await;
        let Err(Failure::Broken {
            step,
            evidence: Some(ev),
            ..
        }) = r
        else {
            panic!("expected Broken with evidence, got {:?}", r.err());
        };
        assert_eq!(step, "login[4]");
        assert_eq!(&ev.jpeg[..3], &[0xFF, 0xD8, 0xFF], "a JPEG");
        assert!(
            ev.dom.contains("data-page=\"movements\""),
            "the DOM of the page it was on"
        );
        assert!(!ev.dom.contains("pass_good"));
        assert_eq!(ev.trail.first().map(String::as_str), Some("login[0]"));
    });
}

#[test]
fn twenty_parallel_logins_stay_isolated() {
    run(|w| async move {
        // About isolation, not speed: 20 renderers starting at once on 2 busy cores get time.
        let mut d = (*w.def).clone();
        d.timeouts.step = Duration::from_secs(90);
        d.timeouts.read = Duration::from_secs(90);
        let d = &Arc::new(d);
        let logins = (0..20).map(|i| async move {
            let user = format!("user_good+p{i}");
            let mut s = login(w, d, &user, "pass_good", &mut Script::default())
                .await
                .expect("login");
            let got = s.read_movements().await.expect("read");
            (user, got)
        });
        for (user, got) in futures_util::future::join_all(logins).await {
            let want: Vec<String> = w.bank.movements_of(&user).into_iter().map(|m| m.id).collect();
            let ids: Vec<String> = got.into_iter().map(|m| m.external_id).collect();
            assert_eq!(ids, want, "{user}");
            assert!(ids.iter().all(|id| id.starts_with(&format!("{user}-"))));
        }
    });
}

/// A bank of its own (its counters are not shared with the other tests).
async fn private_bank() -> (SandboxBank, u16) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let bank = SandboxBank::new(BankConfig::default());
    tokio::spawn(bank.clone().serve(listener, std::future::pending()));
    (bank, port)
}

#[test]
fn a_host_outside_the_allow_list_is_never_reached() {
    run(|w| async move {
        let (bank, port) = private_bank().await;
        let mut d = sandbox_js(&url::Url::parse(&format!("http://127.0.0.1:{port}/")).expect("url"));
        d.allowed_hosts = vec!["127.0.0.1".into()];
        // The same server as 127.0.0.1 (allowed) and as localhost (not): only one gets through.
        let post = |host: &str| {
            format!(
                "fetch('http://{host}:{port}/js/api/login', {{method: 'POST', headers: {{'Content-Type': 'application/json'}}, body: '{{}}'}}).then(() => 'reached', () => 'blocked')"
            )
        };
        let page = format!("http://127.0.0.1:{port}/js/login");
        let (v, blocked) = interp::eval_on(&w.browser, &d, &page, &post("127.0.0.1"))
            .await
            .expect("eval");
        assert_eq!((v.as_str(), blocked.len()), (Some("reached"), 0));
        assert_eq!(bank.stats().logins_attempted, 1);
        let (v, blocked) = interp::eval_on(&w.browser, &d, &page, &post("localhost"))
            .await
            .expect("eval");
        assert_eq!(v.as_str(), Some("blocked"));
        assert_eq!(blocked, ["localhost"]);
        assert_eq!(
            bank.stats().logins_attempted,
            1,
            "the refused request never reached the bank"
        );
    });
}

/// Tells the test when the login is parked on the OTP screen, then never gives a code.
struct Parked(Option<tokio::sync::oneshot::Sender<()>>);

#[async_trait::async_trait]
impl CodeAsk for Parked {
    async fn code(&mut self, _: &OtpRequest) -> Result<String, NoCode> {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
        std::future::pending().await
    }

    async fn rejected(&mut self) {}
}

fn park(
    browser: &Arc<BrowserRuntime>,
    def: &Arc<BankDef>,
    user: &'static str,
) -> (
    tokio::task::JoinHandle<Result<(), String>>,
    tokio::sync::oneshot::Receiver<()>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (browser, def) = (Arc::clone(browser), Arc::clone(def));
    let task = tokio::spawn(async move {
        let extra = BTreeMap::new();
        let creds = Creds {
            username: user,
            password: "pass_otp",
            extra: &extra,
            remembered: None,
        };
        match interp::login(&browser, &def, &creds, &mut Parked(Some(tx)), true).await {
            Ok(_) => Ok(()),
            Err(e) => Err(format!("{e:?}")),
        }
    });
    (task, rx)
}

/// A Chromium of the test's own (not the shared one), for cases that kill it or count its
/// processes and contexts.
fn own_browser(name: &str) -> Arc<BrowserRuntime> {
    let scratch = std::env::temp_dir().join(format!("rbk-browser-{name}-{}", std::process::id()));
    let mut cfg = RuntimeConfig::from_env(&scratch).expect("config");
    cfg.chromium = reconbanker_browser::runtime::find_chromium();
    BrowserRuntime::new(cfg)
}

/// Its own Chromium: these cases kill it.
#[test]
fn a_killed_login_disposes_its_context_and_a_killed_browser_is_relaunched() {
    run(|w| async move {
        let browser = own_browser("kill");

        // Killed while parked on the OTP screen (the engine drops the login future).
        let (task, parked) = park(&browser, &w.def, "user_otp+kill");
        parked.await.expect("parked on the OTP screen");
        assert_eq!(browser.open_contexts().await, Some(1));
        task.abort();
        browser.wait_disposed(1).await;
        assert_eq!(browser.open_contexts().await, Some(0), "the context was disposed");

        // kill -9 of Chromium while a login waits: that login fails retryable, the next one
        // relaunches the browser and gets in.
        let (task, parked) = park(&browser, &w.def, "user_otp+crash");
        parked.await.expect("parked");
        let pid = browser.pid().await.expect("a running chromium");
        let status = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let r = task.await.expect("join");
        assert!(r.as_ref().is_err_and(|e| e.contains("Retryable")), "{r:?}");
        assert_eq!(browser.launches(), 1);
        let extra = BTreeMap::new();
        let creds = Creds {
            username: "user_good+crash",
            password: "pass_good",
            extra: &extra,
            remembered: None,
        };
        let mut s = interp::login(&browser, &w.def, &creds, &mut Script::default(), true)
            .await
            .expect("login after the crash");
        assert!(!s.read_movements().await.expect("read").is_empty());
        assert_eq!(browser.launches(), 2, "relaunched");
        assert_ne!(browser.pid().await, Some(pid));
        drop(s);
        browser.shutdown().await;
    });
}

/// A browser that is shut down leaves nothing behind: not its profile, and not the directory of
/// its single-instance socket that Chromium makes in the system's temporary directory (it is
/// killed, so it cannot remove that itself).
#[test]
fn a_shut_down_browser_leaves_no_files_behind() {
    run(|w| async move {
        let browser = own_browser("files");
        let lease = browser.lease(&w.def).await.expect("a context");
        let profiles: Vec<_> = std::fs::read_dir(&browser.config().scratch_dir)
            .expect("the scratch directory")
            .map(|e| e.expect("an entry").path())
            .collect();
        assert_eq!(profiles.len(), 1, "one profile: {profiles:?}");
        let socket = std::fs::read_link(profiles[0].join("SingletonSocket")).expect("Chromium's socket link");
        let socket_dir = socket.parent().expect("the socket's directory").to_path_buf();
        assert!(socket_dir.is_dir(), "{}", socket_dir.display());
        drop(lease);
        browser.shutdown().await;
        let left: Vec<_> = std::fs::read_dir(&profiles[0])
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
            .unwrap_or_default();
        assert!(!profiles[0].exists(), "the profile is removed; left: {left:?}");
        assert!(!socket_dir.exists(), "{} is removed", socket_dir.display());
    });
}

/// A parked login costs one renderer process: headless Chromium's per-context extras (the
/// address bar's WebUI popup) are switched off (docs/banks.md, "Resources"). Its own Chromium,
/// so no other test's logins are counted.
#[test]
fn a_parked_login_costs_one_renderer_process() {
    run(|w| async move {
        let browser = own_browser("procs");
        let (first, parked) = park(&browser, &w.def, "user_otp+procs0");
        parked.await.expect("parked on the OTP screen");
        let pid = browser.pid().await.expect("a running chromium");
        let before = reconbanker_browser::runtime::tree_renderers(pid);
        let mut tasks = Vec::new();
        for user in ["user_otp+procs1", "user_otp+procs2", "user_otp+procs3"] {
            let (task, parked) = park(&browser, &w.def, user);
            parked.await.expect("parked on the OTP screen");
            tasks.push(task);
        }
        let after = reconbanker_browser::runtime::tree_renderers(pid);
        // Three more logins: three renderers, and at most one spare Chromium keeps warm.
        assert!(
            after >= before + 3 && after <= before + 4,
            "renderers: {before} with one login parked, {after} with four"
        );
        first.abort();
        for t in tasks {
            t.abort();
        }
        browser.shutdown().await;
    });
}

/// `read = "http"` (CONNECTORS §4): the login runs in the browser, then its context is closed
/// and every read is one HTTP request with the login's cookies and the bearer token captured
/// from the bank's own XHR; the bank dropping the session is `SessionExpired` (the engine logs
/// in again). Its own Chromium, to count its contexts.
#[test]
fn read_http_reads_over_http_with_the_logins_cookies_and_closes_the_context() {
    run(|w| async move {
        let d = sandbox_js_with(
            w,
            &[
                (
                    "goto = \"/js/movements\"",
                    "read = \"http\"\nurl = \"/js/api/movements\"\nheaders = [\"Authorization\"]",
                ),
                ("next = \"button#next-page\"", ""),
                ("max_pages = 20", ""),
                ("logged_out = { url = \"/js/login$\" }", ""),
            ],
        );
        let browser = own_browser("http");
        let user = "user_otp+http";
        let extra = BTreeMap::new();
        let creds = Creds {
            username: user,
            password: "pass_otp",
            extra: &extra,
            remembered: None,
        };
        let mut session = interp::login(&browser, &d, &creds, &mut codes(&["123456"]), true)
            .await
            .expect("login");
        assert!(session.lease().is_none(), "no page is kept");
        browser.wait_disposed(1).await;
        assert_eq!(browser.open_contexts().await, Some(0), "the context is closed");

        // Movements the bank adds later are in the next read: each read asks the bank.
        for round in 0..2 {
            let got = session.read_movements().await.expect("read over HTTP");
            let want = w.bank.movements_of(user);
            assert!(!want.is_empty());
            assert_eq!(got.len(), want.len(), "round {round}");
            for (g, m) in got.iter().zip(&want) {
                assert_eq!(g.external_id, m.id);
                assert_eq!(g.amount, m.amount);
                assert_eq!(g.received_at, m.date_rfc3339());
            }
            inject(w, user, chrono::Duration::minutes(1), 1);
        }
        assert_eq!(browser.open_contexts().await, Some(0), "reads open no context");

        assert!(w.bank.drop_sessions(user) > 0);
        let r = session.read_movements().await;
        assert!(matches!(r, Err(Failure::SessionExpired)), "{:?}", r.err());
        session.logout().await.expect("nothing to do without a page");
        browser.shutdown().await;
    });
}

/// `eval … as` (CONNECTORS §7–§8): a value read by page-side JavaScript becomes a variable that
/// a branch tests and a URL template uses — here the page number of the bank's "older" button,
/// read from the page and sent as `?page=` of a `read = "http"` request.
#[test]
fn an_eval_result_is_a_variable_for_branches_and_url_templates() {
    run(|w| async move {
        let user = "user_good+vars";
        w.bank.set_js_page_size(user, Some(2));
        let d = sandbox_js_with(
            w,
            &[
                (
                    "{ when = { visible = \"body[data-page=movements]\" }, then = \"done\" }",
                    "{ when = { visible = \"body[data-page=movements]\" }, then = \"continue\" }",
                ),
                (
                    "\n[otp]\n",
                    "\n[[login]]\nwait_for = { visible = \"button#next-page\" }\n\n\
                     [[login]]\neval = \"document.querySelector('button#next-page').getAttribute('data-page')\"\n\
                     as = \"older\"\n\n\
                     [[login]]\nbranch = [{ when = { var = \"older\", equals = \"2\" }, then = \"done\" }]\n\n[otp]\n",
                ),
                (
                    "goto = \"/js/movements\"",
                    "read = \"http\"\nurl = \"/js/api/movements?page={{ vars.older }}\"\nheaders = [\"authorization\"]",
                ),
                ("next = \"button#next-page\"", ""),
                ("max_pages = 20", ""),
                ("logged_out = { url = \"/js/login$\" }", ""),
            ],
        );
        let mut session = login(w, &d, user, "pass_good", &mut Script::default())
            .await
            .expect("login through the variable's branch");
        let got = session.read_movements().await.expect("read page 2 over HTTP");
        let want = w.bank.movements_of(user);
        assert!(want.len() >= 4, "{}", want.len());
        let ids: Vec<&str> = got.iter().map(|m| m.external_id.as_str()).collect();
        let second: Vec<&str> = want[2..4].iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, second, "the page the variable named");
        w.bank.set_js_page_size(user, None);
    });
}

/// A throwing `eval` is `Broken` at its step with the script's message — without a credential
/// even when the script put one in it — and a result over the size bound is `Broken` too.
#[test]
fn a_throwing_or_oversized_eval_is_broken_without_secrets() {
    run(|w| async move {
        let click = "[[login]]\nclick = \"#login-form button[type=submit]\"";
        for (script, says) in [
            (
                "throw new Error('boom ' + document.querySelector('#login-form input[name=password]').value)",
                "the eval script threw: Error: boom [redacted]",
            ),
            ("'x'.repeat(70000)", "larger than 64 KiB"),
        ] {
            let eval = format!("[[login]]\neval = \"{script}\"\nas = \"v\"\n\n{click}");
            let d = sandbox_js_with(w, &[(click, eval.as_str())]);
            match login(w, &d, "user_good+eval", "pass_good", &mut Script::default()).await {
                Err(Failure::Broken { step, detail, evidence }) => {
                    assert_eq!(step, "login[3]");
                    assert!(detail.contains(says), "{detail}");
                    assert!(!detail.contains("pass_good"), "{detail}");
                    let ev = evidence.expect("evidence");
                    assert!(!ev.dom.contains("pass_good"), "the DOM snapshot is blanked");
                }
                Err(other) => panic!("expected Broken, got {other:?}"),
                Ok(_) => panic!("the login succeeded"),
            }
        }
    });
}

/// `[movements] headers`: the bank's movements API wants the bearer token its app sends. Read
/// with the header captured from the app's own XHR it answers; the same definition without
/// `headers` sends cookies alone and its first read is `SessionExpired`; a header the bank's
/// requests never carry is `Broken` at the login, named without a value.
#[test]
fn read_http_sends_the_header_captured_from_the_banks_own_xhr() {
    run(|w| async move {
        let http = |headers: &str| {
            sandbox_js_with(
                w,
                &[
                    (
                        "goto = \"/js/movements\"",
                        &format!("read = \"http\"\nurl = \"/js/api/movements\"\n{headers}"),
                    ),
                    ("next = \"button#next-page\"", ""),
                    ("max_pages = 20", ""),
                    ("logged_out = { url = \"/js/login$\" }", ""),
                ],
            )
        };
        let user = "user_good+bearer";
        let want = w.bank.movements_of(user).len();
        let with = http("headers = [\"authorization\"]");
        let mut session = login(w, &with, user, "pass_good", &mut Script::default())
            .await
            .expect("login");
        assert_eq!(session.read_movements().await.expect("read with the token").len(), want);
        drop(session);

        let without = http("");
        let mut session = login(w, &without, user, "pass_good", &mut Script::default())
            .await
            .expect("login");
        let r = session.read_movements().await;
        assert!(matches!(r, Err(Failure::SessionExpired)), "{:?}", r.err());

        let never = http("headers = [\"authorization\", \"x-api-key\"]");
        match login(w, &never, user, "pass_good", &mut Script::default()).await {
            Err(Failure::Broken { step, detail, .. }) => {
                assert_eq!(step, "movements.headers");
                assert!(detail.ends_with("never carried x-api-key"), "{detail}");
                assert!(!detail.contains("Bearer"), "{detail}");
            }
            Err(other) => panic!("expected Broken, got {other:?}"),
            Ok(_) => panic!("logged in without the header"),
        }
    });
}

/// Waits for the next idle event of `user` on `events` (other users' are skipped).
async fn next_idle(
    events: &mut tokio::sync::broadcast::Receiver<sandbox_bank::JsIdleEvent>,
    user: &str,
) -> sandbox_bank::JsIdleEvent {
    use sandbox_bank::JsIdleEvent;
    loop {
        let e = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .expect("an idle event within 30 s");
        match e {
            Ok(ev @ (JsIdleEvent::Stayed { .. } | JsIdleEvent::LoggedOut { .. })) => {
                let (JsIdleEvent::Stayed { username } | JsIdleEvent::LoggedOut { username }) = &ev;
                if username == user {
                    return ev;
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(e) => panic!("idle events: {e}"),
        }
    }
}

/// `[session] keep_alive = "<duration>"`: while the session is parked between reads, the watch
/// rules run on the timer, so the bank's idle dialog is answered and the next read works; with
/// the default (`"reads"`) nothing looks at the parked page, the page logs out, and the next
/// read is `SessionExpired`.
#[test]
fn a_keep_alive_timer_answers_the_idle_dialog_between_reads() {
    run(|w| async move {
        use sandbox_bank::{JsIdle, JsIdleEvent};
        let user = "user_good+idle";
        w.bank.set_js_idle(
            user,
            Some(JsIdle {
                warn_after: Duration::from_millis(300),
                logout_after: Duration::from_secs(3),
            }),
        );
        let watch = "watch = [{ when = { visible = \"#session-timeout\" }, click = \"button#stay\" }]";
        let timed = sandbox_js_with(w, &[(watch, &format!("{watch}\nkeep_alive = \"200ms\""))]);
        let want = w.bank.movements_of(user).len();

        let mut session = login(w, &timed, user, "pass_good", &mut Script::default())
            .await
            .expect("login");
        // Parked: the dialog comes back every 300 ms of quiet and the timer answers it.
        let mut events = w.bank.subscribe_js_idle();
        for _ in 0..3 {
            let ev = next_idle(&mut events, user).await;
            assert!(matches!(ev, JsIdleEvent::Stayed { .. }), "{ev:?}");
        }
        assert_eq!(session.read_movements().await.expect("the next read").len(), want);
        let ev = next_idle(&mut events, user).await;
        assert!(
            matches!(ev, JsIdleEvent::Stayed { .. }),
            "answered after a read too: {ev:?}"
        );
        drop(session);

        // The built-in definition keeps sessions warm by reads only: the parked page logs out.
        let mut session = login(w, &w.def, user, "pass_good", &mut Script::default())
            .await
            .expect("login");
        let mut events = w.bank.subscribe_js_idle();
        let ev = next_idle(&mut events, user).await;
        assert!(matches!(ev, JsIdleEvent::LoggedOut { .. }), "{ev:?}");
        let r = session.read_movements().await;
        assert!(matches!(r, Err(Failure::SessionExpired)), "{:?}", r.err());
        w.bank.set_js_idle(user, None);
    });
}

/// The keep-alive timer belongs to its session: dropping the session disposes the context at
/// once (the timer holds the page only weakly), even while the timer is running. Its own
/// Chromium, to count its contexts.
#[test]
fn a_keep_alive_timer_never_keeps_its_context_alive() {
    run(|w| async move {
        use sandbox_bank::{JsIdle, JsIdleEvent};
        let user = "user_good+idle-drop";
        w.bank.set_js_idle(
            user,
            Some(JsIdle {
                warn_after: Duration::from_millis(200),
                logout_after: Duration::from_secs(3),
            }),
        );
        let watch = "watch = [{ when = { visible = \"#session-timeout\" }, click = \"button#stay\" }]";
        let timed = sandbox_js_with(w, &[(watch, &format!("{watch}\nkeep_alive = \"100ms\""))]);
        let browser = own_browser("keepalive");
        let extra = BTreeMap::new();
        let creds = Creds {
            username: user,
            password: "pass_good",
            extra: &extra,
            remembered: None,
        };
        let mut events = w.bank.subscribe_js_idle();
        let session = interp::login(&browser, &timed, &creds, &mut Script::default(), true)
            .await
            .expect("login");
        let ev = next_idle(&mut events, user).await;
        assert!(matches!(ev, JsIdleEvent::Stayed { .. }), "the timer runs: {ev:?}");
        drop(session);
        tokio::time::timeout(Duration::from_secs(30), browser.wait_disposed(1))
            .await
            .expect("the context is disposed when the session is dropped");
        assert_eq!(browser.open_contexts().await, Some(0));
        w.bank.set_js_idle(user, None);
        browser.shutdown().await;
    });
}
