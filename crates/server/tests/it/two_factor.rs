//! Issue 10: two-factor sign-in (TOTP, RFC 6238) on the dashboard API. The tests compute codes
//! themselves (HMAC-SHA1 below, not the server's code) and drive time with the app's manual
//! clock, so the ±1 step window and the replay rule are exact.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use reconbanker::support::clock::{Clock, ManualClock};
use reconbanker::AppOptions;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::*;

const PASSWORD: &str = "correct horse battery";

/// RFC 4648 base32 (no padding) to bytes.
pub fn base32_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
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

/// The 6-digit TOTP code of `secret` at time step `step` (RFC 6238 with HMAC-SHA1).
pub fn totp(secret: &[u8], step: i64) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).expect("any key length");
    mac.update(&(step as u64).to_be_bytes());
    let h = mac.finalize().into_bytes();
    let o = (h[19] & 0x0f) as usize;
    let n = u32::from_be_bytes([h[o] & 0x7f, h[o + 1], h[o + 2], h[o + 3]]);
    format!("{:06}", n % 1_000_000)
}

struct TwoFactorApp {
    app: TestApp,
    clock: ManualClock,
}

impl TwoFactorApp {
    async fn new() -> Self {
        let clock = ManualClock::default();
        let app = TestApp::spawn_full(
            &[],
            AppOptions {
                clock: Some(Arc::new(clock.clone())),
                ..AppOptions::default()
            },
        )
        .await;
        Self { app, clock }
    }

    fn step(&self) -> i64 {
        self.clock.now().timestamp().div_euclid(30)
    }

    async fn login(&self, email: &str, code: Option<&str>) -> Res {
        let mut body = json!({"email": email, "password": PASSWORD});
        if let Some(c) = code {
            body["totp_code"] = json!(c);
        }
        self.app.json(Method::POST, "/auth/login", None, Some(body)).await
    }

    /// Sets two-factor up and confirms it; returns the secret and the recovery codes.
    async fn enable(&self, token: &str) -> (Vec<u8>, Vec<String>) {
        let setup = self
            .app
            .json(Method::POST, "/me/two-factor/setup", Some(token), None)
            .await;
        assert_eq!(setup.status, StatusCode::OK, "{}", setup.text);
        let secret = base32_decode(setup.body["secret"].as_str().expect("secret"));
        let code = totp(&secret, self.step());
        let confirmed = self
            .app
            .json(
                Method::POST,
                "/me/two-factor/confirm",
                Some(token),
                Some(json!({ "code": code })),
            )
            .await;
        assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.text);
        let codes = confirmed.body["recovery_codes"]
            .as_array()
            .expect("recovery codes")
            .iter()
            .map(|c| c.as_str().expect("string").to_owned())
            .collect();
        (secret, codes)
    }
}

fn assert_no_token(res: &Res) {
    assert!(res.body.get("token").is_none(), "no token: {}", res.text);
}

#[tokio::test]
async fn set_up_shows_the_uri_and_a_qr_code_and_confirming_hands_out_ten_recovery_codes() {
    let t = TwoFactorApp::new().await;
    let token = t.app.user("ada@example.com").await;
    let status = t.app.get("/me/two-factor", &token).await;
    assert_eq!(
        status.body,
        json!({"enabled": false, "pending": false, "recovery_codes_left": 0})
    );

    let setup = t
        .app
        .json(Method::POST, "/me/two-factor/setup", Some(&token), None)
        .await;
    assert_eq!(setup.status, StatusCode::OK, "{}", setup.text);
    assert_eq!(
        setup.header("cache-control"),
        Some("no-store"),
        "a secret is never cached"
    );
    let secret_b32 = setup.body["secret"].as_str().expect("secret");
    assert_eq!(base32_decode(secret_b32).len(), 20, "160-bit secret");
    let uri = setup.body["otpauth_uri"].as_str().expect("uri");
    assert_eq!(
        uri,
        format!(
            "otpauth://totp/Reconbanker:ada%40example.com?secret={secret_b32}&issuer=Reconbanker\
             &algorithm=SHA1&digits=6&period=30"
        )
    );
    let svg = setup.body["qr_svg"].as_str().expect("svg");
    assert!(
        svg.starts_with("<svg") && svg.contains("<path") && svg.ends_with("</svg>"),
        "{svg}"
    );
    assert_eq!(
        t.app.get("/me/two-factor", &token).await.body["pending"],
        true,
        "waiting for its first code"
    );
    // Not on until confirmed: sign-in needs no code yet.
    assert_eq!(t.login("ada@example.com", None).await.status, StatusCode::OK);

    // A code of another secret does not confirm it.
    let wrong = totp(b"another secret of twenty", t.step());
    t.app
        .json(
            Method::POST,
            "/me/two-factor/confirm",
            Some(&token),
            Some(json!({ "code": wrong })),
        )
        .await
        .assert_api_error(400, "INVALID_TOTP");

    let (_, codes) = {
        let secret = base32_decode(secret_b32);
        let confirmed = t
            .app
            .json(
                Method::POST,
                "/me/two-factor/confirm",
                Some(&token),
                Some(json!({ "code": totp(&secret, t.step()) })),
            )
            .await;
        assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.text);
        assert_eq!(confirmed.header("cache-control"), Some("no-store"));
        let codes: Vec<String> = serde_json::from_value(confirmed.body["recovery_codes"].clone()).expect("codes");
        (secret, codes)
    };
    assert_eq!(codes.len(), 10);
    for c in &codes {
        assert!(c.len() >= 8 && c.chars().all(|c| c.is_ascii_alphanumeric()), "{c}");
    }
    let distinct: std::collections::HashSet<_> = codes.iter().collect();
    assert_eq!(distinct.len(), 10);
    assert_eq!(
        t.app.get("/me/two-factor", &token).await.body,
        json!({"enabled": true, "pending": false, "recovery_codes_left": 10})
    );
    // On: neither a new set-up nor a second confirmation.
    t.app
        .json(Method::POST, "/me/two-factor/setup", Some(&token), None)
        .await
        .assert_api_error(409, "TWO_FACTOR_ON");
    t.app
        .json(
            Method::POST,
            "/me/two-factor/confirm",
            Some(&token),
            Some(json!({"code": "123456"})),
        )
        .await
        .assert_api_error(409, "NO_PENDING_SETUP");
}

#[tokio::test]
async fn login_needs_a_current_unused_code_once_two_factor_is_on() {
    let t = TwoFactorApp::new().await;
    let token = t.app.user("bob@example.com").await;
    let (secret, _) = t.enable(&token).await;
    let confirm_step = t.step();

    let missing = t.login("bob@example.com", None).await;
    missing.assert_api_error(401, "TOTP_REQUIRED");
    assert_no_token(&missing);
    let blank = t.login("bob@example.com", Some("  ")).await;
    blank.assert_api_error(401, "TOTP_REQUIRED");
    // The code that confirmed the set-up is spent.
    let replay = t.login("bob@example.com", Some(&totp(&secret, confirm_step))).await;
    replay.assert_api_error(401, "INVALID_TOTP");
    assert_no_token(&replay);
    let wrong = t.login("bob@example.com", Some("000000")).await;
    let wrong = if totp(&secret, confirm_step) == "000000" {
        t.login("bob@example.com", Some("111111")).await
    } else {
        wrong
    };
    wrong.assert_api_error(401, "INVALID_TOTP");
    assert_no_token(&wrong);
    // A right code with a wrong password is a failed login like any other.
    let bad_password = t
        .app
        .json(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"email": "bob@example.com", "password": "wrong password!!", "totp_code": totp(&secret, confirm_step + 1)})),
        )
        .await;
    bad_password.assert_api_error(401, "UNAUTHORIZED");

    // The next step: good once.
    t.clock.advance(Duration::from_secs(30));
    let code = totp(&secret, t.step());
    let ok = t.login("bob@example.com", Some(&code)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert!(ok.body["token"].as_str().is_some_and(|s| !s.is_empty()));
    // Spaces inside the code are fine; the same code again is not.
    let spaced = format!("{} {}", &code[..3], &code[3..]);
    t.login("bob@example.com", Some(&spaced))
        .await
        .assert_api_error(401, "INVALID_TOTP");
    let token_ok: LoginOut = ok.typed(StatusCode::OK);
    assert_eq!(
        t.app.get("/me", &token_ok.token).await.status,
        StatusCode::OK,
        "the token works"
    );
}

#[tokio::test]
async fn codes_one_step_either_side_are_accepted_and_no_further() {
    let t = TwoFactorApp::new().await;
    let token = t.app.user("cy@example.com").await;
    let (secret, _) = t.enable(&token).await;
    // Ten steps on, so every code below is newer than the confirming one.
    t.clock.advance(Duration::from_secs(300));
    let now = t.step();
    t.login("cy@example.com", Some(&totp(&secret, now - 2)))
        .await
        .assert_api_error(401, "INVALID_TOTP");
    assert_eq!(
        t.login("cy@example.com", Some(&totp(&secret, now - 1))).await.status,
        StatusCode::OK,
        "one step behind (a slow phone)"
    );
    t.login("cy@example.com", Some(&totp(&secret, now + 2)))
        .await
        .assert_api_error(401, "INVALID_TOTP");
    assert_eq!(
        t.login("cy@example.com", Some(&totp(&secret, now + 1))).await.status,
        StatusCode::OK,
        "one step ahead"
    );
    // Once a newer step was used, an older code is refused even inside the window.
    t.login("cy@example.com", Some(&totp(&secret, now)))
        .await
        .assert_api_error(401, "INVALID_TOTP");
}

#[tokio::test]
async fn a_recovery_code_stands_in_for_a_code_once() {
    let t = TwoFactorApp::new().await;
    let token = t.app.user("di@example.com").await;
    let (_, codes) = t.enable(&token).await;
    let ok = t.login("di@example.com", Some(&codes[0])).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    t.login("di@example.com", Some(&codes[0]))
        .await
        .assert_api_error(401, "INVALID_TOTP");
    // As typed from paper: upper case, a dash in the middle.
    let typed = format!("{}-{}", &codes[1][..5], &codes[1][5..]).to_uppercase();
    assert_eq!(t.login("di@example.com", Some(&typed)).await.status, StatusCode::OK);
    assert_eq!(t.app.get("/me/two-factor", &token).await.body["recovery_codes_left"], 8);
}

#[tokio::test]
async fn disabling_needs_a_current_code() {
    let t = TwoFactorApp::new().await;
    let token = t.app.user("ed@example.com").await;
    t.app
        .json(
            Method::POST,
            "/me/two-factor/disable",
            Some(&token),
            Some(json!({"code": "123456"})),
        )
        .await
        .assert_api_error(409, "TWO_FACTOR_OFF");
    let (secret, codes) = t.enable(&token).await;
    t.clock.advance(Duration::from_secs(30));
    let stale = totp(&secret, t.step() - 3);
    t.app
        .json(
            Method::POST,
            "/me/two-factor/disable",
            Some(&token),
            Some(json!({ "code": stale })),
        )
        .await
        .assert_api_error(400, "INVALID_TOTP");
    t.app
        .json(Method::POST, "/me/two-factor/disable", Some(&token), Some(json!({})))
        .await
        .assert_api_error(400, "VALIDATION_ERROR");
    let off = t
        .app
        .json(
            Method::POST,
            "/me/two-factor/disable",
            Some(&token),
            Some(json!({ "code": totp(&secret, t.step()) })),
        )
        .await;
    assert_eq!(off.status, StatusCode::NO_CONTENT, "{}", off.text);
    assert_eq!(t.login("ed@example.com", None).await.status, StatusCode::OK);
    assert_eq!(
        t.app.get("/me/two-factor", &token).await.body,
        json!({"enabled": false, "pending": false, "recovery_codes_left": 0})
    );
    // The old recovery codes went with it: a new set-up starts clean.
    let (_, fresh) = t.enable(&token).await;
    assert!(fresh.iter().all(|c| !codes.contains(c)));
    t.login("ed@example.com", Some(&codes[0]))
        .await
        .assert_api_error(401, "INVALID_TOTP");
}

#[tokio::test]
async fn wrong_codes_are_rate_limited_per_user() {
    let t = TwoFactorApp::new().await;
    let token = t.app.user("flo@example.com").await;
    let (secret, _) = t.enable(&token).await;
    t.clock.advance(Duration::from_secs(60));
    let right = totp(&secret, t.step());
    let wrong = if right == "999999" { "888888" } else { "999999" };
    for _ in 0..5 {
        t.login("flo@example.com", Some(wrong))
            .await
            .assert_api_error(401, "INVALID_TOTP");
    }
    let limited = t.login("flo@example.com", Some(&right)).await;
    limited.assert_api_error(429, "RATE_LIMITED");
    assert_no_token(&limited);
    assert!(limited.header("retry-after").is_some());
    // A missing code is a question, not a guess: it does not count and is still answered.
    t.login("flo@example.com", None)
        .await
        .assert_api_error(401, "TOTP_REQUIRED");
}

#[tokio::test]
async fn bad_bodies_and_missing_tokens_get_the_documented_errors() {
    let t = TwoFactorApp::new().await;
    let token = t.app.user("gus@example.com").await;
    for path in [
        "/me/two-factor/setup",
        "/me/two-factor/confirm",
        "/me/two-factor/disable",
    ] {
        t.app
            .json(Method::POST, path, None, Some(json!({"code": "123456"})))
            .await
            .assert_api_error(401, "UNAUTHORIZED");
    }
    t.app
        .json(Method::GET, "/me/two-factor", None, None::<Value>)
        .await
        .assert_api_error(401, "UNAUTHORIZED");
    t.app
        .json(
            Method::POST,
            "/me/two-factor/confirm",
            Some(&token),
            Some(json!({"code": "123456"})),
        )
        .await
        .assert_api_error(409, "NO_PENDING_SETUP");
    t.app
        .json(
            Method::POST,
            "/me/two-factor/confirm",
            Some(&token),
            Some(json!({"code": 123456})),
        )
        .await
        .assert_api_error(400, "VALIDATION_ERROR");
    t.app
        .json(
            Method::POST,
            "/me/two-factor/confirm",
            Some(&token),
            Some(json!({"code": "1".repeat(65)})),
        )
        .await
        .assert_api_error(400, "VALIDATION_ERROR");
    t.app
        .json(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"email": "gus@example.com", "password": PASSWORD, "totp_code": 5})),
        )
        .await
        .assert_api_error(400, "VALIDATION_ERROR");
}
