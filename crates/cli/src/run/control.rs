//! `vessel run --control-socket PATH`: the guest process serves its own
//! control socket (crates/control), so that the daemon can supervise it,
//! and reattach to it after the daemon restarts.
//!
//! Pause parks the guest: the riscv64 board's run loop between slices,
//! the x86_64 microvm's vCPU threads outside `KVM_RUN` (guest time, which
//! follows the host clock, goes on). Shutdown presses the machine's power
//! button (a virtio-input device with KEY_POWER, as a PC's ACPI power
//! button): the guest's acpid or logind powers it off and the VMM ends with
//! reason `powered_off` (`reset` on x86_64, whose microvm powers off by the
//! i8042 reset). A guest that never set the button up (no virtio-input
//! driver, or a bare program) cannot hear it: then shutdown ends the VMM
//! as SIGTERM does, with reason `shutdown`. The supervisor kills a guest
//! that ignores the button after its timeout.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use vessel_boards::riscv64::{Events, StopReason};
use vessel_control::{ConsoleHub, ControlServer, Controlled, RunState};
use vessel_devices::VirtioDevice;
use vessel_devices::input::{ButtonHandle, InputError, PowerButton};
use vessel_x86::{ExitReason, RunError, VmControl};

/// A console log is copied to `LOG.1` and emptied past this size.
pub const LOG_LIMIT: u64 = 1 << 20;

/// The riscv64 machine as the control socket sees it.
pub struct RiscvControl {
    events: Arc<Events>,
    button: Option<ButtonHandle>,
    /// The power button was pressed: the guest is shutting down.
    pressed: AtomicBool,
}

impl RiscvControl {
    pub fn new(events: Arc<Events>, button: Option<ButtonHandle>) -> Self {
        Self {
            events,
            button,
            pressed: AtomicBool::new(false),
        }
    }

    fn stopping(&self) -> bool {
        self.events.stop_reason().is_some() || self.pressed.load(Ordering::SeqCst)
    }
}

impl Controlled for RiscvControl {
    fn pause(&self) -> Result<(), String> {
        if self.stopping() {
            return Err("the guest is stopping".to_string());
        }
        if self.events.pause() {
            Ok(())
        } else {
            Err("the guest is already paused".to_string())
        }
    }

    fn resume(&self) -> Result<(), String> {
        if self.events.resume() {
            Ok(())
        } else {
            Err("the guest is not paused".to_string())
        }
    }

    fn shutdown(&self) -> Result<(), String> {
        if self.events.is_paused() {
            // A parked guest cannot act on the button: resume it first.
            self.events.resume();
        }
        if press(self.button.as_ref()) {
            self.pressed.store(true, Ordering::SeqCst);
        } else {
            self.events.stop(StopReason::Shutdown);
        }
        Ok(())
    }

    fn state(&self) -> RunState {
        if self.stopping() {
            RunState::Stopping
        } else if self.events.is_paused() {
            RunState::Paused
        } else {
            RunState::Running
        }
    }
}

/// Add the power button (virtio-input) to `devices` when a virtio-mmio slot
/// is left for it (`slots` in all): `shutdown` on the control socket
/// presses it. Added last, so it takes the lowest free slot and the other
/// devices (the disks' names, vda…) keep theirs.
pub fn add_power_button(
    devices: &mut Vec<Box<dyn VirtioDevice>>,
    taken: usize,
    slots: usize,
) -> Option<ButtonHandle> {
    if taken >= slots {
        eprintln!(
            "vessel: warning: no virtio-mmio slot left for the power button; a shutdown \
             request will end the VMM without asking the guest"
        );
        return None;
    }
    let (dev, handle) = PowerButton::new();
    devices.push(Box::new(dev));
    Some(handle)
}

/// Press the power button if the guest's driver has it set up; false when
/// the guest cannot hear it (the caller then ends the VMM instead).
fn press(button: Option<&ButtonHandle>) -> bool {
    match button {
        Some(b) if b.driver_ready() => match b.press() {
            Ok(()) => true,
            // Earlier presses are still waiting for the guest to read them:
            // it has been asked already.
            Err(InputError::Full) => true,
            Err(e) => {
                eprintln!("vessel: warning: power button: {e}; ending the VMM instead");
                false
            }
        },
        _ => false,
    }
}

/// The x86_64 microvm as the control socket sees it.
pub struct X86Control {
    vm: VmControl,
    button: Option<ButtonHandle>,
    pressed: AtomicBool,
    /// Shutdown ended the VMM (the guest could not hear the button).
    ended: AtomicBool,
}

impl X86Control {
    pub fn new(vm: VmControl, button: Option<ButtonHandle>) -> Self {
        Self {
            vm,
            button,
            pressed: AtomicBool::new(false),
            ended: AtomicBool::new(false),
        }
    }

    /// Whether a shutdown request ended the VMM itself.
    pub fn ended_by_shutdown(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    fn stopping(&self) -> bool {
        self.vm.is_stopping() || self.pressed.load(Ordering::SeqCst)
    }
}

impl Controlled for X86Control {
    fn pause(&self) -> Result<(), String> {
        if self.stopping() {
            return Err("the guest is stopping".to_string());
        }
        if self.vm.is_paused() {
            return Err("the guest is already paused".to_string());
        }
        self.vm.pause().map_err(|e| e.to_string())
    }

    fn resume(&self) -> Result<(), String> {
        self.vm.resume().map_err(|e| match e {
            RunError::NotPaused => "the guest is not paused".to_string(),
            e => e.to_string(),
        })
    }

    fn shutdown(&self) -> Result<(), String> {
        // A parked guest cannot act on the button: resume it first.
        let _ = self.vm.resume();
        if press(self.button.as_ref()) {
            self.pressed.store(true, Ordering::SeqCst);
        } else {
            self.ended.store(true, Ordering::SeqCst);
            self.vm.request_exit(ExitReason::Stopped);
        }
        Ok(())
    }

    fn state(&self) -> RunState {
        if self.stopping() {
            RunState::Stopping
        } else if self.vm.is_paused() {
            RunState::Paused
        } else {
            RunState::Running
        }
    }
}

/// The console hub for `--console-log`.
pub fn hub(log: Option<&Path>) -> anyhow::Result<Arc<ConsoleHub>> {
    ConsoleHub::new(log, LOG_LIMIT).context("cannot open the console log")
}

/// Serve the control socket at `path`.
pub fn serve(
    path: &Path,
    controlled: Arc<dyn Controlled>,
    hub: Arc<ConsoleHub>,
) -> anyhow::Result<ControlServer> {
    ControlServer::start(path, controlled, hub).context("cannot serve the control socket")
}

/// A container under `vessel run --container --control-socket`: pause and
/// resume freeze and thaw its cgroup, shutdown sends SIGTERM to its
/// process (the supervisor kills it after its own timeout).
pub struct ContainerControl {
    /// The runtime state directory and the container's id.
    pub root: std::path::PathBuf,
    pub id: String,
    /// The container's process once it runs (0 before).
    pub pid: std::sync::atomic::AtomicI32,
    /// Set by shutdown.
    pub stopping: std::sync::atomic::AtomicBool,
}

impl ContainerControl {
    pub fn new(root: std::path::PathBuf, id: String) -> ContainerControl {
        ContainerControl {
            root,
            id,
            pid: std::sync::atomic::AtomicI32::new(0),
            stopping: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn running_pid(&self) -> Result<i32, String> {
        use std::sync::atomic::Ordering;
        if self.stopping.load(Ordering::SeqCst) {
            return Err("the container is stopping".to_string());
        }
        match self.pid.load(Ordering::SeqCst) {
            0 => Err("the container is still starting; try again".to_string()),
            pid => Ok(pid),
        }
    }

    fn status(&self) -> Option<vessel_container::Status> {
        vessel_container::ops::Container::open(&self.root, &self.id)
            .ok()
            .map(|c| c.status())
    }

    fn set_paused(&self, paused: bool) -> Result<(), String> {
        vessel_container::ops::set_paused(&self.root, &self.id, paused).map_err(|e| e.to_string())
    }
}

impl Controlled for ContainerControl {
    fn pause(&self) -> Result<(), String> {
        self.running_pid()?;
        self.set_paused(true)
    }

    fn resume(&self) -> Result<(), String> {
        self.running_pid()?;
        self.set_paused(false)
    }

    fn shutdown(&self) -> Result<(), String> {
        let pid = self.running_pid()?;
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // A frozen process takes its signal once thawed.
        if self.status() == Some(vessel_container::Status::Paused) {
            self.set_paused(false)?;
        }
        // SAFETY: kill(2) on the container's process, our child (not reaped
        // while this runs: the pid stays ours until the foreground run waits).
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            return Err(format!(
                "cannot signal the container's process {pid}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    fn state(&self) -> RunState {
        if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return RunState::Stopping;
        }
        match self.status() {
            Some(vessel_container::Status::Paused) => RunState::Paused,
            Some(vessel_container::Status::Stopped) => RunState::Stopping,
            _ => RunState::Running,
        }
    }
}
