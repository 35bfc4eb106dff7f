//! vCPU threads: one named thread per vCPU runs it through the
//! [`vessel_machine::Vcpu`] seam, hands trapped port and MMIO accesses to
//! the buses ([`vessel_machine::dispatch`]), and obeys the VM's run state
//! (running, paused, stopping). The owner of [`RunningVcpus`] pauses,
//! resumes and stops them, kicking threads out of `KVM_RUN` with a
//! real-time signal. Nothing here names KVM's own exit types: the KVM vCPU
//! is [`crate::KvmVcpu`].

use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once};
use std::thread::JoinHandle;
use std::time::Duration;

pub use vessel_machine::IoBuses;
use vessel_machine::{Next, Vcpu, VcpuEvent, dispatch};

/// Why a VM stopped running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// The guest asked for a reset (the i8042 reset line, for instance).
    /// A microVM treats a reset as the end of the guest, as Firecracker does.
    Reset,
    /// The guest triple-faulted or KVM shut the vCPU down (`KVM_EXIT_SHUTDOWN`).
    TripleFault,
    /// The guest powered off (a `KVM_SYSTEM_EVENT_SHUTDOWN`).
    PowerOff,
    /// A vCPU halted with no in-kernel interrupt controller to wake it.
    Halted,
    /// The host stopped the VM ([`RunningVcpus::shutdown`]).
    Stopped,
    /// A vCPU failed: the message says which and why.
    Failed(String),
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Reset => f.write_str("the guest reset (a microVM stops on reset)"),
            Self::TripleFault => f.write_str("the guest triple-faulted"),
            Self::PowerOff => f.write_str("the guest powered off"),
            Self::Halted => f.write_str("a vCPU halted with nothing to wake it"),
            Self::Stopped => f.write_str("the host stopped the guest"),
            Self::Failed(why) => write!(f, "the guest failed: {why}"),
        }
    }
}

/// Errors of controlling running vCPUs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RunError {
    #[error("cannot start the thread of vCPU {id}: {reason}")]
    Spawn { id: u64, reason: String },
    #[error("the VM is not running (it stopped: {0:?})")]
    NotRunning(Option<ExitReason>),
    #[error("the VM is not paused")]
    NotPaused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    Running,
    Paused,
    Stopping,
}

struct Control {
    state: RunState,
    exit: Option<ExitReason>,
    /// vCPU threads parked because the VM is paused.
    paused: usize,
    /// vCPU threads that have returned.
    finished: usize,
    /// vCPU threads that have started (and carry their names).
    started: usize,
    /// Their pthreads, for kicks. Valid while the state is not `Stopping`:
    /// threads return only once it is, and are joined only after that.
    threads: Vec<libc::pthread_t>,
}

impl Control {
    /// Kick every vCPU thread out of `KVM_RUN`. Called with the lock held,
    /// before the threads are joined.
    fn kick_all(&self) {
        for &t in &self.threads {
            // SAFETY: `t` is a started vCPU thread that has not been joined
            // yet: joining happens only after every thread finished, and
            // callers hold the lock, which orders this before the join.
            unsafe { libc::pthread_kill(t, kick_signal()) };
        }
    }
}

struct Shared {
    control: Mutex<Control>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Control> {
        self.control
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Kick every vCPU out of `KVM_RUN` and wait for a change (or the
    /// kick interval, after which the caller kicks again).
    fn kick_and_wait<'a>(&self, c: MutexGuard<'a, Control>) -> MutexGuard<'a, Control> {
        c.kick_all();
        self.changed
            .wait_timeout(c, KICK_INTERVAL)
            .unwrap_or_else(|p| p.into_inner())
            .0
    }
}

/// A handle devices use to end the VM (the i8042 reset, a power button).
/// Cheap to clone; safe to call from a vCPU thread.
#[derive(Clone)]
pub struct VmControl {
    shared: Arc<Shared>,
}

impl VmControl {
    /// A control for VMs not started yet.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                control: Mutex::new(Control {
                    state: RunState::Running,
                    exit: None,
                    paused: 0,
                    finished: 0,
                    started: 0,
                    threads: Vec::new(),
                }),
                changed: Condvar::new(),
            }),
        }
    }

    /// Stop the VM with `reason`. The first reason wins; later ones are ignored.
    pub fn request_exit(&self, reason: ExitReason) {
        let mut c = self.shared.lock();
        if c.exit.is_none() {
            c.exit = Some(reason);
        }
        c.state = RunState::Stopping;
        self.shared.changed.notify_all();
    }

    /// The reason the VM stopped, once it has.
    pub fn exit_reason(&self) -> Option<ExitReason> {
        self.shared.lock().exit.clone()
    }

    /// Park every vCPU outside `KVM_RUN`; returns once all are parked.
    /// Pausing a paused VM does nothing.
    pub fn pause(&self) -> Result<(), RunError> {
        let shared = &self.shared;
        let mut c = shared.lock();
        match c.state {
            RunState::Stopping => return Err(RunError::NotRunning(c.exit.clone())),
            RunState::Paused => {}
            RunState::Running => c.state = RunState::Paused,
        }
        shared.changed.notify_all();
        while c.paused + c.finished < c.started {
            match c.state {
                RunState::Paused => {}
                RunState::Stopping => return Err(RunError::NotRunning(c.exit.clone())),
                // Resumed by another caller before every vCPU parked.
                RunState::Running => return Ok(()),
            }
            c = shared.kick_and_wait(c);
        }
        Ok(())
    }

    /// Let paused vCPUs run again.
    pub fn resume(&self) -> Result<(), RunError> {
        let shared = &self.shared;
        let mut c = shared.lock();
        match c.state {
            RunState::Paused => {
                c.state = RunState::Running;
                shared.changed.notify_all();
                Ok(())
            }
            RunState::Running => Err(RunError::NotPaused),
            RunState::Stopping => Err(RunError::NotRunning(c.exit.clone())),
        }
    }

    /// Whether every vCPU is parked by [`pause`](Self::pause).
    pub fn is_paused(&self) -> bool {
        let c = self.shared.lock();
        c.state == RunState::Paused && c.paused + c.finished == c.started
    }

    /// Whether the VM is stopping or has stopped.
    pub fn is_stopping(&self) -> bool {
        self.shared.lock().state == RunState::Stopping
    }
}

/// The signal that kicks a vCPU thread out of `KVM_RUN`.
fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The handler does nothing, which is async-signal-safe; its only
        // purpose is to make KVM_RUN return EINTR.
        let r = vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick);
        if let Err(e) = r {
            // Without the handler a kick would kill the process: fail loudly
            // in the one place this can go wrong.
            eprintln!("vessel-kvm: cannot install the vCPU kick signal handler: {e}");
        }
    });
}

/// vCPU threads of one VM, running.
pub struct RunningVcpus {
    threads: Vec<JoinHandle<()>>,
    control: VmControl,
}

/// How often a controller re-sends kicks while it waits for vCPUs to notice.
const KICK_INTERVAL: Duration = Duration::from_millis(5);

impl RunningVcpus {
    /// Start one thread per vCPU. Each thread is named `vessel-vcpu<id>`;
    /// this returns once every thread is up.
    pub fn spawn<V: Vcpu + 'static>(
        vcpus: Vec<V>,
        buses: Arc<IoBuses>,
        control: VmControl,
    ) -> Result<Self, RunError> {
        install_kick_handler();
        let mut running = Self {
            threads: Vec::with_capacity(vcpus.len()),
            control,
        };
        for vcpu in vcpus {
            let id = vcpu.id();
            let buses = Arc::clone(&buses);
            let shared = Arc::clone(&running.control.shared);
            let thread = std::thread::Builder::new()
                .name(format!("vessel-vcpu{id}"))
                .spawn(move || vcpu_thread(id, vcpu, &buses, &shared))
                .map_err(|e| RunError::Spawn {
                    id: id as u64,
                    reason: e.to_string(),
                });
            match thread {
                Ok(t) => running.threads.push(t),
                Err(e) => {
                    running
                        .control
                        .request_exit(ExitReason::Failed(e.to_string()));
                    return Err(e);
                }
            }
        }
        let shared = &running.control.shared;
        let mut c = shared.lock();
        while c.started < running.threads.len() {
            c = shared.changed.wait(c).unwrap_or_else(|p| p.into_inner());
        }
        drop(c);
        Ok(running)
    }

    /// A handle to stop this VM from elsewhere.
    pub fn control(&self) -> VmControl {
        self.control.clone()
    }

    /// Park every vCPU outside `KVM_RUN`; returns once all are parked.
    pub fn pause(&self) -> Result<(), RunError> {
        self.control.pause()
    }

    /// Let paused vCPUs run again.
    pub fn resume(&self) -> Result<(), RunError> {
        self.control.resume()
    }

    /// Whether every vCPU is parked by [`pause`](Self::pause).
    pub fn is_paused(&self) -> bool {
        self.control.is_paused()
    }

    /// Stop the VM from the host and wait for its vCPU threads.
    pub fn shutdown(self) -> ExitReason {
        self.control.request_exit(ExitReason::Stopped);
        self.wait()
    }

    /// Wait until the VM stops (the guest resets or powers off, a vCPU
    /// fails, or someone calls [`VmControl::request_exit`]), then join
    /// every vCPU thread.
    pub fn wait(mut self) -> ExitReason {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> ExitReason {
        let shared = Arc::clone(&self.control.shared);
        let mut c = shared.lock();
        while c.state != RunState::Stopping {
            c = shared.changed.wait(c).unwrap_or_else(|p| p.into_inner());
        }
        while c.finished < self.threads.len() {
            c = shared.kick_and_wait(c);
        }
        let exit = c.exit.clone().unwrap_or(ExitReason::Stopped);
        drop(c);
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                return ExitReason::Failed("a vCPU thread panicked".into());
            }
        }
        exit
    }
}

impl Drop for RunningVcpus {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.control.request_exit(ExitReason::Stopped);
            self.stop_and_join();
        }
    }
}

/// Wait while paused; false once the VM is stopping.
fn may_run(shared: &Shared) -> bool {
    let mut c = shared.lock();
    loop {
        match c.state {
            RunState::Running => return true,
            RunState::Stopping => return false,
            RunState::Paused => {
                c.paused += 1;
                shared.changed.notify_all();
                while c.state == RunState::Paused {
                    c = shared.changed.wait(c).unwrap_or_else(|p| p.into_inner());
                }
                c.paused -= 1;
            }
        }
    }
}

/// Name the calling thread for `ps`, `top` and /proc (at most 15 bytes).
fn name_this_thread(name: &str) {
    let mut bytes: Vec<u8> = name.bytes().filter(|&b| b != 0).take(15).collect();
    bytes.push(0);
    // SAFETY: `bytes` is a NUL-terminated string of at most 16 bytes, as
    // PR_SET_NAME requires, and outlives the call.
    unsafe { libc::prctl(libc::PR_SET_NAME, bytes.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

fn vcpu_thread<V: Vcpu>(id: usize, mut vcpu: V, buses: &IoBuses, shared: &Shared) {
    // std names the thread too, but not always before this closure runs:
    // callers may look for the name as soon as spawn returns.
    name_this_thread(&format!("vessel-vcpu{id}"));
    {
        let mut c = shared.lock();
        c.started += 1;
        // SAFETY: pthread_self has no preconditions.
        c.threads.push(unsafe { libc::pthread_self() });
        shared.changed.notify_all();
    }
    while may_run(shared) {
        if let Some(reason) = run_once(&mut vcpu, buses) {
            let mut c = shared.lock();
            if c.exit.is_none() {
                c.exit = Some(reason);
            }
            c.state = RunState::Stopping;
            shared.changed.notify_all();
            break;
        }
    }
    let mut c = shared.lock();
    c.finished += 1;
    shared.changed.notify_all();
}

/// One [`Vcpu::run`] (one `KVM_RUN` for KVM), its device access completed
/// on the buses; `Some` when the VM must stop.
fn run_once<V: Vcpu>(vcpu: &mut V, buses: &IoBuses) -> Option<ExitReason> {
    let id = vcpu.id();
    match vcpu.run() {
        Ok(exit) => match dispatch(exit, buses) {
            Next::Run => None,
            Next::Event(event) => Some(exit_reason(event)),
        },
        Err(e) => Some(ExitReason::Failed(with_vcpu(id, e.to_string()))),
    }
}

/// What a vCPU event means for the VM.
fn exit_reason(event: VcpuEvent) -> ExitReason {
    match event {
        // Without an in-kernel interrupt controller nothing wakes it.
        VcpuEvent::Halted => ExitReason::Halted,
        VcpuEvent::Shutdown => ExitReason::PowerOff,
        VcpuEvent::Reset => ExitReason::Reset,
        // A KVM guest crashes only by triple-faulting.
        VcpuEvent::Crashed(_) => ExitReason::TripleFault,
    }
}

/// An engine's error text, naming the vCPU if the engine did not.
fn with_vcpu(id: usize, text: String) -> String {
    if text.starts_with("vCPU ") {
        text
    } else {
        format!("vCPU {id}: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_exit_reason_wins() {
        let control = VmControl::new();
        assert_eq!(control.exit_reason(), None);
        control.request_exit(ExitReason::Reset);
        control.request_exit(ExitReason::Stopped);
        assert_eq!(control.exit_reason(), Some(ExitReason::Reset));
    }

    #[test]
    fn no_vcpus_stop_at_once() {
        let running = RunningVcpus::spawn::<crate::KvmVcpu>(
            Vec::new(),
            Arc::new(IoBuses::default()),
            VmControl::new(),
        )
        .unwrap();
        running.pause().unwrap();
        assert!(running.is_paused());
        running.resume().unwrap();
        assert_eq!(running.resume(), Err(RunError::NotPaused));
        assert_eq!(running.shutdown(), ExitReason::Stopped);
    }

    #[test]
    fn vcpu_events_become_exit_reasons() {
        assert_eq!(exit_reason(VcpuEvent::Reset), ExitReason::Reset);
        assert_eq!(exit_reason(VcpuEvent::Shutdown), ExitReason::PowerOff);
        assert_eq!(exit_reason(VcpuEvent::Halted), ExitReason::Halted);
        assert_eq!(
            exit_reason(VcpuEvent::Crashed("vCPU 0: triple".into())),
            ExitReason::TripleFault
        );
        assert_eq!(with_vcpu(2, "vCPU 2: x".into()), "vCPU 2: x");
        assert_eq!(with_vcpu(2, "x".into()), "vCPU 2: x");
    }
}
