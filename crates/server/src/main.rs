//! The `reconbanker` command: `serve`, `migrate`, `openapi`, `admin grant <email>`.

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
    /// Print the OpenAPI document of the External API (/v1).
    Openapi,
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
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Grant the admin role (may add banks) to the user with this email.
    Grant { email: String },
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
        Command::Openapi => {
            println!("{}", reconbanker::http::v1::openapi_json());
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
    tracing_subscriber::fmt()
        .with_ansi(std::env::var_os("NO_COLOR").is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let cli = Cli::parse();
    match main_inner(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reconbanker: {e}");
            ExitCode::FAILURE
        }
    }
}
