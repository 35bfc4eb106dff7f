//! `vessel run --arch riscv64`: the emulated `virt` board, with virtio
//! devices in its virtio-mmio slots.

use std::io::Write;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use vessel_boards::console::{RawTerminal, on_termination, spawn_input};
use vessel_boards::riscv64::layout::VIRTIO_COUNT;
use vessel_boards::riscv64::{Outcome, StopReason, VirtConfig, VirtMachine};
use vessel_devices::VirtioDevice;
use vessel_devices::VirtioMmio;
use vessel_devices::virtio::console::Console;
use vessel_devices::virtio::rng::Rng;

use super::control::{RiscvControl, add_power_button, hub, serve};
use super::{Args, ConsoleKind, DEFAULT_MEMORY, EXIT_FAULT, EXIT_PANIC, Engine, Finished};

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

pub fn run(args: Args) -> anyhow::Result<Finished> {
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
    // Under a supervisor (--control-socket) the console goes to the
    // control socket's hub and the log; otherwise to this terminal.
    let control_hub = match &args.control_socket {
        Some(_) => Some(hub(args.console_log.as_deref())?),
        None => None,
    };
    let console_out = || -> Box<dyn Write + Send> {
        match &control_hub {
            Some(h) => Box::new(h.writer()),
            None => Box::new(std::io::stdout()),
        }
    };
    let mut machine = VirtMachine::new(&config, console_out())?;

    // Console input: the UART's, or a pipe into virtio-console's reader.
    let mut console_in = None;
    if args.console == ConsoleKind::Virtio {
        let (reader, writer) =
            std::io::pipe().context("cannot create a pipe for virtio-console input")?;
        let output = machine.watched_console(console_out());
        let console = Console::new(output, Some(Box::new(reader)))?;
        devices.push(Box::new(console));
        console_in = Some(writer);
    }
    if args.rng {
        devices.push(Box::new(Rng::new()));
    }
    // The power button, in a slot the flags leave free.
    let taken = devices.len();
    let button = add_power_button(&mut devices, taken, VIRTIO_COUNT);
    for device in devices {
        machine.add_virtio_mmio(|mem, irq| {
            Arc::new(Mutex::new(VirtioMmio::new(mem.clone(), device, irq)))
        })?;
    }

    let input = machine.console_input();
    let signalled = input.clone();
    on_termination(move |signal| signalled.signal(signal))
        .context("cannot watch for termination signals")?;
    if let (Some(path), Some(h)) = (&args.control_socket, &control_hub) {
        match console_in {
            Some(pipe) => {
                let pipe = Mutex::new(pipe);
                h.set_input(move |bytes| {
                    let _ = pipe
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .write_all(bytes);
                });
            }
            None => h.set_input(move |bytes| input.send(bytes)),
        }
        let control = Arc::new(RiscvControl::new(machine.events(), button));
        let _server = serve(path, control, Arc::clone(h))?;
        let report = machine.run()?;
        return Ok(finish(report));
    }
    let terminal = RawTerminal::enter().context("cannot put the terminal into raw mode")?;
    let quit = input.clone();
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
    Ok(finish(report))
}

/// The exit code and reason of a finished run, said on stderr.
fn finish(report: vessel_boards::riscv64::RunReport) -> Finished {
    if std::env::var_os("VESSEL_STATS").is_some_and(|v| v == "1") {
        let secs = report.elapsed.as_secs_f64();
        eprintln!(
            "vessel: {} guest instructions in {:.3} s: {:.1} M instructions/s",
            report.instructions,
            secs,
            report.instructions as f64 / secs.max(1e-9) / 1e6
        );
    }

    let said = Finished::said;
    match report.outcome {
        Outcome::Stopped(StopReason::PowerOff) => Finished::quiet("powered_off"),
        Outcome::Stopped(StopReason::Quit) => Finished::quiet("quit"),
        Outcome::Stopped(StopReason::Reset) => said(
            "reset",
            0,
            "the guest asked for a reset; stopping (as QEMU's -no-reboot)".into(),
        ),
        Outcome::Stopped(StopReason::Signal(signal)) => {
            said("signal", 0, format!("terminating on signal {signal}"))
        }
        Outcome::Stopped(StopReason::Shutdown) => said(
            "shutdown",
            0,
            "shut down at the supervisor's request (control socket)".into(),
        ),
        Outcome::Stopped(StopReason::Fail(code)) => said(
            "fail",
            match (code & 0xff) as u8 {
                0 => 1,
                c => c,
            },
            format!("the guest reported failure with code {code}"),
        ),
        Outcome::Stopped(StopReason::KernelPanic(line)) => said(
            "kernel_panic",
            EXIT_PANIC,
            format!("the guest kernel panicked: {line}"),
        ),
        Outcome::Fault(fault) => said("fault", EXIT_FAULT, format!("emulator fault: {fault}")),
    }
}
