//! `vessel run --arch riscv64`: the emulated `virt` board, with virtio
//! devices in its virtio-mmio slots.

use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use vessel_boards::console::{RawTerminal, on_termination, spawn_input};
use vessel_boards::riscv64::layout::VIRTIO_COUNT;
use vessel_boards::riscv64::{Outcome, StopReason, VirtConfig, VirtMachine};
use vessel_devices::VirtioDevice;
use vessel_devices::VirtioMmio;
use vessel_devices::virtio::console::Console;
use vessel_devices::virtio::rng::Rng;

use super::{Args, ConsoleKind, DEFAULT_MEMORY, EXIT_FAULT, EXIT_PANIC, Engine};

/// How many virtio devices the flags ask for, or a one-line error naming
/// them when the board has too few slots.
fn count_devices(args: &Args) -> anyhow::Result<usize> {
    let console = usize::from(args.console == ConsoleKind::Virtio);
    let rng = usize::from(args.rng);
    let n = args.disks.len() + args.nets.len() + console + rng;
    if n > VIRTIO_COUNT {
        bail!(
            "too many virtio devices: {} --disk, {} --net{}{} make {n}, and the riscv64 virt \
             board has {VIRTIO_COUNT} virtio-mmio slots; drop some",
            args.disks.len(),
            args.nets.len(),
            if console == 1 {
                ", --console virtio"
            } else {
                ""
            },
            if rng == 1 { ", --rng" } else { "" },
        );
    }
    Ok(n)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.engine == Engine::Kvm {
        bail!(
            "--engine kvm runs guests of the host's architecture (--arch x86_64); \
             riscv64 guests run on the emulator (--engine emu or auto)"
        );
    }
    count_devices(&args)?;
    let Some(firmware) = args.firmware.clone() else {
        bail!(
            "--firmware FILE is missing: a riscv64 guest starts in firmware \
             (OpenSBI's fw_dynamic.bin), or name a fetched image: `vessel run debian-riscv64`"
        );
    };

    // Open every device before building the machine: a bad disk or tap is
    // an error before anything runs.
    let mut devices: Vec<Box<dyn VirtioDevice>> = Vec::new();
    for disk in &args.disks {
        let blk = disk
            .open()
            .with_context(|| format!("--disk {}", disk.path.display()))?;
        devices.push(Box::new(blk));
    }
    for net in &args.nets {
        let dev = net
            .open()
            .with_context(|| format!("--net tap={}", net.tap))?;
        devices.push(Box::new(dev));
    }

    let config = VirtConfig {
        cpus: usize::from(args.cpus),
        memory: args.memory.unwrap_or(DEFAULT_MEMORY),
        firmware,
        kernel: args.kernel.clone(),
        initrd: args.initrd.clone(),
        bootargs: args.append.clone().unwrap_or_default(),
    };
    let mut machine = VirtMachine::new(&config, Box::new(std::io::stdout()))?;

    // Console input: the UART's, or a pipe into virtio-console's reader.
    let mut console_in = None;
    if args.console == ConsoleKind::Virtio {
        let (reader, writer) =
            std::io::pipe().context("cannot create a pipe for virtio-console input")?;
        let output = machine.watched_console(Box::new(std::io::stdout()));
        let console = Console::new(output, Some(Box::new(reader)))?;
        devices.push(Box::new(console));
        console_in = Some(writer);
    }
    if args.rng {
        devices.push(Box::new(Rng::new()));
    }
    for device in devices {
        machine.add_virtio_mmio(|mem, irq| {
            Arc::new(Mutex::new(VirtioMmio::new(mem.clone(), device, irq)))
        })?;
    }

    let terminal = RawTerminal::enter().context("cannot put the terminal into raw mode")?;
    let input = machine.console_input();
    let quit = input.clone();
    let signalled = input.clone();
    on_termination(move |signal| signalled.signal(signal))
        .context("cannot watch for termination signals")?;
    match console_in {
        Some(mut pipe) => spawn_input(
            move |bytes| {
                // The console device holds what the guest has not read yet.
                let _ = pipe.write_all(bytes);
            },
            move || quit.quit(),
        ),
        None => spawn_input(move |bytes| input.send(bytes), move || quit.quit()),
    }
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
