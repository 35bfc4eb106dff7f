//! `vessel run --arch x86_64`: the microvm board on KVM (`vessel-x86`).

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};
use vessel_boards::console::{ConsoleOutput, RawTerminal, Seen, on_termination, spawn_input};
use vessel_devices::virtio::console::Console;
use vessel_devices::virtio::rng::Rng;
use vessel_x86::{DEFAULT_CMDLINE, ExitReason, Microvm, NetConfig, VmConfig, VmControl};

use super::{Args, ConsoleKind, DEFAULT_MEMORY, EXIT_FAULT, EXIT_PANIC, Engine};

/// Why KVM on this host will be slow, when it is not hardware-assisted:
/// a cheap look at the CPU flags and the KVM modules (no timed probe).
/// `None` when KVM is hardware-assisted, or when the host cannot be read
/// (then KVM itself says what is wrong).
fn slow_kvm_warning() -> Option<String> {
    let probe = vessel_hostcheck::Probe::recorded("/");
    let cpu = vessel_hostcheck::cpu::probe(&probe).ok()?;
    let kvm = vessel_hostcheck::kvm::probe(&probe, &cpu);
    if !kvm.present || kvm.hardware_assisted {
        return None;
    }
    let why = match (&kvm.nested_layer, cpu.has_extensions()) {
        (Some(layer), _) => format!(
            "the CPU has no VT-x/AMD-V and /dev/kvm is served by {layer}, a nested software \
             layer that emulates the guest instruction by instruction"
        ),
        (None, false) => "the CPU advertises no VT-x/AMD-V (vmx/svm), so /dev/kvm cannot use \
                          hardware virtualization"
            .to_string(),
        (None, true) => {
            "the CPU has VT-x/AMD-V but neither kvm_intel nor kvm_amd is loaded".to_string()
        }
    };
    Some(format!(
        "vessel: warning: KVM here is not hardware-assisted: {why}; guests run about 1,000 to \
         3,000 times slower than native (about 1.5 M instructions/s): small guests work, \
         Linux will not boot in useful time (`vessel host-check` measures it)"
    ))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.engine == Engine::Emu {
        bail!("--engine emu: vessel has no x86_64 emulator; use --engine kvm (or auto)");
    }
    if args.firmware.is_some() {
        bail!(
            "--firmware is for riscv64 guests: an x86_64 microvm starts at its kernel's entry \
             (Linux boot protocol); drop --firmware"
        );
    }
    let Some(kernel) = args.kernel.clone() else {
        bail!("--kernel FILE is missing: an x86_64 guest needs an ELF vmlinux or a bzImage");
    };
    let mut nets = Vec::new();
    for spec in &args.nets {
        nets.push(NetConfig::tap(spec).with_context(|| format!("--net tap={}", spec.tap))?);
    }

    if args.engine == Engine::Auto
        && let Some(warning) = slow_kvm_warning()
    {
        eprintln!("{warning}");
    }

    // Console output (the serial port's, and hvc0's with --console virtio)
    // on stdout, watched for the kernel's panic report.
    let control_cell: Arc<OnceLock<VmControl>> = Arc::default();
    let panic_line: Arc<Mutex<Option<String>>> = Arc::default();
    let watched_stdout = || {
        let control_cell = control_cell.clone();
        let panic_line = panic_line.clone();
        ConsoleOutput::new(
            std::io::stdout(),
            Box::new(move |seen| match seen {
                Seen::Panic(line) => {
                    let mut p = panic_line.lock().unwrap_or_else(|p| p.into_inner());
                    p.get_or_insert(line);
                }
                Seen::PanicEnd => {
                    if let Some(c) = control_cell.get() {
                        c.request_exit(ExitReason::Stopped);
                    }
                }
            }),
        )
    };
    let serial_out = watched_stdout();
    // The same virtio devices as on riscv64, after the disks and cards.
    let mut virtio: Vec<Box<dyn vessel_devices::VirtioDevice>> = Vec::new();
    let mut console_in = None;
    if args.console == ConsoleKind::Virtio {
        let (reader, writer) =
            std::io::pipe().context("cannot create a pipe for virtio-console input")?;
        let console = Console::new(Box::new(watched_stdout()), Some(Box::new(reader)))?;
        virtio.push(Box::new(console));
        console_in = Some(writer);
    }
    if args.rng {
        virtio.push(Box::new(Rng::new()));
    }

    let mut config = VmConfig::new(kernel);
    config.initrd = args.initrd.clone();
    config.cmdline = args
        .append
        .clone()
        .unwrap_or_else(|| DEFAULT_CMDLINE.into());
    config.memory = args.memory.unwrap_or(DEFAULT_MEMORY);
    config.vcpus = usize::from(args.cpus);
    config.serial_out = Box::new(serial_out);
    config.disks = args.disks.clone();
    config.nets = nets;
    config.virtio = virtio;
    let vm = Microvm::new(config)?;
    let control = vm.control();
    let _ = control_cell.set(control.clone());
    let serial = vm.serial_handle();

    let terminal = RawTerminal::enter().context("cannot put the terminal into raw mode")?;
    let signal = Arc::new(AtomicI32::new(0));
    {
        let control = control.clone();
        let signal = signal.clone();
        on_termination(move |sig| {
            signal.store(sig, Ordering::SeqCst);
            control.request_exit(ExitReason::Stopped);
        })
        .context("cannot watch for termination signals")?;
    }
    if let Some(mut pipe) = console_in {
        let quit = control.clone();
        spawn_input(
            move |bytes| {
                // virtio-console holds what the guest has not read yet.
                let _ = pipe.write_all(bytes);
            },
            move || quit.request_exit(ExitReason::Stopped),
        )
        .context("cannot start the console input thread")?;
    } else {
        let control = control.clone();
        let quit = control.clone();
        spawn_input(
            move |bytes| {
                let mut rest = bytes;
                while !rest.is_empty() {
                    let sent = serial.send(rest);
                    rest = &rest[sent..];
                    if sent == 0 {
                        if control.exit_reason().is_some() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            },
            move || quit.request_exit(ExitReason::Stopped),
        )
        .context("cannot start the console input thread")?;
    }
    let reason = vm.start().map(|running| running.wait());
    drop(terminal);
    let reason = reason?;
    let _ = std::io::stdout().flush();

    let panicked = panic_line.lock().unwrap_or_else(|p| p.into_inner()).take();
    let code = match (panicked, reason) {
        (Some(line), _) => {
            eprintln!("vessel: the guest kernel panicked: {line}");
            EXIT_PANIC
        }
        (None, ExitReason::Reset) => 0,
        (None, ExitReason::PowerOff) => 0,
        (None, ExitReason::Stopped) => {
            let sig = signal.load(Ordering::SeqCst);
            if sig != 0 {
                eprintln!("vessel: terminating on signal {sig}");
            }
            0
        }
        (None, reason @ (ExitReason::TripleFault | ExitReason::Halted | ExitReason::Failed(_))) => {
            eprintln!("vessel: {reason}");
            EXIT_FAULT
        }
    };
    Ok(ExitCode::from(code))
}
