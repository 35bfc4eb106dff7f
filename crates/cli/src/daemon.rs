//! `vessel daemon`: run the daemon in the foreground until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

#[derive(Debug, Parser)]
pub struct Args {
    /// The API's Unix socket.
    #[arg(long, value_name = "PATH", default_value = vessel_api::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Where the state database, console logs and container state live.
    #[arg(long, value_name = "DIR", default_value = vessel_api::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let config = vessel_daemon::Config::new(args.socket, args.state_dir);
        let mut daemon = vessel_daemon::start(config).await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            result = daemon.wait() => {
                result?;
                return Ok(ExitCode::SUCCESS);
            }
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down; instances keep running");
        daemon.shutdown().await?;
        Ok(ExitCode::SUCCESS)
    })
}
