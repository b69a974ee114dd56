//! Issue 9: the engine and `/v1` flows once more on `sandbox-js`, the JavaScript sandbox bank,
//! through the browser connector and its built-in definition (`banks/sandbox-js.toml`) in
//! headless Chromium. Skipped with a notice when no Chromium is installed, unless
//! `REQUIRE_CHROMIUM=1` (CI), where that fails.

use std::sync::Arc;
use std::time::Duration;

use reconbanker::support::clock::ManualClock;
use reconbanker::AppOptions;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{self, AccountOut, BankFixture, BankOut, MovementOut, SubmittedOut, TestApp};

fn chromium_or_skip() -> bool {
    if reconbanker_browser::runtime::find_chromium().is_some() {
        return true;
    }
    assert!(
        std::env::var("REQUIRE_CHROMIUM").as_deref() != Ok("1"),
        "REQUIRE_CHROMIUM=1 but no Chromium was found (apt-get install chromium)"
    );
    eprintln!("NOTICE: no Chromium found (install Debian's `chromium`); the sandbox-js tests are SKIPPED");
    false
}

/// An account on `sandbox-js` with these bank credentials, assisted.
async fn js_account(f: &BankFixture, username: &str, password: &str) -> String {
    account_on(f, "sandbox-js", username, password).await
}

/// An account on the bank `code` (a `sandbox-js` definition) with these credentials, assisted.
async fn account_on(f: &BankFixture, code: &str, username: &str, password: &str) -> String {
    let banks: Vec<BankOut> = f.app.get_as("/banks", &f.token, StatusCode::OK).await;
    let bank = banks
        .into_iter()
        .find(|b| b.code == code)
        .unwrap_or_else(|| panic!("{code} is loaded"));
    assert!(
        bank.login_url.as_deref().is_some_and(|u| u.ends_with("/js/login")),
        "{:?}",
        bank.login_url
    );
    let created: AccountOut = f
        .app
        .post_as(
            "/accounts",
            &f.token,
            Some(json!({"bankId": bank.id, "name": username})),
            StatusCode::CREATED,
        )
        .await;
    let config = json!({"bank_username": username, "bank_password": password, "login_mode": "assisted"});
    let r = f
        .app
        .json(
            Method::PUT,
            &format!("/accounts/{}/config", created.id),
            Some(&f.token),
            Some(config),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    created.id
}

#[tokio::test]
async fn assisted_login_through_v1_on_the_javascript_bank() {
    if !chromium_or_skip() {
        return;
    }
    let f = BankFixture::new().await;
    let id = js_account(&f, "user_otp+js", "pass_otp").await;
    let key = f.app.key(&f.token, &["otp:write", "status:read"], None).await;
    let otp = format!("/v1/accounts/{id}/otp");
    let mut events = f.app.events().await;
    f.post(&format!("/accounts/{id}/scrape")).await;

    // The descriptor was read from the page the app rendered.
    let requested = events.next(&id, "assistance.requested").await;
    assert_eq!(
        requested.data["descriptor"],
        json!({"length": 6, "type": "numeric", "purpose": "login"})
    );
    let request_id = requested.data["requestId"].as_str().expect("id").to_owned();
    let pending = f.app.status(&id, &key).await.pending_assistance.expect("pending");
    assert_eq!((pending.id.as_str(), pending.attempts), (request_id.as_str(), 0));

    // A wrong code: typed into the page, refused by the bank, the same request asked again.
    let mut judged = f.bank.subscribe_otp();
    let r = f
        .app
        .v1(Method::POST, &otp, &key, Some(json!({"code": "000000"})))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let verdict = tokio::time::timeout(Duration::from_secs(30), judged.recv())
        .await
        .expect("the bank judged no code within 30 s")
        .expect("judged");
    assert_eq!((verdict.username.as_str(), verdict.accepted), ("user_otp+js", false));
    let again = events.next(&id, "assistance.requested").await;
    assert_eq!(
        (again.data["requestId"].as_str(), again.data["attempts"].as_u64()),
        (Some(request_id.as_str()), Some(1))
    );

    // The right code: fulfilled, the movements (JSON from the app's XHR) stored exactly.
    let r = f
        .app
        .v1(
            Method::POST,
            &otp,
            &key,
            Some(json!({"code": "123456", "request_id": request_id})),
        )
        .await;
    let submitted: SubmittedOut = r.typed(StatusCode::ACCEPTED);
    assert!(submitted.submitted);
    events.next(&id, "assistance.fulfilled").await;
    events.next(&id, "login.succeeded").await;
    let scraped = events.next(&id, "scrape.succeeded").await;
    let want = f.bank.movements_of("user_otp+js");
    assert_eq!(scraped.data["new_movements"].as_u64(), Some(want.len() as u64));
    let stored: Vec<MovementOut> = f
        .app
        .get_as(&format!("/accounts/{id}/movements"), &f.token, StatusCode::OK)
        .await;
    let mut got: Vec<(String, String, Option<String>, String)> = stored
        .iter()
        .map(|m| {
            (
                m.amount.clone(),
                m.description.clone(),
                m.name.clone(),
                m.currency.clone(),
            )
        })
        .collect();
    let mut expected: Vec<(String, String, Option<String>, String)> = want
        .iter()
        .map(|m| {
            (
                m.amount().to_owned(),
                m.description.clone(),
                m.name.clone(),
                m.currency.clone(),
            )
        })
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    assert!(f.app.status(&id, &key).await.pending_assistance.is_none());

    // Remember-device: the bank's trusted-device cookie was kept, sealed (its value is nowhere
    // in the database's bytes), and the next login needs no code.
    events.next(&id, "session.stopped").await;
    let account: reconbanker_store::AccountId = id.parse().expect("id");
    let sealed = f
        .app
        .state
        .store
        .device_state(account)
        .await
        .expect("read")
        .expect("kept");
    assert!(!String::from_utf8_lossy(&sealed).contains("sandbox_device"), "sealed");
    let submitted_before = f.bank.stats().otp_submissions;
    f.post(&format!("/accounts/{id}/scrape")).await;
    loop {
        let e = events.next_any(&id).await;
        assert_ne!(
            e.kind, "assistance.requested",
            "a remembered device was asked for a code"
        );
        if e.kind == "login.succeeded" {
            break;
        }
    }
    events.next(&id, "scrape.succeeded").await;
    assert_eq!(f.bank.stats().otp_submissions, submitted_before);
}

#[tokio::test]
async fn a_bad_password_on_the_javascript_bank_blocks_the_account() {
    if !chromium_or_skip() {
        return;
    }
    let f = BankFixture::new().await;
    let id = js_account(&f, "user_good+jsbad", "wrong").await;
    let mut events = f.app.events().await;
    f.post(&format!("/accounts/{id}/scrape")).await;
    let failed = events.next(&id, "login.failed").await;
    assert_eq!(failed.data["reason"], "bad_credentials");

    // The server stopping shuts its browser down and removes the browser's files: its profile
    // under the data directory, and Chromium's socket directory in the system's temporary one.
    let scratch = f.app.state.config.data_dir.join("tmp");
    let profiles: Vec<_> = std::fs::read_dir(&scratch)
        .expect("the browser's scratch directory")
        .map(|e| e.expect("an entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("chromium-"))
        })
        .collect();
    assert_eq!(profiles.len(), 1, "{profiles:?}");
    let socket = std::fs::read_link(profiles[0].join("SingletonSocket")).expect("Chromium's socket link");
    let socket_dir = socket.parent().expect("its directory").to_path_buf();
    assert!(socket_dir.is_dir());
    let BankFixture { app, .. } = f;
    let _dir = app.shutdown().await;
    assert!(!profiles[0].exists(), "{} is removed", profiles[0].display());
    assert!(!socket_dir.exists(), "{} is removed", socket_dir.display());
}

/// The sandbox bank, and the app with `sandbox-js-quick` loaded from its data directory: the
/// built-in `sandbox-js` definition pointed at that bank with 2-second step timeouts (so a page
/// that no longer matches is found out in 2 s rather than 15).
async fn quick_js_fixture(overrides: &[(&str, &str)]) -> (BankFixture, tempfile::TempDir) {
    let (bank, bank_url) = harness::start_bank(sandbox_bank::BankConfig::default()).await;
    let data = tempfile::tempdir().expect("tempdir");
    let builtin = reconbanker_browser::def::BUILTIN
        .iter()
        .find(|(name, _)| *name == "sandbox-js.toml")
        .expect("the built-in definition")
        .1;
    let text = builtin
        .replace("code = \"sandbox-js\"", "code = \"sandbox-js-quick\"")
        .replace(
            "base_url = \"http://127.0.0.1:3100/\"",
            &format!("base_url = \"{bank_url}\""),
        )
        .replace("step = \"15s\"", "step = \"2s\"");
    assert!(text.contains("sandbox-js-quick") && text.contains(&bank_url) && text.contains("\"2s\""));
    std::fs::create_dir_all(data.path().join("banks")).expect("mkdir");
    std::fs::write(data.path().join("banks/quick.toml"), text).expect("write");
    let data_dir = data.path().display().to_string();
    let mut env = vec![
        ("RECONBANKER_SANDBOX_BANK", bank_url.as_str()),
        ("RECONBANKER_RETRY_BACKOFF_MS", "10"),
        ("RECONBANKER_DATA_DIR", data_dir.as_str()),
    ];
    env.extend_from_slice(overrides);
    let clock = ManualClock::default();
    let options = AppOptions {
        clock: Some(Arc::new(clock.clone())),
        ..AppOptions::default()
    };
    let app = TestApp::spawn_full(&env, options).await;
    let token = app.user("owner@example.com").await;
    let f = BankFixture {
        app,
        bank,
        clock,
        token,
    };
    (f, data)
}

/// The bank changed its site (its login button became an `<input type=submit>`): the definition
/// no longer matches. Every run fails `definition_broken` at the click, after the password was
/// typed; the alert comes once after three in a row; the account is never blocked (the
/// credentials are fine); each run keeps sealed evidence for the owner only, without the password.
#[tokio::test]
async fn a_bank_page_that_changed_is_broken_alerted_and_never_blocks_the_account() {
    if !chromium_or_skip() {
        return;
    }
    let (f, _data) = quick_js_fixture(&[("RECONBANKER_RETRY_ATTEMPTS", "2"), ("RECONBANKER_EVIDENCE_DAYS", "2")]).await;
    f.bank.set_js_redesign(true);
    let id = account_on(&f, "sandbox-js-quick", "user_good+redesign", "pass_good").await;
    let mut events = f.app.events().await;
    f.post(&format!("/accounts/{id}/scrape")).await;

    // The first try and two retries: each a failed login at the click of the old button.
    for _ in 0..3 {
        let failed = events.next(&id, "login.failed").await;
        let reason = failed.data["reason"].as_str().expect("reason");
        assert!(reason.starts_with("definition_broken: login[3]"), "{reason}");
    }
    let alert = events.next(&id, "session.needs_attention").await;
    assert_eq!(alert.data["reason"], "definition_broken");
    assert_eq!(alert.data["step"], "login[3]");
    let stopped = events.next(&id, "session.stopped").await;
    assert_eq!(stopped.data["reason"], "retries_exhausted");

    // Not a fatal block: nothing to restart, the runs say why.
    let account = f.account_out(&id).await;
    assert!(account.scrape_blocked_at.is_none(), "{account:?}");
    let runs: Vec<serde_json::Value> = f
        .app
        .get_as(&format!("/accounts/{id}/runs"), &f.token, StatusCode::OK)
        .await;
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert!(runs.iter().all(|r| r["failure_reason"]
        .as_str()
        .is_some_and(|s| s.starts_with("definition_broken"))));

    // The evidence: the page as it was (the new control in the DOM, a JPEG screenshot), and
    // never the password that had been typed. One run's only: an account keeps the evidence of
    // at most one run an hour (a bank down for a day must not fill the database).
    let mut with_evidence = Vec::new();
    for run in &runs {
        let run_id = run["id"].as_str().expect("run id");
        let path = format!("/accounts/{id}/runs/{run_id}/evidence");
        let list: Vec<serde_json::Value> = f.app.get_as(&path, &f.token, StatusCode::OK).await;
        if !list.is_empty() {
            with_evidence.push(path);
        }
    }
    assert_eq!(with_evidence.len(), 1, "{with_evidence:?}");
    let path = with_evidence.remove(0);
    let r = f.app.json(Method::GET, &path, Some(&f.token), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(!r.text.contains("pass_good"), "the password is in the evidence");
    let list: Vec<serde_json::Value> = serde_json::from_str(&r.text).expect("json");
    assert_eq!(list.len(), 1, "{}", r.text);
    let e = &list[0];
    assert_eq!(e["step"], "login[3]");
    assert!(e["url"].as_str().is_some_and(|u| u.ends_with("/js/login")), "{e}");
    assert!(e["dom"].as_str().is_some_and(|d| d.contains("redesigned-submit")));
    use base64::Engine as _;
    let jpeg = base64::engine::general_purpose::STANDARD
        .decode(e["screenshotJpeg"].as_str().expect("screenshot"))
        .expect("base64");
    assert_eq!(&jpeg[..3], &[0xff, 0xd8, 0xff], "a JPEG");
    let at = |k: &str| chrono::DateTime::parse_from_rfc3339(e[k].as_str().expect("timestamp")).expect("RFC 3339");
    assert_eq!(
        at("expiresAt") - at("takenAt"),
        chrono::Duration::days(2),
        "kept RECONBANKER_EVIDENCE_DAYS"
    );

    // Owner only: another user, an unknown run, a malformed id → 404.
    let stranger = f.app.user("stranger@example.com").await;
    let r = f.app.json(Method::GET, &path, Some(&stranger), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    for bad in ["00000000-0000-0000-0000-000000000000", "not-a-run"] {
        let r = f
            .app
            .json(
                Method::GET,
                &format!("/accounts/{id}/runs/{bad}/evidence"),
                Some(&f.token),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad}: {}", r.text);
        assert!(r.text.contains("\"code\""), "{}", r.text);
    }

    // The operator's view: `reconbanker evidence <run>` opens the same evidence with the master
    // key, and writes the screenshot and the blanked DOM as files on request.
    let run_id = path.split('/').nth(4).expect("the run in the path").to_owned();
    let cli = |key: &str, args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_reconbanker"))
            .env_clear()
            .env("DATABASE_URL", &f.app.state.config.database_url)
            .env("RECONBANKER_DATA_DIR", f.app.state.config.data_dir.as_os_str())
            .env("RECONBANKER_MASTER_KEY", key)
            .env("NO_COLOR", "1")
            .arg("evidence")
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run reconbanker evidence");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, stderr) = cli(harness::MASTER_KEY, &[&run_id]);
    assert!(ok, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(
        (doc["run"].as_str(), doc["account"].as_str()),
        (Some(run_id.as_str()), Some(id.as_str()))
    );
    let listed = doc["evidence"].as_array().expect("evidence");
    assert_eq!(listed.len(), 1, "{stdout}");
    for k in ["id", "step", "url", "title", "trail", "dom", "screenshotJpeg"] {
        assert_eq!(listed[0][k], e[k], "{k}");
    }
    assert!(!stdout.contains("pass_good"));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("ev");
    let (ok, stdout, stderr) = cli(harness::MASTER_KEY, &[&run_id, "--out", out.to_str().expect("utf8")]);
    assert!(ok, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let item = &doc["evidence"][0];
    assert!(
        item.get("dom").is_none() && item.get("screenshotJpeg").is_none(),
        "{stdout}"
    );
    let file = |k: &str| std::fs::read(item[k].as_str().expect("a file")).expect("written");
    assert_eq!(file("screenshotFile"), jpeg);
    assert_eq!(
        String::from_utf8(file("domFile")).expect("utf8"),
        e["dom"].as_str().expect("dom")
    );
    assert!(
        item["screenshotFile"]
            .as_str()
            .is_some_and(|p| p.ends_with("1-login_3_.jpg")),
        "{item}"
    );
    // Another master key opens nothing and says so; an unknown or malformed run is an error.
    let other = "ff".repeat(32);
    let (ok, stdout, stderr) = cli(&other, &[&run_id]);
    assert!(!ok && stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("does not open with this master key"), "{stderr}");
    let (ok, _, stderr) = cli(harness::MASTER_KEY, &["00000000-0000-0000-0000-000000000000"]);
    assert!(
        !ok && stderr.contains("no run 00000000-0000-0000-0000-000000000000"),
        "{stderr}"
    );
    let (ok, _, stderr) = cli(harness::MASTER_KEY, &["not-a-run"]);
    assert!(!ok && stderr.contains("is not a run id"), "{stderr}");

    // The bank's page comes back: an explicit scrape runs at once (no pause) and succeeds.
    f.bank.set_js_redesign(false);
    f.post(&format!("/accounts/{id}/scrape")).await;
    events.next(&id, "login.succeeded").await;
    events.next(&id, "scrape.succeeded").await;
}
