//! The `reconbanker` binary itself: zero-configuration start, graceful SIGTERM, precise
//! configuration errors, `migrate`, `admin grant`, `openapi`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_reconbanker");

fn reconbanker(dir: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir).env_clear().env("NO_COLOR", "1");
    c
}

/// How long a command that should end by itself may take.
const EXIT_WITHIN: Duration = Duration::from_secs(30);

/// Runs a command that must end by itself (like `Command::output`), killing it and failing if it
/// is still running after [`EXIT_WITHIN`]: a regression that starts the server hangs no test.
fn output(mut cmd: Command) -> std::process::Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(EXIT_WITHIN) {
        Ok(out) => out.expect("run"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("{cmd:?} still running after {EXIT_WITHIN:?}");
        }
    }
}

#[tokio::test]
async fn serve_starts_with_no_configuration_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Only the port is set (0 = any free port) so parallel runs cannot collide on 3000.
    let mut child = reconbanker(dir.path())
        .arg("serve")
        .env("RECONBANKER_PORT", "0")
        .env("RECONBANKER_SANDBOX_PORT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    // Readiness: the log line announcing the bound address (the listener is bound before it).
    let reading = tokio::task::spawn_blocking(move || {
        let mut seen = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("line");
            seen.push_str(&line);
            seen.push('\n');
            if let Some(i) = line.find("listening on http://") {
                let rest = &line[i + "listening on http://".len()..];
                let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                return (addr, seen);
            }
        }
        panic!("server exited before listening: {seen}");
    });
    let (addr, log) = match tokio::time::timeout(EXIT_WITHIN, reading).await {
        Ok(read) => read.expect("join"),
        Err(_) => {
            // Ends the blocked read too (its pipe closes), so the runtime can stop.
            let _ = child.kill();
            panic!("the server did not announce its address within {EXIT_WITHIN:?}");
        }
    };
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let body = reqwest::get(format!("http://{addr}/health"))
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert_eq!(body, r#"{"ok":true}"#);

    let data = dir.path().join("data");
    assert!(data.join("reconbanker.db").exists(), "embedded SQLite under ./data");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["jwt_secret", "master.key"] {
            let meta = std::fs::metadata(data.join(f)).expect("secret file");
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{f}");
            let secret = std::fs::read_to_string(data.join(f)).expect("read");
            assert!(!log.contains(secret.trim()), "secrets never logged");
        }
    }

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let status = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await
    .expect("exits after SIGTERM")
    .expect("join")
    .expect("wait");
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
}

#[test]
fn bad_configuration_stops_the_start_with_a_precise_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (k, v, needle) in [
        ("RECONBANKER_PORT", "http", "RECONBANKER_PORT must be a port number"),
        ("DATABASE_URL", "mysql://db/x", "DATABASE_URL must start with"),
        (
            "RECONBANKER_MASTER_KEY",
            "abc",
            "RECONBANKER_MASTER_KEY must be 64 hexadecimal",
        ),
        ("JWT_SECRET", "short", "JWT_SECRET must be at least 32 bytes"),
    ] {
        let out = output({
            let mut c = reconbanker(dir.path());
            c.arg("serve").env(k, v);
            c
        });
        assert!(!out.status.success(), "{k}={v} must stop the start");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{k}={v}: {err}");
    }
}

#[tokio::test]
async fn migrate_and_admin_grant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("cli.db").display());
    let mut migrate = reconbanker(dir.path());
    migrate.arg("migrate").env("DATABASE_URL", &url);
    let out = output(migrate);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let store = reconbanker_store::connect(&url, 1).await.expect("open");
    store
        .create_user(&reconbanker_store::UserRow {
            id: reconbanker_store::UserId::new(),
            email: "boss@example.com".into(),
            name: None,
            password_hash: "x".into(),
            is_admin: false,
            operation_mode: None,
            created_at: reconbanker_store::now(),
        })
        .await
        .expect("user");
    let mut grant = reconbanker(dir.path());
    grant
        .args(["admin", "grant", " Boss@Example.com "])
        .env("DATABASE_URL", &url);
    let out = output(grant);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        store
            .user_by_email("boss@example.com")
            .await
            .expect("db")
            .expect("user")
            .is_admin
    );
    let mut grant = reconbanker(dir.path());
    grant
        .args(["admin", "grant", "nobody@example.com"])
        .env("DATABASE_URL", &url);
    let out = output(grant);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user with email nobody@example.com"));
}

#[test]
fn openapi_prints_the_committed_document() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut openapi = reconbanker(dir.path());
    openapi.arg("openapi");
    let out = output(openapi);
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).expect("utf8");
    assert_eq!(printed.trim(), include_str!("../../../../docs/openapi-v1.json").trim());
}

// issue 12: the dashboard API's document.
#[test]
fn openapi_dashboard_prints_the_committed_dashboard_document() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut openapi = reconbanker(dir.path());
    openapi.args(["openapi", "--dashboard"]);
    let out = output(openapi);
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).expect("utf8");
    assert_eq!(
        printed.trim(),
        include_str!("../../../../docs/openapi-dashboard.json").trim()
    );
    assert_ne!(printed.trim(), include_str!("../../../../docs/openapi-v1.json").trim());
}
