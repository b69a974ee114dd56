//! Issue 11: `reconbanker admin rotate-master-key`, black-box: the real binary serves with one
//! key, the command re-seals under another, and a server with the new key still opens every
//! secret (the bank credentials log into the sandbox bank, two-factor codes and recovery codes
//! sign in, issued API keys work), while the old key no longer starts a server. A wrong current
//! key, or a server still running on the SQLite file, changes nothing.

use std::process::{Command, Stdio};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::process::{Server, Site, WAIT};
use crate::two_factor::{base32_decode, totp};

const BIN: &str = env!("CARGO_BIN_EXE_reconbanker");
const PASSWORD: &str = "rotation password 1234";

fn hex_key(byte: u8) -> String {
    hex::encode([byte; 32])
}

/// `reconbanker <args>` on the site (its database and data directory), with `env` on top; must end
/// by itself within [`WAIT`]. Returns (success, stdout, stderr).
pub(crate) fn run(site: &Site, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("NO_COLOR", "1")
        .env("RECONBANKER_PORT", "0")
        .env("RECONBANKER_SANDBOX_PORT", "0")
        .env("RECONBANKER_DATA_DIR", site.data_dir())
        .env("DATABASE_URL", &site.database_url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn reconbanker");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(out) => {
            let out = out.expect("run");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("reconbanker {args:?} still running after {WAIT:?}");
        }
    }
}

fn step_now() -> i64 {
    chrono::Utc::now().timestamp().div_euclid(30)
}

async fn login(server: &Server, email: &str, code: &str) -> crate::process::Answer {
    server
        .call(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({ "email": email, "password": PASSWORD, "totp_code": code })),
        )
        .await
}

/// The account's config opens (its secrets are shown masked) and its credentials log in.
async fn secrets_open(server: &Server, token: &str, account: &str, key: &str) {
    let config = server
        .dash(Method::GET, &format!("/accounts/{account}/config"), token, None)
        .await;
    assert_eq!(config.status, StatusCode::OK, "{}", config.body);
    assert_eq!(config.body["has_bank_password"], true, "{}", config.body);
    assert!(
        !config.body.to_string().contains("pass_good"),
        "masked: {}",
        config.body
    );
    let mut events = server.events(key, None).await;
    let r = server
        .dash(Method::POST, &format!("/accounts/{account}/scrape"), token, None)
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    events.next("login.succeeded").await;
}

#[tokio::test]
async fn rotating_the_master_key_keeps_every_secret_and_retires_the_old_key() {
    let (old, new, wrong) = (hex_key(0x11), hex_key(0x22), hex_key(0x33));
    let site = Site::new().await;
    let email = "rotate@example.com";
    let server = site.serve(&[("RECONBANKER_MASTER_KEY", &old)]).await;
    let token = server.user(email, PASSWORD).await;
    let account = server
        .account(
            &token,
            "Rotated",
            json!({ "bank_username": "user_good", "bank_password": "pass_good" }),
        )
        .await;
    let key = server.key(&token, &["status:read"], &[&account]).await;
    // Two-factor on: a sealed secret, and recovery codes hashed with a derived key.
    let setup = server.dash(Method::POST, "/me/two-factor/setup", &token, None).await;
    assert_eq!(setup.status, StatusCode::OK, "{}", setup.body);
    let secret = base32_decode(setup.body["secret"].as_str().expect("secret"));
    let confirmed = server
        .dash(
            Method::POST,
            "/me/two-factor/confirm",
            &token,
            Some(json!({ "code": totp(&secret, step_now()) })),
        )
        .await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    let recovery = confirmed.body["recovery_codes"][0]
        .as_str()
        .expect("a recovery code")
        .to_owned();
    secrets_open(&server, &token, &account, &key).await;

    let rotate = ["admin", "rotate-master-key"];
    if site.is_sqlite() {
        // Not while a server runs on the SQLite file.
        let (ok, _, err) = run(
            &site,
            &rotate,
            &[("RECONBANKER_MASTER_KEY", &old), ("RECONBANKER_NEW_MASTER_KEY", &new)],
        );
        assert!(!ok && err.contains("stop every instance"), "{err}");
    }
    server.kill9();

    // A wrong current key opens nothing, so changes nothing: the old key still serves.
    let (ok, out, err) = run(
        &site,
        &rotate,
        &[("RECONBANKER_MASTER_KEY", &wrong), ("RECONBANKER_NEW_MASTER_KEY", &new)],
    );
    assert!(!ok, "{out}");
    assert!(
        err.contains("nothing was changed") && err.contains("does not open"),
        "{err}"
    );
    assert!(
        !err.contains(&wrong) && !err.contains(&new),
        "no key in the message: {err}"
    );
    // No new key given.
    let (ok, _, err) = run(&site, &rotate, &[("RECONBANKER_MASTER_KEY", &old)]);
    assert!(!ok && err.contains("RECONBANKER_NEW_MASTER_KEY"), "{err}");
    let server = site.serve(&[("RECONBANKER_MASTER_KEY", &old)]).await;
    let again = server
        .dash(Method::GET, &format!("/accounts/{account}/config"), &token, None)
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    server.kill9();

    // The rotation, with the new key from a file.
    let file = site.data_dir().join("new.key");
    std::fs::write(&file, format!("{new}\n")).expect("write the new key");
    let file = file.to_str().expect("utf-8 path").to_owned();
    let (ok, out, err) = run(
        &site,
        &["admin", "rotate-master-key", "--new-key-file", &file],
        &[("RECONBANKER_MASTER_KEY", &old)],
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("1 account configs, 1 two-factor secrets, 0 evidence, 0 remembered devices, 2 carried keys"),
        "{out}"
    );
    assert!(out.contains("set RECONBANKER_MASTER_KEY"), "{out}");

    // The old key no longer starts a server, and says why.
    let (ok, _, err) = run(&site, &["serve"], &[("RECONBANKER_MASTER_KEY", &old)]);
    assert!(!ok, "{err}");
    assert!(err.contains("admin rotate-master-key"), "{err}");

    // The new key opens everything.
    let server = site.serve(&[("RECONBANKER_MASTER_KEY", &new)]).await;
    secrets_open(&server, &token, &account, &key).await;
    let status = server
        .call(
            Method::GET,
            &format!("/v1/accounts/{account}/status"),
            Some(("x-api-key", &key)),
            None,
        )
        .await;
    assert_eq!(status.status, StatusCode::OK, "the issued API key: {}", status.body);
    // A current two-factor code (one step ahead: newer than the confirming one, in the window).
    let signed_in = login(&server, email, &totp(&secret, step_now() + 1)).await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.body);
    let signed_in = login(&server, email, &recovery).await;
    assert_eq!(signed_in.status, StatusCode::OK, "a recovery code: {}", signed_in.body);
    server.kill9();

    // A second rotation rewrites the carried keys too.
    let newer = hex_key(0x44);
    let (ok, out, err) = run(
        &site,
        &rotate,
        &[("RECONBANKER_MASTER_KEY", &new), ("RECONBANKER_NEW_MASTER_KEY", &newer)],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("2 carried keys"), "{out}");
    let server = site.serve(&[("RECONBANKER_MASTER_KEY", &newer)]).await;
    secrets_open(&server, &token, &account, &key).await;
}

/// With no `RECONBANKER_MASTER_KEY`, the key lives in `<data dir>/master.key`: the rotation
/// rewrites it, so the next zero-configuration start runs with the new key.
#[tokio::test]
async fn the_generated_key_file_is_rewritten() {
    let site = Site::new().await;
    let server = site.serve(&[]).await;
    let token = server.user("keyfile@example.com", PASSWORD).await;
    let account = server
        .account(
            &token,
            "Key file",
            json!({ "bank_username": "user_good", "bank_password": "pass_good" }),
        )
        .await;
    let key = server.key(&token, &["status:read"], &[&account]).await;
    server.kill9();
    let path = site.data_dir().join("master.key");
    let before = std::fs::read_to_string(&path).expect("the generated key");
    let new = hex_key(0x55);
    let (ok, out, err) = run(
        &site,
        &["admin", "rotate-master-key"],
        &[("RECONBANKER_NEW_MASTER_KEY", &new)],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(std::fs::read_to_string(&path).expect("key file").trim(), new);
    assert_ne!(before.trim(), new);
    assert!(out.contains("now holds the new key"), "{out}");
    let server = site.serve(&[]).await;
    secrets_open(&server, &token, &account, &key).await;
}
