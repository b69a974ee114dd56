//! Black-box tests of the browser connector runtime in headless Chromium against the
//! JavaScript sandbox bank (`sandbox-js`), driven by the built-in definition
//! `banks/sandbox-js.toml` with its base URL pointed at a bank on 127.0.0.1:0.
//!
//! One Chromium and one sandbox bank serve the whole binary (a shared tokio runtime: the CDP
//! handler must outlive every test). Each test uses its own tagged usernames (`user_good+t1`),
//! so tests run in parallel without seeing each other. Without Chromium the tests print a
//! notice and pass, unless `REQUIRE_CHROMIUM=1` (CI), where they fail.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
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
