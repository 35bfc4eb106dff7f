//! `vessel host-check`: does this host have the virtualization extensions,
//! and which engines can run here?

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use vessel_hostcheck::{Probe, check, render_text};

#[derive(Debug, clap::Args)]
#[command(
    long_about = "Check what this host offers each engine: the CPU's virtualization extensions \
(VT-x, AMD-V), whether /dev/kvm is hardware-assisted (measured by running a tiny guest), and \
what the kernel gives containers (namespaces, cgroups, overlayfs, seccomp, /dev/net/tun). \
Ends with a verdict per engine (ok, degraded, unavailable) and the engine `vessel run` picks."
)]
pub struct Args {
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,

    /// Read /proc and /sys from a recorded host under DIR instead of this one
    /// (runs no guest and creates no namespace).
    #[arg(long, value_name = "DIR", hide = true)]
    sysroot: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let probe = match args.sysroot {
        Some(dir) => {
            anyhow::ensure!(dir.is_dir(), "--sysroot {}: not a directory", dir.display());
            Probe::recorded(dir)
        }
        None => Probe::live(),
    };
    let report = check(&probe)?;
    if args.json {
        let text = serde_json::to_string_pretty(&report).context("cannot encode the report")?;
        println!("{text}");
    } else {
        print!("{}", render_text(&report));
    }
    Ok(ExitCode::SUCCESS)
}
