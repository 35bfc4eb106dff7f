//! `vessel`: one command for every virtualization technique vessel offers.
//!
//! The binary is thin: each subcommand parses its flags here and calls into
//! the library crate that does the work.

mod console;
mod daemon;
mod host_check;
mod image;
mod instances;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// vessel runs guests with every technique of the classic comparison table:
/// emulation of a foreign architecture, full and hardware-assisted
/// virtualization, paravirtual devices, and OS-level containers.
#[derive(Debug, Parser)]
#[command(name = "vessel", version, propagate_version = true)]
#[command(
    about = "One command for emulated machines, KVM guests and containers",
    long_about = None,
    after_help = "Start with `vessel host-check` to see which engines this host can run."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check what this host offers: CPU extensions, KVM, container features.
    HostCheck(host_check::Args),
    /// Guest images: `vessel image fetch debian-riscv64`, `ls`, `rm`, `initramfs`.
    Image(image::Args),
    /// Boot a guest: `vessel run --arch riscv64 --firmware FILE --kernel FILE ...`.
    Run(Box<run::Args>),
    /// Run the daemon: REST API on a Unix socket, instance registry, supervisor.
    Daemon(daemon::Args),
    #[command(flatten)]
    Instances(instances::Command),
    #[command(flatten)]
    Console(console::Command),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    let result = match cli.command {
        Command::HostCheck(args) => host_check::run(args),
        Command::Image(args) => image::run(args),
        Command::Run(args) => run::run(*args),
        Command::Daemon(args) => daemon::run(args),
        Command::Instances(command) => instances::run(command),
        Command::Console(command) => console::run(command),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("vessel: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Help and version go to stdout as clap prints them; a usage error is one
/// line on stderr that says what was wrong and where to look, exit code 2.
fn usage_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = err.print();
        return ExitCode::SUCCESS;
    }
    if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = err.print();
        return ExitCode::from(2);
    }
    let rendered = err.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!("vessel: {first} (see `vessel --help`)");
    ExitCode::from(2)
}
