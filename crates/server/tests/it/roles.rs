//! Issue 11: `RECONBANKER_ROLES`, black-box on the real binary: an instance without `api`
//! answers only the probes, `/ready` names the roles, one without `push` leaves its deliveries
//! pending, and on one PostgreSQL the session of an account runs on the `engine` instance, not on
//! the API-only one beside it, which passes "read now" on to it.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::process::Site;
use crate::rotation::run;
use crate::webhooks::receiver;

const PASSWORD: &str = "roles password 1234";

#[tokio::test]
async fn without_api_only_the_probes_answer_and_ready_names_the_roles() {
    let site = Site::new().await;
    let server = site.serve(&[("RECONBANKER_ROLES", "engine,push")]).await;
    let health = server.call(Method::GET, "/health", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = server.call(Method::GET, "/ready", None, None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(ready.body["ok"], true);
    assert_eq!(
        ready.body["roles"],
        json!({ "api": null, "engine": { "healthy": true }, "push": { "healthy": true } })
    );
    for (method, path) in [
        (Method::POST, "/auth/register"),
        (Method::GET, "/banks"),
        (Method::GET, "/v1/accounts/00000000-0000-0000-0000-000000000000/status"),
        (Method::GET, "/openapi.json"),
    ] {
        let r = server
            .call(
                method.clone(),
                path,
                None,
                Some(json!({ "email": "x@example.com", "password": PASSWORD })),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {path}: {}", r.body);
        assert!(!r.body.is_null(), "a JSON 404: {}", r.body);
    }
    server.kill9();

    let server = site.serve(&[("RECONBANKER_ROLES", "api")]).await;
    let ready = server.call(Method::GET, "/ready", None, None).await;
    assert_eq!(
        ready.body["roles"],
        json!({ "api": { "healthy": true }, "engine": null, "push": null })
    );
    server.kill9();

    // The default is every role; a bad value stops the start, naming the setting.
    let server = site.serve(&[]).await;
    let ready = server.call(Method::GET, "/ready", None, None).await;
    assert_eq!(
        ready.body["roles"],
        json!({ "api": { "healthy": true }, "engine": { "healthy": true }, "push": { "healthy": true } })
    );
    server.kill9();
    let (ok, _, err) = run(&site, &["serve"], &[("RECONBANKER_ROLES", "api,web")]);
    assert!(!ok, "{err}");
    assert!(err.contains("RECONBANKER_ROLES") && err.contains("\"web\""), "{err}");
}

/// An instance without `push` queues the webhook of a failed login (same transaction as the
/// event) and never sends it; the next instance with `push` on that database does.
#[tokio::test]
async fn without_push_deliveries_stay_pending_until_a_push_instance_runs() {
    let site = Site::new().await;
    let mut hook = receiver(vec![]).await;
    let server = site.serve(&[("RECONBANKER_ROLES", "api,engine")]).await;
    let token = server.user("roles-push@example.com", PASSWORD).await;
    let account = server
        .account(
            &token,
            "No push",
            json!({
                "bank_username": "user_locked",
                "bank_password": "pass_locked",
                "notification_endpoint_url": hook.url,
                "notification_events": ["login_failed"],
            }),
        )
        .await;
    let key = server.key(&token, &["status:read"], &[&account]).await;
    let mut events = server.events(&key, None).await;
    let r = server
        .dash(Method::POST, &format!("/accounts/{account}/scrape"), &token, None)
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    events.next("login.failed").await;
    let log = server
        .dash(Method::GET, &format!("/accounts/{account}/notifications"), &token, None)
        .await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    let log = log.body.as_array().cloned().unwrap_or_default();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["status"], "pending", "{log:?}");
    assert_eq!(log[0]["attempts"], 0, "{log:?}");
    drop(events);
    server.kill9();

    let server = site.serve(&[("RECONBANKER_ROLES", "push")]).await;
    let got = hook.next().await;
    assert!(got.body.contains("login_failed"), "{}", got.body);
    drop(server);
}

/// Two instances on one PostgreSQL: the API-only one (eager scheduler, and the scrape is asked
/// of it) never drives the session; the engine instance does (`sessionOwner` is its id).
#[tokio::test]
async fn on_postgresql_the_session_runs_on_the_engine_instance() {
    // Persistent: the engine's scheduler starts it at first sight anyway.
    scrape_asked_of_the_api_instance(
        "roles-engine@example.com",
        &[("RECONBANKER_SCAN_INTERVAL_MS", "50")],
        &[("RECONBANKER_SCAN_INTERVAL_MS", "300")],
        "persistent",
    )
    .await;
}

/// Two instances on one PostgreSQL: "read now" asked of the API-only instance is read now by the
/// engine instance (`s:<account>` on the shared channel), not at the account's next due time —
/// a one-shot account whose interval is an hour away.
#[tokio::test]
async fn on_postgresql_a_scrape_asked_of_an_api_instance_runs_now_on_the_engine_instance() {
    scrape_asked_of_the_api_instance(
        "roles-scrape-now@example.com",
        &[],
        &[
            ("RECONBANKER_SCAN_INTERVAL_MS", "50"),
            // A one-shot account waits one interval after first sight: an hour.
            ("RECONBANKER_SCRAPE_INTERVAL_SECS", "3600"),
        ],
        "one-shot",
    )
    .await;
}

/// An `api` instance and an `engine,push` instance on one PostgreSQL (each with its extra
/// settings), an assisted account of `session_type` asked to read on the `api` instance: its
/// login asks for a code, and the session is the engine instance's (`sessionOwner`). Skipped on
/// SQLite.
async fn scrape_asked_of_the_api_instance(
    email: &str,
    api_env: &[(&str, &str)],
    engine_env: &[(&str, &str)],
    session_type: &str,
) {
    let site = Site::new().await;
    if site.is_sqlite() {
        eprintln!("skipped: needs PostgreSQL (RECONBANKER_TEST_BACKEND=postgres)");
        return;
    }
    let dirs = tempfile::tempdir().expect("tempdir");
    let (api_dir, engine_dir) = (dirs.path().join("api"), dirs.path().join("engine"));
    // Instances of one deployment share the master key and the JWT secret.
    let (master, jwt) = ("ab".repeat(32), "a shared jwt secret of at least 32 bytes".to_owned());
    let api_env = settings(&master, &jwt, "api", &api_dir, api_env);
    let engine_env = settings(&master, &jwt, "engine,push", &engine_dir, engine_env);
    let api = site.serve(&borrowed(&api_env)).await;
    let engine = site.serve(&borrowed(&engine_env)).await;
    let token = api.user(email, PASSWORD).await;
    let account = api
        .account(
            &token,
            "Waits for a code",
            json!({
                "session_type": session_type, "login_mode": "assisted",
                "bank_username": "user_otp", "bank_password": "pass_otp",
            }),
        )
        .await;
    let key = api.key(&token, &["status:read"], &[&account]).await;
    let mut events = api.events(&key, None).await;
    let r = api
        .dash(Method::POST, &format!("/accounts/{account}/scrape"), &token, None)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    // The login waits for its code, holding the session lease meanwhile.
    events.next("assistance.requested").await;
    let engine_id = std::fs::read_to_string(engine_dir.join("instance_id")).expect("the engine's instance id");
    let detail = api
        .dash(Method::GET, &format!("/accounts/{account}"), &token, None)
        .await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.body);
    assert_eq!(detail.body["sessionOwner"], engine_id.trim(), "{}", detail.body);
    drop(engine);
}

/// One instance's settings: the deployment's shared secrets, its roles and data directory, then
/// `extra`.
fn settings(
    master: &str,
    jwt: &str,
    roles: &str,
    dir: &std::path::Path,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("RECONBANKER_MASTER_KEY".into(), master.into()),
        ("JWT_SECRET".into(), jwt.into()),
        ("RECONBANKER_ROLES".into(), roles.into()),
        ("RECONBANKER_DATA_DIR".into(), dir.to_str().expect("utf-8").into()),
    ];
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}
