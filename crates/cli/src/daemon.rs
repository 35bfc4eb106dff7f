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
    /// A directory whose files requests may name (bundles, rootfs, firmware,
    /// kernels, initrds, disks). Repeatable; the state dir and the image
    /// cache (~/.cache/vessel) are always allowed.
    #[arg(long = "allow-dir", value_name = "DIR")]
    pub allow_dirs: Vec<PathBuf>,
    /// Running instances may hold up to this times the host's memory
    /// (1.0: no overcommit).
    #[arg(long, value_name = "RATIO", default_value_t = 1.0, value_parser = parse_ratio)]
    pub memory_overcommit: f64,
    /// Running instances may hold up to this many vCPUs per host CPU.
    #[arg(long, value_name = "RATIO", default_value_t = 4.0, value_parser = parse_ratio)]
    pub cpu_overcommit: f64,
}

/// The largest overcommit ratio accepted.
const MAX_RATIO: f64 = 1000.0;

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= MAX_RATIO => Ok(r),
        _ => Err(format!(
            "invalid ratio '{s}': give a number above 0 and at most {MAX_RATIO}, such as 1.0 or 4"
        )),
    }
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
        let mut config = vessel_daemon::Config::new(args.socket, args.state_dir);
        for dir in args.allow_dirs {
            let dir = std::path::absolute(&dir)
                .with_context(|| format!("--allow-dir {}", dir.display()))?;
            config.allow_dirs.push(dir);
        }
        config.overcommit = vessel_daemon::admission::Overcommit {
            memory: args.memory_overcommit,
            cpu: args.cpu_overcommit,
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_above_zero_up_to_the_bound() {
        assert_eq!(parse_ratio("1.5"), Ok(1.5));
        assert_eq!(parse_ratio("1000"), Ok(1000.0));
        for bad in ["0", "-1", "1001", "nan", "inf", "x"] {
            let err = parse_ratio(bad).unwrap_err();
            assert!(err.contains("at most 1000"), "{bad}: {err}");
        }
    }
}
