//! The `reconbanker` command: `serve`, `migrate`, `openapi`, `admin grant <email>`,
//! `bank check FILE`, `bank try FILE --user U`, `evidence RUN` (issue 9).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use reconbanker::config::{redact_url, Config, ENV_VARS};
use reconbanker::StartError;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "reconbanker", version, about = "Self-hosted bank logins with assisted OTP", after_help = env_help())]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default): API, External API and background workers.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the OpenAPI document of the External API (/v1), or with --dashboard the dashboard API's.
    Openapi {
        /// Print the dashboard API's document (every route outside /v1) instead.
        #[arg(long)]
        dashboard: bool,
    },
    /// Run only the sandbox bank (a bank website with scripted users).
    SandboxBank {
        /// Port to listen on (default: RECONBANKER_SANDBOX_PORT, else 3100).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Administration.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Bank definitions (TOML, run in headless Chromium; docs/banks.md).
    Bank {
        #[command(subcommand)]
        command: BankCommand,
    },
    /// Print a run's failure evidence (JSON, opened with the master key; docs/banks.md).
    Evidence {
        /// The run's id (as the dashboard and `GET /accounts/:id/runs` show it).
        run: String,
        /// Also write each screenshot (.jpg) and blanked DOM (.html) into this directory; the
        /// JSON then names the files instead of carrying them.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum BankCommand {
    /// Validate a bank definition file; errors name the file, line and field.
    Check { file: std::path::PathBuf },
    /// Log in with a definition in headless Chromium and print the movements as JSON lines.
    /// The password is read from RECONBANKER_TRY_PASSWORD or the first line of stdin; codes
    /// are asked on stderr and read from stdin.
    Try {
        file: std::path::PathBuf,
        /// The bank username.
        #[arg(long)]
        user: String,
        /// Run with a visible browser window (needs a display).
        #[arg(long)]
        headful: bool,
        /// On failure, write the evidence (screenshot and blanked DOM) into this directory.
        #[arg(long)]
        evidence: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Grant the admin role (may add banks) to the user with this email.
    Grant { email: String },
    /// Re-seal every secret at rest under a new master key, in one transaction (stop every
    /// instance first). The current key is the configured one; the new one comes from
    /// --new-key-file or RECONBANKER_NEW_MASTER_KEY. See docs/operations.md.
    RotateMasterKey {
        /// A file holding the new key (64 hexadecimal characters).
        #[arg(long)]
        new_key_file: Option<std::path::PathBuf>,
    },
}

fn env_help() -> String {
    let mut s = String::from("Configuration (environment variables):\n");
    for (name, default, what) in ENV_VARS {
        s.push_str(&format!("  {name:<36} {what} [default: {default}]\n"));
    }
    s
}

/// Resolves on Ctrl-C or SIGTERM. The SIGTERM handler is installed when this is called, not
/// when the future is first polled: a SIGTERM sent as soon as the server announces its address
/// shuts it down gracefully instead of killing it with the default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async move {
            match term {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
        }
        tracing::info!("shutting down");
    }
}

async fn main_inner(cli: Cli) -> Result<(), StartError> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Openapi { dashboard } => {
            if dashboard {
                println!("{}", reconbanker::http::openapi::openapi_json());
            } else {
                println!("{}", reconbanker::http::v1::openapi_json());
            }
            Ok(())
        }
        Command::Serve => {
            let config = Config::from_env()?;
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .map_err(|e| StartError::Other(format!("cannot listen on {}: {e}", config.listen)))?;
            let addr = listener.local_addr()?;
            let shutdown = shutdown_signal();
            tracing::info!(
                %addr,
                database = %redact_url(&config.database_url),
                data_dir = %config.data_dir.display(),
                "reconbanker listening on http://{addr}"
            );
            reconbanker::run(config, listener, shutdown).await
        }
        Command::SandboxBank { port } => {
            let config = Config::from_env()?;
            let port = match (port, &config.sandbox) {
                (Some(p), _) => p,
                (None, reconbanker::config::SandboxMode::Embedded { port }) => *port,
                (None, _) => 3100,
            };
            let addr = std::net::SocketAddr::new(config.listen.ip(), port);
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| StartError::Other(format!("cannot listen on {addr}: {e}")))?;
            let addr = listener.local_addr()?;
            let shutdown = shutdown_signal();
            tracing::info!(%addr, "sandbox bank listening on http://{addr}");
            sandbox_bank::SandboxBank::new(sandbox_bank::BankConfig::default())
                .serve(listener, shutdown)
                .await?;
            Ok(())
        }
        Command::Migrate => {
            let config = Config::from_env()?;
            let store = reconbanker::open_store(&config).await?;
            store.close().await;
            println!("migrations applied ({})", store.backend());
            Ok(())
        }
        Command::Bank {
            command: BankCommand::Check { file },
        } => {
            let def = reconbanker_browser::def::load_file(&file).map_err(|e| StartError::Other(e.to_string()))?;
            println!(
                "{}: ok ({} {} \"{}\", {} login steps{})",
                file.display(),
                def.code,
                def.version,
                def.name,
                def.login.len(),
                if def.otp.is_some() { ", an OTP block" } else { "" }
            );
            Ok(())
        }
        Command::Bank {
            command:
                BankCommand::Try {
                    file,
                    user,
                    headful,
                    evidence,
                },
        } => bank_try(&file, &user, headful, evidence.as_deref()).await,
        Command::Evidence { run, out } => {
            let config = Config::from_env()?;
            println!("{}", reconbanker::evidence_of_run(&config, &run, out.as_deref()).await?);
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::RotateMasterKey { new_key_file },
        } => {
            use reconbanker::master_key;
            let config = Config::from_env()?;
            let new = master_key::read_new_key(new_key_file.as_deref(), std::env::var(master_key::NEW_KEY_ENV).ok())?;
            let done = master_key::rotate_master_key(&config, new).await?;
            let c = done.counts;
            println!(
                "re-sealed with the new master key: {} account configs, {} two-factor secrets, {} evidence, {} remembered devices, {} carried keys",
                c.account_configs, c.totp_secrets, c.evidence, c.devices, c.carried_keys
            );
            match done.key_file {
                Some(path) => println!("{} now holds the new key", path.display()),
                None => println!("set RECONBANKER_MASTER_KEY to the new key on every instance before starting them"),
            }
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::Grant { email },
        } => {
            let config = Config::from_env()?;
            let store = reconbanker::open_store(&config).await?;
            let email = reconbanker::domain::email::normalize_email(&email)
                .ok_or_else(|| StartError::Other("not a valid email address".into()))?;
            let found = store.grant_admin(&email).await?;
            store.close().await;
            if found {
                println!("{email} is now an administrator");
                Ok(())
            } else {
                Err(StartError::Other(format!("no user with email {email}")))
            }
        }
    }
}

/// Codes for `bank try`, typed by the person at the terminal.
struct Terminal;

#[async_trait::async_trait]
impl reconbanker_browser::CodeAsk for Terminal {
    async fn code(&mut self, r: &reconbanker_browser::OtpRequest) -> Result<String, reconbanker_browser::NoCode> {
        eprint!(
            "the bank asks for a {}-character {} code{}: ",
            r.length,
            if r.alphanumeric { "alphanumeric" } else { "numeric" },
            r.purpose.as_deref().map(|p| format!(" ({p})")).unwrap_or_default()
        );
        read_line().await.ok_or(reconbanker_browser::NoCode::Cancelled)
    }

    async fn rejected(&mut self) {
        eprintln!("the bank refused that code");
    }
}

async fn read_line() -> Option<String> {
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        match std::io::stdin().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_owned()),
        }
    })
    .await
    .ok()
    .flatten()
}

async fn bank_try(
    file: &std::path::Path,
    user: &str,
    headful: bool,
    evidence: Option<&std::path::Path>,
) -> Result<(), StartError> {
    use reconbanker_browser::interp::{self, Failure};
    let def = reconbanker_browser::def::load_file(file).map_err(|e| StartError::Other(e.to_string()))?;
    let password = match std::env::var("RECONBANKER_TRY_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            eprint!("password for {user}: ");
            read_line().await.unwrap_or_default()
        }
    };
    let scratch = std::env::temp_dir().join(format!("reconbanker-bank-try-{}", std::process::id()));
    let mut cfg = reconbanker_browser::RuntimeConfig::from_env(&scratch).map_err(StartError::Other)?;
    cfg.headless = !headful;
    let rt = reconbanker_browser::BrowserRuntime::new(cfg);
    let def = std::sync::Arc::new(def);
    let extra = std::collections::BTreeMap::new();
    let creds = reconbanker_browser::Creds {
        username: user,
        password: &password,
        extra: &extra,
        remembered: None,
    };
    let result = async {
        let mut session = interp::login(&rt, &def, &creds, &mut Terminal, true).await?;
        eprintln!("logged in");
        let movements = session.read_movements().await?;
        for m in &movements {
            let line = serde_json::json!({
                "external_id": m.external_id, "received_at": m.received_at, "amount": m.amount,
                "currency": m.currency, "name": m.name, "description": m.description,
            });
            println!("{line}");
        }
        eprintln!("{} movements", movements.len());
        let _ = session.logout().await;
        Ok::<(), Failure>(())
    }
    .await;
    rt.shutdown().await;
    let _ = std::fs::remove_dir_all(&scratch);
    let Err(failure) = result else { return Ok(()) };
    if let (Some(dir), Some(ev)) = (evidence, failure.evidence()) {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("screenshot.jpg"), &ev.jpeg)?;
        std::fs::write(dir.join("dom.html"), &ev.dom)?;
        std::fs::write(
            dir.join("trail.txt"),
            format!(
                "failed at {}\nurl {}\ntitle {}\nsteps {}\n",
                ev.step,
                ev.url,
                ev.title,
                ev.trail.join(" ")
            ),
        )?;
        eprintln!("evidence written to {}", dir.display());
    }
    let what = match failure {
        Failure::Fatal(k, _) => format!("fatal: {k:?}"),
        Failure::Retryable(m, _) => format!("retryable: {m}"),
        Failure::Broken { step, detail, .. } => format!("broken at {step}: {detail}"),
        Failure::SessionExpired => "the bank ended the session".into(),
        Failure::NoCode(n) => format!("no code: {n:?}"),
    };
    Err(StartError::Other(what))
}

fn main() -> ExitCode {
    // Before any thread exists: the arena cap applies to the runtime's threads too.
    reconbanker::support::memory::tune();
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("reconbanker: could not start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    // The servers log to stdout; the other commands print their output there (JSON, the
    // OpenAPI document, movements), so their log lines go to stderr.
    let serving = matches!(
        cli.command,
        None | Some(Command::Serve) | Some(Command::SandboxBank { .. })
    );
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let color = std::env::var_os("NO_COLOR").is_none();
    if serving {
        tracing_subscriber::fmt()
            .with_ansi(color && std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_ansi(color && std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    match main_inner(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reconbanker: {e}");
            ExitCode::FAILURE
        }
    }
}
