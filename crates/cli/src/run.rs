//! `vessel run`: boot a guest on an emulated machine.
//!
//! Thin: flags become a board configuration; `vessel-boards` does the work.
//! Exit status: 0 when the guest powers off or resets (QEMU's `-no-reboot`),
//! the user quits with Ctrl-A x, or vessel gets SIGTERM or SIGHUP; the guest's code when it writes a fail
//! code to the test device (1 if that code is 0 modulo 256); 3 when the
//! emulated CPU faults; 4 when the guest kernel panics; 1 for errors before
//! the guest starts; 2 for usage errors.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::ValueEnum;
use vessel_boards::console::{RawTerminal, on_termination, spawn_input};
use vessel_boards::riscv64::{Outcome, StopReason, VirtConfig, VirtMachine};

/// Exit status when the emulated CPU cannot go on.
pub const EXIT_FAULT: u8 = 3;
/// Exit status when the guest kernel panics.
pub const EXIT_PANIC: u8 = 4;

/// The guest architecture (the board follows from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Arch {
    /// RISC-V RV64GC on QEMU's `virt` board, emulated.
    Riscv64,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Console: the guest's UART on this terminal. Ctrl-A x quits, \
Ctrl-A Ctrl-A sends Ctrl-A.\n\nExample:\n  vessel run --arch riscv64 --firmware fw_dynamic.bin \
--kernel Image --initrd initrd.img --append 'console=ttyS0' --cpus 2 --memory 1G"
)]
pub struct Args {
    /// A cached guest image to boot, e.g. debian-riscv64 (from `vessel image fetch`).
    pub image: Option<String>,
    /// Guest architecture.
    #[arg(long, value_enum, default_value_t = Arch::Riscv64)]
    pub arch: Arch,
    /// Firmware started at the beginning of RAM (OpenSBI's fw_dynamic.bin).
    #[arg(long, value_name = "FILE")]
    pub firmware: Option<PathBuf>,
    /// Linux kernel: a raw RISC-V `Image`.
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk for the kernel.
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, value_name = "STR")]
    pub append: Option<String>,
    /// Guest RAM: bytes, or a number with K, M or G (512M, 1G, 64K).
    #[arg(long, value_name = "SIZE", default_value = "512M", value_parser = parse_size)]
    pub memory: u64,
    /// Number of harts (1 to 8).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=8))]
    pub cpus: u8,
}

/// Parse a memory size: bytes, or a number followed by K, M, G or T
/// (powers of 1024, either case).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad =
        || format!("invalid size '{s}': use bytes or a number with K, M or G (e.g. 512M, 1G, 64K)");
    let t = s.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(bad()),
            };
            (&t[..i], shift)
        }
        Some(_) => (t, 0),
        None => return Err(bad()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size '{s}' is too large"))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Arch::Riscv64 = args.arch;
    let mut args = args;
    if let Some(name) = args.image.clone() {
        // A fetched image supplies what the flags leave out.
        let m = vessel_images::load(&name).with_context(|| {
            format!("cannot boot image '{name}'; fetch it with `vessel image fetch {name}`")
        })?;
        if m.arch != "riscv64" {
            bail!(
                "image '{name}' is for {}; this command boots riscv64 guests",
                m.arch
            );
        }
        args.firmware.get_or_insert(m.firmware);
        args.kernel.get_or_insert(m.kernel);
        args.initrd.get_or_insert(m.initrd);
        args.append.get_or_insert(m.cmdline);
    }
    let Some(firmware) = args.firmware.clone() else {
        bail!(
            "--firmware FILE is missing: a riscv64 guest starts in firmware \
             (OpenSBI's fw_dynamic.bin), or name a fetched image: `vessel run debian-riscv64`"
        );
    };
    let config = VirtConfig {
        cpus: args.cpus as usize,
        memory: args.memory,
        firmware,
        kernel: args.kernel.clone(),
        initrd: args.initrd.clone(),
        bootargs: args.append.clone().unwrap_or_default(),
    };
    let mut machine = VirtMachine::new(&config, Box::new(std::io::stdout()))?;

    let terminal = RawTerminal::enter().context("cannot put the terminal into raw mode")?;
    let input = machine.console_input();
    let quit = input.clone();
    let signalled = input.clone();
    on_termination(move |signal| signalled.signal(signal))
        .context("cannot watch for termination signals")?;
    spawn_input(move |bytes| input.send(bytes), move || quit.quit())
        .context("cannot start the console input thread")?;
    let report = machine.run();
    drop(terminal);
    let report = report?;
    let _ = std::io::stdout().flush();

    if std::env::var_os("VESSEL_STATS").is_some_and(|v| v == "1") {
        let secs = report.elapsed.as_secs_f64();
        eprintln!(
            "vessel: {} guest instructions in {:.3} s: {:.1} M instructions/s",
            report.instructions,
            secs,
            report.instructions as f64 / secs.max(1e-9) / 1e6
        );
    }

    let code = match report.outcome {
        Outcome::Stopped(StopReason::PowerOff) | Outcome::Stopped(StopReason::Quit) => 0,
        Outcome::Stopped(StopReason::Reset) => {
            eprintln!("vessel: the guest asked for a reset; stopping (as QEMU's -no-reboot)");
            0
        }
        Outcome::Stopped(StopReason::Signal(signal)) => {
            eprintln!("vessel: terminating on signal {signal}");
            0
        }
        Outcome::Stopped(StopReason::Fail(code)) => {
            eprintln!("vessel: the guest reported failure with code {code}");
            match (code & 0xff) as u8 {
                0 => 1,
                c => c,
            }
        }
        Outcome::Stopped(StopReason::KernelPanic(line)) => {
            eprintln!("vessel: the guest kernel panicked: {line}");
            EXIT_PANIC
        }
        Outcome::Fault(fault) => {
            eprintln!("vessel: emulator fault: {fault}");
            EXIT_FAULT
        }
    };
    Ok(ExitCode::from(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        for bad in ["", "M", "12X", "1.5G", "-1M", "1 G", "0x100", "1GB"] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.contains("invalid size"), "{bad}: {e}");
        }
        assert!(
            parse_size("99999999999T")
                .unwrap_err()
                .contains("too large")
        );
    }
}
