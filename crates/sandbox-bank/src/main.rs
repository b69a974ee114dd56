//! Runs the sandbox bank on its own, for demos: `reconbanker-sandbox-bank [ADDR]`, or the
//! `SANDBOX_BANK_ADDR` environment variable; default `127.0.0.1:8090`. Stops on Ctrl-C.

use sandbox_bank::{BankConfig, SandboxBank};

const DEFAULT_ADDR: &str = "127.0.0.1:8090";

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("SANDBOX_BANK_ADDR").ok())
        .unwrap_or_else(|| DEFAULT_ADDR.to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("sandbox bank listening on http://{}", listener.local_addr()?);
    let bank = SandboxBank::new(BankConfig::default());
    bank.serve(listener, async {
        // If the signal handler cannot be installed, run until killed.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    })
    .await
}
