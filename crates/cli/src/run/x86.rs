//! `vessel run --arch x86_64`: the microvm board on KVM (`vessel-x86`).

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, bail};
use vessel_boards::console::{ConsoleOutput, RawTerminal, Seen, on_termination, spawn_input};
use vessel_devices::virtio::console::Console;
use vessel_devices::virtio::rng::Rng;
use vessel_x86::{
    DEFAULT_CMDLINE, ExitReason, Microvm, NetConfig, VIRTIO_SLOTS, VmConfig, VmControl,
};

use super::control::{X86Control, add_power_button, hub, serve};
use super::{Args, ConsoleKind, DEFAULT_MEMORY, EXIT_FAULT, EXIT_PANIC, Engine, Finished};

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

pub fn run(args: Args) -> anyhow::Result<Finished> {
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

    // Under a supervisor (--control-socket) the console goes to the
    // control socket's hub and the log; otherwise to this terminal. Either
    // way it is watched for the kernel's panic report.
    let control_hub = match &args.control_socket {
        Some(_) => Some(hub(args.console_log.as_deref())?),
        None => None,
    };
    let control_cell: Arc<OnceLock<VmControl>> = Arc::default();
    let panic_line: Arc<Mutex<Option<String>>> = Arc::default();
    let watched_output = || -> ConsoleOutput<Box<dyn Write + Send>> {
        let control_cell = control_cell.clone();
        let panic_line = panic_line.clone();
        let out: Box<dyn Write + Send> = match &control_hub {
            Some(h) => Box::new(h.writer()),
            None => Box::new(std::io::stdout()),
        };
        ConsoleOutput::new(
            out,
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
    let serial_out = watched_output();
    // The same virtio devices as on riscv64, after the disks and cards.
    let mut virtio: Vec<Box<dyn vessel_devices::VirtioDevice>> = Vec::new();
    let mut console_in = None;
    if args.console == ConsoleKind::Virtio {
        let (reader, writer) =
            std::io::pipe().context("cannot create a pipe for virtio-console input")?;
        let console = Console::new(Box::new(watched_output()), Some(Box::new(reader)))?;
        virtio.push(Box::new(console));
        console_in = Some(writer);
    }
    if args.rng {
        virtio.push(Box::new(Rng::new()));
    }
    // The power button, after the disks and cards and the devices above;
    // listed in the DSDT as every virtio-mmio slot is.
    let taken = args.disks.len() + nets.len() + virtio.len();
    let button = add_power_button(&mut virtio, taken, VIRTIO_SLOTS as usize);

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
    // Console input: the serial port's, or a pipe into virtio-console.
    let deliver: Deliver = match console_in {
        // virtio-console holds what the guest has not read yet.
        Some(mut pipe) => Box::new(move |bytes: &[u8]| {
            let _ = pipe.write_all(bytes);
        }),
        None => {
            let control = control.clone();
            Box::new(move |bytes: &[u8]| serial.send_all(bytes, &|| control.is_stopping()))
        }
    };
    if let (Some(path), Some(h)) = (&args.control_socket, &control_hub) {
        let deliver = Mutex::new(deliver);
        h.set_input(move |bytes| (deliver.lock().unwrap_or_else(|p| p.into_inner()))(bytes));
        let controlled = Arc::new(X86Control::new(control.clone(), button));
        let _server = serve(path, controlled.clone(), Arc::clone(h))?;
        let reason = vm.start()?.wait();
        let shutdown = controlled.ended_by_shutdown();
        return Ok(finish(reason, &panic_line, &signal, shutdown, false));
    }

    let terminal = RawTerminal::enter().context("cannot put the terminal into raw mode")?;
    // Ctrl-A x: the run then ends with reason `quit`.
    let quit = Arc::new(AtomicBool::new(false));
    {
        let control = control.clone();
        let quit = quit.clone();
        spawn_input(deliver, move || {
            quit.store(true, Ordering::SeqCst);
            control.request_exit(ExitReason::Stopped);
        })
        .context("cannot start the console input thread")?;
    }
    let reason = vm.start().map(|running| running.wait());
    drop(terminal);
    let reason = reason?;
    let _ = std::io::stdout().flush();
    Ok(finish(
        reason,
        &panic_line,
        &signal,
        false,
        quit.load(Ordering::SeqCst),
    ))
}

/// Where console input goes.
type Deliver = Box<dyn FnMut(&[u8]) + Send>;

/// The exit code and reason of a finished run, said on stderr.
fn finish(
    reason: ExitReason,
    panic_line: &Mutex<Option<String>>,
    signal: &AtomicI32,
    shutdown: bool,
    quit: bool,
) -> Finished {
    let said = Finished::said;
    let quiet = Finished::quiet;
    let panicked = panic_line.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(line) = panicked {
        return said(
            "kernel_panic",
            EXIT_PANIC,
            format!("the guest kernel panicked: {line}"),
        );
    }
    match reason {
        // The microvm powers off by the i8042 reset (reboot=k), as
        // Firecracker's guests do: a reset is the guest's own end.
        ExitReason::Reset => quiet("reset"),
        ExitReason::PowerOff => quiet("powered_off"),
        ExitReason::Stopped => match signal.load(Ordering::SeqCst) {
            0 if shutdown => said(
                "shutdown",
                0,
                "shut down at the supervisor's request (control socket)".into(),
            ),
            0 if quit => quiet("quit"),
            0 => quiet("shutdown"),
            sig => said("signal", 0, format!("terminating on signal {sig}")),
        },
        reason @ (ExitReason::TripleFault | ExitReason::Halted | ExitReason::Failed(_)) => {
            said("fault", EXIT_FAULT, reason.to_string())
        }
    }
}
