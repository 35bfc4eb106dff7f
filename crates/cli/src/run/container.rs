//! `vessel run --container`: an OCI container in the foreground, through
//! the `vessel-container` library (`vessel_container::run_container`).
//!
//! The exit status is the container process's (128+signal when it was
//! killed, so 137 after an OOM kill); 1 for errors before it starts.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;

use super::Args;

/// Default directory for the state of containers that `vessel run` starts.
pub const DEFAULT_ROOT: &str = "/run/vessel/containers";

/// Runs the container that `args` describe and returns its exit status.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !args.container {
        bail!("a command after `--` runs in a container: add --container and --rootfs DIR");
    }
    // Flags of machines mean nothing to a container: say so, not ignore.
    let machine_only = [
        ("an image name", args.image.is_some()),
        ("--kernel", args.kernel.is_some()),
        ("--initrd", args.initrd.is_some()),
        ("--firmware", args.firmware.is_some()),
        ("--append", args.append.is_some()),
        ("--disk", !args.disks.is_empty()),
        ("--net", !args.nets.is_empty()),
        ("--rng", args.rng),
        ("--control-socket", args.control_socket.is_some()),
    ];
    if let Some((flag, _)) = machine_only.iter().find(|(_, set)| *set) {
        bail!(
            "{flag} is for machines, not containers: drop it, or drop --container to boot a machine"
        );
    }
    let cfg = vessel_container::ContainerRun {
        root: args
            .container_root
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT)),
        id: args.name.clone(),
        bundle: args.bundle.clone(),
        rootfs: args.rootfs.clone(),
        args: args.command.clone(),
        memory: args.memory,
        hostname: args.hostname.clone(),
        terminal: None,
    };
    let code = vessel_container::run_container(&cfg)?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
