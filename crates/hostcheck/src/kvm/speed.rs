//! The guest speed measurement: the same two-instruction loop (`dec ecx;
//! jnz`) runs in a tiny real-mode KVM guest and natively on the host.

use std::time::{Duration, Instant};

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit};

/// Below this guest/host ratio a KVM back end is not hardware-assisted: real
/// VT-x/AMD-V runs a register loop at nearly native speed.
pub const HARDWARE_MIN_RATIO: f64 = 0.2;

/// Guest physical address of the loop, and the size of guest memory.
const CODE_ADDR: u64 = 0x1000;
const MEM_SIZE: usize = 0x10000;
/// `dec ecx` (0x66 0x49 in 16-bit mode), `jnz -4`, `hlt`.
const LOOP_CODE: [u8; 5] = [0x66, 0x49, 0x75, 0xfc, 0xf4];
/// Instructions per loop iteration.
const LOOP_INSNS: f64 = 2.0;
/// Stop growing a run once it takes this long; keeps the check near 100 ms
/// even on the slowest back end.
const TARGET: Duration = Duration::from_millis(25);

#[derive(Debug, thiserror::Error)]
pub enum SpeedError {
    #[error("cannot create a KVM guest: {0}")]
    Create(#[source] kvm_ioctls::Error),
    #[error("cannot map guest memory: {0}")]
    Map(#[source] std::io::Error),
    #[error("cannot set up the guest vCPU: {0}")]
    Setup(#[source] kvm_ioctls::Error),
    #[error("the guest vCPU failed to run: {0}")]
    Run(#[source] kvm_ioctls::Error),
    #[error("the guest stopped with an unexpected exit: {0}")]
    UnexpectedExit(String),
    #[error("the measurement was too short to be meaningful")]
    TooFast,
}

/// Loop iterations per second, in the guest and on the host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuestSpeed {
    pub guest_iterations_per_second: f64,
    pub host_iterations_per_second: f64,
    pub guest_instructions_per_second: f64,
}

impl GuestSpeed {
    /// Guest speed as a fraction of the host's.
    pub fn ratio(&self) -> f64 {
        self.guest_iterations_per_second / self.host_iterations_per_second
    }
}

/// Anonymous host memory mapped for the guest, unmapped on drop.
struct GuestRam {
    ptr: *mut u8,
    len: usize,
}

impl GuestRam {
    fn new(len: usize) -> Result<Self, SpeedError> {
        // SAFETY: an anonymous private mapping with no address hint; the
        // result is checked for MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(SpeedError::Map(std::io::Error::last_os_error()));
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }

    fn write(&mut self, offset: usize, bytes: &[u8]) {
        assert!(
            offset + bytes.len() <= self.len,
            "code fits in guest memory"
        );
        // SAFETY: the range was checked against the mapping's length just above,
        // and the mapping is writable and owned by self.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(offset), bytes.len()) };
    }
}

impl Drop for GuestRam {
    fn drop(&mut self) {
        // SAFETY: ptr/len describe the mapping made in new(), unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Run the loop in a KVM guest and on the host, and compare.
pub fn measure_guest_speed(kvm: &Kvm) -> Result<GuestSpeed, SpeedError> {
    let vm = kvm.create_vm().map_err(SpeedError::Create)?;
    let mut ram = GuestRam::new(MEM_SIZE)?;
    ram.write(CODE_ADDR as usize, &LOOP_CODE);
    let region = kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: 0,
        memory_size: MEM_SIZE as u64,
        userspace_addr: ram.ptr as u64,
        flags: 0,
    };
    // SAFETY: the region describes `ram`, which outlives the VM (it is dropped
    // after `vm` at the end of this function) and is not used by the host while
    // the guest runs.
    unsafe { vm.set_user_memory_region(region) }.map_err(SpeedError::Create)?;
    let mut vcpu = vm.create_vcpu(0).map_err(SpeedError::Create)?;
    let mut sregs = vcpu.get_sregs().map_err(SpeedError::Setup)?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs).map_err(SpeedError::Setup)?;

    let mut run = |iterations: u32| -> Result<Duration, SpeedError> {
        let mut regs = vcpu.get_regs().map_err(SpeedError::Setup)?;
        regs.rip = CODE_ADDR;
        regs.rflags = 2;
        regs.rcx = u64::from(iterations);
        vcpu.set_regs(&regs).map_err(SpeedError::Setup)?;
        let start = Instant::now();
        let exit = vcpu.run().map_err(SpeedError::Run)?;
        let elapsed = start.elapsed();
        match exit {
            VcpuExit::Hlt => Ok(elapsed),
            other => Err(SpeedError::UnexpectedExit(format!("{other:?}"))),
        }
    };
    let guest = rate(&mut run)?;
    drop(vm);
    drop(ram);
    let host = rate(|n| Ok(host_loop(n)))?;
    Ok(GuestSpeed {
        guest_iterations_per_second: guest,
        host_iterations_per_second: host,
        guest_instructions_per_second: guest * LOOP_INSNS,
    })
}

/// Iterations per second of `run`, with its fixed cost (VM entry and exit,
/// timer reads) taken out: the difference between a short and a long run.
fn rate(mut run: impl FnMut(u32) -> Result<Duration, SpeedError>) -> Result<f64, SpeedError> {
    const SHORT: u32 = 16;
    let mut n: u32 = 4096;
    let mut long = run(n)?;
    while long < TARGET && n < u32::MAX / 8 {
        n *= 8;
        long = run(n)?;
    }
    let short = (0..3).map(|_| run(SHORT)).collect::<Result<Vec<_>, _>>()?;
    let short = short.into_iter().min().unwrap_or_default();
    let dt = long.saturating_sub(short).as_secs_f64();
    if dt <= 0.0 {
        return Err(SpeedError::TooFast);
    }
    Ok(f64::from(n - SHORT) / dt)
}

/// The guest's loop, natively.
#[cfg(target_arch = "x86_64")]
fn host_loop(iterations: u32) -> Duration {
    let start = Instant::now();
    // SAFETY: the asm only decrements a scratch register to zero and
    // branches within itself; it touches no memory and no stack.
    unsafe {
        std::arch::asm!(
            "2:",
            "dec {n:e}",
            "jnz 2b",
            n = inout(reg) iterations.max(1) => _,
            options(nomem, nostack),
        );
    }
    start.elapsed()
}

#[cfg(not(target_arch = "x86_64"))]
fn host_loop(iterations: u32) -> Duration {
    let start = Instant::now();
    let mut n = iterations.max(1);
    while std::hint::black_box(n) != 0 {
        n -= 1;
    }
    start.elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_takes_out_the_fixed_cost() {
        // 1 µs per iteration plus 5 ms of fixed cost per run.
        let r =
            rate(|n| Ok(Duration::from_millis(5) + Duration::from_micros(u64::from(n)))).unwrap();
        assert!((r - 1e6).abs() / 1e6 < 1e-6, "got {r}");
    }

    #[test]
    fn a_run_that_costs_nothing_is_an_error() {
        assert!(matches!(
            rate(|_| Ok(Duration::ZERO)),
            Err(SpeedError::TooFast)
        ));
    }

    #[test]
    fn host_loop_runs() {
        // Not a timing assertion: the loop terminates for 0, 1 and many.
        for n in [0, 1, 1000] {
            let _ = host_loop(n);
        }
    }

    #[test]
    fn live_guest_runs_the_loop_where_kvm_is_usable() {
        let Ok(kvm) = Kvm::new() else {
            eprintln!("skipped: /dev/kvm cannot be opened here");
            return;
        };
        let speed = measure_guest_speed(&kvm).expect("the loop guest runs to HLT");
        assert!(speed.guest_iterations_per_second > 0.0);
        assert!(speed.host_iterations_per_second > 0.0);
        assert!(speed.ratio() > 0.0);
    }
}
