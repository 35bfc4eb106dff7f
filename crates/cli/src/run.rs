//! `vessel run`: boot a guest on an emulated riscv64 machine or, for guests
//! of the host's architecture, on KVM.
//!
//! Thin: flags become a board configuration; `vessel-boards` (riscv64) and
//! `vessel-x86` (x86_64 on KVM) do the work.
//! Exit status: 0 when the guest powers off or resets (QEMU's `-no-reboot`),
//! the user quits with Ctrl-A x, or vessel gets SIGTERM or SIGHUP; the guest's code when it writes a fail
//! code to the test device (1 if that code is 0 modulo 256); 3 when the
//! emulated CPU faults (or a KVM vCPU fails); 4 when the guest kernel panics;
//! 1 for errors before the guest starts; 2 for usage errors.

mod container;
mod control;
mod riscv;
mod x86;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::ValueEnum;
use vessel_devices::block::DiskSpec;
use vessel_devices::net::NetSpec;

/// Exit status when the emulated CPU cannot go on.
pub const EXIT_FAULT: u8 = 3;
/// Exit status when the guest kernel panics.
pub const EXIT_PANIC: u8 = 4;

/// Default guest RAM.
const DEFAULT_MEMORY: u64 = 512 << 20;

/// The guest architecture (the board follows from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Arch {
    /// RISC-V RV64GC on QEMU's `virt` board, emulated.
    Riscv64,
    /// x86-64 on Firecracker's `microvm` board, on KVM.
    #[value(name = "x86_64", alias = "x86-64")]
    X86_64,
}

/// Which engine runs the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// The emulator for a foreign architecture, KVM for the host's own.
    Auto,
    /// vessel's software CPU (riscv64 guests).
    Emu,
    /// KVM (x86_64 guests on an x86_64 host).
    Kvm,
}

/// Where the guest's console is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConsoleKind {
    /// The board's UART (ttyS0).
    Uart,
    /// A virtio-console device: the guest's hvc0.
    Virtio,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Console: the guest's UART (or, with --console virtio, its hvc0) on this \
terminal. Ctrl-A x quits, Ctrl-A Ctrl-A sends Ctrl-A.\n\nExamples:\n  \
vessel run debian-riscv64 --disk data.img --rng\n  \
vessel run debian-riscv64 --disk root.img   (a root disk from `vessel image disk`)\n  \
vessel run --arch riscv64 --firmware fw_dynamic.bin --kernel Image \
--initrd initrd.img --append 'console=ttyS0' --cpus 2 --memory 1G\n  \
vessel run --arch x86_64 --kernel vmlinux --append 'console=ttyS0 reboot=k' --disk root.img"
)]
pub struct Args {
    /// A cached guest image to boot, e.g. debian-riscv64 (from `vessel image fetch`).
    pub image: Option<String>,
    /// Guest architecture.
    #[arg(long, value_enum, default_value_t = Arch::Riscv64)]
    pub arch: Arch,
    /// Engine: auto takes KVM for x86_64 (warning when KVM is not
    /// hardware-assisted) and the emulator for riscv64.
    #[arg(long, value_enum, default_value_t = Engine::Auto)]
    pub engine: Engine,
    /// Firmware started at the beginning of RAM (riscv64: OpenSBI's fw_dynamic.bin).
    #[arg(long, value_name = "FILE")]
    pub firmware: Option<PathBuf>,
    /// Linux kernel: a raw RISC-V `Image`; for x86_64 an ELF vmlinux or a bzImage.
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk for the kernel.
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, value_name = "STR")]
    pub append: Option<String>,
    /// Guest RAM: bytes, or a number with K, M or G (512M, 1G, 64K); default 512M.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory: Option<u64>,
    /// Number of vCPUs (riscv64: 1 to 8 harts; x86_64: 1 to 32).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=255))]
    pub cpus: u16,
    /// A virtio-blk disk: PATH[,ro][,format=raw|qcow2][,serial=ID]. Repeatable;
    /// the first is the guest's vda.
    #[arg(long = "disk", value_name = "DISK", value_parser = parse_disk)]
    pub disks: Vec<DiskSpec>,
    /// A virtio-net card on a tap: tap=NAME[,mac=MAC][,offload=off]. Repeatable;
    /// the tap is created if missing (needs CAP_NET_ADMIN); offload=off offers
    /// no checksum or TSO offloads.
    #[arg(long = "net", value_name = "NET", value_parser = parse_net)]
    pub nets: Vec<NetSpec>,
    /// The guest's console: the UART, or virtio (hvc0; adds console=hvc0 to
    /// the default command line).
    #[arg(long, value_enum, value_name = "KIND", default_value_t = ConsoleKind::Uart)]
    pub console: ConsoleKind,
    /// A virtio-rng device (the guest's /dev/hwrng), fed by the host's getrandom.
    #[arg(long)]
    pub rng: bool,
    /// Run an OCI container instead of a machine: give --bundle, or
    /// --rootfs and the command after `--`.
    #[arg(long)]
    pub container: bool,
    /// With --container: an OCI bundle (a directory with config.json).
    #[arg(long, value_name = "DIR", requires = "container")]
    pub bundle: Option<PathBuf>,
    /// With --container: a root file system to run the command in, with a
    /// default config (as `vessel-runtime spec` writes it).
    #[arg(long, value_name = "DIR", requires = "container")]
    pub rootfs: Option<PathBuf>,
    /// With --container --rootfs: the container's host name.
    #[arg(long, value_name = "NAME", requires = "rootfs")]
    pub hostname: Option<String>,
    /// With --container: the container's id (default: a unique one).
    #[arg(long, value_name = "ID", requires = "container")]
    pub name: Option<String>,
    /// With --container: the directory for container state
    /// (default /run/vessel/containers).
    #[arg(long, value_name = "DIR", requires = "container")]
    pub container_root: Option<PathBuf>,
    /// With --container --rootfs: the command and its arguments, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
    /// Serve a control socket for a supervisor (the daemon): status, pause,
    /// resume, shutdown and the console. The console then goes to the
    /// socket's clients and to --console-log instead of this terminal.
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
    /// With --control-socket: append the console output to FILE (copied to
    /// FILE.1 and emptied past 1 MiB).
    #[arg(long, value_name = "FILE", requires = "control_socket")]
    pub console_log: Option<PathBuf>,
    /// When the process ends, write why (JSON: code, reason, message) to FILE.
    #[arg(long, value_name = "FILE")]
    pub exit_file: Option<PathBuf>,
}

/// How a guest run ended: the process's exit code and the reason written
/// to `--exit-file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub code: u8,
    /// `powered_off`, `reset`, `shutdown`, `signal`, `quit`, `fail`,
    /// `kernel_panic`, `fault` or `error`.
    pub reason: &'static str,
    pub message: Option<String>,
}

impl Finished {
    /// A clean end (code 0) with nothing to say.
    fn quiet(reason: &'static str) -> Finished {
        Finished {
            code: 0,
            reason,
            message: None,
        }
    }

    /// An end whose `message` is said on stderr and kept for the record.
    fn said(reason: &'static str, code: u8, message: String) -> Finished {
        eprintln!("vessel: {message}");
        Finished {
            code,
            reason,
            message: Some(message),
        }
    }
}

pub use vessel_api::parse_size;

/// Parse a `--disk` value.
fn parse_disk(s: &str) -> Result<DiskSpec, String> {
    s.parse()
        .map_err(|e: vessel_devices::block::DiskSpecError| e.to_string())
}

/// Parse a `--net` value.
fn parse_net(s: &str) -> Result<NetSpec, String> {
    s.parse()
        .map_err(|e: vessel_devices::net::NetSpecError| e.to_string())
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.container || !args.command.is_empty() {
        return container::run(args);
    }
    let exit_file = args.exit_file.clone();
    let result = run_guest(args);
    let Some(path) = exit_file else {
        return result.map(|f| ExitCode::from(f.code));
    };
    let finished = match &result {
        Ok(f) => f.clone(),
        Err(e) => Finished {
            code: 1,
            reason: "error",
            message: Some(format!("{e:#}")),
        },
    };
    let record = vessel_control::ExitRecord {
        code: i32::from(finished.code),
        reason: finished.reason.to_string(),
        message: finished.message,
        pid: std::process::id(),
        ended_at: vessel_control::unix_now(),
    };
    if let Err(e) = vessel_control::write_exit_record(&path, &record) {
        eprintln!("vessel: {e}");
    }
    result.map(|f| ExitCode::from(f.code))
}

fn run_guest(args: Args) -> anyhow::Result<Finished> {
    let mut args = args;
    if let Some(name) = args.image.clone() {
        // A fetched image supplies what the flags leave out.
        let m = vessel_images::load(&name).with_context(|| {
            format!("cannot boot image '{name}'; fetch it with `vessel image fetch {name}`")
        })?;
        let want = match args.arch {
            Arch::Riscv64 => "riscv64",
            Arch::X86_64 => "x86_64",
        };
        if m.arch != want {
            bail!(
                "image '{name}' is for {}, not {want}: boot it with --arch {}",
                m.arch,
                m.arch
            );
        }
        // A root disk from `vessel image disk` among the disks: boot from
        // it, with the initramfs that carries the ext4 modules.
        let root = match args.initrd {
            None => root_disk(&args.disks),
            Some(_) => None,
        };
        let mut cmdline = m.cmdline.clone();
        if let Some(i) = root {
            args.initrd = Some(vessel_images::disk::root_initrd(&m)?);
            cmdline = format!("{cmdline} vessel.root=/dev/vd{}", char::from(b'a' + i));
        }
        if let Some(fw) = m.firmware() {
            args.firmware.get_or_insert(fw.to_path_buf());
        }
        args.kernel.get_or_insert(m.kernel);
        args.initrd.get_or_insert(m.initrd);
        if args.append.is_none() {
            args.append = Some(default_cmdline(
                cmdline.trim_start(),
                args.console,
                args.arch,
            ));
        }
    } else if args.append.is_none() && args.console == ConsoleKind::Virtio {
        let base = match args.arch {
            Arch::Riscv64 => "",
            Arch::X86_64 => vessel_x86::DEFAULT_CMDLINE,
        };
        args.append = Some(default_cmdline(base, args.console, args.arch));
    }
    match args.arch {
        Arch::Riscv64 => riscv::run(args),
        Arch::X86_64 => x86::run(args),
    }
}

/// The index of the first disk that is a root disk from `vessel image disk`
/// (an ext4 filesystem labelled `vessel-root`): the guest's `vda` for 0.
/// Disks that cannot be read are left to the device's own open to report.
fn root_disk(disks: &[DiskSpec]) -> Option<u8> {
    let head = |d: &DiskSpec| -> Option<bool> {
        let opts = vessel_devices::block::DiskOptions {
            read_only: true,
            format: d.format,
        };
        let mut disk = vessel_devices::block::open_disk(&d.path, &opts).ok()?;
        let mut buf = vec![0u8; vessel_images::disk::SUPERBLOCK_END];
        if disk.size() < buf.len() as u64 {
            return Some(false);
        }
        disk.read_at(&mut buf, 0).ok()?;
        Some(vessel_images::disk::is_root_disk(&buf))
    };
    let i = disks.iter().position(|d| head(d) == Some(true))?;
    u8::try_from(i).ok().filter(|&i| i < 26)
}

/// The command line used when the user gives no `--append`: the image's
/// own, plus `console=hvc0` when the console is virtio.
///
/// riscv64: the UART is only the early console (`earlycon`, found through
/// the device tree's stdout-path). The virtio transport is a module in
/// Debian's kernel, so hvc0 appears only once the initramfs has loaded it;
/// the kernel then hands over from the early console to hvc0 without
/// printing anything twice, and init reopens `/dev/console` (hvc0). With
/// the UART as a second console every later kernel line showed twice.
///
/// x86_64 keeps the UART as a second console (no device tree to find it
/// early).
fn default_cmdline(image: &str, console: ConsoleKind, arch: Arch) -> String {
    match (console, arch) {
        (ConsoleKind::Uart, _) => image.to_string(),
        (ConsoleKind::Virtio, Arch::Riscv64) => {
            let mut words: Vec<&str> = image
                .split_whitespace()
                .filter(|w| !w.starts_with("console=ttyS"))
                .collect();
            words.extend(["earlycon", "console=hvc0"]);
            words.join(" ")
        }
        (ConsoleKind::Virtio, Arch::X86_64) => {
            format!("{image} console=hvc0").trim_start().to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_root_disk_is_found_by_its_label() {
        let dir = std::env::temp_dir().join(format!("vessel-root-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data = dir.join("data.img");
        std::fs::write(&data, vec![0u8; 4096]).unwrap();
        let mut sb = vec![0u8; 4096];
        sb[1024 + 56..1024 + 58].copy_from_slice(&[0x53, 0xef]);
        sb[1024 + 120..1024 + 131].copy_from_slice(b"vessel-root");
        let root = dir.join("root.img");
        std::fs::write(&root, &sb).unwrap();
        let tiny = dir.join("tiny.img");
        std::fs::write(&tiny, b"x").unwrap();
        let spec = |p: &std::path::Path| parse_disk(p.to_str().unwrap()).unwrap();
        let missing = spec(&dir.join("missing.img"));
        assert_eq!(root_disk(&[spec(&data), spec(&root)]), Some(1));
        assert_eq!(root_disk(&[spec(&root), spec(&root)]), Some(0));
        assert_eq!(root_disk(&[missing, spec(&tiny), spec(&data)]), None);
        assert_eq!(root_disk(&[]), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn device_flags_parse() {
        let d = parse_disk("a.img,ro,serial=x").unwrap();
        assert!(d.read_only);
        assert!(parse_disk("a.img,rw").unwrap_err().contains("\"rw\""));
        let n = parse_net("tap=vm0,mac=52:54:00:12:34:56").unwrap();
        assert_eq!(n.tap, "vm0");
        assert!(
            parse_net("mac=52:54:00:12:34:56")
                .unwrap_err()
                .contains("tap=NAME")
        );
    }

    #[test]
    fn virtio_console_adds_hvc0() {
        assert_eq!(
            default_cmdline("console=ttyS0 panic=-1", ConsoleKind::Virtio, Arch::Riscv64),
            "panic=-1 earlycon console=hvc0"
        );
        assert_eq!(
            default_cmdline("", ConsoleKind::Virtio, Arch::Riscv64),
            "earlycon console=hvc0"
        );
        assert_eq!(
            default_cmdline("console=ttyS0", ConsoleKind::Virtio, Arch::X86_64),
            "console=ttyS0 console=hvc0"
        );
        assert_eq!(
            default_cmdline("console=ttyS0", ConsoleKind::Uart, Arch::Riscv64),
            "console=ttyS0"
        );
    }
}
